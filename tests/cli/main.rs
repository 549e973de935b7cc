//! CLI integration tests: one module per command, sharing the `TestProject` helper.

mod config;
mod init;
mod select;
mod support;
mod validate;

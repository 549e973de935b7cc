//! CLI integration tests: one module per command, sharing the `TestProject` helper.

mod config;
mod el;
mod includes;
mod init;
mod json_contract;
mod merge;
mod plugin_env;
mod real_plugins;
mod run;
mod schedule;
mod select;
mod support;
mod sync;
mod transforms;
mod usage;
mod validate;

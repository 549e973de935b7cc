//! CLI integration tests: one module per command, sharing the `TestProject` helper.

mod batch;
mod classification;
mod completions;
mod config;
mod el;
mod includes;
mod init;
mod json_contract;
mod logs;
mod merge;
mod notify;
mod plugin_env;
mod real_plugins;
mod requests;
mod run;
mod schedule;
mod select;
mod support;
mod sync;
mod transforms;
mod usage;
mod validate;

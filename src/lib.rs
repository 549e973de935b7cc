//! dsm: a fast, safe runtime for Singer connectors that runs Meltano projects.
//!
//! The binary (`src/main.rs`) parses arguments and calls [`run`]; everything worth testing lives
//! in this library. Dependencies between modules point one way: `singer` knows nothing else in
//! the crate, `commands` ties everything together.

// Unit tests build their fixed spans with the panicking constructors that `clippy.toml` keeps
// out of the code that takes user input.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod catalog;
pub mod classification;
pub mod cli;
pub mod commands;
pub mod duration;
pub mod envvars;
pub mod error;
pub mod files;
pub mod logging;
pub mod merge;
pub mod notify;
pub mod orchestrate;
pub mod pipeline;
pub mod plugin;
pub mod printer;
pub mod progress;
pub mod project;
pub mod pyjson;
pub mod registry;
pub mod requests;
pub mod runner;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod singer;
pub mod state_backend;
pub mod store;
pub mod transform;
pub mod webhooks;

use cli::Cli;
use commands::Context;

/// Runs dsm with the raw command line (program name first) and returns the process exit code.
/// A usage error is rendered like any other error (as JSON on stdout too with `--format json`),
/// without echoing the values typed (see [`cli::usage`]).
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    match cli::usage::parse(args.clone()) {
        cli::usage::Parsed::Run(cli) => run(*cli),
        cli::usage::Parsed::Printed(code) => code,
        cli::usage::Parsed::Usage(error) => {
            let format = if cli::usage::wants_json(&args) {
                printer::OutputFormat::Json
            } else {
                printer::OutputFormat::Text
            };
            printer::Printer::new(format, false).error(&error);
            error.exit_code()
        }
    }
}

/// Runs dsm with parsed arguments and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let ctx = Context::new(cli.global.clone());
    logging::init(&cli.global);
    let code = match logging::check_env(&cli.global)
        .and_then(|()| commands::dispatch(&ctx, cli.command))
    {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(error = ?error, "command failed");
            ctx.printer.error(&error);
            error.exit_code()
        }
    };
    // Notifications the command emitted (a failed run's `source_error` ...) finish their
    // delivery, retries included, before the process ends; its own output is already out.
    notify::wait_for_deliveries(notify::DRAIN_LIMIT);
    code
}

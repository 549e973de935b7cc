//! Log setup: `tracing` to stderr, as text or JSON lines, at the level the user asked for.

use crate::cli::{GlobalArgs, LogFormat, LogLevel};
use crate::envvars;

/// The log format: `--log-format`, else `DSM_LOG_FORMAT`, else text.
pub fn log_format(global: &GlobalArgs) -> LogFormat {
    global
        .log_format
        .or_else(|| {
            let value = std::env::var(envvars::LOG_FORMAT).ok()?;
            clap::ValueEnum::from_str(&value, true).ok()
        })
        .unwrap_or(LogFormat::Text)
}

/// Installs the global subscriber. Logs go to stderr so stdout stays data only.
pub fn init(global: &GlobalArgs) {
    let level = global
        .log_level
        .or_else(|| {
            let value = std::env::var(envvars::LOG_LEVEL).ok()?;
            clap::ValueEnum::from_str(&value, true).ok()
        })
        .unwrap_or(LogLevel::Warning);
    let format = log_format(global);
    let filter = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error | LogLevel::Critical => "error",
    };
    let builder = tracing_subscriber::fmt()
        // The access log of `dsm serve` (target `dsm::access`) is always on.
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "{filter},dsm::access=info"
        )))
        .with_writer(crate::progress::LogWriter)
        // Colour only for a person at a terminal: cron mail and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // A second init (tests calling `run` twice) is harmless, so the error is ignored.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.without_time().try_init(),
    };
}

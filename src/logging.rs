//! Log setup: `tracing` to stderr, as text or JSON lines, at the level the user asked for.

use crate::cli::{GlobalArgs, LogFormat, LogLevel, flag_value};
use crate::envvars;
use crate::error::Error;

/// A log variable's value read like its flag (`parse` is the flag's parser, whose error lists the
/// accepted names); an empty or unset variable is `None`.
fn from_env<T>(name: &str, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, Error> {
    let Some(value) = std::env::var_os(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    // A value that is not UTF-8 fails like any other unknown name.
    parse(value.to_str().unwrap_or("\u{0}"))
        .map(Some)
        .map_err(|names| {
            Error::config(format!("`{name}` is not one of {names}"))
                .hint(format!("set `{name}` to one of those, or unset it"))
        })
}

/// Checks `DSM_LOG_LEVEL` and `DSM_LOG_FORMAT` as strictly as their flags (a bad value is a
/// usage error, exit 2), unless the flag is given and wins.
pub fn check_env(global: &GlobalArgs) -> Result<(), Error> {
    if global.log_level.is_none() {
        from_env(envvars::LOG_LEVEL, flag_value::<LogLevel>)?;
    }
    if global.log_format.is_none() {
        from_env(envvars::LOG_FORMAT, flag_value::<LogFormat>)?;
    }
    Ok(())
}

/// The log format: `--log-format`, else `DSM_LOG_FORMAT`, else text.
pub fn log_format(global: &GlobalArgs) -> LogFormat {
    global
        .log_format
        .or_else(|| from_env(envvars::LOG_FORMAT, flag_value).ok().flatten())
        .unwrap_or(LogFormat::Text)
}

/// Installs the global subscriber. Logs go to stderr so stdout stays data only.
pub fn init(global: &GlobalArgs) {
    let level = global
        .log_level
        .or_else(|| from_env(envvars::LOG_LEVEL, flag_value).ok().flatten())
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

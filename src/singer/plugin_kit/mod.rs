//! A small kit for writing Singer plugins in Rust: the command line every Singer program shares
//! (`--about`, `--discover`, `--config`, `--catalog`/`--properties`, `--state`, `--input`),
//! catalog entries with Singer metadata, stream selection, bookmarks, and a buffered writer.
//!
//! dsm's built-in taps and targets (`taps/`) are built on it. It follows the conventions of the
//! Meltano Singer SDK so that Meltano and dsm drive these programs like any Python plugin.
//!
//! Here: errors, `--about` and [`run_main`]. Beside it: the command line ([`args`]), catalog
//! entries and selection ([`catalog`]), bookmarks ([`state`]) and output ([`writer`]).

mod args;
mod catalog;
mod state;
#[cfg(test)]
mod tests;
mod writer;

use std::io::{self, Write};

use serde_json::{Value, json};

pub use args::*;
pub use catalog::*;
pub use state::*;
pub use writer::*;

/// Why a plugin run failed. Rendered on stderr as `error: …` plus optional `hint: …` lines.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The command line is wrong (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong (exit code 2).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The data or a resource failed (exit code 1).
    #[error("{message}")]
    Data {
        /// What is wrong.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// Writing to stdout failed.
    #[error("cannot write to stdout: {0}")]
    Output(#[source] io::Error),
}

impl PluginError {
    /// A data error without a hint.
    pub fn data(message: impl Into<String>) -> Self {
        PluginError::Data {
            message: message.into(),
            hint: None,
        }
    }

    /// A data error with a hint.
    pub fn data_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PluginError::Data {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A configuration error without a hint.
    pub fn config(message: impl Into<String>) -> Self {
        PluginError::Config {
            message: message.into(),
            hint: None,
        }
    }

    /// A configuration error with a hint.
    pub fn config_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        PluginError::Config {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The process exit code for this error: 2 for usage and configuration, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PluginError::Usage(_) | PluginError::Config { .. } => 2,
            PluginError::Data { .. } | PluginError::Output(_) => 1,
        }
    }

    fn hint(&self) -> Option<&str> {
        match self {
            PluginError::Config { hint, .. } | PluginError::Data { hint, .. } => hint.as_deref(),
            PluginError::Usage(_) => Some("run with `--help` for the accepted arguments"),
            PluginError::Output(_) => None,
        }
    }
}

/// Turns an I/O error on stdout into a [`PluginError`].
pub fn output_error(e: io::Error) -> PluginError {
    PluginError::Output(e)
}

/// What `--about` prints: the plugin's name, version, capabilities and settings.
#[derive(Debug, Clone)]
pub struct About {
    /// Executable name, e.g. `tap-csv`.
    pub name: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Singer capabilities, e.g. `catalog`, `discover`, `state`, `about`.
    pub capabilities: &'static [&'static str],
    /// The settings as a JSON Schema object (`properties`, `required`), like the SDK's.
    pub settings: Value,
}

impl About {
    /// The SDK's `--about --format json` document.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "version": env!("CARGO_PKG_VERSION"),
            "sdk_version": null,
            "capabilities": self.capabilities,
            "settings": self.settings,
        })
    }

    /// Renders in `format` (`json`, `markdown` or plain text).
    pub fn render(&self, format: Option<&str>) -> Result<String, PluginError> {
        match format {
            Some("json") => Ok(serde_json::to_string_pretty(&self.to_json())
                .expect("a JSON value always serialises")),
            Some("markdown") => Ok(self.render_text(true)),
            None | Some("text") => Ok(self.render_text(false)),
            Some(other) => Err(PluginError::Usage(format!(
                "unknown `--format` `{other}` (expected json, markdown or text)"
            ))),
        }
    }

    fn render_text(&self, markdown: bool) -> String {
        let mut s = String::new();
        if markdown {
            s.push_str(&format!("# `{}`\n\n{}\n\n", self.name, self.description));
        } else {
            s.push_str(&format!(
                "Name: {}\nDescription: {}\nVersion: {}\n",
                self.name,
                self.description,
                env!("CARGO_PKG_VERSION")
            ));
        }
        s.push_str(if markdown {
            "## Capabilities\n\n"
        } else {
            "Capabilities:\n"
        });
        for c in self.capabilities {
            s.push_str(&format!("  - {c}\n"));
        }
        s.push_str(if markdown {
            "\n## Settings\n\n"
        } else {
            "Settings:\n"
        });
        if let Some(props) = self.settings.get("properties").and_then(Value::as_object) {
            for (name, p) in props {
                let kind = p.get("type").map(|t| t.to_string()).unwrap_or_default();
                let desc = p.get("description").and_then(Value::as_str).unwrap_or("");
                s.push_str(&format!("  - {name} ({kind}): {desc}\n"));
            }
        }
        s
    }
}

/// Runs a plugin's `main`: parses arguments, handles `--about`/`--version`/`--help`, calls
/// `body`, and renders any error on stderr. A closed stdout is not an error (Singer consumers
/// may stop reading early).
pub fn run_main(
    about: &About,
    usage: &str,
    body: impl FnOnce(PluginArgs) -> Result<(), PluginError>,
) -> std::process::ExitCode {
    let result = PluginArgs::parse(std::env::args().skip(1)).and_then(|args| {
        if args.help {
            write_stdout(usage.as_bytes())
        } else if args.version {
            write_stdout(format!("{} {}\n", about.name, env!("CARGO_PKG_VERSION")).as_bytes())
        } else if args.about {
            let mut text = about.render(args.format.as_deref())?;
            text.push('\n');
            write_stdout(text.as_bytes())
        } else {
            body(args)
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(PluginError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let mut err = io::stderr().lock();
            // Nothing more can be done when stderr itself is gone.
            let _ = writeln!(err, "error: {e}");
            if let Some(h) = e.hint() {
                let _ = writeln!(err, "\nhint: {h}");
            }
            std::process::ExitCode::from(e.exit_code())
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), PluginError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(output_error)
}

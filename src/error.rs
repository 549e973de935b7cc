//! The error type every command returns, its exit code, and the hints a tired person can act on.
//!
//! Library modules define their own `thiserror` enums and convert into [`Error`], choosing the
//! [`ErrorKind`] (which decides the exit code) and adding `hint:` lines.

use std::fmt;

/// The process exit codes dsm documents (see the README's "CLI contract").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A run, test or check failed (plugin, data or validation): exit 1.
    Failed,
    /// Usage or configuration error: exit 2.
    Config,
    /// Not started because the same flow is already running: exit 3.
    AlreadyRunning,
    /// A `--timeout` expired: exit 124.
    Timeout,
    /// Interrupted by SIGINT: exit 130.
    Interrupted,
    /// Interrupted by SIGTERM: exit 143.
    Terminated,
}

impl ErrorKind {
    /// The exit code for this kind of failure.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Failed => 1,
            ErrorKind::Config => 2,
            ErrorKind::AlreadyRunning => 3,
            ErrorKind::Timeout => 124,
            ErrorKind::Interrupted => 130,
            ErrorKind::Terminated => 143,
        }
    }
}

/// A failure to show the user: one message line, optional detail lines, and `hint:` lines.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    details: Vec<String>,
    hints: Vec<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// Set when the command already wrote its JSON document (which reports the failure) to
    /// stdout: the error then goes to stderr only, so stdout stays one valid document.
    data_printed: bool,
    /// Set for an exit code passed through from a child process: nothing to print, since the
    /// child already said why.
    passthrough: Option<u8>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a one-line message (no trailing period).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            details: Vec::new(),
            hints: Vec::new(),
            source: None,
            data_printed: false,
            passthrough: None,
        }
    }

    /// Ends dsm with a child process's exit code, printing nothing (`dsm invoke`).
    pub fn passthrough(code: u8) -> Self {
        let mut error = Self::failed(format!("the plugin exited with status {code}"));
        error.passthrough = Some(code);
        error
    }

    /// Marks that the command's JSON document, which describes this failure, is already on
    /// stdout (the printer then adds no error document there).
    #[must_use]
    pub fn data_printed(mut self) -> Self {
        self.data_printed = true;
        self
    }

    /// Whether the command's own JSON document already reports this failure on stdout.
    pub fn is_data_printed(&self) -> bool {
        self.data_printed
    }

    /// Whether this error only carries a child's exit code and should print nothing.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough.is_some()
    }

    /// A configuration or usage error (exit 2).
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// A failed run, test or check (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }

    /// Adds a `hint:` line telling the user what to do next.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Adds an indented detail line under the message (stderr excerpts, positions, ...).
    #[must_use]
    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    /// Records the underlying cause (shown in debug logs, not in the message).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Changes the kind (and so the exit code).
    #[must_use]
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The detail lines.
    pub fn details(&self) -> &[String] {
        &self.details
    }

    /// The hint lines.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The exit code this error ends the process with.
    pub fn exit_code(&self) -> u8 {
        self.passthrough.unwrap_or_else(|| self.kind.exit_code())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::failed(format!("I/O error: {e}")).with_source(e)
    }
}

/// Suggests the closest candidate to `input` (for "did you mean" hints), if any is close enough.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_the_documented_contract() {
        assert_eq!(ErrorKind::Failed.exit_code(), 1);
        assert_eq!(ErrorKind::Config.exit_code(), 2);
        assert_eq!(ErrorKind::AlreadyRunning.exit_code(), 3);
        assert_eq!(ErrorKind::Timeout.exit_code(), 124);
        assert_eq!(ErrorKind::Interrupted.exit_code(), 130);
        assert_eq!(ErrorKind::Terminated.exit_code(), 143);
    }

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let keys = ["extractors", "loaders", "mappers"];
        assert_eq!(did_you_mean("extractor", keys), Some("extractors"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}

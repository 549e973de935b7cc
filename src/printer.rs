//! Every byte the user sees on stdout and stderr: data, tables, JSON, notices and errors.
//!
//! Library code never prints; commands hand what they want shown to the [`Printer`]. Logs are
//! separate (they go through `tracing`, for operators).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the one place that prints"
)]

use std::io::{self, IsTerminal, Write};

use crate::error::Error;

/// How data on stdout is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human text (tables on a terminal).
    Text,
    /// One JSON document on stdout, valid even when the command fails.
    Json,
}

/// Writes data to stdout and notices to stderr, honouring `--format`, `--quiet` and terminals.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    stderr_tty: bool,
}

impl Printer {
    /// A printer for the given format; `quiet` silences notices (not data, not errors).
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Printer {
            format,
            quiet,
            stderr_tty: io::stderr().is_terminal(),
        }
    }

    /// The data format of this invocation.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Whether `--quiet` was given.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Whether stderr is a terminal (progress bars go there only when it is).
    pub fn stderr_is_terminal(&self) -> bool {
        self.stderr_tty
    }

    /// Writes one line of data to stdout. A closed pipe (`dsm ... | head`) is not an error.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{}", text.as_ref());
    }

    /// Writes raw text to stdout as is.
    pub fn raw(&self, text: impl AsRef<str>) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(text.as_ref().as_bytes());
        let _ = out.flush();
    }

    /// Copies a reader to stdout as it reads (a log file, without holding it in memory). A closed
    /// pipe ends the copy quietly; a read error is returned.
    pub fn copy_from(&self, reader: &mut impl io::Read) -> io::Result<()> {
        let mut out = io::stdout().lock();
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if out.write_all(&buf[..n]).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
        Ok(())
    }

    /// Writes a value as pretty JSON to stdout.
    pub fn json<T: serde::Serialize + ?Sized>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).expect("serialising plain data cannot fail");
        self.line(text);
    }

    /// Writes a table: a header row and rows, columns padded to their widest cell. A cell of
    /// several lines (an error with a traceback) shows its first line, and a notice says where
    /// the rest is.
    pub fn table(&self, header: &[&str], rows: &[Vec<String>]) {
        self.raw(render_table(header, rows));
        if rows.iter().flatten().any(|c| c.contains('\n')) {
            self.notice(
                "note: a cell shows only the first line of its text; `--format json` has it \
                 whole, and `dsm runs show RUN_ID` a run's whole error",
            );
        }
    }

    /// A notice for the user on stderr (suppressed by `--quiet`).
    pub fn notice(&self, text: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", text.as_ref());
        }
    }

    /// A warning on stderr (shown even with `--quiet`).
    pub fn warn(&self, text: impl AsRef<str>) {
        eprintln!("warning: {}", text.as_ref());
    }

    /// Renders an error: on stderr as text, and on stdout as JSON when `--format json` is active.
    /// Prints nothing for an exit code passed through from a child, and no JSON when the
    /// command's own document on stdout already reports the failure.
    pub fn error(&self, error: &Error) {
        if error.is_passthrough() {
            return;
        }
        if self.format == OutputFormat::Json && !error.is_data_printed() {
            self.json(&serde_json::json!({ "error": error_json(error) }));
        }
        eprintln!("{}", render_error(error));
    }
}

/// The JSON form of an error (`schemas/cli/error.schema.json`): the `error` member of the document
/// a failing command leaves on stdout with `--format json`, either alone or beside the
/// command's own data.
pub fn error_json(error: &Error) -> serde_json::Value {
    serde_json::json!({
        "message": error.message(),
        "kind": error.kind(),
        "details": error.details(),
        "hints": error.hints(),
        "exit_code": error.exit_code(),
    })
}

/// The text form of an error: `error: ...`, indented details, then `hint:` lines.
pub fn render_error(error: &Error) -> String {
    let mut text = format!("error: {}", error.message());
    for line in error.details() {
        text.push_str("\n  ");
        text.push_str(line);
    }
    if !error.hints().is_empty() {
        text.push('\n');
    }
    for hint in error.hints() {
        text.push_str("\nhint: ");
        text.push_str(hint);
    }
    text
}

/// `n` and the noun, singular for one: `1 record`, `2 records`, `1 STATE message`. `noun` is the
/// singular; the plural adds `s` to its last word.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n: u64 = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Renders rows under a header with columns padded to the widest cell.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    // One line per row: a multi-line cell keeps its first line, marked as cut.
    let cut: Vec<Vec<String>>;
    let rows = if rows.iter().flatten().any(|c| c.contains('\n')) {
        cut = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| match c.split_once('\n') {
                        Some((first, _)) => format!("{} [...]", first.trim_end()),
                        None => c.clone(),
                    })
                    .collect()
            })
            .collect();
        &cut
    } else {
        rows
    };
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut header.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 30: a multi-line error broke the table.
    #[test]
    fn a_multi_line_cell_shows_its_first_line() {
        let text = render_table(
            &["NAME", "REASON"],
            &[vec![
                "tap-x".into(),
                "Traceback:\n  File x\nValueError".into(),
            ]],
        );
        assert_eq!(text, "NAME   REASON\ntap-x  Traceback: [...]\n");
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1u64, "record"), "1 record");
        assert_eq!(count(0u64, "record"), "0 records");
        assert_eq!(count(2u32, "STATE message"), "2 STATE messages");
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let text = render_table(
            &["NAME", "STATUS"],
            &[
                vec!["tap-csv".into(), "active".into()],
                vec!["t".into(), "error".into()],
            ],
        );
        assert_eq!(text, "NAME     STATUS\ntap-csv  active\nt        error\n");
    }

    #[test]
    fn error_text_has_details_then_hints() {
        let e = Error::config("unknown key `extractor`")
            .detail("in meltano.yml line 3")
            .hint("did you mean `extractors`?");
        assert_eq!(
            render_error(&e),
            "error: unknown key `extractor`\n  in meltano.yml line 3\n\nhint: did you mean `extractors`?"
        );
    }
}

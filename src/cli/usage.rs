//! Turns the command line into a [`Cli`], and clap's usage errors into dsm [`Error`]s that never
//! echo a value the user typed.
//!
//! clap quotes the offending token back (`unexpected argument 'hunter2' found`). On commands that
//! handle secrets that token can be the secret itself, typed where it does not belong, and the
//! message would then land in terminal scrollback, CI logs and cron mail. So dsm names the
//! position of the token (or the flag's name, which is never secret) instead of its value, and keeps
//! clap's suggestions, which only ever name flags, subcommands and accepted values.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind as ClapKind};

use crate::cli::Cli;
use crate::error::Error;

/// The result of reading the command line.
#[derive(Debug)]
pub enum Parsed {
    /// Arguments to run.
    Run(Box<Cli>),
    /// `--help` or `--version` was printed: exit with this code.
    Printed(u8),
    /// A usage error (exit 2), already safe to show.
    Usage(Box<Error>),
}

/// Parses `args` (program name first).
pub fn parse(args: Vec<OsString>) -> Parsed {
    use clap::Parser;
    match Cli::try_parse_from(&args) {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) => match e.kind() {
            ClapKind::DisplayHelp | ClapKind::DisplayVersion => {
                let _ = e.print();
                Parsed::Printed(0)
            }
            // `dsm config` alone: clap's help for it is the best answer, unless the caller
            // reads JSON.
            ClapKind::DisplayHelpOnMissingArgumentOrSubcommand if !wants_json(&args) => {
                let _ = e.print();
                Parsed::Printed(2)
            }
            ClapKind::DisplayHelpOnMissingArgumentOrSubcommand => Parsed::Usage(Box::new(
                Error::config("a subcommand is required").hint(help_hint(&args)),
            )),
            _ => Parsed::Usage(Box::new(usage_error(&e, &args))),
        },
    }
}

/// Whether the raw arguments ask for `--format json` (used to render a usage error as JSON,
/// since no [`Cli`] exists when parsing failed).
pub fn wants_json(args: &[OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.contains(&"--format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json")
}

/// A dsm error for a clap usage error, without any value the user typed.
pub fn usage_error(e: &clap::Error, args: &[OsString]) -> Error {
    let arg = context_string(e, ContextKind::InvalidArg);
    let position = |value: Option<&str>| -> String {
        value
            .and_then(|v| {
                args.iter()
                    .skip(1)
                    .position(|a| a.to_str() == Some(v))
                    .map(|i| format!(" (argument {})", i + 1))
            })
            .unwrap_or_default()
    };
    // Whether the message already says "did you mean": clap's suggestion is then not repeated.
    let mut suggested = false;
    let message = match e.kind() {
        ClapKind::UnknownArgument => match arg.as_deref() {
            Some(flag) if flag.starts_with("--") => match flag.split_once('=') {
                Some((name, _)) => format!("unexpected argument `{name}=...`"),
                None => format!("unexpected argument `{flag}`"),
            },
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                let short: String = flag.chars().take(2).collect();
                format!("unexpected argument `{short}...`{}", position(Some(flag)))
            }
            other => format!(
                "unexpected extra argument{}; its value is not shown",
                position(other)
            ),
        },
        ClapKind::InvalidSubcommand => {
            let typed = context_string(e, ContextKind::InvalidSubcommand);
            match typed.as_deref().and_then(|t| near_command(args, t)) {
                // A near-miss of a command name is no secret: name it and the command meant.
                Some((parent, typed, meant)) => {
                    suggested = true;
                    format!("unknown command `{parent}{typed}`; did you mean `{parent}{meant}`?")
                }
                None => format!(
                    "unrecognized subcommand{}; its value is not shown",
                    position(typed.as_deref())
                ),
            }
        }
        ClapKind::InvalidValue
        | ClapKind::ValueValidation
        | ClapKind::NoEquals
        | ClapKind::TooManyValues
        | ClapKind::TooFewValues
        | ClapKind::WrongNumberOfValues
        | ClapKind::InvalidUtf8 => {
            let what = match e.kind() {
                ClapKind::TooManyValues => "too many values",
                ClapKind::TooFewValues | ClapKind::WrongNumberOfValues => "wrong number of values",
                ClapKind::NoEquals => "missing `=` before the value",
                ClapKind::InvalidUtf8 => "a value that is not valid UTF-8",
                _ => "invalid value",
            };
            match arg.as_deref() {
                Some(name) => format!("{what} for `{name}`"),
                None => what.to_string(),
            }
        }
        // These name arguments and subcommands only, never values: clap's own first line.
        _ => first_line(e),
    };
    let mut error = Error::config(message);
    if let Some(usage) = context_string(e, ContextKind::Usage) {
        for line in usage.lines().filter(|l| !l.trim().is_empty()) {
            error = error.detail(line.trim_end().to_string());
        }
    }
    for kind in [
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedArg,
        ContextKind::SuggestedValue,
    ] {
        if suggested && kind == ContextKind::SuggestedSubcommand {
            continue;
        }
        for s in context_strings(e, kind) {
            error = error.hint(format!("did you mean `{s}`?"));
        }
    }
    let valid = context_strings(e, ContextKind::ValidValue);
    if !valid.is_empty() {
        error = error.hint(format!("accepted values: {}", valid.join(", ")));
    }
    if e.kind() == ClapKind::ValueValidation
        && let Some(source) = std::error::Error::source(e)
    {
        let text = source.to_string();
        let typed = context_string(e, ContextKind::InvalidValue).unwrap_or_default();
        if typed.is_empty() || !text.contains(&typed) {
            error = error.hint(format!("the value was rejected: {text}"));
        }
    }
    error.hint(help_hint(args))
}

/// For a mistyped subcommand `typed`, close enough to a known one by the project's did-you-mean:
/// the words of the parent command (`"config "`, or `""` at the top), `typed`, and the command
/// meant.
fn near_command(args: &[OsString], typed: &str) -> Option<(String, String, String)> {
    let mut parent = String::new();
    let mut tree = <Cli as clap::CommandFactory>::command();
    for word in subcommand_words(args) {
        if word == typed {
            break;
        }
        match tree.find_subcommand(word) {
            Some(sub) => {
                parent.push_str(sub.get_name());
                parent.push(' ');
                tree = sub.clone();
            }
            None => return None,
        }
    }
    let names: Vec<&str> = tree
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name())
        .collect();
    let meant = crate::error::did_you_mean(typed, names.iter().copied())?;
    Some((parent, typed.to_string(), meant.to_string()))
}

/// The words of the command line that are not flags or flag values (global flags that take a
/// value may come before the subcommand words).
fn subcommand_words(args: &[OsString]) -> Vec<&str> {
    const TAKES_VALUE: [&str; 6] = [
        "--cwd",
        "--environment",
        "--log-level",
        "--log-format",
        "--format",
        "--database-uri",
    ];
    let mut words = Vec::new();
    let mut tokens = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(t) = tokens.next() {
        if TAKES_VALUE.contains(&t) {
            tokens.next();
        } else if !t.starts_with('-') {
            words.push(t);
        }
    }
    words
}

/// `dsm SUBCOMMAND --help`, naming as many subcommand words as were typed before any flag.
fn help_hint(args: &[OsString]) -> String {
    let words: Vec<&str> = subcommand_words(args).into_iter().take(2).collect();
    let mut cmd = String::from("dsm");
    let mut tree = <Cli as clap::CommandFactory>::command();
    for w in words {
        match tree.find_subcommand(w) {
            Some(sub) => {
                cmd.push(' ');
                cmd.push_str(sub.get_name());
                tree = sub.clone();
            }
            None => break,
        }
    }
    format!("see `{cmd} --help`")
}

fn context_string(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

fn context_strings(e: &clap::Error, kind: ContextKind) -> Vec<String> {
    match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStr(s)) => vec![s.to_string()],
        Some(ContextValue::StyledStrs(v)) => v.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    fn error_for(line: &str) -> Error {
        match parse(args(line)) {
            Parsed::Usage(e) => *e,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    fn all_text(e: &Error) -> String {
        crate::printer::render_error(e)
    }

    #[test]
    fn a_stray_positional_is_named_by_position_not_value() {
        let e = error_for("dsm secrets set tap-x password hunter2");
        let text = all_text(&e);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("argument 5"), "{text}");
        assert!(text.contains("dsm secrets set --help"), "{text}");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn an_unknown_flag_with_a_value_shows_the_flag_name_only() {
        let text = all_text(&error_for("dsm secrets set tap-x password --value=hunter2"));
        assert!(text.contains("`--value"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_invalid_value_is_not_echoed_but_accepted_values_are_listed() {
        let text = all_text(&error_for("dsm --log-level hunter2 validate"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("--log-level"), "{text}");
        assert!(text.contains("debug"), "{text}");
    }

    #[test]
    fn a_mistyped_subcommand_is_named_with_the_command_meant() {
        let e = error_for("dsm sycn");
        assert_eq!(e.message(), "unknown command `sycn`; did you mean `sync`?");
        let text = all_text(&e);
        assert_eq!(text.matches("did you mean").count(), 1, "{text}");
        let e = error_for("dsm --cwd x config lsit tap-x");
        assert_eq!(
            e.message(),
            "unknown command `config lsit`; did you mean `config list`?"
        );
    }

    #[test]
    fn a_subcommand_that_resembles_nothing_stays_hidden() {
        let text = all_text(&error_for("dsm hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("argument 1"), "{text}");
        let text = all_text(&error_for("dsm secrets s3cr3t-Valu3"));
        assert!(!text.contains("s3cr3t"), "{text}");
    }

    #[test]
    fn json_is_detected_in_both_spellings() {
        assert!(wants_json(&args("dsm --format json x")));
        assert!(wants_json(&args("dsm x --format=json")));
        assert!(!wants_json(&args("dsm x --format text")));
    }
}

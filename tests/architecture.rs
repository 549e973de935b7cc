//! Issue #19's dependency rule, checked by reading the source files under `src/`:
//!
//! - `singer` imports nothing else of the crate (it is the ground floor plugins build on);
//! - nothing in the library imports `commands` (only the CLI glue: `lib.rs`, `main.rs`, `cli.rs`);
//! - no module outside `store` names `rusqlite`;
//! - no module outside `cli.rs` and `commands` (and the binary's `main.rs`) names `clap`;
//! - no file is over 1,200 lines unless its first lines say why it is one idea (a line in its
//!   first ten with the words `one idea`).
//!
//! Each rule that today's code breaks has a named allowlist of the files that break it. The
//! allowlists only shrink: a listed file that no longer breaks its rule fails the test too, so
//! the list is kept honest when a refactoring lands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files (relative to `src/`) that still import another module of the crate from `singer`.
const SINGER_IMPORTS_ALLOWED: &[&str] = &[];

/// Library files that still import `commands`.
const COMMANDS_IMPORTERS_ALLOWED: &[&str] = &[];

/// Files outside `store/` that still name `rusqlite`.
const RUSQLITE_ALLOWED: &[&str] = &[];

/// Library files outside the CLI layer that still name `clap`.
const CLAP_ALLOWED: &[&str] = &[];

/// Files over the line limit that do not (yet) say why they are one idea.
const LONG_FILES_ALLOWED: &[&str] = &[];

/// The most lines a file under `src/` has without a reason at its top.
const MAX_LINES: usize = 1200;

/// The files of the CLI layer (and everything under `src/cli/`): they tie the commands to the
/// library.
const CLI_LAYER: &[&str] = &["lib.rs", "main.rs", "cli.rs"];

/// One source file: its path relative to `src/` and its lines with comments blanked out.
struct Source {
    rel: String,
    /// The raw lines (for the length rule and its reason).
    raw: Vec<String>,
    /// The lines with `//` comments removed (string literals are kept: a path in a message is
    /// rare and would be worth a look anyway).
    code: Vec<String>,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()));
            let rel = path
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let raw: Vec<String> = text.lines().map(str::to_owned).collect();
            let code = strip_comments(&text);
            Source { rel, raw, code }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list `{}`: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The lines of `text` with line comments and block comments replaced by spaces (string and
/// char literals are skipped over so `"//"` inside one does not start a comment).
fn strip_comments(text: &str) -> Vec<String> {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut block_depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if block_depth > 0 {
            if c == '*' && next == Some('/') {
                block_depth -= 1;
                out.push_str("  ");
                i += 2;
            } else if c == '/' && next == Some('*') {
                block_depth += 1;
                out.push_str("  ");
                i += 2;
            } else {
                out.push(if c == '\n' { '\n' } else { ' ' });
                i += 1;
            }
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                block_depth = 1;
                out.push_str("  ");
                i += 2;
            }
            ('r', Some('"' | '#'))
                if !out
                    .chars()
                    .next_back()
                    .is_some_and(|p| p.is_alphanumeric() || p == '_') =>
            {
                // A raw string: `r"..."`, `r#"..."#`: copied as is to its closing quote.
                let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
                let open = i + 1 + hashes;
                if chars.get(open) != Some(&'"') {
                    out.push(c);
                    i += 1;
                    continue;
                }
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let end = chars[open + 1..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(chars.len(), |k| open + 1 + k + close.len());
                out.extend(chars[i..end].iter());
                i = end;
            }
            ('\'', Some('\\')) => {
                // An escaped char literal: `'\n'`, `'\''`, `'\u{1F600}'`.
                let end = chars[i + 2..]
                    .iter()
                    .skip(1)
                    .position(|&q| q == '\'')
                    .map_or(chars.len(), |k| i + 3 + k + 1);
                out.extend(chars[i..end.min(chars.len())].iter());
                i = end;
            }
            ('\'', Some(_)) if chars.get(i + 2) == Some(&'\'') => {
                // A char literal such as `'"'` (not a lifetime).
                out.extend(chars[i..i + 3].iter());
                i += 3;
            }
            ('"', _) => {
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        out.push(chars[i]);
                        i += 1;
                    }
                    if let Some(&ch) = chars.get(i) {
                        out.push(ch);
                    }
                    i += 1;
                }
                if i < chars.len() {
                    out.push('"');
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.lines().map(str::to_owned).collect()
}

/// Whether `line` holds `word` as a whole identifier.
fn names(line: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The first path segments after each `crate::` in `line`: `use crate::{a, b::c}` gives `a`
/// and `b`; `crate::x::y` gives `x`.
fn crate_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        if line[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &line[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group (nested groups belong to their item).
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            found.push(first_segment(&item));
        } else {
            found.push(first_segment(rest));
        }
    }
    found.retain(|s| !s.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// How many `super::` a file at `rel` can take before it leaves its top-level module
/// (`singer/mod.rs`: 0, `singer/codec.rs`: 1, `singer/a/b.rs`: 2).
fn depth_in_top_module(rel: &str) -> usize {
    let parts: Vec<&str> = rel.split('/').collect();
    let last = parts.last().copied().unwrap_or_default();
    let below = parts.len() - 1;
    if last == "mod.rs" {
        below.saturating_sub(1)
    } else {
        below
    }
}

/// A rule's findings: `file:line: text`, grouped by file.
#[derive(Default)]
struct Findings {
    lines: Vec<String>,
    files: BTreeSet<String>,
}

impl Findings {
    fn add(&mut self, s: &Source, index: usize, what: &str) {
        self.lines.push(format!(
            "src/{}:{}: {what}: {}",
            s.rel,
            index + 1,
            s.raw.get(index).map_or("", |l| l.trim())
        ));
        self.files.insert(s.rel.clone());
    }
}

/// Fails with every finding outside `allowed`, and with every allowed file that is now clean.
fn check(rule: &str, allowlist_name: &str, findings: &Findings, allowed: &[&str]) -> Vec<String> {
    let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    let mut problems = Vec::new();
    for line in &findings.lines {
        let file = line
            .strip_prefix("src/")
            .and_then(|l| l.split(':').next())
            .unwrap_or_default();
        if !allowed.contains(file) {
            problems.push(format!("{rule}\n  {line}"));
        }
    }
    for file in allowed.difference(&findings.files) {
        problems.push(format!(
            "{rule}\n  src/{file} no longer breaks it: take it out of `{allowlist_name}` in tests/architecture.rs"
        ));
    }
    problems
}

fn report(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "the dependency rule of issue #19 does not hold:\n\n{}\n",
        problems.join("\n")
    );
}

#[test]
fn issue_19_singer_imports_nothing_else_of_the_crate() {
    let mut findings = Findings::default();
    for s in sources().iter().filter(|s| s.rel.starts_with("singer/")) {
        let escape = format!("{}super", "super::".repeat(depth_in_top_module(&s.rel)));
        for (i, line) in s.code.iter().enumerate() {
            let outside: Vec<String> = crate_modules(line)
                .into_iter()
                .filter(|m| m != "singer")
                .collect();
            if !outside.is_empty() {
                findings.add(
                    s,
                    i,
                    &format!("imports `crate::{}`", outside.join("`, `crate::")),
                );
            } else if line.contains(&escape) {
                findings.add(s, i, "reaches out of `singer` through `super`");
            }
        }
    }
    report(check(
        "`singer` must import nothing else of the crate (it may use std and external crates)",
        "SINGER_IMPORTS_ALLOWED",
        &findings,
        SINGER_IMPORTS_ALLOWED,
    ));
}

#[test]
fn issue_19_nothing_in_the_library_imports_commands() {
    let mut findings = Findings::default();
    for s in sources().iter().filter(|s| {
        !s.rel.starts_with("commands/")
            && !s.rel.starts_with("cli/")
            && !CLI_LAYER.contains(&s.rel.as_str())
    }) {
        for (i, line) in s.code.iter().enumerate() {
            if crate_modules(line).iter().any(|m| m == "commands") || line.contains("dsm::commands")
            {
                findings.add(s, i, "imports `commands`");
            }
        }
    }
    report(check(
        "nothing in the library imports `commands` (only lib.rs, main.rs and cli.rs tie them in)",
        "COMMANDS_IMPORTERS_ALLOWED",
        &findings,
        COMMANDS_IMPORTERS_ALLOWED,
    ));
}

/// The modules of `commands/` every command may use: the shared context and helpers.
const COMMANDS_SHARED: &[&str] = &["shared"];

#[test]
fn issue_19_no_command_imports_another_command() {
    let mut findings = Findings::default();
    for s in sources().iter().filter(|s| {
        s.rel.starts_with("commands/")
            && s.rel != "commands/mod.rs"
            && s.rel != "commands/shared.rs"
    }) {
        for (i, line) in s.code.iter().enumerate() {
            for prefix in ["crate::commands::", "super::"] {
                for (at, _) in line.match_indices(prefix) {
                    let name: String = line[at + prefix.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                        .collect();
                    // `super::Context` and `super::{…}` name the shared context, `super::*` in a
                    // test module its own file.
                    if !name.is_empty() && !COMMANDS_SHARED.contains(&name.as_str()) {
                        findings.add(s, i, &format!("imports command `{name}`"));
                    }
                }
            }
        }
    }
    report(check(
        "no command imports another command (what two share lives in `commands/shared.rs` or the library)",
        "COMMANDS_CROSS_IMPORTS_ALLOWED",
        &findings,
        &[],
    ));
}

#[test]
fn issue_19_only_store_names_rusqlite() {
    let mut findings = Findings::default();
    for s in sources().iter().filter(|s| !s.rel.starts_with("store/")) {
        for (i, line) in s.code.iter().enumerate() {
            if names(line, "rusqlite") {
                findings.add(s, i, "names `rusqlite`");
            }
        }
    }
    report(check(
        "no module outside `src/store/` names `rusqlite` (SQL belongs behind the store's traits)",
        "RUSQLITE_ALLOWED",
        &findings,
        RUSQLITE_ALLOWED,
    ));
}

#[test]
fn issue_19_only_the_cli_layer_names_clap() {
    let mut findings = Findings::default();
    for s in sources().iter().filter(|s| {
        !s.rel.starts_with("commands/")
            && !s.rel.starts_with("cli/")
            && !CLI_LAYER.contains(&s.rel.as_str())
    }) {
        for (i, line) in s.code.iter().enumerate() {
            if names(line, "clap") || names(line, "clap_complete") || names(line, "clap_mangen") {
                findings.add(s, i, "names `clap`");
            }
        }
    }
    report(check(
        "no library module outside `src/cli.rs` and `src/commands/` names `clap`",
        "CLAP_ALLOWED",
        &findings,
        CLAP_ALLOWED,
    ));
}

#[test]
fn issue_19_long_files_say_why_they_are_one_idea() {
    let mut findings = Findings::default();
    for s in sources() {
        if s.raw.len() > MAX_LINES
            && !s
                .raw
                .iter()
                .take(10)
                .any(|l| l.to_lowercase().contains("one idea"))
        {
            findings.add(
                &s,
                0,
                &format!(
                    "{} lines (over {MAX_LINES}); split it, or say in its first ten lines why it is one idea",
                    s.raw.len()
                ),
            );
        }
    }
    report(check(
        "no file under `src/` over 1,200 lines unless its first lines say why it is one idea",
        "LONG_FILES_ALLOWED",
        &findings,
        LONG_FILES_ALLOWED,
    ));
}

/// The checks themselves: each one finds what it is meant to find.
#[test]
fn issue_19_the_rule_checks_find_what_they_look_for() {
    assert_eq!(
        crate_modules("use crate::{error::Error, singer::Message};"),
        ["error", "singer"]
    );
    assert_eq!(
        crate_modules("use crate::singer::{codec, envelope::{scan, Envelope}};"),
        ["singer"]
    );
    assert_eq!(
        crate_modules("let x = crate::commands::run();"),
        ["commands"]
    );
    assert!(crate_modules("use dsm_crate::x;").is_empty());
    assert!(names("use rusqlite::Connection;", "rusqlite"));
    assert!(!names("use my_rusqlite_wrapper;", "rusqlite"));
    assert!(names("#[derive(clap::ValueEnum)]", "clap"));
    let stripped = strip_comments(
        "let a = 1; // rusqlite\n/* clap\n */ let b = \"// x\";\nlet q = '\"'; let r = r#\"\"//\"#; use clap;\n",
    );
    assert!(
        !stripped
            .iter()
            .take(3)
            .any(|l| names(l, "rusqlite") || names(l, "clap"))
    );
    assert!(stripped[2].contains("\"// x\""), "{stripped:?}");
    assert!(names(&stripped[3], "clap"), "{stripped:?}");
    assert_eq!(depth_in_top_module("singer/mod.rs"), 0);
    assert_eq!(depth_in_top_module("singer/codec.rs"), 1);
    assert_eq!(depth_in_top_module("singer/a/mod.rs"), 1);
    assert_eq!(depth_in_top_module("singer/a/b.rs"), 2);
    let findings = Findings {
        lines: vec!["src/a.rs:3: names `clap`: use clap;".into()],
        files: ["a.rs".to_owned()].into(),
    };
    assert_eq!(
        check("rule", "LIST", &findings, &["a.rs"]),
        Vec::<String>::new()
    );
    assert_eq!(check("rule", "LIST", &findings, &[]).len(), 1);
    assert_eq!(
        check("rule", "LIST", &Findings::default(), &["a.rs"]).len(),
        1
    );
}

/// Issue 23: the image the Kubernetes export names is built with the build CI proves, and
/// ships dsm with every built-in plugin Cargo.toml declares (not the test fakes).
#[test]
fn the_dockerfile_ships_dsm_and_every_built_in_plugin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(docker.contains("cargo build --release --locked"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let mut in_bin = false;
    let mut bins = Vec::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
            bins.push(name.trim_matches('"').to_owned());
        }
    }
    assert!(bins.len() > 3, "{bins:?}");
    for bin in bins.iter().filter(|b| !b.starts_with("dsm-fake")) {
        assert!(
            docker.contains(&format!("target/release/{bin} ")),
            "the Dockerfile does not ship `{bin}`"
        );
    }
}

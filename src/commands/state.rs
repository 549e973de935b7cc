//! `dsm state`: read and change the state of flows, with Meltano's `state` commands and JSON
//! shapes, plus `import-meltano` to bring bookmarks over from a Meltano system database.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::commands::Context;
use crate::commands::shared::audit;
use crate::error::{Error, Result};
use crate::printer::OutputFormat;
use crate::store::state::{parse_payload, validate_payload};
use crate::store::{self, StateAction, StateId, StoredState, meltano};

/// Arguments of `dsm state`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: StateCommand,
}

/// `dsm state` subcommands (Meltano's, plus `import-meltano`).
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// List the state ids that have state, optionally those matching a glob (`dev:*`).
    List {
        /// Only ids matching this pattern (`*` matches anything).
        pattern: Option<String>,
        /// Same as PATTERN (Meltano's spelling).
        #[arg(long = "pattern", value_name = "PATTERN", conflicts_with = "pattern")]
        pattern_flag: Option<String>,
    },
    /// Print the state a flow's next run starts from, as `{"singer_state": ...}`.
    ///
    /// Compact JSON by default; `--format pretty` indents it.
    Get {
        /// The state id, e.g. `dev:tap-github-to-target-postgres`.
        state_id: String,
    },
    /// Replace a flow's state.
    Set {
        /// The state id.
        state_id: String,
        /// The new state as JSON (`{"singer_state": ...}`).
        state: Option<String>,
        /// Read the new state from this file instead.
        #[arg(long, value_name = "PATH", conflicts_with = "state")]
        input_file: Option<PathBuf>,
        /// Accepted for Meltano compatibility (dsm does not prompt).
        #[arg(long)]
        force: bool,
        /// Store the state even without a top-level `singer_state` key.
        #[arg(long)]
        no_validate: bool,
    },
    /// Edit a flow's state in `$VISUAL` / `$EDITOR` (checked before it is saved; audited).
    ///
    /// The state opens as pretty JSON (`{}` when the flow has none); saving an empty file or
    /// the same state changes nothing.
    Edit {
        /// The state id.
        state_id: String,
    },
    /// Add bookmarks to a flow's state (deep-merged over what it has).
    Merge {
        /// The state id to merge into.
        state_id: String,
        /// The state to merge, as JSON (`{"singer_state": ...}`).
        state: Option<String>,
        /// Merge the state of another state id.
        #[arg(long, value_name = "STATE_ID", conflicts_with_all = ["state", "input_file"])]
        from_state_id: Option<String>,
        /// Read the state to merge from this file.
        #[arg(long, value_name = "PATH", conflicts_with = "state")]
        input_file: Option<PathBuf>,
    },
    /// Delete a flow's state (or every flow's with `--all --force`).
    Clear {
        /// The state id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        state_id: Option<String>,
        /// Clear every state id.
        #[arg(long)]
        all: bool,
        /// Confirm `--all` (required with it; accepted otherwise for Meltano compatibility).
        #[arg(long)]
        force: bool,
    },
    /// Copy a flow's state onto another state id (replacing its state).
    Copy {
        /// Where to copy from.
        src_state_id: String,
        /// Where to copy to.
        dst_state_id: String,
        /// Accepted for Meltano compatibility (dsm does not prompt).
        #[arg(long)]
        force: bool,
    },
    /// Move a flow's state to another state id, clearing the original.
    Move {
        /// Where to move from.
        src_state_id: String,
        /// Where to move to.
        dst_state_id: String,
        /// Accepted for Meltano compatibility (dsm does not prompt).
        #[arg(long)]
        force: bool,
    },
    /// Print all state as JSON: `{state_id: {"completed": ..., "partial": ...}}`.
    Export,
    /// Import the output of `dsm state export` or `meltano state export` (a file, or stdin).
    ///
    /// Like Meltano, state ids in the input replace what dsm has, unless `--skip-existing`.
    Import {
        /// The JSON file; stdin when left out.
        input_file: Option<PathBuf>,
        /// Leave state ids that dsm already has untouched.
        #[arg(long)]
        skip_existing: bool,
    },
    /// Copy the state of a Meltano system database into dsm's store (read-only on Meltano's).
    ///
    /// State ids dsm already has are kept unless `--overwrite`, so running it twice never
    /// rewinds a bookmark dsm has advanced since.
    ImportMeltano {
        /// Meltano's database: a path or `sqlite:///path` (default `.meltano/meltano.db`).
        path: Option<String>,
        /// Replace state ids that dsm already has.
        #[arg(long)]
        overwrite: bool,
    },
}

/// Runs `dsm state`.
pub fn run(ctx: &Context, args: Args) -> Result<()> {
    match args.command {
        StateCommand::List {
            pattern,
            pattern_flag,
        } => list(ctx, pattern.or(pattern_flag).as_deref()),
        StateCommand::Get { state_id } => get(ctx, &StateId::new(state_id)),
        StateCommand::Set {
            state_id,
            state,
            input_file,
            force: _,
            no_validate,
        } => {
            let payload = read_payload(state.as_deref(), input_file.as_deref())?;
            if !no_validate {
                validate_payload(&payload)?;
            }
            let store = ctx.open_state_store()?;
            let id = StateId::new(state_id);
            store.write_state(&id, &payload, false, StateAction::Set, None)?;
            audit(ctx, "dsm state set", "state.set", id.as_str());
            ctx.printer.notice(format!("state of `{id}` set"));
            Ok(())
        }
        StateCommand::Edit { state_id } => edit(ctx, &StateId::new(state_id)),
        StateCommand::Merge {
            state_id,
            state,
            from_state_id,
            input_file,
        } => {
            let store = ctx.open_state_store()?;
            let id = StateId::new(state_id);
            let (payload, detail) = match from_state_id {
                Some(src) => {
                    let src = StateId::new(src);
                    let payload = store.get_state(&src)?.ok_or_else(|| no_state(&src))?;
                    (payload, Some(format!("from {src}")))
                }
                None => (read_payload(state.as_deref(), input_file.as_deref())?, None),
            };
            validate_payload(&payload)?;
            store.write_state(&id, &payload, true, StateAction::Merged, detail.as_deref())?;
            audit(ctx, "dsm state merge", "state.merge", id.as_str());
            ctx.printer.notice(format!("state merged into `{id}`"));
            Ok(())
        }
        StateCommand::Clear {
            state_id,
            all,
            force,
        } => {
            if all {
                if !force {
                    return Err(Error::config("`dsm state clear --all` deletes the state of every flow")
                        .hint("add `--force` to confirm; `dsm state export > backup.json` keeps a copy first"));
                }
                let n = ctx.open_state_store()?.clear_all_states()?;
                audit(ctx, "dsm state clear --all", "state.clear", "*");
                ctx.printer
                    .notice(format!("cleared the state of {n} state ids"));
                return Ok(());
            }
            let id = StateId::new(state_id.expect("clap requires STATE_ID without --all"));
            if ctx.open_state_store()?.clear_state(&id)? {
                audit(ctx, "dsm state clear", "state.clear", id.as_str());
                ctx.printer.notice(format!("state of `{id}` cleared"));
            } else {
                ctx.printer.notice(format!("`{id}` had no state"));
            }
            Ok(())
        }
        StateCommand::Copy {
            src_state_id,
            dst_state_id,
            force: _,
        } => {
            let (src, dst) = (StateId::new(src_state_id), StateId::new(dst_state_id));
            ctx.open_state_store()?.copy_state(&src, &dst, false)?;
            audit(
                ctx,
                "dsm state copy",
                "state.copy",
                &format!("{src} -> {dst}"),
            );
            ctx.printer
                .notice(format!("state of `{src}` copied to `{dst}`"));
            Ok(())
        }
        StateCommand::Move {
            src_state_id,
            dst_state_id,
            force: _,
        } => {
            let (src, dst) = (StateId::new(src_state_id), StateId::new(dst_state_id));
            ctx.open_state_store()?.copy_state(&src, &dst, true)?;
            audit(
                ctx,
                "dsm state move",
                "state.move",
                &format!("{src} -> {dst}"),
            );
            ctx.printer
                .notice(format!("state of `{src}` moved to `{dst}`"));
            Ok(())
        }
        StateCommand::Export => {
            let rows = ctx.open_state_store()?.list_states(None)?;
            ctx.printer.line(export_json(&rows));
            Ok(())
        }
        StateCommand::Import {
            input_file,
            skip_existing,
        } => import(ctx, input_file.as_deref(), skip_existing),
        StateCommand::ImportMeltano { path, overwrite } => {
            import_meltano(ctx, path.as_deref(), overwrite)
        }
    }
}

/// `dsm state edit`: the state in a private temporary file, the user's editor on it, the result
/// checked as `dsm state set` checks it, then stored and audited.
fn edit(ctx: &Context, id: &StateId) -> Result<()> {
    let store = ctx.open_state_store()?;
    let current = store.get_state(id)?;
    let initial = current.clone().unwrap_or_else(|| Value::Object(Map::new()));
    let text = serde_json::to_string_pretty(&initial).expect("a JSON value serialises") + "\n";
    // The folder is the owner's alone (0700), and goes when `dir` drops.
    let dir = tempfile::Builder::new()
        .prefix("dsm-state-edit-")
        .tempdir()?;
    let path = dir.path().join("state.json");
    std::fs::write(&path, text.as_bytes())?;
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    let mut words = shlex::split(&editor)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            Error::config(format!("the editor `{editor}` cannot be split into words"))
                .hint("set `EDITOR` to a command such as `vim` or `code --wait`")
        })?;
    let program = words.remove(0);
    let status = std::process::Command::new(&program)
        .args(&words)
        .arg(&path)
        .status()
        .map_err(|e| {
            Error::config(format!("cannot start the editor `{program}`: {e}"))
                .hint("set `VISUAL` or `EDITOR` to an editor on PATH")
        })?;
    if !status.success() {
        return Err(Error::failed(format!(
            "the editor `{program}` exited with {status}; the state of `{id}` is unchanged"
        )));
    }
    let edited = std::fs::read_to_string(&path)?;
    if edited.trim().is_empty() {
        ctx.printer
            .notice(format!("empty file: the state of `{id}` is unchanged"));
        return Ok(());
    }
    let payload: Value = serde_json::from_str(&edited).map_err(|e| {
        Error::config(format!(
            "the edited state of `{id}` is not JSON: line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
        .hint("nothing was saved; run `dsm state edit` again")
    })?;
    if payload == initial {
        ctx.printer
            .notice(format!("no change: the state of `{id}` is unchanged"));
        return Ok(());
    }
    validate_payload(&payload)?;
    store.write_state(id, &payload, false, StateAction::Set, Some("edited"))?;
    audit(ctx, "dsm state edit", "state.edit", id.as_str());
    ctx.printer.notice(format!("state of `{id}` saved"));
    Ok(())
}

fn no_state(id: &StateId) -> Error {
    Error::config(format!("no state stored for `{id}`"))
        .hint("`dsm state list` shows the state ids that have state")
}

fn list(ctx: &Context, pattern: Option<&str>) -> Result<()> {
    let format = ctx.text_or_json()?;
    let rows = ctx.open_state_store()?.list_states(pattern)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.state_id.as_str()).collect();
    match format {
        OutputFormat::Json => ctx.printer.json(&ids),
        OutputFormat::Text => {
            for id in ids {
                ctx.printer.line(id);
            }
        }
    }
    Ok(())
}

fn get(ctx: &Context, id: &StateId) -> Result<()> {
    let pretty = match ctx.global.format.as_deref() {
        None | Some("json") | Some("text") => false,
        Some("pretty") => true,
        Some(other) => {
            return Err(Error::config(format!("unknown output format `{other}`"))
                .hint("`dsm state get` accepts `--format json` (compact, the default) or `--format pretty`"));
        }
    };
    // Like Meltano, a flow without state prints `{}`.
    let value = ctx
        .open_state_store()?
        .get_state(id)?
        .unwrap_or_else(|| Value::Object(Map::new()));
    let text = if pretty {
        serde_json::to_string_pretty(&value)
    } else {
        serde_json::to_string(&value)
    }
    .expect("serialising a JSON value cannot fail");
    ctx.printer.line(text);
    Ok(())
}

fn read_payload(arg: Option<&str>, file: Option<&Path>) -> Result<Value> {
    match (arg, file) {
        (Some(text), None) => parse_payload(text, "the state argument"),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?;
            parse_payload(&text, &format!("`{}`", path.display()))
        }
        _ => Err(Error::config("no state given")
            .hint("pass the state as JSON after the state id, or `--input-file PATH`")),
    }
}

/// The export shape shared with `meltano state export`.
fn export_json(rows: &[StoredState]) -> String {
    let mut doc = Map::new();
    for row in rows {
        let mut entry = Map::new();
        entry.insert("completed".into(), row.completed.clone());
        entry.insert("partial".into(), row.partial.clone());
        doc.insert(row.state_id.to_string(), Value::Object(entry));
    }
    serde_json::to_string(&Value::Object(doc)).expect("serialising a JSON value cannot fail")
}

fn import(ctx: &Context, file: Option<&Path>, skip_existing: bool) -> Result<()> {
    let (text, origin) = match file {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Error::config(format!("cannot read `{}`: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            (text, "stdin".to_owned())
        }
    };
    let rows = parse_export(&text, &origin)?;
    let report = ctx
        .open_state_store()?
        .import_states(&rows, !skip_existing, &origin)?;
    report_import(ctx, &report, &origin)
}

/// Parses `{state_id: {"completed": ..., "partial": ...}}` (missing halves are empty).
fn parse_export(text: &str, origin: &str) -> Result<Vec<StoredState>> {
    let hint = "expected the output of `meltano state export` or `dsm state export`: {\"STATE_ID\": {\"completed\": {...}, \"partial\": {...}}}";
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| Error::config(format!("{origin} is not valid JSON: {e}")).hint(hint))?;
    let Value::Object(map) = doc else {
        return Err(Error::config(format!("{origin} is not a JSON object")).hint(hint));
    };
    let mut rows = Vec::new();
    for (id, entry) in map {
        let Value::Object(entry) = entry else {
            return Err(
                Error::config(format!("the entry of `{id}` in {origin} is not an object"))
                    .hint(hint),
            );
        };
        if let Some(key) = entry.keys().find(|k| *k != "completed" && *k != "partial") {
            return Err(Error::config(format!(
                "unknown key `{key}` in the entry of `{id}` in {origin}"
            ))
            .hint(hint));
        }
        let half = |k: &str| match entry.get(k) {
            None | Some(Value::Null) => Ok(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(_) => Err(
                Error::config(format!("`{k}` of `{id}` in {origin} is not an object")).hint(hint),
            ),
        };
        rows.push(StoredState {
            completed: half("completed")?,
            partial: half("partial")?,
            state_id: StateId::new(id),
            updated_at: None,
        });
    }
    Ok(rows)
}

fn import_meltano(ctx: &Context, path: Option<&str>, overwrite: bool) -> Result<()> {
    let path = match path {
        Some(p) => store::parse_uri(p, &ctx.cwd()?)?,
        None => meltano::default_path(&ctx.project_root()?),
    };
    let rows = meltano::read_states(&path)?;
    let store = ctx.open_state_store()?;
    if Path::new(&store.location()) == path {
        return Err(
            Error::config("dsm's store and Meltano's database are the same file")
                .hint("point `--database-uri` at dsm's own database"),
        );
    }
    let report = store.import_states(&rows, overwrite, &format!("meltano:{}", path.display()))?;
    report_import(ctx, &report, &path.display().to_string())
}

fn report_import(ctx: &Context, report: &store::ImportReport, origin: &str) -> Result<()> {
    if ctx.text_or_json()? == OutputFormat::Json {
        ctx.printer.json(report);
        return Ok(());
    }
    ctx.printer.notice(format!(
        "imported the state of {} state ids from {origin}",
        report.imported.len()
    ));
    for id in &report.imported {
        ctx.printer.line(format!("imported  {id}"));
    }
    for id in &report.skipped {
        ctx.printer.line(format!("skipped   {id}"));
    }
    if !report.skipped.is_empty() {
        ctx.printer.warn(format!(
            "{} state ids were skipped because dsm already has state for them; pass `--overwrite` to replace it",
            report.skipped.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_shape_round_trips() {
        let text = r#"{"a":{"completed":{"singer_state":{"x":1.50}},"partial":{}},"b":{"completed":{"singer_state":{}}}}"#;
        let rows = parse_export(text, "test").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            export_json(&rows),
            r#"{"a":{"completed":{"singer_state":{"x":1.50}},"partial":{}},"b":{"completed":{"singer_state":{}},"partial":{}}}"#
        );
        let err = parse_export(r#"{"a":{"complete":{}}}"#, "test").unwrap_err();
        assert!(err.message().contains("unknown key `complete`"));
        assert!(parse_export("[]", "test").is_err());
    }
}

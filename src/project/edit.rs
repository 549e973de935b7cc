//! Every change dsm writes to `meltano.yml` (and the project's `.env`) goes through here.
//!
//! Edits are made on the text, line by line, guided by the positioned YAML tree: untouched lines,
//! comments and key order stay as they are, and new keys are added in block style at the
//! indentation of their siblings. Files are written atomically (temp file, then rename).
//! Flow-style (`{...}`) mappings on the path are replaced as a whole.

use std::path::{Path, PathBuf};

use serde_json::Value as J;

use crate::error::{Error, Result};
use crate::files::{Mode, replace_atomically};
use crate::project::yaml::{self, Node, Value};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// The item with `name: <this>` of a sequence (plugins, environments, jobs, schedules).
    Item(String),
}

impl Seg {
    /// A key step.
    pub fn key(k: impl Into<String>) -> Seg {
        Seg::Key(k.into())
    }
    /// An item step.
    pub fn item(name: impl Into<String>) -> Seg {
        Seg::Item(name.into())
    }
}

/// The path of a plugin's entry: `plugins.<type>[name=..]`, or inside an environment's block.
pub fn plugin_path(environment: Option<&str>, plugin_type: &str, plugin: &str) -> Vec<Seg> {
    let mut p = Vec::new();
    if let Some(env) = environment {
        p.extend([Seg::key("environments"), Seg::item(env), Seg::key("config")]);
    }
    p.extend([
        Seg::key("plugins"),
        Seg::key(plugin_type),
        Seg::item(plugin),
    ]);
    p
}

/// A `meltano.yml` text being edited.
#[derive(Debug, Clone)]
pub struct Document {
    text: String,
}

impl Document {
    /// Wraps a document's text.
    pub fn new(text: impl Into<String>) -> Self {
        Document { text: text.into() }
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn tree(&self) -> Result<Node> {
        yaml::parse(&self.text).map_err(|e| {
            Error::config(format!("meltano.yml is not valid YAML: {}", e.message))
                .hint("fix the file before changing it with dsm")
        })
    }

    fn lines(&self) -> Vec<String> {
        self.text.lines().map(str::to_string).collect()
    }

    fn set_lines(&mut self, lines: Vec<String>) {
        let mut t = lines.join("\n");
        t.push('\n');
        self.text = t;
    }

    /// Sets the value at `path`, creating missing keys and named items.
    pub fn set(&mut self, path: &[Seg], value: &J) -> Result<()> {
        let tree = self.tree()?;
        let mut cur = &tree;
        let mut i = 0;
        loop {
            let last = i + 1 == path.len();
            match &path[i] {
                Seg::Key(k) => {
                    let existing = cur.get(k).zip(cur.key_pos(k));
                    match existing {
                        Some((_, kpos)) if last => {
                            let indent = (kpos.column - 1) as usize;
                            let block = render(&path[i..], value, indent);
                            return self.replace_key_block(kpos, block);
                        }
                        Some((child, kpos)) => {
                            let descend = match &child.value {
                                Value::Map(m) => !m.is_empty() && !self.is_flow(child),
                                Value::Seq(s) => !s.is_empty() && !self.is_flow(child),
                                _ => false,
                            };
                            if descend {
                                cur = child;
                                i += 1;
                                continue;
                            }
                            if !matches!(child.value, Value::Null)
                                && !matches!(&child.value, Value::Map(m) if m.is_empty())
                                && !matches!(&child.value, Value::Seq(s) if s.is_empty())
                            {
                                // A flow-style collection: rewrite it in block style with the change.
                                let mut merged = child.to_json();
                                set_json(&mut merged, &path[i + 1..], value);
                                let indent = (kpos.column - 1) as usize;
                                let block = render(&path[i..i + 1], &merged, indent);
                                return self.replace_key_block(kpos, block);
                            }
                            let indent = (kpos.column - 1) as usize;
                            let block = render(&path[i..], value, indent);
                            return self.replace_key_block(kpos, block);
                        }
                        None => {
                            let indent = self.map_indent(cur);
                            let block = render(&path[i..], value, indent);
                            return self.insert_into_map(cur, block);
                        }
                    }
                }
                Seg::Item(name) => {
                    let found = cur.items().iter().find(|n| {
                        n.get("name").map(Node::to_json) == Some(J::String(name.clone()))
                    });
                    match found {
                        Some(item) if last => {
                            // Replace the whole item.
                            let line = item.pos.line as usize - 1;
                            let dash = self.line_indent(line);
                            let block = render(&path[i..], value, dash);
                            return self.replace_item(item, dash, block);
                        }
                        Some(item) => {
                            cur = item;
                            i += 1;
                        }
                        None => {
                            let dash = cur
                                .items()
                                .first()
                                .map_or(0, |n| self.line_indent(n.pos.line as usize - 1));
                            let block = render(&path[i..], value, dash);
                            return self.insert_into_seq(cur, dash, block);
                        }
                    }
                }
            }
        }
    }

    /// Whether the document has the key or named item at `path`.
    pub fn has(&self, path: &[Seg]) -> Result<bool> {
        let tree = self.tree()?;
        let mut cur = &tree;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => cur.get(k),
                Seg::Item(name) => cur
                    .items()
                    .iter()
                    .find(|n| n.get("name").map(Node::to_json) == Some(J::String(name.clone()))),
            };
            match next {
                Some(n) => cur = n,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Appends `item` to the block-style, non-empty sequence at `path`, leaving its other items
    /// and their comments as they are. Returns `false` (and changes nothing) when there is no
    /// such sequence; the caller then writes the whole list with [`Document::set`].
    pub fn append(&mut self, path: &[Seg], item: &J) -> Result<bool> {
        let tree = self.tree()?;
        let mut cur = &tree;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => cur.get(k),
                Seg::Item(name) => cur
                    .items()
                    .iter()
                    .find(|n| n.get("name").map(Node::to_json) == Some(J::String(name.clone()))),
            };
            match next {
                Some(n) => cur = n,
                None => return Ok(false),
            }
        }
        if !matches!(&cur.value, Value::Seq(s) if !s.is_empty()) || self.is_flow(cur) {
            return Ok(false);
        }
        let last = cur.items().last().expect("checked non-empty");
        let dash = self.line_indent(last.pos.line as usize - 1);
        let block = vec![format!("{}- {}", " ".repeat(dash), inline(item))];
        self.insert_into_seq(cur, dash, block)?;
        Ok(true)
    }

    /// Removes the key at `path`; returns whether it was there. A mapping left empty becomes `{}`.
    pub fn remove(&mut self, path: &[Seg]) -> Result<bool> {
        let tree = self.tree()?;
        let Some((Seg::Key(last), parents)) = path.split_last() else {
            return Ok(false);
        };
        let mut cur = &tree;
        let mut parent_key: Option<(&Node, yaml::Pos)> = None;
        for seg in parents {
            match seg {
                Seg::Key(k) => {
                    let (Some(child), Some(pos)) = (cur.get(k), cur.key_pos(k)) else {
                        return Ok(false);
                    };
                    parent_key = Some((child, pos));
                    cur = child;
                }
                Seg::Item(name) => {
                    let Some(item) = cur.items().iter().find(|n| {
                        n.get("name").map(Node::to_json) == Some(J::String(name.clone()))
                    }) else {
                        return Ok(false);
                    };
                    parent_key = None;
                    cur = item;
                }
            }
        }
        let Some(kpos) = cur.key_pos(last) else {
            return Ok(false);
        };
        if self.is_flow(cur) {
            let mut j = cur.to_json();
            if let J::Object(m) = &mut j {
                m.shift_remove(last);
            }
            let (_, ppos) = parent_key.expect("a flow mapping always has a parent key");
            let name = parents.last().map_or(String::new(), |s| match s {
                Seg::Key(k) | Seg::Item(k) => k.clone(),
            });
            let block = render(&[Seg::Key(name)], &j, (ppos.column - 1) as usize);
            self.replace_key_block(ppos, block)?;
            return Ok(true);
        }
        let only_entry = matches!(&cur.value, Value::Map(m) if m.len() == 1);
        match (only_entry, parent_key) {
            (true, Some((_, ppos))) => {
                let name = match parents.last() {
                    Some(Seg::Key(k)) => k.clone(),
                    _ => unreachable!("parent_key is only set under a key"),
                };
                let block = vec![format!(
                    "{}{}: {{}}",
                    " ".repeat((ppos.column - 1) as usize),
                    yaml_key(&name)
                )];
                self.replace_key_block(ppos, block)?;
            }
            _ => {
                let mut lines = self.lines();
                let start = kpos.line as usize - 1;
                let end = self.block_end(start, (kpos.column - 1) as usize, true);
                lines.drain(start..end);
                self.set_lines(lines);
            }
        }
        Ok(true)
    }

    /// Removes the item with `name: <name>` from the sequence at `seq_path` (a job, a schedule);
    /// returns whether it was there. A sequence left empty becomes `[]`.
    pub fn remove_item(&mut self, seq_path: &[Seg], name: &str) -> Result<bool> {
        let tree = self.tree()?;
        let mut cur = &tree;
        let mut key_pos = None;
        for seg in seq_path {
            let next = match seg {
                Seg::Key(k) => {
                    key_pos = cur.key_pos(k);
                    cur.get(k)
                }
                Seg::Item(n) => {
                    key_pos = None;
                    cur.items()
                        .iter()
                        .find(|i| i.get("name").map(Node::to_json) == Some(J::String(n.clone())))
                }
            };
            let Some(next) = next else { return Ok(false) };
            cur = next;
        }
        let Some(item) = cur
            .items()
            .iter()
            .find(|i| i.get("name").map(Node::to_json) == Some(J::String(name.to_string())))
        else {
            return Ok(false);
        };
        if self.is_flow(cur) {
            let mut j = cur.to_json();
            if let J::Array(items) = &mut j {
                items.retain(|i| i.get("name") != Some(&J::String(name.to_string())));
            }
            return self.set(seq_path, &j).map(|()| true);
        }
        if cur.items().len() == 1
            && let (Some(kpos), Some(Seg::Key(k))) = (key_pos, seq_path.last())
        {
            let block = vec![format!(
                "{}{}: []",
                " ".repeat((kpos.column - 1) as usize),
                yaml_key(k)
            )];
            self.replace_key_block(kpos, block)?;
            return Ok(true);
        }
        let start = item.pos.line as usize - 1;
        let dash = self.line_indent(start);
        let end = self.item_end(start, dash);
        let mut lines = self.lines();
        lines.drain(start..end);
        self.set_lines(lines);
        Ok(true)
    }

    fn is_flow(&self, node: &Node) -> bool {
        let lines = self.lines();
        let Some(line) = lines.get((node.pos.line as usize).saturating_sub(1)) else {
            return false;
        };
        let col = (node.pos.column as usize).saturating_sub(1);
        matches!(line.chars().nth(col), Some('{' | '['))
    }

    fn line_indent(&self, line: usize) -> usize {
        self.text
            .lines()
            .nth(line)
            .map_or(0, |l| l.len() - l.trim_start().len())
    }

    fn map_indent(&self, map: &Node) -> usize {
        match &map.value {
            Value::Map(entries) if !entries.is_empty() => (entries[0].0.pos.column - 1) as usize,
            _ => 0,
        }
    }

    /// The line index after the block that starts at `start` with keys at `indent`. With
    /// `own_only`, the block is just the entry at `start` (children indented deeper, or a
    /// sequence at the same indent).
    fn block_end(&self, start: usize, indent: usize, own_only: bool) -> usize {
        let lines = self.lines();
        let mut end = start + 1;
        let mut last_content = start + 1;
        while end < lines.len() {
            let l = &lines[end];
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                end += 1;
                continue;
            }
            let ind = l.len() - t.len();
            let belongs = if own_only {
                ind > indent || (ind == indent && (t.starts_with("- ") || t == "-"))
            } else {
                ind >= indent
            };
            if !belongs {
                break;
            }
            end += 1;
            last_content = end;
        }
        last_content
    }

    fn replace_key_block(&mut self, kpos: yaml::Pos, block: Vec<String>) -> Result<()> {
        let mut lines = self.lines();
        let start = kpos.line as usize - 1;
        let end = self.block_end(start, (kpos.column - 1) as usize, true);
        lines.splice(start..end, block);
        self.set_lines(lines);
        Ok(())
    }

    fn insert_into_map(&mut self, map: &Node, block: Vec<String>) -> Result<()> {
        let mut lines = self.lines();
        let at = match &map.value {
            Value::Map(entries) if !entries.is_empty() => {
                let first = entries[0].0.pos;
                let indent = (first.column - 1) as usize;
                if indent == 0 {
                    // Top level: after the last non-blank line.
                    lines
                        .iter()
                        .rposition(|l| !l.trim().is_empty())
                        .map_or(0, |i| i + 1)
                } else {
                    self.block_end(first.line as usize - 1, indent, false)
                }
            }
            _ => lines.len(),
        };
        lines.splice(at..at, block);
        self.set_lines(lines);
        Ok(())
    }

    fn insert_into_seq(&mut self, seq: &Node, dash: usize, block: Vec<String>) -> Result<()> {
        let Some(last) = seq.items().last() else {
            return Err(Error::config(
                "cannot add to an empty sequence written in flow style",
            ));
        };
        let start = last.pos.line as usize - 1;
        let end = self.item_end(start, dash);
        let mut lines = self.lines();
        lines.splice(end..end, block);
        self.set_lines(lines);
        Ok(())
    }

    fn item_end(&self, start: usize, dash: usize) -> usize {
        let lines = self.lines();
        let mut end = start + 1;
        let mut last_content = start + 1;
        while end < lines.len() {
            let l = &lines[end];
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                end += 1;
                continue;
            }
            if l.len() - t.len() <= dash {
                break;
            }
            end += 1;
            last_content = end;
        }
        last_content
    }

    fn replace_item(&mut self, item: &Node, dash: usize, block: Vec<String>) -> Result<()> {
        let start = item.pos.line as usize - 1;
        let end = self.item_end(start, dash);
        let mut lines = self.lines();
        lines.splice(start..end, block);
        self.set_lines(lines);
        Ok(())
    }
}

fn set_json(target: &mut J, path: &[Seg], value: &J) {
    let Some((first, rest)) = path.split_first() else {
        *target = value.clone();
        return;
    };
    match first {
        Seg::Key(k) => {
            if !target.is_object() {
                *target = J::Object(serde_json::Map::new());
            }
            let m = target.as_object_mut().expect("just made an object");
            set_json(m.entry(k.clone()).or_insert(J::Null), rest, value);
        }
        Seg::Item(name) => {
            if !target.is_array() {
                *target = J::Array(Vec::new());
            }
            let a = target.as_array_mut().expect("just made an array");
            let pos = a
                .iter()
                .position(|v| v.get("name") == Some(&J::String(name.clone())));
            let idx = match pos {
                Some(i) => i,
                None => {
                    a.push(serde_json::json!({ "name": name }));
                    a.len() - 1
                }
            };
            set_json(&mut a[idx], rest, value);
        }
    }
}

/// Renders `path` (relative to a mapping or sequence at `indent`) holding `value`, block style.
fn render(path: &[Seg], value: &J, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    match path.split_first() {
        None => render_value_lines(value, indent),
        Some((Seg::Key(k), [])) => key_value(&pad, k, value, indent),
        Some((Seg::Key(k), rest)) => {
            let mut out = vec![format!("{pad}{}:", yaml_key(k))];
            let child_indent = if matches!(rest[0], Seg::Item(_)) {
                indent
            } else {
                indent + 2
            };
            out.extend(render(rest, value, child_indent));
            out
        }
        Some((Seg::Item(name), rest)) => {
            let inner = if rest.is_empty() {
                let mut obj = serde_json::Map::new();
                obj.insert("name".into(), J::String(name.clone()));
                if let J::Object(m) = value {
                    for (k, v) in m {
                        if k != "name" {
                            obj.insert(k.clone(), v.clone());
                        }
                    }
                }
                render_value_lines(&J::Object(obj), indent + 2)
            } else {
                let mut v = vec![format!(
                    "{}name: {}",
                    " ".repeat(indent + 2),
                    inline(&J::String(name.clone()))
                )];
                v.extend(render(rest, value, indent + 2));
                v
            };
            inner
                .into_iter()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        format!("{pad}- {}", &l[indent + 2..])
                    } else {
                        l
                    }
                })
                .collect()
        }
    }
}

fn key_value(pad: &str, k: &str, value: &J, indent: usize) -> Vec<String> {
    match value {
        J::Object(m) if !m.is_empty() => {
            let mut out = vec![format!("{pad}{}:", yaml_key(k))];
            out.extend(render_value_lines(value, indent + 2));
            out
        }
        J::Array(a) if !a.is_empty() && a.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let mut out = vec![format!("{pad}{}:", yaml_key(k))];
            out.extend(a.iter().map(|v| format!("{pad}- {}", inline(v))));
            out
        }
        _ => vec![format!("{pad}{}: {}", yaml_key(k), inline(value))],
    }
}

fn render_value_lines(value: &J, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    match value {
        J::Object(m) => m
            .iter()
            .flat_map(|(k, v)| key_value(&pad, k, v, indent))
            .collect(),
        other => vec![format!("{pad}{}", inline(other))],
    }
}

fn yaml_key(k: &str) -> String {
    inline(&J::String(k.to_string()))
}

/// A value on one line: plain scalars where YAML reads them back the same, JSON otherwise.
pub fn inline(v: &J) -> String {
    match v {
        J::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./@$+".contains(c))
                && !s.starts_with(['-', '.', '@', '$'])
                && !matches!(
                    s.to_lowercase().as_str(),
                    "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
                )
                && s.parse::<f64>().is_err()
                && !s.starts_with(|c: char| c.is_ascii_digit());
            if plain {
                s.clone()
            } else {
                serde_json::to_string(s).expect("strings serialise")
            }
        }
        J::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        J::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}: {}",
                    serde_json::to_string(k).expect("strings serialise"),
                    inline(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Writes `path` with `text` as a file to commit and share: readable by everyone (0644 on Unix),
/// where other atomic writes leave a new file owner-only.
pub fn write_new_shared(path: &Path, text: &str) -> Result<()> {
    replace_atomically(path, text.as_bytes(), Mode::Set(0o644))?;
    Ok(())
}

/// Edits `meltano.yml` under `root` with `f` and writes it back atomically when it changed.
pub fn edit_project_file<T>(root: &Path, f: impl FnOnce(&mut Document) -> Result<T>) -> Result<T> {
    edit_file(root, Path::new(super::PROJECT_FILE), f)
}

/// Edits the file that defines what `path` leads into, as Meltano does: a plugin, environment,
/// job or schedule that an `include_paths` file defines is changed in that file, never given a
/// second definition in `meltano.yml`. Anything else, and anything new, goes to `meltano.yml`.
pub fn edit_defining_file<T>(
    root: &Path,
    path: &[Seg],
    f: impl FnOnce(&mut Document) -> Result<T>,
) -> Result<T> {
    let file = defining_file(root, owner(path))?;
    edit_file(root, &file, f)
}

/// The part of `path` naming what a project file defines: `plugins.<type>[name]`,
/// `environments[name]`, `jobs[name]` or `schedules[name]`; empty for anything else.
fn owner(path: &[Seg]) -> &[Seg] {
    match path {
        [Seg::Key(p), Seg::Key(_), Seg::Item(_), ..] if p == "plugins" => &path[..3],
        [Seg::Key(k), Seg::Item(_), ..]
            if ["environments", "jobs", "schedules"].contains(&k.as_str()) =>
        {
            &path[..2]
        }
        _ => &[],
    }
}

/// The project's files, relative to `root`: `meltano.yml`, then the files its
/// `include_paths` name, in the order Meltano reads them.
pub(crate) fn project_files(root: &Path) -> Result<Vec<PathBuf>> {
    let main = PathBuf::from(super::PROJECT_FILE);
    let text = std::fs::read_to_string(root.join(&main))?;
    let doc = Document::new(text);
    let mut files = vec![main];
    files.extend(super::included_files(root, &doc.tree()?));
    Ok(files)
}

/// The file, relative to `root`, whose text has `owner`: `meltano.yml` first, then the
/// included files in the order Meltano reads them; `meltano.yml` when none has it.
pub(crate) fn defining_file(root: &Path, owner: &[Seg]) -> Result<PathBuf> {
    let main = PathBuf::from(super::PROJECT_FILE);
    if owner.is_empty() {
        return Ok(main);
    }
    let text = std::fs::read_to_string(root.join(&main))?;
    let doc = Document::new(text);
    if doc.has(owner)? {
        return Ok(main);
    }
    for rel in super::included_files(root, &doc.tree()?) {
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        if Document::new(text).has(owner).unwrap_or(false) {
            return Ok(rel);
        }
    }
    Ok(main)
}

thread_local! {
    /// Whether this thread holds the project's edit lock (taking it again is a no-op).
    static LOCK_HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The project's edit lock, held until dropped (see [`lock_project`]).
#[derive(Debug)]
pub struct ProjectLock {
    file: Option<std::fs::File>,
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            LOCK_HELD.with(|h| h.set(false));
        }
    }
}

/// Takes the project's edit lock: an exclusive lock on the project folder, so `dsm` commands
/// and `dsm serve` changing the same project files wait for each other instead of one
/// silently overwriting the other's change. Re-entrant on the same thread.
pub fn lock_project(root: &Path) -> Result<ProjectLock> {
    if LOCK_HELD.with(std::cell::Cell::get) {
        return Ok(ProjectLock { file: None });
    }
    let file = std::fs::File::open(root)?;
    file.lock().map_err(|e| {
        Error::failed(format!(
            "cannot lock the project folder `{}` for editing: {e}",
            root.display()
        ))
    })?;
    LOCK_HELD.with(|h| h.set(true));
    Ok(ProjectLock { file: Some(file) })
}

/// Edits the project file `rel` (relative to `root`) with `f` under the project's edit lock;
/// writes it back atomically when it changed.
fn edit_file<T>(root: &Path, rel: &Path, f: impl FnOnce(&mut Document) -> Result<T>) -> Result<T> {
    let _lock = lock_project(root)?;
    let path = root.join(rel);
    let text = std::fs::read_to_string(&path)?;
    let mut doc = Document::new(text.clone());
    let out = f(&mut doc)?;
    if doc.text() != text {
        // Never write a file dsm itself cannot read back.
        yaml::parse(doc.text()).map_err(|e| {
            Error::failed(format!(
                "dsm produced invalid YAML while editing {}: {}",
                rel.display(),
                e.message
            ))
            .hint(format!(
                "this is a bug in dsm; {} was left unchanged",
                rel.display()
            ))
        })?;
        replace_atomically(&path, doc.text().as_bytes(), Mode::Keep)?;
    }
    Ok(out)
}

/// Sets `KEY=value` in the project's `.env` (replacing an existing line), created owner-only.
pub fn dotenv_set(root: &Path, key: &str, value: &str) -> Result<()> {
    let path = root.join(".env");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let quoted = if value.contains('\'') {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        format!("'{value}'")
    };
    let line = format!("{key}={quoted}");
    let mut found = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if dotenv_key(l) == Some(key) {
                found = true;
                line.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !found {
        lines.push(line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // A new `.env` is owner-only; an existing one keeps its permissions.
    replace_atomically(&path, out.as_bytes(), Mode::Keep)?;
    Ok(())
}

/// Removes the given keys from `.env`; returns how many lines went.
pub fn dotenv_unset(root: &Path, keys: &[String]) -> Result<usize> {
    let path = root.join(".env");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(0);
    };
    let before = text.lines().count();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !dotenv_key(l).is_some_and(|k| keys.iter().any(|x| x == k)))
        .collect();
    let removed = before - kept.len();
    if removed > 0 {
        let mut out = kept.join("\n");
        out.push('\n');
        replace_atomically(&path, out.as_bytes(), Mode::Keep)?;
    }
    Ok(removed)
}

fn dotenv_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("export ").unwrap_or(t);
    let (k, _) = t.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.starts_with('#')).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# my project
version: 1
plugins:
  extractors:
  - name: tap-x   # the source
    namespace: tap_x
    config:
      host: a   # keep me
      port: 1
  - name: tap-y
    namespace: tap_y
  loaders:
  - name: target-z
    namespace: z
environments:
- name: dev
- name: prod
  env:
    A: b
";

    fn set(doc: &str, path: &[Seg], v: J) -> String {
        let mut d = Document::new(doc);
        d.set(path, &v).unwrap();
        yaml::parse(d.text()).expect("still valid YAML");
        d.text().to_string()
    }

    #[test]
    fn replacing_a_value_keeps_every_other_line() {
        let mut path = plugin_path(None, "extractors", "tap-x");
        path.extend([Seg::key("config"), Seg::key("port")]);
        let out = set(DOC, &path, J::from(5));
        assert_eq!(out, DOC.replace("      port: 1", "      port: 5"));
    }

    #[test]
    fn adding_config_to_a_plugin_without_any() {
        let mut path = plugin_path(None, "extractors", "tap-y");
        path.extend([Seg::key("config"), Seg::key("db.name")]);
        let out = set(DOC, &path, J::from("x y"));
        assert!(
            out.contains("  - name: tap-y\n    namespace: tap_y\n    config:\n      db.name: \"x y\"\n  loaders:"),
            "{out}"
        );
    }

    #[test]
    fn adding_to_an_environment_creates_the_block() {
        let mut path = plugin_path(Some("dev"), "extractors", "tap-x");
        path.extend([Seg::key("config"), Seg::key("port")]);
        let out = set(DOC, &path, J::from(7));
        let tree = yaml::parse(&out).unwrap().to_json();
        assert_eq!(
            tree["environments"][0],
            serde_json::json!({"name": "dev", "config": {"plugins": {"extractors": [{"name": "tap-x", "config": {"port": 7}}]}}})
        );
        assert!(out.starts_with("# my project\n"));
        assert_eq!(tree["environments"][1]["env"]["A"], "b");
    }

    #[test]
    fn removing_the_last_key_leaves_an_empty_mapping() {
        let mut d = Document::new(DOC);
        let mut path = plugin_path(None, "extractors", "tap-x");
        path.extend([Seg::key("config"), Seg::key("host")]);
        assert!(d.remove(&path).unwrap());
        path.pop();
        path.push(Seg::key("port"));
        assert!(d.remove(&path).unwrap());
        let tree = yaml::parse(d.text()).unwrap().to_json();
        assert_eq!(
            tree["plugins"]["extractors"][0]["config"],
            serde_json::json!({})
        );
        assert!(d.text().contains("  - name: tap-x   # the source\n"));
        path.pop();
        path.push(Seg::key("nothing"));
        assert!(!d.remove(&path).unwrap());
    }

    #[test]
    fn flow_mappings_are_rewritten_with_the_change() {
        let doc = "plugins:\n  extractors:\n  - name: t\n    config: {a: 1}\n";
        let mut path = plugin_path(None, "extractors", "t");
        path.extend([Seg::key("config"), Seg::key("b")]);
        let out = set(doc, &path, J::from(true));
        assert_eq!(
            yaml::parse(&out).unwrap().to_json()["plugins"]["extractors"][0]["config"],
            serde_json::json!({"a": 1, "b": true})
        );
    }

    #[test]
    fn adding_a_plugin_item() {
        let out = set(
            DOC,
            &plugin_path(None, "loaders", "target-new"),
            serde_json::json!({"namespace": "n", "pip_url": "p"}),
        );
        let tree = yaml::parse(&out).unwrap().to_json();
        assert_eq!(
            tree["plugins"]["loaders"][1],
            serde_json::json!({"name": "target-new", "namespace": "n", "pip_url": "p"})
        );
    }

    #[test]
    fn dotenv_set_and_unset() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".env"), "# c\nA=1\n").unwrap();
        dotenv_set(tmp.path(), "B", "it's").unwrap();
        dotenv_set(tmp.path(), "A", "2").unwrap();
        let text = std::fs::read_to_string(tmp.path().join(".env")).unwrap();
        assert_eq!(text, "# c\nA='2'\nB=\"it's\"\n");
        let vars: Vec<(String, String)> = dotenvy::from_path_iter(tmp.path().join(".env"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            vars,
            [("A".into(), "2".into()), ("B".into(), "it's".into())]
        );
        assert_eq!(dotenv_unset(tmp.path(), &["A".into()]).unwrap(), 1);
    }

    #[test]
    fn append_keeps_the_other_items_and_their_comments() {
        let mut doc = Document::new(
            "plugins:\n  extractors:\n  - name: tap-x\n    select:\n    - a.b   # why\n    - '!c.d'\n  - name: tap-y\n",
        );
        let path = [
            Seg::key("plugins"),
            Seg::key("extractors"),
            Seg::item("tap-x"),
            Seg::key("select"),
        ];
        assert!(doc.append(&path, &J::String("e.*".into())).unwrap());
        assert_eq!(
            doc.text(),
            "plugins:\n  extractors:\n  - name: tap-x\n    select:\n    - a.b   # why\n    - '!c.d'\n    - \"e.*\"\n  - name: tap-y\n"
        );
        let missing = [
            Seg::key("plugins"),
            Seg::key("extractors"),
            Seg::item("tap-y"),
            Seg::key("select"),
        ];
        assert!(!doc.append(&missing, &J::String("x".into())).unwrap());
    }
}

//! The store boundary (issue 19): all SQL lives under `src/store/`. No other module of the
//! library names `rusqlite`, and the store itself knows nothing of the command line (`clap`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files under `src/` that name `word`, relative to the package, excluding those under
/// `src/<except>/`.
fn naming(word: &str, inside: Option<&str>, except: Option<&str>) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(
        &inside.map_or_else(|| src.clone(), |d| src.join(d)),
        &mut files,
    );
    let mut hits: Vec<String> = files
        .iter()
        .filter(|f| except.is_none_or(|e| !f.starts_with(src.join(e))))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains(word))
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    hits.sort();
    hits
}

#[test]
fn no_module_outside_the_store_names_rusqlite() {
    let hits = naming("rusqlite", None, Some("store"));
    assert!(
        hits.is_empty(),
        "SQL belongs behind the store's traits in src/store/; these files name rusqlite: {hits:?}"
    );
}

#[test]
fn the_store_knows_nothing_of_clap() {
    let hits = naming("clap", Some("store"), None);
    assert!(
        hits.is_empty(),
        "give the command its own clap value type; these store files name clap: {hits:?}"
    );
}

#[test]
fn the_boundary_check_sees_the_store_itself() {
    // Guards the check: were the walk broken, the tests above would pass on nothing.
    assert!(!naming("rusqlite", Some("store"), None).is_empty());
}

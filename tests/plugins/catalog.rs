//! The catalog of known plugins in `taps/catalog/`: well-formed Meltano lock-file shaped
//! entries, enough of them, and built-in entries that match what the binaries say in `--about`.

use std::path::Path;

use serde_json::Value;

use crate::support::{PLUGINS, run};

const KINDS: [&str; 13] = [
    "string",
    "integer",
    "boolean",
    "decimal",
    "date_iso8601",
    "email",
    "password",
    "oauth",
    "options",
    "file",
    "array",
    "object",
    "hidden",
];

fn entries() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("taps/catalog");
    let mut out = Vec::new();
    for kind in std::fs::read_dir(&root).unwrap() {
        let kind = kind.unwrap();
        if !kind.file_type().unwrap().is_dir() {
            continue; // README.md
        }
        for f in std::fs::read_dir(kind.path()).unwrap() {
            let f = f.unwrap();
            let text = std::fs::read_to_string(f.path()).unwrap();
            let rel = format!(
                "{}/{}",
                kind.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            out.push((rel, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn catalog_entries_are_well_formed_lock_files() {
    let all = entries();
    for (rel, e) in &all {
        let (dir, file) = rel.split_once('/').unwrap();
        assert_eq!(e["plugin_type"], dir, "{rel}");
        assert_eq!(
            file,
            format!(
                "{}--{}.json",
                e["name"].as_str().unwrap(),
                e["variant"].as_str().unwrap()
            ),
            "{rel}"
        );
        for key in ["namespace", "label", "description", "executable"] {
            assert!(e[key].is_string(), "{rel}: `{key}`");
        }
        assert!(e["capabilities"].is_array(), "{rel}");
        assert!(e["settings_group_validation"].is_array(), "{rel}");
        let settings = e["settings"].as_array().unwrap();
        assert!(!settings.is_empty(), "{rel}");
        for s in settings {
            assert!(s["name"].is_string(), "{rel}: {s}");
            assert!(
                KINDS.contains(&s["kind"].as_str().unwrap()),
                "{rel}: kind of {s}"
            );
            assert!(s["sensitive"].is_boolean(), "{rel}: {s}");
        }
        if e["variant"] == "dsm" {
            assert!(e.get("pip_url").is_none(), "{rel}");
        } else {
            let pip = e["pip_url"].as_str().unwrap();
            assert!(pip.contains("=="), "{rel}: pip_url pins no version");
            assert!(
                e["settings_source"].is_string(),
                "{rel}: no settings_source"
            );
        }
    }
    let python: Vec<&Value> = all
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["variant"] != "dsm")
        .collect();
    assert!(
        python.len() >= 25,
        "only {} non-built-in entries",
        python.len()
    );
    for kind in ["extractors", "loaders"] {
        assert!(python.iter().filter(|e| e["plugin_type"] == kind).count() >= 8);
    }
}

#[test]
fn built_in_catalog_entries_match_the_binaries_about() {
    let all = entries();
    let dir = tempfile::tempdir().unwrap();
    for name in PLUGINS {
        let (rel, entry) = all
            .iter()
            .find(|(_, e)| e["name"] == name && e["variant"] == "dsm")
            .unwrap_or_else(|| panic!("no catalog entry for built-in `{name}`"));
        let about: Value = serde_json::from_str(
            &run(dir.path(), name, &["--about", "--format", "json"], b"").stdout,
        )
        .unwrap();
        let from_about: Vec<&String> = about["settings"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        let in_catalog: Vec<&str> = entry["settings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            from_about, in_catalog,
            "{rel} is stale: run `scripts/refresh-catalog.py --builtins target/debug --skip-python`"
        );
        assert_eq!(
            about["capabilities"], entry["capabilities"],
            "{rel} is stale"
        );
    }
}

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
        assert!(
            e["settings_source"].is_string(),
            "{rel}: no settings_source"
        );
        for s in e["settings"].as_array().unwrap() {
            assert!(s["name"].is_string(), "{rel}: {s}");
            assert!(
                KINDS.contains(&s["kind"].as_str().unwrap()),
                "{rel}: kind of {s}"
            );
            assert!(s["sensitive"].is_boolean(), "{rel}: {s}");
            assert!(s["label"].is_string(), "{rel}: {s}");
            if matches!(s["kind"].as_str(), Some("password" | "oauth")) {
                assert_eq!(s["sensitive"], true, "{rel}: {s}");
            }
            if s["kind"] == "options" {
                assert!(!s["options"].as_array().unwrap().is_empty(), "{rel}: {s}");
            }
        }
        if e["variant"] == "dsm" {
            assert!(e.get("pip_url").is_none(), "{rel}");
        } else if dir != "utilities" {
            // (Some utilities run from a container image and install nothing.)
            assert!(
                !e["pip_url"].as_str().unwrap_or_default().is_empty(),
                "{rel}: no pip_url"
            );
        }
    }
}

fn index() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("taps/catalog/index.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn catalog_covers_the_most_used_plugins_of_meltanos_index() {
    let all = entries();
    let index = index();
    let source = &index["source"];
    assert_eq!(source["repository"], "meltano/hub");
    assert_eq!(source["commit"].as_str().unwrap().len(), 40, "{source}");
    assert!(source["date"].is_string(), "{source}");
    let rows = index["plugins"].as_array().unwrap();
    // The index lists exactly the files that are not dsm's built-ins.
    let mut listed: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}/{}--{}.json",
                r["plugin_type"].as_str().unwrap(),
                r["name"].as_str().unwrap(),
                r["variant"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort();
    let files: Vec<String> = all
        .iter()
        .filter(|(_, e)| e["variant"] != "dsm")
        .map(|(rel, _)| rel.clone())
        .collect();
    assert_eq!(listed, files);
    let defaults = |ty: &str| {
        rows.iter()
            .filter(|r| r["plugin_type"] == ty && r["default"] == true)
            .count()
    };
    // The 100 most used extractors, every loader, the mappers and utilities: one default
    // variant each.
    assert_eq!(defaults("extractors"), 100);
    assert!(defaults("loaders") >= 50, "{}", defaults("loaders"));
    assert!(defaults("mappers") >= 3);
    assert!(defaults("utilities") >= 20);
    for (ty, name) in [
        ("extractors", "tap-github"),
        ("extractors", "tap-postgres"),
        ("extractors", "tap-salesforce"),
        ("extractors", "tap-hubspot"),
        ("loaders", "target-postgres"),
        ("loaders", "target-snowflake"),
        ("loaders", "target-bigquery"),
        ("mappers", "meltano-map-transformer"),
        ("utilities", "dbt-postgres"),
    ] {
        let row = rows
            .iter()
            .find(|r| r["plugin_type"] == ty && r["name"] == name && r["default"] == true)
            .unwrap_or_else(|| panic!("no default variant of {ty} `{name}`"));
        let (_, entry) = all
            .iter()
            .find(|(rel, _)| {
                *rel == format!("{ty}/{name}--{}.json", row["variant"].as_str().unwrap())
            })
            .unwrap();
        assert!(
            !entry["settings"].as_array().unwrap().is_empty() || ty == "mappers",
            "{ty} `{name}` has no settings"
        );
    }
    // Ranks follow the usage figures: a name ranked higher has at least as many projects.
    let ex: Vec<&Value> = rows
        .iter()
        .filter(|r| r["plugin_type"] == "extractors" && r["default"] == true)
        .collect();
    assert_eq!(ex[0]["rank"], 1);
    assert!(
        ex.windows(2)
            .all(|w| w[0]["rank"].as_u64() < w[1]["rank"].as_u64())
    );
    // Nearly every extractor and loader comes with settings to build a form from.
    let with_settings = all
        .iter()
        .filter(|(rel, _)| !rel.starts_with("utilities") && !rel.starts_with("mappers"))
        .filter(|(_, e)| !e["settings"].as_array().unwrap().is_empty())
        .count();
    let total = all
        .iter()
        .filter(|(rel, _)| !rel.starts_with("utilities") && !rel.starts_with("mappers"))
        .count();
    assert!(
        with_settings * 100 >= total * 95,
        "{with_settings} of {total}"
    );
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
            "{rel} is stale: run `scripts/refresh-catalog.py --builtins target/debug`"
        );
        assert_eq!(
            about["capabilities"], entry["capabilities"],
            "{rel} is stale"
        );
    }
}

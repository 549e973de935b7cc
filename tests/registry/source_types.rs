//! `dsm sources list`: a source's type comes from what the plugin is (the built-in it runs, the
//! package it installs, the known plugin it inherits from or whose namespace it has), not only
//! from its name.

use std::process::Command;

use serde_json::Value;

const YML: &str = r#"version: 1
default_environment: dev
environments:
- name: dev
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
  # The built-in tap-csv under other names: inherited, and run as a custom plugin.
  - name: landing-files
    inherit_from: tap-csv
  - name: exports
    namespace: exports
    executable: tap-csv
  # A known package under a name that says nothing.
  - name: crm
    namespace: crm
    pip_url: meltanolabs-tap-postgres==0.2.0
  # A known plugin's namespace, installed from a fork.
  - name: sheets
    namespace: tap_spreadsheets_anywhere
    pip_url: git+https://example.invalid/fork/sheets.git
  # Inherits from a known plugin's variant that the project does not have.
  - name: code
    inherit_from: tap-github
    variant: meltanolabs
  # Known to Meltano's index by name: the index's keywords say what it is.
  - name: tap-zendesk
  # A known name, but the package it installs is another known plugin.
  - name: tap-github
    namespace: tap_github
    pip_url: git+https://github.com/singer-io/tap-mysql.git
  loaders:
  - name: lake
    namespace: lake
    executable: target-jsonl
"#;

#[test]
fn sources_get_their_type_from_what_the_plugin_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meltano.yml"), YML).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    cmd.args(["--format", "json", "sources", "list"])
        .current_dir(dir.path());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("DSM_") || key.starts_with("MELTANO_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let type_of = |name: &str| {
        let item = doc
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` in {doc}"));
        (
            item["type"].as_str().unwrap().to_string(),
            item["provider"].as_str().map(String::from),
        )
    };
    assert_eq!(type_of("tap-csv").0, "file");
    assert_eq!(type_of("landing-files").0, "file");
    assert_eq!(
        type_of("exports"),
        ("file".into(), Some("CSV files".into()))
    );
    assert_eq!(
        type_of("crm"),
        ("database".into(), Some("PostgreSQL".into()))
    );
    assert_eq!(type_of("sheets").0, "file");
    assert_eq!(type_of("code"), ("api".into(), Some("GitHub".into())));
    let code = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "code")
        .unwrap();
    assert_eq!(code["inherit_from"], "tap-github");
    assert_eq!(type_of("tap-zendesk").0, "api");
    assert_eq!(
        type_of("tap-github"),
        ("database".into(), Some("MySQL".into()))
    );
    assert_eq!(type_of("lake").0, "file");
}

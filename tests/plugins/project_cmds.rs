//! `dsm add`, `dsm remove` and `dsm plugins list` on real project files (no network).

use serde_json::Value;

use crate::support::Project;

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

const YML: &str = "\
# top comment
version: 1
default_environment: dev
plugins:
  extractors:
  - name: tap-csv   # the source
    variant: dsm
    config:
      files: []   # keep me
environments:
- name: dev
  config:
    plugins:
      loaders:
      - name: target-jsonl
        config:
          destination_path: out
- name: prod   # production
";

#[test]
fn add_by_name_writes_the_entry_and_meltanos_lock_file_keeping_comments() {
    let p = Project::new(YML);
    let run = p.dsm(&["add", "target-csv", "--variant", "meltanolabs"]);
    run.assert_ok();
    let text = p.read("meltano.yml");
    // Everything that was there stays byte for byte, in order.
    assert!(text.starts_with("# top comment\nversion: 1\n"), "{text}");
    assert!(
        text.contains("  - name: tap-csv   # the source\n"),
        "{text}"
    );
    assert!(text.contains("      files: []   # keep me\n"), "{text}");
    assert!(text.contains("- name: prod   # production\n"), "{text}");
    assert!(
        text.contains(
            "  loaders:\n  - name: target-csv\n    variant: meltanolabs\n    pip_url: meltanolabs-target-csv\n"
        ),
        "{text}"
    );
    // The lock file is the catalog definition, as Meltano 4 writes it.
    let lock: Value =
        serde_json::from_str(&p.read("plugins/loaders/target-csv--meltanolabs.lock")).unwrap();
    assert_eq!(lock["name"], "target-csv");
    assert_eq!(lock["variant"], "meltanolabs");
    assert_eq!(lock["plugin_type"], "loaders");
    assert!(lock["settings"].as_array().unwrap().len() > 3);
    // The project loads, and the plugin is defined by that lock file.
    let list = p.dsm(&["plugins", "list", "--format", "json"]);
    list.assert_ok();
    let items: Value = serde_json::from_str(&list.stdout).unwrap();
    let csv = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "target-csv")
        .unwrap();
    assert_eq!(csv["definition"]["kind"], "locked");
    assert_eq!(csv["status"], "missing");
}

#[test]
fn add_without_a_variant_prefers_the_built_in_one_and_add_twice_is_a_no_op() {
    let p = Project::new(YML);
    p.dsm(&["add", "loader", "target-sqlite"]).assert_ok();
    let text = p.read("meltano.yml");
    assert!(
        text.contains("  - name: target-sqlite\n    variant: dsm\n"),
        "{text}"
    );
    assert!(!text.contains("pip_url"), "{text}");
    let again = p.dsm(&["add", "loader", "target-sqlite"]);
    again.assert_ok();
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(p.read("meltano.yml"), text);
    let list = p.dsm(&["plugin", "list"]);
    list.assert_ok();
    assert!(list.stdout.contains("target-sqlite"), "{}", list.stdout);
    assert!(list.stdout.contains("built-in"), "{}", list.stdout);
}

#[test]
fn unknown_names_get_did_you_mean_and_exit_2() {
    let p = Project::new(YML);
    let run = p.dsm(&["add", "tap-gihtub"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("extractor `tap-gihtub` is not in dsm's catalog"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("did you mean `tap-github`?"),
        "{}",
        run.stderr
    );
    let run = p.dsm(&["add", "loader", "target-csv", "--variant", "nope"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("`meltanolabs`"), "{}", run.stderr);
    let run = p.dsm(&["add", "something"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("cannot tell the plugin type"),
        "{}",
        run.stderr
    );
    assert_eq!(p.read("meltano.yml"), YML);
}

#[test]
fn add_as_with_an_unknown_variant_is_an_error_listing_the_known_ones() {
    let p = Project::new(YML);
    // tap-csv is in the project (variant dsm): a variant named still means the known plugin's.
    for args in [
        &[
            "add",
            "extractor",
            "tap-csv",
            "--variant",
            "nope",
            "--as",
            "more-csv",
        ][..],
        &[
            "add",
            "extractor",
            "more-csv",
            "--inherit-from",
            "tap-csv",
            "--variant",
            "nope",
        ][..],
        &[
            "add",
            "extractor",
            "tap-github",
            "--variant",
            "nope",
            "--as",
            "gh",
        ][..],
    ] {
        let run = p.dsm(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("has no variant `nope` in dsm's catalog"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("known variants: `"), "{}", run.stderr);
    }
    let run = p.dsm(&[
        "add",
        "extractor",
        "tap-csv",
        "--variant",
        "nope",
        "--as",
        "x",
    ]);
    assert!(
        run.stderr.contains("`dsm`, `meltanolabs`"),
        "built-in first, then the index's default: {}",
        run.stderr
    );
    assert_eq!(p.read("meltano.yml"), YML);
    assert!(!p.root().join("plugins").exists());
}

#[test]
fn add_as_with_a_variant_inherits_from_the_known_plugin_and_its_lock_file() {
    let p = Project::new(YML);
    p.dsm(&[
        "add",
        "extractor",
        "tap-github",
        "--variant",
        "meltanolabs",
        "--as",
        "github-prod",
    ])
    .assert_ok();
    // Without a variant, a parent the project lacks is the known plugin's default variant
    // (and with no type word, the parent's name tells the type).
    p.dsm(&["add", "target-snowflake", "--as", "warehouse"])
        .assert_ok();
    let text = p.read("meltano.yml");
    assert!(
        text.contains(
            "  - name: github-prod\n    inherit_from: tap-github\n    variant: meltanolabs\n    pip_url: meltanolabs-tap-github\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  - name: warehouse\n    inherit_from: target-snowflake\n    variant: meltanolabs\n"
        ),
        "{text}"
    );
    let lock: Value =
        serde_json::from_str(&p.read("plugins/extractors/tap-github--meltanolabs.lock")).unwrap();
    assert_eq!(lock["name"], "tap-github");
    let list = p.dsm(&["plugins", "list", "--format", "json"]);
    list.assert_ok();
    let items: Value = serde_json::from_str(&list.stdout).unwrap();
    let gh = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "github-prod")
        .unwrap();
    assert_eq!(gh["definition"]["kind"], "locked", "{gh}");
    assert_eq!(gh["inherit_from"], "tap-github", "{gh}");
    assert_eq!(gh["variant"], "meltanolabs", "{gh}");
    assert_eq!(
        gh["executable"].as_str().map(|e| e.ends_with("tap-github")),
        Some(true),
        "{gh}"
    );
    // Its settings are the known plugin's, under its own name.
    let config = p.dsm(&["config", "list", "github-prod"]);
    config.assert_ok();
    assert!(config.stdout.contains("repositories"), "{}", config.stdout);
}

#[test]
fn plugins_list_available_filters_by_type_and_search() {
    let p = Project::new(YML);
    let run = p.dsm(&[
        "plugins",
        "list",
        "--available",
        "--type",
        "loader",
        "--search",
        "snowflake",
    ]);
    run.assert_ok();
    assert!(
        run.stdout
            .contains("target-snowflake  meltanolabs (default)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("target-snowflake  datamill-co "),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("tap-snowflake"), "{}", run.stdout);
    let json = p.dsm(&[
        "--format",
        "json",
        "plugins",
        "list",
        "--available",
        "--search",
        "map-transformer",
    ]);
    json.assert_ok();
    let items: Value = serde_json::from_str(&json.stdout).unwrap();
    let names: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["meltano-map-transformer"]);
    assert_eq!(items[0]["type"], "mapper");
    assert_eq!(items[0]["default"], true);
    let settings = items[0]["settings"].as_array().unwrap();
    assert!(
        settings
            .iter()
            .any(|s| s["name"] == "stream_maps" && s["kind"] == "object")
    );
    // A password's default is never shown; the built-ins come first among the extractors.
    let all = p.dsm(&[
        "--format",
        "json",
        "plugins",
        "list",
        "--available",
        "--type",
        "extractor",
    ]);
    let items: Value = serde_json::from_str(&all.stdout).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items[0]["variant"], "dsm");
    assert!(items.len() > 100);
    for i in items {
        for s in i["settings"].as_array().unwrap() {
            if s["sensitive"] == true {
                assert!(s["value"].is_null(), "{}: {s}", i["name"]);
            }
        }
    }
    let none = p.dsm(&["plugins", "list", "--available", "--search", "zzzz-no-such"]);
    none.assert_ok();
    assert!(
        none.stderr
            .contains("dsm's catalog has no plugin matching `zzzz-no-such`"),
        "{}",
        none.stderr
    );
    // `--search` is for the catalog only.
    assert_eq!(p.dsm(&["plugins", "list", "--search", "x"]).code, 2);
}

#[test]
fn plugins_list_available_table_of_mappers() {
    let p = Project::new(YML);
    let run = p.dsm(&["plugins", "list", "--available", "--type", "mapper"]);
    run.assert_ok();
    insta::assert_snapshot!(run.stdout, @r"
    TYPE    NAME                     VARIANT                 LABEL                         PIP_URL
    mapper  meltano-map-transformer  meltano (default)       Meltano Map Transformer       meltano-map-transform
    mapper  transform-field          transferwise (default)  Pipelinewise Transform Field  pipelinewise-transform-field
    mapper  map-gpt-embeddings       meltanolabs (default)   Map GPT Embeddings            git+https://github.com/meltanolabs/map-gpt-embeddings.git
    ");
}

#[test]
fn custom_and_inherited_plugins_from_flags() {
    let p = Project::new(YML);
    p.dsm(&[
        "add",
        "extractor",
        "tap-mine",
        "--custom",
        "--pip-url",
        "tap-mine==1.0",
        "--executable",
        "tap-mine-run",
        "--capabilities",
        "catalog,discover",
        "--settings",
        "host,port:integer",
    ])
    .assert_ok();
    p.dsm(&["add", "extractor", "tap-csv-2", "--inherit-from", "tap-csv"])
        .assert_ok();
    let bad = p.dsm(&[
        "add",
        "extractor",
        "tap-x",
        "--custom",
        "--settings",
        "a:nope",
    ]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("unknown setting kind `nope`"),
        "{}",
        bad.stderr
    );
    let list = p.dsm(&["plugins", "list", "--format", "json"]);
    list.assert_ok();
    let items: Value = serde_json::from_str(&list.stdout).unwrap();
    let mine = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "tap-mine")
        .unwrap();
    assert_eq!(mine["definition"]["kind"], "custom");
    assert_eq!(mine["pip_url"], "tap-mine==1.0");
    let child = items
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "tap-csv-2")
        .unwrap();
    assert_eq!(child["inherit_from"], "tap-csv");
    assert_eq!(child["status"], "built_in");
    let config = p.dsm(&["config", "list", "tap-mine", "--format", "json"]);
    assert!(
        config.stdout.contains("port"),
        "{}{}",
        config.stdout,
        config.stderr
    );
}

#[test]
fn remove_refuses_while_used_then_removes_entry_lock_and_environment_blocks() {
    let p = Project::new(&format!(
        "{YML}jobs:\n- name: load\n  tasks:\n  - tap-csv target-jsonl\n"
    ));
    p.dsm(&["add", "loader", "target-jsonl"]).assert_ok();
    assert!(
        p.root()
            .join("plugins/loaders/target-jsonl--dsm.lock")
            .exists()
    );
    let refused = p.dsm(&["remove", "target-jsonl"]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("job `load` runs it"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);

    let text = p
        .read("meltano.yml")
        .replace("  - tap-csv target-jsonl\n", "  - tap-csv\n");
    std::fs::write(p.root().join("meltano.yml"), text).unwrap();
    p.dsm(&["remove", "loader", "target-jsonl"]).assert_ok();
    let text = p.read("meltano.yml");
    assert!(!text.contains("target-jsonl"), "{text}");
    assert!(
        text.contains("  - name: tap-csv   # the source\n"),
        "{text}"
    );
    assert!(
        !p.root()
            .join("plugins/loaders/target-jsonl--dsm.lock")
            .exists()
    );
    let gone = p.dsm(&["remove", "target-jsonl"]);
    assert_eq!(gone.code, 2);
}

#[test]
fn add_and_remove_are_audited_when_the_secrets_store_has_a_key() {
    let p = Project::new(YML).env("DSM_MASTER_KEY", KEY);
    p.dsm(&["add", "loader", "target-jsonl"]).assert_ok();
    p.dsm(&["remove", "target-jsonl"]).assert_ok();
    let audit = p.dsm(&["audit", "list", "--format", "json"]);
    audit.assert_ok();
    let entries: Value = serde_json::from_str(&audit.stdout).unwrap();
    let actions: Vec<(String, String)> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["targets"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("plugin.add".to_string(), "loaders.target-jsonl".to_string()),
            (
                "plugin.remove".to_string(),
                "loaders.target-jsonl".to_string()
            )
        ]
    );
    p.dsm(&["audit", "verify"]).assert_ok();
}

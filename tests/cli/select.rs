use serde_json::json;

use crate::support::TestProject;

const YML: &str = "\
# selection of tap-fake
environments:
- name: dev
plugins:
  extractors:
  - name: tap-fake
    executable: ./fake-tap.sh
    capabilities: [discover, catalog]
    settings:
    - name: token
    config:
      token: abc
    select:
    - users.name   # keep names
    - '!users.email'
";

const CATALOG: &str = r#"{"streams": [
 {"tap_stream_id": "users", "stream": "users",
  "schema": {"type": "object", "properties": {
    "id": {"type": "integer"}, "name": {"type": "string"}, "email": {"type": "string"},
    "geo": {"type": "object", "properties": {"city": {"type": "string"}}}}},
  "metadata": [
    {"breadcrumb": [], "metadata": {"inclusion": "available"}},
    {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
    {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available"}},
    {"breadcrumb": ["properties", "email"], "metadata": {"inclusion": "available"}},
    {"breadcrumb": ["properties", "geo"], "metadata": {"inclusion": "available"}},
    {"breadcrumb": ["properties", "geo", "properties", "city"], "metadata": {"inclusion": "available"}}]},
 {"tap_stream_id": "orders", "stream": "orders",
  "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "total": {"type": "number"}}},
  "metadata": [
    {"breadcrumb": [], "metadata": {"inclusion": "available"}},
    {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
    {"breadcrumb": ["properties", "total"], "metadata": {"inclusion": "available"}}]}
]}"#;

/// A tap that prints `catalog.json` for `--discover`, after checking it got its config file.
fn project() -> TestProject {
    let p = TestProject::new(YML);
    p.write("catalog.json", CATALOG);
    p.write(
        "fake-tap.sh",
        "#!/bin/sh\n\
         [ \"$1\" = --config ] || { echo 'no --config' >&2; exit 9; }\n\
         grep -q '\"token\":\"abc\"' \"$2\" || { echo 'bad config' >&2; exit 8; }\n\
         [ \"$3\" = --discover ] || exit 7\n\
         cat catalog.json\n",
    );
    make_executable(&p.root().join("fake-tap.sh"));
    p
}

fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perm = std::fs::metadata(path).expect("exists").permissions();
    perm.set_mode(0o755);
    std::fs::set_permissions(path, perm).expect("chmod");
}

#[test]
fn adding_a_pattern_appends_to_select_and_keeps_comments() {
    let p = project();
    let out = p.dsm(&["select", "tap-fake", "orders", "total"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("added `orders.total`"),
        "{}",
        out.stderr
    );
    let yml = p.read("meltano.yml");
    assert!(yml.contains("# selection of tap-fake"));
    assert!(yml.contains("users.name   # keep names"), "{yml}");
    assert!(yml.contains("    - orders.total\n"), "{yml}");
    let list = p.dsm(&["select", "tap-fake", "--list", "--json"]).json();
    assert_eq!(
        list["patterns"],
        json!(["users.name", "!users.email", "orders.total"])
    );

    // Adding it again changes nothing.
    let before = p.read("meltano.yml");
    let out = p.dsm(&["select", "tap-fake", "orders", "total"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(p.read("meltano.yml"), before);
}

#[test]
fn exclude_remove_and_clear() {
    let p = project();
    let out = p.dsm(&["select", "tap-fake", "--exclude", "orders", "total"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let patterns = |p: &TestProject| {
        p.dsm(&["select", "tap-fake", "--list", "--json"]).json()["patterns"].clone()
    };
    assert_eq!(
        patterns(&p),
        json!(["users.name", "!users.email", "!orders.total"])
    );

    let out = p.dsm(&["select", "tap-fake", "--rm", "users", "name"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(patterns(&p), json!(["!users.email", "!orders.total"]));

    let out = p.dsm(&["select", "tap-fake", "--remove", "users", "name"]);
    assert_eq!(out.code, 2, "removing a missing pattern is an error");
    assert!(
        out.stderr.contains("`users.name` is not in the `select`"),
        "{}",
        out.stderr
    );

    let out = p.dsm(&["select", "tap-fake", "--clear"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(patterns(&p), json!([]));
    assert!(
        p.read("meltano.yml").contains("select: []"),
        "{}",
        p.read("meltano.yml")
    );
}

#[test]
fn a_named_environment_gets_its_own_select() {
    let p = project();
    let out = p.dsm(&["--environment", "dev", "select", "tap-fake", "orders"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("environment `dev`"), "{}", out.stderr);
    let yml = p.read("meltano.yml");
    let env_block =
        &yml[yml.find("- name: dev").unwrap()..yml.find("plugins:\n  extractors").unwrap()];
    assert!(env_block.contains("orders.*"), "{yml}");
    // The plugin's own list is untouched; with the environment, its list replaces it.
    let base = p.dsm(&["select", "tap-fake", "--list", "--json"]).json();
    assert_eq!(base["patterns"], json!(["users.name", "!users.email"]));
    let dev = p
        .dsm(&[
            "--environment",
            "dev",
            "select",
            "tap-fake",
            "--list",
            "--json",
        ])
        .json();
    assert_eq!(dev["patterns"], json!(["orders.*"]));
    assert_eq!(dev["streams"].as_array().unwrap().len(), 1);
    assert_eq!(dev["streams"][0]["tap_stream_id"], "orders");
}

#[test]
fn list_prints_selected_properties_like_meltano() {
    let p = project();
    let out = p.dsm(&["select", "tap-fake", "--list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Legend:\n\tselected\n\texcluded\n\tautomatic\n\tunsupported\n\n\
         Enabled patterns:\n\tusers.name\n\t!users.email\n\n\
         Selected properties:\n\
         \t[automatic  ] users.id\n\
         \t[selected   ] users.name\n"
    );
}

#[test]
fn list_all_shows_excluded_streams_and_properties() {
    let p = project();
    let out = p.dsm(&["select", "tap-fake", "--list", "--all", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let users = &v["streams"][0];
    assert_eq!(users["selection"], "selected");
    assert_eq!(
        users["properties"],
        json!([
            {"property": "email", "selection": "excluded"},
            {"property": "geo", "selection": "excluded"},
            {"property": "geo.city", "selection": "excluded"},
            {"property": "id", "selection": "automatic"},
            {"property": "name", "selection": "selected"},
        ])
    );
    assert_eq!(v["streams"][1]["selection"], "excluded");
    assert_eq!(
        v["streams"][1]["properties"][0],
        json!({"property": "id", "selection": "excluded"})
    );
}

#[test]
fn list_fails_with_the_taps_stderr_when_discovery_fails() {
    let p = project();
    p.write(
        "fake-tap.sh",
        "#!/bin/sh\necho 'boom: no credentials' >&2\nexit 3\n",
    );
    let out = p.dsm(&["select", "tap-fake", "--list"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("extractor `tap-fake` exited"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("boom: no credentials"),
        "{}",
        out.stderr
    );
}

#[test]
fn list_needs_the_discover_capability() {
    let p = TestProject::new(&YML.replace("[discover, catalog]", "[catalog]"));
    let out = p.dsm(&["select", "tap-fake", "--list"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`discover` capability"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_extractor_is_a_usage_error() {
    let p = project();
    let out = p.dsm(&["select", "tap-nope", "users"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

// Meltano's extras resolve like settings: `<NAME>__SELECT` in the environment or `.env`, then
// the active environment's block, then meltano.yml. Real runs of the built-in tap-csv into
// target-sqlite show which streams were extracted.

const CSV_YML: &str = "\
default_environment: dev
environments:
- name: dev
- name: prod
  config:
    plugins:
      extractors:
      - name: tap-csv
        select: [orders.*]
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    namespace: tap_csv
    executable: tap-csv
    capabilities: [catalog, discover, state]
    settings:
    - name: files
      kind: array
    config:
      files:
      - {entity: users, path: users.csv, keys: [id]}
      - {entity: orders, path: orders.csv, keys: [id]}
    select: [users.*]
  loaders:
  - name: target-sqlite
    variant: dsm
    namespace: target_sqlite
    executable: target-sqlite
    settings:
    - name: database
    config:
      database: out.db
";

fn csv_project() -> TestProject {
    let p = TestProject::new(CSV_YML);
    p.write("users.csv", "id,name\n1,ann\n2,bob\n");
    p.write("orders.csv", "id,total\n10,1.5\n");
    p
}

/// The tables the run created in `out.db`, sorted.
fn tables(p: &TestProject) -> Vec<String> {
    let db = rusqlite::Connection::open(p.root().join("out.db")).expect("the database");
    let mut stmt = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("query");
    stmt.query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("name"))
        .collect()
}

#[test]
fn select_in_meltano_yml_limits_the_run() {
    let p = csv_project();
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&p), ["users"]);
}

#[test]
fn select_from_the_environment_variable_overrides_meltano_yml() {
    let p = csv_project().env("TAP_CSV__SELECT", r#"["orders.*"]"#);
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&p), ["orders"]);
}

#[test]
fn select_all_from_the_environment_variable_extracts_every_stream() {
    let p = csv_project().env("TAP_CSV__SELECT", r#"["*.*"]"#);
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&p), ["orders", "users"]);
}

#[test]
fn select_from_dotenv_overrides_meltano_yml_and_the_shell_overrides_dotenv() {
    let p = csv_project();
    p.write(".env", "TAP_CSV__SELECT='[\"orders.*\"]'\n");
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&p), ["orders"]);

    let listed = p
        .dsm(&["config", "list", "tap-csv", "--extras", "--format", "json"])
        .json();
    let select = listed["extras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "_select")
        .unwrap()
        .clone();
    assert_eq!(select["value"], json!(["orders.*"]));
    assert_eq!(select["source"], "dotenv");
    assert_eq!(select["env_vars"], json!(["TAP_CSV__SELECT"]));

    let shell = csv_project().env("TAP_CSV__SELECT", r#"["users.*"]"#);
    shell.write(".env", "TAP_CSV__SELECT='[\"orders.*\"]'\n");
    let out = shell.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&shell), ["users"]);
}

#[test]
fn an_environment_block_select_overrides_meltano_yml() {
    let p = csv_project();
    let out = p.dsm(&["--environment", "prod", "run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(tables(&p), ["orders"]);

    let text = p.dsm(&[
        "--environment",
        "prod",
        "config",
        "list",
        "tap-csv",
        "--extras",
    ]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(
            "_select [env: TAP_CSV__SELECT] current value: [\"orders.*\"] (from environment block in meltano.yml)"
        ),
        "{}",
        text.stdout
    );
}

#[test]
fn a_bad_json_select_variable_is_a_configuration_error_naming_it() {
    let p = csv_project().env("TAP_CSV__SELECT", "[users.*");
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`TAP_CSV__SELECT` in the environment must be a JSON array of strings"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: write it as JSON"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!p.root().join("out.db").exists(), "nothing ran");

    let p = csv_project();
    p.write(".env", "TAP_CSV__METADATA='[1]'\n");
    let out = p.dsm(&["run", "tap-csv", "target-sqlite"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`TAP_CSV__METADATA` in `.env` must be a JSON object: it holds an array"),
        "{}",
        out.stderr
    );
}

#[test]
fn select_list_reads_select_from_the_environment_variable() {
    let p = project().env("TAP_FAKE__SELECT", r#"["orders.*"]"#);
    let list = p.dsm(&["select", "tap-fake", "--list", "--json"]).json();
    assert_eq!(list["patterns"], json!(["orders.*"]));
    let streams: Vec<&str> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["orders"]);
}

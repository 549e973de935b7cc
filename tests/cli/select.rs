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
         Selected attributes:\n\
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

//! The built-in taps: Singer conventions, selection, incremental bookmarks, bad input.

use serde_json::{Value, json};

use crate::support::{PLUGINS, run, write_json};

const CUSTOMERS: &str = "id,name,balance,vip,updated_at,signup\n\
1,Ada,10.5,true,2024-01-01T00:00:00Z,2023-12-01\n\
2,\"Lin, Bo\",7,false,2024-01-02T00:00:00Z,2023-12-02\n\
3,Zoë,,TRUE,2024-01-03T00:00:00Z,\n";

fn csv_project(body: &str, extra: Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/customers.csv"), body).unwrap();
    let mut file = json!({"entity": "customers", "path": "data/customers.csv", "keys": ["id"]});
    file.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let cfg = write_json(dir.path(), "config.json", &json!({"files": [file]}));
    (dir, cfg)
}

#[test]
fn every_plugin_describes_itself_with_about() {
    let dir = tempfile::tempdir().unwrap();
    for name in PLUGINS {
        let r = run(dir.path(), name, &["--about", "--format", "json"], b"");
        r.assert_ok();
        let about: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(about["name"], name);
        assert!(
            about["capabilities"]
                .as_array()
                .unwrap()
                .contains(&json!("about"))
        );
        assert!(about["settings"]["properties"].is_object(), "{name}");
        let text = run(dir.path(), name, &["--about"], b"");
        text.assert_ok();
        assert!(
            text.stdout.contains(&format!("Name: {name}")),
            "{}",
            text.stdout
        );
    }
    let bad = run(dir.path(), "tap-csv", &["--frobnicate"], b"");
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("unknown argument `--frobnicate`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn tap_csv_discovers_inferred_types_and_metadata() {
    let (dir, cfg) = csv_project(CUSTOMERS, json!({"replication_key": "updated_at"}));
    let r = run(
        dir.path(),
        "tap-csv",
        &["--config", &cfg, "--discover"],
        b"",
    );
    r.assert_ok();
    let catalog: Value = serde_json::from_str(&r.stdout).unwrap();
    let s = &catalog["streams"][0];
    assert_eq!(s["tap_stream_id"], "customers");
    let p = &s["schema"]["properties"];
    assert_eq!(p["id"]["type"], json!(["integer", "null"]));
    assert_eq!(p["name"]["type"], json!(["string", "null"]));
    assert_eq!(p["balance"]["type"], json!(["number", "null"]));
    assert_eq!(p["vip"]["type"], json!(["boolean", "null"]));
    assert_eq!(p["updated_at"]["format"], "date-time");
    assert_eq!(p["signup"]["format"], "date");
    let md = &s["metadata"][0];
    assert_eq!(md["breadcrumb"], json!([]));
    assert_eq!(md["metadata"]["table-key-properties"], json!(["id"]));
    assert_eq!(
        md["metadata"]["valid-replication-keys"],
        json!(["updated_at"])
    );
    assert_eq!(md["metadata"]["selected"], true);
    let id_md = s["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["breadcrumb"] == json!(["properties", "id"]))
        .unwrap();
    assert_eq!(id_md["metadata"]["inclusion"], "automatic");
}

#[test]
fn tap_csv_full_table_sync_emits_typed_records_and_activate_version() {
    let (dir, cfg) = csv_project(CUSTOMERS, json!({}));
    let r = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    r.assert_ok();
    let msgs = r.messages();
    assert_eq!(msgs[0]["type"], "SCHEMA");
    assert_eq!(msgs[0]["key_properties"], json!(["id"]));
    let recs = r.records();
    assert_eq!(recs.len(), 3);
    assert_eq!(
        recs[0],
        json!({"id": 1, "name": "Ada", "balance": 10.5, "vip": true, "updated_at": "2024-01-01T00:00:00Z", "signup": "2023-12-01"})
    );
    assert_eq!(recs[1]["name"], "Lin, Bo");
    assert_eq!(recs[2]["balance"], Value::Null);
    assert_eq!(recs[2]["vip"], true);
    let version = &r.of_type("RECORD")[0]["version"];
    assert!(version.is_u64());
    let av = r.of_type("ACTIVATE_VERSION");
    assert_eq!(av.len(), 1);
    assert_eq!(&av[0]["version"], version);
    // ACTIVATE_VERSION comes after the records.
    let pos = msgs
        .iter()
        .position(|m| m["type"] == "ACTIVATE_VERSION")
        .unwrap();
    assert!(msgs[..pos].iter().filter(|m| m["type"] == "RECORD").count() == 3);
}

#[test]
fn tap_csv_incremental_second_run_emits_rows_from_the_bookmark_on() {
    let (dir, cfg) = csv_project(CUSTOMERS, json!({"replication_key": "updated_at"}));
    let first = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    first.assert_ok();
    assert_eq!(first.records().len(), 3);
    assert!(first.of_type("ACTIVATE_VERSION").is_empty());
    let state = first.last_state();
    assert_eq!(
        state["bookmarks"]["customers"],
        json!({"replication_key": "updated_at", "replication_key_value": "2024-01-03T00:00:00Z"})
    );
    let state_file = write_json(dir.path(), "state.json", &state);
    let mut grown = CUSTOMERS.to_owned();
    grown.push_str("5,Eve,2,false,2024-01-03T00:00:00Z,\n");
    grown.push_str("4,Kai,1,false,2024-01-04T00:00:00Z,2024-01-04\n");
    std::fs::write(dir.path().join("data/customers.csv"), grown).unwrap();
    let second = run(
        dir.path(),
        "tap-csv",
        &["--config", &cfg, "--state", &state_file],
        b"",
    );
    second.assert_ok();
    // Issue 4: a strict `>` lost row 5, added later with the bookmark's own value. Like the
    // SDK, rows at the bookmark are sent again (row 3 too: at-least-once).
    let ids: Vec<Value> = second.records().iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [json!(3), json!(5), json!(4)], "{}", second.stdout);
    assert_eq!(
        second.last_state()["bookmarks"]["customers"]["replication_key_value"],
        "2024-01-04T00:00:00Z"
    );
}

#[test]
fn tap_csv_honours_catalog_selection() {
    let (dir, cfg) = csv_project(CUSTOMERS, json!({}));
    std::fs::write(dir.path().join("data/orders.csv"), "order_id,total\n1,3\n").unwrap();
    let cfg_v = json!({"files": [
        {"entity": "customers", "path": "data/customers.csv", "keys": ["id"]},
        {"entity": "orders", "path": "data/orders.csv", "keys": ["order_id"]}
    ]});
    write_json(dir.path(), &cfg, &cfg_v);
    let disc = run(
        dir.path(),
        "tap-csv",
        &["--config", &cfg, "--discover"],
        b"",
    );
    let mut catalog: Value = serde_json::from_str(&disc.stdout).unwrap();
    for s in catalog["streams"].as_array_mut().unwrap() {
        let is_orders = s["tap_stream_id"] == "orders";
        for m in s["metadata"].as_array_mut().unwrap() {
            let crumb = m["breadcrumb"].clone();
            if is_orders && crumb == json!([]) {
                m["metadata"]["selected"] = false.into();
            }
            if crumb == json!(["properties", "balance"]) || crumb == json!(["properties", "id"]) {
                // `id` is a key: `automatic` wins over a deselection.
                m["metadata"]["selected"] = false.into();
            }
        }
    }
    let cat = write_json(dir.path(), "catalog.json", &catalog);
    for flag in ["--catalog", "--properties"] {
        let r = run(dir.path(), "tap-csv", &["--config", &cfg, flag, &cat], b"");
        r.assert_ok();
        assert!(r.messages().iter().all(|m| m["stream"] != "orders"));
        let recs = r.records();
        assert_eq!(recs.len(), 3);
        let keys: Vec<&String> = recs[0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "name", "vip", "updated_at", "signup"]);
        let schema = &r.of_type("SCHEMA")[0]["schema"]["properties"];
        assert!(schema.get("balance").is_none());
    }
}

#[test]
fn tap_csv_malformed_row_names_file_and_line_and_keeps_earlier_records() {
    let (dir, cfg) = csv_project("id,name\n1,Ada\n2,Bo,extra\n3,Cy\n", json!({}));
    let r = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`data/customers.csv` line 3 has 3 fields, the header has 2"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"));
    assert_eq!(r.records(), vec![json!({"id": 1, "name": "Ada"})]);
}

#[test]
fn tap_csv_value_not_matching_declared_type_is_an_error() {
    let schema =
        json!({"properties": {"id": {"type": "integer"}, "amount": {"type": ["number", "null"]}}});
    let (dir, cfg) = csv_project("id,amount\n1,2.5\n2,lots\n", json!({"schema": schema}));
    let r = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("`data/customers.csv` line 3, column `amount`: `lots` is not a number"),
        "{}",
        r.stderr
    );
    assert_eq!(r.records(), vec![json!({"id": 1, "amount": 2.5})]);
}

#[test]
fn tap_csv_declared_schema_types_values_and_globs_read_every_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/a.csv"),
        "code;seen\n007;2024-01-01 10:00:00\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("in/b.csv"), "code;seen\n042;2024-01-02\n").unwrap();
    let cfg = write_json(
        dir.path(),
        "c.json",
        &json!({"files": [{"entity": "codes", "path": "in/*.csv", "keys": ["code"], "delimiter": ";",
            "schema": {"properties": {"code": {"type": "string"}, "seen": {"type": "string", "format": "date-time"}}}}]}),
    );
    let r = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    r.assert_ok();
    assert_eq!(
        r.records(),
        vec![
            json!({"code": "007", "seen": "2024-01-01T10:00:00+00:00"}),
            json!({"code": "042", "seen": "2024-01-02T00:00:00+00:00"})
        ]
    );
}

#[test]
fn tap_csv_missing_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(
        dir.path(),
        "c.json",
        &json!({"files": [{"entity": "x", "path": "nope.csv"}]}),
    );
    let r = run(dir.path(), "tap-csv", &["--config", &cfg], b"");
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("cannot read `nope.csv`"), "{}", r.stderr);
    let r = run(dir.path(), "tap-csv", &["--config", "missing.json"], b"");
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot read config file `missing.json`"),
        "{}",
        r.stderr
    );
}

#[test]
fn tap_jsonl_reads_streams_incrementally_and_reports_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("events.jsonl"),
        "{\"id\": 1, \"kind\": \"a\", \"at\": \"2024-01-01T00:00:00Z\", \"extra\": {\"x\": 1}}\n\n{\"id\": 2, \"kind\": \"b\", \"at\": \"2024-01-02T00:00:00Z\"}\n",
    )
    .unwrap();
    let cfg = write_json(
        dir.path(),
        "c.json",
        &json!({"files": [{"entity": "events", "path": "events.jsonl", "keys": ["id"], "replication_key": "id"}], "infer_rows": 1}),
    );
    let disc = run(
        dir.path(),
        "tap-jsonl",
        &["--config", &cfg, "--discover"],
        b"",
    );
    disc.assert_ok();
    let catalog: Value = serde_json::from_str(&disc.stdout).unwrap();
    let props = &catalog["streams"][0]["schema"]["properties"];
    assert_eq!(props["id"]["type"], json!(["integer", "null"]));
    assert_eq!(props["at"]["format"], "date-time");
    assert_eq!(props["extra"]["type"], json!(["object", "null"]));
    let first = run(dir.path(), "tap-jsonl", &["--config", &cfg], b"");
    first.assert_ok();
    assert_eq!(first.records().len(), 2);
    assert_eq!(first.records()[0]["extra"], json!({"x": 1}));
    let st = write_json(dir.path(), "state.json", &first.last_state());
    let mut f = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    f.push_str("{\"id\": 2, \"kind\": \"late\"}\n{\"id\": 3, \"kind\": \"c\"}\n{broken\n");
    std::fs::write(dir.path().join("events.jsonl"), f).unwrap();
    let second = run(
        dir.path(),
        "tap-jsonl",
        &["--config", &cfg, "--state", &st],
        b"",
    );
    assert_eq!(second.code, 1);
    assert!(
        second
            .stderr
            .contains("`events.jsonl` line 6 is not valid JSON"),
        "{}",
        second.stderr
    );
    // Issue 4: the record added later with the bookmarked id 2 was skipped by a strict `>`.
    assert_eq!(
        second.records(),
        vec![
            json!({"id": 2, "kind": "b", "at": "2024-01-02T00:00:00Z"}),
            json!({"id": 2, "kind": "late"}),
            json!({"id": 3, "kind": "c"})
        ]
    );
}

fn sqlite_source(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("source.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL, updated_at DATETIME);
         INSERT INTO users VALUES (1, 'ann', 1.5, '2024-01-01T00:00:00Z'), (2, 'bob', NULL, '2024-01-02T00:00:00Z');
         CREATE TABLE tags (tag TEXT);
         INSERT INTO tags VALUES ('x');",
    )
    .unwrap();
    db
}

#[test]
fn tap_sqlite_discovers_tables_and_syncs_full_table() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_source(dir.path());
    let cfg = write_json(dir.path(), "c.json", &json!({"database": "source.db"}));
    let disc = run(
        dir.path(),
        "tap-sqlite",
        &["--config", &cfg, "--discover"],
        b"",
    );
    disc.assert_ok();
    let catalog: Value = serde_json::from_str(&disc.stdout).unwrap();
    let users = &catalog["streams"][1];
    assert_eq!(users["tap_stream_id"], "users");
    assert_eq!(
        users["metadata"][0]["metadata"]["table-key-properties"],
        json!(["id"])
    );
    assert_eq!(
        users["schema"]["properties"]["score"]["type"],
        json!(["number", "null"])
    );
    let r = run(dir.path(), "tap-sqlite", &["--config", &cfg], b"");
    r.assert_ok();
    assert_eq!(
        r.records(),
        vec![
            json!({"tag": "x"}),
            json!({"id": 1, "name": "ann", "score": 1.5, "updated_at": "2024-01-01T00:00:00Z"}),
            json!({"id": 2, "name": "bob", "score": null, "updated_at": "2024-01-02T00:00:00Z"}),
        ]
    );
    assert_eq!(r.of_type("ACTIVATE_VERSION").len(), 2);
}

#[test]
fn tap_sqlite_incremental_by_replication_key_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_source(dir.path());
    let cfg = write_json(
        dir.path(),
        "c.json",
        &json!({"database": "source.db", "tables": ["users"]}),
    );
    let disc = run(
        dir.path(),
        "tap-sqlite",
        &["--config", &cfg, "--discover"],
        b"",
    );
    let mut catalog: Value = serde_json::from_str(&disc.stdout).unwrap();
    assert_eq!(catalog["streams"].as_array().unwrap().len(), 1);
    let md = &mut catalog["streams"][0]["metadata"][0]["metadata"];
    md["replication-method"] = "INCREMENTAL".into();
    md["replication-key"] = "updated_at".into();
    let cat = write_json(dir.path(), "catalog.json", &catalog);
    let first = run(
        dir.path(),
        "tap-sqlite",
        &["--config", &cfg, "--catalog", &cat],
        b"",
    );
    first.assert_ok();
    assert_eq!(first.records().len(), 2);
    assert!(first.of_type("ACTIVATE_VERSION").is_empty());
    let st = write_json(dir.path(), "state.json", &first.last_state());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "INSERT INTO users VALUES (3, 'cy', 2, '2024-01-03T00:00:00Z'), (4, 'di', 0, '2024-01-02T00:00:00Z')",
        )
        .unwrap();
    let second = run(
        dir.path(),
        "tap-sqlite",
        &["--config", &cfg, "--catalog", &cat, "--state", &st],
        b"",
    );
    second.assert_ok();
    // Issue 4: row 4, added later with the bookmark's value, was missed by `WHERE key > ?`.
    let mut ids: Vec<i64> = second
        .records()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [2, 3, 4], "{}", second.stdout);
    assert_eq!(
        second.last_state()["bookmarks"]["users"]["replication_key_value"],
        "2024-01-03T00:00:00Z"
    );
}

#[test]
fn tap_sqlite_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("junk.db"),
        "this is not a database at all, just text",
    )
    .unwrap();
    let cfg = write_json(dir.path(), "c.json", &json!({"database": "junk.db"}));
    let r = run(
        dir.path(),
        "tap-sqlite",
        &["--config", &cfg, "--discover"],
        b"",
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("`junk.db` is not a SQLite database"),
        "{}",
        r.stderr
    );
}

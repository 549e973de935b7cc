//! target-sqlite: loading, upserts, migrations, ACTIVATE_VERSION, STATE after commit, pipes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::support::{bin, columns, query, rows, run, write_json};

fn target(dir: &std::path::Path) -> String {
    write_json(dir, "target.json", &json!({"database": "out/warehouse.db"}))
}

#[test]
fn tap_csv_piped_into_target_sqlite_through_an_os_pipe() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orders.csv"),
        "order_id,customer,total,paid\n1,ann,9.99,true\n2,bob,20,false\n",
    )
    .unwrap();
    let tap_cfg = write_json(
        dir.path(),
        "tap.json",
        &json!({"files": [{"entity": "orders", "path": "orders.csv", "keys": ["order_id"],
            "replication_key": "order_id"}]}),
    );
    let tgt_cfg = target(dir.path());
    let mut tap = Command::new(bin("tap-csv"))
        .args(["--config", &tap_cfg])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Command::new(bin("target-sqlite"))
        .args(["--config", &tgt_cfg])
        .current_dir(dir.path())
        .stdin(Stdio::from(tap.stdout.take().unwrap()))
        .output()
        .unwrap();
    assert!(tap.wait().unwrap().success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(
        query(
            &db,
            "SELECT order_id, customer, total, paid FROM orders ORDER BY order_id"
        ),
        rows(&[&["1", "ann", "9.99", "1"], &["2", "bob", "20", "0"]])
    );
    let cols = columns(&db, "orders");
    assert_eq!(cols[0], ("order_id".to_owned(), "INTEGER".to_owned()));
    assert_eq!(cols[2], ("total".to_owned(), "REAL".to_owned()));
    // The tap's STATE came out of the target after the commit (a target prints the state
    // value, as Singer targets do).
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a state")).unwrap();
    assert_eq!(
        last["bookmarks"]["orders"]["replication_key_value"],
        json!(2),
        "{stdout}"
    );
}

#[test]
fn target_sqlite_upserts_by_key_and_appends_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    let input = r#"{"type":"SCHEMA","stream":"u","schema":{"properties":{"id":{"type":"integer"},"v":{"type":"string"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"u","record":{"id":1,"v":"a"}}
{"type":"RECORD","stream":"u","record":{"id":1,"v":"b"}}
{"type":"SCHEMA","stream":"log","schema":{"properties":{"id":{"type":"integer"}}},"key_properties":[]}
{"type":"RECORD","stream":"log","record":{"id":1}}
{"type":"RECORD","stream":"log","record":{"id":1}}
"#;
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(query(&db, "SELECT id, v FROM u"), rows(&[&["1", "b"]]));
    assert_eq!(query(&db, "SELECT count(*) FROM log"), rows(&[&["4"]]));
}

#[test]
fn target_sqlite_migrates_new_columns_and_widens_types() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    let input = r#"{"type":"SCHEMA","stream":"m","schema":{"properties":{"id":{"type":"integer"},"n":{"type":["integer","null"]},"flag":{"type":"boolean"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"m","record":{"id":1,"n":5,"flag":true}}
{"type":"SCHEMA","stream":"m","schema":{"properties":{"id":{"type":"integer"},"n":{"type":["number","null"]},"flag":{"type":"string"},"note":{"type":"string"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"m","record":{"id":2,"n":2.5,"flag":"maybe","note":"new"}}
{"type":"RECORD","stream":"m","record":{"id":1,"n":6,"flag":"yes","note":"updated"}}
"#;
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(
        columns(&db, "m"),
        vec![
            ("id".into(), "INTEGER".into()),
            ("n".into(), "REAL".into()),
            ("flag".into(), "TEXT".into()),
            ("note".into(), "TEXT".into())
        ]
    );
    assert_eq!(
        query(&db, "SELECT id, n, flag, note FROM m ORDER BY id"),
        rows(&[&["1", "6", "yes", "updated"], &["2", "2.5", "maybe", "new"]])
    );
    // The upsert key survived the rebuild of the table.
    let again = "{\"type\":\"RECORD\",\"stream\":\"m\",\"record\":{\"id\":2,\"n\":1}}\n";
    let input2 = format!("{}{again}", input.lines().nth(2).unwrap().to_owned() + "\n");
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input2.as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        query(&db, "SELECT count(*), max(n) FROM m"),
        rows(&[&["2", "6"]])
    );
}

#[test]
fn target_sqlite_activate_version_deletes_strictly_older_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    let schema = r#"{"type":"SCHEMA","stream":"t","schema":{"properties":{"id":{"type":"integer"}}},"key_properties":["id"]}"#;
    let v1 = format!(
        "{schema}\n{}\n{}\n{}\n{}\n",
        r#"{"type":"RECORD","stream":"t","record":{"id":1},"version":100}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":2},"version":100}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":3},"version":100}"#,
        r#"{"type":"ACTIVATE_VERSION","stream":"t","version":100}"#
    );
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        v1.as_bytes(),
    )
    .assert_ok();
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(query(&db, "SELECT count(*) FROM t"), rows(&[&["3"]]));
    // Version 200 has rows 1 and 4 only; a row already at version 200 stays (not `<=`).
    let v2 = format!(
        "{schema}\n{}\n{}\n{}\n",
        r#"{"type":"RECORD","stream":"t","record":{"id":1},"version":200}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":4},"version":200}"#,
        r#"{"type":"ACTIVATE_VERSION","stream":"t","version":200}"#
    );
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        v2.as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        query(&db, "SELECT id, _sdc_table_version FROM t ORDER BY id"),
        rows(&[&["1", "200"], &["4", "200"]])
    );
}

#[test]
fn issue_4_target_sqlite_activate_version_deletes_rows_loaded_without_a_version() {
    // Issue 4: rows with a null `_sdc_table_version` survived ACTIVATE_VERSION.
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    let schema = r#"{"type":"SCHEMA","stream":"t","schema":{"properties":{"id":{"type":"integer"}}},"key_properties":["id"]}"#;
    // An incremental sync first: no versions, so no version column yet.
    let incremental = format!(
        "{schema}\n{}\n{}\n",
        r#"{"type":"RECORD","stream":"t","record":{"id":1}}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":5}}"#,
    );
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        incremental.as_bytes(),
    )
    .assert_ok();
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(
        query(&db, "SELECT id FROM t ORDER BY id"),
        rows(&[&["1"], &["5"]])
    );
    // Then a full-table sync at version 300; a row already at a newer version stays.
    let full = format!(
        "{schema}\n{}\n{}\n{}\n{}\n",
        r#"{"type":"RECORD","stream":"t","record":{"id":1},"version":300}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":2},"version":400}"#,
        r#"{"type":"RECORD","stream":"t","record":{"id":3},"version":300}"#,
        r#"{"type":"ACTIVATE_VERSION","stream":"t","version":300}"#
    );
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        full.as_bytes(),
    )
    .assert_ok();
    assert_eq!(
        query(&db, "SELECT id, _sdc_table_version FROM t ORDER BY id"),
        rows(&[&["1", "300"], &["2", "400"], &["3", "300"]])
    );
}

#[test]
fn target_sqlite_prints_state_only_after_committing_the_rows_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    let mut child = Command::new(bin("target-sqlite"))
        .args(["--config", &cfg])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, r#"{{"type":"SCHEMA","stream":"s","schema":{{"properties":{{"id":{{"type":"integer"}}}}}},"key_properties":["id"]}}"#).unwrap();
    for i in 0..50 {
        writeln!(
            stdin,
            r#"{{"type":"RECORD","stream":"s","record":{{"id":{i}}}}}"#
        )
        .unwrap();
    }
    writeln!(
        stdin,
        r#"{{"type":"STATE","value":{{"bookmarks":{{"s":{{"n":50}}}}}}}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    // The target is still running (its stdin is open) when the STATE comes out.
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        json!({"bookmarks": {"s": {"n": 50}}})
    );
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(query(&db, "SELECT count(*) FROM s"), rows(&[&["50"]]));
    // Rows after the last STATE are committed at the end too.
    writeln!(
        stdin,
        r#"{{"type":"RECORD","stream":"s","record":{{"id":99}}}}"#
    )
    .unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(query(&db, "SELECT count(*) FROM s"), rows(&[&["51"]]));
}

#[test]
fn target_sqlite_commits_in_batches_and_keeps_loaded_rows_on_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(
        dir.path(),
        "t.json",
        &json!({"database": "w.db", "batch_size_rows": 2}),
    );
    let input = r#"{"type":"SCHEMA","stream":"s","schema":{"properties":{"id":{"type":"integer"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"s","record":{"id":1}}
{"type":"RECORD","stream":"s","record":{"id":2}}
{"type":"RECORD","stream":"s","record":{"id":3}}
{"type":"RECORD","stream":"s","record":{"id":
"#;
    let r = run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("input line 5 is not a Singer message"),
        "{}",
        r.stderr
    );
    assert_eq!(
        query(&dir.path().join("w.db"), "SELECT count(*) FROM s"),
        rows(&[&["3"]])
    );
}

#[test]
fn target_sqlite_locked_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(
        dir.path(),
        "t.json",
        &json!({"database": "w.db", "busy_timeout_ms": 100}),
    );
    let holder = rusqlite::Connection::open(dir.path().join("w.db")).unwrap();
    holder
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE x (a); BEGIN EXCLUSIVE; INSERT INTO x VALUES (1);")
        .unwrap();
    let input = r#"{"type":"SCHEMA","stream":"s","schema":{"properties":{"id":{"type":"integer"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"s","record":{"id":1}}
"#;
    let r = run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("database `w.db` is locked by another process"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    holder.execute_batch("COMMIT").unwrap();
}

#[test]
fn target_sqlite_non_sqlite_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.db"), vec![b'x'; 4096]).unwrap();
    let cfg = write_json(dir.path(), "t.json", &json!({"database": "w.db"}));
    let r = run(dir.path(), "target-sqlite", &["--config", &cfg], b"");
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("`w.db` is not a SQLite database"),
        "{}",
        r.stderr
    );
    let missing = run(dir.path(), "target-sqlite", &["--config", "nope.json"], b"");
    assert_eq!(missing.code, 2);
}

// Issue 30: `99999999999999999999999` was stored as the REAL 1e23 and `1e999999` as Inf.
#[test]
fn issue_30_target_sqlite_never_rounds_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = target(dir.path());
    // `amount` may be a number or a string: a TEXT column, where a number no double holds
    // exactly is kept as its JSON text.
    let input = r#"{"type":"SCHEMA","stream":"t","schema":{"properties":{"id":{"type":"integer"},"amount":{"type":["number","string"]}}},"key_properties":["id"]}
{"type":"RECORD","stream":"t","record":{"id":1,"amount":99999999999999999999999}}
{"type":"RECORD","stream":"t","record":{"id":2,"amount":1e999999}}
{"type":"RECORD","stream":"t","record":{"id":3,"amount":19.99}}
"#;
    run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    )
    .assert_ok();
    let db = dir.path().join("out/warehouse.db");
    assert_eq!(
        query(&db, "SELECT id, amount, typeof(amount) FROM t ORDER BY id"),
        rows(&[
            &["1", "99999999999999999999999", "text"],
            &["2", "1e999999", "text"],
            &["3", "19.99", "text"],
        ])
    );

    // A REAL column refuses such a number, naming the line, record field and stream.
    let input = r#"{"type":"SCHEMA","stream":"r","schema":{"properties":{"id":{"type":"integer"},"x":{"type":"number"}}},"key_properties":["id"]}
{"type":"RECORD","stream":"r","record":{"id":1,"x":2.5}}
{"type":"RECORD","stream":"r","record":{"id":2,"x":1e999999}}
"#;
    let out = run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("input line 3: record of stream `r`: field `x` is the number 1e999999, which no SQLite INTEGER or REAL holds exactly"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[\"number\", \"string\"]"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.to_lowercase().contains("inf"), "{}", out.stderr);

    // Never in a key column, not even a TEXT one.
    let input = r#"{"type":"SCHEMA","stream":"k","schema":{"properties":{"id":{"type":["number","string"]}}},"key_properties":["id"]}
{"type":"RECORD","stream":"k","record":{"id":99999999999999999999999}}
"#;
    let out = run(
        dir.path(),
        "target-sqlite",
        &["--config", &cfg],
        input.as_bytes(),
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("field `id`"), "{}", out.stderr);
    assert!(out.stderr.contains("key column"), "{}", out.stderr);
    assert_eq!(query(&db, "SELECT count(*) FROM k"), rows(&[&["0"]]));
}

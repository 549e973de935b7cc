//! dsm's built-in `tap-postgres` and `target-postgres` against a real PostgreSQL server: the
//! cluster `scripts/test.sh` starts with `scripts/pg-test-cluster.sh` (its superuser URL in
//! `DSM_TEST_PG_URL`). Each test makes its own databases in it.

// Test support code panics on setup failures by design.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

/// The server every test uses.
fn server_url() -> String {
    std::env::var("DSM_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "DSM_TEST_PG_URL is not set: these tests need a PostgreSQL server.\n\
             Run them through scripts/test.sh, or start one with\n  \
             export DSM_TEST_PG_URL=$(scripts/pg-test-cluster.sh start \"$(mktemp -d)\")\n\
             (and scripts/pg-test-cluster.sh stop DIR afterwards)"
        )
    })
}

/// A database of its own for a test, on the test server (dropped with it).
struct Db {
    config: postgres::Config,
    name: String,
}

impl Drop for Db {
    fn drop(&mut self) {
        // The shared server outlives the test run: leave nothing behind (FORCE ends sessions a
        // plugin may still hold).
        if let Ok(base) = server_url().parse::<postgres::Config>()
            && let Ok(mut admin) = base.connect(postgres::NoTls)
        {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Db {
    fn new(tag: &str) -> Db {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dsm_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let base: postgres::Config = server_url().parse().unwrap();
        let mut admin = base.connect(postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap();
        let mut config = base;
        config.dbname(&name);
        Db { config, name }
    }

    fn client(&self) -> postgres::Client {
        self.config.connect(postgres::NoTls).unwrap()
    }

    fn exec(&self, sql: &str) {
        self.client().batch_execute(sql).unwrap();
    }

    /// Rows of a query, each value as its text (`NULL` for null).
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let mut c = self.client();
        let rows = c.simple_query(sql).unwrap();
        rows.into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_owned())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    fn one(&self, sql: &str) -> String {
        self.rows(sql)[0][0].clone()
    }

    /// The plugins' connection settings, as separate settings (MeltanoLabs' names).
    fn settings(&self) -> Value {
        let host = match &self.config.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        json!({
            "host": host,
            "port": self.config.get_ports()[0],
            "user": self.config.get_user().unwrap(),
            "password": String::from_utf8(self.config.get_password().unwrap().to_vec()).unwrap(),
            "database": self.config.get_dbname().unwrap(),
            "ssl_mode": "disable",
        })
    }

    fn with(&self, extra: Value) -> Value {
        let mut s = self.settings();
        s.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        s
    }
}

fn bin(name: &str) -> &'static str {
    match name {
        "tap-postgres" => env!("CARGO_BIN_EXE_tap-postgres"),
        "target-postgres" => env!("CARGO_BIN_EXE_target-postgres"),
        other => panic!("no plugin `{other}`"),
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "stderr:\n{}", self.stderr);
        self
    }

    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

/// Runs a plugin with a config file, extra arguments and stdin.
fn run(name: &str, dir: &Path, config: &Value, args: &[&str], stdin: &[u8]) -> Run {
    let cfg = dir.join(format!("{name}.json"));
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut child = Command::new(bin(name))
        .arg("--config")
        .arg(&cfg)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines(messages: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(m.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn schema(stream: &str, props: Value, keys: &[&str]) -> Value {
    json!({"type": "SCHEMA", "stream": stream, "schema": {"type": "object", "properties": props}, "key_properties": keys})
}

fn record(stream: &str, rec: Value) -> Value {
    json!({"type": "RECORD", "stream": stream, "record": rec})
}

/// A catalog from `--discover` with `stream` selected, incremental on `key` when given.
fn catalog(tap_run: &Run, stream: &str, key: Option<&str>) -> Value {
    let mut cat = tap_run.lines().remove(0);
    for s in cat["streams"].as_array_mut().unwrap() {
        let me = s["tap_stream_id"] == stream;
        for m in s["metadata"].as_array_mut().unwrap() {
            if m["breadcrumb"].as_array().unwrap().is_empty() {
                m["metadata"]["selected"] = me.into();
                if let (true, Some(k)) = (me, key) {
                    m["metadata"]["replication-method"] = "INCREMENTAL".into();
                    m["metadata"]["replication-key"] = k.into();
                }
            }
        }
    }
    cat
}

/// A table with a column of every kind of value the tap must carry exactly. (A JSON `null` in a
/// json column and SQL NULL are the same JSON on the wire, so only SQL NULL is here.)
const TYPES_TABLE: &str = r#"
CREATE TABLE kinds (
    id integer PRIMARY KEY,
    i2 smallint, i8 bigint NOT NULL,
    n numeric(30,10), nf numeric, f4 real, f8 double precision,
    b boolean, t text, vc varchar(12), ch char(3),
    ts timestamp, tstz timestamptz, d date, tm time, tmtz time with time zone, iv interval,
    j json, jb jsonb, ia integer[], ta text[], u uuid, by bytea
);
INSERT INTO kinds VALUES
 (1, 32767, 9223372036854775807, 12345678901234567890.0123456789, 0.1000000000000000000001,
  3.4028235e38, 1.7976931348623157e308, true, E'tab\there\nnew line \\ back "q" ''s'' é ✓', 'short', 'ab',
  '2024-02-29 23:59:59.999999', '2024-02-29 23:59:59.123456+05:30', '2024-02-29', '23:59:59.5', '12:00+02', '1 year 2 mons 3 days 04:05:06',
  E'{\n  "a": [1, 2.50, "x"],\n  "nested": {"k": null}\n}', '{"b": {"c": [true, false]}, "n": 1.0}', '{1,NULL,3}', E'{"a b","c,d","e\\"f",NULL,""}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10'),
 (2, -32768, -9223372036854775808, 'NaN', 'Infinity', '-Infinity', 'NaN', false, '', '', '',
  'infinity', '-infinity', 'infinity', '00:00', '00:00+00', '-1 days',
  '[]', '"just a string"', '{}', '{}', '00000000-0000-0000-0000-000000000000', ''),
 (3, NULL, 0, NULL, '-0.000001', NULL, 5e-324, NULL, NULL, NULL, NULL,
  '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '0001-01-01', NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL);
"#;

/// Every column as text for comparing: json compared as jsonb (its whitespace is not data).
const TYPES_SELECT: &str = "SELECT id, i2, i8, n, nf, f4, f8, b, t, vc, ch, ts, tstz, d, tm, tmtz, iv, \
     j::jsonb, jb, ia, ta, u, by FROM kinds ORDER BY id";

#[test]
fn every_type_round_trips_postgres_to_postgres_with_the_same_values() {
    let src = Db::new("src");
    let dst = Db::new("dst");
    src.exec(TYPES_TABLE);
    let dir = tempfile::tempdir().unwrap();
    let tap = run("tap-postgres", dir.path(), &src.settings(), &[], b"").ok();
    let messages = tap.lines();
    let records: Vec<&Value> = messages.iter().filter(|m| m["type"] == "RECORD").collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["stream"], "public-kinds");
    // Exact values on the wire.
    let r = &records[0]["record"];
    assert_eq!(
        serde_json::to_string(&r["n"]).unwrap(),
        "12345678901234567890.0123456789"
    );
    assert_eq!(r["tstz"], "2024-02-29T18:29:59.123456+00:00");
    assert_eq!(r["ts"], "2024-02-29T23:59:59.999999");
    assert_eq!(r["jb"], json!({"b": {"c": [true, false]}, "n": 1.0}));
    assert_eq!(
        serde_json::to_string(&r["j"]["a"]).unwrap(),
        r#"[1,2.50,"x"]"#
    );
    assert_eq!(r["ia"], json!([1, null, 3]));
    assert_eq!(r["by"], "AP8Q");
    assert_eq!(records[1]["record"]["n"], "NaN");
    assert_eq!(records[1]["record"]["ts"], "infinity");
    let schema = messages.iter().find(|m| m["type"] == "SCHEMA").unwrap();
    assert_eq!(schema["key_properties"], json!(["id"]));
    assert_eq!(
        schema["schema"]["properties"]["n"]["x-sql-datatype"],
        "numeric(30,10)"
    );
    assert_eq!(
        schema["schema"]["properties"]["i8"]["type"],
        json!(["integer"])
    );

    run(
        "target-postgres",
        dir.path(),
        &dst.settings(),
        &[],
        tap.stdout.as_bytes(),
    )
    .ok();
    assert_eq!(dst.rows(TYPES_SELECT), src.rows(TYPES_SELECT));
    let types = "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = 'public.kinds'::regclass AND a.attnum > 0 \
                 AND a.attname NOT LIKE '\\_sdc\\_%' ORDER BY a.attnum";
    assert_eq!(dst.rows(types), src.rows(types));
    assert_eq!(
        dst.one("SELECT count(*) FROM kinds WHERE _sdc_deleted_at IS NOT NULL"),
        "0"
    );
}

#[test]
fn incremental_sync_resumes_from_its_bookmark_in_key_order() {
    let src = Db::new("inc");
    src.exec(
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamptz NOT NULL, v text);
         INSERT INTO events (at, v) SELECT timestamptz '2024-01-01' + (g || ' minutes')::interval, 'e' || g
         FROM generate_series(25, 1, -1) g;
         CREATE TABLE other (x int);",
    );
    let dir = tempfile::tempdir().unwrap();
    let discovered = run(
        "tap-postgres",
        dir.path(),
        &src.settings(),
        &["--discover"],
        b"",
    )
    .ok();
    let cat = catalog(&discovered, "public-events", Some("at"));
    std::fs::write(dir.path().join("catalog.json"), cat.to_string()).unwrap();
    let first = run(
        "tap-postgres",
        dir.path(),
        &src.settings(),
        &["--catalog", "catalog.json"],
        b"",
    )
    .ok();
    let msgs = first.lines();
    let vs: Vec<&str> = msgs
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["v"].as_str().unwrap())
        .collect();
    assert_eq!(vs.len(), 25, "only the selected stream");
    assert_eq!(vs[0], "e1", "ordered by the replication key");
    assert_eq!(vs[24], "e25");
    assert!(
        msgs.iter()
            .all(|m| m["type"] != "RECORD" || m.get("version").is_none()),
        "incremental records carry no table version"
    );
    let state = msgs.iter().rev().find(|m| m["type"] == "STATE").unwrap()["value"].clone();
    assert_eq!(
        state["bookmarks"]["public-events"]["replication_key_value"],
        "2024-01-01T00:25:00+00:00"
    );
    src.exec(
        "INSERT INTO events (at, v) VALUES ('2024-01-01 00:30+00', 'late'), ('2023-01-01', 'old')",
    );
    std::fs::write(dir.path().join("state.json"), state.to_string()).unwrap();
    let second = run(
        "tap-postgres",
        dir.path(),
        &src.settings(),
        &["--catalog", "catalog.json", "--state", "state.json"],
        b"",
    )
    .ok();
    let vs: Vec<String> = second
        .lines()
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["v"].as_str().unwrap().to_owned())
        .collect();
    // The bookmark's own row again (at-least-once, as the SDK does), then the new one.
    assert_eq!(vs, ["e25", "late"]);
}

/// Messages of a stream of `n` keyed records with a STATE after every `every`.
fn keyed_stream(n: u64, every: u64) -> Vec<Value> {
    let mut m = vec![schema(
        "items",
        json!({"id": {"type": "integer"}, "v": {"type": ["string", "null"]}}),
        &["id"],
    )];
    for i in 1..=n {
        m.push(record("items", json!({"id": i, "v": format!("v{i}")})));
        if i % every == 0 {
            m.push(json!({"type": "STATE", "value": {"done": i}}));
        }
    }
    m
}

#[test]
fn killed_target_resumes_from_its_last_state_without_loss_or_duplicates() {
    let dst = Db::new("kill");
    let dir = tempfile::tempdir().unwrap();
    let config = dst.with(json!({"batch_size_rows": 400}));
    std::fs::write(dir.path().join("t.json"), config.to_string()).unwrap();
    let all = keyed_stream(3000, 100);
    let mut child = Command::new(bin("target-postgres"))
        .args(["--config", "t.json"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    // Half of the stream, then wait for a STATE the target passed on, then kill it mid-batch.
    let half = all.len() / 2;
    stdin.write_all(&lines(&all[..half])).unwrap();
    stdin.flush().unwrap();
    let mut states = Vec::new();
    let mut line = String::new();
    while states.len() < 2 {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "target ended early"
        );
        states.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let committed: u64 = dst.one("SELECT count(*) FROM items").parse().unwrap();
    let last = states.last().unwrap()["done"].as_u64().unwrap();
    assert!(
        committed >= last,
        "STATE {last} passed on before its rows were committed ({committed})"
    );
    // 1,500 records were sent, batches are 400: the rows after 1,200 were lost with the process.
    assert!(committed < 1500, "{committed}");
    // Resume: the tap sends again everything after the last state the target passed on.
    let mut rest = vec![all[0].clone()];
    rest.extend(
        all.iter()
            .skip(1)
            .filter(|m| m["type"] != "RECORD" || m["record"]["id"].as_u64().unwrap() > last)
            .filter(|m| m["type"] != "STATE" || m["value"]["done"].as_u64().unwrap() > last)
            .cloned(),
    );
    let resumed = run("target-postgres", dir.path(), &config, &[], &lines(&rest)).ok();
    assert_eq!(resumed.lines().last().unwrap()["done"], 3000);
    let lengths: usize = (1..=3000).map(|i| format!("v{i}").len()).sum();
    assert_eq!(
        dst.rows(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(length(v)) FROM items"
        ),
        vec![vec![
            "3000".to_owned(),
            "3000".to_owned(),
            "1".to_owned(),
            "3000".to_owned(),
            lengths.to_string()
        ]]
    );
}

#[test]
fn state_waits_for_the_commit_of_the_records_before_it() {
    let dst = Db::new("state");
    let dir = tempfile::tempdir().unwrap();
    let messages = keyed_stream(10, 5);
    let out = run(
        "target-postgres",
        dir.path(),
        &dst.with(json!({"batch_size_rows": 1000})),
        &[],
        &lines(&messages),
    )
    .ok();
    // Both states come out after the only batch (at the end of input), the newest last.
    assert_eq!(out.lines(), vec![json!({"done": 10})]);
    assert_eq!(dst.one("SELECT count(*) FROM items"), "10");
}

#[test]
fn schema_change_mid_stream_adds_and_widens_columns_never_narrows() {
    let dst = Db::new("schema");
    let dir = tempfile::tempdir().unwrap();
    let s = "public-things";
    let messages = vec![
        schema(
            s,
            json!({"id": {"type": "integer"}, "a": {"type": ["integer", "null"]}, "f": {"type": "boolean"}}),
            &["id"],
        ),
        record(s, json!({"id": 1, "a": 5, "f": true})),
        schema(
            s,
            json!({"id": {"type": "integer"}, "a": {"type": ["number", "null"]}, "f": {"type": "string"}, "new": {"type": "string"}}),
            &["id"],
        ),
        record(s, json!({"id": 2, "a": 2.5, "f": "maybe", "new": "x"})),
        // Narrower again: the table keeps its wider types.
        schema(
            s,
            json!({"id": {"type": "integer"}, "a": {"type": ["integer", "null"]}}),
            &["id"],
        ),
        record(s, json!({"id": 3, "a": 7})),
    ];
    run(
        "target-postgres",
        dir.path(),
        &dst.settings(),
        &[],
        &lines(&messages),
    )
    .ok();
    assert_eq!(
        dst.rows("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.things'::regclass AND attnum > 0 ORDER BY attnum"),
        vec![
            vec!["id".to_owned(), "bigint".to_owned()],
            vec!["a".to_owned(), "numeric".to_owned()],
            vec!["f".to_owned(), "text".to_owned()],
            vec!["new".to_owned(), "text".to_owned()],
        ]
    );
    assert_eq!(
        dst.rows("SELECT id, a, f, new FROM things ORDER BY id"),
        vec![
            vec!["1", "5", "true", "NULL"],
            vec!["2", "2.5", "maybe", "x"],
            vec!["3", "7", "NULL", "NULL"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
}

#[test]
fn long_stream_and_property_names_are_shortened_by_the_stated_rule() {
    let dst = Db::new("long");
    let dir = tempfile::tempdir().unwrap();
    let long_table = "t".repeat(70);
    let long_col = "c".repeat(64);
    let messages = vec![
        schema(
            &long_table,
            json!({"id": {"type": "integer"}, long_col.clone(): {"type": "string"}}),
            &["id"],
        ),
        record(&long_table, json!({"id": 1, long_col.clone(): "kept"})),
    ];
    run(
        "target-postgres",
        dir.path(),
        &dst.settings(),
        &[],
        &lines(&messages),
    )
    .ok();
    let table = dst.one("SELECT relname FROM pg_class WHERE relname LIKE 'ttt%' AND relkind = 'r'");
    assert_eq!(table.len(), 63);
    assert!(table.starts_with(&"t".repeat(54)));
    assert_eq!(&table[54..55], "_");
    let col = dst.one(&format!(
        "SELECT attname FROM pg_attribute WHERE attrelid = '\"{table}\"'::regclass AND attnum = 2"
    ));
    assert_eq!(col.len(), 63);
    assert_eq!(
        dst.one(&format!("SELECT \"{col}\" FROM \"{table}\"")),
        "kept"
    );
}

#[test]
fn load_methods_upsert_append_and_overwrite() {
    let s = "public-kv";
    let first = vec![
        schema(
            s,
            json!({"k": {"type": "string"}, "v": {"type": "integer"}}),
            &["k"],
        ),
        record(s, json!({"k": "a", "v": 1})),
        record(s, json!({"k": "b", "v": 2})),
        record(s, json!({"k": "a", "v": 3})),
    ];
    let second = vec![
        first[0].clone(),
        record(s, json!({"k": "b", "v": 20})),
        record(s, json!({"k": "c", "v": 30})),
    ];
    let dir = tempfile::tempdir().unwrap();
    let table = |db: &Db| db.rows("SELECT k, v FROM kv ORDER BY k, v");
    let expect = |rows: &[(&str, &str)]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|(a, b)| vec![(*a).to_owned(), (*b).to_owned()])
            .collect()
    };

    let up = Db::new("upsert");
    for m in [&first, &second] {
        run(
            "target-postgres",
            dir.path(),
            &up.settings(),
            &[],
            &lines(m),
        )
        .ok();
    }
    assert_eq!(table(&up), expect(&[("a", "3"), ("b", "20"), ("c", "30")]));

    let app = Db::new("append");
    let cfg = app.with(json!({"load_method": "append-only"}));
    for m in [&first, &second] {
        run("target-postgres", dir.path(), &cfg, &[], &lines(m)).ok();
    }
    assert_eq!(
        table(&app),
        expect(&[("a", "1"), ("a", "3"), ("b", "2"), ("b", "20"), ("c", "30")])
    );

    let over = Db::new("overwrite");
    let cfg = over.with(json!({"load_method": "overwrite", "batch_size_rows": 1}));
    for m in [&first, &second] {
        run("target-postgres", dir.path(), &cfg, &[], &lines(m)).ok();
    }
    // Only the last run's rows, although it loaded them over several batches.
    assert_eq!(table(&over), expect(&[("b", "20"), ("c", "30")]));
}

#[test]
fn activate_version_soft_deletes_or_hard_deletes_older_versions() {
    let s = "public-v";
    let sync = |version: u64, ids: &[u64]| {
        let mut m = vec![schema(s, json!({"id": {"type": "integer"}}), &["id"])];
        for id in ids {
            m.push(
                json!({"type": "RECORD", "stream": s, "record": {"id": id}, "version": version}),
            );
        }
        m.push(json!({"type": "ACTIVATE_VERSION", "stream": s, "version": version}));
        lines(&m)
    };
    let dir = tempfile::tempdir().unwrap();
    for metadata in [true, false] {
        for hard in [false, true] {
            let db = Db::new(if hard { "hard" } else { "soft" });
            let cfg = db.with(json!({"hard_delete": hard, "add_record_metadata": metadata}));
            let load = |messages: &[u8]| {
                run("target-postgres", dir.path(), &cfg, &[], messages).ok();
            };
            load(&sync(1, &[1, 2, 3]));
            // A row written by someone else has no version: not part of any sync.
            db.exec("INSERT INTO v (id) VALUES (100)");
            load(&sync(2, &[2, 3]));
            let row =
                |id: &str, v: &str, del: &str| vec![id.to_owned(), v.to_owned(), del.to_owned()];
            let kept = vec![row("2", "2", "f"), row("3", "2", "f")];
            if hard {
                // (Without the metadata columns a hard delete needs no `_sdc_deleted_at`.)
                let rows = db.rows("SELECT id, _sdc_table_version, 'f' FROM v ORDER BY id");
                assert_eq!(rows, kept, "metadata {metadata}");
            } else {
                let rows = db.rows(
                    "SELECT id, _sdc_table_version, _sdc_deleted_at IS NOT NULL FROM v ORDER BY id",
                );
                // MeltanoLabs' soft delete: older versions and unversioned rows get a
                // deletion time, the activated version's rows none.
                let mut all = vec![row("1", "1", "t")];
                all.extend(kept);
                all.push(row("100", "NULL", "t"));
                assert_eq!(rows, all, "metadata {metadata}");
                // A row that comes back in a newer version is no longer deleted.
                load(&sync(3, &[1, 2]));
                assert_eq!(
                    db.rows("SELECT id, _sdc_deleted_at IS NOT NULL FROM v ORDER BY id"),
                    vec![
                        vec!["1".to_owned(), "f".to_owned()],
                        vec!["2".to_owned(), "f".to_owned()],
                        vec!["3".to_owned(), "t".to_owned()],
                        vec!["100".to_owned(), "t".to_owned()],
                    ],
                    "metadata {metadata}"
                );
            }
            if metadata {
                assert_eq!(
                    db.one("SELECT count(*) FROM v WHERE _sdc_extracted_at IS NULL AND _sdc_batched_at IS NOT NULL AND id <> 100"),
                    db.one("SELECT count(*) FROM v WHERE id <> 100")
                );
            }
            // An ACTIVATE_VERSION with no records of its version: every row is older.
            load(&sync(9, &[]));
            assert_eq!(
                db.one(if hard {
                    "SELECT count(*) FROM v"
                } else {
                    "SELECT count(*) FROM v WHERE _sdc_deleted_at IS NULL"
                }),
                "0"
            );
        }
    }
    // `activate_version: false` ignores the message (MeltanoLabs' setting).
    let db = Db::new("noactivate");
    let cfg = db.with(json!({"hard_delete": true, "activate_version": false}));
    run("target-postgres", dir.path(), &cfg, &[], &sync(1, &[1, 2])).ok();
    run("target-postgres", dir.path(), &cfg, &[], &sync(2, &[2])).ok();
    assert_eq!(db.one("SELECT count(*) FROM v"), "2");
}

#[test]
fn bad_input_is_named_and_commits_nothing_after_the_last_state() {
    let dst = Db::new("bad");
    let dir = tempfile::tempdir().unwrap();
    let s = "items";
    let messages = vec![
        schema(s, json!({"id": {"type": "integer"}}), &["id"]),
        record(s, json!({"id": 1})),
        json!({"type": "STATE", "value": {"n": 1}}),
        record(s, json!({"id": 2})),
        record(s, json!({"other": 3})),
    ];
    let out = run(
        "target-postgres",
        dir.path(),
        &dst.settings(),
        &[],
        &lines(&messages),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("input line 5") && out.stderr.contains("key property `id`"),
        "{}",
        out.stderr
    );
    assert_eq!(out.lines(), vec![json!({"n": 1})]);
    assert_eq!(dst.rows("SELECT id FROM items"), vec![vec!["1".to_owned()]]);
}

#[test]
fn connection_errors_name_the_server_and_hide_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::new("auth");
    let cfg = db.with(json!({"password": "wrong-secret-value"}));
    let out = run("tap-postgres", dir.path(), &cfg, &["--discover"], b"");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot connect to PostgreSQL at"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-secret-value"), "{}", out.stderr);
    let cfg = db.with(json!({"ssl_mode": "sometimes"}));
    let out = run("target-postgres", dir.path(), &cfg, &[], b"");
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("`ssl_mode`"), "{}", out.stderr);
    // `require` against a server without TLS fails; `prefer` falls back to plain.
    let out = run(
        "tap-postgres",
        dir.path(),
        &db.with(json!({"ssl_mode": "require"})),
        &["--discover"],
        b"",
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    run(
        "tap-postgres",
        dir.path(),
        &db.with(json!({"ssl_mode": "prefer"})),
        &["--discover"],
        b"",
    )
    .ok();
}

#[test]
fn sqlalchemy_url_replaces_the_separate_settings() {
    let db = Db::new("url");
    db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (7)");
    let dir = tempfile::tempdir().unwrap();
    let s = db.settings();
    let url = format!(
        "postgresql+psycopg2://{}:{}@{}:{}/{}",
        s["user"].as_str().unwrap(),
        s["password"].as_str().unwrap(),
        s["host"].as_str().unwrap(),
        s["port"],
        s["database"].as_str().unwrap()
    );
    let out = run(
        "tap-postgres",
        dir.path(),
        &json!({"sqlalchemy_url": url, "ssl_mode": "disable"}),
        &[],
        b"",
    )
    .ok();
    let recs: Vec<Value> = out
        .lines()
        .into_iter()
        .filter(|m| m["type"] == "RECORD")
        .collect();
    assert_eq!(recs[0]["record"], json!({"id": 7}));
}

/// Runs dsm in `dir` with a clean environment plus `env`.
fn dsm(dir: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out = dsm_command(dir, args, env).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The dsm command `dsm()` runs, to spawn it instead.
fn dsm_command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_", "MAPPER_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("DSM_DATABASE_URI", dir.join(".dsm/dsm.db"))
        .env("XDG_CONFIG_HOME", dir.join(".test-config"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The plugins' settings as the environment variables dsm reads for `tap-postgres` (`src`)
/// and `target-postgres` (`dst`).
fn plugin_env(src: &Db, dst: &Db) -> Vec<(String, String)> {
    let (s, d) = (src.settings(), dst.settings());
    let mut env = Vec::new();
    for (prefix, db) in [("TAP_POSTGRES", &s), ("TARGET_POSTGRES", &d)] {
        for key in ["host", "port", "user", "password", "database", "ssl_mode"] {
            let v = match &db[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.push((format!("{prefix}_{}", key.to_uppercase()), v));
        }
    }
    env
}

#[test]
fn the_example_project_runs_the_built_ins_with_dsm_run_and_resumes() {
    let src = Db::new("shop_src");
    let dst = Db::new("shop_dst");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres");
    src.exec(&std::fs::read_to_string(example.join("seed.sql")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(example.join("meltano.yml"), dir.path().join("meltano.yml")).unwrap();
    let env = plugin_env(&src, &dst);
    let first = dsm(
        dir.path(),
        &["run", "tap-postgres", "target-postgres"],
        &env,
    );
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        dst.rows("SELECT id, amount, placed_at FROM raw.orders ORDER BY id"),
        src.rows("SELECT id, amount, placed_at FROM shop.orders ORDER BY id")
    );
    assert_eq!(
        dst.rows("SELECT id, name, tags, profile FROM raw.customers ORDER BY id"),
        src.rows("SELECT id, name, tags, profile FROM shop.customers ORDER BY id")
    );
    // The second run starts from the stored bookmark: only orders at or after it come again.
    src.exec(
        "UPDATE shop.orders SET amount = 25.00, updated_at = '2024-03-05 00:00+00' WHERE id = 100",
    );
    dst.exec("UPDATE raw.orders SET amount = -1 WHERE id = 101");
    let second = dsm(
        dir.path(),
        &["run", "tap-postgres", "target-postgres"],
        &env,
    );
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(
        dst.rows("SELECT id, amount FROM raw.orders ORDER BY id"),
        vec![
            vec!["100".to_owned(), "25.00".to_owned()],
            vec!["101".to_owned(), "-1.00".to_owned()],
            vec!["102".to_owned(), "0.01".to_owned()],
        ],
        "order 101 is before the bookmark and is not read again"
    );
}

#[test]
fn a_value_the_column_cannot_hold_names_the_stream_table_and_column() {
    let dst = Db::new("badvalue");
    let dir = tempfile::tempdir().unwrap();
    let messages = vec![
        schema(
            "public-n",
            json!({"id": {"type": "integer"}, "qty": {"type": "integer"}}),
            &["id"],
        ),
        record("public-n", json!({"id": 1, "qty": 2})),
        record("public-n", json!({"id": 2, "qty": "two"})),
    ];
    let out = run(
        "target-postgres",
        dir.path(),
        &dst.settings(),
        &[],
        &lines(&messages),
    );
    assert_eq!(out.code, 1);
    for part in ["stream `public-n`", "`public.n`", "column qty", "\"two\""] {
        assert!(out.stderr.contains(part), "{part}: {}", out.stderr);
    }
    // The batch failed as a whole: nothing of it is in the table.
    assert_eq!(dst.one("SELECT count(*) FROM n"), "0");
}

#[test]
fn an_interrupted_full_table_sync_resumes_after_the_last_key_with_its_version() {
    let src = Db::new("fullresume");
    src.exec(
        "CREATE TABLE big (a int, b text, v text, PRIMARY KEY (a, b));
         INSERT INTO big SELECT g / 2, (g % 2)::text, 'v' || g FROM generate_series(0, 24999) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let first = run("tap-postgres", dir.path(), &src.settings(), &[], b"").ok();
    let msgs = first.lines();
    let states: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "STATE").collect();
    // After 10,000 and 20,000 rows; then the bookmark is gone once the table is done (the
    // table's own STATE and the final one).
    assert_eq!(states.len(), 4, "{states:?}");
    let mid = states[0]["value"].clone();
    assert_eq!(
        mid["bookmarks"]["public-big"]["last_pk_fetched"],
        json!({"a": 4999, "b": "1"})
    );
    assert_eq!(states[2]["value"], json!({"bookmarks": {}}));
    assert_eq!(states[3]["value"], json!({"bookmarks": {}}));
    let version = msgs[1]["version"].clone();
    assert_eq!(mid["bookmarks"]["public-big"]["version"], version);

    std::fs::write(dir.path().join("state.json"), mid.to_string()).unwrap();
    let second = run(
        "tap-postgres",
        dir.path(),
        &src.settings(),
        &["--state", "state.json"],
        b"",
    )
    .ok();
    let msgs = second.lines();
    let records: Vec<&Value> = msgs.iter().filter(|m| m["type"] == "RECORD").collect();
    assert_eq!(records.len(), 15_000);
    assert_eq!(records[0]["record"]["v"], "v10000");
    assert!(records.iter().all(|r| r["version"] == version));
    let activate = msgs
        .iter()
        .find(|m| m["type"] == "ACTIVATE_VERSION")
        .unwrap();
    assert_eq!(activate["version"], version);
}

#[test]
fn only_variant_dsm_selects_the_built_ins_and_other_definitions_run_what_they_ran() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meltano.yml"),
        "version: 1\ndefault_environment: dev\nenvironments: [{name: dev}]\nplugins:\n  \
         extractors:\n  - name: tap-postgres\n    variant: meltanolabs\n    \
         pip_url: meltanolabs-tap-postgres==0.10.0\n  loaders:\n  - name: target-postgres\n    \
         namespace: target_postgres\n  - name: target-pg\n    inherit_from: target-postgres\n    \
         variant: dsm\n",
    )
    .unwrap();
    let out = dsm(dir.path(), &["plugins", "list", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    let find = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    // MeltanoLabs' tap from its venv, a custom `target-postgres` from PATH, as before.
    assert_eq!(find("tap-postgres")["executable"], "tap-postgres");
    assert_eq!(find("tap-postgres")["status"], "missing");
    assert_eq!(find("target-postgres")["executable"], "target-postgres");
    let builtin = find("target-pg");
    assert_eq!(builtin["status"], "built_in");
    assert_eq!(
        builtin["executable"],
        env!("CARGO_BIN_EXE_target-postgres"),
        "variant dsm runs the built-in next to dsm"
    );
    // `dsm add ... --variant dsm` adds the built-ins from dsm's catalog, with nothing to install.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(
        fresh.path().join("meltano.yml"),
        "version: 1\ndefault_environment: dev\nenvironments: [{name: dev}]\n",
    )
    .unwrap();
    for (kind, name) in [("extractor", "tap-postgres"), ("loader", "target-postgres")] {
        let out = dsm(fresh.path(), &["add", kind, name, "--variant", "dsm"], &[]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    }
    let yml = std::fs::read_to_string(fresh.path().join("meltano.yml")).unwrap();
    assert!(!yml.contains("pip_url"), "{yml}");
    let out = dsm(fresh.path(), &["plugins", "list", "--format", "json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    for name in ["tap-postgres", "target-postgres"] {
        let p = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} not added: {list}"));
        assert_eq!(p["variant"], "dsm", "{p}");
        assert_eq!(p["status"], "built_in", "{p}");
    }
    let about = Command::new(bin("tap-postgres"))
        .args(["--about"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&about.stdout).contains("Log-based replication"),
        "--about says log-based replication is out of scope"
    );
}

/// A PostgreSQL server of a test's own, started by `scripts/pg-test-cluster.sh` and stopped
/// (its folder deleted) when dropped.
struct OwnCluster {
    dir: std::path::PathBuf,
    url: String,
}

impl OwnCluster {
    fn start(dir: &Path, extra: &[&str]) -> OwnCluster {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the cluster did not start:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        OwnCluster {
            dir: dir.to_owned(),
            url,
        }
    }

    fn port(&self) -> u16 {
        let config: postgres::Config = self.url.parse().unwrap();
        config.get_ports()[0]
    }

    fn admin(&self) -> postgres::Client {
        let config: postgres::Config = self.url.parse().unwrap();
        config.connect(postgres::NoTls).unwrap()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-test-cluster.sh");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Runs `openssl` (the command-line tool) in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl (the command-line tool) is needed here: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway certificate authority `NAME.crt` / `NAME.key` (EC P-256) in `dir`.
fn make_ca(dir: &Path, name: &str) {
    let (key, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.crt"),
        format!("/CN=dsm test authority {name}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

#[test]
fn ssl_modes_encrypt_and_verify_against_a_tls_server_of_its_own() {
    let work = tempfile::tempdir().unwrap();
    // The cluster belongs to the unprivileged `postgres` user when run as root: it must be able
    // to reach its folder.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let w = work.path();
    make_ca(w, "ca");
    make_ca(w, "other-ca");
    // The server's certificate names `localhost` only, and is signed by `ca`.
    openssl(
        w,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        w.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        w,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let cluster = OwnCluster::start(
        &w.join("cluster"),
        &[
            "--tls",
            w.join("server.crt").to_str().unwrap(),
            w.join("server.key").to_str().unwrap(),
        ],
    );
    // `tls_only` may log in over TLS only, `plain_only` without TLS only: whether a plugin's
    // connection is encrypted shows in whether it gets in.
    let hba = cluster.dir.join("data/pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!(
            "hostssl all tls_only 127.0.0.1/32 scram-sha-256\n\
             host all tls_only all reject\n\
             hostnossl all plain_only 127.0.0.1/32 scram-sha-256\n\
             host all plain_only all reject\n{old}"
        ),
    )
    .unwrap();
    let mut admin = cluster.admin();
    admin
        .batch_execute(
            "CREATE ROLE tls_only LOGIN PASSWORD 'pw-tls'; \
             CREATE ROLE plain_only LOGIN PASSWORD 'pw-plain'; \
             SELECT pg_reload_conf();",
        )
        .unwrap();
    let ca = w.join("ca.crt").to_str().unwrap().to_owned();
    let other_ca = w.join("other-ca.crt").to_str().unwrap().to_owned();
    let port = cluster.port();
    let cfg = |host: &str, user: &str, extra: Value| {
        let mut c = json!({
            "host": host, "port": port, "user": user,
            "password": if user == "tls_only" { "pw-tls" } else { "pw-plain" },
            "database": "postgres",
        });
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let discover = |c: &Value| run("tap-postgres", dir.path(), c, &["--discover"], b"");

    // verify-full: the authority given and the host name the certificate names.
    let full = json!({"ssl_mode": "verify-full", "ssl_certificate_authority": ca});
    discover(&cfg("localhost", "tls_only", full.clone())).ok();
    // ... the authority as PEM text in the setting, as MeltanoLabs' plugins accept it.
    let pem = std::fs::read_to_string(&ca).unwrap();
    discover(&cfg(
        "localhost",
        "tls_only",
        json!({"ssl_mode": "verify-full", "ssl_certificate_authority": pem}),
    ))
    .ok();
    // ... MeltanoLabs' `ssl_enable` alone means verify-full.
    discover(&cfg(
        "localhost",
        "tls_only",
        json!({"ssl_enable": true, "ssl_certificate_authority": ca}),
    ))
    .ok();
    // ... and through a URL's libpq parameters.
    let url = format!(
        "postgresql://tls_only:pw-tls@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={}",
        ca.replace('/', "%2F")
    );
    discover(&json!({"sqlalchemy_url": url})).ok();
    // A host name the certificate does not name: refused, saying why and what to do.
    let out = discover(&cfg("127.0.0.1", "tls_only", full.clone()));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not valid for name") && out.stderr.contains("verify-ca"),
        "{}",
        out.stderr
    );
    let out = discover(&cfg(
        "127.0.0.1",
        "tls_only",
        json!({"ssl_enable": true, "ssl_certificate_authority": ca}),
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    // Another authority: refused too.
    let out = discover(&cfg(
        "localhost",
        "tls_only",
        json!({"ssl_mode": "verify-full", "ssl_certificate_authority": other_ca}),
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not signed by the authority"),
        "{}",
        out.stderr
    );

    // verify-ca: any host name, but only the right authority.
    let verify_ca =
        |auth: &str| json!({"ssl_mode": "verify-ca", "ssl_certificate_authority": auth});
    discover(&cfg("127.0.0.1", "tls_only", verify_ca(&ca))).ok();
    let out = discover(&cfg("127.0.0.1", "tls_only", verify_ca(&other_ca)));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("not signed by the authority"),
        "{}",
        out.stderr
    );
    // Without an authority at all: a configuration error before connecting.
    let out = discover(&cfg(
        "127.0.0.1",
        "tls_only",
        json!({"ssl_mode": "verify-ca", "ssl_certificate_authority": w.join("missing.crt").to_str().unwrap()}),
    ));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("ssl_certificate_authority"),
        "{}",
        out.stderr
    );

    // require: encrypted (the TLS-only user gets in, the plain-only one does not), nothing
    // verified (another authority, a wrong host name).
    let require = json!({"ssl_mode": "require", "ssl_certificate_authority": other_ca});
    discover(&cfg("127.0.0.1", "tls_only", require.clone())).ok();
    let out = discover(&cfg("127.0.0.1", "plain_only", require));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("pg_hba.conf"),
        "the server refused the encrypted connection: {}",
        out.stderr
    );
    // prefer: encrypted when the server can.
    discover(&cfg("127.0.0.1", "tls_only", json!({"ssl_mode": "prefer"}))).ok();
    // disable: not encrypted.
    discover(&cfg(
        "127.0.0.1",
        "plain_only",
        json!({"ssl_mode": "disable"}),
    ))
    .ok();
    let out = discover(&cfg(
        "127.0.0.1",
        "tls_only",
        json!({"ssl_mode": "disable"}),
    ));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("pg_hba.conf"), "{}", out.stderr);
    // `ssl_enable: false` with a mode that promises encryption is a contradiction, refused.
    let out = discover(&cfg(
        "localhost",
        "tls_only",
        json!({"ssl_enable": false, "ssl_mode": "verify-full", "ssl_certificate_authority": ca}),
    ));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`ssl_enable` is false"),
        "{}",
        out.stderr
    );

    // The target connects the same way: a record loaded over verify-full.
    admin
        .batch_execute("GRANT CREATE ON DATABASE postgres TO tls_only")
        .unwrap();
    let messages = vec![
        schema("public-t", json!({"id": {"type": "integer"}}), &["id"]),
        record("public-t", json!({"id": 1})),
    ];
    run(
        "target-postgres",
        dir.path(),
        &cfg(
            "localhost",
            "tls_only",
            json!({"ssl_mode": "verify-full", "ssl_certificate_authority": ca, "default_target_schema": "tls_only"}),
        ),
        &[],
        &lines(&messages),
    )
    .ok();
    let n: i64 = admin
        .query_one("SELECT count(*) FROM tls_only.t", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// The processes below `pid` (children, their children, ...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // `pid (comm) state ppid ...`: the command may hold spaces and parentheses.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(") ")
            && let Some(ppid) = rest.split(' ').nth(1).and_then(|x| x.parse::<u32>().ok())
        {
            parent_of.push((p, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let me = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == me)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether process `pid` is gone (or a zombie nobody reaps).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits for `what` to hold, checking every 20 ms; a hang guard, not a timing check.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn dsm_killed_mid_batch_resumes_on_the_next_run_without_loss_or_duplicates() {
    let src = Db::new("killsrc");
    let dst = Db::new("killdst");
    let n = 300_000u64;
    src.exec(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, v text NOT NULL, at timestamptz NOT NULL);
         INSERT INTO big SELECT g, 'value ' || g, timestamptz '2024-01-01' + g * interval '1 second'
         FROM generate_series(1, {n}) g;"
    ));
    let dir = tempfile::tempdir().unwrap();
    // Full table: the tap bookmarks the last key every 10,000 rows; the target commits every
    // 10,000 (one batch per STATE), soft-deleting older versions at the end.
    std::fs::write(
        dir.path().join("meltano.yml"),
        "version: 1\ndefault_environment: dev\nenvironments: [{name: dev}]\nplugins:\n  \
         extractors:\n  - name: tap-postgres\n    variant: dsm\n    select: [public-big.*]\n  \
         loaders:\n  - name: target-postgres\n    variant: dsm\n    config:\n      \
         batch_size_rows: 10000\n      default_target_schema: public\n",
    )
    .unwrap();
    let env = plugin_env(&src, &dst);
    let state_id = "dev:tap-postgres-to-target-postgres";
    let bookmark = || -> Option<Value> {
        let out = dsm(dir.path(), &["state", "get", state_id], &env);
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        let b = v["singer_state"]["bookmarks"]["public-big"].clone();
        b.get("last_pk_fetched").is_some().then_some(b)
    };
    let mut first = dsm_command(
        dir.path(),
        &["run", "tap-postgres", "target-postgres"],
        &env,
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Progress: dsm has stored a bookmark the target confirmed (so batches are committed).
    wait_for("a stored bookmark of the running sync", || {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        bookmark().is_some()
    });
    let plugins = descendants(first.id());
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    // The plugins lose their pipes with dsm and end; wait for them before the next run.
    wait_for("the plugins of the killed run to end", || {
        plugins.iter().all(|p| gone(*p))
    });
    let saved = bookmark().expect("the bookmark survives the kill");
    let last = saved["last_pk_fetched"]["id"].as_u64().unwrap();
    let loaded: u64 = dst.one("SELECT count(*) FROM public.big").parse().unwrap();
    assert!(
        last < n && loaded < n,
        "killed mid-run: bookmark {last}, {loaded} rows loaded"
    );
    assert!(
        loaded >= last,
        "the bookmark of row {last} was stored before its rows were committed ({loaded})"
    );
    // A row before the bookmark changes at the source: a resumed sync does not read it again
    // (a restarted one would).
    src.exec("UPDATE big SET v = 'changed after the kill' WHERE id = 1");

    let second = dsm(
        dir.path(),
        &["run", "tap-postgres", "target-postgres"],
        &env,
    );
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    let expected_len: u64 = (1..=n).map(|i| format!("value {i}").len() as u64).sum();
    assert_eq!(
        dst.rows(
            "SELECT count(*), count(DISTINCT id), min(id), max(id), sum(length(v)) FROM public.big"
        ),
        vec![vec![
            n.to_string(),
            n.to_string(),
            "1".to_owned(),
            n.to_string(),
            expected_len.to_string()
        ]],
        "every row exactly once"
    );
    assert_eq!(
        dst.one("SELECT v FROM public.big WHERE id = 1"),
        "value 1",
        "the second run resumed after the bookmark instead of starting over"
    );
    // Both runs loaded one table version: ACTIVATE_VERSION marked nothing as deleted.
    assert_eq!(
        dst.rows(
            "SELECT count(DISTINCT _sdc_table_version), count(_sdc_deleted_at) FROM public.big"
        ),
        vec![vec!["1".to_owned(), "0".to_owned()]]
    );
    assert_eq!(
        dst.one("SELECT count(*) FROM pg_class WHERE relname LIKE '\\_dsm\\_stage%'"),
        "0",
        "no staging table is left behind"
    );
    // The run finished: its bookmark is gone, so the next sync starts a new version.
    assert!(bookmark().is_none());
}

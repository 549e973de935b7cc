//! Merged streams end to end on SQLite: three overlapping sources, arrival-order invariance,
//! replay, stages, the writer thread on WAL files, and upgrades of old tables. They live with
//! the SQLite backend because several build or inspect the tables with SQL.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use super::MergedDb;
use super::conflicts;
use super::tables::{self as store, resolved_records};
use crate::merge::declaration::MergedStream;
use crate::merge::resolver::{Resolver, RunContext};
use crate::merge::stage::MergeStage;
use crate::singer::Message;
use crate::store::merged::ConflictFilter;
use crate::transform::Transform;

fn run(id: &str) -> RunContext {
    RunContext {
        run_id: id.into(),
        started_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
        lease: None,
    }
}

fn every_policy() -> MergedStream {
    MergedStream::parse(&json!({
        "name": "companies",
        "sources": [
            {"extractor": "tap-csv", "stream": "companies", "name": "csv",
             "fields": {"company_name": "name"}},
            {"extractor": "tap-api", "stream": "orgs", "name": "api"},
            {"extractor": "tap-manual", "stream": "list", "name": "manual"}
        ],
        "key": ["id"],
        "priority": ["manual", "api", "csv"],
        "policy": "priority",
        "fields": {
            "email": "coalesce",
            "revenue": "max",
            "employees": "min",
            "status": {"rule": "latest", "field": "updated_at"},
            "city": "first",
            "phone": "last",
            "country": "quarantine"
        },
        "null_key": "skip"
    }))
    .unwrap()
}

type Input = (&'static str, Value, &'static str);

/// Three sources overlapping on keys 1 and 2; key 3 only from csv, key 4 only from api.
fn inputs() -> Vec<Input> {
    vec![
        (
            "csv",
            json!({"id": 1, "company_name": "Acme CSV", "email": "a@csv", "revenue": 100,
                       "employees": 50, "status": "old", "updated_at": "2024-01-01T00:00:00Z",
                       "city": "Leeds", "phone": "1", "country": "UK"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": 2, "company_name": "Beta CSV", "email": "b@csv", "revenue": 5,
                       "country": "FR"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": 3, "company_name": "Gamma", "revenue": 1}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": null, "company_name": "no key"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "api",
            json!({"id": 1, "name": "Acme API", "email": null, "revenue": 250.5,
                       "employees": 40, "status": "new", "updated_at": "2024-03-01T00:00:00Z",
                       "city": "York", "phone": "2", "country": "UK"}),
            "2024-04-02T00:00:00Z",
        ),
        (
            "api",
            json!({"id": 2, "name": "Beta API", "revenue": 7, "country": "DE"}),
            "2024-04-02T00:00:00Z",
        ),
        (
            "api",
            json!({"id": 4, "name": "Delta"}),
            "2024-04-02T00:00:00Z",
        ),
        (
            "manual",
            json!({"id": 1, "name": null, "email": "a@manual", "revenue": 200,
                          "employees": 45, "status": "manual", "updated_at": "2024-02-01T00:00:00Z",
                          "city": "Hull", "phone": "3"}),
            "2024-03-15T00:00:00Z",
        ),
        (
            "manual",
            json!({"id": 2, "name": "Beta Manual"}),
            "2024-03-15T00:00:00Z",
        ),
    ]
}

fn feed(
    r: &mut Resolver,
    items: &[Input],
    outputs: &mut BTreeMap<String, Map<String, Value>>,
) -> usize {
    let mut emitted = 0;
    for (source, record, time) in items {
        let Value::Object(rec) = record.clone() else {
            unreachable!()
        };
        if let Some(out) = r.resolve(source, rec, Some(time)).unwrap() {
            outputs.insert(out["id"].to_string(), out);
            emitted += 1;
        }
    }
    r.flush().unwrap();
    emitted
}

fn new_resolver(decl: MergedStream, run_id: &str) -> Resolver {
    let key = decl.key.clone().unwrap();
    Resolver::new(MergedDb::in_memory().unwrap(), decl, key, run(run_id)).unwrap()
}

/// The resolved table keyed like the emitted outputs (by `id`).
fn table(r: &mut Resolver) -> BTreeMap<String, Map<String, Value>> {
    r.connection()
        .unwrap()
        .resolved_records("companies")
        .unwrap()
        .into_iter()
        .map(|(_, v)| (k_of(&v), v))
        .collect()
}

#[test]
fn three_overlapping_sources_resolve_with_every_policy() {
    let mut r = new_resolver(every_policy(), "run-1");
    let mut outputs = BTreeMap::new();
    feed(&mut r, &inputs(), &mut outputs);
    let t = table(&mut r);
    let acme = &t["1"];
    assert_eq!(
        acme["name"],
        Value::Null,
        "priority: manual wins even with null"
    );
    assert_eq!(
        acme["email"],
        json!("a@manual"),
        "coalesce: first non-null by priority"
    );
    assert_eq!(acme["revenue"].to_string(), "250.5", "max");
    assert_eq!(acme["employees"], json!(40), "min");
    assert_eq!(acme["status"], json!("new"), "latest by updated_at");
    assert_eq!(
        acme["city"],
        json!("Hull"),
        "first: manual extracted earliest"
    );
    assert_eq!(acme["phone"], json!("2"), "last: api extracted latest");
    assert_eq!(acme["country"], json!("UK"), "quarantine: sources agree");
    assert_eq!(t["3"]["name"], json!("Gamma"));
    assert_eq!(t["4"]["name"], json!("Delta"));
    // Key 2: country FR (csv, sent first) vs DE (api) is quarantined: the target keeps what
    // it had before the disagreement, and the key is held back.
    assert_eq!(t["2"]["name"], json!("Beta CSV"));
    assert_eq!(
        r.connection()
            .unwrap()
            .quarantined_keys("companies")
            .unwrap(),
        ["[2]"]
    );
    assert_eq!(r.stats().null_keys, 1);
    // What was emitted, applied as upserts, is the resolved table.
    assert_eq!(outputs, t);

    let log = r
        .connection()
        .unwrap()
        .conflicts(&ConflictFilter::default())
        .unwrap();
    let revenue = log
        .iter()
        .find(|e| e.key == json!([1]) && e.field == "revenue")
        .unwrap();
    assert_eq!(revenue.rule, "max");
    assert_eq!(revenue.winning_source.as_deref(), Some("api"));
    assert_eq!(
        revenue.candidates,
        json!({"manual": 200, "api": 250.5, "csv": 100})
    );
    let country = log
        .iter()
        .find(|e| e.key == json!([2]) && e.field == "country")
        .unwrap();
    assert_eq!(country.outcome, "quarantined");
    assert_eq!(country.winner, None);
}

#[test]
fn quarantined_key_is_released_when_sources_agree() {
    let mut r = new_resolver(every_policy(), "run-1");
    let mut outputs = BTreeMap::new();
    feed(&mut r, &inputs(), &mut outputs);
    assert_eq!(outputs["2"]["name"], json!("Beta CSV"));
    let fixed = [(
        "api",
        json!({"id": 2, "name": "Beta API", "revenue": 7, "country": "FR"}),
        "2024-04-03T00:00:00Z",
    )];
    assert_eq!(feed(&mut r, &fixed, &mut outputs), 1);
    assert_eq!(outputs["2"]["name"], json!("Beta Manual"));
    assert_eq!(outputs["2"]["country"], json!("FR"));
    assert!(
        r.connection()
            .unwrap()
            .quarantined_keys("companies")
            .unwrap()
            .is_empty()
    );
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 1 {
        return vec![vec![0]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..n {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[test]
fn final_table_is_the_same_whatever_order_the_sources_run_in() {
    let all = inputs();
    let sources = ["csv", "api", "manual"];
    let mut tables = Vec::new();
    for order in permutations(3) {
        let mut r = new_resolver(every_policy(), "run");
        let mut outputs = BTreeMap::new();
        for i in order {
            let block: Vec<Input> = all.iter().filter(|x| x.0 == sources[i]).cloned().collect();
            feed(&mut r, &block, &mut outputs);
        }
        let mut t = table(&mut r);
        assert_eq!(outputs, t);
        // A key quarantined after it was sent keeps what was sent before the disagreement,
        // which depends on order by nature; every other key must match.
        assert_eq!(
            r.connection()
                .unwrap()
                .quarantined_keys("companies")
                .unwrap(),
            ["[2]"]
        );
        t.remove("2");
        tables.push(t);
    }
    assert_eq!(tables.len(), 6);
    assert!(tables.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn replaying_the_same_input_emits_nothing_new() {
    let mut r = new_resolver(every_policy(), "run-1");
    let mut outputs = BTreeMap::new();
    assert!(feed(&mut r, &inputs(), &mut outputs) >= 4);
    let before = table(&mut r);
    let logged = r
        .connection()
        .unwrap()
        .conflicts(&ConflictFilter::default())
        .unwrap()
        .len();
    assert_eq!(feed(&mut r, &inputs(), &mut outputs), 0);
    assert_eq!(table(&mut r), before);
    assert_eq!(
        r.connection()
            .unwrap()
            .conflicts(&ConflictFilter::default())
            .unwrap()
            .len(),
        logged
    );
}

#[test]
fn a_source_synced_tomorrow_is_resolved_against_today() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let decl = every_policy();
    let key = vec!["id".to_owned()];
    let mut today = Resolver::new(
        MergedDb::open(&path).unwrap(),
        decl.clone(),
        key.clone(),
        run("d1"),
    )
    .unwrap();
    let mut outputs = BTreeMap::new();
    let csv: Vec<Input> = inputs().into_iter().filter(|x| x.0 == "csv").collect();
    feed(&mut today, &csv, &mut outputs);
    drop(today);
    let mut tomorrow = Resolver::new(MergedDb::open(&path).unwrap(), decl, key, run("d2")).unwrap();
    let api = [(
        "api",
        json!({"id": 1, "name": "Acme API", "revenue": 50}),
        "2024-04-02T00:00:00Z",
    )];
    let mut out2 = BTreeMap::new();
    feed(&mut tomorrow, &api, &mut out2);
    let acme = &out2["1"];
    assert_eq!(acme["name"], json!("Acme API"), "api outranks csv");
    assert_eq!(
        acme["revenue"],
        json!(100),
        "max keeps yesterday's csv value"
    );
    assert_eq!(acme["email"], json!("a@csv"));
    let counts = tomorrow
        .connection()
        .unwrap()
        .conflict_counts(&ConflictFilter::default())
        .unwrap();
    assert_eq!(counts[0].run_id, "d2");
}

#[test]
fn fail_rule_stops_on_disagreement_and_logs_it() {
    let mut decl = every_policy();
    decl.fields
        .push(("employees2".into(), crate::merge::Rule::Fail));
    decl.fields.retain(|(f, _)| f != "revenue");
    decl.fields
        .push(("revenue".into(), crate::merge::Rule::Fail));
    let mut r = new_resolver(decl, "run-f");
    let rec = |v: Value| v.as_object().unwrap().clone();
    r.resolve("csv", rec(json!({"id": 9, "revenue": 1})), None)
        .unwrap();
    let e = r
        .resolve("api", rec(json!({"id": 9, "revenue": 2})), None)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "sources of merged stream `companies` disagree on field `revenue` of key [9]: 2 from `api`, 1 from `csv`"
    );
    let log = r
        .connection()
        .unwrap()
        .conflicts(&ConflictFilter::default())
        .unwrap();
    assert_eq!(log[0].outcome, "failed");
}

#[test]
fn null_keys_follow_their_rule() {
    let rec = |v: Value| v.as_object().unwrap().clone();
    let mut decl = every_policy();
    decl.null_key = crate::merge::NullKeyRule::Fail;
    let mut r = new_resolver(decl.clone(), "r");
    let e = r
        .resolve("csv", rec(json!({"name": "x"})), None)
        .unwrap_err();
    assert!(e.to_string().contains("no value for key field `id`"), "{e}");

    decl.null_key = crate::merge::NullKeyRule::Quarantine;
    let mut r = new_resolver(decl, "r");
    assert!(
        r.resolve("csv", rec(json!({"id": null})), None)
            .unwrap()
            .is_none()
    );
    r.flush().unwrap();
    let log = r
        .connection()
        .unwrap()
        .conflicts(&ConflictFilter::default())
        .unwrap();
    assert_eq!(
        (log[0].outcome.as_str(), log[0].field.as_str()),
        ("null_key", "id")
    );
}

#[test]
fn provenance_names_the_source_and_arrival_of_each_field() {
    let mut decl = every_policy();
    decl.provenance = true;
    let mut r = new_resolver(decl, "r");
    let rec = |v: Value| v.as_object().unwrap().clone();
    r.resolve(
        "csv",
        rec(json!({"id": 1, "email": "a@csv"})),
        Some("2024-04-01T00:00:00Z"),
    )
    .unwrap();
    let out = r
        .resolve("api", rec(json!({"id": 1, "name": "A"})), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        out["_dsm_provenance"],
        json!({
            "id": {"source": "api", "at": "2024-05-01T12:00:00.000000000Z"},
            "name": {"source": "api", "at": "2024-05-01T12:00:00.000000000Z"},
            "email": {"source": "csv", "at": "2024-04-01T00:00:00.000000000Z"}
        })
    );
}

fn line(v: Value) -> Message {
    Message::from_value(v).unwrap()
}

#[test]
fn stage_emits_the_merged_schema_and_changed_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let decl = every_policy();
    let mut stage = MergeStage::new(
        MergedDb::open(&path).unwrap(),
        decl.clone(),
        "csv",
        run("s1"),
    )
    .unwrap();
    assert!(stage.touches("companies") && !stage.touches("orgs"));
    let mut out = Vec::new();
    stage
        .apply(
            line(
                json!({"type": "SCHEMA", "stream": "companies", "key_properties": ["id"],
                "schema": {"properties": {"id": {"type": "integer"},
                                          "company_name": {"type": "string"}}}}),
            ),
            &mut out,
        )
        .unwrap();
    for _ in 0..2 {
        stage
            .apply(
                line(json!({"type": "RECORD", "stream": "companies",
                            "record": {"id": 1, "company_name": "Acme"}})),
                &mut out,
            )
            .unwrap();
    }
    stage
        .apply(
            line(json!({"type": "RECORD", "stream": "other", "record": {}})),
            &mut out,
        )
        .unwrap();
    assert_eq!(stage.finish().unwrap().emitted, 1);
    let kinds: Vec<(String, Option<&str>)> = out
        .iter()
        .map(|m| (format!("{:?}", m.kind()), m.stream()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Schema".to_owned(), Some("companies")),
            ("Record".to_owned(), Some("companies")),
            ("Record".to_owned(), Some("other")),
        ]
    );
    let Message::Record(r) = &out[1] else {
        unreachable!()
    };
    assert_eq!(
        Value::Object(r.record.clone()),
        json!({"id": 1, "name": "Acme"})
    );
    drop(stage);

    // The next source's schema is checked against the stored one before data moves.
    let mut api = MergeStage::new(MergedDb::open(&path).unwrap(), decl, "api", run("s2")).unwrap();
    let e = api
        .apply(
            line(json!({"type": "SCHEMA", "stream": "orgs", "key_properties": ["id"],
                "schema": {"properties": {"id": {"type": "integer"}, "name": {"type": "boolean"}}}})),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert_eq!(
        e.message,
        "field `name` of merged stream `companies` is boolean in source `api` but string in source `csv`"
    );
}

/// Policies whose result must not depend on arrival order.
fn invariant_policy() -> MergedStream {
    MergedStream::parse(&json!({
        "name": "companies",
        "sources": [
            {"extractor": "a", "stream": "s"},
            {"extractor": "b", "stream": "s"},
            {"extractor": "c", "stream": "s"}
        ],
        "key": ["id"],
        "priority": ["b", "c", "a"],
        "policy": "priority",
        "fields": {
            "co": "coalesce",
            "mx": "max",
            "mn": "min",
            "lt": {"rule": "latest", "field": "ts"},
            "lv": {"rule": "latest", "field": "ts", "tie_break": "value"},
            "fi": "first",
            "la": "last"
        },
        "null_key": "skip"
    }))
    .unwrap()
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), (0i64..5).prop_map(Value::from)]
}

fn arb_record() -> impl Strategy<Value = (usize, Value, u32)> {
    (
        0usize..3,
        0i64..6,
        proptest::collection::vec(arb_value(), 8),
        0u32..4,
        0u32..50,
    )
        .prop_map(|(src, id, v, ts, t)| {
            let rec = json!({"id": id, "pr": v[0], "co": v[1], "mx": v[2], "mn": v[3],
                             "lt": v[4], "lv": v[5], "fi": v[6], "la": v[7], "ts": ts});
            (src, rec, t)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Shuffling how the sources' records interleave (each source's own order kept, and
    /// `time_extracted` on every record) leaves the resolved table unchanged.
    #[test]
    fn resolved_table_is_invariant_under_arrival_order(
        records in proptest::collection::vec(arb_record(), 1..40),
        seed in any::<u64>(),
    ) {
        let names = ["a", "b", "c"];
        // Per-source sequences with increasing extraction times.
        let mut per_source: Vec<Vec<(Value, String)>> = vec![Vec::new(); 3];
        for (i, (src, rec, t)) in records.iter().enumerate() {
            let time = Utc.timestamp_opt(1_700_000_000 + i64::from(*t) * 60 + i as i64, 0)
                .unwrap()
                .to_rfc3339();
            per_source[*src].push((rec.clone(), time));
        }
        for s in &mut per_source {
            s.sort_by(|a, b| a.1.cmp(&b.1));
        }
        let run_in = |order: Vec<usize>| {
            let mut r = new_resolver(invariant_policy(), "p");
            let mut cursor = [0usize; 3];
            let mut outputs = BTreeMap::new();
            for src in order {
                let (rec, time) = &per_source[src][cursor[src]];
                cursor[src] += 1;
                if let Some(out) = r
                    .resolve(names[src], rec.as_object().unwrap().clone(), Some(time))
                    .unwrap()
                {
                    outputs.insert(out["id"].to_string(), out);
                }
            }
            r.flush().unwrap();
            let t = r.connection().unwrap().resolved_records("companies").unwrap();
            (t, outputs)
        };
        let canonical: Vec<usize> =
            (0..3).flat_map(|s| std::iter::repeat_n(s, per_source[s].len())).collect();
        // A deterministic shuffle of the same multiset of source turns.
        let mut shuffled = canonical.clone();
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let (t1, o1) = run_in(canonical);
        let (t2, o2) = run_in(shuffled);
        prop_assert_eq!(&t1, &t2);
        // Emitted records applied as upserts give the resolved table.
        let by_id = |t: Vec<(String, Map<String, Value>)>| {
            t.into_iter().map(|(_, v)| (k_of(&v), v)).collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(o1, by_id(t1));
        prop_assert_eq!(o2, by_id(t2));
    }
}

fn k_of(v: &Map<String, Value>) -> String {
    v["id"].to_string()
}

#[test]
fn dropping_a_stage_without_commit_sends_the_records_again_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let schema = json!({"type": "SCHEMA", "stream": "companies", "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": "integer"}, "company_name": {"type": "string"}}}});
    let record = json!({"type": "RECORD", "stream": "companies",
                        "record": {"id": 7, "company_name": "Acme"}});
    let emitted = |commit: bool| {
        let mut stage = MergeStage::new(
            MergedDb::open(&path).unwrap(),
            every_policy(),
            "csv",
            run("x"),
        )
        .unwrap();
        let mut out = Vec::new();
        stage.apply(line(schema.clone()), &mut out).unwrap();
        stage.apply(line(record.clone()), &mut out).unwrap();
        if commit {
            stage.commit().unwrap();
        }
        out.len() - 1
    };
    assert_eq!(emitted(false), 1);
    // The first stage was dropped mid-batch (a crash): its resolution rolled back.
    assert_eq!(emitted(true), 1);
    assert_eq!(emitted(true), 0);
}

#[test]
fn a_store_from_before_merge_sends_upgrades_with_its_keys_and_unconfirmed_sends() {
    // Migration 9 moved the unconfirmed mark from `merge_unconfirmed` onto the key's row; a
    // store written before it must keep its keys, and resend what its crashed run left.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(store::MIGRATIONS[0]).unwrap();
    conn.execute_batch(store::MIGRATIONS[1]).unwrap();
    let cand = |id: i64, name: &str| {
        json!({"csv": {"r": {"id": id, "name": name}, "f": "2024-04-01T00:00:00Z",
                       "l": "2024-04-01T00:00:00Z"}})
        .to_string()
    };
    for (key, name) in [("[1]", "Acme"), ("[2]", "Beta"), ("[3]", "Gamma")] {
        let id: i64 = key[1..2].parse().unwrap();
        conn.execute(
            "INSERT INTO merge_entities (stream, key, candidates, resolved, quarantined, run_id)
             VALUES ('companies', ?1, ?2, ?3, 0, 'old')",
            rusqlite::params![
                key,
                cand(id, name),
                json!({"id": id, "name": name}).to_string()
            ],
        )
        .unwrap();
    }
    conn.execute_batch(
        "INSERT INTO merge_unconfirmed VALUES ('companies', 'old', 3, '[1]'),
             ('companies', 'old', 5, '[1]'), ('companies', 'old', 2, '[2]');
         INSERT INTO merge_conflicts (id, stream, key, field, candidates, winner, winning_source,
             rule, outcome, run_id, logged_at)
         VALUES (41, 'companies', '[1]', 'name', '{\"csv\":\"Acme\",\"api\":\"ACME\"}', '\"Acme\"',
             'csv', 'priority', 'resolved', 'old', '2024-04-01T00:00:00.000Z'),
             (42, 'companies', '[2]', 'city', '{\"csv\":\"Leeds\",\"api\":\"York\"}', NULL,
             NULL, 'quarantine', 'quarantined', 'old', '2024-04-01T00:00:00.000Z');",
    )
    .unwrap();

    store::migrate(&conn).unwrap();
    // A second call finds the tables current and changes nothing.
    store::migrate(&conn).unwrap();
    let pending = store::unconfirmed(&conn).unwrap();
    let expected = |run: &str| {
        vec![
            ("companies".to_owned(), run.to_owned(), 2, "[2]".to_owned()),
            ("companies".to_owned(), run.to_owned(), 5, "[1]".to_owned()),
        ]
    };
    assert_eq!(pending, expected("old"));
    let gone: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'merge_unconfirmed')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!gone, "the old table is dropped");
    let names: Vec<Value> = resolved_records(&conn, "companies")
        .unwrap()
        .into_iter()
        .map(|(_, r)| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("Acme"), json!("Beta"), json!("Gamma")]);
    // Migration 11: each conflict-log row keeps its id and what it says.
    let logged = conflicts::list(&conn, &ConflictFilter::default()).unwrap();
    let summary: Vec<_> = logged
        .iter()
        .map(|e| {
            (
                e.id,
                e.field.as_str(),
                e.candidates.clone(),
                e.winner.clone(),
                e.winning_source.as_deref(),
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                42,
                "city",
                json!({"csv": "Leeds", "api": "York"}),
                None,
                None,
                "quarantined"
            ),
            (
                41,
                "name",
                json!({"csv": "Acme", "api": "ACME"}),
                Some(json!("Acme")),
                Some("csv"),
                "resolved"
            ),
        ]
    );
    // The key rows moved to a table with rowids, without the unused `run_id`.
    let table: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'merge_entities'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !table.contains("WITHOUT ROWID") && !table.contains("run_id"),
        "{table}"
    );
    drop(conn);

    // The next run sends keys 1 and 2 again, in key order, and they become its own.
    let decl = MergedStream::parse(&json!({
        "name": "companies",
        "sources": [{"extractor": "tap-csv", "stream": "companies", "name": "csv"},
                    {"extractor": "tap-api", "stream": "companies", "name": "api"}],
        "key": ["id"]
    }))
    .unwrap();
    let mut r = Resolver::new(
        MergedDb::open(&path).unwrap(),
        decl,
        vec!["id".into()],
        run("new"),
    )
    .unwrap();
    r.set_mark(4);
    let resent: Vec<Value> = r
        .recover()
        .unwrap()
        .into_iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(resent, [json!(1), json!(2)]);
    let mut pending = r.connection().unwrap().unconfirmed().unwrap();
    pending.sort_by(|a, b| a.3.cmp(&b.3));
    assert_eq!(
        pending,
        [
            (
                "companies".to_owned(),
                "new".to_owned(),
                4,
                "[1]".to_owned()
            ),
            (
                "companies".to_owned(),
                "new".to_owned(),
                4,
                "[2]".to_owned()
            ),
        ]
    );
    // The stored candidates still resolve: api's new name for key 3 loses to csv by priority
    // (the declaration's order), so nothing changes and nothing is sent.
    let Value::Object(rec) = json!({"id": 3, "name": "Gamma API"}) else {
        unreachable!()
    };
    assert_eq!(r.resolve("api", rec, None).unwrap(), None);
    r.confirm(None).unwrap();
    r.flush().unwrap();
    assert!(r.connection().unwrap().unconfirmed().unwrap().is_empty());
}

/// A resolver on a WAL database file at `path`: its writes go to the writer thread.
fn wal_resolver(path: &std::path::Path, run_id: &str) -> Resolver {
    let conn = Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let r = Resolver::new(
        MergedDb::from_connection(conn).unwrap(),
        every_policy(),
        vec!["id".into()],
        run(run_id),
    )
    .unwrap();
    assert!(r.writes_behind(), "a WAL file gets the writer thread");
    r
}

/// 12,000 records of 3,000 keys from the three sources, every key coming back in later
/// batches (and some twice within one), with values that change from pass to pass.
fn many_inputs() -> Vec<(&'static str, Value, &'static str)> {
    let sources = [
        ("csv", "2024-04-01T00:00:00Z"),
        ("api", "2024-04-02T00:00:00Z"),
        ("manual", "2024-03-15T00:00:00Z"),
    ];
    (0..12_000u64)
        .map(|i| {
            // Four passes over the keys: csv, api, manual, csv again.
            let (source, time) = sources[(i / 3_000 % 3) as usize];
            let id = (i * 7) % 3_000;
            let name_field = if source == "csv" { "company_name" } else { "name" };
            let city = ["Leeds", "York", "Hull"][(i % 7 % 3) as usize];
            let mut rec = json!({"id": id, "revenue": (i * 13) % 1_000, "employees": i % 90,
                "status": format!("s{}", i % 5), "updated_at": format!("2024-0{}-01T00:00:00Z", 1 + i % 9),
                "city": city, "phone": i.to_string(),
                "country": if i % 11 == 0 { "FR" } else { "UK" }});
            rec[name_field] = json!(format!("company {id} from {source}"));
            (source, rec, time)
        })
        .collect()
}

fn feed_all(
    r: &mut Resolver,
    items: &[(&'static str, Value, &'static str)],
) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for (source, record, time) in items {
        let Value::Object(rec) = record.clone() else {
            unreachable!()
        };
        if let Some(o) = r.resolve(source, rec, Some(time)).unwrap() {
            out.push(o);
        }
    }
    r.flush().unwrap();
    out
}

#[test]
fn writes_behind_a_thread_resolve_as_inline_writes_do() {
    // Issue 6: on a WAL file the resolver's writes go to a thread while it resolves the next
    // records. A key is read back while its last row is still queued or uncommitted, within a
    // batch and across batches (12,000 records make three batches and more): every record,
    // count, stored row and conflict must be what writing inline gives.
    let items = many_inputs();
    let mut inline = new_resolver(every_policy(), "run-1");
    assert!(!inline.writes_behind());
    let expected = feed_all(&mut inline, &items);
    let dir = tempfile::tempdir().unwrap();
    let mut behind = wal_resolver(&dir.path().join("dsm.db"), "run-1");
    let got = feed_all(&mut behind, &items);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "other records were sent");
    assert_eq!(behind.stats(), inline.stats());
    assert!(
        inline.stats().conflicts > 1_000 && inline.stats().emitted > 3_000,
        "{:?}",
        inline.stats()
    );
    assert!(table(&mut behind) == table(&mut inline));
    assert_eq!(
        behind
            .connection()
            .unwrap()
            .quarantined_keys("companies")
            .unwrap(),
        inline
            .connection()
            .unwrap()
            .quarantined_keys("companies")
            .unwrap()
    );
    let log = |r: &mut Resolver| {
        r.connection()
            .unwrap()
            .conflicts(&ConflictFilter::default())
            .unwrap()
            .into_iter()
            .map(|c| (c.key, c.field, c.winner))
            .collect::<Vec<_>>()
    };
    assert!(log(&mut behind) == log(&mut inline));
}

#[test]
fn behind_a_thread_a_dropped_resolver_rolls_back_but_a_confirmation_stands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let items = many_inputs();
    // Resolved but never flushed: nothing of it is stored.
    let mut r = wal_resolver(&path, "run-1");
    for (source, record, time) in &items[..100] {
        let Value::Object(rec) = record.clone() else {
            unreachable!()
        };
        r.resolve(source, rec, Some(time)).unwrap();
    }
    drop(r);
    let conn = Connection::open(&path).unwrap();
    assert!(resolved_records(&conn, "companies").unwrap().is_empty());
    // Flushed, then confirmed and dropped without a flush: the confirmation is kept, so the
    // next run has nothing to send again.
    let mut r = wal_resolver(&path, "run-2");
    let sent = feed_all(&mut r, &items[..100]);
    assert!(!sent.is_empty());
    assert!(!store::unconfirmed(&conn).unwrap().is_empty());
    r.confirm(None).unwrap();
    drop(r);
    assert!(store::unconfirmed(&conn).unwrap().is_empty());
    let mut next = wal_resolver(&path, "run-3");
    assert!(next.recover().unwrap().is_empty());
}

#[test]
fn behind_a_thread_a_failed_write_is_an_error_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let mut r = wal_resolver(&path, "run-1");
    // The conflict log goes away under the resolver: the writer's insert fails.
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE merge_conflicts")
        .unwrap();
    let mut failed = None;
    for (source, record, time) in inputs() {
        let Value::Object(rec) = record else {
            unreachable!()
        };
        if let Err(e) = r.resolve(source, rec, Some(time)) {
            failed = Some(e);
            break;
        }
    }
    let e = match failed {
        Some(e) => e,
        None => r.flush().expect_err("the failed write is reported"),
    };
    assert!(e.to_string().contains("merge_conflicts"), "{e}");
    // And again later: it is never dropped.
    assert!(r.flush().is_err());
}

#[test]
fn a_record_equal_to_a_candidate_is_stored_once_and_quarantine_keeps_what_was_sent() {
    let decl = MergedStream::parse(&json!({
        "name": "companies",
        "sources": [{"extractor": "tap-a", "stream": "c", "name": "a"},
                    {"extractor": "tap-b", "stream": "c", "name": "b"}],
        "key": ["id"],
        "priority": ["a", "b"],
        "policy": "priority",
        "fields": {"country": "quarantine", "email": "coalesce", "revenue": "max"}
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsm.db");
    let key = decl.key.clone().unwrap();
    let mut r = Resolver::new(MergedDb::open(&path).unwrap(), decl, key, run("run-1")).unwrap();
    let reader = Connection::open(&path).unwrap();
    let rec = |v: Value| -> Map<String, Value> {
        let Value::Object(m) = v else { unreachable!() };
        m
    };
    let stored = |r: &mut Resolver, key: &str| -> String {
        r.flush().unwrap();
        reader
            .query_row(
                "SELECT resolved FROM merge_entities WHERE key = ?1",
                [key],
                |row| row.get(0),
            )
            .unwrap()
    };
    let uk = json!({"id": 1, "name": "X", "country": "UK"});
    let at = Some("2024-05-01T00:00:00Z");

    // One source: the row names its candidate instead of holding the record twice.
    assert!(r.resolve("a", rec(uk.clone()), at).unwrap().is_some());
    assert_eq!(stored(&mut r, "[1]"), "=a");
    // The other source agrees: nothing to send.
    assert!(r.resolve("b", rec(uk.clone()), at).unwrap().is_none());
    // `a` changes the quarantined field: held back, and the row still says the target has
    // the UK record, now as `b`'s candidate (`a`'s changed).
    let fr = json!({"id": 1, "name": "X", "country": "FR"});
    assert!(r.resolve("a", rec(fr), at).unwrap().is_none());
    assert_eq!(stored(&mut r, "[1]"), "=b");
    assert_eq!(table(&mut r)["1"], rec(uk.clone()));
    // `a` goes back to UK: the resolution is what the target has, so nothing is sent.
    assert!(r.resolve("a", rec(uk.clone()), at).unwrap().is_none());
    assert_eq!(table(&mut r)["1"], rec(uk));

    // A resolution mixing the sources' fields is stored as its own JSON.
    let mixed_a = json!({"id": 2, "name": "A", "email": null});
    let mixed_b = json!({"id": 2, "name": "B", "email": "e@b"});
    r.resolve("a", rec(mixed_a), at).unwrap();
    let sent = r.resolve("b", rec(mixed_b), at).unwrap().expect("changed");
    assert_eq!(
        Value::Object(sent.clone()),
        json!({"id": 2, "name": "A", "email": "e@b"})
    );
    assert!(stored(&mut r, "[2]").starts_with('{'));
    assert_eq!(table(&mut r)["2"], sent);
    // A change that leaves such a resolution as it was sends nothing.
    r.resolve("a", rec(json!({"id": 3, "name": "A", "revenue": 5})), at)
        .unwrap();
    r.resolve("b", rec(json!({"id": 3, "name": "B", "revenue": 10})), at)
        .unwrap()
        .expect("changed");
    let again = r.resolve("a", rec(json!({"id": 3, "name": "A", "revenue": 7})), at);
    assert_eq!(again.unwrap(), None, "`b`'s revenue still wins");
    assert_eq!(
        Value::Object(table(&mut r)["3"].clone()),
        json!({"id": 3, "name": "A", "revenue": 10})
    );
}

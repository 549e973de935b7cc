//! The merged-stream contract: what every backend's [`MergedTables`] and [`StreamRows`] must do,
//! driven through the resolver as a run drives it. [`sqlite`] runs it on SQLite files and
//! [`postgres`] on a database per test on `DSM_TEST_PG_URL`'s server.

use std::any::Any;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Map, Value, json};

use crate::parsed;
use dsm::merge::{MergedStream, Resolver, RunContext};
use dsm::store::merged::{ConflictFilter, MergeRunStats, MergedDb, MergedTables, ResolverStats};

/// Makes empty merged-stream tables of one backend.
pub trait MergedBackend {
    /// New, empty tables, and what keeps them alive.
    fn open(&self) -> (Box<dyn Any>, Box<dyn MergedTables>);
    /// A second connection to the tables `guard` keeps alive (another process or host).
    fn reopen(&self, guard: &dyn Any) -> Box<dyn MergedTables>;
}

pub struct Sqlite;

impl MergedBackend for Sqlite {
    fn open(&self) -> (Box<dyn Any>, Box<dyn MergedTables>) {
        let tmp = tempfile::tempdir().unwrap();
        let tables = self.reopen(&tmp);
        (Box::new(tmp), tables)
    }

    fn reopen(&self, guard: &dyn Any) -> Box<dyn MergedTables> {
        let tmp = guard.downcast_ref::<tempfile::TempDir>().unwrap();
        Box::new(MergedDb::open(&tmp.path().join("dsm.db")).unwrap())
    }
}

pub struct Postgres;

const PROJECT: &str = "merged-contract";

fn pg_target(db: &crate::pg::TestDb) -> dsm::store::postgres::PgTarget {
    dsm::store::postgres::PgTarget::parse(&db.uri(Some("team_merged"))).unwrap()
}

impl MergedBackend for Postgres {
    fn open(&self) -> (Box<dyn Any>, Box<dyn MergedTables>) {
        use dsm::store::postgres::{PgStore, Upgrade};
        let db = crate::pg::TestDb::new("merged");
        drop(PgStore::open(&pg_target(&db), PROJECT, Upgrade::FirstUseOnly).unwrap());
        let tables = self.reopen(&db);
        (Box::new(db), tables)
    }

    fn reopen(&self, guard: &dyn Any) -> Box<dyn MergedTables> {
        let db = guard.downcast_ref::<crate::pg::TestDb>().unwrap();
        Box::new(dsm::store::postgres::PgMerged::open(&pg_target(db), PROJECT).unwrap())
    }
}

macro_rules! run_merged_contract {
    ($module:ident, $backend:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $name() {
                    super::$name(&$backend);
                }
            )*
        }
    };
}

run_merged_contract!(
    sqlite,
    super::Sqlite,
    [
        three_overlapping_sources_resolve_and_log_their_conflicts,
        reading_keys_ahead_changes_nothing_but_speed,
        replaying_emits_nothing_and_another_connection_sees_the_same_table,
        a_dropped_batch_rolls_back_and_unconfirmed_sends_go_again,
        the_conflict_log_filters_counts_and_prunes,
        run_counts_round_trip,
    ]
);

run_merged_contract!(
    postgres,
    super::Postgres,
    [
        three_overlapping_sources_resolve_and_log_their_conflicts,
        reading_keys_ahead_changes_nothing_but_speed,
        replaying_emits_nothing_and_another_connection_sees_the_same_table,
        a_dropped_batch_rolls_back_and_unconfirmed_sends_go_again,
        the_conflict_log_filters_counts_and_prunes,
        run_counts_round_trip,
    ]
);

fn run(id: &str) -> RunContext {
    RunContext {
        run_id: id.into(),
        started_at: Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
        lease: None,
    }
}

fn decl() -> MergedStream {
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
        "fields": {"email": "coalesce", "revenue": "max", "country": "quarantine"},
        "null_key": "skip"
    }))
    .unwrap()
}

type Input = (&'static str, Value, &'static str);

fn inputs() -> Vec<Input> {
    vec![
        (
            "csv",
            json!({"id": 1, "company_name": "Acme CSV", "email": "a@csv", "revenue": 100, "country": "UK"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": 2, "company_name": "Beta CSV", "revenue": 5, "country": "FR"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": 3, "company_name": "Gamma"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "csv",
            json!({"id": null, "company_name": "no key"}),
            "2024-04-01T00:00:00Z",
        ),
        (
            "api",
            json!({"id": 1, "name": "Acme API", "email": null, "revenue": 250.5, "country": "UK"}),
            "2024-04-02T00:00:00Z",
        ),
        (
            "api",
            json!({"id": 2, "name": "Beta API", "revenue": 7, "country": "DE"}),
            "2024-04-02T00:00:00Z",
        ),
        (
            "manual",
            json!({"id": 1, "name": null, "email": "a@manual", "revenue": 200}),
            "2024-03-15T00:00:00Z",
        ),
    ]
}

fn resolver(tables: Box<dyn MergedTables>, run_id: &str) -> Resolver {
    let d = decl();
    let key = d.key.clone().unwrap();
    Resolver::new(tables, d, key, run(run_id)).unwrap()
}

fn feed(
    r: &mut Resolver,
    items: &[Input],
    out: &mut BTreeMap<String, Map<String, Value>>,
) -> usize {
    let mut emitted = 0;
    for (source, record, time) in items {
        let Value::Object(rec) = record.clone() else {
            unreachable!()
        };
        if let Some(o) = r.resolve(source, rec, Some(time)).unwrap() {
            out.insert(o["id"].to_string(), o);
            emitted += 1;
        }
    }
    r.flush().unwrap();
    emitted
}

fn table(t: &dyn MergedTables) -> BTreeMap<String, Map<String, Value>> {
    t.resolved_records("companies")
        .unwrap()
        .into_iter()
        .map(|(_, v)| (v["id"].to_string(), v))
        .collect()
}

pub fn three_overlapping_sources_resolve_and_log_their_conflicts(b: &dyn MergedBackend) {
    let (_guard, tables) = b.open();
    let mut r = resolver(tables, "run-1");
    let mut out = BTreeMap::new();
    feed(&mut r, &inputs(), &mut out);
    let t = table(r.connection().unwrap());
    assert_eq!(
        t["1"]["name"],
        Value::Null,
        "priority: manual wins even with null"
    );
    assert_eq!(t["1"]["email"], json!("a@manual"), "coalesce by priority");
    assert_eq!(t["1"]["revenue"].to_string(), "250.5", "max");
    assert_eq!(t["3"]["name"], json!("Gamma"));
    // Key 2's country disagrees under `quarantine`: held back with what was sent before.
    assert_eq!(t["2"]["name"], json!("Beta CSV"));
    assert_eq!(
        r.connection()
            .unwrap()
            .quarantined_keys("companies")
            .unwrap(),
        ["[2]"]
    );
    assert_eq!(r.stats().null_keys, 1);
    assert_eq!(
        out, t,
        "what was emitted, applied as upserts, is the resolved table"
    );

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
    assert_eq!(
        (country.outcome.as_str(), &country.winner),
        ("quarantined", &None)
    );
    // Entries are numbered without gaps, newest first, and each can be shown by id.
    let ids: Vec<i64> = log.iter().map(|e| e.id).collect();
    let expected: Vec<i64> = (1..=ids.len() as i64).rev().collect();
    assert_eq!(ids, expected);
    let shown = r
        .connection()
        .unwrap()
        .conflict(revenue.id)
        .unwrap()
        .unwrap();
    assert_eq!(&shown, revenue);
    assert_eq!(r.connection().unwrap().conflict(999).unwrap(), None);
}

pub fn replaying_emits_nothing_and_another_connection_sees_the_same_table(b: &dyn MergedBackend) {
    let (guard, tables) = b.open();
    let mut r = resolver(tables, "run-1");
    let mut out = BTreeMap::new();
    assert!(feed(&mut r, &inputs(), &mut out) >= 3);
    let before = table(r.connection().unwrap());
    let logged = r
        .connection()
        .unwrap()
        .conflicts(&ConflictFilter::default())
        .unwrap()
        .len();
    assert_eq!(feed(&mut r, &inputs(), &mut out), 0);
    let other = b.reopen(guard.as_ref());
    assert_eq!(table(other.as_ref()), before);
    assert_eq!(
        other.conflicts(&ConflictFilter::default()).unwrap().len(),
        logged
    );
    // A source agreeing later releases the quarantined key, seen from the other connection.
    let fixed = [(
        "api",
        json!({"id": 2, "name": "Beta API", "revenue": 7, "country": "FR"}),
        "2024-04-03T00:00:00Z",
    )];
    assert_eq!(feed(&mut r, &fixed, &mut out), 1);
    assert_eq!(out["2"]["country"], json!("FR"));
    assert!(other.quarantined_keys("companies").unwrap().is_empty());
}

pub fn a_dropped_batch_rolls_back_and_unconfirmed_sends_go_again(b: &dyn MergedBackend) {
    let (guard, tables) = b.open();
    let one = |id: i64| -> Map<String, Value> {
        json!({"id": id, "company_name": format!("Company {id}")})
            .as_object()
            .unwrap()
            .clone()
    };
    // A resolver dropped mid-batch (a crash): nothing of its batch stays.
    {
        let mut r = resolver(tables, "crashed-early");
        assert!(r.resolve("csv", one(1), None).unwrap().is_some());
    }
    let mut r = resolver(b.reopen(guard.as_ref()), "failed");
    assert!(
        r.resolve("csv", one(1), None).unwrap().is_some(),
        "the rolled-back record is resolved and sent again"
    );
    r.set_mark(1);
    assert!(r.resolve("csv", one(2), None).unwrap().is_some());
    // The loader confirmed what was sent before mark 1; the run then fails.
    r.confirm(Some(1)).unwrap();
    r.flush().unwrap();
    let unconfirmed = r.connection().unwrap().unconfirmed().unwrap();
    assert_eq!(
        unconfirmed,
        [("companies".into(), "failed".into(), 1, "[2]".into())]
    );
    drop(r);
    // The next run sends the unconfirmed record first, and it becomes that run's to confirm.
    let mut next = resolver(b.reopen(guard.as_ref()), "next");
    let again = next.recover().unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], json!(2));
    assert_eq!(next.stats().resent, 1);
    let tables = next.connection().unwrap();
    assert_eq!(tables.unconfirmed().unwrap()[0].1, "next");
    next.confirm(None).unwrap();
    next.flush().unwrap();
    assert!(next.connection().unwrap().unconfirmed().unwrap().is_empty());
    assert!(next.recover().unwrap().is_empty());
}

pub fn the_conflict_log_filters_counts_and_prunes(b: &dyn MergedBackend) {
    let (guard, tables) = b.open();
    let mut r = resolver(tables, "run-1");
    let mut out = BTreeMap::new();
    feed(&mut r, &inputs()[..4], &mut out);
    let mut r2 = resolver(b.reopen(guard.as_ref()), "run-2");
    feed(&mut r2, &inputs()[4..], &mut out);
    let t = r2.connection().unwrap();
    let all = t.conflicts(&ConflictFilter::default()).unwrap();
    assert!(!all.is_empty());
    assert!(all.iter().all(|e| e.run_id == "run-2"));
    let by = |f: ConflictFilter| t.conflicts(&f).unwrap().len();
    assert_eq!(
        by(ConflictFilter {
            source: Some("manual".into()),
            ..Default::default()
        }),
        all.iter()
            .filter(|e| e.candidates.get("manual").is_some())
            .count()
    );
    assert_eq!(
        by(ConflictFilter {
            stream: Some("elsewhere".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        by(ConflictFilter {
            limit: Some(2),
            ..Default::default()
        }),
        2
    );
    let counts = t.conflict_counts(&ConflictFilter::default()).unwrap();
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].run_id, "run-2");
    assert_eq!(counts[0].conflicts as usize, all.len());
    assert_eq!(counts[0].quarantined, 1, "key 2's country");
    let kept = t
        .prune_conflicts(Utc::now() - chrono::Duration::try_days(1).unwrap(), None)
        .unwrap();
    assert_eq!(kept, 0, "nothing is older than a day");
    let gone = t
        .prune_conflicts(
            Utc::now() + chrono::Duration::try_seconds(1).unwrap(),
            Some("companies"),
        )
        .unwrap();
    assert_eq!(gone, all.len());
    assert!(t.conflicts(&ConflictFilter::default()).unwrap().is_empty());
}

pub fn run_counts_round_trip(b: &dyn MergedBackend) {
    let (_guard, tables) = b.open();
    let stats = |n: u64| MergeRunStats {
        stream: "companies".into(),
        source: "csv".into(),
        stats: ResolverStats {
            records_in: n,
            emitted: n - 1,
            conflicts: 2,
            quarantined: 1,
            ..ResolverStats::default()
        },
    };
    tables.record_run_stats("r1", &[stats(10)]).unwrap();
    tables.record_run_stats("r1", &[stats(12)]).unwrap();
    assert_eq!(tables.run_stats("r1").unwrap(), [stats(12)]);
    assert!(tables.run_stats("r2").unwrap().is_empty());
    let dsm::singer::Message::Schema(schema) = dsm::singer::Message::from_value(json!({
        "type": "SCHEMA", "stream": "companies", "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": "integer"}}}
    }))
    .unwrap() else {
        unreachable!()
    };
    tables.save_schema("companies", "csv", &schema).unwrap();
    tables.save_schema("companies", "api", &schema).unwrap();
    let names: Vec<String> = tables
        .load_schemas("companies")
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(names, ["api", "csv"]);
}

/// On a shared store a resolver's batch commits only while its run holds the flow's lease.
/// Feeds `items` as a run of record lines is fed: each source's consecutive records are
/// announced with [`Resolver::prefetch`] first, then resolved one by one.
fn feed_ahead(
    r: &mut Resolver,
    items: &[Input],
    out: &mut BTreeMap<String, Map<String, Value>>,
) -> usize {
    let mut emitted = 0;
    for group in items.chunk_by(|a, b| a.0 == b.0) {
        let records: Vec<Map<String, Value>> = group
            .iter()
            .map(|(_, record, _)| record.as_object().unwrap().clone())
            .collect();
        r.prefetch(group[0].0, &records).unwrap();
        for ((source, _, time), rec) in group.iter().zip(records) {
            if let Some(o) = r.resolve(source, rec, Some(time)).unwrap() {
                out.insert(o["id"].to_string(), o);
                emitted += 1;
            }
        }
    }
    r.flush().unwrap();
    emitted
}

/// Issue 23: reading a run's keys ahead (one query on PostgreSQL) resolves exactly as reading
/// them one by one: the same records sent, table, quarantine and conflict log, run after run.
pub fn reading_keys_ahead_changes_nothing_but_speed(b: &dyn MergedBackend) {
    let (one, plain) = b.open();
    let (two, ahead) = b.open();
    let (mut plain, mut ahead) = (resolver(plain, "run-1"), resolver(ahead, "run-1"));
    let mut sent = (BTreeMap::new(), BTreeMap::new());
    let items = inputs();
    assert_eq!(
        feed(&mut plain, &items, &mut sent.0),
        feed_ahead(&mut ahead, &items, &mut sent.1)
    );
    // A second run over stored keys, with records that change some of them.
    let mut again = items.clone();
    again.push((
        "csv",
        json!({"id": 2, "company_name": "Beta CSV", "revenue": 9, "country": "FR"}),
        "2024-04-03T00:00:00Z",
    ));
    drop((plain, ahead));
    let (mut plain, mut ahead) = (
        resolver(b.reopen(one.as_ref()), "run-2"),
        resolver(b.reopen(two.as_ref()), "run-2"),
    );
    assert_eq!(
        feed(&mut plain, &again, &mut sent.0),
        feed_ahead(&mut ahead, &again, &mut sent.1)
    );
    assert_eq!(sent.0, sent.1);
    let (p, a) = (plain.connection().unwrap(), ahead.connection().unwrap());
    assert_eq!(table(p), table(a));
    assert_eq!(
        p.quarantined_keys("companies").unwrap(),
        a.quarantined_keys("companies").unwrap()
    );
    let log = |t: &dyn MergedTables| -> Vec<(Value, String, String, Value)> {
        t.conflicts(&ConflictFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.field, e.outcome, e.candidates))
            .collect()
    };
    assert_eq!(log(p), log(a));
    assert_eq!(plain.stats(), ahead.stats());
}

/// Issue 23: on PostgreSQL the rows a run of records will need are read in one query, and a
/// load in the same batch is answered from them: the batch holds the stream's lock, so no run
/// of dsm writes those keys meanwhile. A row deleted behind dsm's back after the read ahead
/// shows it. When the batch ends the rows read ahead are dropped, and a key is read again. The
/// key is found through a renamed key field.
#[test]
fn postgres_keys_read_ahead_answer_loads_until_the_batch_ends() {
    let (guard, tables) = Postgres.open();
    let d = MergedStream::parse(&json!({
        "name": "companies",
        "sources": [
            {"extractor": "tap-csv", "stream": "companies", "name": "csv",
             "fields": {"cid": "id"}},
            {"extractor": "tap-api", "stream": "orgs", "name": "api"}
        ],
        "key": ["id"],
        "priority": ["api", "csv"],
        "policy": "priority",
        "fields": {"email": "coalesce", "revenue": "max"}
    }))
    .unwrap();
    let new = |tables: Box<dyn MergedTables>, id: &str| {
        Resolver::new(tables, d.clone(), vec!["id".into()], run(id)).unwrap()
    };
    let obj = |v: Value| v.as_object().unwrap().clone();
    let mut r = new(tables, "run-1");
    for id in [1, 2] {
        r.resolve(
            "api",
            obj(json!({"id": id, "email": "x@api", "revenue": 5})),
            None,
        )
        .unwrap();
    }
    r.flush().unwrap();
    drop(r);

    let db = guard.downcast_ref::<crate::pg::TestDb>().unwrap();
    let mut sql = db.client();
    let mut delete = |key: &str| {
        let n = sql
            .execute(
                "DELETE FROM team_merged.merge_entities WHERE stream = 'companies' AND key = $1",
                &[&key],
            )
            .unwrap();
        assert_eq!(n, 1, "key {key} was stored");
    };
    let mut r = new(Postgres.reopen(guard.as_ref()), "run-2");
    let csv = |id: i64| obj(json!({"cid": id, "revenue": 1}));
    r.prefetch("csv", [&csv(1), &csv(2)]).unwrap();
    delete("[1]");
    // Against the row read ahead, csv's revenue of 1 changes nothing (api's 5 is the max), so
    // nothing is sent; against the store, the key would be new.
    let sent = r.resolve("csv", csv(1), None).unwrap();
    assert_eq!(sent, None, "resolved against the row read ahead");
    // The batch ends with nothing read ahead kept; key 2 is read again and is gone.
    r.flush().unwrap();
    delete("[2]");
    let merged = r.resolve("csv", csv(2), None).unwrap().unwrap();
    assert_eq!(
        (merged.get("email"), &merged["revenue"]),
        (None, &json!(1)),
        "resolved against the store after the batch ended: {merged:?}"
    );
}

#[test]
fn a_batch_ended_by_its_size_counts_as_ended() {
    // What is read ahead ends with the batch, and a merge stage reads the rest of a run of
    // lines ahead again when this count moves: a batch ended by its size must move it too,
    // or every later key of the run is read on its own.
    let (_guard, tables) = MergedBackend::open(&Sqlite);
    let mut r = resolver(tables, "run-1");
    let start = r.batches_ended();
    for id in 0..Resolver::BATCH {
        let id = i64::try_from(id).unwrap();
        r.resolve(
            "csv",
            json!({"id": id, "company_name": "n"})
                .as_object()
                .unwrap()
                .clone(),
            None,
        )
        .unwrap();
        if id == 0 {
            assert_eq!(r.batches_ended(), start, "the first batch is open");
        }
    }
    assert_eq!(r.batches_ended(), start + 1);
    r.flush().unwrap();
    assert_eq!(r.batches_ended(), start + 2);
}

#[test]
fn postgres_a_key_row_written_behind_dsms_back_fails_the_whole_batch() {
    let (guard, tables) = Postgres.open();
    let d = decl();
    let key = d.key.clone().unwrap();
    let new = |tables: Box<dyn MergedTables>, id: &str| {
        Resolver::new(tables, d.clone(), key.clone(), run(id)).unwrap()
    };
    let rec = |id: i64| {
        json!({"id": id, "name": format!("n{id}"), "updated_at": "2024-01-01T00:00:00Z"})
            .as_object()
            .unwrap()
            .clone()
    };
    let mut r = new(tables, "run-1");
    r.resolve("csv", rec(1), None).unwrap();
    r.flush().unwrap();
    drop(r);

    let db = guard.downcast_ref::<crate::pg::TestDb>().unwrap();
    let mut sql = db.client();
    let mut r = new(Postgres.reopen(guard.as_ref()), "run-2");
    // Keys 3 to 6 are new: the run hands their rows to the server while it goes on.
    for id in 3..=6 {
        r.prefetch("csv", [&rec(id)]).unwrap();
        r.resolve("csv", rec(id), None).unwrap();
    }
    // A row of key 2 appears that no resolver wrote (so the stream's counter did not move),
    // after the run's key set was read: the run takes the key for new.
    sql.execute(
        "INSERT INTO team_merged.merge_entities (project_id, stream, key, candidates)
         VALUES ($1, 'companies', '[2]', '{}')",
        &[&PROJECT],
    )
    .unwrap();
    r.prefetch("csv", [&rec(2)]).unwrap();
    r.resolve("csv", rec(2), None).unwrap();
    // Key 2's row goes to the server with the next run of records; the failure is reported
    // by the batch's commit at the latest.
    let e = r
        .prefetch("csv", [&rec(7)])
        .and_then(|()| r.resolve("csv", rec(7), None))
        .and_then(|_| r.flush())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("merged stream `companies`") && e.contains("something other than dsm"),
        "{e}"
    );
    // Nothing of the batch was saved, not even the rows handed over before the failure, and
    // the row written behind dsm's back is as it was.
    let rows: Vec<(String, String)> = sql
        .query(
            "SELECT key, candidates FROM team_merged.merge_entities
              WHERE stream = 'companies' ORDER BY key COLLATE \"C\"",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "[1]");
    assert_eq!(rows[1], ("[2]".to_owned(), "{}".to_owned()));
    // The resolver does not go on writing after part of a batch failed on the server.
    let again = r.resolve("csv", rec(50), None).and_then(|_| r.flush());
    assert!(
        again.is_err(),
        "a later batch was saved without the failed one"
    );
    let n: i64 = sql
        .query_one(
            "SELECT count(*) FROM team_merged.merge_entities WHERE stream = 'companies'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn postgres_a_run_that_lost_its_lease_cannot_commit_merged_rows() {
    use dsm::store::postgres::{LeaseTimes, PgMerged, PgStore, Upgrade};
    use dsm::store::prelude::*;
    use dsm::store::{RunId, StateId};
    let db = crate::pg::TestDb::new("merged_lease");
    let expiry = Duration::from_millis(600);
    let store = PgStore::open(&pg_target(&db), PROJECT, Upgrade::FirstUseOnly)
        .unwrap()
        .with_lease(LeaseTimes {
            heartbeat: expiry / 6,
            expiry,
        });
    let flow = StateId::new("dev:tap-csv-to-target-jsonl");
    let old = RunId::new("old-run");
    let lock = store.acquire_lock(&flow, Some(&old), false).unwrap();
    let tables = PgMerged::open(&pg_target(&db), PROJECT).unwrap();
    let d = decl();
    let key = d.key.clone().unwrap();
    let mut r = Resolver::new(
        Box::new(tables) as Box<dyn MergedTables>,
        d,
        key,
        RunContext {
            lease: Some(flow.as_str().to_owned()),
            ..run(old.as_str())
        },
    )
    .unwrap();
    let rec = |id: i64| {
        json!({"id": id, "company_name": "x"})
            .as_object()
            .unwrap()
            .clone()
    };
    r.resolve("csv", rec(1), None).unwrap();
    r.flush().unwrap();
    // The run stops renewing; another run takes the flow over.
    std::thread::sleep(expiry + Duration::from_millis(300));
    let _new = store
        .acquire_lock(&flow, Some(&RunId::new("new-run")), false)
        .unwrap();
    r.resolve("csv", rec(2), None).unwrap();
    let err = r.flush().unwrap_err();
    assert!(err.to_string().contains("lease lost"), "{err}");
    let other = PgMerged::open(&pg_target(&db), PROJECT).unwrap();
    let keys: Vec<String> = other
        .resolved_records("companies")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["[1]"], "nothing of the fenced-out batch was written");
    drop(lock);
}

fn copy_example(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".dsm", "output", ".meltano"].iter().any(|n| name == *n) {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_example(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// `dsm` in `dir` with the store at `uri` (through the environment, as a password would go).
fn dsm_at(dir: &std::path::Path, uri: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dsm"));
    crate::clean_env(&mut cmd);
    let bins = std::path::Path::new(env!("CARGO_BIN_EXE_dsm"))
        .parent()
        .unwrap();
    let mut dirs = vec![bins.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env("DSM_DATABASE_URI", uri)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .env("XDG_CONFIG_HOME", dir.join(".test-config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dsm {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bundled merged example on a PostgreSQL store: run twice (the second run finds every key
/// resolved and sends nothing), the conflict log and the run counts read from the shared store,
/// nothing of the merge left in a local file, and the store copied back to SQLite whole.
#[test]
fn postgres_the_merged_example_runs_twice_on_a_team_store_and_copies_back_to_sqlite() {
    let db = crate::pg::TestDb::new("merged_e2e");
    let uri = db.uri(None);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("project");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/merged-companies");
    copy_example(&example, &dir);
    dsm_at(&dir, &uri, &["run", "merge-companies"]);
    let out = rusqlite::Connection::open(dir.join("output/companies.db")).unwrap();
    let rows: Vec<(i64, String)> = out
        .prepare("SELECT id, country FROM companies ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let countries: Vec<(i64, &str)> = rows.iter().map(|(i, c)| (*i, c.as_str())).collect();
    // Key 3 is quarantined: it keeps the country the CRM sent.
    assert_eq!(
        countries,
        [(1, "GB"), (2, "NO"), (3, "DE"), (4, "FR"), (5, "IE")]
    );
    let log = parsed(&dsm_at(
        &dir,
        &uri,
        &["conflicts", "list", "--format", "json"],
    ));
    let entries = log.as_array().unwrap();
    let quarantined: Vec<(&Value, &str)> = entries
        .iter()
        .filter(|e| e["outcome"] == "quarantined")
        .map(|e| (&e["key"], e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(quarantined, [(&json!([3]), "country")]);
    // Nothing of the merge stays local.
    let local = dir.join(".dsm/dsm.db");
    assert!(
        !local.exists(),
        "a local store appeared at {}",
        local.display()
    );

    dsm_at(&dir, &uri, &["run", "merge-companies"]);
    let runs = parsed(&dsm_at(&dir, &uri, &["runs", "list", "--format", "json"]));
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 6, "two jobs of three runs");
    for run in &runs[..3] {
        let id = run["run_id"].as_str().unwrap();
        let shown = parsed(&dsm_at(
            &dir,
            &uri,
            &["runs", "show", id, "--format", "json"],
        ));
        let counts = shown["merged_streams"].as_array().unwrap();
        assert_eq!(counts.len(), 1, "{shown}");
        assert!(counts[0]["records_in"].as_u64().unwrap() > 0, "{shown}");
        assert_eq!(
            counts[0]["emitted"], 0,
            "the second run sends nothing: {shown}"
        );
    }
    let again = parsed(&dsm_at(
        &dir,
        &uri,
        &["conflicts", "list", "--format", "json"],
    ));
    assert_eq!(again.as_array().unwrap().len(), entries.len());

    // Back to SQLite: the merged tables come along, counted on both sides.
    let file = tmp.path().join("copy.db");
    let report = parsed(&dsm_at(
        &dir,
        &uri,
        &[
            "store",
            "copy",
            "--from",
            &uri,
            "--to",
            file.to_str().unwrap(),
            "--format",
            "json",
        ],
    ));
    let count = |table: &str| -> u64 {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} in {report}"))["rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("merge_entities"), 5);
    assert_eq!(count("merge_schemas"), 3);
    assert_eq!(count("merge_run_stats"), 6);
    let copied = parsed(&dsm_at(
        &dir,
        file.to_str().unwrap(),
        &["conflicts", "list", "--format", "json"],
    ));
    assert_eq!(copied, again);
}

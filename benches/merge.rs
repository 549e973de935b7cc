//! Resolving 1,000,000 records from three sources with 30% overlapping keys.
//!
//! Run with `cargo bench --bench merge` (release profile). Each source's records are Singer
//! lines, fed through a [`MergeStage`] in runs of 64 KiB as the pipeline hands them over (one
//! read of the keys a run needs, then each record parsed and resolved) into a null target; the
//! store is a WAL SQLite file. Prints records/s, the peak resident memory and the heap at each quarter. The heap must
//! stay flat as the number of keys grows; the peak also counts the database pages SQLite reads
//! through its memory map (capped at 256 MiB). `DSM_BENCH_KEEP=FILE` keeps a copy of the store
//! (for `sqlite3 FILE` and its `dbstat` table: what each table and index weighs).
//!
//! With `DSM_BENCH_PG_URI`, the same workload also runs on a PostgreSQL store, the two stores
//! taking turns for `DSM_BENCH_MERGE_RUNS` rounds (default 3), each round on an empty store;
//! it prints the median records/s of each and every round's ratio.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use chrono::Utc;
use dsm::merge::{MergeStage, MergedDb, MergedStream, RunContext};
use dsm::singer::Message;
use dsm::store::merged::MergedTables;
use dsm::transform::Transform;
use rusqlite::Connection;
use serde_json::json;

/// The allocator of the `dsm` binary, so the figures are the ones a sync gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Records resolved: 1,000,000 under `cargo bench`; a small smoke run under `cargo test
/// --all-targets`, which runs this file too (without `--bench`), so the suite stays fast.
fn total() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        30_000
    }
}
const SOURCES: [&str; 3] = ["csv", "api", "manual"];
const CITIES: [&str; 3] = ["Leeds", "York", "Hull"];

/// CPU seconds (user + system) this process used, from `/proc/self/stat` (100 ticks/s):
/// on a shared machine the wall clock mostly measures the other processes.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
            let ticks = after.get(11)?.parse::<f64>().ok()? + after.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

/// A figure of `/proc/self/status` in KiB (0 when unreadable).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|l| l.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resident memory of this process that is not a mapped file (the heap): what the resolver
/// holds, without the pages of the database file SQLite reads through its memory map.
fn anon_rss_kib() -> u64 {
    status_kib("RssAnon:")
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Writes source `s`'s `i`-th record into `out` (cleared first): 30% of the keys come from a
/// pool all three sources share. Written with `write!` rather than built as a JSON value, so
/// that the figures measure the merge and not the benchmark's own generator (a `cat`-like tap).
fn line(out: &mut String, s: usize, i: usize) {
    use std::fmt::Write as _;
    let per = total() / SOURCES.len();
    let shared = per * 3 / 10;
    let id = if i < shared {
        i as u64
    } else {
        (s * per + i) as u64 + 10_000_000
    };
    out.clear();
    write!(
        out,
        r#"{{"type":"RECORD","stream":"companies","record":{{"id":{id},"name":"company {id} from {src}","revenue":{rev},"updated_at":"2024-0{m}-1{d}T00:00:00Z","city":"{city}"}},"time_extracted":"2024-05-0{m}T00:00:00Z"}}"#,
        src = SOURCES[s],
        rev = (id * 7 + s as u64 * 13) % 10_000,
        m = 1 + s,
        d = id % 10,
        city = CITIES[s],
    )
    .expect("writing to a String cannot fail");
}

/// The bytes of record lines handed over at a time (the pipeline's smallest read block).
const BLOCK: usize = 64 * 1024;

/// What one backend did with the whole workload.
struct Figures {
    records_per_s: f64,
    cpu: f64,
}

/// Feeds the three sources, one run each, through stages on tables from `open`.
fn measure(label: &str, decl: &MergedStream, open: &dyn Fn() -> Box<dyn MergedTables>) -> Figures {
    let schema = Message::parse(
        json!({"type": "SCHEMA", "stream": "companies", "key_properties": ["id"],
            "schema": {"properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                "revenue": {"type": "integer"},
                "updated_at": {"type": "string", "format": "date-time"},
                "city": {"type": "string"}}}})
        .to_string()
        .as_bytes(),
    )
    .expect("a valid SCHEMA");
    let per = total() / SOURCES.len();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut emitted = 0usize;
    let mut conflicts = 0u64;
    let mut out = Vec::new();
    for (s, name) in SOURCES.iter().enumerate() {
        let run = RunContext {
            run_id: format!("bench-{name}"),
            started_at: Utc::now(),
            lease: None,
        };
        let mut stage = MergeStage::new(open(), decl.clone(), name, run).expect("a stage");
        stage.apply(schema.clone(), &mut out).expect("the schema");
        let mut text = String::with_capacity(256);
        // The pipeline hands a merge stage the record lines of each block it reads from the
        // tap (at least 64 KiB) as one run: so does this, through the same call.
        let (mut buf, mut ranges, mut sent) = (Vec::new(), Vec::new(), Vec::new());
        let mut run = |buf: &mut Vec<u8>, ranges: &mut Vec<std::ops::Range<usize>>| {
            let mapped = stage.apply_record_lines("companies", buf, ranges, &mut sent);
            assert_eq!(mapped.done, ranges.len(), "resolve: {:?}", mapped.error);
            // The null target: count and drop.
            emitted += sent.iter().filter(|&&b| b == b'\n').count();
            sent.clear();
            buf.clear();
            ranges.clear();
        };
        for i in 0..per {
            line(&mut text, s, i);
            let start = buf.len();
            buf.extend_from_slice(text.as_bytes());
            ranges.push(start..buf.len());
            buf.push(b'\n');
            if buf.len() >= BLOCK || i + 1 == per {
                run(&mut buf, &mut ranges);
            }
            if i == per / 2 {
                let done = s * per + i;
                println!(
                    "{label}: {done:>9} records  {:>9.0} records/s  peak RSS {} KiB  heap now {} KiB",
                    done as f64 / started.elapsed().as_secs_f64(),
                    peak_rss_kib(),
                    anon_rss_kib()
                );
            }
        }
        let stats = stage.finish().expect("commit");
        // The run ends well: the loader confirmed everything it was sent (as the pipeline does
        // at the loader's last STATE), so the next source's run has nothing to send again.
        stage.confirm(None).expect("confirm");
        stage.commit().expect("commit the confirmation");
        conflicts += stats.conflicts;
        println!(
            "{label}: {:>9} records  {:>9.0} records/s  peak RSS {} KiB  heap now {} KiB  (source `{name}` done)",
            (s + 1) * per,
            ((s + 1) * per) as f64 / started.elapsed().as_secs_f64(),
            peak_rss_kib(),
            anon_rss_kib()
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let n = (per * SOURCES.len()) as f64;
    println!(
        "{label}: resolved {n} records in {secs:.2}s wall ({:.0} records/s), {cpu:.2}s CPU in this process ({:.0} records per CPU-second); emitted {emitted}, conflicts logged {conflicts}",
        n / secs,
        n / cpu
    );
    Figures {
        records_per_s: n / secs,
        cpu,
    }
}

/// Rounds of the workload per store: `DSM_BENCH_MERGE_RUNS` (default 3 under `--bench` with a
/// PostgreSQL store to compare, else 1).
fn rounds(compare: bool) -> usize {
    std::env::var("DSM_BENCH_MERGE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(if compare && total() > 100_000 { 3 } else { 1 })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

fn main() {
    let decl = MergedStream::parse(&json!({
        "name": "companies",
        "sources": SOURCES.iter().map(|s| json!({"extractor": s, "stream": "companies"})).collect::<Vec<_>>(),
        "key": ["id"],
        "policy": "priority",
        "fields": {"revenue": "max", "city": "coalesce",
                   "updated_at": {"rule": "latest", "field": "updated_at"}},
        "null_key": "skip"
    }))
    .expect("the benchmark's declaration is valid");
    // `DSM_BENCH_PG_URI=postgresql://...&schema=NAME`: the same workload on a PostgreSQL store
    // (schemas NAME_1, NAME_2, ..., one a round, empty or missing; benches/team-store.sh starts
    // a throwaway server), the two stores taking turns, so that a change in the machine's speed
    // falls on both.
    let pg = std::env::var("DSM_BENCH_PG_URI")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|uri| {
            dsm::store::postgres::PgTarget::parse(&uri)
                .expect("DSM_BENCH_PG_URI is a PostgreSQL URI")
        });
    let rounds = rounds(pg.is_some());
    let (mut lite, mut post) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let label = |store: &str| {
            if rounds == 1 {
                store.to_owned()
            } else {
                format!("{store} {round}/{rounds}")
            }
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("dsm.db");
        lite.push(measure(&label("sqlite"), &decl, &|| {
            let conn = Connection::open(&path).expect("open the store");
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                .expect("WAL");
            Box::new(MergedDb::from_connection(conn).expect("the merged-stream tables"))
        }));
        if round == 1 {
            describe_store(&path);
        }
        drop(dir);
        if let Some(base) = &pg {
            use dsm::store::postgres::{PgMerged, PgStore, Upgrade};
            let mut target = base.clone();
            target.schema = format!("{}_{round}", base.schema);
            drop(PgStore::open(&target, "bench-merge", Upgrade::FirstUseOnly).expect("the store"));
            post.push(measure(&label("postgresql"), &decl, &|| {
                Box::new(PgMerged::open(&target, "bench-merge").expect("the merged-stream tables"))
            }));
        }
    }
    let of = |figures: &[Figures], f: fn(&Figures) -> f64| median(figures.iter().map(f).collect());
    let lite_rate = of(&lite, |f| f.records_per_s);
    if rounds > 1 {
        println!("sqlite: median {lite_rate:.0} records/s over {rounds} rounds");
    }
    if !post.is_empty() {
        let post_rate = of(&post, |f| f.records_per_s);
        if rounds > 1 {
            println!("postgresql: median {post_rate:.0} records/s over {rounds} rounds");
        }
        let each = lite
            .iter()
            .zip(&post)
            .map(|(l, p)| format!("{:.1}%", 100.0 * p.records_per_s / l.records_per_s))
            .collect::<Vec<_>>()
            .join(", ");
        println!(
            "merged stream: PostgreSQL / SQLite = {:.1}% of the median records/s (goal: at least 50%); each round: {each}; CPU in this process (medians) {:.2}s / {:.2}s",
            100.0 * post_rate / lite_rate,
            of(&post, |f| f.cpu),
            of(&lite, |f| f.cpu),
        );
    }
}

/// Prints what the SQLite store at `path` holds, and keeps a copy when `DSM_BENCH_KEEP=FILE`
/// is set (for `sqlite3 FILE` and its `dbstat` table: what each table and index weighs).
fn describe_store(path: &std::path::Path) {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let conn = Connection::open(path).expect("open the store");
    let rows = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count rows")
    };
    let entries: i64 = conn
        .query_row("SELECT coalesce(sum(n), 0) FROM merge_conflicts", [], |r| {
            r.get(0)
        })
        .expect("count conflict-log entries");
    println!(
        "store: {} MiB (+ {} MiB WAL); {} key rows, {} conflict-log rows holding {entries} entries",
        size(path) >> 20,
        size(&path.with_file_name("dsm.db-wal")) >> 20,
        rows("merge_entities"),
        rows("merge_conflicts"),
    );
    if let Some(keep) = std::env::var_os("DSM_BENCH_KEEP") {
        conn.execute("VACUUM INTO ?1", [keep.to_string_lossy()])
            .expect("copy the store");
    }
}

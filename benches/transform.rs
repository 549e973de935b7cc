//! Throughput of the native transforms as the pipeline pays for them. Each scenario drives a
//! chain of transforms with the pipeline's own rules for one segment
//! (`src/pipeline/segment.rs`): scan the envelope; a line no transform touches passes as it is;
//! a RECORD only the last transform touches is mapped from its line when that transform can
//! (`Transform::apply_record_line`); a RECORD only filters touch (validation) is kept or dropped
//! as its own bytes; anything else is parsed, run through every transform that touches it and
//! serialised again.
//!
//! The scenarios "as a run builds it" get their chain from `dsm::runner::plan` on a
//! `meltano.yml`, the way `dsm run` does, so they measure the wrappers a run puts around a
//! transform (per-stream validation with its dead-letter files, a transform limited to some
//! `streams:`). The others build one transform by hand: they keep the ids of the figures
//! measured before those existed, to compare with. The pipeline also maps runs of consecutive
//! record lines on every core; this benchmark maps one line at a time, so its CPU-time figure is
//! the cost per record on one core.
//!
//! Run with `cargo bench --bench transform [-- WORD]`; prints records per second for each scenario
//! (best of several rounds over 200,000 records of about 250 bytes), by wall clock and by the
//! thread's CPU time. On a shared machine the CPU-time figure is the one to compare: the wall
//! clock also counts the time other processes held the core.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(
    clippy::unwrap_used,
    reason = "benchmark set-up: a panic is the report"
)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use dsm::pipeline::Stage;
use dsm::project::Project;
use dsm::runner::{Flow, RunOptions};
use dsm::singer::{Message, MessageKind, scan};
use dsm::transform::{Policy, StreamMaps, Transform, Validate, ValidationSettings};
use serde_json::json;

/// The allocator of the `dsm` binary, so the figures are the ones the pipeline gets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether this is a measurement (`cargo bench` passes `--bench`) rather than the smoke run
/// `cargo test --all-targets` makes of every bench target.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Records per round.
fn records_per_round() -> usize {
    if measuring() { 200_000 } else { 5_000 }
}

/// Rounds per scenario (the best counts).
fn rounds() -> usize {
    if measuring() { 5 } else { 1 }
}

fn lines() -> (Vec<u8>, Vec<Vec<u8>>) {
    let schema = json!({"type": "SCHEMA", "stream": "users", "key_properties": ["id"], "schema": {
        "type": "object", "required": ["id", "email"],
        "properties": {
            "id": {"type": "integer"},
            "email": {"type": "string", "format": "email"},
            "first_name": {"type": ["string", "null"], "maxLength": 64},
            "last_name": {"type": ["string", "null"], "maxLength": 64},
            "country": {"type": ["string", "null"], "enum": ["US", "DE", "FR", "JP", null]},
            "amount": {"type": ["number", "null"], "multipleOf": 0.01, "minimum": 0},
            "created_at": {"type": ["string", "null"], "format": "date-time"},
            "status": {"type": ["string", "null"]},
            "score": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
            "note": {"type": ["string", "null"]}}}});
    let countries = ["US", "DE", "FR", "JP"];
    let records = (0..records_per_round())
        .map(|i| {
            let line = format!(
                r#"{{"type":"RECORD","stream":"users","record":{{"id":{i},"email":"user{i}@example.com","first_name":"Alice","last_name":"Smith","country":"{}","amount":{}.{:02},"created_at":"2024-01-01T12:34:56Z","status":"{}","score":{},"note":"lorem ipsum dolor sit amet"}},"time_extracted":"2024-01-01T12:35:00Z"}}"#,
                countries[i % 4],
                i % 1000,
                i % 100,
                if i % 10 == 0 { "inactive" } else { "active" },
                i % 101
            );
            line.into_bytes()
        })
        .collect();
    (serde_json::to_vec(&schema).unwrap(), records)
}

/// CPU time this thread has used.
#[expect(
    unsafe_code,
    reason = "clock_gettime has no safe wrapper in std or libc"
)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A chain of transforms, as one pipeline segment holds them.
type Chain = Vec<Box<dyn Transform>>;

/// Scratch buffers reused from line to line, as the pipeline reuses them.
#[derive(Default)]
struct Scratch {
    produced: Vec<Message>,
    spare: Vec<Message>,
}

/// One line through `chain` by the segment's rules, its output appended to `sink`.
/// `line_path: false` never maps a record from its line (the full-parse figures).
fn drive(chain: &mut Chain, line: &[u8], line_path: bool, sink: &mut Vec<u8>, s: &mut Scratch) {
    let env = scan(line).unwrap();
    let touched = env.kind != MessageKind::State
        && env
            .stream
            .as_deref()
            .is_some_and(|st| chain.iter().any(|t| t.touches(st)));
    if !touched {
        sink.extend_from_slice(line);
        sink.push(b'\n');
        return;
    }
    if line_path
        && env.kind == MessageKind::Record
        && let Some(stream) = env.stream.as_deref()
        && let Some((last, before)) = chain.split_last_mut()
        && before.iter().all(|t| !t.touches(stream))
        && last.apply_record_line(stream, line, sink).unwrap()
    {
        return;
    }
    let message = Message::parse_scanned(line, env.kind).unwrap();
    if let Message::Record(r) = &message
        && chain
            .iter()
            .all(|t| !t.touches(&r.stream) || t.filters_only(&r.stream))
    {
        for t in chain.iter_mut() {
            if t.touches(&r.stream) && !t.keep(r).unwrap() {
                return;
            }
        }
        sink.extend_from_slice(line);
        sink.push(b'\n');
        return;
    }
    s.produced.clear();
    s.produced.push(message);
    for t in chain.iter_mut() {
        s.spare.clear();
        for m in s.produced.drain(..) {
            if m.stream().is_some_and(|st| t.touches(st)) {
                t.apply(m, &mut s.spare).unwrap();
            } else {
                s.spare.push(m);
            }
        }
        std::mem::swap(&mut s.produced, &mut s.spare);
    }
    for m in s.produced.drain(..) {
        m.write_line(sink);
        sink.push(b'\n');
    }
}

/// The chain `dsm run tap-users target-jsonl` builds from `annotations` (a YAML mapping at the
/// extractor's level: `config`, `annotations`), through the runner's own planning. Planning
/// starts no process and writes nothing; the folder only holds `meltano.yml`.
fn planned(extractor: &str) -> (tempfile::TempDir, Chain) {
    let dir = tempfile::tempdir().unwrap();
    let yml = format!(
        "version: 1\nproject_id: bench\nplugins:\n  extractors:\n  - name: tap-users\n    namespace: tap_users\n    executable: cat\n    capabilities: [catalog, discover]\n{extractor}  loaders:\n  - name: target-jsonl\n    variant: dsm\n"
    );
    std::fs::write(dir.path().join("meltano.yml"), yml).unwrap();
    let project = Project::load(dir.path()).unwrap();
    let flow = Flow {
        extractor: "tap-users".into(),
        mappers: Vec::new(),
        loader: "target-jsonl".into(),
    };
    let plan = dsm::runner::plan(&project, None, &flow, &RunOptions::default()).unwrap();
    let (stages, _quarantined) = plan.stages.into_stages(dir.path(), "bench");
    let chain = stages
        .into_iter()
        .map(|s| match s {
            Stage::Transform(t) => t,
            Stage::Mapper(_) => panic!("the bench project runs no mapper process"),
        })
        .collect();
    (dir, chain)
}

fn measure(
    name: &str,
    line_path: bool,
    make: &dyn Fn() -> Chain,
    schema: &[u8],
    records: &[Vec<u8>],
) {
    // `cargo bench --bench transform -- WORD` runs only the scenarios whose name has WORD (for
    // profiling one of them); cargo's own `--bench` flag is not a filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return;
    }
    let avg_len = records.iter().map(Vec::len).sum::<usize>() / records.len();
    let mut best = Duration::MAX;
    let mut best_cpu = Duration::MAX;
    let mut written = 0usize;
    for _ in 0..rounds() {
        let mut chain = make();
        let mut scratch = Scratch::default();
        let mut sink = Vec::with_capacity(1 << 21);
        drive(&mut chain, schema, line_path, &mut sink, &mut scratch);
        sink.clear();
        let start = Instant::now();
        let cpu = thread_cpu();
        for line in records {
            drive(&mut chain, line, line_path, &mut sink, &mut scratch);
            if sink.len() > 1 << 20 {
                written += sink.len();
                black_box(&sink);
                sink.clear();
            }
        }
        for t in &mut chain {
            t.finish().unwrap();
        }
        best = best.min(start.elapsed());
        best_cpu = best_cpu.min(thread_cpu() - cpu);
        written += black_box(sink.len());
    }
    black_box(written);
    let n = records.len() as f64;
    println!(
        "{name:<58} {:>9.0} records/s CPU ({:.2} µs/record) | {:>9.0} records/s wall | {avg_len} B/record",
        n / best_cpu.as_secs_f64(),
        best_cpu.as_secs_f64() * 1e6 / n,
        n / best.as_secs_f64(),
    );
}

fn main() {
    let (schema, records) = lines();
    println!(
        "{} records per round, best of {} rounds",
        records.len(),
        rounds()
    );
    let one = |t: Box<dyn Transform>| -> Chain { vec![t] };
    let maps = |config: serde_json::Value| -> Box<dyn Transform> {
        Box::new(StreamMaps::from_config(&config).unwrap())
    };
    measure(
        "parse only (stream removed by the map)",
        false,
        &|| one(maps(json!({"stream_maps": {"users": null}}))),
        &schema,
        &records,
    );
    measure(
        "parse + serialise (identity map)",
        false,
        &|| one(maps(json!({"stream_maps": {"users": {}}}))),
        &schema,
        &records,
    );
    let mapping = json!({"stream_maps": {"users": {
        "__alias__": "customers",
        "__filter__": "status == 'active'",
        "contact": "email",
        "email": null,
        "note": null,
        "email_hash": "md5(email)"}}});
    measure(
        "stream map: rename + drop + md5() + filter",
        false,
        &|| one(maps(mapping.clone())),
        &schema,
        &records,
    );
    measure(
        "stream map, line path (as the pipeline runs it)",
        true,
        &|| one(maps(mapping.clone())),
        &schema,
        &records,
    );
    measure(
        "validation (policy fail)",
        false,
        &|| {
            one(Box::new(
                Validate::new(ValidationSettings {
                    default: Policy::Fail,
                    streams: HashMap::new(),
                    quarantine_path: None,
                })
                .unwrap(),
            ))
        },
        &schema,
        &records,
    );

    // The same transforms in the chain `dsm run` builds from meltano.yml.
    let tap_maps = "    config:\n      stream_maps:\n        users:\n          __alias__: customers\n          __filter__: status == 'active'\n          contact: email\n          email: null\n          note: null\n          email_hash: md5(email)\n";
    let annotation_maps = "    annotations:\n      dsm:\n        transforms:\n        - type: stream_maps\n          streams: [users]\n          config:\n            stream_maps:\n              users:\n                __alias__: customers\n                __filter__: status == 'active'\n                contact: email\n                email: null\n                note: null\n                email_hash: md5(email)\n";
    let validation = "    annotations:\n      dsm:\n        validation: {on_error: fail}\n";
    let both = format!("{tap_maps}{validation}");
    let runs: [(&str, &str); 4] = [
        ("validation (policy fail), as a run builds it", validation),
        (
            "stream map of the tap's config, as a run builds it",
            tap_maps,
        ),
        (
            "stream map in transforms with streams:, as a run builds it",
            annotation_maps,
        ),
        ("stream map, then validation, as a run builds it", &both),
    ];
    for (name, extractor) in runs {
        assert!(
            !planned(extractor).1.is_empty(),
            "{name}: the run builds no transform"
        );
        // Planning is outside the timed part: each round plans afresh, as each run does.
        measure(name, true, &|| planned(extractor).1, &schema, &records);
    }
}

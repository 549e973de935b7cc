//! Throughput of the native transforms as the pipeline pays for them: parse a raw line,
//! apply the transform, serialise every output message (or, for a transform that only filters,
//! such as validation, pass the kept line's own bytes on). Scenarios marked "line path" do what
//! the pipeline does for a record of a mapped stream: scan the envelope, then map the record
//! from its line (`Transform::apply_record_line`), parsing it in full only when that declines.
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

fn measure(
    name: &str,
    line_path: bool,
    make: &dyn Fn() -> Box<dyn Transform>,
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
        let mut t = make();
        let mut out = Vec::new();
        t.apply(Message::parse(schema).unwrap(), &mut out).unwrap();
        out.clear();
        let mut sink = Vec::with_capacity(1 << 20);
        let start = Instant::now();
        let cpu = thread_cpu();
        for line in records {
            if line_path {
                let env = scan(line).unwrap();
                let stream = env.stream.as_deref().unwrap();
                if env.kind == MessageKind::Record
                    && t.apply_record_line(stream, line, &mut sink).unwrap()
                {
                    if sink.len() > 1 << 20 {
                        written += sink.len();
                        black_box(&sink);
                        sink.clear();
                    }
                    continue;
                }
            }
            let msg = Message::parse(line).unwrap();
            match &msg {
                // As the pipeline does: a record only filters touch passes as its own bytes.
                Message::Record(r) if t.filters_only(&r.stream) => {
                    if t.keep(r).unwrap() {
                        sink.extend_from_slice(line);
                        sink.push(b'\n');
                    }
                }
                _ => {
                    t.apply(msg, &mut out).unwrap();
                    for m in out.drain(..) {
                        m.write_line(&mut sink);
                        sink.push(b'\n');
                    }
                }
            }
            if sink.len() > 1 << 20 {
                written += sink.len();
                black_box(&sink);
                sink.clear();
            }
        }
        best = best.min(start.elapsed());
        best_cpu = best_cpu.min(thread_cpu() - cpu);
        written += black_box(sink.len());
    }
    black_box(written);
    let n = records.len() as f64;
    println!(
        "{name:<42} {:>9.0} records/s CPU ({:.2} µs/record) | {:>9.0} records/s wall | {avg_len} B/record",
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
    let baseline = |_: ()| -> Box<dyn Transform> {
        Box::new(StreamMaps::from_config(&json!({"stream_maps": {"users": {}}})).unwrap())
    };
    measure(
        "parse only (stream removed by the map)",
        false,
        &|| Box::new(StreamMaps::from_config(&json!({"stream_maps": {"users": null}})).unwrap()),
        &schema,
        &records,
    );
    measure(
        "parse + serialise (identity map)",
        false,
        &|| baseline(()),
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
        &|| Box::new(StreamMaps::from_config(&mapping).unwrap()),
        &schema,
        &records,
    );
    measure(
        "stream map, line path (as the pipeline runs it)",
        true,
        &|| Box::new(StreamMaps::from_config(&mapping).unwrap()),
        &schema,
        &records,
    );
    measure(
        "validation (policy fail)",
        false,
        &|| {
            Box::new(
                Validate::new(ValidationSettings {
                    default: Policy::Fail,
                    streams: HashMap::new(),
                    quarantine_path: None,
                })
                .unwrap(),
            )
        },
        &schema,
        &records,
    );
}

//! `tap-rest` against the fake API on loopback with no rate limit, against a plain Rust HTTP
//! client loop (the same `ureq` agent, parsing each page's JSON and counting its records)
//! fetching the same pages in the same run.
//!
//! Run with `cargo bench --bench rest` (release profile). Prints pages/s of both, best of
//! `DSM_BENCH_RUNS` (default 5) runs each, alternated, and the ratio; the goal is 80%. The
//! tap's output goes to a pipe read by this process and counted, as a target would read it.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![allow(clippy::unwrap_used, reason = "a benchmark: any failure aborts it")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (items, page_size) = if bench { (200_000, 100) } else { (2_000, 100) };
    let pages = items / page_size;
    let runs: usize = std::env::var("DSM_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 5 } else { 1 });
    let dir = tempfile::tempdir().unwrap();
    let port_file = dir.path().join("port");
    let mut server = Command::new(env!("CARGO_BIN_EXE_dsm-fake-api"))
        .args(["--port-file", port_file.to_str().unwrap()])
        .args([
            "--items",
            &items.to_string(),
            "--page-size",
            &page_size.to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let port: u16 = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().parse().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(10));
    };
    let base = format!("http://127.0.0.1:{port}/");
    let config = serde_json::json!({
        "client": {"base_url": base},
        "resources": [{"name": "items", "endpoint": {"path": "page_number",
            "paginator": {"type": "page_number", "base_page": 1, "total_path": "total_pages"}}}]
    });
    let cfg = dir.path().join("config.json");
    std::fs::write(&cfg, config.to_string()).unwrap();

    let mut best_loop = f64::MAX;
    let mut best_tap = f64::MAX;
    for _ in 0..runs {
        // The baseline: one agent, one request per page, each page parsed and its records counted.
        let agent = ureq::Agent::new_with_defaults();
        let t = Instant::now();
        let mut n = 0usize;
        for page in 1..=pages {
            let body = agent
                .get(format!("{base}page_number?page={page}"))
                .call()
                .unwrap()
                .into_body()
                .read_to_vec()
                .unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            n += doc["data"].as_array().unwrap().len();
        }
        assert_eq!(n, items);
        best_loop = best_loop.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tap-rest"))
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let records = out
            .split(b'\n')
            .filter(|l| l.as_ref().unwrap().starts_with(b"{\"type\":\"RECORD\""))
            .count();
        assert!(child.wait().unwrap().success());
        assert_eq!(records, items);
        best_tap = best_tap.min(t.elapsed().as_secs_f64());
    }
    let _ = server.kill();
    let _ = server.wait();
    let loop_rate = pages as f64 / best_loop;
    let tap_rate = pages as f64 / best_tap;
    println!(
        "{pages} pages of {page_size} records, best of {runs}: plain client loop {loop_rate:.0} pages/s, tap-rest {tap_rate:.0} pages/s ({:.0}% of the loop; goal 80%)",
        100.0 * tap_rate / loop_rate
    );
}

//! The load client of `benches/webhooks.sh`: CLIENTS threads, each on one keep-alive
//! connection, POST REQUESTS signed events each to `/api/webhooks/SOURCE` (every event with
//! its own `X-DSM-Event-Id`, so each is stored) and the latencies are reported as p50 / p99.
//! A plain program: `cargo bench --bench webhooks_client` with `DSM_BENCH_ADDR`,
//! `DSM_BENCH_SOURCE`, `DSM_BENCH_SECRET`, `DSM_BENCH_CLIENTS`, `DSM_BENCH_REQUESTS` set.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "a benchmark program"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Sends one request and reads the whole answer; returns its status.
fn one(reader: &mut BufReader<TcpStream>, request: &[u8]) -> u16 {
    reader.get_mut().write_all(request).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    status
}

fn main() {
    let Ok(addr) = std::env::var("DSM_BENCH_ADDR") else {
        println!("webhooks_client: set DSM_BENCH_ADDR (run benches/webhooks.sh)");
        return;
    };
    let source = env("DSM_BENCH_SOURCE", "tap-webhook");
    let secret = env("DSM_BENCH_SECRET", "");
    let clients: usize = env("DSM_BENCH_CLIENTS", "50").parse().unwrap();
    let requests: usize = env("DSM_BENCH_REQUESTS", "100").parse().unwrap();
    let run = std::process::id();
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, source, secret) = (addr.clone(), source.clone(), secret.clone());
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream);
                let mut times = Vec::with_capacity(requests);
                for i in 0..requests {
                    // A typical event of about 400 bytes.
                    let body = format!(
                        r#"{{"type":"order.paid","id":"ord_{run}_{c}_{i}","amount":{},"currency":"EUR","customer":{{"id":"cus_{c}","email":"c{c}@example.com"}},"lines":[{{"sku":"A-1","qty":2,"price":"9.90"}},{{"sku":"B-7","qty":1,"price":"24.00"}}],"note":"{}"}}"#,
                        1000 + i,
                        "x".repeat(150)
                    );
                    let ts = chrono::Utc::now().timestamp();
                    let sig = dsm::webhooks::sign(
                        secret.as_bytes(),
                        ts,
                        body.as_bytes(),
                    );
                    let request = format!(
                        "POST /api/webhooks/{source} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-DSM-Timestamp: {ts}\r\nX-DSM-Signature: {sig}\r\nX-DSM-Event-Id: {run}-{c}-{i}\r\n\r\n{body}",
                        body.len()
                    );
                    let t0 = Instant::now();
                    let status = one(&mut reader, request.as_bytes());
                    assert_eq!(status, 202, "POST /api/webhooks/{source}");
                    times.push(t0.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let wall = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1];
    println!(
        "POST /api/webhooks/{source} (signed, stored): {} requests from {clients} clients in {:.2}s ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}

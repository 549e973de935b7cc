//! The HTTP load client of `benches/serve.sh`: CLIENTS threads, each on one keep-alive
//! connection, send REQUESTS GETs of PATH each and the latencies are reported as p50 / p99.
//! A plain program (no libtest, no extra dependency): `cargo bench --bench serve_client` with
//! `DSM_BENCH_ADDR`, `DSM_BENCH_TOKEN`, `DSM_BENCH_PATH`, `DSM_BENCH_CLIENTS`,
//! `DSM_BENCH_REQUESTS` set.

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
    // `cargo bench` passes `--bench`; without the address there is nothing to measure.
    let Ok(addr) = std::env::var("DSM_BENCH_ADDR") else {
        println!("serve_client: set DSM_BENCH_ADDR (run benches/serve.sh)");
        return;
    };
    let token = env("DSM_BENCH_TOKEN", "");
    let path = env("DSM_BENCH_PATH", "/healthz");
    let clients: usize = env("DSM_BENCH_CLIENTS", "50").parse().unwrap();
    let requests: usize = env("DSM_BENCH_REQUESTS", "200").parse().unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .into_bytes();
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.clone();
            let request = request.clone();
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&addr).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut reader = BufReader::new(stream);
                let mut times = Vec::with_capacity(requests);
                for _ in 0..requests {
                    let t0 = Instant::now();
                    let status = one(&mut reader, &request);
                    assert_eq!(status, 200, "GET {}", String::from_utf8_lossy(&request));
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
        "{path}: {} requests from {clients} clients in {:.2}s ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
}

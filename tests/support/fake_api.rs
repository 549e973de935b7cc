//! A fake REST API on loopback for tap-rest's tests and benchmark: a real HTTP/1.1 server that
//! pages every way tap-rest knows, checks credentials, answers 429 with `Retry-After`, fails
//! with 500s and drops connections at random (seeded), and logs every request with its time.
//!
//! Options: `--port N` (default 0: any free port), `--port-file FILE` (the port is written
//! there once listening),
//! `--log FILE` (one JSON line per request: `t` seconds since the epoch, `method`, `path`,
//! `query`, `status`), `--items N` (default 95), `--page-size N` (default 10), `--users N`
//! (default 3), `--seed N`, `--fail-rate F` (500s), `--reset-rate F` (connections closed
//! without an answer), `--throttle-every N` (every Nth request gets 429), `--retry-after V`
//! (default `1`), `--token-ttl SECS` (OAuth2 tokens, default 2), `--budget N --budget-window
//! SECS` (at most N requests per window, announced in `X-RateLimit-Remaining` and
//! `X-RateLimit-Reset`, seconds to the window's end rounded up to the millisecond; a request
//! over the budget gets 429).
//!
//! Endpoints: `/page_number?page=` (base 1, `total_pages`), `/offset?offset=&limit=` (`total`),
//! `/cursor?cursor=` (`next_cursor`), `/json_link?page=` (relative `next`),
//! `/header_link?page=` (`Link`), `/header_cursor?cursor=` (header `next`),
//! `/has_more?page=` (base 0, `has_more`), `/incremental?since=&until=`, `/loop/cursor`,
//! `/loop/json_link`, `/loop/page`, `/users`, `/users/{id}/posts`, `/secure/{bearer,api_key,
//! basic,oauth}`, `POST /oauth/token`, `/missing` (404).

#![allow(clippy::print_stderr, reason = "a test server talks to its stderr")]
#![allow(
    clippy::unwrap_used,
    reason = "a test server: a poisoned lock may abort it"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

#[derive(Clone)]
struct Opts {
    port: u16,
    port_file: Option<String>,
    log: Option<String>,
    items: u64,
    page_size: u64,
    users: u64,
    seed: u64,
    fail_rate: f64,
    reset_rate: f64,
    throttle_every: u64,
    retry_after: String,
    token_ttl: f64,
    budget: u64,
    budget_window: f64,
}

struct Shared {
    opts: Opts,
    rng: StdRng,
    count: u64,
    log: Option<std::fs::File>,
    tokens: HashMap<String, Instant>,
    /// The budget's window: its end and the requests in it.
    window: Option<(Instant, u64)>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        port: 0,
        port_file: None,
        log: None,
        items: 95,
        page_size: 10,
        users: 3,
        seed: 1,
        fail_rate: 0.0,
        reset_rate: 0.0,
        throttle_every: 0,
        retry_after: "1".into(),
        token_ttl: 2.0,
        budget: 0,
        budget_window: 1.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        let float = |v: String| v.parse::<f64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--port" => o.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--port-file" => o.port_file = Some(val()?),
            "--log" => o.log = Some(val()?),
            "--items" => o.items = num(val()?)?,
            "--page-size" => o.page_size = num(val()?)?.max(1),
            "--users" => o.users = num(val()?)?,
            "--seed" => o.seed = num(val()?)?,
            "--fail-rate" => o.fail_rate = float(val()?)?,
            "--reset-rate" => o.reset_rate = float(val()?)?,
            "--throttle-every" => o.throttle_every = num(val()?)?,
            "--retry-after" => o.retry_after = val()?,
            "--token-ttl" => o.token_ttl = float(val()?)?,
            "--budget" => o.budget = num(val()?)?,
            "--budget-window" => o.budget_window = float(val()?)?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

fn main() -> std::process::ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dsm-fake-api: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", opts.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("dsm-fake-api: cannot listen: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let port = listener.local_addr().unwrap().port();
    let log = opts.log.as_ref().map(|p| std::fs::File::create(p).unwrap());
    if let Some(pf) = &opts.port_file {
        // Written whole, then renamed, so a reader never sees half a number.
        let tmp = format!("{pf}.tmp");
        std::fs::write(&tmp, port.to_string()).unwrap();
        std::fs::rename(&tmp, pf).unwrap();
    }
    eprintln!("dsm-fake-api: listening on 127.0.0.1:{port}");
    let shared = Arc::new(Mutex::new(Shared {
        rng: StdRng::seed_from_u64(opts.seed),
        opts,
        count: 0,
        log,
        tokens: HashMap::new(),
        window: None,
    }));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let _ = serve(stream, &shared);
        });
    }
    std::process::ExitCode::SUCCESS
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    raw_query: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn read_req(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Req>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("/").to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let (path, raw_query) = target.split_once('?').unwrap_or((&target, ""));
    Ok(Some(Req {
        method,
        path: path.to_owned(),
        query: parse_query(raw_query),
        raw_query: raw_query.to_owned(),
        headers,
        body,
    }))
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn ok(body: Value) -> Resp {
    Resp {
        status: 200,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

fn status(code: u16, text: &str) -> Resp {
    Resp {
        status: code,
        headers: Vec::new(),
        body: json!({"error": text}).to_string(),
    }
}

fn item(i: u64) -> Value {
    json!({
        "id": i,
        "name": format!("item-{i}"),
        "updated_at": format!("2024-01-01T{:02}:{:02}:00Z", i / 60, i % 60),
    })
}

fn serve(stream: TcpStream, shared: &Arc<Mutex<Shared>>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    while let Some(req) = read_req(&mut r)? {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // Faults first: a throttled or failed request never reaches the endpoint.
        let mut budget = Vec::new();
        let fault = {
            let mut s = shared.lock().unwrap();
            s.count += 1;
            let n = s.count;
            let o = s.opts.clone();
            let roll: f64 = s.rng.random();
            let mut budget_headers = Vec::new();
            let mut over_budget = false;
            if o.budget > 0 {
                let now = Instant::now();
                let (end, count) = match s.window {
                    Some((end, count)) if now < end => (end, count + 1),
                    _ => (
                        now + std::time::Duration::try_from_secs_f64(o.budget_window)
                            .unwrap_or_default(),
                        1,
                    ),
                };
                s.window = Some((end, count));
                over_budget = count > o.budget;
                budget_headers = vec![
                    (
                        "X-RateLimit-Remaining".to_owned(),
                        o.budget.saturating_sub(count).to_string(),
                    ),
                    (
                        "X-RateLimit-Reset".to_owned(),
                        // Rounded up: an announced reset that came before the window's end
                        // would send a client that waits exactly as told into the old window.
                        format!(
                            "{:.3}",
                            ((end - now).as_secs_f64() * 1000.0).ceil() / 1000.0
                        ),
                    ),
                ];
            }
            if over_budget {
                Some(Resp {
                    status: 429,
                    headers: budget_headers,
                    body: json!({"error": "over budget"}).to_string(),
                })
            } else if o.throttle_every > 0 && n.is_multiple_of(o.throttle_every) {
                Some(Resp {
                    status: 429,
                    headers: vec![("Retry-After".into(), o.retry_after.clone())],
                    body: json!({"error": "slow down"}).to_string(),
                })
            } else if roll < o.reset_rate {
                Some(Resp {
                    status: 0,
                    headers: Vec::new(),
                    body: String::new(),
                })
            } else if roll < o.reset_rate + o.fail_rate {
                Some(status(500, "internal error"))
            } else {
                budget = budget_headers;
                None
            }
        };
        let mut resp = match fault {
            Some(f) => f,
            None => route(&req, shared, &host(&req)),
        };
        resp.headers.append(&mut budget);
        {
            let mut s = shared.lock().unwrap();
            if let Some(log) = s.log.as_mut() {
                let line = json!({"t": t, "method": req.method, "path": req.path,
                    "query": req.raw_query, "status": resp.status});
                writeln!(log, "{line}")?;
                log.flush()?;
            }
        }
        if resp.status == 0 {
            // Drop the connection without an answer, as a crashing upstream does.
            let _ = w.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        let reason = match resp.status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            _ => "Status",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(resp.body.as_bytes())?;
        w.flush()?;
        if req
            .headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return Ok(());
        }
    }
    Ok(())
}

fn host(req: &Req) -> String {
    req.headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into())
}

fn num(req: &Req, name: &str, default: u64) -> u64 {
    req.query
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn page(items: u64, size: u64, index: u64) -> Vec<Value> {
    let start = index * size;
    (start + 1..=(start + size).min(items)).map(item).collect()
}

fn route(req: &Req, shared: &Arc<Mutex<Shared>>, host: &str) -> Resp {
    let (items, size, users, ttl) = {
        let s = shared.lock().unwrap();
        (
            s.opts.items,
            s.opts.page_size,
            s.opts.users,
            s.opts.token_ttl,
        )
    };
    let pages = items.div_ceil(size);
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["page_number"] => {
            let p = num(req, "page", 1).max(1);
            ok(json!({"data": page(items, size, p - 1), "total_pages": pages}))
        }
        ["offset"] => {
            let off = num(req, "offset", 0);
            let lim = num(req, "limit", size).max(1);
            let data: Vec<Value> = (off + 1..=(off + lim).min(items)).map(item).collect();
            ok(json!({"items": data, "total": items}))
        }
        ["cursor"] => {
            let idx: u64 = req
                .query
                .get("cursor")
                .and_then(|c| c.strip_prefix('c'))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let next = (idx + 1 < pages).then(|| format!("c{}", idx + 1));
            ok(json!({"data": page(items, size, idx), "next_cursor": next}))
        }
        ["json_link"] => {
            let p = num(req, "page", 1).max(1);
            let next = (p < pages).then(|| format!("/json_link?page={}", p + 1));
            ok(json!({"results": page(items, size, p - 1), "next": next}))
        }
        ["header_link"] => {
            let p = num(req, "page", 1).max(1);
            let mut r = ok(Value::Array(page(items, size, p - 1)));
            let mut link = format!("<http://{host}/header_link?page=1>; rel=\"first\"");
            if p < pages {
                link.push_str(&format!(
                    ", <http://{host}/header_link?page={}>; rel=\"next\"",
                    p + 1
                ));
            }
            r.headers.push(("Link".into(), link));
            r
        }
        ["header_cursor"] => {
            let idx: u64 = req
                .query
                .get("cursor")
                .and_then(|c| c.strip_prefix('h'))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let mut r = ok(Value::Array(page(items, size, idx)));
            if idx + 1 < pages {
                r.headers.push(("next".into(), format!("h{}", idx + 1)));
            }
            r
        }
        ["has_more"] => {
            let p = num(req, "page", 0);
            ok(json!({"entries": page(items, size, p), "has_more": p + 1 < pages}))
        }
        ["incremental"] => {
            let since = req.query.get("since").cloned().unwrap_or_default();
            let until = req.query.get("until").cloned();
            let data: Vec<Value> = (1..=items)
                .map(item)
                .filter(|v| {
                    let u = v["updated_at"].as_str().unwrap_or("");
                    u >= since.as_str() && until.as_deref().is_none_or(|e| u < e)
                })
                .collect();
            ok(json!({"data": data}))
        }
        ["loop", "cursor"] => {
            let idx = u64::from(req.query.contains_key("cursor"));
            ok(json!({"data": page(items, size, idx), "next_cursor": "again"}))
        }
        ["loop", "json_link"] => {
            let p = num(req, "page", 1);
            ok(json!({"results": page(items, size, p - 1), "next": "/loop/json_link?page=2"}))
        }
        // Ignores `page` and never says how many there are.
        ["loop", "page"] => ok(json!({"data": page(items, size, 0)})),
        ["users"] => ok(Value::Array(
            (1..=users)
                .map(|i| json!({"id": i, "name": format!("user-{i}")}))
                .collect(),
        )),
        ["users", id, "posts"] => {
            let Ok(id) = id.parse::<u64>() else {
                return status(404, "no such user");
            };
            if id == 0 || id > users {
                return status(404, "no such user");
            }
            ok(Value::Array(
                (1..=2)
                    .map(|k| json!({"id": id * 100 + k, "title": format!("post {k} of {id}")}))
                    .collect(),
            ))
        }
        ["secure", kind] => {
            let auth = req
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            let allowed = match *kind {
                "bearer" => auth == "Bearer s3cret-token",
                "api_key" => {
                    req.headers.get("x-api-key").map(String::as_str) == Some("k3y")
                        || req.query.get("api_key").map(String::as_str) == Some("k3y")
                }
                "basic" => auth == format!("Basic {}", b64("ann:pa55")),
                "oauth" => {
                    let token = auth.strip_prefix("Bearer ").unwrap_or("");
                    let s = shared.lock().unwrap();
                    s.tokens
                        .get(token)
                        .is_some_and(|issued| issued.elapsed().as_secs_f64() < ttl)
                }
                _ => return status(404, "no such endpoint"),
            };
            if allowed {
                ok(json!({"data": page(items, size, 0)}))
            } else {
                status(401, "bad credentials")
            }
        }
        ["oauth", "token"] if req.method == "POST" => {
            let auth = req
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("app:cl13nt-secret")
            );
            let form = parse_query(&String::from_utf8_lossy(&req.body));
            if auth != want
                || form.get("grant_type").map(String::as_str) != Some("client_credentials")
            {
                return status(401, "bad client");
            }
            let mut s = shared.lock().unwrap();
            let token = format!("tok-{}", s.tokens.len() + 1);
            s.tokens.insert(token.clone(), Instant::now());
            ok(
                json!({"access_token": token, "token_type": "bearer", "expires_in": ttl,
                "scope": form.get("scope")}),
            )
        }
        ["missing"] => status(404, "no such thing"),
        _ => status(404, "no such endpoint"),
    }
}

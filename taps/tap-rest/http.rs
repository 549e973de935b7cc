//! Sending requests: authentication (with OAuth2 tokens fetched and refreshed before they
//! expire), a token-bucket rate limit per host shared by every resource of the run, pauses the
//! provider asks for (`Retry-After`, `RateLimit-*`, `X-RateLimit-*`), and retries of 429, 5xx,
//! timeouts and dropped connections with capped, jittered exponential backoff.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use dsm::singer::plugin_kit::PluginError;
use rand::Rng;
use serde_json::Value;

use crate::config::{Auth, Client, RateLimit, Retry};

/// A wait computed from a server's answer or the bucket: never negative, and an absurd one
/// saturates instead of panicking (the caller caps waits at `client.retry.max_delay`).
fn wait_of(f: f64) -> Duration {
    Duration::try_from_secs_f64(f.max(0.0)).unwrap_or(Duration::MAX)
}

/// Largest response body read (a page bigger than this is an error, not an allocation).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// A request before authentication is added.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The URL without the parameters below (it may carry its own query, e.g. a next link).
    pub url: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub json: Option<Value>,
}

impl Request {
    /// Sets a query parameter, replacing one of the same name.
    pub fn set_query(&mut self, name: &str, value: String) {
        self.query.retain(|(k, _)| k != name);
        self.query.push((name.to_owned(), value));
    }

    /// The full URL with the query parameters.
    pub fn full_url(&self) -> String {
        let mut url = self.url.clone();
        for (i, (k, v)) in self.query.iter().enumerate() {
            let sep = if i == 0 && !self.url.contains('?') {
                '?'
            } else {
                '&'
            };
            url.push(sep);
            url.push_str(&encode(k));
            url.push('=');
            url.push_str(&encode(v));
        }
        url
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that was asked (without secrets), for messages and relative links.
    pub url: String,
}

impl Response {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The host part of a URL (`host:port`), the rate limit's key.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    host.rsplit_once('@').map_or(host, |(_, h)| h)
}

/// A token bucket with room for `burst` requests, refilled at `requests_per_second`, plus a
/// pause the provider asked for.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

/// The rate limits of every host of the run.
#[derive(Debug, Default)]
pub struct Limiter {
    limit: Option<RateLimit>,
    hosts: HashMap<String, Bucket>,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>) -> Self {
        Limiter {
            limit,
            hosts: HashMap::new(),
        }
    }

    fn bucket(&mut self, host: &str) -> &mut Bucket {
        let burst = self.limit.map_or(0.0, |l| l.burst);
        self.hosts.entry(host.to_owned()).or_insert_with(|| Bucket {
            tokens: burst,
            last: Instant::now(),
            paused_until: None,
        })
    }

    /// Waits until a request to `host` is allowed, then counts it. With a limit of `r`
    /// requests per second and a burst of `b`, any window of `w` seconds holds at most
    /// `b + r * w` requests.
    pub fn acquire(&mut self, host: &str) {
        let limit = self.limit;
        loop {
            let now = Instant::now();
            let bucket = self.bucket(host);
            if let Some(until) = bucket.paused_until {
                if now < until {
                    std::thread::sleep(until - now);
                    continue;
                }
                bucket.paused_until = None;
            }
            let Some(l) = limit else { return };
            let elapsed = now.duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * l.requests_per_second).min(l.burst);
            bucket.last = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return;
            }
            let wait = (1.0 - bucket.tokens) / l.requests_per_second;
            std::thread::sleep(wait_of(wait));
        }
    }

    /// How long a request to `host` would wait now.
    pub fn expected_wait(&mut self, host: &str) -> Duration {
        let limit = self.limit;
        let now = Instant::now();
        let bucket = self.bucket(host);
        let paused = bucket
            .paused_until
            .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
        let Some(l) = limit else { return paused };
        let tokens = (bucket.tokens
            + now.duration_since(bucket.last).as_secs_f64() * l.requests_per_second)
            .min(l.burst);
        let refill = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            wait_of((1.0 - tokens) / l.requests_per_second)
        };
        paused + refill
    }

    /// Pauses every request to `host` for `d` (the longest pause asked for wins).
    pub fn pause(&mut self, host: &str, d: Duration) {
        let until = Instant::now() + d;
        let bucket = self.bucket(host);
        if bucket.paused_until.is_none_or(|u| u < until) {
            bucket.paused_until = Some(until);
        }
    }
}

/// Seconds from a `Retry-After` value: a number of seconds or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| wait_of(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let when: SystemTime = when.with_timezone(&chrono::Utc).into();
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait the rate-limit headers ask for: when the remaining budget is 0, the reset (seconds
/// to wait; a value that looks like a Unix time is read as one).
pub fn budget_wait(resp: &Response) -> Option<Duration> {
    for prefix in ["ratelimit", "x-ratelimit"] {
        let remaining = resp
            .header(&format!("{prefix}-remaining"))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if remaining.is_some_and(|r| r <= 0.0) {
            let reset = resp
                .header(&format!("{prefix}-reset"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let secs = if reset > 1_000_000_000.0 {
                (reset - now).max(0.0)
            } else {
                reset.max(0.0)
            };
            return Some(wait_of(secs));
        }
    }
    None
}

struct Token {
    value: String,
    refresh_at: Instant,
}

/// Sends requests for the whole run.
pub struct Http {
    agent: ureq::Agent,
    limiter: Limiter,
    retry: Retry,
    auth: Option<Auth>,
    headers: Vec<(String, String)>,
    token: Option<Token>,
    /// Requests sent, retries included (for the log line at the end).
    pub requests: u64,
}

fn transport_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::HostNotFound
    )
}

fn load_roots(ca_bundle: Option<&str>) -> Result<ureq::tls::RootCerts, PluginError> {
    let Some(path) = ca_bundle else {
        return Ok(ureq::tls::RootCerts::PlatformVerifier);
    };
    let pem = std::fs::read(path).map_err(|e| {
        PluginError::config(format!("cannot read `client.ca_bundle` file `{path}`: {e}"))
    })?;
    let mut certs: Vec<ureq::tls::Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(PluginError::config(format!(
                    "`client.ca_bundle` file `{path}` is not a PEM bundle: {e}"
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(PluginError::config(format!(
            "`client.ca_bundle` file `{path}` holds no certificate"
        )));
    }
    // The bundle adds to the system's roots; it does not replace them.
    let system = rustls_native_certs::load_native_certs();
    for c in system.certs {
        certs.push(ureq::tls::Certificate::from_der(c.as_ref()).to_owned());
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// How long a host name's addresses are reused.
const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// ureq's resolver with its answers reused for [`RESOLVE_TTL`]: with a timeout set, ureq bounds
/// each lookup by starting a thread for it, and it looks the host up for every request, so a
/// paginated API cost a thread per page (a third of tap-rest's time on a loopback server).
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    cache: std::sync::Mutex<
        std::collections::HashMap<
            String,
            (Instant, ureq::unversioned::resolver::ResolvedSocketAddrs),
        >,
    >,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .filter(|(at, _)| at.elapsed() < RESOLVE_TTL)
            .map(|(_, addrs)| addrs.clone());
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

impl Http {
    pub fn new(client: &Client) -> Result<Http, PluginError> {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(load_roots(client.ca_bundle.as_deref())?)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(client.timeout))
            .tls_config(tls)
            .user_agent(concat!("dsm-tap-rest/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Http {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::new(),
                CachingResolver::default(),
            ),
            limiter: Limiter::new(client.rate_limit),
            retry: client.retry,
            auth: client.auth.clone(),
            headers: client.headers.clone(),
            token: None,
            requests: 0,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .retry
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.retry.max_delay);
        // Full jitter in the upper half: never much shorter, never in lockstep.
        let f: f64 = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(f)
    }

    /// A secret-free form of a URL for messages: the API key's query value is masked.
    pub fn display_url(&self, url: &str) -> String {
        match &self.auth {
            Some(Auth::ApiKey {
                name,
                in_query: true,
                ..
            }) => {
                let key = format!("{}=", encode(name));
                let mut out = String::new();
                for (i, part) in url.split(['?', '&']).enumerate() {
                    if i > 0 {
                        out.push(if i == 1 { '?' } else { '&' });
                    }
                    if i > 0 && part.starts_with(&key) {
                        out.push_str(&key);
                        out.push_str("********");
                    } else {
                        out.push_str(part);
                    }
                }
                out
            }
            _ => url.to_owned(),
        }
    }

    fn oauth_token(&mut self, force: bool, valid_for: Duration) -> Result<String, PluginError> {
        if !force
            && let Some(t) = &self.token
            && Instant::now() + valid_for < t.refresh_at
        {
            return Ok(t.value.clone());
        }
        let Some(Auth::OAuth2ClientCredentials {
            access_token_url,
            client_id,
            client_secret,
            request_data,
            default_token_expiration,
        }) = self.auth.clone()
        else {
            return Err(PluginError::config("no OAuth2 settings"));
        };
        let mut form: Vec<(String, String)> =
            vec![("grant_type".into(), "client_credentials".into())];
        for (k, v) in &request_data {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            form.retain(|(f, _)| f != k);
            form.push((k.clone(), v));
        }
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{client_id}:{client_secret}"));
        let req = Request {
            method: "POST".into(),
            url: access_token_url.clone(),
            query: Vec::new(),
            headers: vec![
                ("Authorization".into(), format!("Basic {basic}")),
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            json: None,
        };
        let resp = self.send_raw(
            &req,
            Some(body.into_bytes()),
            "the OAuth2 token request",
            false,
        )?;
        if !(200..300).contains(&resp.status) {
            return Err(PluginError::data_hint(
                format!(
                    "the OAuth2 token request to `{access_token_url}` answered {}",
                    resp.status
                ),
                "check `client.auth.client_id` and `client.auth.client_secret`",
            ));
        }
        let doc: Value = serde_json::from_slice(&resp.body).map_err(|_| {
            PluginError::data(format!(
                "the OAuth2 token response of `{access_token_url}` is not JSON"
            ))
        })?;
        let value = doc
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PluginError::data(format!(
                    "the OAuth2 token response of `{access_token_url}` has no `access_token`"
                ))
            })?
            .to_owned();
        let lifetime = doc
            .get("expires_in")
            .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
            .filter(|f| f.is_finite() && *f > 0.0)
            .map_or(default_token_expiration, wait_of);
        // Refresh ahead of expiry: a tenth of the lifetime, at most a minute, early.
        let margin = (lifetime / 10).min(Duration::from_secs(60));
        self.token = Some(Token {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(value)
    }

    fn authorize(
        &mut self,
        req: &mut Request,
        force_refresh: bool,
        valid_for: Duration,
    ) -> Result<(), PluginError> {
        match self.auth.clone() {
            None => {}
            Some(Auth::Bearer { token }) => {
                req.headers
                    .push(("Authorization".into(), format!("Bearer {token}")));
            }
            Some(Auth::ApiKey {
                name,
                api_key,
                in_query,
            }) => {
                if in_query {
                    req.set_query(&name, api_key);
                } else {
                    req.headers.push((name, api_key));
                }
            }
            Some(Auth::HttpBasic { username, password }) => {
                let b = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                req.headers
                    .push(("Authorization".into(), format!("Basic {b}")));
            }
            Some(Auth::OAuth2ClientCredentials { .. }) => {
                let token = self.oauth_token(force_refresh, valid_for)?;
                req.headers
                    .push(("Authorization".into(), format!("Bearer {token}")));
            }
        }
        Ok(())
    }

    /// Sends `req` with authentication, the rate limit and retries. `what` names the request
    /// in messages (`page 3 of resource `users``).
    pub fn send(&mut self, req: &Request, what: &str) -> Result<Response, PluginError> {
        let mut base = req.clone();
        for (k, v) in self.headers.clone() {
            if !base.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(&k)) {
                base.headers.push((k, v));
            }
        }
        let body = base
            .json
            .as_ref()
            .map(|j| serde_json::to_vec(j).expect("a JSON value always serialises"));
        if body.is_some() {
            base.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        self.send_raw(&base, body, what, true)
    }

    fn send_raw(
        &mut self,
        base: &Request,
        body: Option<Vec<u8>>,
        what: &str,
        authorize: bool,
    ) -> Result<Response, PluginError> {
        let host = host_of(&base.url).to_owned();
        let oauth = matches!(self.auth, Some(Auth::OAuth2ClientCredentials { .. }));
        let mut attempt = 0;
        let mut refreshed_after_401 = false;
        let mut force_refresh = false;
        loop {
            attempt += 1;
            let mut req = base.clone();
            if authorize {
                // The token must still be good when the rate limit lets the request go.
                let wait = self.limiter.expected_wait(&host);
                self.authorize(&mut req, force_refresh, wait)?;
                force_refresh = false;
            }
            let url = req.full_url();
            let shown = self.display_url(&url);
            self.limiter.acquire(&host);
            self.requests += 1;
            let mut builder = ureq::http::Request::builder()
                .method(req.method.as_str())
                .uri(url.as_str());
            for (k, v) in &req.headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            let build_error = |e: ureq::http::Error| {
                PluginError::config(format!("{what}: cannot build a request for `{shown}`: {e}"))
            };
            // A request without a body gets none at all (ureq refuses an empty one on a GET).
            let sent = match &body {
                Some(b) => self
                    .agent
                    .run(builder.body(b.clone()).map_err(build_error)?),
                None => self.agent.run(builder.body(()).map_err(build_error)?),
            };
            let last = attempt >= self.retry.max_attempts;
            let outcome = sent.and_then(|resp| {
                let status = resp.status().as_u16();
                let headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect();
                let body = resp
                    .into_body()
                    .with_config()
                    .limit(MAX_BODY)
                    .read_to_vec()?;
                Ok(Response {
                    status,
                    headers,
                    body,
                    url: shown.clone(),
                })
            });
            match outcome {
                Ok(resp) => {
                    let asked = resp
                        .header("retry-after")
                        .and_then(retry_after)
                        .or_else(|| budget_wait(&resp));
                    if let Some(wait) = asked {
                        if wait > self.retry.max_delay {
                            return Err(PluginError::data_hint(
                                format!(
                                    "{what}: `{shown}` asks to wait {:.0} s before the next request, more than `client.retry.max_delay` ({:.0} s)",
                                    wait.as_secs_f64(),
                                    self.retry.max_delay.as_secs_f64()
                                ),
                                "run later, or raise `client.retry.max_delay`",
                            ));
                        }
                        self.limiter.pause(&host, wait);
                    }
                    if resp.status == 401 && authorize && oauth && !refreshed_after_401 {
                        // The token may have been revoked or expired early: a new one, once.
                        refreshed_after_401 = true;
                        force_refresh = true;
                        attempt -= 1;
                        continue;
                    }
                    let retryable = resp.status == 429 || resp.status >= 500;
                    if !retryable || last {
                        return Ok(resp);
                    }
                    if asked.is_none() {
                        let d = self.backoff(attempt);
                        self.limiter.pause(&host, d);
                    }
                    tracing_line(&format!(
                        "{what}: `{shown}` answered {}; retrying (attempt {} of {})",
                        resp.status,
                        attempt + 1,
                        self.retry.max_attempts
                    ));
                }
                Err(e) if transport_error(&e) && !last => {
                    let d = self.backoff(attempt);
                    self.limiter.pause(&host, d);
                    tracing_line(&format!(
                        "{what}: `{shown}` failed ({e}); retrying (attempt {} of {})",
                        attempt + 1,
                        self.retry.max_attempts
                    ));
                }
                Err(e) => {
                    let tries = if attempt > 1 {
                        format!(" after {attempt} attempts")
                    } else {
                        String::new()
                    };
                    return Err(PluginError::data_hint(
                        format!("{what}: `{} {shown}` failed{tries}: {e}", req.method),
                        if transport_error(&e) {
                            "check that the API is reachable (HTTPS_PROXY / NO_PROXY are honoured); `client.retry.max_attempts` sets how often to try"
                        } else {
                            "check `client.base_url`, the endpoint's `path` and `client.ca_bundle`"
                        },
                    ));
                }
            }
        }
    }
}

/// A line on stderr for the operator (Meltano and dsm show a plugin's stderr in their logs).
pub fn tracing_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "tap-rest: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_never_exceeds_burst_plus_rate() {
        let mut l = Limiter::new(Some(RateLimit {
            requests_per_second: 200.0,
            burst: 3.0,
        }));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..30 {
            l.acquire("h");
            times.push(start.elapsed().as_secs_f64());
        }
        for i in 0..times.len() {
            for j in i..times.len() {
                let w = times[j] - times[i];
                assert!(
                    (j - i + 1) as f64 <= 3.0 + 200.0 * w + 1e-6,
                    "{} requests in {w} s",
                    j - i + 1
                );
            }
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn urls_are_encoded_and_hosts_found() {
        let r = Request {
            method: "GET".into(),
            url: "http://u:p@h:8080/a?x=1".into(),
            query: vec![("q".into(), "a b&c".into())],
            headers: vec![],
            json: None,
        };
        assert_eq!(r.full_url(), "http://u:p@h:8080/a?x=1&q=a%20b%26c");
        assert_eq!(host_of(&r.full_url()), "h:8080");
    }
}

//! Webhooks in: events pushed to `dsm serve` for a source of type `webhook`, and how a run
//! delivers them.
//!
//! A sender signs each request: `X-DSM-Signature: sha256=<hex of HMAC-SHA256(secret,
//! "<timestamp>.<body>")>` with `X-DSM-Timestamp: <unix seconds>` (see [`verify`]), where the
//! secret is the source's sensitive setting `secret`. The server stores the event in the system
//! store ([`crate::store::WebhookStore`]) before it answers 202.
//!
//! A run of the source writes the pending events to a private file in the run's folder
//! ([`write_pending`]) and gives its path to the tap as the config key `events_file`; the tap
//! (`tap-webhook`) sends them as records of the stream [`STREAM`] and after them a STATE whose
//! bookmark is the last delivery number it sent (replication key `seq`). When the loader
//! confirms that STATE, the run marks the events up to it consumed ([`consume_confirmed`]). So:
//! - events received while a run is in flight get higher numbers and wait for the next run;
//! - a run that fails before the loader confirmed a STATE leaves its events pending;
//! - a confirmed STATE whose events could not be marked (dsm killed in between) is caught up
//!   at the start of the next run from the stored bookmark ([`catch_up`]), and the tap skips
//!   anything at or below its bookmark, so nothing is sent twice once consumed;
//! - `dsm webhooks replay` gives consumed events new, higher numbers, so the next run sends
//!   them past the bookmark.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::project::Plugin;
use crate::project::annotations::WebhookOptions;
use crate::store::{Store, WebhookEvent, WebhookLimits};

/// The stream `tap-webhook` sends events in.
pub const STREAM: &str = "events";
/// The stream's replication key: the delivery number. The bookmark (Singer's usual
/// `bookmarks.events.replication_key_value`) is the last one sent.
pub const BOOKMARK_KEY: &str = "seq";
/// The config key the run sets to the events file's path.
pub const EVENTS_FILE_KEY: &str = "events_file";
/// The setting holding the signing secret.
pub const SECRET_SETTING: &str = "secret";
/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "x-dsm-signature";
/// The header with the time of signing (unix seconds).
pub const TIMESTAMP_HEADER: &str = "x-dsm-timestamp";
/// The header with the sender's event id (duplicates are stored once).
pub const EVENT_ID_HEADER: &str = "x-dsm-event-id";
/// How far the signing time may be from the server's clock, either way.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// The longest event id accepted.
pub const MAX_EVENT_ID: usize = 200;
/// How long consumed events are kept without `annotations.dsm.webhooks.retention`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// The most events a source keeps without `max_events`.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000;
/// The most payload bytes a source keeps without `max_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Events read from the store at a time when writing the events file.
const PAGE: usize = 500;

/// Why a signed request was refused (all are 401s, worded for the sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A header is missing or malformed.
    Header(&'static str),
    /// The timestamp is more than [`MAX_SKEW`] in the past.
    Stale,
    /// The timestamp is more than [`MAX_SKEW`] in the future.
    Future,
    /// The signature does not match.
    Signature,
}

impl Refusal {
    /// What the sender is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Header(h) => format!("the `{h}` header is missing or malformed"),
            Refusal::Stale => "the timestamp is too old".into(),
            Refusal::Future => "the timestamp is in the future".into(),
            Refusal::Signature => "the signature does not match".into(),
        }
    }
}

/// The signature header's value for `body` signed at `timestamp` (unix seconds) with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("sha256={}", hex::encode(digest))
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a request's timestamp and signature headers against `secret` at `now` (unix
/// seconds). The signature is compared in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> std::result::Result<(), Refusal> {
    let ts: i64 = timestamp
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or(Refusal::Header("X-DSM-Timestamp"))?;
    let given = signature
        .map(str::trim)
        .and_then(|s| s.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or(Refusal::Header("X-DSM-Signature"))?;
    let skew = MAX_SKEW.as_secs() as i64;
    if ts < now - skew {
        return Err(Refusal::Stale);
    }
    if ts > now + skew {
        return Err(Refusal::Future);
    }
    // `verify_slice` compares in constant time (the `subtle` crate underneath).
    mac(secret, ts, body)
        .verify_slice(&given)
        .map_err(|_| Refusal::Signature)
}

/// Whether an `X-DSM-Event-Id` is acceptable: 1 to [`MAX_EVENT_ID`] visible ASCII characters.
pub fn valid_event_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_EVENT_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A source's retention and bounds, from its `annotations.dsm.webhooks` and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long consumed events are kept.
    pub keep_consumed: Duration,
    /// The bounds on what is kept.
    pub limits: WebhookLimits,
}

impl Retention {
    /// Reads a plugin's options; a retention that is not a duration is an error naming it.
    pub fn of(plugin: &Plugin) -> Result<Retention> {
        let opts: WebhookOptions = plugin.annotations.webhooks.clone().unwrap_or_default();
        let keep_consumed = match &opts.retention {
            None => DEFAULT_RETENTION,
            Some(crate::project::annotations::Duration::Seconds(s)) => {
                crate::duration::seconds(*s).map_err(|e| retention_error(plugin, e))?
            }
            Some(crate::project::annotations::Duration::Text(t)) => {
                crate::duration::parse(t).map_err(|e| retention_error(plugin, e))?
            }
        };
        Ok(Retention {
            keep_consumed,
            limits: WebhookLimits {
                max_events: opts.max_events.unwrap_or(DEFAULT_MAX_EVENTS).max(1),
                max_bytes: opts.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).max(1),
            },
        })
    }
}

fn retention_error(plugin: &Plugin, e: crate::duration::DurationError) -> Error {
    Error::config(format!(
        "`annotations.dsm.webhooks.retention` of extractor `{}`: {e}",
        plugin.name
    ))
    .hint(crate::duration::DurationError::hint())
}

/// The line of the events file for one event (the format `tap-webhook` reads).
pub fn event_line(event: &WebhookEvent) -> Result<String> {
    let payload = event.payload.as_deref().unwrap_or("null");
    let raw: &serde_json::value::RawValue = serde_json::from_str(payload).map_err(|e| {
        Error::failed(format!(
            "webhook event {} of `{}` in the system store is not JSON: {e}",
            event.id, event.source
        ))
    })?;
    let line = serde_json::json!({
        "id": event.id,
        "seq": event.seq,
        "event_id": event.event_id,
        "received_at": crate::store::format_time(event.received_at),
        "payload": raw,
    });
    Ok(line.to_string())
}

/// Writes the source's pending events to a private file `<dir>/<source>.webhook-events.jsonl`,
/// a page at a time; returns its path and how many events it holds.
pub fn write_pending(store: &dyn Store, source: &str, dir: &Path) -> Result<(PathBuf, u64)> {
    let path = dir.join(format!("{source}.webhook-events.jsonl"));
    crate::files::write_private(&path, b"")?;
    let file = std::fs::OpenOptions::new().append(true).open(&path)?;
    let mut out = std::io::BufWriter::new(file);
    let (mut after, mut count) = (i64::MIN, 0u64);
    loop {
        let page = store.pending_webhooks(source, after, PAGE)?;
        for event in &page {
            out.write_all(event_line(event)?.as_bytes())?;
            out.write_all(b"\n")?;
            after = event.seq;
            count += 1;
        }
        if page.len() < PAGE {
            break;
        }
    }
    out.flush()?;
    Ok((path, count))
}

/// The delivery number a STATE confirms (the `events` stream's bookmark), if it carries one.
pub fn confirmed_seq(state: &Value) -> Option<i64> {
    crate::singer::plugin_kit::bookmark(state, STREAM, BOOKMARK_KEY)?.as_i64()
}

/// After the loader confirmed `state`: marks the source's events up to its bookmark consumed.
pub fn consume_confirmed(store: &dyn Store, source: &str, state: &Value) -> Result<u64> {
    match confirmed_seq(state) {
        Some(seq) => store.consume_webhooks(source, seq, Utc::now()),
        None => Ok(0),
    }
}

/// At the start of a run: events at or below the stored bookmark were confirmed by an earlier
/// run that stopped before marking them; marks them now. Then deletes consumed events past
/// their retention.
pub fn catch_up(
    store: &dyn Store,
    source: &str,
    bookmark: Option<&Value>,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(state) = bookmark {
        consume_confirmed(store, source, state)?;
    }
    if let Some(before) = crate::duration::before(now, retention.keep_consumed) {
        store.prune_webhooks(source, before)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_once_and_only_with_its_secret_body_and_time() {
        let body = br#"{"a":1}"#;
        let sig = sign(b"s3cret", 1_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), body, 1_100),
            Ok(())
        );
        assert_eq!(
            verify(b"other", Some("1000"), Some(&sig), body, 1_100),
            Err(Refusal::Signature)
        );
        assert_eq!(
            verify(b"s3cret", Some("1001"), Some(&sig), body, 1_100),
            Err(Refusal::Signature)
        );
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), br#"{"a":2}"#, 1_100),
            Err(Refusal::Signature)
        );
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), body, 1_301),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), body, 699),
            Err(Refusal::Future)
        );
        assert_eq!(
            verify(b"s3cret", None, Some(&sig), body, 1_000),
            Err(Refusal::Header("X-DSM-Timestamp"))
        );
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some("sha256=zz"), body, 1_000),
            Err(Refusal::Header("X-DSM-Signature"))
        );
        assert_eq!(
            verify(b"s3cret", Some("-5"), Some(&sig), body, 1_000),
            Err(Refusal::Header("X-DSM-Timestamp"))
        );
    }

    #[test]
    fn event_ids_are_short_visible_ascii() {
        assert!(valid_event_id("evt_123"));
        assert!(!valid_event_id(""));
        assert!(!valid_event_id("a b"));
        assert!(!valid_event_id(&"x".repeat(MAX_EVENT_ID + 1)));
    }

    #[test]
    fn the_confirmed_number_is_read_from_the_events_bookmark() {
        let state = serde_json::json!({"bookmarks": {"events": {"replication_key": "seq", "replication_key_value": 41}}});
        assert_eq!(confirmed_seq(&state), Some(41));
        let other = serde_json::json!({"bookmarks": {"events": {"replication_key": "id", "replication_key_value": 41}}});
        assert_eq!(confirmed_seq(&other), None);
        assert_eq!(confirmed_seq(&serde_json::json!({"bookmarks": {}})), None);
    }
}

//! One delivery to one receiver: its attempts, the waits between them, and the record of each.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use zeroize::Zeroizing;

use super::{
    ATTEMPT_TIMEOUT, ATTEMPTS, Event, FIRST_BACKOFF, Receiver, SECRET_NAMESPACE, Target, record,
};
use crate::store::{DeliveryAttempt, DeliveryOutcome, Store};

/// The variables a command receiver gets from dsm's environment (nothing else).
const COMMAND_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// What deliveries read besides the receiver: the project folder, its `.env`, the store.
#[derive(Clone)]
pub(super) struct Context {
    /// The project root (a command's working folder).
    pub root: PathBuf,
    /// The project's `.env` (secrets may be in it: never printed).
    pub dotenv: Vec<(String, String)>,
    /// The system store (secrets, the delivery log).
    pub store: Arc<dyn Store>,
}

/// `scheme://host[:port]` of a URL: no credentials, path, query or fragment (a chat's webhook
/// URL carries its secret in the path).
pub(super) fn url_label(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if scheme.is_empty() {
        host.to_owned()
    } else {
        format!("{scheme}://{host}")
    }
}

/// The webhook secret named `name`: the secret store's `notifications` entry, else the
/// environment, else `.env`.
fn resolve_secret(ctx: &Context, name: &str) -> std::result::Result<Zeroizing<String>, String> {
    use crate::secrets::master_key::KeyLookup;
    let lookup = KeyLookup {
        keyring: None,
        ..KeyLookup::from_env()
    };
    if let Ok((key, _)) = crate::secrets::store::find_key_with(ctx.store.as_ref(), lookup) {
        match crate::secrets::store::get_secret(ctx.store.as_ref(), &key, SECRET_NAMESPACE, name) {
            Ok(Some(secret)) => return Ok(Zeroizing::new(secret.expose().to_owned())),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(error = %error, "the secret store has no notification secret");
            }
        }
    }
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Ok(Zeroizing::new(value));
    }
    if let Some((_, value)) = ctx.dotenv.iter().find(|(k, v)| k == name && !v.is_empty()) {
        return Ok(Zeroizing::new(value.clone()));
    }
    Err(format!(
        "the signing secret `${name}` is not set: `dsm secrets set {SECRET_NAMESPACE} {name}`, or set the variable"
    ))
}

/// Delivers `event` to `receiver`, up to [`ATTEMPTS`] times, recording each attempt.
pub(super) fn deliver(ctx: &Context, receiver: &Receiver, event: &Event) {
    let delivery_id = uuid::Uuid::now_v7().to_string();
    let label = receiver.label();
    let body = event.document(&delivery_id).to_string().into_bytes();
    let attempt_record = |attempt: u32, outcome: DeliveryOutcome, detail: Option<String>| {
        record(
            ctx.store.as_ref(),
            &DeliveryAttempt {
                delivery_id: delivery_id.clone(),
                event: event.kind.as_str().to_owned(),
                source: event.source.clone(),
                receiver: label.clone(),
                attempt,
                at: Utc::now(),
                outcome,
                detail,
            },
        );
    };
    let secret = match &receiver.target {
        Target::Webhook { secret, .. } => match resolve_secret(ctx, secret) {
            Ok(value) => Some(value),
            Err(why) => {
                tracing::warn!(receiver = %label, event = event.kind.as_str(), "{why}");
                attempt_record(1, DeliveryOutcome::Failed, Some(why));
                return;
            }
        },
        Target::Command(_) => None,
    };
    let mut wait = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let result = match &receiver.target {
            Target::Webhook { url, .. } => post(
                url,
                secret.as_deref().map_or("", |s| s.as_str()),
                &body,
                event,
                &delivery_id,
            ),
            Target::Command(argv) => run_command(&ctx.root, argv, &body, event),
        };
        match result {
            Ok(()) => {
                attempt_record(attempt, DeliveryOutcome::Delivered, None);
                return;
            }
            Err(why) if attempt == ATTEMPTS => {
                tracing::warn!(receiver = %label, event = event.kind.as_str(), attempts = attempt, error = %why, "a notification could not be delivered");
                attempt_record(attempt, DeliveryOutcome::Failed, Some(why));
                return;
            }
            Err(why) => {
                tracing::debug!(receiver = %label, attempt, error = %why, "a notification attempt failed; trying again");
                attempt_record(attempt, DeliveryOutcome::Retrying, Some(why));
            }
        }
        std::thread::sleep(wait);
        wait = wait.saturating_mul(2);
    }
}

/// One signed POST; `Ok` on a 2xx answer.
fn post(
    url: &str,
    secret: &str,
    body: &[u8],
    event: &Event,
    delivery_id: &str,
) -> std::result::Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        // A redirect would send the signed event somewhere the project did not name.
        .max_redirects(0)
        .user_agent(concat!("dsm/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let timestamp = Utc::now().timestamp();
    let signature = crate::webhooks::sign(secret.as_bytes(), timestamp, body);
    let answer = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-DSM-Timestamp", timestamp.to_string())
        .header("X-DSM-Signature", signature)
        .header("X-DSM-Event", event.kind.as_str())
        .header("X-DSM-Delivery", delivery_id)
        .send(body)
        .map_err(|e| e.to_string().replace(url, &url_label(url)))?;
    let status = answer.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// Runs a command receiver with the event on stdin; `Ok` when it exits 0 in time.
fn run_command(
    root: &Path,
    argv: &[String],
    body: &[u8],
    event: &Event,
) -> std::result::Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let path = Path::new(program);
    let path = if path.is_relative() && program.contains('/') {
        root.join(path)
    } else {
        path.to_path_buf()
    };
    let mut cmd = Command::new(path);
    cmd.args(args).current_dir(root).env_clear();
    for var in COMMAND_ENV {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("DSM_EVENT", event.kind.as_str());
    crate::plugin::withhold_access(&mut cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{program}`: {e}"))?;
    // Written on a thread: a program that does not read stdin must not stall the delivery.
    let stdin = child.stdin.take();
    let input = body.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= ATTEMPT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                return Err(format!(
                    "`{program}` did not exit within {} s and was stopped",
                    ATTEMPT_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => return Err(format!("could not wait for `{program}`: {e}")),
        }
    };
    let _ = writer.join();
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program}` exited with {status}"))
    }
}

//! Issue 20: property tests of the HTTP API's untrusted input, against a real `dsm serve` on
//! loopback. Random and mutated request bodies for `POST /api/sources` and `POST
//! /api/requests`, and random payloads and signature headers for `POST /api/webhooks/SOURCE`,
//! go through the handlers' own parsing. Every answer must be a success or a problem document
//! with a 4xx status: never a 500, never a dropped connection, and the server keeps serving.
//! Fixed case counts keep the run short in CI.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use super::webhooks::{HOOK_SECRET, webhook_project};
use super::*;

/// Field names the bodies have, so random documents reach past the first missing field.
const FIELDS: &[&str] = &[
    "name",
    "template",
    "plugin",
    "plugin_type",
    "config",
    "secrets",
    "source",
    "classification",
    "description",
    "notes",
    "namespace",
    "executable",
    "settings",
    "pip_url",
    "files",
    "kind",
];

/// Any JSON value, a few levels deep, with keys mostly taken from [`FIELDS`].
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "tap-csv",
            "tap-webhook",
            "target-jsonl",
            "extractor",
            "loader",
            "public",
            "../../etc/passwd",
            "a/b",
            "",
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
            "\\PC{0,12}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A valid source, then one of its fields replaced by any value (or removed).
fn mutated_source() -> impl Strategy<Value = Value> {
    let base = json!({
        "name": "prop-source",
        "template": "tap-csv",
        "config": {"files": [{"entity": "people", "path": "people.csv", "keys": ["id"]}]},
        "classification": "public",
        "description": "d",
    });
    (
        prop::sample::select(FIELDS.to_vec()),
        prop::option::of(json_value()),
    )
        .prop_map(move |(field, value)| {
            let mut doc = base.clone();
            match value {
                Some(v) => doc[field] = v,
                None => {
                    doc.as_object_mut().unwrap().remove(field);
                }
            }
            doc
        })
}

/// A request body: random bytes, random JSON, or a valid body with one field changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        mutated_source().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

/// Asserts that an answer is a success or a 4xx problem document.
fn handled(what: &str, body: &[u8], answer: &Answer) {
    assert!(
        (200..500).contains(&answer.status),
        "{what} answered {} to {:?}:\n{}",
        answer.status,
        String::from_utf8_lossy(body),
        answer.body
    );
    if answer.status >= 400 {
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json"),
            "{what}: {}",
            answer.body
        );
        assert_eq!(answer.json()["status"], answer.status, "{what}");
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn issue_20_api_request_bodies_never_crash_the_server() {
    let p = Project::new("version: 1\nproject_id: props\n").with_master_key();
    p.write("people.csv", "id,name\n1,ada\n");
    let admin = p.token("admin", "admin");
    let (code, requester, err) = p.dsm(&[
        "tokens",
        "create",
        "rita",
        "--role",
        "requester",
        "--organisation",
        "acme",
    ]);
    assert_eq!(code, 0, "{err}");
    let requester = requester.trim().to_owned();
    let server = p.serve(&[]);
    let post = |path: &str, token: &str, body: &[u8]| {
        let auth = format!("Bearer {token}");
        server.call(
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        )
    };
    let statuses = std::cell::RefCell::new(std::collections::BTreeSet::new());
    runner(96)
        .run(&body(), |body| {
            let sources = post("/api/sources", &admin, &body);
            handled("POST /api/sources", &body, &sources);
            let requests = post("/api/requests", &requester, &body);
            handled("POST /api/requests", &body, &requests);
            statuses.borrow_mut().insert(sources.status);
            statuses.borrow_mut().insert(requests.status);
            Ok(())
        })
        .unwrap();
    // The bodies reached the handlers' checks, not only the JSON parser.
    let statuses = statuses.into_inner();
    assert!(
        statuses.contains(&422) && statuses.contains(&400),
        "{statuses:?}"
    );
    assert_eq!(server.call("GET", "/healthz", &[], None).status, 200);
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn issue_20_webhook_payloads_and_signatures_never_crash_the_server() {
    let p = webhook_project();
    let server = p.serve(&[]);
    let now = || chrono::Utc::now().timestamp();
    let header = prop_oneof![
        Just(None),
        // (Header values a client can send: visible ASCII and spaces.)
        "[ -~]{0,80}".prop_map(Some),
        "[0-9a-f]{64}".prop_map(|h| Some(format!("sha256={h}"))),
    ];
    let case = (
        body(),
        header.clone(),
        prop::option::of(-400i64..400),
        any::<bool>(),
        prop::option::of("[!-~]{0,300}"),
    );
    // A quarter of the cases are a JSON object signed now: left to chance, a run of 96 could
    // hold no acceptable event at all (about one run in twenty did).
    let well_signed =
        prop::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..5).prop_map(|fields| {
            let body = serde_json::to_vec(&fields).unwrap();
            (body, None, Some(0i64), true, None)
        });
    let cases = prop_oneof![3 => case, 1 => well_signed];
    let accepted = std::cell::Cell::new(0u32);
    runner(96)
        .run(&cases, |(body, signature, skew, sign, event_id)| {
            let ts = skew.map(|s| (now() + s).to_string());
            // Half the cases are signed for real: then the timestamp and event id decide.
            let sig = match (sign, &ts) {
                (true, Some(t)) => Some(dsm::webhooks::sign(
                    HOOK_SECRET.as_bytes(),
                    t.parse().unwrap(),
                    &body,
                )),
                _ => signature,
            };
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(t) = &ts {
                headers.push(("X-DSM-Timestamp", t));
            }
            if let Some(s) = &sig {
                headers.push(("X-DSM-Signature", s));
            }
            if let Some(id) = &event_id {
                headers.push(("X-DSM-Event-Id", id));
            }
            let answer = server.call("POST", "/api/webhooks/tap-webhook", &headers, Some(&body));
            handled("POST /api/webhooks/tap-webhook", &body, &answer);
            if answer.status == 202 {
                accepted.set(accepted.get() + 1);
                // Only a real signature is ever accepted.
                assert!(sign, "accepted without the right signature: {headers:?}");
            }
            Ok(())
        })
        .unwrap();
    assert!(accepted.get() > 0, "no case was a well-signed JSON event");
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

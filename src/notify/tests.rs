use super::*;
use crate::project::annotations::WebhookReceiver;

fn webhook(url: &str, secret: &str) -> NotificationDecl {
    NotificationDecl {
        events: vec!["source_error".into()],
        webhook: Some(WebhookReceiver {
            url: url.into(),
            secret: secret.into(),
        }),
        command: None,
    }
}

#[test]
fn a_webhook_secret_is_a_reference_never_a_value() {
    let r = receiver(0, &webhook("https://h.example/x", "$HOOK_SECRET")).unwrap();
    assert_eq!(
        r.target,
        Target::Webhook {
            url: "https://h.example/x".into(),
            secret: "HOOK_SECRET".into()
        }
    );
    let r = receiver(2, &webhook("https://h.example/x", "${HOOK_SECRET}")).unwrap();
    assert!(matches!(r.target, Target::Webhook { ref secret, .. } if secret == "HOOK_SECRET"));
    for literal in ["s3cret", "$", "${A", "$1X", "$A-B"] {
        let why = receiver(0, &webhook("https://h.example/x", literal)).unwrap_err();
        assert!(why.contains("reference"), "{literal}: {why}");
        assert!(!why.contains(literal) || literal == "$", "{why}");
    }
    let why = receiver(0, &webhook("ftp://h.example/x", "$S")).unwrap_err();
    assert!(why.contains("http"), "{why}");
}

#[test]
fn events_and_targets_are_checked_with_a_suggestion() {
    let mut decl = webhook("https://h.example/x", "$S");
    decl.events = vec!["source_eror".into()];
    assert!(
        receiver(0, &decl)
            .unwrap_err()
            .contains("did you mean `source_error`")
    );
    decl.events.clear();
    assert!(receiver(0, &decl).unwrap_err().contains("empty"));
    let both = NotificationDecl {
        command: Some(vec!["x".into()]),
        ..webhook("https://h.example/x", "$S")
    };
    assert!(receiver(0, &both).unwrap_err().contains("either"));
    let empty = NotificationDecl {
        events: vec!["source_error".into()],
        webhook: None,
        command: Some(vec![]),
    };
    assert!(receiver(0, &empty).unwrap_err().contains("empty"));
}

#[test]
fn a_receiver_is_named_without_the_urls_secrets() {
    let r = receiver(
        1,
        &webhook(
            "https://user:pw@hooks.example:8443/services/T0/B0/XYZ?token=t#f",
            "$S",
        ),
    )
    .unwrap();
    assert_eq!(
        r.label(),
        "notifications[1] webhook https://hooks.example:8443"
    );
}

#[test]
fn the_document_has_the_text_the_event_and_its_fields() {
    let e = Event::request_rejected("r-1", "tap-x", "alice", "no owner");
    let doc = e.document("d-1");
    assert_eq!(doc["event"], "request_rejected");
    assert_eq!(doc["delivery_id"], "d-1");
    assert_eq!(doc["source"], "tap-x");
    assert_eq!(doc["reason"], "no owner");
    assert_eq!(doc["by"], "alice");
    assert!(doc["text"].as_str().unwrap().contains("no owner"));
    let e = Event::first_sync_finished("tap-x", "run-1", 42);
    assert_eq!(e.document("d")["records"], 42);
}

#[test]
fn failed_deliveries_count_only_deliveries_whose_last_attempt_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::open_path(&dir.path().join("dsm.db")).unwrap();
    let now = Utc::now();
    let attempt = |id: &str, receiver: &str, n: u32, outcome, secs: i64| DeliveryAttempt {
        delivery_id: id.into(),
        event: "source_error".into(),
        source: Some("tap-x".into()),
        receiver: receiver.into(),
        attempt: n,
        at: now - chrono::TimeDelta::try_seconds(secs).unwrap(),
        outcome,
        detail: (outcome != DeliveryOutcome::Delivered).then(|| "HTTP 500".into()),
    };
    for a in [
        attempt("a", "hook", 1, DeliveryOutcome::Retrying, 50),
        attempt("a", "hook", 2, DeliveryOutcome::Delivered, 49),
        attempt("b", "hook", 1, DeliveryOutcome::Retrying, 40),
        attempt("b", "hook", 5, DeliveryOutcome::Failed, 30),
        attempt("c", "cmd", 1, DeliveryOutcome::Delivered, 20),
    ] {
        store.record_delivery(&a, RETENTION).unwrap();
    }
    let failed = failed_deliveries(
        store.as_ref(),
        now - chrono::TimeDelta::try_hours(1).unwrap(),
    )
    .unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].receiver, "hook");
    assert_eq!((failed[0].deliveries, failed[0].failed), (2, 1));
    assert_eq!(
        failed[0].last_error.as_deref(),
        Some("source_error after 5 attempts: HTTP 500")
    );
    let line = failed[0].health();
    assert_eq!(line.subject.kind(), "notification");
    assert_eq!(line.failures, 1);

    // Retention: the oldest beyond the count go.
    let tight = DeliveryRetention {
        max_age: RETENTION.max_age,
        max_attempts: 2,
    };
    store
        .record_delivery(
            &attempt("d", "hook", 1, DeliveryOutcome::Delivered, 1),
            tight,
        )
        .unwrap();
    let kept = store
        .deliveries_since(now - chrono::TimeDelta::try_hours(1).unwrap())
        .unwrap();
    assert_eq!(
        kept.iter()
            .map(|a| a.delivery_id.as_str())
            .collect::<Vec<_>>(),
        ["c", "d"]
    );
    // And by age.
    let old = attempt("e", "hook", 1, DeliveryOutcome::Failed, 40 * 86_400);
    store.record_delivery(&old, RETENTION).unwrap();
    let young = attempt("f", "hook", 1, DeliveryOutcome::Failed, 0);
    store.record_delivery(&young, RETENTION).unwrap();
    let all = store.deliveries_since(DateTime::<Utc>::MIN_UTC).unwrap();
    assert!(all.iter().all(|a| a.delivery_id != "e"), "{all:?}");
}

//! The contract of per-environment secrets, run on every backend (listed in `contract.rs`):
//! a value stored for an environment wins there, the project's value applies elsewhere, and
//! each scope is changed, audited, rotated and removed on its own.

use dsm::secrets::MasterKey;
use dsm::secrets::store::{
    applicable_scope, get_secret_in, read_for_run, rotate, set_secret_in, unset_in,
};
use dsm::secrets::{Secret, list};

use crate::contract::Backend;

fn read(
    store: &dyn dsm::store::Store,
    key: &MasterKey,
    environment: Option<&str>,
) -> Option<String> {
    read_for_run(store, key, "tap-a", "password", environment, "dsm run")
        .unwrap()
        .map(|s| s.expose().to_owned())
}

pub fn secrets_are_kept_per_environment(b: &dyn Backend) {
    let (_guard, store) = b.open();
    let store = store.as_ref();
    let key = MasterKey::generate();
    let set = |scope: Option<&str>, value: &str| {
        set_secret_in(
            store,
            &key,
            "tap-a",
            "password",
            scope,
            &Secret::new(value.to_owned()),
            "dsm config set",
        )
        .unwrap();
    };
    set(None, "project-value");
    set(Some("prod"), "prod-value");

    // A run in prod gets prod's value; any other environment, or none, the project's.
    assert_eq!(
        read(store, &key, Some("prod")).as_deref(),
        Some("prod-value")
    );
    assert_eq!(
        read(store, &key, Some("dev")).as_deref(),
        Some("project-value")
    );
    assert_eq!(read(store, &key, None).as_deref(), Some("project-value"));
    assert_eq!(
        applicable_scope(store, "tap-a", "password", Some("prod")).unwrap(),
        Some(Some("prod".to_owned()))
    );
    assert_eq!(
        applicable_scope(store, "tap-a", "password", Some("dev")).unwrap(),
        Some(None)
    );
    assert_eq!(
        applicable_scope(store, "tap-a", "nope", Some("dev")).unwrap(),
        None
    );
    let scopes: Vec<Option<String>> = list(store)
        .unwrap()
        .into_iter()
        .map(|s| s.environment)
        .collect();
    assert_eq!(scopes, [None, Some("prod".to_owned())]);

    // A value sealed for prod does not open as the project's (the scope is authenticated).
    let mut moved = store
        .sealed_secret("tap-a", "password", Some("prod"))
        .unwrap()
        .unwrap();
    moved.scope = None;
    assert!(dsm::secrets::store::open_sealed(&key, &moved).is_err());

    // Rotation re-encrypts every scope; each still opens where it belongs.
    let new_key = MasterKey::generate();
    assert_eq!(
        rotate(store, &key, &new_key, "dsm secrets rotate").unwrap(),
        2
    );
    assert_eq!(
        read(store, &new_key, Some("prod")).as_deref(),
        Some("prod-value")
    );
    assert_eq!(
        read(store, &new_key, None).as_deref(),
        Some("project-value")
    );

    // Removing prod's value leaves the project's, which prod then gets.
    unset_in(
        store,
        &new_key,
        "tap-a",
        "password",
        Some("prod"),
        "dsm config unset",
    )
    .unwrap();
    assert!(
        unset_in(
            store,
            &new_key,
            "tap-a",
            "password",
            Some("prod"),
            "dsm config unset"
        )
        .is_err()
    );
    assert_eq!(
        read(store, &new_key, Some("prod")).as_deref(),
        Some("project-value")
    );
    assert_eq!(
        get_secret_in(store, &new_key, "tap-a", "password", Some("prod")).unwrap(),
        None
    );

    // The audit log names the scope of every change and read.
    let targets: Vec<(String, Vec<String>)> = dsm::secrets::audit::list(store, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.targets))
        .collect();
    let prod = "tap-a.password (environment prod)".to_owned();
    let project = "tap-a.password".to_owned();
    assert!(
        targets.contains(&("secret.set".to_owned(), vec![prod.clone()])),
        "{targets:?}"
    );
    assert!(
        targets.contains(&("secret.set".to_owned(), vec![project.clone()])),
        "{targets:?}"
    );
    assert!(
        targets.contains(&("secret.read".to_owned(), vec![prod.clone()])),
        "{targets:?}"
    );
    assert!(
        targets.contains(&("secret.unset".to_owned(), vec![prod])),
        "{targets:?}"
    );
    assert!(
        dsm::secrets::audit::verify(store, &new_key)
            .unwrap()
            .is_ok()
    );
}

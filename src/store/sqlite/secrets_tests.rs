//! Tests of the secret store and audit log (`crate::secrets`) against a real SQLite file. They
//! live with the SQLite backend because the tampering they detect is done with SQL on a
//! second connection.

use rusqlite::Connection;

use crate::secrets::audit::{self, Entry};
use crate::secrets::*;
use crate::store::SqliteStore;

struct Db {
    dir: tempfile::TempDir,
    store: SqliteStore,
    /// A second connection to the same file, for tampering.
    raw: Connection,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("dsm.db")).unwrap();
    let raw = Connection::open(dir.path().join("dsm.db")).unwrap();
    Db { dir, store, raw }
}

fn secret(v: &str) -> Secret {
    Secret::new(v.to_string())
}

const CMD: &str = "dsm test";

fn file_bytes_in(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn set_then_get_round_trips_and_overwrites() {
    let db = db();
    let key = MasterKey::generate();
    set_secret(
        &db.store,
        &key,
        "tap-github",
        "auth_token",
        &secret("ghp_first"),
        CMD,
    )
    .unwrap();
    set_secret(
        &db.store,
        &key,
        "tap-github",
        "auth_token",
        &secret("ghp_second"),
        CMD,
    )
    .unwrap();
    let got = get_secret(&db.store, &key, "tap-github", "auth_token")
        .unwrap()
        .unwrap();
    assert_eq!(got.expose(), "ghp_second");
    assert!(
        get_secret(&db.store, &key, "tap-github", "other")
            .unwrap()
            .is_none()
    );
    assert_eq!(list(&db.store).unwrap().len(), 1);
}

#[test]
fn values_appear_nowhere_in_plain_text() {
    let db = db();
    let key = MasterKey::generate();
    set_secret(
        &db.store,
        &key,
        "tap-pg",
        "password",
        &secret("PLAINTEXT-CANARY"),
        CMD,
    )
    .unwrap();
    read_for_run(&db.store, &key, "tap-pg", "password", None, "dsm run").unwrap();
    let listed = serde_json::to_string(&list(&db.store).unwrap()).unwrap();
    assert!(listed.contains("password") && !listed.contains("PLAINTEXT-CANARY"));
    let audited = serde_json::to_string(&audit::list(&db.store, None).unwrap()).unwrap();
    assert!(audited.contains("tap-pg.password") && !audited.contains("PLAINTEXT-CANARY"));
    drop(db.store);
    drop(db.raw);
    let bytes = file_bytes_in(db.dir.path());
    assert!(contains(&bytes, "tap-pg"));
    assert!(!contains(&bytes, "PLAINTEXT-CANARY"));
}

#[test]
fn a_wrong_key_is_detected_by_the_check_value_not_by_garbage() {
    let db = db();
    let key = MasterKey::generate();
    set_secret(&db.store, &key, "p", "s", &secret("v"), CMD).unwrap();
    let err = get_secret(&db.store, &MasterKey::generate(), "p", "s").unwrap_err();
    assert!(matches!(err, SecretsError::WrongKey { .. }), "{err:?}");
    let err = crate::error::Error::from(err);
    assert_eq!(err.exit_code(), 2);
    assert!(err.hints().iter().any(|h| h.contains("DSM_MASTER_KEY")));
}

#[test]
fn a_ciphertext_moved_onto_another_setting_fails_to_decrypt() {
    let db = db();
    let key = MasterKey::generate();
    set_secret(&db.store, &key, "tap-x", "password", &secret("one"), CMD).unwrap();
    set_secret(&db.store, &key, "tap-x", "token", &secret("two"), CMD).unwrap();
    // Copy the password's ciphertext onto the token row.
    db.raw
        .execute(
            "UPDATE secrets SET nonce = (SELECT nonce FROM secrets WHERE setting = 'password'),
             ciphertext = (SELECT ciphertext FROM secrets WHERE setting = 'password')
             WHERE setting = 'token'",
            [],
        )
        .unwrap();
    let err = get_secret(&db.store, &key, "tap-x", "token").unwrap_err();
    assert!(matches!(err, SecretsError::Undecryptable { .. }));
    let report = verify(&db.store, &key).unwrap();
    assert_eq!(report.ok, 1);
    assert_eq!(
        report.failed,
        vec![("tap-x".to_string(), "token".to_string())]
    );
}

#[test]
fn unset_removes_a_value_and_a_missing_one_is_not_found() {
    let db = db();
    let key = MasterKey::generate();
    set_secret(&db.store, &key, "p", "s", &secret("v"), CMD).unwrap();
    unset(&db.store, &key, "p", "s", CMD).unwrap();
    assert!(get_secret(&db.store, &key, "p", "s").unwrap().is_none());
    assert!(matches!(
        unset(&db.store, &key, "p", "s", CMD),
        Err(SecretsError::NotFound { .. })
    ));
}

#[test]
fn rotate_re_encrypts_everything_and_retires_the_old_key() {
    let db = db();
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    set_secret(&db.store, &old, "a", "password", &secret("va"), CMD).unwrap();
    set_secret(&db.store, &old, "b", "token", &secret("vb"), CMD).unwrap();
    assert_eq!(rotate(&db.store, &old, &new, CMD).unwrap(), 2);
    assert_eq!(
        get_secret(&db.store, &new, "a", "password")
            .unwrap()
            .unwrap()
            .expose(),
        "va"
    );
    assert_eq!(
        get_secret(&db.store, &new, "b", "token")
            .unwrap()
            .unwrap()
            .expose(),
        "vb"
    );
    assert!(list(&db.store).unwrap().iter().all(|s| s.key_version == 2));
    assert!(matches!(
        get_secret(&db.store, &old, "a", "password"),
        Err(SecretsError::WrongKey { .. })
    ));
    // The audit chain moved to the new key with the secrets.
    let report = audit::verify(&db.store, &new).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 3);
}

#[test]
fn a_rotation_interrupted_midway_leaves_the_old_key_working() {
    let db = db();
    let old = MasterKey::generate();
    let new = MasterKey::generate();
    for (plugin, value) in [("a", "va"), ("b", "vb"), ("c", "vc")] {
        set_secret(&db.store, &old, plugin, "password", &secret(value), CMD).unwrap();
    }
    // Fail the transaction after the first value was already re-encrypted.
    db.raw
        .execute_batch(
            "CREATE TRIGGER fail_midway BEFORE UPDATE ON secrets WHEN OLD.plugin = 'b'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    assert!(rotate(&db.store, &old, &new, CMD).is_err());
    for (plugin, value) in [("a", "va"), ("b", "vb"), ("c", "vc")] {
        let got = get_secret(&db.store, &old, plugin, "password")
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), value);
    }
    assert!(matches!(
        get_secret(&db.store, &new, "a", "password"),
        Err(SecretsError::WrongKey { .. })
    ));
    assert!(audit::verify(&db.store, &old).unwrap().is_ok());
    assert_eq!(verify(&db.store, &old).unwrap().ok, 3);
}

fn audited(n: usize) -> (Db, MasterKey) {
    let db = db();
    let key = MasterKey::generate();
    for i in 0..n {
        audit::append(
            &db.store,
            &key,
            &Entry::new(
                "dsm config set",
                "config.set",
                [format!("tap-x.setting{i}")],
            ),
        )
        .unwrap();
    }
    (db, key)
}

fn problems(db: &Db, key: &MasterKey) -> Vec<String> {
    audit::verify(&db.store, key).unwrap().problems
}

#[test]
fn an_untouched_audit_chain_verifies() {
    let (db, key) = audited(5);
    let report = audit::verify(&db.store, &key).unwrap();
    assert!(report.is_ok() && report.warnings.is_empty(), "{report:?}");
    assert_eq!(report.entries, 5);
    assert!(!problems(&db, &MasterKey::generate()).is_empty());
}

#[test]
fn an_edited_audit_entry_is_detected() {
    let (db, key) = audited(5);
    db.raw
        .execute("UPDATE audit_log SET os_user = 'mallory' WHERE seq = 3", [])
        .unwrap();
    let found = problems(&db, &key);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("entry 3"));
}

#[test]
fn an_inserted_audit_entry_is_detected() {
    let (db, key) = audited(3);
    // Make room after entry 1 and insert a forged entry 2 (its MAC cannot be computed).
    db.raw
        .execute_batch(
            "UPDATE audit_log SET seq = seq + 10 WHERE seq >= 2;
             UPDATE audit_log SET seq = seq - 9 WHERE seq >= 12;
             INSERT INTO audit_log SELECT 2, at, os_user, host, command, 'secret.unset', targets, mac
               FROM audit_log WHERE seq = 1;",
        )
        .unwrap();
    let found = problems(&db, &key);
    assert!(found.iter().any(|p| p.contains("entry 2")), "{found:?}");
}

#[test]
fn a_deleted_audit_entry_is_detected() {
    let (db, key) = audited(5);
    db.raw
        .execute("DELETE FROM audit_log WHERE seq = 2", [])
        .unwrap();
    let found = problems(&db, &key);
    assert!(
        found
            .iter()
            .any(|p| p.contains("entries 2 to 2 are missing")),
        "{found:?}"
    );
}

#[test]
fn entries_cut_from_the_end_are_detected_through_the_head_file() {
    let (db, key) = audited(5);
    db.raw
        .execute("DELETE FROM audit_log WHERE seq >= 4", [])
        .unwrap();
    let found = problems(&db, &key);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("entries 4 to 5 were cut from the end"));
}

#[test]
fn a_deleted_head_file_is_detected() {
    let (db, key) = audited(2);
    std::fs::remove_file(db.dir.path().join(audit::HEAD_FILE)).unwrap();
    assert!(problems(&db, &key)[0].contains("missing"));
}

#[test]
fn a_head_file_behind_the_log_is_only_a_warning() {
    let (db, key) = audited(2);
    // A write interrupted between the commit and the head file leaves the file behind.
    let head = db.dir.path().join(audit::HEAD_FILE);
    let before = std::fs::read(&head).unwrap();
    audit::append(
        &db.store,
        &key,
        &Entry::new("dsm state set", "state.set", ["job"]),
    )
    .unwrap();
    std::fs::write(&head, before).unwrap();
    let report = audit::verify(&db.store, &key).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.warnings.len(), 1);
    audit::append(
        &db.store,
        &key,
        &Entry::new("dsm state set", "state.set", ["job"]),
    )
    .unwrap();
    assert!(audit::verify(&db.store, &key).unwrap().warnings.is_empty());
}

#[test]
fn pruning_keeps_verification_working_and_protects_the_anchor() {
    let (db, key) = audited(2);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff = crate::store::format_time(chrono::Utc::now());
    std::thread::sleep(std::time::Duration::from_millis(5));
    for i in 0..2 {
        audit::append(
            &db.store,
            &key,
            &Entry::new("dsm x", "config.set", [format!("t{i}")]),
        )
        .unwrap();
    }
    assert_eq!(
        audit::prune(&db.store, &key, &cutoff, "dsm audit prune").unwrap(),
        2
    );
    let report = audit::verify(&db.store, &key).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.anchored_at, report.entries), (2, 3));
    assert_eq!(
        audit::list(&db.store, None).unwrap().last().unwrap().action,
        "audit.prune"
    );
    // Pruning everything leaves a chain that still verifies from the anchor.
    audit::prune(&db.store, &key, "9999", "dsm audit prune").unwrap();
    assert!(audit::verify(&db.store, &key).unwrap().is_ok());
    // A forged anchor (moved to skip entries) is caught.
    db.raw
        .execute("UPDATE audit_anchor SET seq = seq + 1", [])
        .unwrap();
    assert!(!problems(&db, &key).is_empty());
}

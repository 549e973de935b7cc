//! Team mode and master keys: two hosts (two copies of a project, each with its own key file)
//! share one PostgreSQL store. A rotation on one host leaves the other with the old key; that
//! host must name the key id it lacks, refuse to write, and leave the store as it was.

use std::path::PathBuf;

use crate::parsed as json;
use crate::pg::TestDb;
use crate::team::Copy;

fn key_file(copy: &Copy) -> PathBuf {
    copy.path().join(".test-config/dsm/keys/keys-team.key")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_host_without_the_rotated_key_names_its_id_and_changes_nothing() {
    let db = TestDb::new("team_keys");
    let uri = db.uri(None);
    let (a, b) = (Copy::new(Some("keys-team")), Copy::new(Some("keys-team")));
    a.ok(&uri, &["secrets", "init"]);
    std::fs::create_dir_all(key_file(&b).parent().unwrap()).unwrap();
    std::fs::copy(key_file(&a), key_file(&b)).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(key_file(&b), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = a.dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-csv", "password"],
        "team-value-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    b.ok(&uri, &["secrets", "verify"]);

    let rotated = json(&a.ok(&uri, &["--format", "json", "secrets", "rotate"]));
    let new_id = rotated["key_id"].as_str().unwrap().to_owned();
    assert_eq!(new_id.len(), 16, "{rotated}");
    let new_key = dsm::secrets::master_key::read_key_file(&key_file(&a)).unwrap();
    assert_eq!(new_key.key_id(), new_id);
    let mut c = db.client();
    let snapshot = |c: &mut postgres::Client| -> Vec<String> {
        let mut rows = Vec::new();
        for table in ["secrets", "secret_keys", "audit_log", "audit_head"] {
            for row in c
                .query(
                    &format!(
                        "SELECT t::text FROM dsm.{table} t WHERE project_id = 'keys-team' ORDER BY 1"
                    ),
                    &[],
                )
                .unwrap()
            {
                rows.push(row.get(0));
            }
        }
        rows
    };
    let before = snapshot(&mut c);

    // Host B still holds the old key: every command that needs the key says which it lacks.
    for args in [
        &["secrets", "verify"][..],
        &["audit", "verify"][..],
        &["config", "--unsafe", "list", "tap-csv"][..],
    ] {
        let out = b.dsm(&uri, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let shown = text(&out);
        assert!(shown.contains(&new_id), "{args:?}: {shown}");
        assert!(shown.contains("keys-team.key"), "{args:?}: {shown}");
        assert!(!shown.contains("panicked"), "{shown}");
    }
    let out = b.dsm_with_stdin(
        &uri,
        &["secrets", "set", "tap-csv", "password"],
        "written-with-the-old-key\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&new_id), "{}", text(&out));
    assert_eq!(snapshot(&mut c), before, "host B changed the store");

    // Host A still reads everything; host B works again once it has the new key.
    a.ok(&uri, &["secrets", "verify"]);
    a.ok(&uri, &["audit", "verify"]);
    std::fs::copy(key_file(&a), key_file(&b)).unwrap();
    b.ok(&uri, &["secrets", "verify"]);
    b.ok(&uri, &["audit", "verify"]);
}

/// Issue 20, point 7: a secret stored for an environment keeps its scope when the store is
/// copied to PostgreSQL; the copy serves each environment the value the original did.
#[test]
fn store_copy_keeps_each_secrets_environment() {
    let db = TestDb::new("team_scopes");
    let (pg, pw) = crate::team::without_password(&db.uri(Some("scoped")));
    let a = Copy::new(Some("scoped-project"));
    let yml = a.path().join("meltano.yml");
    let written = std::fs::read_to_string(&yml).unwrap();
    std::fs::write(&yml, format!("{written}environments:\n- name: prod\n")).unwrap();
    let sqlite = format!("sqlite://{}", a.path().join(".dsm/dsm.db").display());
    a.ok(&sqlite, &["secrets", "init"]);
    for (args, value) in [
        (
            &["secrets", "set", "tap-csv", "password"][..],
            "project-value-1\n",
        ),
        (
            &[
                "--environment",
                "prod",
                "secrets",
                "set",
                "tap-csv",
                "password",
            ][..],
            "prod-value-2\n",
        ),
    ] {
        let out = a.dsm_with_stdin(&sqlite, args, value);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = a.dsm_with(
        &sqlite,
        &["store", "copy", "--from", &sqlite, "--to", &pg],
        "",
        &[("PGPASSWORD", pw.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out));

    let uri = db.uri(Some("scoped"));
    let listed = json(&a.ok(&uri, &["--format", "json", "secrets", "list"]));
    let scopes: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["environment"].clone())
        .collect();
    assert_eq!(scopes, [serde_json::Value::Null, "prod".into()], "{listed}");
    let print = |env: &[&str]| {
        let mut args = env.to_vec();
        args.extend(["config", "--unsafe", "print", "tap-csv"]);
        json(&a.ok(&uri, &args))["password"].clone()
    };
    assert_eq!(print(&["--environment", "prod"]), "prod-value-2");
    assert_eq!(print(&[]), "project-value-1");
    a.ok(&uri, &["secrets", "verify"]);
    a.ok(&uri, &["audit", "verify"]);
}

/// Issue 20, point 6, in team mode: a host that deletes the newest entries and rewrites the
/// project's `audit_head` row to name the new last entry (copying its MAC from the table) is
/// caught by every host, as is a made-up head MAC.
#[test]
fn a_truncated_chain_with_a_rewritten_head_row_does_not_verify() {
    let db = TestDb::new("team_head");
    let uri = db.uri(None);
    let a = Copy::new(Some("head-team"));
    a.ok(&uri, &["secrets", "init"]);
    for setting in ["password", "token", "api_key"] {
        let out = a.dsm_with_stdin(
            &uri,
            &["secrets", "set", "tap-csv", setting],
            "a-team-value\n",
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    a.ok(&uri, &["audit", "verify"]);
    let mut c = db.client();
    let head: Vec<u8> = c
        .query_one(
            "SELECT mac FROM dsm.audit_head WHERE project_id = 'head-team'",
            &[],
        )
        .unwrap()
        .get(0);
    let last: Vec<u8> = c
        .query_one(
            "SELECT mac FROM dsm.audit_log WHERE project_id = 'head-team' AND seq = 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert_ne!(head, last, "the head row holds a MAC of its own");

    c.execute(
        "DELETE FROM dsm.audit_log WHERE project_id = 'head-team' AND seq = 3",
        &[],
    )
    .unwrap();
    c.execute(
        "UPDATE dsm.audit_head SET seq = 2,
             mac = (SELECT mac FROM dsm.audit_log WHERE project_id = 'head-team' AND seq = 2)
         WHERE project_id = 'head-team'",
        &[],
    )
    .unwrap();
    let out = a.dsm(&uri, &["--format", "json", "audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        report["problems"].to_string().contains("not authenticated"),
        "{report}"
    );
    c.execute(
        "UPDATE dsm.audit_head SET mac = decode(repeat('ab', 32), 'hex')
         WHERE project_id = 'head-team'",
        &[],
    )
    .unwrap();
    let out = a.dsm(&uri, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not authenticate under the master key"),
        "{}",
        text(&out)
    );
}

//! Registering and changing sources over HTTP (issue #24): written with the CLI's
//! comment-preserving edit into the file that defines the plugin, `ETag`/`If-Match`, sensitive
//! values refused, admin only, audited.

use super::*;

fn send(server: &Server, method: &str, path: &str, token: &str, body: &Value) -> Answer {
    send_with(server, method, path, token, body, &[])
}

fn send_with(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> Answer {
    let auth = format!("Bearer {token}");
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", content_type),
    ];
    headers.extend_from_slice(extra);
    server.call(
        method,
        path,
        &headers,
        Some(serde_json::to_vec(body).unwrap().as_slice()),
    )
}

fn project_with_comments() -> Project {
    let p = fixture().with_master_key();
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    p.write(
        "meltano.yml",
        &yml.replace(
            "  - name: tap-github\n",
            "  # keep: the GitHub source\n  - name: tap-github\n",
        )
        .replace(
            "  - name: tap-postgres\n",
            "  - name: tap-postgres-child\n    inherit_from: tap-postgres\n  - name: tap-postgres\n",
        )
        .replace(
            "jobs:\n",
            "include_paths: ['./extra/*.meltano.yml']\njobs:\n",
        ),
    );
    std::fs::create_dir_all(p.root().join("extra")).unwrap();
    p.write(
        "extra/more.meltano.yml",
        "# included file\nplugins:\n  extractors:\n  - name: tap-included\n    namespace: tap_included\n    executable: ./tap.sh\n    config: {region: eu} # inline note\n",
    );
    p
}

#[test]
fn issue_24_sources_are_registered_changed_and_deleted_by_admins_only() {
    let p = project_with_comments();
    let ops = p.token("ops", "operator");
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let new = serde_json::json!({
        "name": "tap-new",
        "plugin": {"namespace": "tap_new", "executable": "./tap.sh",
                   "settings": [{"name": "api_key", "kind": "password"}]},
        "config": {"region": "us"},
        "secrets": {"api_key": "new-secret-value"},
        "source": {"provider": "Acme", "category": "crm", "labels": ["core"]}
    });
    send(&server, "POST", "/api/sources", &ops, &new).problem(403);
    // Unknown top-level fields and wrong types are 422 with a pointer.
    let mut unknown = new.clone();
    unknown["colour"] = "red".into();
    let doc = send(&server, "POST", "/api/sources", &admin, &unknown).problem(422);
    assert!(doc.to_string().contains("colour"), "{doc}");
    let mut bad_source = new.clone();
    bad_source["source"] = serde_json::json!({"provider": "Acme", "size": 3});
    let doc = send(&server, "POST", "/api/sources", &admin, &bad_source).problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/source", "{doc}");
    // A secret in `config` is refused: it belongs in `secrets` (or /credentials).
    let mut leaky = new.clone();
    leaky["config"]["api_key"] = "oops".into();
    let doc = send(&server, "POST", "/api/sources", &admin, &leaky).problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/config/api_key", "{doc}");
    let name_taken = serde_json::json!({"name": "tap-github", "plugin": {"namespace": "x"}});
    send(&server, "POST", "/api/sources", &admin, &name_taken).problem(409);

    let created = send(&server, "POST", "/api/sources", &admin, &new);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/api/sources/tap-new"));
    let tag = created.header("etag").unwrap().to_owned();
    let doc = created.json();
    assert_eq!(doc["provider"], "Acme");
    assert!(!created.body.contains("new-secret-value"));
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("  # keep: the GitHub source\n"), "{yml}");
    assert!(yml.contains("name: tap-new"), "{yml}");
    assert!(!yml.contains("new-secret-value"), "{yml}");
    // The secret went to the encrypted store.
    let (code, out, err) = p.dsm(&["secrets", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("api_key"), "{out}");
    assert!(!out.contains("new-secret-value"), "{out}");
    let got = server.get("/api/sources/tap-new", &ops);
    assert_eq!(got.header("etag"), Some(tag.as_str()));

    // PATCH: a merge patch; a stale If-Match is a conflict, the current one goes through.
    let patch = serde_json::json!({"config": {"region": "ap", "page_size": 50}});
    let stale = send_with(
        &server,
        "PATCH",
        "/api/sources/tap-new",
        &admin,
        &patch,
        &[("If-Match", "\"0000\"")],
    );
    stale.problem(409);
    let patched = send_with(
        &server,
        "PATCH",
        "/api/sources/tap-new",
        &admin,
        &patch,
        &[("If-Match", &tag)],
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let new_tag = patched.header("etag").unwrap().to_owned();
    assert_ne!(new_tag, tag);
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("region: ap"), "{yml}");
    assert!(yml.contains("page_size: 50"), "{yml}");
    assert!(yml.contains("  # keep: the GitHub source\n"), "{yml}");
    // The old tag is stale now.
    send_with(
        &server,
        "PATCH",
        "/api/sources/tap-new",
        &admin,
        &patch,
        &[("If-Match", &tag)],
    )
    .problem(409);
    // Sensitive values are refused in PATCH and PUT.
    let doc = send(
        &server,
        "PATCH",
        "/api/sources/tap-new",
        &admin,
        &serde_json::json!({"config": {"api_key": "leak"}}),
    )
    .problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/config/api_key", "{doc}");
    send(
        &server,
        "PUT",
        "/api/sources/tap-new",
        &admin,
        &serde_json::json!({"namespace": "tap_new", "config": {"password": "leak"}}),
    )
    .problem(422);
    // A renaming PUT is refused; a project that would not load is refused and left alone.
    send(
        &server,
        "PUT",
        "/api/sources/tap-new",
        &admin,
        &serde_json::json!({"name": "tap-other"}),
    )
    .problem(422);
    let before = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    send(
        &server,
        "PUT",
        "/api/sources/tap-new",
        &admin,
        &serde_json::json!({"namespace": "tap_new", "inherit_from": "tap-nowhere"}),
    )
    .problem(422);
    assert_eq!(
        std::fs::read_to_string(p.root().join("meltano.yml")).unwrap(),
        before
    );
    // PUT replaces the whole entry.
    let put = send(
        &server,
        "PUT",
        "/api/sources/tap-new",
        &admin,
        &serde_json::json!({"namespace": "tap_new", "executable": "./tap.sh", "config": {"region": "sa"}}),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("region: sa"), "{yml}");
    assert!(!yml.contains("page_size"), "{yml}");

    // A source defined in an included file is changed there.
    let patched = send(
        &server,
        "PATCH",
        "/api/sources/tap-included",
        &admin,
        &serde_json::json!({"config": {"region": "us"}}),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let included = std::fs::read_to_string(p.root().join("extra/more.meltano.yml")).unwrap();
    assert!(included.starts_with("# included file\n"), "{included}");
    assert!(included.contains("us"), "{included}");
    assert!(
        !std::fs::read_to_string(p.root().join("meltano.yml"))
            .unwrap()
            .contains("tap-included")
    );

    // DELETE: refused while another plugin inherits from it, or a job runs it.
    let doc = server
        .delete("/api/sources/tap-postgres", &admin)
        .problem(409);
    assert!(doc["title"].as_str().unwrap().contains("inherits"), "{doc}");
    server.delete("/api/sources/tap-fake", &admin).problem(409);
    server.delete("/api/sources/tap-new", &ops).problem(403);
    let gone = server.delete("/api/sources/tap-new", &admin);
    assert_eq!(gone.status, 204, "{}", gone.body);
    server.get("/api/sources/tap-new", &ops).problem(404);
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(!yml.contains("tap-new"), "{yml}");
    assert!(yml.contains("  # keep: the GitHub source\n"), "{yml}");

    // Every change is in the audit chain with the token's name.
    let audit = server.get("/api/audit?limit=500", &admin).json();
    let actions: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["command"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for action in [
        "source.create",
        "source.patch",
        "source.replace",
        "source.delete",
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, c)| a == action && c == "dsm serve (token admin)"),
            "{action} not audited: {actions:?}"
        );
    }
}

#[test]
fn issue_24_a_source_registered_from_a_template_comes_from_the_catalog() {
    let p = fixture();
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let doc = send(
        &server,
        "POST",
        "/api/sources",
        &admin,
        &serde_json::json!({"name": "tap-x", "template": "tap-no-such-plugin"}),
    )
    .problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/template", "{doc}");
    send(
        &server,
        "POST",
        "/api/sources",
        &admin,
        &serde_json::json!({"name": "tap-x"}),
    )
    .problem(422);
    let created = send(
        &server,
        "POST",
        "/api/sources",
        &admin,
        &serde_json::json!({"name": "target-csv", "template": "target-csv"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["plugin_type"], "loader");
    let yml = std::fs::read_to_string(p.root().join("meltano.yml")).unwrap();
    assert!(yml.contains("name: target-csv"), "{yml}");
    assert!(yml.contains("variant:"), "{yml}");
}

/// A wheel of a one-file package with a `tap-wheel` command, built here so that installing it
/// needs no network: a real `pip install` of a real (if tiny) distribution.
fn tap_wheel(dir: &Path) -> std::path::PathBuf {
    let wheel = dir.join("tap_wheel-1.0-py3-none-any.whl");
    let script = r#"
import base64, hashlib, sys, zipfile
info = "tap_wheel-1.0.dist-info"
files = {
    "tap_wheel/__init__.py": "def main():\n    print('{}')\n",
    info + "/METADATA": "Metadata-Version: 2.1\nName: tap-wheel\nVersion: 1.0\n",
    info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: dsm-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    info + "/entry_points.txt": "[console_scripts]\ntap-wheel = tap_wheel:main\n",
}
record = []
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(info + "/RECORD,,")
    z.writestr(info + "/RECORD", "\n".join(record) + "\n")
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&wheel)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "building the test wheel");
    wheel
}

/// Issue #24: a source registered over HTTP whose plugin needs installing is installed in the
/// background with the library's installer; `install_progress` events follow each step and
/// the end, and the source's document says where the installation stands, failure included.
#[test]
fn issue_24_a_registered_plugin_is_installed_with_progress_on_the_event_stream() {
    let p = fixture();
    let wheel = tap_wheel(p.root());
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let events = server.events(&admin);
    let created = send(
        &server,
        "POST",
        "/api/sources",
        &admin,
        &serde_json::json!({"name": "tap-wheel", "plugin_type": "extractor", "plugin": {
            "namespace": "tap_wheel",
            "pip_url": format!("--no-index {}", wheel.display()),
        }}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json()["install"]["status"],
        "installing",
        "{}",
        created.body
    );
    let mine = |v: &Value| v["source"] == "tap-wheel";
    let step = events.wait("install_progress", |v| {
        mine(v)
            && v["step"]
                .as_str()
                .is_some_and(|s| s.ends_with("pip install"))
    });
    assert_eq!(step["status"], "running", "{step}");
    let done = events.wait("install_progress", |v| mine(v) && v["step"] == "done");
    assert_eq!(done["status"], "installed", "{done}");
    let venv = p.root().join(".dsm/plugins/extractors/tap-wheel/venv");
    assert!(
        venv.join("bin/tap-wheel").is_file(),
        "the wheel's command is installed"
    );
    let doc = server.get("/api/sources/tap-wheel", &admin).json();
    assert_eq!(
        doc["install"],
        serde_json::json!({"status": "installed", "detail": null})
    );
    // A built-in plugin needs nothing.
    let doc = server.get("/api/sources/target-jsonl", &admin).json();
    assert_eq!(doc["install"]["status"], "built_in", "{doc}");

    // A package that cannot be found: the failure is an event and stays on the document.
    let created = send(
        &server,
        "POST",
        "/api/sources",
        &admin,
        &serde_json::json!({"name": "tap-missing", "plugin_type": "extractor", "plugin": {
            "namespace": "tap_missing",
            "pip_url": "--no-index dsm-no-such-package-for-tests",
        }}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let done = events.wait("install_progress", |v| {
        v["source"] == "tap-missing" && v["step"] == "done"
    });
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["detail"]
            .as_str()
            .is_some_and(|d| d.contains("pip install")),
        "{done}"
    );
    let doc = server.get("/api/sources/tap-missing", &admin).json();
    assert_eq!(doc["install"]["status"], "failed", "{doc}");
    assert_eq!(doc["install"]["detail"], done["detail"]);
}

/// Every file under `dir` whose bytes hold `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn issue_25_a_new_source_is_tested_before_anything_is_saved() {
    const KEY: &str = "open-sesame-4711";
    let p = fixture().with_master_key();
    // A tap that lets in only the right key (the script spells it in two halves, so the key
    // itself is in no file of the project).
    p.write(
        "tap-check.sh",
        &format!(
            "#!/bin/sh\nwant=open-sesame; want=\"$want-4711\"\nprev=\nfor a in \"$@\"; do [ \"$prev\" = --config ] && cfg=\"$a\"; prev=\"$a\"; done\ngrep -q \"$want\" \"$cfg\" || {{ echo 'access denied' >&2; exit 3; }}\ngrep -q leaky \"$cfg\" && {{ cat \"$cfg\" >&2; exit 4; }}\nexec {TAP} --generate 3 --stream users \"$@\"\n"
        ),
    );
    std::fs::set_permissions(
        p.root().join("tap-check.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let before = std::fs::read(p.root().join("meltano.yml")).unwrap();
    let viewer = p.token("viewer", "viewer");
    let ops = p.token("ops", "operator");
    let admin = p.token("admin", "admin");
    let server = p.serve(&[]);
    let body = |key: &str| {
        serde_json::json!({
            "name": "tap-checked",
            "plugin": {"namespace": "tap_checked", "executable": "./tap-check.sh",
                       "settings": [{"name": "api_key", "kind": "password"}, {"name": "region"}]},
            "config": {"region": "us"},
            "secrets": {"api_key": key},
        })
    };
    let url = "/api/source-tests?timeout=30";
    send(&server, "POST", url, &viewer, &body(KEY)).problem(403);
    // A full definition names what runs: admins only.
    send(&server, "POST", url, &ops, &body(KEY)).problem(403);

    let good = send(&server, "POST", url, &admin, &body(KEY));
    assert_eq!(good.status, 200, "{}", good.body);
    let doc = good.json();
    assert_eq!(doc["succeeded"], true, "{doc}");
    assert_eq!(doc["failed"], 0, "{doc}");
    assert!(doc["passed"].as_u64().unwrap() >= 1, "{doc}");
    assert_eq!(doc["results"][0]["plugin"], "tap-checked", "{doc}");
    assert!(!good.body.contains(KEY));
    // The key reached the plugin: a wrong one fails the test, with the plugin's words.
    let bad = send(&server, "POST", url, &admin, &body("wrong-key"));
    assert_eq!(bad.status, 200, "{}", bad.body);
    let failed = bad.json();
    assert_eq!(failed["succeeded"], false, "{failed}");
    assert!(failed.to_string().contains("access denied"), "{failed}");
    // A plugin that prints its config shows the other settings, never the key.
    let mut leaks = body(KEY);
    leaks["config"]["region"] = "leaky".into();
    let leaked = send(&server, "POST", url, &admin, &leaks);
    assert_eq!(leaked.json()["succeeded"], false, "{}", leaked.body);
    assert!(leaked.body.contains("leaky"), "{}", leaked.body);
    assert!(!leaked.body.contains(KEY), "{}", leaked.body);

    // Bad requests: the same checks as POST /api/sources.
    send(
        &server,
        "POST",
        "/api/source-tests?timeout=0",
        &admin,
        &body(KEY),
    )
    .problem(400);
    let mut unknown = body(KEY);
    unknown["colour"] = "red".into();
    let doc = send(&server, "POST", url, &admin, &unknown).problem(422);
    assert!(doc.to_string().contains("colour"), "{doc}");
    let neither = serde_json::json!({"name": "tap-x", "config": {}});
    let doc = send(&server, "POST", url, &admin, &neither).problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/template", "{doc}");
    let mut leaky = body(KEY);
    leaky["config"]["api_key"] = KEY.into();
    let doc = send(&server, "POST", url, &admin, &leaky).problem(422);
    assert_eq!(doc["errors"][0]["pointer"], "/config/api_key", "{doc}");
    assert!(!doc.to_string().contains(KEY), "{doc}");
    let mut unknown_secret = body(KEY);
    unknown_secret["secrets"] = serde_json::json!({"no_such_setting": KEY});
    let doc = send(&server, "POST", url, &admin, &unknown_secret).problem(422);
    assert!(!doc.to_string().contains(KEY), "{doc}");
    let mut taken = body(KEY);
    taken["name"] = "tap-github".into();
    send(&server, "POST", url, &admin, &taken).problem(409);
    let plain = server.call(
        "POST",
        url,
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "text/plain"),
        ],
        Some(b"name=tap-checked"),
    );
    plain.problem(415);

    // Nothing was saved: meltano.yml is byte for byte the same, no result was recorded, and the
    // key is in no file, answer or log line.
    assert_eq!(std::fs::read(p.root().join("meltano.yml")).unwrap(), before);
    server.get("/api/sources/tap-checked", &ops).problem(404);
    assert_eq!(
        files_holding(p.root(), KEY),
        Vec::<std::path::PathBuf>::new()
    );
    let (code, out, err) = p.dsm(&["secrets", "list", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("tap-checked"), "{out}");
    let audit = server.get("/api/audit", &admin);
    assert!(audit.body.contains("source.test"), "{}", audit.body);
    assert!(!server.log().contains(KEY));
    let api = server.get("/api/openapi.json", &viewer).json();
    assert_documented(&api, "post", "/api/source-tests", &good.json());
}

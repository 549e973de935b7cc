//! Issue #22: `dsm logs list|show|dir` over the run history's log files, and `dsm state edit`.

use serde_json::{Value, json};

use crate::support::{TestProject, script};

const TAP: &str = env!("CARGO_BIN_EXE_dsm-fake-tap");
const TARGET: &str = env!("CARGO_BIN_EXE_dsm-fake-target");

fn project() -> TestProject {
    let p = TestProject::new(
        "plugins:
  extractors:
  - name: tap-fake
    namespace: tap_fake
    executable: ./tap.sh
    capabilities: [state]
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
",
    );
    script(
        &p,
        "tap.sh",
        &format!(
            "exec {TAP} \"$@\" --generate 4 --state-every 2 --stream users --stderr-lines 5\n"
        ),
    );
    script(
        &p,
        "target.sh",
        &format!("exec {TARGET} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n"),
    );
    p
}

fn run_ids(p: &TestProject) -> Vec<String> {
    let out = p.dsm(&["--format", "json", "logs", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json()["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["log_id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn logs_list_names_each_run_newest_first_with_its_file() {
    let p = project();
    for _ in 0..3 {
        let out = p.dsm(&["run", "tap-fake", "target-fake"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let doc = p.dsm(&["--format", "json", "logs", "list"]).json();
    assert_eq!(doc["total"], 3);
    let runs = doc["runs"].as_array().expect("runs");
    let history = p.dsm(&["--format", "json", "runs", "list"]).json();
    let history_ids: Vec<&str> = history
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["run_id"].as_str().expect("id"))
        .collect();
    let log_ids: Vec<&str> = runs
        .iter()
        .map(|r| r["log_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        log_ids, history_ids,
        "same runs, same order as the run history"
    );
    for r in runs {
        assert_eq!(r["state"], "SUCCESS");
        assert_eq!(r["status"], "success");
        assert_eq!(r["job_name"], "tap-fake-to-target-fake");
        assert_eq!(r["log_exists"], true);
        let path = r["log_path"].as_str().expect("a path");
        let size = std::fs::metadata(path).expect("the log exists").len();
        assert_eq!(r["log_bytes"], json!(size));
    }

    let limited = p
        .dsm(&["--format", "json", "logs", "list", "--limit", "2"])
        .json();
    assert_eq!(limited["total"], 2);

    // A pruned log file shows as gone, not as an error.
    std::fs::remove_file(runs[2]["log_path"].as_str().expect("path")).expect("remove");
    let text = p.dsm(&["logs", "list"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("gone"), "{}", text.stdout);
    assert!(text.stdout.starts_with("STATUS"), "{}", text.stdout);
}

#[test]
fn logs_show_prints_the_file_or_its_last_lines() {
    let p = project();
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = run_ids(&p).remove(0);
    let show: Value = p.dsm(&["--format", "json", "logs", "show", &id]).json();
    let path = show["log_path"].as_str().expect("a path").to_owned();
    let file = std::fs::read_to_string(&path).expect("the log");
    assert!(!file.is_empty(), "the run wrote a log");
    assert_eq!(show["content"], json!(file));
    assert_eq!(show["tail"], Value::Null);

    let whole = p.dsm(&["logs", "show", &id]);
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert_eq!(whole.stdout, file, "text output is the file as is");

    let lines: Vec<&str> = file.lines().collect();
    assert!(lines.len() >= 2, "{file}");
    let tail = p.dsm(&["logs", "show", &id, "--tail", "2"]);
    assert_eq!(tail.code, 0, "{}", tail.stderr);
    assert_eq!(
        tail.stdout.lines().collect::<Vec<_>>(),
        lines[lines.len() - 2..]
    );
    let tail = p
        .dsm(&["--format", "json", "logs", "show", &id, "-n", "1"])
        .json();
    assert_eq!(tail["lines"], 1);
    assert_eq!(tail["tail"], 1);

    let unknown = p.dsm(&["logs", "show", "no-such-run"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("dsm logs list"),
        "{}",
        unknown.stderr
    );

    // Without the file, the end of the log the run history keeps is shown, and said to be.
    std::fs::remove_file(&path).expect("remove");
    let gone = p.dsm(&["logs", "show", &id]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
    assert!(
        gone.stderr.contains(&path) && gone.stderr.contains("cannot be read on this host"),
        "names the file: {}",
        gone.stderr
    );
    assert_eq!(gone.stdout, file, "a short log is kept whole");
    let kept: Value = p.dsm(&["--format", "json", "logs", "show", &id]).json();
    assert_eq!(kept["from_store"], true);
    assert_eq!(kept["content"], json!(file));
}

#[test]
fn logs_dir_is_the_projects_log_folder() {
    let p = project();
    let out = p.dsm(&["logs", "dir"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::path::Path::new(out.stdout.trim()),
        p.root().join(".dsm").join("logs")
    );
}

/// An "editor" that replaces the file with `content` (or leaves it alone when `None`).
fn editor(p: &TestProject, content: Option<&str>) -> String {
    let body = match content {
        Some(text) => {
            p.write("edited.json", text);
            format!("cp \"{}\" \"$1\"\n", p.root().join("edited.json").display())
        }
        None => "exit 0\n".to_owned(),
    };
    script(p, "editor.sh", &body);
    p.root().join("editor.sh").display().to_string()
}

#[test]
fn state_edit_saves_a_valid_edit_and_refuses_a_broken_one() {
    let p = project();
    let key = p.root().join(".keys/master.key");
    let p = p.env("DSM_MASTER_KEY_FILE", key.to_str().expect("utf-8"));
    let init = p.dsm(&[
        "secrets",
        "init",
        "--key-file",
        key.to_str().expect("utf-8"),
    ]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let out = p.dsm(&["run", "tap-fake", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = "tap-fake-to-target-fake";
    let before = p.dsm(&["state", "get", id]).json();
    assert_eq!(
        before,
        json!({"singer_state": {"bookmarks": {"users": {"id": 4}}}})
    );

    // Saving without a change changes nothing.
    let ed = editor(&p, None);
    let out = p
        .command(&["state", "edit", id])
        .env("EDITOR", &ed)
        .env("VISUAL", "")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no change"));

    // Not JSON: refused, nothing saved.
    let ed = editor(&p, Some("{\"singer_state\": {"));
    let out = p
        .command(&["state", "edit", id])
        .env("EDITOR", &ed)
        .env("VISUAL", "")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{out:?}"
    );
    assert_eq!(p.dsm(&["state", "get", id]).json(), before);

    // JSON without `singer_state`: refused as `state set` refuses it.
    let ed = editor(&p, Some("{\"bookmarks\": {}}"));
    let out = p
        .command(&["state", "edit", id])
        .env("EDITOR", &ed)
        .env("VISUAL", "")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(p.dsm(&["state", "get", id]).json(), before);

    // A valid edit is saved, and the next run starts from it.
    let edited = json!({"singer_state": {"bookmarks": {"users": {"id": 2}}}});
    let ed = editor(&p, Some(&edited.to_string()));
    let out = p
        .command(&["state", "edit", id])
        .env("EDITOR", &ed)
        .env("VISUAL", "")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p.dsm(&["state", "get", id]).json(), edited);
    let audit = p.dsm(&["--format", "json", "audit", "list"]).json();
    let edits: Vec<&Value> = audit
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == "state.edit")
        .collect();
    assert_eq!(edits.len(), 1, "one audited edit: {audit:#}");
    assert_eq!(edits[0]["targets"], json!([id]));

    // An editor that fails leaves the state alone.
    script(&p, "bad-editor.sh", "exit 3\n");
    let bad = p.root().join("bad-editor.sh").display().to_string();
    let out = p
        .command(&["state", "edit", id])
        .env("EDITOR", &bad)
        .env("VISUAL", "")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(p.dsm(&["state", "get", id]).json(), edited);
}

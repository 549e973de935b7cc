//! Real Python Singer plugins from the package index (`tap-spreadsheets`, an SDK tap reading
//! CSV files incrementally, into the classic `target-jsonl` or the SDK's `target-csv`), run once
//! by real Meltano and once by dsm on two copies of one project: the target's output and the
//! saved state must be the same: after a full run, an incremental one, a `--full-refresh`, a
//! selection, and a loader that fails.
//! `scripts/setup-test-env.sh` installs each plugin into its own venv beside Meltano's.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::support::{Output, TestProject, clean_env, meltano_venv, run, script};

/// The executable `name` in its venv, `target/test-env/plugins/NAME/` beside Meltano's venv;
/// panics with the setup command when it is missing.
pub(crate) fn plugin(name: &str) -> PathBuf {
    let venv = meltano_venv();
    let exe = venv
        .parent()
        .expect("the venv has a parent directory")
        .join("plugins")
        .join(name)
        .join("bin")
        .join(name);
    assert!(
        exe.is_file(),
        "`{}` is missing: run `scripts/setup-test-env.sh` (it installs the plugins listed in \
         scripts/test-plugins.txt next to the venv in DSM_TEST_VENV)",
        exe.display()
    );
    exe
}

/// Both plugins are custom (`namespace` + `executable`), so neither Meltano nor dsm installs
/// anything. The tap reads every `*.csv` file of `input` as one stream `people`; its bookmark is
/// the newest file mtime it read, and a later run skips the files no newer than that.
fn meltano_yml(input: &Path) -> String {
    format!(
        r#"version: 1
default_environment: dev
project_id: dsm-real-plugins-test
environments:
- name: dev
plugins:
  extractors:
  - name: tap-spreadsheets
    namespace: tap_spreadsheets
    executable: {tap}
    capabilities: [catalog, discover, state, about]
    settings:
    - name: files
      kind: array
    config:
      files:
      - path: {input}/*.csv
        format: csv
        table_name: people
        primary_keys: [id]
  # The same tap with a selection: the catalog it gets marks `score` unselected.
  - name: tap-people-names
    inherit_from: tap-spreadsheets
    select:
    - people.id
    - people.name
    - people._sdc_last_modified
  loaders:
  - name: target-jsonl
    namespace: target_jsonl
    executable: {target}
    settings:
    - name: destination_path
    - name: do_timestamp_file
      kind: boolean
    config:
      destination_path: output
      do_timestamp_file: false
  - name: target-csv
    namespace: target_csv
    executable: {target_csv}
    settings:
    - name: output_path
    config:
      output_path: output
"#,
        tap = plugin("tap-spreadsheets").display(),
        target = plugin("target-jsonl").display(),
        target_csv = plugin("target-csv").display(),
        input = input.display(),
    )
}

/// Writes an input file and gives it a fixed mtime, which is what the tap bookmarks.
fn input_file(dir: &Path, name: &str, lines: &str, mtime_secs: u64) {
    let path = dir.join(name);
    std::fs::write(&path, lines).expect("write input");
    File::options()
        .write(true)
        .open(&path)
        .expect("open input")
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_secs))
        .expect("set mtime");
}

fn meltano(p: &TestProject, args: &[&str]) -> Output {
    let mut cmd = Command::new(meltano_venv().join("bin/meltano"));
    cmd.args(args).current_dir(p.root());
    clean_env(&mut cmd);
    cmd.env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("MELTANO_DISABLE_TRACKING", "true");
    run(cmd)
}

fn ok(out: Output, who: &str) -> Output {
    assert_eq!(
        out.code, 0,
        "{who} failed:\n--- stdout\n{}\n--- stderr\n{}",
        out.stdout, out.stderr
    );
    out
}

/// The rows target-jsonl wrote, parsed.
fn rows(p: &TestProject) -> Vec<Value> {
    p.read("output/people.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("target-jsonl writes JSON lines"))
        .collect()
}

/// Runs `tap-spreadsheets` into `loader` once more in each project, Meltano's then dsm's, and
/// returns the state each saved.
fn run_both(m: &TestProject, d: &TestProject, loader: &str) -> [Value; 2] {
    run_both_with(m, d, loader, &[])
}

/// `run_both` with extra flags for `run`.
fn run_both_with(m: &TestProject, d: &TestProject, loader: &str, flags: &[&str]) -> [Value; 2] {
    run_pair(m, d, "tap-spreadsheets", loader, flags)
}

/// Runs `tap` into `loader` in each project and returns the state each saved.
fn run_pair(
    m: &TestProject,
    d: &TestProject,
    tap: &str,
    loader: &str,
    flags: &[&str],
) -> [Value; 2] {
    let state_id = format!("dev:{tap}-to-{loader}");
    let args: Vec<&str> = ["run"]
        .into_iter()
        .chain(flags.iter().copied())
        .chain([tap, loader])
        .collect();
    ok(meltano(m, &args), "meltano run");
    ok(d.dsm(&args), "dsm run");
    let m_state = ok(
        meltano(m, &["state", "get", &state_id]),
        "meltano state get",
    );
    let d_state = ok(d.dsm(&["state", "get", &state_id]), "dsm state get");
    [m_state.json(), d_state.json()]
}

/// Two projects with the same `meltano.yml` reading `input`: Meltano's, then dsm's.
fn projects(input: &Path) -> (TestProject, TestProject) {
    let yml = meltano_yml(input);
    (TestProject::new(&yml), TestProject::new(&yml))
}

/// The saved state once the tap has read files up to the mtime `bookmark`.
fn state_at(bookmark: &str) -> Value {
    json!({"singer_state": {"bookmarks": {"people": {
        "replication_key": "_sdc_last_modified",
        "replication_key_value": bookmark,
    }}}})
}

#[test]
fn real_tap_spreadsheets_to_target_jsonl_matches_meltano_run_output_and_state() {
    let input_dir = tempfile::tempdir().expect("temp dir");
    let input = input_dir.path();
    // 2024-01-01T00:00:00Z
    input_file(
        input,
        "a.csv",
        "id,name,score\n1,Ada,1.5\n2,Bo,2\n",
        1_704_067_200,
    );
    let (m, d) = projects(input);

    let [m_state, d_state] = run_both(&m, &d, "target-jsonl");
    let (m_rows, d_rows) = (rows(&m), rows(&d));
    assert_eq!(d_rows, m_rows, "dsm's target output differs from Meltano's");
    assert_eq!(d_state, m_state, "dsm's saved state differs from Meltano's");
    // And both are what the plugins are meant to produce, so a run that loses everything in
    // both tools still fails here.
    let a = input.join("a.csv").display().to_string();
    assert_eq!(
        d_rows[0],
        json!({"id": "1", "name": "Ada", "score": "1.5", "_sdc_last_modified": "2024-01-01T00:00:00+00:00",
               "_sdc_filename": a, "_sdc_stream": "people", "_sdc_worksheet": null})
    );
    assert_eq!(d_rows.len(), 2, "{d_rows:?}");
    assert_eq!(d_state, state_at("2024-01-01T00:00:00+00:00"));

    // Incremental: a new file arrives (2024-02-01T00:00:00Z). The tap gets the saved state and
    // skips `a.csv` (no newer than the bookmark), so each target appends only the new row.
    input_file(input, "b.csv", "id,name,score\n3,Cy,3.25\n", 1_706_745_600);
    let [m_state, d_state] = run_both(&m, &d, "target-jsonl");
    let (m_rows, d_rows) = (rows(&m), rows(&d));
    assert_eq!(
        d_rows, m_rows,
        "dsm's target output differs from Meltano's after the incremental run"
    );
    assert_eq!(
        d_state, m_state,
        "dsm's saved state differs from Meltano's after the incremental run"
    );
    let ids: Vec<&Value> = d_rows.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&json!("1"), &json!("2"), &json!("3")]);
    assert_eq!(d_state, state_at("2024-02-01T00:00:00+00:00"));
}

#[test]
fn real_tap_spreadsheets_to_sdk_target_csv_matches_meltano_run_output_and_state() {
    let input_dir = tempfile::tempdir().expect("temp dir");
    let input = input_dir.path();
    input_file(
        input,
        "a.csv",
        "id,name,score\n1,Ada,1.5\n2,Bo,2\n",
        1_704_067_200,
    );
    let (m, d) = projects(input);
    let csv = "output/people.csv";

    let [m_state, d_state] = run_both(&m, &d, "target-csv");
    assert_eq!(d.read(csv), m.read(csv), "dsm's CSV differs from Meltano's");
    assert_eq!(d_state, m_state, "dsm's saved state differs from Meltano's");
    let a = input.join("a.csv").display().to_string();
    assert_eq!(
        d.read(csv),
        format!(
            "id,name,score,_sdc_last_modified,_sdc_filename,_sdc_stream,_sdc_worksheet\r\n\
             1,Ada,1.5,2024-01-01 00:00:00+00:00,{a},people,\r\n\
             2,Bo,2,2024-01-01 00:00:00+00:00,{a},people,\r\n"
        )
    );
    assert_eq!(d_state, state_at("2024-01-01T00:00:00+00:00"));

    // The SDK target writes date-times its own way (a space, not `T`), and replaces its file
    // on each run: after the incremental run it holds only
    // the row of the new file, in both projects.
    input_file(input, "b.csv", "id,name,score\n3,Cy,3.25\n", 1_706_745_600);
    let [m_state, d_state] = run_both(&m, &d, "target-csv");
    assert_eq!(
        d.read(csv),
        m.read(csv),
        "dsm's CSV differs from Meltano's after the incremental run"
    );
    assert_eq!(
        d_state, m_state,
        "dsm's saved state differs from Meltano's after the incremental run"
    );
    let b = input.join("b.csv").display().to_string();
    assert!(
        d.read(csv).ends_with(&format!(
            "\r\n3,Cy,3.25,2024-02-01 00:00:00+00:00,{b},people,\r\n"
        )),
        "{}",
        d.read(csv)
    );
    assert_eq!(d.read(csv).lines().count(), 2, "{}", d.read(csv));
    assert_eq!(d_state, state_at("2024-02-01T00:00:00+00:00"));

    // `--full-refresh`: the saved state is ignored, both files are read again, and the state
    // saved afterwards is the same.
    let [m_state, d_state] = run_both_with(&m, &d, "target-csv", &["--full-refresh"]);
    assert_eq!(
        d.read(csv),
        m.read(csv),
        "dsm's CSV differs from Meltano's after a full refresh"
    );
    assert_eq!(d_state, m_state, "state after a full refresh");
    assert_eq!(d.read(csv).lines().count(), 4, "{}", d.read(csv));
    assert_eq!(d_state, state_at("2024-02-01T00:00:00+00:00"));
}

#[test]
fn real_sdk_tap_honours_the_selection_dsm_puts_in_its_catalog_as_under_meltano() {
    let input_dir = tempfile::tempdir().expect("temp dir");
    let input = input_dir.path();
    input_file(
        input,
        "a.csv",
        "id,name,score\n1,Ada,1.5\n2,Bo,2\n",
        1_704_067_200,
    );
    let (m, d) = projects(input);

    let [m_state, d_state] = run_pair(&m, &d, "tap-people-names", "target-jsonl", &[]);
    let (m_rows, d_rows) = (rows(&m), rows(&d));
    assert_eq!(d_rows, m_rows, "dsm's target output differs from Meltano's");
    assert_eq!(d_state, m_state, "dsm's saved state differs from Meltano's");
    // Only the selected properties reach the target (`score` and the unselected `_sdc_*`
    // columns are left out by the tap itself).
    assert_eq!(
        d_rows,
        [
            json!({"id": "1", "name": "Ada", "_sdc_last_modified": "2024-01-01T00:00:00+00:00"}),
            json!({"id": "2", "name": "Bo", "_sdc_last_modified": "2024-01-01T00:00:00+00:00"}),
        ]
    );
    assert_eq!(d_state, state_at("2024-01-01T00:00:00+00:00"));
}

#[test]
fn a_real_loader_that_fails_keeps_the_last_saved_state_as_under_meltano() {
    let input_dir = tempfile::tempdir().expect("temp dir");
    let input = input_dir.path();
    input_file(input, "a.csv", "id,name,score\n1,Ada,1.5\n", 1_704_067_200);
    let (m, d) = projects(input);
    let [m_state, d_state] = run_both(&m, &d, "target-csv");
    assert_eq!(d_state, m_state);

    // A new file arrives, but the target cannot write: its output directory is a plain file.
    // It fails after the tap has sent the new row and its STATE; neither tool may save that
    // state, or the row would be skipped next time.
    input_file(input, "b.csv", "id,name,score\n3,Cy,3.25\n", 1_706_745_600);
    for p in [&m, &d] {
        p.write("blocker", "not a directory\n");
        let yml = p
            .read("meltano.yml")
            .replace("output_path: output\n", "output_path: blocker/out\n");
        p.write("meltano.yml", &yml);
    }
    let state_id = "dev:tap-spreadsheets-to-target-csv";
    let m_out = meltano(&m, &["run", "tap-spreadsheets", "target-csv"]);
    let d_out = d.dsm(&["run", "tap-spreadsheets", "target-csv"]);
    assert_eq!(m_out.code, 1, "meltano run:\n{}", m_out.stderr);
    assert_eq!(d_out.code, 1, "dsm run:\n{}", d_out.stderr);
    assert!(
        d_out
            .stderr
            .contains("error: loader `target-csv` exited with status 1"),
        "{}",
        d_out.stderr
    );
    assert!(
        d_out.stderr.contains("NotADirectoryError"),
        "{}",
        d_out.stderr
    );
    let m_state = ok(
        meltano(&m, &["state", "get", state_id]),
        "meltano state get",
    )
    .json();
    let d_state = ok(d.dsm(&["state", "get", state_id]), "dsm state get").json();
    assert_eq!(d_state, m_state, "state after the failed run");
    assert_eq!(d_state, state_at("2024-01-01T00:00:00+00:00"));
}

/// Decimal arithmetic in a stream map: the Singer SDK reads a record's fraction numbers as
/// `Decimal`, so the real `meltano-map-transform` computes them exactly. dsm's native mapping
/// of the same records must give the same values, digit for digit (`1999.00`, not
/// `1998.9999999999998`).
#[test]
fn decimal_arithmetic_in_a_mapping_matches_the_real_map_transformer() {
    const ORDERS: &str = r#"{"id": 1, "amount": 19.99, "rate": 0.075, "qty": 3, "neg": -7.5}
{"id": 2, "amount": 0.10, "rate": 0.2, "qty": 7, "neg": -0.30}
{"id": 3, "amount": 1234567.891, "rate": 0.0001, "qty": 12, "neg": -100.000}
"#;
    let maps = json!({"orders": {
        "cents": "amount * 100",
        "each": "amount / qty",
        "taxed": "amount + amount * rate",
        "floor": "neg // 2",
        "rest": "neg % 2",
        "square": "amount ** 2",
        "zero": "amount - amount",
        "whole": "int(neg)",
        "text": "str(amount * qty)",
        "approx": "float(amount) * 1.5",
        "big": "amount > 19.9"
    }});

    // The real mapper, on the lines dsm's tap-jsonl would send it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.json");
    std::fs::write(&config, json!({"stream_maps": maps}).to_string()).expect("write config");
    let schema = json!({"type": "SCHEMA", "stream": "orders", "key_properties": ["id"],
        "schema": {"type": "object", "properties": {
            "id": {"type": "integer"}, "amount": {"type": "number"},
            "rate": {"type": "number"}, "qty": {"type": "integer"},
            "neg": {"type": "number"}}}});
    let mut input = format!("{schema}\n");
    for line in ORDERS.lines() {
        input.push_str(&format!(
            r#"{{"type": "RECORD", "stream": "orders", "record": {line}}}"#
        ));
        input.push('\n');
    }
    let mut cmd = Command::new(plugin("meltano-map-transform"));
    cmd.arg("--config").arg(&config);
    clean_env(&mut cmd);
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start meltano-map-transform");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("feed the mapper");
    }
    let out = child.wait_with_output().expect("the mapper ends");
    assert!(
        out.status.success(),
        "meltano-map-transform failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
            .filter(|m| m["type"] == "RECORD")
            .map(|m| m["record"].clone())
            .collect()
    };
    let theirs = records(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(theirs.len(), 3, "{}", String::from_utf8_lossy(&out.stdout));
    // A spot check that the SDK did keep the decimals exact, so the comparison means something.
    assert_eq!(theirs[0]["cents"].to_string(), "1999.00");

    // dsm: the built-in tap-jsonl, the same maps as a mapping run natively, a recording target.
    let p = TestProject::new(&format!(
        r#"plugins:
  extractors:
  - name: tap-jsonl
    variant: dsm
    config:
      files:
      - entity: orders
        path: orders.jsonl
        keys: [id]
        schema: {schema}
  mappers:
  - name: meltano-map-transformer
    variant: meltano
    executable: ./no-such-dir/meltano-map-transform
    mappings:
    - name: money
      config:
        stream_maps: {maps}
  loaders:
  - name: target-fake
    namespace: target_fake
    executable: ./target.sh
"#,
        schema = schema["schema"],
    ));
    p.write("orders.jsonl", ORDERS);
    script(
        &p,
        "target.sh",
        &format!(
            "exec {} \"$@\" --output \"$MELTANO_PROJECT_ROOT/out.jsonl\"\n",
            env!("CARGO_BIN_EXE_dsm-fake-target")
        ),
    );
    let out = p.dsm(&["run", "tap-jsonl", "money", "target-fake"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ours = records(&p.read("out.jsonl"));
    // Compared as text: serde_json here keeps each number's digits.
    let text = |v: &[Value]| v.iter().map(Value::to_string).collect::<Vec<_>>();
    assert_eq!(text(&ours), text(&theirs));
}

// Issue 30: `dsm config list` shows what Meltano's does: per setting, the variable that sets it,
// the default where the value differs, and the value as written where `$VAR` expansion changed it.
#[test]
fn config_list_shows_what_meltano_config_list_shows() {
    let p = TestProject::new(
        "\
project_id: cfg
plugins:
  extractors:
  - name: tap-x
    namespace: tap_x
    executable: /bin/true
    settings:
    - name: host
      value: localhost
    - name: port
      kind: integer
      value: 5432
    - name: path
    - name: user
    config:
      path: $DATA_DIR/in
      port: 6000
",
    );
    let mut cmd = p.command(&["config", "list", "tap-x"]);
    cmd.env("DATA_DIR", "/srv");
    let dsm = ok(run(cmd), "dsm config list");
    let mut cmd = Command::new(meltano_venv().join("bin/meltano"));
    cmd.args(["config", "list", "tap-x", "--all"])
        .current_dir(p.root());
    clean_env(&mut cmd);
    cmd.env("DATA_DIR", "/srv")
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false");
    let meltano = ok(run(cmd), "meltano config list");
    // `name [env: VARS] (default: D) current value: V (from PLACE: RAW)`, as each prints it.
    let line_re = regex::Regex::new(
        r"^(\w+) \[env: ([^\]]+)\]( \(default: [^)]*\))? current value: .*?(\(from [^:)]+(: .*)?\))?$",
    )
    .unwrap();
    let facts = |text: &str| -> std::collections::BTreeMap<String, (Vec<String>, bool, bool)> {
        text.lines()
            .filter_map(|l| line_re.captures(l))
            .map(|c| {
                let vars = c[2].split(", ").map(str::to_string).collect();
                (
                    c[1].to_string(),
                    (vars, c.get(3).is_some(), c.get(5).is_some()),
                )
            })
            .collect()
    };
    let (d, m) = (facts(&dsm.stdout), facts(&meltano.stdout));
    assert_eq!(
        d.keys().collect::<Vec<_>>(),
        m.keys().collect::<Vec<_>>(),
        "dsm:\n{}\nmeltano:\n{}",
        dsm.stdout,
        meltano.stdout
    );
    for (name, (m_vars, m_default, m_raw)) in &m {
        let (d_vars, d_default, d_raw) = &d[name];
        for v in m_vars {
            assert!(d_vars.contains(v), "`{name}`: dsm lacks {v}: {d_vars:?}");
        }
        assert_eq!(d_default, m_default, "`{name}` default shown");
        assert_eq!(d_raw, m_raw, "`{name}` raw value shown");
    }
    assert!(m["path"].2 && m["port"].1, "{}", meltano.stdout);
}

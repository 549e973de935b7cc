//! Issue 20: property tests (fixed case counts, so CI stays short) of the parsers that take
//! untrusted input and had none: `meltano.yml` loading (YAML alias bombs included), export
//! bundles, and webhook signature checks. The HTTP API's request bodies are tested against a
//! real server in `tests/serve/properties.rs`; the envelope scanner, stream-map expressions and
//! select patterns have theirs beside their code.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dsm::project::Project;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

const VALID_YML: &str = "\
version: 1
project_id: props
default_environment: dev
environments:
- name: dev
  config:
    plugins:
      extractors:
      - name: tap-csv
        config: {infer_rows: 10}
plugins:
  extractors:
  - name: tap-csv
    variant: dsm
    select: [users.*, '!users.secret']
    config:
      files: [{entity: users, path: users.csv, keys: [id]}]
  loaders:
  - name: target-jsonl
    variant: dsm
    config: {destination_path: out}
jobs:
- name: daily
  tasks: [tap-csv target-jsonl]
schedules:
- name: nightly
  job: daily
  interval: '0 3 * * *'
";

/// Loads `text` as the main file of a project in an empty folder; an error is fine, a panic is
/// not (the test runner reports it with the input).
fn load(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    Project::load_with_main(dir.path(), text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn issue_20_a_valid_project_loads() {
    // The mutations below start from a file that loads, so they test more than the parser.
    load(VALID_YML).unwrap();
}

#[test]
fn issue_20_meltano_yml_mutations_are_errors_or_projects_never_panics() {
    let lines: Vec<&str> = VALID_YML.lines().collect();
    let n = lines.len();
    let mutation = prop_oneof![
        // A line replaced by anything.
        (0..n, "\\PC{0,40}").prop_map(|(i, s)| (i, Some(s), 0usize)),
        // A line removed.
        (0..n).prop_map(|i| (i, None, 0usize)),
        // A line indented differently.
        (0..n, 1usize..6).prop_map(|(i, k)| (i, None, k)),
    ];
    runner(256)
        .run(&prop::collection::vec(mutation, 1..4), |mutations| {
            let mut lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
            for (i, replacement, indent) in mutations {
                let i = i % lines.len().max(1);
                match (replacement, indent) {
                    (Some(s), _) => lines[i] = s,
                    (None, 0) if lines.len() > 1 => {
                        lines.remove(i);
                    }
                    (None, k) => lines[i] = format!("{}{}", " ".repeat(k), lines[i]),
                }
            }
            let _ = load(&lines.join("\n"));
            Ok(())
        })
        .unwrap();
}

#[test]
fn issue_20_random_text_as_meltano_yml_never_panics() {
    // YAML-ish characters, so the parser sees anchors, aliases, tags, flow and block syntax.
    let text = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "&a ",
                "*a",
                "<<: ",
                "!!str ",
                "!!binary ",
                "- ",
                ": ",
                "{",
                "}",
                "[",
                "]",
                ",",
                "\n",
                "\n  ",
                "'",
                "\"",
                "#",
                "|\n",
                ">-\n",
                "---\n",
                "...\n",
                "? ",
                "%YAML 1.2\n",
                "plugins:",
                "extractors:",
                "name: ",
                "version: 1",
                "~",
                "1e400",
                "-0x1F",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,6}",
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat());
    runner(512)
        .run(&text, |t| {
            let _ = load(&t);
            Ok(())
        })
        .unwrap();
}

/// A billion laughs: each level refers to the one before ten times.
fn alias_bomb(levels: usize) -> String {
    let mut s = String::from(
        "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
    );
    for i in 1..levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s
}

#[test]
fn issue_20_yaml_alias_bombs_are_errors_fast() {
    for (what, text) in [
        ("at the top level", alias_bomb(10)),
        (
            "inside a plugin's config",
            format!(
                "version: 1\nplugins:\n  extractors:\n  - name: tap-csv\n    variant: dsm\n    config:\n{}",
                alias_bomb(10)
                    .lines()
                    .map(|l| format!("      {l}\n"))
                    .collect::<String>()
            ),
        ),
        ("as a merge key chain", {
            let mut s = String::from("b0: &b0 {x: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n");
            for i in 1..30 {
                s.push_str(&format!(
                    "b{i}: &b{i} {{<<: *b{}, y{i}: [*b{}, *b{}, *b{}]}}\n",
                    i - 1,
                    i - 1,
                    i - 1,
                    i - 1
                ));
            }
            s
        }),
    ] {
        let start = Instant::now();
        let result = load(&text);
        let took = start.elapsed();
        // 10^10 strings expanded would take minutes and all the memory there is.
        assert!(
            took < Duration::from_secs(5),
            "{what}: the alias bomb took {took:?}"
        );
        let message = result.expect_err(what);
        assert!(message.contains("meltano.yml"), "{what}: {message}");
    }
}

#[test]
fn issue_20_deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [1_000usize, 100_000] {
        let flow = format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let block: String = (0..depth.min(5_000))
            .map(|i| format!("{}- \n", "  ".repeat(i)))
            .collect();
        for text in [flow, block] {
            // Either it loads (a shallow case) or it is an error; a stack overflow would abort
            // the whole test binary. The caller's stack is small on purpose (a blocking thread
            // of `dsm serve` has 2 MiB; a debug build needs more than that for the deepest
            // document the parser's budget allows): parsing must not depend on it.
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || drop(load(&text)))
                .unwrap()
                .join()
                .unwrap();
        }
    }
}

// --- export bundles, through `dsm import` -------------------------------------------------

/// Bytes that print as text, cut short, when a case fails (a bundle is large).
#[derive(Clone)]
struct Shown(Vec<u8>);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let head: String = text.chars().take(300).collect();
        let tail: String = text
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(f, "{} bytes: {head:?} ... {tail:?}", self.0.len())
    }
}

/// A fresh project with a master key; `dsm import` restores into it.
fn fresh(key: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meltano.yml"),
        "version: 1\nproject_id: props\n",
    )
    .unwrap();
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    dir
}

fn dsm(dir: &Path, key: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsm"));
    for (k, _) in std::env::vars() {
        if ["TAP_", "TARGET_", "MELTANO_", "DSM_"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .current_dir(dir)
        .env("DSM_DATABASE_URI", dir.join(".dsm/dsm.db"))
        .env("DSM_MASTER_KEY_FILE", key)
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real bundle, exported from a project with a secret and some history.
fn exported(key: &Path) -> Vec<u8> {
    let dir = fresh(key);
    let k = key.to_str().unwrap();
    assert_eq!(
        dsm(dir.path(), key, &["secrets", "init", "--key-file", k]).0,
        0
    );
    let (code, err) = dsm(
        dir.path(),
        key,
        &["tokens", "create", "ops", "--role", "admin"],
    );
    assert_eq!(code, 0, "{err}");
    let out = dir.path().join("b.json");
    let (code, err) = dsm(
        dir.path(),
        key,
        &["export", "--output", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    std::fs::read(out).unwrap()
}

#[test]
fn issue_20_damaged_bundles_are_refused_cleanly() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("master.key");
    let bundle = exported(&key);
    // The bundle as exported imports (so the refusals below are about the damage).
    let dir = fresh(&key);
    std::fs::write(dir.path().join("b.json"), &bundle).unwrap();
    let (code, err) = dsm(dir.path(), &key, &["import", "b.json"]);
    assert_eq!(code, 0, "{err}");

    let damage = prop_oneof![
        // Bytes flipped anywhere.
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4).prop_map({
            let bundle = bundle.clone();
            move |flips| {
                let mut b = bundle.clone();
                for (i, x) in flips {
                    let i = i.index(b.len());
                    b[i] ^= x;
                }
                b
            }
        }),
        // Cut short.
        any::<prop::sample::Index>().prop_map({
            let bundle = bundle.clone();
            move |i| bundle[..i.index(bundle.len())].to_vec()
        }),
        // A JSON field replaced.
        (
            prop::sample::select(vec![
                "format", "version", "mac", "database", "sha256", "secrets", "created_at",
                "dsm_version", "labels",
            ]),
            prop_oneof![
                Just(serde_json::Value::Null),
                Just(serde_json::json!(2)),
                Just(serde_json::json!("")),
                Just(serde_json::json!({"salt": "AAAA", "m_cost": 4294967295u32, "t_cost": 4294967295u32, "p_cost": 255})),
                "\\PC{0,40}".prop_map(serde_json::Value::String),
            ],
        )
            .prop_map({
                let bundle = bundle.clone();
                move |(field, value)| {
                    let mut doc: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
                    doc[field] = value;
                    serde_json::to_vec(&doc).unwrap()
                }
            }),
        // Random bytes.
        prop::collection::vec(any::<u8>(), 0..200),
    ];
    runner(48)
        .run(&damage.prop_map(Shown), |Shown(damaged)| {
            // Damage JSON ignores (whitespace turned into other whitespace) leaves the bundle.
            let original: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
            prop_assume!(
                serde_json::from_slice::<serde_json::Value>(&damaged).ok() != Some(original)
            );
            let dir = fresh(&key);
            std::fs::write(dir.path().join("b.json"), &damaged).unwrap();
            let start = Instant::now();
            let (code, err) = dsm(dir.path(), &key, &["import", "b.json"]);
            prop_assert!(
                start.elapsed() < Duration::from_secs(20),
                "took {:?}",
                start.elapsed()
            );
            // Refused as bad input (exit 2), with a message, never a panic (101) or success.
            prop_assert_eq!(code, 2, "{}", err);
            prop_assert!(err.starts_with("error: "), "{}", err);
            prop_assert!(!err.contains("panicked"), "{}", err);
            // Nothing half-restored: the store holds no run, secret or audit entry.
            let db = dir.path().join(".dsm/dsm.db");
            if db.exists() {
                let (code, _) = dsm(dir.path(), &key, &["store", "status"]);
                prop_assert!(code == 0 || code == 2);
            }
            Ok(())
        })
        .unwrap();
}

// --- webhook signatures ------------------------------------------------------------------

#[test]
fn issue_20_webhook_signatures_hold_only_for_the_signed_body() {
    let case = (
        prop::collection::vec(any::<u8>(), 1..64),
        prop::collection::vec(any::<u8>(), 0..400),
        -299i64..299,
        any::<prop::sample::Index>(),
        1u8..=255,
    );
    let now = 1_800_000_000i64;
    runner(512)
        .run(&case, |(secret, body, skew, at, flip)| {
            let ts = now + skew;
            let sig = dsm::webhooks::sign(&secret, ts, &body);
            let ts_text = ts.to_string();
            prop_assert!(
                dsm::webhooks::verify(&secret, Some(&ts_text), Some(&sig), &body, now).is_ok()
            );
            // A changed body, another secret or another timestamp fails.
            if !body.is_empty() {
                let mut changed = body.clone();
                let i = at.index(changed.len());
                changed[i] ^= flip;
                prop_assert!(
                    dsm::webhooks::verify(&secret, Some(&ts_text), Some(&sig), &changed, now)
                        .is_err()
                );
            }
            let mut other = secret.clone();
            other[0] ^= flip;
            prop_assert!(
                dsm::webhooks::verify(&other, Some(&ts_text), Some(&sig), &body, now).is_err()
            );
            let later = (ts + 1).to_string();
            prop_assert!(
                dsm::webhooks::verify(&secret, Some(&later), Some(&sig), &body, now).is_err()
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn issue_20_webhook_headers_of_any_shape_are_refused_without_panic() {
    let header = prop_oneof![
        Just(None),
        "\\PC{0,100}".prop_map(Some),
        "[0-9]{0,30}".prop_map(Some),
        "sha256=[0-9a-fA-F]{0,70}".prop_map(Some),
    ];
    runner(512)
        .run(
            &(
                header.clone(),
                header,
                prop::collection::vec(any::<u8>(), 0..64),
            ),
            |(ts, sig, body)| {
                let r = dsm::webhooks::verify(
                    b"secret",
                    ts.as_deref(),
                    sig.as_deref(),
                    &body,
                    1_800_000_000,
                );
                // A random signature never verifies (2^-256).
                prop_assert!(r.is_err());
                Ok(())
            },
        )
        .unwrap();
}

//! Merged streams through the `dsm` binary: three real built-in taps (`tap-csv`, `tap-jsonl`)
//! feeding the built-in `target-sqlite`, one `dsm run` per source, with every rule.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::{Output, TestProject};

const CRM: &str = "\
id,name,email,revenue,employees,updated_at,tier,segment,founded,phone,country,status
1,Acme CRM,acme@crm,100,50,2024-01-01T00:00:00Z,gold,smb,1990,+1-crm,FR,active
2,Beta CRM,beta@crm,200,20,2024-03-01T00:00:00Z,silver,ent,2001,+2-crm,DE,active
3,Gamma CRM,,300,30,2024-01-01T00:00:00Z,bronze,smb,1985,+3-crm,US,active
5,Eps CRM,eps@crm,500,5,2024-01-01T00:00:00Z,gold,smb,2010,+5-crm,UK,active
";

/// Field names differ from the common ones: `company_id` → `id`, `title` → `name`.
const API: &str = r#"{"company_id": 1, "title": "Acme API", "email": null, "revenue": 150, "employees": 40, "updated_at": "2024-02-01T00:00:00Z", "tier": "platinum", "segment": "mid", "founded": 1991, "phone": "+1-api", "country": "FR", "status": "active"}
{"company_id": 2, "title": "Beta API", "email": "beta@api", "revenue": 100, "employees": 25, "updated_at": "2024-03-01T00:00:00Z", "tier": "bronze", "segment": "smb", "founded": 2002, "phone": "+2-api", "country": "DE", "status": "active"}
{"company_id": 3, "title": "Gamma API", "email": null, "revenue": 250, "employees": 35, "updated_at": "2024-01-01T00:00:00Z", "tier": "aaa", "segment": "x", "founded": 1986, "phone": "+3-api", "country": "US", "status": "closed"}
{"company_id": 4, "title": "Delta API", "email": "d@api", "revenue": 10, "employees": 4, "updated_at": "2024-04-01T00:00:00Z", "tier": "t-api", "segment": "s-api", "founded": 2020, "phone": "+4-api", "country": "NL", "status": "active"}
"#;

const MANUAL: &str = r#"{"id": 1, "name": "Acme Manual", "email": "acme@manual", "revenue": 120, "updated_at": "2024-02-01T00:00:00Z", "tier": "diamond", "phone": "+1-man"}
{"id": 4, "name": "Delta Manual", "email": null, "revenue": 400, "updated_at": "2024-05-01T00:00:00Z", "tier": "t-man", "phone": "+4-man"}
"#;

/// Every rule: priority (the default), coalesce, max, min, latest with both tie-breaks,
/// first, last, fail and quarantine, as field-level overrides.
const EVERY_RULE: &str = "      policy: priority
      fields:
        email: coalesce
        revenue: max
        employees: min
        tier: {rule: latest, field: updated_at, tie_break: value}
        segment: {rule: latest, field: updated_at}
        founded: first
        phone: last
        country: fail
        status: quarantine
";

/// The same without the arrival-based rules (`first`, `last`) and with sources that agree on
/// the `quarantine` field: the result must not depend on the order of the runs.
const ORDER_FREE: &str = "      policy: priority
      fields:
        email: coalesce
        revenue: max
        employees: min
        tier: {rule: latest, field: updated_at, tie_break: value}
        segment: {rule: latest, field: updated_at}
        founded: min
        phone: coalesce
        country: fail
        status: quarantine
";

fn yml(rules: &str, extra_loaders: &str) -> String {
    format!(
        "version: 1
default_environment: dev
environments:
- name: dev
annotations:
  dsm:
    merged_streams:
    - name: companies
      key: [id]
      sources:
      - {{extractor: tap-crm, stream: crm}}
      - {{extractor: tap-api, stream: api, fields: {{company_id: id, title: name}}}}
      - {{extractor: tap-manual, stream: manual, name: manual}}
      priority: [tap-api, manual, tap-crm]
{rules}plugins:
  extractors:
  - name: tap-crm
    variant: dsm
    executable: tap-csv
    capabilities: [catalog, discover, state]
    config:
      files: [{{entity: crm, path: data/crm.csv, keys: [id]}}]
  - name: tap-api
    variant: dsm
    executable: tap-jsonl
    capabilities: [catalog, discover, state]
    config:
      files: [{{entity: api, path: data/api.jsonl, keys: [company_id]}}]
  - name: tap-manual
    variant: dsm
    executable: tap-jsonl
    capabilities: [catalog, discover, state]
    config:
      files: [{{entity: manual, path: data/manual.jsonl, keys: [id]}}]
  loaders:
  - name: target-sqlite
    variant: dsm
    config:
      database: out.db
{extra_loaders}"
    )
}

fn project(rules: &str, api: &str) -> TestProject {
    let p = TestProject::new(&yml(rules, ""));
    p.write("data/crm.csv", CRM);
    p.write("data/api.jsonl", api);
    p.write("data/manual.jsonl", MANUAL);
    p
}

fn run(p: &TestProject, tap: &str) -> Output {
    let out = p.dsm(&["run", tap, "target-sqlite"]);
    assert_eq!(out.code, 0, "dsm run {tap}: {}", out.stderr);
    out
}

type Table = BTreeMap<i64, BTreeMap<String, Value>>;

/// The merged table by id, as column → value (column order depends on which source created
/// the table first, so it is not compared); `_sdc` bookkeeping columns are left out.
fn table(p: &TestProject) -> Table {
    let db = rusqlite::Connection::open(p.root().join("out.db")).expect("the target database");
    let mut stmt = db.prepare("SELECT * FROM companies").expect("the table");
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = stmt.query([]).expect("query");
    let mut out = Table::new();
    while let Some(r) = rows.next().expect("row") {
        let mut row = BTreeMap::new();
        for (i, n) in names.iter().enumerate() {
            if n.starts_with("_sdc") {
                continue;
            }
            let v = match r.get_ref(i).expect("value") {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(x) => json!(x),
                rusqlite::types::ValueRef::Real(x) => json!(x),
                rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                rusqlite::types::ValueRef::Blob(_) => panic!("blob in column {n}"),
            };
            row.insert(n.clone(), v);
        }
        let id = row["id"].as_i64().expect("integer id");
        out.insert(id, row);
    }
    out
}

fn row(v: Value) -> BTreeMap<String, Value> {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The merged-stream counts of the last run, from `dsm runs show --format json`.
fn last_run_counts(p: &TestProject) -> Vec<Value> {
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let id = runs[0]["run_id"].as_str().expect("run id").to_owned();
    let shown = p.dsm(&["runs", "show", &id, "--format", "json"]).json();
    shown["merged_streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn crm_only_gamma() -> BTreeMap<String, Value> {
    row(
        json!({"id": 3, "name": "Gamma CRM", "email": null, "revenue": 300, "employees": 30,
        "updated_at": "2024-01-01T00:00:00Z", "tier": "bronze", "segment": "smb", "founded": 1985,
        "phone": "+3-crm", "country": "US", "status": "active"}),
    )
}

#[test]
fn three_sources_resolve_every_rule_with_field_overrides() {
    let p = project(EVERY_RULE, API);
    run(&p, "tap-crm");
    run(&p, "tap-api");
    run(&p, "tap-manual");

    let got = table(&p);
    let expected: Table = [
        // name by priority (api), email coalesced past api's null to manual, revenue max,
        // employees min (manual has none), tier latest with api and manual tied on updated_at:
        // the greater value wins; segment latest (manual has none); founded first (crm ran
        // first); phone last (manual ran last); country and status agree.
        json!({"id": 1, "name": "Acme API", "email": "acme@manual", "revenue": 150, "employees": 40,
            "updated_at": "2024-02-01T00:00:00Z", "tier": "platinum", "segment": "mid", "founded": 1990,
            "phone": "+1-man", "country": "FR", "status": "active"}),
        // updated_at ties between crm and api: tier by value (silver > bronze), segment by
        // priority (api).
        json!({"id": 2, "name": "Beta API", "email": "beta@api", "revenue": 200, "employees": 20,
            "updated_at": "2024-03-01T00:00:00Z", "tier": "silver", "segment": "smb", "founded": 2001,
            "phone": "+2-api", "country": "DE", "status": "active"}),
        // Sent from crm alone, then quarantined when api disagreed on `status`: the target
        // keeps the last good record.
        serde_json::to_value(crm_only_gamma()).unwrap(),
        json!({"id": 4, "name": "Delta API", "email": "d@api", "revenue": 400, "employees": 4,
            "updated_at": "2024-04-01T00:00:00Z", "tier": "t-man", "segment": "s-api", "founded": 2020,
            "phone": "+4-man", "country": "NL", "status": "active"}),
        json!({"id": 5, "name": "Eps CRM", "email": "eps@crm", "revenue": 500, "employees": 5,
            "updated_at": "2024-01-01T00:00:00Z", "tier": "gold", "segment": "smb", "founded": 2010,
            "phone": "+5-crm", "country": "UK", "status": "active"}),
    ]
    .into_iter()
    .map(|v| (v["id"].as_i64().unwrap(), row(v)))
    .collect();
    assert_eq!(got, expected);

    // The quarantine is in the conflict log, with the candidates of both sources.
    let log = p
        .dsm(&[
            "conflicts",
            "list",
            "--stream",
            "companies",
            "--format",
            "json",
        ])
        .json();
    let quarantined: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "quarantined")
        .collect();
    assert_eq!(quarantined.len(), 1, "{log:#}");
    assert_eq!(quarantined[0]["key"], json!([3]));
    assert_eq!(quarantined[0]["field"], "status");
    assert_eq!(
        quarantined[0]["candidates"],
        json!({"tap-api": "closed", "tap-crm": "active"})
    );
    // Key 3 was held back, so none of its other disagreements names a winner (issue 21).
    let of_three: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["key"] == json!([3]) && e["field"] != "status")
        .collect();
    assert!(!of_three.is_empty(), "{log:#}");
    for e in &of_three {
        assert_eq!(e["outcome"], "held", "{e}");
        assert!(
            e["winner"].is_null() && e["winning_source"].is_null(),
            "{e}"
        );
    }
    // Keys that were sent keep their winners.
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["key"] == json!([1])
                && e["outcome"] == "resolved"
                && !e["winner"].is_null()),
        "{log:#}"
    );

    // The run history counts what the last run did to the merged stream.
    let counts = last_run_counts(&p);
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0]["source"], "manual");
    assert_eq!(counts[0]["records_in"], 2);
    assert_eq!(counts[0]["emitted"], 2);
    assert!(counts[0]["conflicts"].as_u64().unwrap() >= 4, "{counts:?}");
    let text = p.dsm(&["runs", "list", "--format", "json"]).json();
    let id = text[1]["run_id"].as_str().unwrap().to_owned();
    let shown = p.dsm(&["runs", "show", &id]);
    assert!(
        shown.stdout.contains("MERGED STREAM") && shown.stdout.contains("tap-api"),
        "{}",
        shown.stdout
    );
}

#[test]
fn the_final_table_is_the_same_in_every_order_of_the_sources() {
    // Agreeing `status` for key 3, so the quarantine rule holds nothing back.
    let api = API.replace(r#""status": "closed""#, r#""status": "active""#);
    let orders = [
        ["tap-crm", "tap-api", "tap-manual"],
        ["tap-crm", "tap-manual", "tap-api"],
        ["tap-api", "tap-crm", "tap-manual"],
        ["tap-api", "tap-manual", "tap-crm"],
        ["tap-manual", "tap-crm", "tap-api"],
        ["tap-manual", "tap-api", "tap-crm"],
    ];
    let mut first: Option<Table> = None;
    for order in orders {
        let p = project(ORDER_FREE, &api);
        for tap in order {
            run(&p, tap);
        }
        let t = table(&p);
        assert_eq!(t.len(), 5, "{order:?}");
        match &first {
            None => first = Some(t),
            Some(f) => assert_eq!(&t, f, "order {order:?}"),
        }
    }
    let t = first.unwrap();
    assert_eq!(t[&1]["founded"], json!(1990), "min over crm and api");
    assert_eq!(t[&3]["status"], json!("active"));
}

#[test]
fn replaying_the_same_input_sends_nothing() {
    let p = project(EVERY_RULE, API);
    run(&p, "tap-crm");
    run(&p, "tap-api");
    let before = table(&p);
    let counts = last_run_counts(&p);
    assert_eq!(
        counts[0]["emitted"], 3,
        "keys 1, 2 and 4 changed: {counts:?}"
    );

    run(&p, "tap-api");
    let counts = last_run_counts(&p);
    assert_eq!(counts[0]["records_in"], 4);
    assert_eq!(counts[0]["emitted"], 0, "{counts:?}");
    assert_eq!(counts[0]["unchanged"], 4, "{counts:?}");
    assert_eq!(counts[0]["conflicts"], 0, "nothing is logged twice");
    assert_eq!(table(&p), before);
}

#[test]
fn records_a_failed_run_sent_are_sent_again_by_the_next_run() {
    // A loader that takes the records and dies before confirming anything: the resolver must
    // not believe the target has them.
    let target = env!("CARGO_BIN_EXE_dsm-fake-target");
    let broken = format!(
        "  - name: target-broken
    namespace: target_broken
    executable: {target}
    config: {{}}
"
    );
    let p = TestProject::new(&yml(EVERY_RULE, &broken));
    p.write("data/crm.csv", CRM);
    p.write("data/api.jsonl", API);
    p.write("data/manual.jsonl", MANUAL);
    // `--exit-after` makes the fake target stop reading after a few lines and exit 1.
    let yml_text = p.read("meltano.yml").replace(
        &format!("executable: {target}\n"),
        "executable: ./broken.sh\n",
    );
    p.write("meltano.yml", &yml_text);
    p.write(
        "broken.sh",
        &format!("#!/bin/sh\nexec {target} \"$@\" --exit-after 3 --exit-code 1\n"),
    );
    make_executable(&p, "broken.sh");

    let out = p.dsm(&["run", "tap-crm", "target-broken"]);
    assert_eq!(out.code, 1, "{}", out.stderr);

    // The same input again, into the real target: every crm record is unchanged for the
    // resolver, yet all of them reach the table.
    run(&p, "tap-crm");
    let t = table(&p);
    assert_eq!(t.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 5], "{t:?}");
    let counts = last_run_counts(&p);
    assert_eq!(counts[0]["resent"], 4, "{counts:?}");
    assert_eq!(counts[0]["emitted"], 0, "{counts:?}");

    // Confirmed now: a third run sends nothing again.
    run(&p, "tap-crm");
    assert_eq!(last_run_counts(&p)[0]["resent"], 0);
}

fn make_executable(p: &TestProject, rel: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = p.root().join(rel);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn fail_rule_stops_the_run_naming_key_field_and_sources() {
    let p = project(
        EVERY_RULE,
        &API.replace(r#""country": "DE""#, r#""country": "AT""#),
    );
    run(&p, "tap-crm");
    let out = p.dsm(&["run", "tap-api", "target-sqlite"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "sources of merged stream `companies` disagree on field `country` of key [2]"
        ) && out.stderr.contains("\"AT\" from `tap-api`")
            && out.stderr.contains("\"DE\" from `tap-crm`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("hint: the rule for `country` is `fail`")
    );
}

/// A declaration or schema problem: exit 2 before any data reaches the target.
fn config_error(p: &TestProject, tap: &str) -> String {
    let out = p.dsm(&["run", tap, "target-sqlite"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        !p.root().join("out.db").exists(),
        "no data moved: {}",
        out.stderr
    );
    out.stderr
}

#[test]
fn incompatible_types_of_a_mapped_field_are_an_error_before_data_moves() {
    // `title` maps onto `name`; here it is a number, in the other sources a string. The other
    // sources never ran: their catalogs are discovered for the check.
    let api = API.replace(r#""title": "Acme API""#, r#""title": 7"#);
    let api = api
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut v = v.as_object().unwrap().clone();
            if !v["title"].is_number() {
                v.insert("title".into(), json!(8));
            }
            serde_json::to_string(&v).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = project(EVERY_RULE, &api);
    let err = config_error(&p, "tap-api");
    assert!(
        err.contains("field `name` of merged stream `companies` is integer in source `tap-api` but string in source"),
        "{err}"
    );
    assert!(
        err.contains("hint: map one of them onto another name"),
        "{err}"
    );
}

#[test]
fn rules_naming_unknown_fields_or_sources_are_errors_before_data_moves() {
    let p = project(&EVERY_RULE.replace("revenue: max", "revnue: max"), API);
    let err = config_error(&p, "tap-crm");
    assert!(
        err.contains(
            "the rule for field `revnue` of merged stream `companies` names unknown field `revnue`"
        ),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `revenue`?"), "{err}");

    let p = TestProject::new(
        &yml(EVERY_RULE, "").replace("[tap-api, manual, tap-crm]", "[tap-api, manuel]"),
    );
    p.write("data/crm.csv", CRM);
    let err = config_error(&p, "tap-crm");
    assert!(
        err.contains("`priority` of merged stream `companies` names unknown source `manuel`"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `manual`?"), "{err}");

    let p = TestProject::new(&yml(EVERY_RULE, "").replace(
        "{extractor: tap-manual, stream: manual, name: manual}",
        "{extractor: tap-manuel, stream: manual, name: manual}",
    ));
    p.write("data/crm.csv", CRM);
    let err = config_error(&p, "tap-crm");
    assert!(
        err.contains("extractor `tap-manuel`, which is not an extractor of this project"),
        "{err}"
    );
    assert!(err.contains("hint: did you mean `tap-manual`?"), "{err}");
}

#[test]
fn a_record_without_key_fails_the_run_or_is_skipped_as_declared() {
    // The tap declares no key, so it passes the record on; the merged stream's key is `id`.
    let manual = format!("{MANUAL}{{\"id\": null, \"name\": \"nobody\"}}\n");
    let no_tap_key = |p: &TestProject| {
        let text = p.read("meltano.yml").replace(
            "path: data/manual.jsonl, keys: [id]",
            "path: data/manual.jsonl, keys: []",
        );
        p.write("meltano.yml", &text);
        p.write("data/manual.jsonl", &manual);
    };
    let p = project(EVERY_RULE, API);
    no_tap_key(&p);
    let out = p.dsm(&["run", "tap-manual", "target-sqlite"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a record from source `manual` of merged stream `companies` has no value for key field `id`"),
        "{}",
        out.stderr
    );

    let p = project(&format!("      null_key: skip\n{EVERY_RULE}"), API);
    no_tap_key(&p);
    run(&p, "tap-manual");
    assert_eq!(table(&p).len(), 2);
    assert_eq!(last_run_counts(&p)[0]["null_keys"], 1);
}

#[test]
fn dsm_sync_runs_the_merge_stage_too() {
    let p = project(EVERY_RULE, API);
    let text = p.read("meltano.yml").replace(
        "    executable: tap-csv\n",
        "    executable: tap-csv\n    annotations: {dsm: {default_loader: target-sqlite}}\n",
    );
    p.write("meltano.yml", &text);
    let out = p.dsm(&["sync", "tap-crm"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let t = table(&p);
    assert_eq!(t[&3], crm_only_gamma());
    // The source stream itself never reaches the target: only the merged one does.
    let db = rusqlite::Connection::open(p.root().join("out.db")).unwrap();
    let crm: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'crm'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(crm, 0);
}

/// The `examples/merged-companies` project, as its README runs it: the job of its three
/// sources, then the conflict log.
#[test]
fn the_merged_companies_example_resolves_its_three_sources() {
    let p = TestProject::empty();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/merged-companies");
    crate::support::copy_dir(&example, p.root());
    let out = p.dsm(&["run", "merge-companies"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Full-table sources have no bookmark: nothing to warn about.
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert!(
        out.stderr.contains(": 1 record (manual: 1)"),
        "{}",
        out.stderr
    );

    let db = rusqlite::Connection::open(p.root().join("output/companies.db")).expect("the db");
    let rows: Vec<(i64, String, Option<String>, i64, String)> = db
        .prepare("SELECT id, name, email, revenue, country FROM companies ORDER BY id")
        .expect("the table")
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let s = |x: &str| x.to_owned();
    assert_eq!(
        rows,
        [
            // The manual name; the CRM's email (the others have none); billing's revenue (max).
            (
                1,
                s("ACME Ltd"),
                Some(s("sales@acme.example")),
                1350,
                s("GB")
            ),
            (
                2,
                s("Borealis AS"),
                Some(s("billing@borealis.example")),
                800,
                s("NO")
            ),
            // Quarantined when billing disagreed on the country: as the CRM sent it.
            (
                3,
                s("Cobalt Works"),
                Some(s("info@cobalt.example")),
                450,
                s("DE")
            ),
            (
                4,
                s("Delta Foods"),
                Some(s("hello@delta.example")),
                300,
                s("FR")
            ),
            (5, s("Ember Co"), Some(s("ap@ember.example")), 90, s("IE")),
        ]
    );
    let provenance: String = db
        .query_row(
            "SELECT _dsm_provenance FROM companies WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .expect("provenance");
    let provenance: Value = serde_json::from_str(&provenance).expect("JSON");
    assert_eq!(provenance["revenue"]["source"], "tap-billing");
    assert_eq!(provenance["name"]["source"], "tap-manual");

    let log = p.dsm(&["conflicts", "list", "--format", "json"]).json();
    let entries = log.as_array().expect("a list");
    let quarantined: Vec<(&Value, &str)> = entries
        .iter()
        .filter(|e| e["outcome"] == "quarantined")
        .map(|e| (&e["key"], e["field"].as_str().expect("a field")))
        .collect();
    assert_eq!(quarantined, [(&json!([3]), "country")]);
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).rev().collect::<Vec<_>>(),
        "one id per entry"
    );

    // Again: nothing changed, so none of the three sources' runs sends anything.
    let out = p.dsm(&["run", "merge-companies"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let runs = p.dsm(&["runs", "list", "--format", "json"]).json();
    let runs = runs.as_array().expect("a list");
    assert_eq!(runs.len(), 6, "two jobs of three runs");
    for run in &runs[..3] {
        let id = run["run_id"].as_str().expect("run id");
        let shown = p.dsm(&["runs", "show", id, "--format", "json"]).json();
        let counts = shown["merged_streams"]
            .as_array()
            .expect("merged-stream counts");
        assert_eq!(counts.len(), 1, "{shown}");
        assert!(
            counts[0]["records_in"].as_u64().expect("a count") > 0,
            "{shown}"
        );
        assert_eq!(counts[0]["emitted"], 0, "{shown}");
    }
}

//! Metrics from the run history, as the Prometheus text exposition format (for the node
//! exporter's textfile collector) or as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{run_duration, run_extractors};
use crate::error::{Error, Result};
use crate::store::{PrunedTotal, RunRecord, RunStatus};

const STATUSES: [RunStatus; 4] = [
    RunStatus::Running,
    RunStatus::Success,
    RunStatus::Failed,
    RunStatus::Killed,
];

/// Counters and gauges of one source (extractor) or one flow (state id).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubjectMetrics {
    /// Runs, by status (pruned runs included: a counter never goes down).
    pub runs_total: BTreeMap<String, u64>,
    /// Start of the newest successful run, in Unix seconds.
    pub last_success_timestamp: Option<i64>,
    /// Duration of the newest finished run, in seconds.
    pub last_run_duration_seconds: Option<f64>,
}

/// Records and bytes of one stream of one source, pruned runs included.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamMetrics {
    /// Records.
    pub records_total: u64,
    /// Bytes of RECORD lines.
    pub bytes_total: u64,
}

/// Everything `dsm metrics` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsSnapshot {
    /// When the snapshot was taken, Unix seconds.
    pub generated_at: i64,
    /// By extractor name.
    pub sources: BTreeMap<String, SubjectMetrics>,
    /// By state id.
    pub flows: BTreeMap<String, SubjectMetrics>,
    /// By extractor name, then stream name.
    pub streams: BTreeMap<String, BTreeMap<String, StreamMetrics>>,
}

fn add_run(m: &mut SubjectMetrics, run: &RunRecord) {
    *m.runs_total
        .entry(run.status.as_str().to_owned())
        .or_default() += 1;
}

/// Builds the snapshot from runs given newest first (as the store lists them) and the
/// counters of runs already pruned, so that every counter only ever grows.
pub fn snapshot(
    runs_newest_first: &[RunRecord],
    pruned: &[PrunedTotal],
    now: DateTime<Utc>,
) -> MetricsSnapshot {
    let mut snap = MetricsSnapshot {
        generated_at: now.timestamp(),
        ..MetricsSnapshot::default()
    };
    for t in pruned {
        let subject = match t.kind.as_str() {
            "source" => snap.sources.entry(t.subject.clone()).or_default(),
            "flow" => snap.flows.entry(t.subject.clone()).or_default(),
            _ => {
                let sm = snap
                    .streams
                    .entry(t.subject.clone())
                    .or_default()
                    .entry(t.detail.clone())
                    .or_default();
                sm.records_total += t.records;
                sm.bytes_total += t.bytes;
                continue;
            }
        };
        for s in STATUSES {
            subject.runs_total.entry(s.as_str().to_owned()).or_default();
        }
        *subject.runs_total.entry(t.detail.clone()).or_default() += t.runs;
    }
    for run in runs_newest_first {
        let mut keys: Vec<(bool, String)> =
            run_extractors(run).map(|e| (true, e.to_owned())).collect();
        if let Some(id) = &run.state_id {
            keys.push((false, id.to_string()));
        }
        for (is_source, key) in keys {
            let map = if is_source {
                &mut snap.sources
            } else {
                &mut snap.flows
            };
            let m = map.entry(key.clone()).or_default();
            for s in STATUSES {
                m.runs_total.entry(s.as_str().to_owned()).or_default();
            }
            add_run(m, run);
            if run.status == RunStatus::Success && m.last_success_timestamp.is_none() {
                m.last_success_timestamp = Some(run.started_at.timestamp());
            }
            if m.last_run_duration_seconds.is_none()
                && let Some(d) = run_duration(run)
            {
                m.last_run_duration_seconds = Some(d.num_milliseconds() as f64 / 1000.0);
            }
            if is_source {
                let streams = snap.streams.entry(key).or_default();
                for s in &run.streams {
                    let sm = streams.entry(s.stream.clone()).or_default();
                    sm.records_total += s.records;
                    sm.bytes_total += s.bytes;
                }
            }
        }
    }
    snap
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
}

/// Renders the snapshot in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(snap: &MetricsSnapshot) -> String {
    let mut out = String::new();
    for (kind, label, map) in [
        ("source", "source", &snap.sources),
        ("flow", "flow", &snap.flows),
    ] {
        let name = format!("dsm_{kind}_runs_total");
        family(
            &mut out,
            &name,
            "counter",
            &format!("Runs of each {kind} since the system database was created, by status."),
        );
        for (key, m) in map {
            for (status, n) in &m.runs_total {
                sample(
                    &mut out,
                    &name,
                    &[(label, key), ("status", status)],
                    *n as f64,
                );
            }
        }
        let name = format!("dsm_{kind}_last_success_timestamp_seconds");
        family(
            &mut out,
            &name,
            "gauge",
            &format!("Start of the newest successful run of each {kind}, in Unix seconds."),
        );
        for (key, m) in map {
            if let Some(t) = m.last_success_timestamp {
                sample(&mut out, &name, &[(label, key)], t as f64);
            }
        }
        let name = format!("dsm_{kind}_last_run_duration_seconds");
        family(
            &mut out,
            &name,
            "gauge",
            &format!("Duration of the newest finished run of each {kind}."),
        );
        for (key, m) in map {
            if let Some(d) = m.last_run_duration_seconds {
                sample(&mut out, &name, &[(label, key)], d);
            }
        }
    }
    for (metric, help, pick) in [
        (
            "dsm_stream_records_total",
            "Records of each stream since the system database was created.",
            (|m: &StreamMetrics| m.records_total) as fn(&StreamMetrics) -> u64,
        ),
        (
            "dsm_stream_bytes_total",
            "Bytes of RECORD lines of each stream since the system database was created.",
            |m: &StreamMetrics| m.bytes_total,
        ),
    ] {
        family(&mut out, metric, "counter", help);
        for (source, streams) in &snap.streams {
            for (stream, m) in streams {
                sample(
                    &mut out,
                    metric,
                    &[("source", source), ("stream", stream)],
                    pick(m) as f64,
                );
            }
        }
    }
    family(
        &mut out,
        "dsm_metrics_generated_timestamp_seconds",
        "gauge",
        "When dsm wrote these metrics, in Unix seconds.",
    );
    let _ = writeln!(
        out,
        "dsm_metrics_generated_timestamp_seconds {}",
        snap.generated_at
    );
    out
}

/// Writes `text` to `path` atomically (see [`crate::files::replace_atomically`]), readable by
/// everyone: the node exporter's textfile collector, which often runs as another user, never
/// reads a half-written file.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    crate::files::replace_atomically(path, text.as_bytes(), crate::files::Mode::Set(0o644)).map_err(
        |e| {
            Error::failed(format!("cannot write `{}`: {e}", path.display()))
                .hint("check that the folder exists and is writable")
        },
    )
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::registry::testing::{RunSpec, now, store};
    use crate::store::{RunId, Store};

    #[test]
    fn registry_metrics_prometheus_text_from_stored_runs() {
        let (dir, store) = store();
        let s = store.as_ref();
        RunSpec::new(
            "r1",
            "tap-github",
            RunStatus::Success,
            Duration::hours(3),
            Duration::seconds(12),
        )
        .stream("issues", 100, 5_000)
        .write(s);
        RunSpec::new(
            "r2",
            "tap-github",
            RunStatus::Failed,
            Duration::hours(2),
            Duration::milliseconds(2_500),
        )
        .stream("issues", 7, 300)
        .write(s);
        let mut odd = RunSpec::new(
            "r3",
            "tap-\"odd\"\\name",
            RunStatus::Success,
            Duration::hours(1),
            Duration::seconds(1),
        );
        odd.state_id = None;
        odd.write(s);

        let runs = s.list_runs_since(DateTime::<Utc>::UNIX_EPOCH).unwrap();
        let snap = snapshot(&runs, &[], now());
        let text = render_prometheus(&snap);
        let t = (now() - Duration::hours(3)).timestamp();
        for want in [
            "# HELP dsm_source_runs_total Runs of each source since the system database was created, by status.",
            "# TYPE dsm_source_runs_total counter",
            "dsm_source_runs_total{source=\"tap-github\",status=\"success\"} 1",
            "dsm_source_runs_total{source=\"tap-github\",status=\"failed\"} 1",
            "dsm_source_runs_total{source=\"tap-github\",status=\"killed\"} 0",
            &format!("dsm_source_last_success_timestamp_seconds{{source=\"tap-github\"}} {t}"),
            "dsm_source_last_run_duration_seconds{source=\"tap-github\"} 2.5",
            "dsm_flow_runs_total{flow=\"dev:tap-github-to-target-jsonl\",status=\"success\"} 1",
            "# TYPE dsm_stream_records_total counter",
            "dsm_stream_records_total{source=\"tap-github\",stream=\"issues\"} 107",
            "dsm_stream_bytes_total{source=\"tap-github\",stream=\"issues\"} 5300",
            "dsm_source_runs_total{source=\"tap-\\\"odd\\\"\\\\name\",status=\"success\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing line {want}\n{text}"
            );
        }
        // Every sample belongs to a family declared just before with HELP and TYPE.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "sample before its TYPE: {line}");
            }
        }

        let out = dir.path().join("dsm.prom");
        write_atomically(&out, &text).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".dsm.prom"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn registry_metrics_counters_survive_pruning_the_runs_they_count() {
        let (dir, store) = store();
        let s = store.as_ref();
        for (id, status, ago, records) in [
            ("old-1", RunStatus::Success, 30, 40),
            ("old-2", RunStatus::Failed, 29, 2),
            ("new-1", RunStatus::Success, 1, 100),
        ] {
            RunSpec::new(
                id,
                "tap-github",
                status,
                Duration::days(ago),
                Duration::seconds(5),
            )
            .stream("issues", records, records * 10)
            .write(s);
        }
        let all = |s: &dyn Store| {
            let runs = s.list_runs_since(DateTime::<Utc>::UNIX_EPOCH).unwrap();
            render_prometheus(&snapshot(&runs, &s.pruned_totals().unwrap(), now()))
        };
        let counters = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| {
                    l.starts_with("dsm_") && l.split(['{', ' ']).next().unwrap().ends_with("_total")
                })
                .map(str::to_owned)
                .collect()
        };
        let before = all(s);
        assert!(
            before
                .contains("dsm_stream_records_total{source=\"tap-github\",stream=\"issues\"} 142"),
            "{before}"
        );
        let db = dir.path().join(".dsm/dsm.db");
        let merge_rows = |db: &std::path::Path| -> i64 {
            crate::store::sqlite::testing::query_i64(db, "SELECT COUNT(*) FROM merge_run_stats")
        };
        crate::store::sqlite::testing::execute(
            &db,
            "INSERT INTO merge_run_stats (run_id, stream, source) VALUES ('old-1', 'companies', 'csv')",
        );
        assert_eq!(merge_rows(&db), 1);
        assert_eq!(
            s.delete_runs(&[RunId::new("old-1"), RunId::new("old-2")])
                .unwrap(),
            2
        );
        // A pruned run's merged-stream counts go with it.
        assert_eq!(merge_rows(&db), 0);
        assert_eq!(
            s.list_runs_since(DateTime::<Utc>::UNIX_EPOCH)
                .unwrap()
                .len(),
            1
        );
        let after = all(s);
        assert_eq!(counters(&before), counters(&after), "{after}");
        // The gauges come from the runs still kept.
        let t = (now() - Duration::days(1)).timestamp();
        assert!(
            after.contains(&format!(
                "dsm_source_last_success_timestamp_seconds{{source=\"tap-github\"}} {t}"
            )),
            "{after}"
        );
        // Pruning again adds nothing twice.
        assert_eq!(s.delete_runs(&[RunId::new("old-1")]).unwrap(), 0);
        assert_eq!(counters(&after), counters(&all(s)));
    }

    #[test]
    fn registry_metrics_write_fails_clearly_for_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomically(&dir.path().join("no/such/dsm.prom"), "x").unwrap_err();
        assert!(
            err.message().starts_with("cannot write `"),
            "{}",
            err.message()
        );
    }
}

//! Test helpers: a real SQLite store in a temp folder and runs written with chosen times.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::store::{
    PluginExit, RunId, RunRecord, RunStatus, SqliteStore, StateId, Store, StreamStats,
};

/// A fresh store in a temp folder (keep the folder alive).
pub fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join(".dsm/dsm.db")).unwrap();
    (dir, Arc::new(store))
}

/// A fixed "now" for tests.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// Describes a run to write.
pub struct RunSpec {
    pub id: String,
    pub extractor: String,
    pub state_id: Option<String>,
    pub status: RunStatus,
    /// Start, as an offset before [`now`].
    pub ago: Duration,
    pub took: Duration,
    pub error: Option<String>,
    pub streams: Vec<(String, u64, u64)>,
}

impl RunSpec {
    pub fn new(
        id: &str,
        extractor: &str,
        status: RunStatus,
        ago: Duration,
        took: Duration,
    ) -> Self {
        RunSpec {
            id: id.into(),
            extractor: extractor.into(),
            state_id: Some(format!("dev:{extractor}-to-target-jsonl")),
            status,
            ago,
            took,
            error: (status == RunStatus::Failed).then(|| format!("`{extractor}` exited with 1")),
            streams: Vec::new(),
        }
    }

    pub fn stream(mut self, name: &str, records: u64, bytes: u64) -> Self {
        self.streams.push((name.into(), records, bytes));
        self
    }

    pub fn record(&self) -> RunRecord {
        let started = now() - self.ago;
        let running = self.status == RunStatus::Running;
        RunRecord {
            run_id: RunId::new(self.id.clone()),
            state_id: self.state_id.clone().map(StateId::new),
            environment: Some("dev".into()),
            trigger: "cli".into(),
            status: self.status,
            started_at: started,
            ended_at: (!running).then(|| started + self.took),
            // A running run in tests is alive by its fresh heartbeat, on another host (on this
            // one, a process that started after the run began would not be its owner).
            heartbeat_at: if running {
                Utc::now()
            } else {
                started + self.took
            },
            pid: std::process::id(),
            host: if running {
                "another-host.test".to_owned()
            } else {
                crate::store::liveness::host_name().to_owned()
            },
            error: self.error.clone(),
            log_path: None,
            plugins: vec![
                PluginExit {
                    plugin: self.extractor.clone(),
                    role: "extractor".into(),
                    exit_code: Some(i32::from(self.status == RunStatus::Failed)),
                },
                PluginExit {
                    plugin: "target-jsonl".into(),
                    role: "loader".into(),
                    exit_code: Some(0),
                },
            ],
            streams: self
                .streams
                .iter()
                .map(|(s, r, b)| StreamStats {
                    stream: s.clone(),
                    records: *r,
                    bytes: *b,
                })
                .collect(),
            records_read: self.streams.iter().map(|(_, r, _)| *r).sum(),
            records_sent: (!running).then(|| self.streams.iter().map(|(_, r, _)| *r).sum()),
            records_confirmed: (!running).then(|| self.streams.iter().map(|(_, r, _)| *r).sum()),
        }
    }

    pub fn write(self, store: &dyn Store) -> RunRecord {
        let rec = self.record();
        store.record_run(&rec).unwrap();
        rec
    }
}

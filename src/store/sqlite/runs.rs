//! [`RunHistory`] on SQLite: `runs`, `run_plugins`, `run_streams`, `run_artifacts`,
//! `run_stream_labels` and `pruned_run_totals`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{SqliteStore, now_text, parse_time};
use crate::classification::StreamLabel;
use crate::error::{Error, Result};
use crate::store::liveness;
use crate::store::{
    NewRun, PluginExit, PrunedTotal, RunArtifact, RunCounts, RunFilter, RunFinish, RunHistory,
    RunId, RunRecord, RunStatus, StateId, StreamStats, format_time,
};

type RunRow = (RunRecord, RunStatus);

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 12]> {
    let mut out: [Option<String>; 12] = Default::default();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => None,
            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
            rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            other => Some(format!("{other:?}")),
        };
    }
    Ok(out)
}

const RUN_COLUMNS: &str = "run_id, state_id, environment, trigger, started_at, ended_at, heartbeat_at, status, pid, host, error, log_path";

fn build_run(conn: &Connection, cols: [Option<String>; 12]) -> Result<RunRow> {
    let [
        run_id,
        state_id,
        environment,
        trigger,
        started,
        ended,
        hb,
        status,
        pid,
        host,
        error,
        log,
    ] = cols;
    let run_id = RunId::new(run_id.unwrap_or_default());
    let stored_status = RunStatus::parse(status.as_deref().unwrap_or_default())?;
    let mut plugins = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT plugin, role, exit_code FROM run_plugins WHERE run_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([run_id.as_str()], |r| {
            Ok(PluginExit {
                plugin: r.get(0)?,
                role: r.get(1)?,
                exit_code: r.get(2)?,
            })
        })?;
        for row in rows {
            plugins.push(row?);
        }
    }
    let mut streams = Vec::new();
    {
        let mut stmt = conn.prepare(
            "SELECT stream, records, bytes FROM run_streams WHERE run_id = ?1 ORDER BY stream",
        )?;
        let rows = stmt.query_map([run_id.as_str()], |r| {
            Ok(StreamStats {
                stream: r.get(0)?,
                records: r.get::<_, i64>(1)?.max(0) as u64,
                bytes: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        for row in rows {
            streams.push(row?);
        }
    }
    let (records_sent, records_confirmed): (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT records_sent, records_confirmed FROM runs WHERE run_id = ?1",
        [run_id.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let record = RunRecord {
        records_read: streams.iter().map(|s| s.records).sum(),
        records_sent: records_sent.map(|n| n.max(0) as u64),
        records_confirmed: records_confirmed.map(|n| n.max(0) as u64),
        run_id,
        state_id: state_id.map(StateId::new),
        environment,
        trigger: trigger.unwrap_or_default(),
        status: stored_status,
        started_at: parse_time(started.as_deref().unwrap_or_default())?,
        ended_at: ended.as_deref().map(parse_time).transpose()?,
        heartbeat_at: parse_time(hb.as_deref().unwrap_or_default())?,
        pid: pid.and_then(|p| p.parse().ok()).unwrap_or(0),
        host: host.unwrap_or_default(),
        error,
        log_path: log.map(PathBuf::from),
        plugins,
        streams,
    };
    Ok((record, stored_status))
}

fn upsert_plugins(tx: &Transaction<'_>, run_id: &RunId, plugins: &[PluginExit]) -> Result<()> {
    for p in plugins {
        tx.execute(
            "INSERT INTO run_plugins (run_id, plugin, role, exit_code) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, plugin) DO UPDATE SET role = excluded.role, exit_code = excluded.exit_code",
            params![run_id.as_str(), p.plugin, p.role, p.exit_code],
        )?;
    }
    Ok(())
}

fn no_run_error(run_id: &RunId) -> Error {
    Error::config(format!("no run `{run_id}` in the system database"))
        .hint("`dsm runs list` shows recent runs")
}

impl RunHistory for SqliteStore {
    fn begin_run(&self, run: &NewRun) -> Result<RunId> {
        let run_id = run.run_id.clone().unwrap_or_else(RunId::generate);
        self.write_history(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                [run_id.as_str()],
                |r| r.get(0),
            )?;
            if exists {
                return Err(Error::config(format!("run id `{run_id}` is already recorded"))
                    .hint("leave out `--run-id` to get a fresh one"));
            }
            let now = now_text();
            tx.execute(
                "INSERT INTO runs (run_id, state_id, environment, trigger, started_at, heartbeat_at, status, pid, host, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, 'running', ?6, ?7, ?8)",
                params![
                    run_id.as_str(),
                    run.state_id.as_ref().map(StateId::as_str),
                    run.environment,
                    run.trigger,
                    now,
                    std::process::id(),
                    liveness::host_name(),
                    run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            upsert_plugins(tx, &run_id, &run.plugins)
        })?;
        Ok(run_id)
    }

    fn heartbeat_run(&self, run_id: &RunId) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "UPDATE runs SET heartbeat_at = ?1 WHERE run_id = ?2 AND status = 'running'",
                params![now_text(), run_id.as_str()],
            )?;
            Ok(())
        })
    }

    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()> {
        self.write_history(|tx| {
            for s in stats {
                tx.execute(
                    "INSERT INTO run_streams (run_id, stream, records, bytes) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (run_id, stream) DO UPDATE SET records = excluded.records, bytes = excluded.bytes",
                    params![
                        run_id.as_str(),
                        s.stream,
                        i64::try_from(s.records).unwrap_or(i64::MAX),
                        i64::try_from(s.bytes).unwrap_or(i64::MAX)
                    ],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        no_run_error(run_id)
                    }
                    other => other.into(),
                })?;
            }
            Ok(())
        })
    }

    fn record_run_counts(&self, run_id: &RunId, counts: &RunCounts) -> Result<()> {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.write_history(|tx| {
            let n = tx.execute(
                "UPDATE runs SET records_sent = ?1, records_confirmed = ?2 WHERE run_id = ?3",
                params![
                    big(counts.records_sent),
                    big(counts.records_confirmed),
                    run_id.as_str()
                ],
            )?;
            if n == 0 {
                return Err(no_run_error(run_id));
            }
            Ok(())
        })
    }

    fn finish_run(&self, run_id: &RunId, finish: &RunFinish) -> Result<()> {
        if finish.status == RunStatus::Running {
            return Err(Error::failed(format!(
                "run `{run_id}` cannot finish with status `running`"
            )));
        }
        self.write_history(|tx| {
            let n = tx.execute(
                "UPDATE runs SET status = ?1, ended_at = ?2, heartbeat_at = ?2, error = ?3 WHERE run_id = ?4",
                params![finish.status.as_str(), now_text(), finish.error, run_id.as_str()],
            )?;
            if n == 0 {
                return Err(no_run_error(run_id));
            }
            upsert_plugins(tx, run_id, &finish.plugins)
        })
    }

    fn record_log_tail(&self, run_id: &RunId, tail: &str) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "UPDATE runs SET log_tail = ?2 WHERE run_id = ?1",
                params![run_id.as_str(), tail],
            )?;
            Ok(())
        })
    }

    fn run_log_tail(&self, run_id: &RunId) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT log_tail FROM runs WHERE run_id = ?1",
                [run_id.as_str()],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })
    }

    fn get_run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        self.read(|c| {
            let cols = c
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
                    [run_id.as_str()],
                    run_from_row,
                )
                .optional()?;
            let Some(cols) = cols else { return Ok(None) };
            let (mut run, stored) = build_run(c, cols).map_err(|e| {
                Error::failed(format!("run `{run_id}` in the system database is unreadable"))
                    .detail(e.message().to_owned())
                    .hint(format!(
                        "other runs are not affected; `dsm runs prune --run-id {run_id}` removes this one"
                    ))
            })?;
            run.status = self.derive_status(stored, run.pid, &run.host, run.started_at, run.heartbeat_at);
            Ok(Some(run))
        })
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        self.read(|c| {
            let status_sql = match filter.status {
                None => "1",
                Some(RunStatus::Success) => "status = 'success'",
                Some(RunStatus::Failed) => "status = 'failed'",
                // Killed is derived from running rows (and a finisher may record it too).
                Some(RunStatus::Running | RunStatus::Killed) => "status IN ('running', 'killed')",
            };
            let derived = matches!(filter.status, Some(RunStatus::Running | RunStatus::Killed));
            let sql_limit = match (filter.limit, derived) {
                (Some(n), false) => i64::try_from(n).unwrap_or(i64::MAX),
                _ => -1,
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR state_id = ?1) AND {status_sql}
                 ORDER BY started_at DESC, run_id DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(
                params![filter.state_id.as_ref().map(StateId::as_str), sql_limit],
                run_from_row,
            )?;
            let mut out = Vec::new();
            for row in rows {
                let cols = row?;
                let id = cols[0].clone().unwrap_or_default();
                // One damaged row must not hide the rest of the history.
                let (mut run, stored) = match build_run(c, cols) {
                    Ok(built) => built,
                    Err(error) => {
                        tracing::warn!(run_id = %id, error = %error, "skipping an unreadable run row");
                        continue;
                    }
                };
                run.status = self.derive_status(stored, run.pid, &run.host, run.started_at, run.heartbeat_at);
                if filter.status.is_some_and(|s| s != run.status) {
                    continue;
                }
                out.push(run);
                if filter.limit.is_some_and(|n| out.len() >= n) {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn record_run(&self, run: &RunRecord) -> Result<()> {
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
                [run.run_id.as_str()],
                |r| r.get(0),
            )?;
            if exists {
                return Err(Error::config(format!(
                    "run id `{}` is already recorded",
                    run.run_id
                )));
            }
            tx.execute(
                "INSERT INTO runs (run_id, state_id, environment, trigger, started_at, ended_at, heartbeat_at, status, pid, host, error, log_path)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    run.run_id.as_str(),
                    run.state_id.as_ref().map(StateId::as_str),
                    run.environment,
                    run.trigger,
                    format_time(run.started_at),
                    run.ended_at.map(format_time),
                    format_time(run.heartbeat_at),
                    run.status.as_str(),
                    run.pid,
                    run.host,
                    run.error,
                    run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            upsert_plugins(tx, &run.run_id, &run.plugins)?;
            let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            tx.execute(
                "UPDATE runs SET records_sent = ?1, records_confirmed = ?2 WHERE run_id = ?3",
                params![
                    run.records_sent.map(big),
                    run.records_confirmed.map(big),
                    run.run_id.as_str()
                ],
            )?;
            for s in &run.streams {
                tx.execute(
                    "INSERT INTO run_streams (run_id, stream, records, bytes) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        run.run_id.as_str(),
                        s.stream,
                        i64::try_from(s.records).unwrap_or(i64::MAX),
                        i64::try_from(s.bytes).unwrap_or(i64::MAX)
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn list_runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE started_at >= ?1
                 ORDER BY started_at DESC, run_id DESC"
            ))?;
            let rows = stmt.query_map([format_time(since)], run_from_row)?;
            let mut out = Vec::new();
            for row in rows {
                let cols = row?;
                let id = cols[0].clone().unwrap_or_default();
                match build_run(c, cols) {
                    Ok((mut run, stored)) => {
                        run.status =
                            self.derive_status(stored, run.pid, &run.host, run.started_at, run.heartbeat_at);
                        out.push(run);
                    }
                    Err(error) => {
                        tracing::warn!(run_id = %id, error = %error, "skipping an unreadable run row");
                    }
                }
            }
            Ok(out)
        })
    }

    fn delete_runs(&self, run_ids: &[RunId]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for id in run_ids {
                let id = id.as_str();
                // The run's counters move to the pruned totals first, so `dsm metrics` never
                // reports a counter going down.
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, runs)
                     SELECT 'source', p.plugin, r.status, 1 FROM run_plugins p
                     JOIN runs r ON r.run_id = p.run_id
                     WHERE p.run_id = ?1 AND p.role = 'extractor'
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET runs = runs + 1",
                    [id],
                )?;
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, runs)
                     SELECT 'flow', state_id, status, 1 FROM runs
                     WHERE run_id = ?1 AND state_id IS NOT NULL
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET runs = runs + 1",
                    [id],
                )?;
                tx.execute(
                    "INSERT INTO pruned_run_totals (kind, subject, detail, records, bytes)
                     SELECT 'stream', p.plugin, s.stream,
                            MAX(0, CAST(s.records AS INTEGER)), MAX(0, CAST(s.bytes AS INTEGER))
                     FROM run_plugins p
                     JOIN run_streams s ON s.run_id = p.run_id
                     WHERE p.run_id = ?1 AND p.role = 'extractor'
                     ON CONFLICT (kind, subject, detail) DO UPDATE SET
                         records = records + excluded.records, bytes = bytes + excluded.bytes",
                    [id],
                )?;
                tx.execute("DELETE FROM merge_run_stats WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_plugins WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_streams WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_artifacts WHERE run_id = ?1", [id])?;
                tx.execute("DELETE FROM run_stream_labels WHERE run_id = ?1", [id])?;
                n += tx.execute("DELETE FROM runs WHERE run_id = ?1", [id])?;
            }
            Ok(n)
        })
    }

    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT kind, subject, detail, runs, records, bytes FROM pruned_run_totals
             ORDER BY kind, subject, detail",
        )?;
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map([], |r| {
            Ok(PrunedTotal {
                kind: r.get(0)?,
                subject: r.get(1)?,
                detail: r.get(2)?,
                runs: count(r.get(3)?),
                records: count(r.get(4)?),
                bytes: count(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn record_run_artifacts(&self, run_id: &RunId, artifacts: &[RunArtifact]) -> Result<()> {
        self.write_history(|tx| {
            for a in artifacts {
                tx.execute(
                    "INSERT INTO run_artifacts (run_id, path, kind, stream, records, label) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, stream = excluded.stream, records = excluded.records, label = excluded.label",
                    params![
                        run_id.as_str(),
                        a.path.display().to_string(),
                        a.kind,
                        a.stream,
                        i64::try_from(a.records).unwrap_or(i64::MAX),
                        a.label
                    ],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        no_run_error(run_id)
                    }
                    other => other.into(),
                })?;
            }
            Ok(())
        })
    }

    fn run_artifacts(&self, run_id: &RunId) -> Result<Vec<RunArtifact>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT path, kind, stream, records, label FROM run_artifacts WHERE run_id = ?1 ORDER BY kind, stream, path",
            )?;
            let rows = stmt.query_map([run_id.as_str()], |r| {
                Ok(RunArtifact {
                    path: PathBuf::from(r.get::<_, String>(0)?),
                    kind: r.get(1)?,
                    stream: r.get(2)?,
                    records: r.get::<_, i64>(3)?.max(0) as u64,
                    label: r.get(4)?,
                })
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        })
    }

    fn record_stream_labels(&self, run_id: &RunId, labels: &[StreamLabel]) -> Result<()> {
        self.write_history(|tx| {
            for l in labels {
                tx.execute(
                    "INSERT INTO run_stream_labels (run_id, stream, label, rank, because) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_id, stream) DO UPDATE SET label = excluded.label, rank = excluded.rank, because = excluded.because",
                    params![run_id.as_str(), l.stream, l.label, l.rank, l.because],
                )?;
            }
            Ok(())
        })
    }

    fn stream_labels(&self, run_id: &RunId) -> Result<Vec<StreamLabel>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT stream, label, rank, because FROM run_stream_labels WHERE run_id = ?1 ORDER BY stream",
            )?;
            let rows = stmt.query_map([run_id.as_str()], |r| {
                Ok(StreamLabel {
                    stream: r.get(0)?,
                    label: r.get(1)?,
                    rank: r.get(2)?,
                    because: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn highest_stream_labels(&self) -> Result<Vec<StreamLabel>> {
        self.read(|c| {
            let read = || -> rusqlite::Result<Vec<StreamLabel>> {
                let mut stmt = c.prepare(
                    "SELECT stream, label, rank, because FROM run_stream_labels AS l
                     WHERE rank = (SELECT MAX(rank) FROM run_stream_labels WHERE stream = l.stream)
                     GROUP BY stream ORDER BY stream",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(StreamLabel {
                        stream: r.get(0)?,
                        label: r.get(1)?,
                        rank: r.get(2)?,
                        because: r.get(3)?,
                    })
                })?;
                rows.collect()
            };
            // A store from before labels existed has no such table: nothing was labelled.
            Ok(read().unwrap_or_default())
        })
    }
}

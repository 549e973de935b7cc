//! [`RunHistory`] on PostgreSQL: `runs`, `run_plugins`, `run_streams`, `run_artifacts`,
//! `run_stream_labels` and `pruned_run_totals`. A run still marked running reads as `killed`
//! once its heartbeat is older than the lease expiry on the server's clock (or, on the host
//! that ran it, once its process is gone).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use postgres::{GenericClient, Row};

use super::{PgStore, time_ms};
use crate::classification::StreamLabel;
use crate::error::{Error, Result};
use crate::store::liveness;
use crate::store::{
    NewRun, PluginExit, PrunedTotal, RunArtifact, RunCounts, RunFilter, RunFinish, RunHistory,
    RunId, RunRecord, RunStatus, StateId, StreamStats,
};

const RUN_COLUMNS: &str = "run_id, state_id, environment, trigger, {S}.epoch_ms(started_at),
    {S}.epoch_ms(ended_at), {S}.epoch_ms(heartbeat_at), status, pid, host, error, log_path,
    {S}.epoch_ms(now())";

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn no_run_error(run_id: &RunId) -> Error {
    Error::config(format!("no run `{run_id}` in the system database"))
        .hint("`dsm runs list` shows recent runs")
}

impl PgStore {
    fn build_run(&self, c: &mut impl GenericClient, r: &Row) -> Result<RunRecord> {
        let run_id = RunId::new(r.get::<_, String>(0));
        let plugins = c
            .query(
                &self.q("SELECT plugin, role, exit_code FROM {S}.run_plugins
                     WHERE project_id = $1 AND run_id = $2 ORDER BY seq"),
                &[&self.project, &run_id.as_str()],
            )?
            .iter()
            .map(|p| PluginExit {
                plugin: p.get(0),
                role: p.get(1),
                exit_code: p.get(2),
            })
            .collect();
        let streams: Vec<StreamStats> = c
            .query(
                &self.q("SELECT stream, records, bytes FROM {S}.run_streams
                     WHERE project_id = $1 AND run_id = $2 ORDER BY stream COLLATE \"C\""),
                &[&self.project, &run_id.as_str()],
            )?
            .iter()
            .map(|s| StreamStats {
                stream: s.get(0),
                records: count(s.get(1)),
                bytes: count(s.get(2)),
            })
            .collect();
        let stored = RunStatus::parse(r.get(7))?;
        let pid = u32::try_from(r.get::<_, i64>(8)).unwrap_or(0);
        let host: String = r.get(9);
        let heartbeat_at = time_ms(r.get(6))?;
        let now = time_ms(r.get(12))?;
        let status = if stored == RunStatus::Running
            && liveness::is_stale(pid, &host, None, heartbeat_at, now, self.lease.expiry)
        {
            RunStatus::Killed
        } else {
            stored
        };
        let counts = c.query_one(
            &self.q("SELECT records_sent, records_confirmed FROM {S}.runs
                 WHERE project_id = $1 AND run_id = $2"),
            &[&self.project, &run_id.as_str()],
        )?;
        let records_sent: Option<i64> = counts.get(0);
        let records_confirmed: Option<i64> = counts.get(1);
        Ok(RunRecord {
            records_read: streams.iter().map(|s: &StreamStats| s.records).sum(),
            records_sent: records_sent.map(count),
            records_confirmed: records_confirmed.map(count),
            run_id,
            state_id: r.get::<_, Option<String>>(1).map(StateId::new),
            environment: r.get(2),
            trigger: r.get(3),
            status,
            started_at: time_ms(r.get(4))?,
            ended_at: r.get::<_, Option<i64>>(5).map(time_ms).transpose()?,
            heartbeat_at,
            pid,
            host,
            error: r.get(10),
            log_path: r.get::<_, Option<String>>(11).map(PathBuf::from),
            plugins,
            streams,
        })
    }

    fn upsert_plugins(
        &self,
        c: &mut impl GenericClient,
        run_id: &RunId,
        plugins: &[PluginExit],
    ) -> Result<()> {
        for p in plugins {
            c.execute(
                &self.q(
                    "INSERT INTO {S}.run_plugins (project_id, run_id, plugin, role, exit_code)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (project_id, run_id, plugin) DO UPDATE SET role = excluded.role,
                         exit_code = excluded.exit_code",
                ),
                &[
                    &self.project,
                    &run_id.as_str(),
                    &p.plugin,
                    &p.role,
                    &p.exit_code,
                ],
            )?;
        }
        Ok(())
    }

    fn run_exists(&self, c: &mut impl GenericClient, run_id: &RunId) -> Result<bool> {
        Ok(c.query_opt(
            &self.q("SELECT 1 FROM {S}.runs WHERE project_id = $1 AND run_id = $2"),
            &[&self.project, &run_id.as_str()],
        )?
        .is_some())
    }

    fn runs_where(
        &self,
        c: &mut impl GenericClient,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RunRecord>> {
        let rows = c.query(&self.q(sql), params)?;
        let mut out = Vec::new();
        for r in &rows {
            match self.build_run(c, r) {
                Ok(run) => out.push(run),
                Err(error) => {
                    let id: String = r.get(0);
                    tracing::warn!(run_id = %id, error = %error, "skipping an unreadable run row");
                }
            }
        }
        Ok(out)
    }
}

impl RunHistory for PgStore {
    fn begin_run(&self, run: &NewRun) -> Result<RunId> {
        let run_id = run.run_id.clone().unwrap_or_else(RunId::generate);
        self.write(|tx| {
            let n = tx.execute(
                &self.q(
                    "INSERT INTO {S}.runs (project_id, run_id, state_id, environment, trigger,
                         started_at, heartbeat_at, status, pid, host, log_path)
                     VALUES ($1, $2, $3, $4, $5, now(), now(), 'running', $6, $7, $8)
                     ON CONFLICT (project_id, run_id) DO NOTHING",
                ),
                &[
                    &self.project,
                    &run_id.as_str(),
                    &run.state_id.as_ref().map(StateId::as_str),
                    &run.environment,
                    &run.trigger,
                    &i64::from(std::process::id()),
                    &liveness::host_name(),
                    &run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            if n == 0 {
                return Err(
                    Error::config(format!("run id `{run_id}` is already recorded"))
                        .hint("leave out `--run-id` to get a fresh one"),
                );
            }
            self.upsert_plugins(tx, &run_id, &run.plugins)
        })?;
        Ok(run_id)
    }

    fn heartbeat_run(&self, run_id: &RunId) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q("UPDATE {S}.runs SET heartbeat_at = now()
                     WHERE project_id = $1 AND run_id = $2 AND status = 'running'"),
                &[&self.project, &run_id.as_str()],
            )?;
            Ok(())
        })
    }

    fn record_stream_stats(&self, run_id: &RunId, stats: &[StreamStats]) -> Result<()> {
        self.write(|tx| {
            if !self.run_exists(tx, run_id)? {
                return Err(no_run_error(run_id));
            }
            for s in stats {
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.run_streams (project_id, run_id, stream, records, bytes)
                         VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (project_id, run_id, stream) DO UPDATE SET
                             records = excluded.records, bytes = excluded.bytes",
                    ),
                    &[
                        &self.project,
                        &run_id.as_str(),
                        &s.stream,
                        &big(s.records),
                        &big(s.bytes),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn record_run_counts(&self, run_id: &RunId, counts: &RunCounts) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                &self.q(
                    "UPDATE {S}.runs SET records_sent = $1, records_confirmed = $2
                     WHERE project_id = $3 AND run_id = $4",
                ),
                &[
                    &big(counts.records_sent),
                    &big(counts.records_confirmed),
                    &self.project,
                    &run_id.as_str(),
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
        self.write(|tx| {
            let n = tx.execute(
                &self.q(
                    "UPDATE {S}.runs SET status = $3, ended_at = now(), heartbeat_at = now(), error = $4
                     WHERE project_id = $1 AND run_id = $2",
                ),
                &[&self.project, &run_id.as_str(), &finish.status.as_str(), &finish.error],
            )?;
            if n == 0 {
                return Err(no_run_error(run_id));
            }
            self.upsert_plugins(tx, run_id, &finish.plugins)
        })
    }

    fn record_log_tail(&self, run_id: &RunId, tail: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q("UPDATE {S}.runs SET log_tail = $3 WHERE project_id = $1 AND run_id = $2"),
                &[&self.project, &run_id.as_str(), &tail],
            )?;
            Ok(())
        })
    }

    fn run_log_tail(&self, run_id: &RunId) -> Result<Option<String>> {
        self.read(|c| {
            Ok(c.query_opt(
                &self.q("SELECT log_tail FROM {S}.runs WHERE project_id = $1 AND run_id = $2"),
                &[&self.project, &run_id.as_str()],
            )?
            .and_then(|r| r.get::<_, Option<String>>(0)))
        })
    }

    fn record_run_artifacts(&self, run_id: &RunId, artifacts: &[RunArtifact]) -> Result<()> {
        self.write(|tx| {
            if !self.run_exists(tx, run_id)? {
                return Err(no_run_error(run_id));
            }
            for a in artifacts {
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.run_artifacts (project_id, run_id, path, kind, stream, records, label)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (project_id, run_id, path) DO UPDATE SET kind = excluded.kind,
                             stream = excluded.stream, records = excluded.records, label = excluded.label",
                    ),
                    &[
                        &self.project,
                        &run_id.as_str(),
                        &a.path.display().to_string(),
                        &a.kind,
                        &a.stream,
                        &big(a.records),
                        &a.label,
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn run_artifacts(&self, run_id: &RunId) -> Result<Vec<RunArtifact>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT path, kind, stream, records, label FROM {S}.run_artifacts
                     WHERE project_id = $1 AND run_id = $2
                     ORDER BY kind COLLATE \"C\", stream COLLATE \"C\", path COLLATE \"C\"",
                ),
                &[&self.project, &run_id.as_str()],
            )?
            .iter()
            .map(|r| RunArtifact {
                path: PathBuf::from(r.get::<_, String>(0)),
                kind: r.get(1),
                stream: r.get(2),
                records: count(r.get(3)),
                label: r.get(4),
            })
            .collect())
        })
    }

    fn record_stream_labels(&self, run_id: &RunId, labels: &[StreamLabel]) -> Result<()> {
        self.write(|tx| {
            for l in labels {
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.run_stream_labels (project_id, run_id, stream, label, rank, because)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (project_id, run_id, stream) DO UPDATE SET label = excluded.label,
                             rank = excluded.rank, because = excluded.because",
                    ),
                    &[
                        &self.project,
                        &run_id.as_str(),
                        &l.stream,
                        &l.label,
                        &i32::try_from(l.rank).unwrap_or(i32::MAX),
                        &l.because,
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn stream_labels(&self, run_id: &RunId) -> Result<Vec<StreamLabel>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT stream, label, rank, because FROM {S}.run_stream_labels
                     WHERE project_id = $1 AND run_id = $2 ORDER BY stream COLLATE \"C\"",
                ),
                &[&self.project, &run_id.as_str()],
            )?
            .iter()
            .map(label_from)
            .collect())
        })
    }

    fn highest_stream_labels(&self) -> Result<Vec<StreamLabel>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT DISTINCT ON (stream) stream, label, rank, because FROM {S}.run_stream_labels
                     WHERE project_id = $1 ORDER BY stream COLLATE \"C\", rank DESC",
                ),
                &[&self.project],
            )?
            .iter()
            .map(label_from)
            .collect())
        })
    }

    fn get_run(&self, run_id: &RunId) -> Result<Option<RunRecord>> {
        self.read(|c| {
            let row = c.query_opt(
                &self.q(&format!(
                    "SELECT {RUN_COLUMNS} FROM {{S}}.runs WHERE project_id = $1 AND run_id = $2"
                )),
                &[&self.project, &run_id.as_str()],
            )?;
            let Some(row) = row else { return Ok(None) };
            self.build_run(c, &row).map(Some).map_err(|e| {
                Error::failed(format!("run `{run_id}` in the system database is unreadable"))
                    .detail(e.message().to_owned())
                    .hint(format!(
                        "other runs are not affected; `dsm runs prune --run-id {run_id}` removes this one"
                    ))
            })
        })
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let status_sql = match filter.status {
            None => "TRUE",
            Some(RunStatus::Success) => "status = 'success'",
            Some(RunStatus::Failed) => "status = 'failed'",
            Some(RunStatus::Running | RunStatus::Killed) => "status IN ('running', 'killed')",
        };
        let derived = matches!(filter.status, Some(RunStatus::Running | RunStatus::Killed));
        let limit: Option<i64> = match (filter.limit, derived) {
            (Some(n), false) => Some(big(n as u64)),
            _ => None,
        };
        self.read(|c| {
            let mut runs = self.runs_where(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM {{S}}.runs
                     WHERE project_id = $1 AND ($2::text IS NULL OR state_id = $2) AND {status_sql}
                     ORDER BY started_at DESC, run_id DESC LIMIT $3"
                ),
                &[
                    &self.project,
                    &filter.state_id.as_ref().map(StateId::as_str),
                    &limit,
                ],
            )?;
            runs.retain(|r| filter.status.is_none_or(|s| s == r.status));
            if let Some(n) = filter.limit {
                runs.truncate(n);
            }
            Ok(runs)
        })
    }

    fn record_run(&self, run: &RunRecord) -> Result<()> {
        let ms = |t: DateTime<Utc>| t.timestamp_millis() as f64;
        self.write(|tx| {
            let n = tx.execute(
                &self.q(
                    "INSERT INTO {S}.runs (project_id, run_id, state_id, environment, trigger, started_at,
                         ended_at, heartbeat_at, status, pid, host, error, log_path)
                     VALUES ($1, $2, $3, $4, $5, to_timestamp($6 / 1000), to_timestamp($7 / 1000),
                         to_timestamp($8 / 1000), $9, $10, $11, $12, $13)
                     ON CONFLICT (project_id, run_id) DO NOTHING",
                ),
                &[
                    &self.project,
                    &run.run_id.as_str(),
                    &run.state_id.as_ref().map(StateId::as_str),
                    &run.environment,
                    &run.trigger,
                    &ms(run.started_at),
                    &run.ended_at.map(ms),
                    &ms(run.heartbeat_at),
                    &run.status.as_str(),
                    &i64::from(run.pid),
                    &run.host,
                    &run.error,
                    &run.log_path.as_ref().map(|p| p.display().to_string()),
                ],
            )?;
            if n == 0 {
                return Err(Error::config(format!(
                    "run id `{}` is already recorded",
                    run.run_id
                )));
            }
            self.upsert_plugins(tx, &run.run_id, &run.plugins)?;
            tx.execute(
                &self.q(
                    "UPDATE {S}.runs SET records_sent = $1, records_confirmed = $2
                     WHERE project_id = $3 AND run_id = $4",
                ),
                &[
                    &run.records_sent.map(big),
                    &run.records_confirmed.map(big),
                    &self.project,
                    &run.run_id.as_str(),
                ],
            )?;
            for s in &run.streams {
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.run_streams (project_id, run_id, stream, records, bytes)
                         VALUES ($1, $2, $3, $4, $5)",
                    ),
                    &[&self.project, &run.run_id.as_str(), &s.stream, &big(s.records), &big(s.bytes)],
                )?;
            }
            Ok(())
        })
    }

    fn list_runs_since(&self, since: DateTime<Utc>) -> Result<Vec<RunRecord>> {
        let since = since.timestamp_millis() as f64;
        self.read(|c| {
            self.runs_where(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM {{S}}.runs
                     WHERE project_id = $1 AND started_at >= to_timestamp($2 / 1000)
                     ORDER BY started_at DESC, run_id DESC"
                ),
                &[&self.project, &since],
            )
        })
    }

    fn delete_runs(&self, run_ids: &[RunId]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for id in run_ids {
                let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&self.project, &id.as_str()];
                // Counters move to the pruned totals first, so totals never go down.
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.pruned_run_totals (project_id, kind, subject, detail, runs)
                         SELECT $1, 'source', p.plugin, r.status, 1 FROM {S}.run_plugins p
                         JOIN {S}.runs r ON r.project_id = p.project_id AND r.run_id = p.run_id
                         WHERE p.project_id = $1 AND p.run_id = $2 AND p.role = 'extractor'
                         ON CONFLICT (project_id, kind, subject, detail) DO UPDATE SET
                             runs = {S}.pruned_run_totals.runs + 1",
                    ),
                    &params,
                )?;
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.pruned_run_totals (project_id, kind, subject, detail, runs)
                         SELECT $1, 'flow', state_id, status, 1 FROM {S}.runs
                         WHERE project_id = $1 AND run_id = $2 AND state_id IS NOT NULL
                         ON CONFLICT (project_id, kind, subject, detail) DO UPDATE SET
                             runs = {S}.pruned_run_totals.runs + 1",
                    ),
                    &params,
                )?;
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.pruned_run_totals (project_id, kind, subject, detail, records, bytes)
                         SELECT $1, 'stream', p.plugin, s.stream, GREATEST(0, s.records), GREATEST(0, s.bytes)
                         FROM {S}.run_plugins p
                         JOIN {S}.run_streams s ON s.project_id = p.project_id AND s.run_id = p.run_id
                         WHERE p.project_id = $1 AND p.run_id = $2 AND p.role = 'extractor'
                         ON CONFLICT (project_id, kind, subject, detail) DO UPDATE SET
                             records = {S}.pruned_run_totals.records + excluded.records,
                             bytes = {S}.pruned_run_totals.bytes + excluded.bytes",
                    ),
                    &params,
                )?;
                for table in ["run_plugins", "run_streams", "run_artifacts", "run_stream_labels"] {
                    tx.execute(
                        &self.q(&format!(
                            "DELETE FROM {{S}}.{table} WHERE project_id = $1 AND run_id = $2"
                        )),
                        &params,
                    )?;
                }
                n += tx.execute(
                    &self.q("DELETE FROM {S}.runs WHERE project_id = $1 AND run_id = $2"),
                    &params,
                )?;
            }
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn pruned_totals(&self) -> Result<Vec<PrunedTotal>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT kind, subject, detail, runs, records, bytes FROM {S}.pruned_run_totals
                     WHERE project_id = $1
                     ORDER BY kind COLLATE \"C\", subject COLLATE \"C\", detail COLLATE \"C\"",
                ),
                &[&self.project],
            )?
            .iter()
            .map(|r| PrunedTotal {
                kind: r.get(0),
                subject: r.get(1),
                detail: r.get(2),
                runs: count(r.get(3)),
                records: count(r.get(4)),
                bytes: count(r.get(5)),
            })
            .collect())
        })
    }
}

fn label_from(r: &Row) -> StreamLabel {
    StreamLabel {
        stream: r.get(0),
        label: r.get(1),
        rank: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
        because: r.get(3),
    }
}

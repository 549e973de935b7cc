//! [`RunLocks`] on SQLite: the `flow_locks` table (a lock's heartbeat also refreshes its run).

use std::time::Duration;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, now_text, parse_time};
use crate::error::Result;
use crate::store::liveness;
use crate::store::{FlowLock, LockHolder, RunId, RunLocks, StateId, already_running_error};

impl RunLocks for SqliteStore {
    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock> {
        let token = uuid::Uuid::new_v4().to_string();
        self.write_history(|tx| {
            if let Some(holder) = holder_in(tx, state_id, self.stale_after)? {
                if !holder.stale && !force {
                    return Err(already_running_error(&holder));
                }
                tracing::warn!(
                    state_id = %state_id,
                    pid = holder.pid,
                    host = %holder.host,
                    stale = holder.stale,
                    "taking over the lock of a flow"
                );
            }
            let now = now_text();
            tx.execute(
                "INSERT INTO flow_locks (state_id, token, run_id, pid, host, acquired_at, heartbeat_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (state_id) DO UPDATE SET token = excluded.token, run_id = excluded.run_id,
                     pid = excluded.pid, host = excluded.host, acquired_at = excluded.acquired_at,
                     heartbeat_at = excluded.heartbeat_at",
                params![
                    state_id.as_str(),
                    token,
                    run_id.map(RunId::as_str),
                    std::process::id(),
                    liveness::host_name(),
                    now
                ],
            )?;
            Ok(())
        })?;
        Ok(FlowLock {
            state_id: state_id.clone(),
            token,
            run_id: run_id.cloned(),
        })
    }

    fn heartbeat(&self, lock: &FlowLock) -> Result<bool> {
        self.write_history(|tx| {
            let now = now_text();
            let n = tx.execute(
                "UPDATE flow_locks SET heartbeat_at = ?1 WHERE state_id = ?2 AND token = ?3",
                params![now, lock.state_id.as_str(), lock.token],
            )?;
            if let Some(run) = &lock.run_id {
                tx.execute(
                    "UPDATE runs SET heartbeat_at = ?1 WHERE run_id = ?2 AND status = 'running'",
                    params![now, run.as_str()],
                )?;
            }
            Ok(n == 1)
        })
    }

    fn release_lock(&self, lock: &FlowLock) -> Result<()> {
        self.write_history(|tx| {
            tx.execute(
                "DELETE FROM flow_locks WHERE state_id = ?1 AND token = ?2",
                params![lock.state_id.as_str(), lock.token],
            )?;
            Ok(())
        })
    }

    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>> {
        self.read(|c| holder_in(c, state_id, self.stale_after))
    }

    fn lock_holders(&self) -> Result<Vec<LockHolder>> {
        self.read(|c| {
            let ids: Vec<String> = c
                .prepare("SELECT state_id FROM flow_locks ORDER BY state_id")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for id in ids {
                out.extend(holder_in(c, &StateId::new(id), self.stale_after)?);
            }
            Ok(out)
        })
    }
}

fn holder_in(
    conn: &Connection,
    state_id: &StateId,
    stale_after: Duration,
) -> Result<Option<LockHolder>> {
    let row = conn
        .query_row(
            "SELECT pid, host, run_id, acquired_at, heartbeat_at FROM flow_locks WHERE state_id = ?1",
            [state_id.as_str()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((pid, host, run_id, acquired, hb)) = row else {
        return Ok(None);
    };
    let pid = u32::try_from(pid).unwrap_or(0);
    let heartbeat_at = parse_time(&hb)?;
    let acquired_at = parse_time(&acquired)?;
    let stale = liveness::is_stale(
        pid,
        &host,
        Some(acquired_at),
        heartbeat_at,
        Utc::now(),
        stale_after,
    );
    Ok(Some(LockHolder {
        state_id: state_id.clone(),
        pid,
        host,
        run_id: run_id.map(RunId::new),
        acquired_at,
        heartbeat_at,
        stale,
    }))
}

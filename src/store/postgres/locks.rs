//! [`RunLocks`] on PostgreSQL: one lease row per flow in `flow_locks`, taken with a single
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (free, expired on the server's clock, or
//! forced), renewed by its holder's token, with a fencing number that grows with every taking.
//! No session-level lock is involved.

use postgres::GenericClient;

use super::{PgStore, time_ms};
use crate::error::Result;
use crate::store::liveness;
use crate::store::{FlowLock, LockHolder, RunId, RunLocks, StateId, already_running_error};

impl PgStore {
    fn holder_in(
        &self,
        c: &mut impl GenericClient,
        state_id: &StateId,
    ) -> Result<Option<LockHolder>> {
        let row = c.query_opt(
            &self.q(
                "SELECT pid, host, run_id, {S}.epoch_ms(acquired_at), {S}.epoch_ms(heartbeat_at),
                        expires_at <= now()
                 FROM {S}.flow_locks WHERE project_id = $1 AND state_id = $2 AND token IS NOT NULL",
            ),
            &[&self.project, &state_id.as_str()],
        )?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LockHolder {
            state_id: state_id.clone(),
            pid: u32::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            host: row.get(1),
            run_id: row.get::<_, Option<String>>(2).map(RunId::new),
            acquired_at: time_ms(row.get(3))?,
            heartbeat_at: time_ms(row.get(4))?,
            stale: row.get(5),
        }))
    }

    /// The fencing number of the lease `lock` holds, while it still holds it.
    pub fn fence(&self, lock: &FlowLock) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(c.query_opt(
                &self.q(
                    "SELECT fence FROM {S}.flow_locks
                     WHERE project_id = $1 AND state_id = $2 AND token = $3 AND expires_at > now()",
                ),
                &[&self.project, &lock.state_id.as_str(), &lock.token],
            )?
            .map(|r| r.get(0)))
        })
    }
}

impl RunLocks for PgStore {
    fn acquire_lock(
        &self,
        state_id: &StateId,
        run_id: Option<&RunId>,
        force: bool,
    ) -> Result<FlowLock> {
        let token = uuid::Uuid::new_v4().to_string();
        let pid = i64::from(std::process::id());
        let taken = self.write(|tx| {
            let row = tx.query_opt(
                &self.q(
                    "INSERT INTO {S}.flow_locks AS l (project_id, state_id, token, fence, run_id, pid, host,
                         acquired_at, heartbeat_at, expires_at)
                     VALUES ($1, $2, $3, 1, $4, $5, $6, now(), now(), now() + $7 * interval '1 millisecond')
                     ON CONFLICT (project_id, state_id) DO UPDATE SET token = excluded.token,
                         fence = l.fence + 1, run_id = excluded.run_id, pid = excluded.pid,
                         host = excluded.host, acquired_at = excluded.acquired_at,
                         heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
                     WHERE l.token IS NULL OR l.expires_at <= now() OR $8
                     RETURNING fence",
                ),
                &[
                    &self.project,
                    &state_id.as_str(),
                    &token,
                    &run_id.map(RunId::as_str),
                    &pid,
                    &liveness::host_name(),
                    &self.expiry_ms(),
                    &force,
                ],
            )?;
            match row {
                Some(r) => Ok(Ok(r.get::<_, i64>(0))),
                None => Ok(Err(self.holder_in(tx, state_id)?)),
            }
        })?;
        match taken {
            Ok(fence) => {
                tracing::debug!(state_id = %state_id, fence, "took the flow's lease");
                Ok(FlowLock {
                    state_id: state_id.clone(),
                    token,
                    run_id: run_id.cloned(),
                })
            }
            Err(Some(holder)) => Err(already_running_error(&holder)),
            // Released between the two statements: try again.
            Err(None) => self.acquire_lock(state_id, run_id, force),
        }
    }

    fn heartbeat(&self, lock: &FlowLock) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                &self.q("UPDATE {S}.flow_locks SET heartbeat_at = now(),
                         expires_at = now() + $4 * interval '1 millisecond'
                     WHERE project_id = $1 AND state_id = $2 AND token = $3"),
                &[
                    &self.project,
                    &lock.state_id.as_str(),
                    &lock.token,
                    &self.expiry_ms(),
                ],
            )?;
            if n == 1
                && let Some(run) = &lock.run_id
            {
                tx.execute(
                    &self.q("UPDATE {S}.runs SET heartbeat_at = now()
                         WHERE project_id = $1 AND run_id = $2 AND status = 'running'"),
                    &[&self.project, &run.as_str()],
                )?;
            }
            Ok(n == 1)
        })
    }

    fn release_lock(&self, lock: &FlowLock) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q("UPDATE {S}.flow_locks SET token = NULL, expires_at = now()
                     WHERE project_id = $1 AND state_id = $2 AND token = $3"),
                &[&self.project, &lock.state_id.as_str(), &lock.token],
            )?;
            Ok(())
        })
    }

    fn lock_holder(&self, state_id: &StateId) -> Result<Option<LockHolder>> {
        self.read(|c| self.holder_in(c, state_id))
    }

    fn lock_holders(&self) -> Result<Vec<LockHolder>> {
        self.read(|c| {
            let ids: Vec<String> = c
                .query(
                    &self.q(
                        "SELECT state_id FROM {S}.flow_locks
                         WHERE project_id = $1 AND token IS NOT NULL ORDER BY state_id COLLATE \"C\"",
                    ),
                    &[&self.project],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for id in ids {
                out.extend(self.holder_in(c, &StateId::new(id))?);
            }
            Ok(out)
        })
    }
}

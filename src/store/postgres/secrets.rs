//! [`SecretStore`] and [`AuditStore`] on PostgreSQL: the `secret_keys`, `secrets`,
//! `audit_log`, `audit_anchor` and `audit_head` tables.
//!
//! Several hosts may append to one project's chain at once. Every transaction that appends
//! (or rewrites the chain, as a rotation or a pruning does) first locks the project's row of
//! `audit_head` (`SELECT ... FOR UPDATE`, a row lock held to the end of the transaction, so
//! it works through a transaction-pooling pooler); the next one waits, then reads the chain's
//! last link after the first committed. The chain cannot fork, and no append is lost.

use postgres::GenericClient;

use super::{PgStore, time_ms};
use crate::error::{Error, Result};
use crate::store::audit::{
    AuditAnchor, AuditAppend, AuditChain, AuditRow, AuditStore, ChainLink, RecordedHead,
};
use crate::store::format_time;
use crate::store::secrets::{
    KeyCheck, Rotation, RotationInput, SealedSecret, SecretInfo, SecretStore, scope_column,
    scope_of,
};

impl PgStore {
    /// Locks the project's chain head for the rest of the transaction (creating its row the
    /// first time).
    pub(super) fn lock_chain(&self, c: &mut impl GenericClient) -> Result<()> {
        c.execute(
            &self.q(
                "INSERT INTO {S}.audit_head (project_id, seq, mac) VALUES ($1, 0, ''::bytea)
                     ON CONFLICT (project_id) DO NOTHING",
            ),
            &[&self.project],
        )?;
        c.query_one(
            &self.q("SELECT seq FROM {S}.audit_head WHERE project_id = $1 FOR UPDATE"),
            &[&self.project],
        )?;
        Ok(())
    }

    fn anchor_in(&self, c: &mut impl GenericClient) -> Result<Option<AuditAnchor>> {
        Ok(c.query_opt(
            &self.q("SELECT seq, mac, anchor_mac FROM {S}.audit_anchor WHERE project_id = $1"),
            &[&self.project],
        )?
        .map(|r| AuditAnchor {
            seq: r.get(0),
            mac: r.get(1),
            anchor_mac: r.get(2),
        }))
    }

    /// The last link: the newest entry, else the anchor, else the empty link.
    pub(super) fn last_link(&self, c: &mut impl GenericClient) -> Result<ChainLink> {
        let row = c.query_opt(
            &self.q("SELECT seq, mac FROM {S}.audit_log WHERE project_id = $1
                     ORDER BY seq DESC LIMIT 1"),
            &[&self.project],
        )?;
        if let Some(r) = row {
            return Ok(ChainLink {
                seq: r.get(0),
                mac: r.get(1),
            });
        }
        Ok(match self.anchor_in(c)? {
            Some(a) => ChainLink {
                seq: a.seq,
                mac: a.mac,
            },
            None => ChainLink {
                seq: 0,
                mac: Vec::new(),
            },
        })
    }

    pub(super) fn insert_audit(&self, c: &mut impl GenericClient, row: &AuditRow) -> Result<()> {
        c.execute(
            &self.q(
                "INSERT INTO {S}.audit_log (project_id, seq, at, os_user, host, command, action, targets, mac)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            ),
            &[
                &self.project,
                &row.seq,
                &row.at,
                &row.os_user,
                &row.host,
                &row.command,
                &row.action,
                &row.targets,
                &row.mac,
            ],
        )?;
        self.set_head(
            c,
            &ChainLink {
                seq: row.seq,
                mac: row.head_mac.clone(),
            },
        )
    }

    fn set_head(&self, c: &mut impl GenericClient, head: &ChainLink) -> Result<()> {
        c.execute(
            &self.q(
                "INSERT INTO {S}.audit_head (project_id, seq, mac) VALUES ($1, $2, $3)
                     ON CONFLICT (project_id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac",
            ),
            &[&self.project, &head.seq, &head.mac],
        )?;
        Ok(())
    }

    fn audit_rows_in(
        &self,
        c: &mut impl GenericClient,
        since: Option<&str>,
    ) -> Result<Vec<AuditRow>> {
        Ok(c.query(
            &self.q(
                "SELECT seq, at, os_user, host, command, action, targets, mac FROM {S}.audit_log
                     WHERE project_id = $1 AND ($2::text IS NULL OR at >= $2) ORDER BY seq",
            ),
            &[&self.project, &since],
        )?
        .iter()
        .map(|r| AuditRow {
            seq: r.get(0),
            at: r.get(1),
            os_user: r.get(2),
            host: r.get(3),
            command: r.get(4),
            action: r.get(5),
            targets: r.get(6),
            mac: r.get(7),
            head_mac: Vec::new(),
        })
        .collect())
    }

    fn chain_in(&self, c: &mut impl GenericClient) -> Result<AuditChain> {
        let head = c
            .query_opt(
                &self.q("SELECT seq, mac FROM {S}.audit_head WHERE project_id = $1"),
                &[&self.project],
            )?
            .map(|r| ChainLink {
                seq: r.get(0),
                mac: r.get(1),
            });
        Ok(AuditChain {
            anchor: self.anchor_in(c)?,
            rows: self.audit_rows_in(c, None)?,
            head: match head {
                Some(link) => RecordedHead::At(link),
                None => RecordedHead::Problem(format!(
                    "the chain's head row (table `audit_head`, project `{}`) is missing",
                    self.project
                )),
            },
        })
    }

    fn sealed_in(
        &self,
        c: &mut impl GenericClient,
        plugin: Option<&str>,
    ) -> Result<Vec<SealedSecret>> {
        Ok(c.query(
            &self.q(
                "SELECT plugin, setting, key_version, nonce, ciphertext, scope FROM {S}.secrets
                     WHERE project_id = $1 AND ($2::text IS NULL OR plugin = $2)
                     ORDER BY plugin COLLATE \"C\", setting COLLATE \"C\", scope COLLATE \"C\"",
            ),
            &[&self.project, &plugin],
        )?
        .iter()
        .map(|r| SealedSecret {
            plugin: r.get(0),
            setting: r.get(1),
            scope: scope_of(r.get(5)),
            key_version: r.get(2),
            nonce: r.get(3),
            ciphertext: r.get(4),
        })
        .collect())
    }

    /// Inserts or replaces one secret.
    pub(super) fn upsert_secret(
        &self,
        c: &mut impl GenericClient,
        s: &SealedSecret,
        updated_by: &str,
    ) -> Result<()> {
        c.execute(
            &self.q(
                "INSERT INTO {S}.secrets (project_id, plugin, setting, key_version, nonce, ciphertext,
                     updated_at, updated_by, scope)
                 VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8)
                 ON CONFLICT (project_id, plugin, setting, scope) DO UPDATE SET key_version = excluded.key_version,
                     nonce = excluded.nonce, ciphertext = excluded.ciphertext,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            ),
            &[
                &self.project,
                &s.plugin,
                &s.setting,
                &s.key_version,
                &s.nonce,
                &s.ciphertext,
                &updated_by,
                &scope_column(s.scope.as_deref()),
            ],
        )?;
        Ok(())
    }

    fn key_in(&self, c: &mut impl GenericClient) -> Result<Option<KeyCheck>> {
        Ok(c.query_opt(
            &self.q(
                "SELECT version, check_value FROM {S}.secret_keys WHERE project_id = $1
                     ORDER BY version DESC LIMIT 1",
            ),
            &[&self.project],
        )?
        .map(|r| KeyCheck {
            version: r.get(0),
            check_value: r.get(1),
        }))
    }
}

impl SecretStore for PgStore {
    fn key_owner(&self) -> Option<String> {
        Some(self.project_id().to_owned())
    }

    fn current_key(&self) -> Result<Option<KeyCheck>> {
        self.read(|c| self.key_in(c))
    }

    fn register_first_key(&self, check_value: &[u8]) -> Result<()> {
        // Only when the project has no key at all (two hosts registering at once: one wins,
        // the primary key decides).
        self.write(|tx| {
            tx.execute(
                &self.q(
                    "INSERT INTO {S}.secret_keys (project_id, version, check_value, created_at)
                     SELECT $1, 1, $2, now()
                     WHERE NOT EXISTS (SELECT 1 FROM {S}.secret_keys WHERE project_id = $1)
                     ON CONFLICT (project_id, version) DO NOTHING",
                ),
                &[&self.project, &check_value],
            )?;
            Ok(())
        })
    }

    fn sealed_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
    ) -> Result<Option<SealedSecret>> {
        self.read(|c| {
            Ok(c.query_opt(
                &self.q("SELECT key_version, nonce, ciphertext FROM {S}.secrets
                     WHERE project_id = $1 AND plugin = $2 AND setting = $3 AND scope = $4"),
                &[&self.project, &plugin, &setting, &scope_column(scope)],
            )?
            .map(|r| SealedSecret {
                plugin: plugin.to_owned(),
                setting: setting.to_owned(),
                scope: scope.map(str::to_owned),
                key_version: r.get(0),
                nonce: r.get(1),
                ciphertext: r.get(2),
            }))
        })
    }

    fn sealed_secrets(&self, plugin: Option<&str>) -> Result<Vec<SealedSecret>> {
        self.read(|c| self.sealed_in(c, plugin))
    }

    fn secret_infos(&self) -> Result<Vec<SecretInfo>> {
        let rows = self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT plugin, setting, {S}.epoch_ms(updated_at), updated_by, key_version, scope
                     FROM {S}.secrets WHERE project_id = $1
                     ORDER BY plugin COLLATE \"C\", setting COLLATE \"C\", scope COLLATE \"C\"",
                ),
                &[&self.project],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    plugin: r.get(0),
                    setting: r.get(1),
                    environment: scope_of(r.get(5)),
                    updated_at: format_time(time_ms(r.get(2))?),
                    updated_by: r.get(3),
                    key_version: r.get(4),
                })
            })
            .collect()
    }

    fn put_secret(
        &self,
        secret: &SealedSecret,
        updated_by: &str,
        entry: &AuditAppend<'_>,
    ) -> Result<()> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                // A rotation on another host since this value was sealed: refuse rather than
                // store a value under a key that no longer exists.
                if let Some(key) = self.key_in(tx)?
                    && key.version != secret.key_version
                {
                    return Err(Error::failed(format!(
                        "the master key was rotated (now version {}) while `{}.{}` was being set",
                        key.version, secret.plugin, secret.setting
                    ))
                    .hint("run the command again with the current master key"));
                }
                self.upsert_secret(tx, secret, updated_by)?;
                self.last_link(tx)
            },
            |link| Ok(entry(&link)),
            |tx, row| self.insert_audit(tx, &row),
        )
    }

    fn delete_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
        entry: &AuditAppend<'_>,
    ) -> Result<bool> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                let removed = tx.execute(
                    &self.q("DELETE FROM {S}.secrets
                         WHERE project_id = $1 AND plugin = $2 AND setting = $3 AND scope = $4"),
                    &[&self.project, &plugin, &setting, &scope_column(scope)],
                )?;
                if removed == 0 {
                    return Ok(None);
                }
                self.last_link(tx).map(Some)
            },
            |link| Ok(link.map(|l| entry(&l))),
            |tx, row| match row {
                None => Ok(false),
                Some(row) => self.insert_audit(tx, &row).map(|()| true),
            },
        )
    }

    fn rotate_secrets(
        &self,
        rotate: &mut dyn FnMut(RotationInput) -> Result<Rotation>,
    ) -> Result<usize> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                Ok(RotationInput {
                    secrets: self.sealed_in(tx, None)?,
                    chain: self.chain_in(tx)?,
                })
            },
            rotate,
            |tx, out| self.store_rotation(tx, &out),
        )
    }
}

impl PgStore {
    fn store_rotation(&self, tx: &mut postgres::Transaction<'_>, out: &Rotation) -> Result<usize> {
        for s in &out.secrets {
            tx.execute(
                &self.q(
                    "UPDATE {S}.secrets SET key_version = $4, nonce = $5, ciphertext = $6
                         WHERE project_id = $1 AND plugin = $2 AND setting = $3 AND scope = $7",
                ),
                &[
                    &self.project,
                    &s.plugin,
                    &s.setting,
                    &s.key_version,
                    &s.nonce,
                    &s.ciphertext,
                    &scope_column(s.scope.as_deref()),
                ],
            )?;
        }
        if let Some(mac) = &out.chain.anchor_mac {
            tx.execute(
                &self.q("UPDATE {S}.audit_anchor SET anchor_mac = $2 WHERE project_id = $1"),
                &[&self.project, mac],
            )?;
        }
        let update = tx.prepare(
            &self.q("UPDATE {S}.audit_log SET mac = $3 WHERE project_id = $1 AND seq = $2"),
        )?;
        for (seq, mac) in &out.chain.macs {
            tx.execute(&update, &[&self.project, seq, mac])?;
        }
        tx.execute(
            &self.q("DELETE FROM {S}.secret_keys WHERE project_id = $1"),
            &[&self.project],
        )?;
        tx.execute(
            &self.q(
                "INSERT INTO {S}.secret_keys (project_id, version, check_value, created_at)
                     VALUES ($1, $2, $3, now())",
            ),
            &[&self.project, &out.key.version, &out.key.check_value],
        )?;
        self.insert_audit(tx, &out.entry)?;
        Ok(out.secrets.len())
    }
}

impl AuditStore for PgStore {
    fn append_audit(&self, entry: &AuditAppend<'_>) -> Result<ChainLink> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                self.last_link(tx)
            },
            |link| Ok(entry(&link)),
            |tx, row| {
                self.insert_audit(tx, &row)?;
                Ok(ChainLink {
                    seq: row.seq,
                    mac: row.head_mac,
                })
            },
        )
    }

    fn audit_rows(&self, since: Option<&str>) -> Result<Vec<AuditRow>> {
        self.read(|c| self.audit_rows_in(c, since))
    }

    fn audit_chain(&self) -> Result<AuditChain> {
        // One snapshot, so an append on another host cannot fall between the reads.
        self.read(|tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            self.chain_in(tx)
        })
    }

    fn prune_audit(
        &self,
        before: &str,
        anchor_mac: &dyn Fn(&ChainLink) -> Vec<u8>,
        entry: &dyn Fn(&ChainLink, &ChainLink) -> AuditRow,
    ) -> Result<usize> {
        self.write_split(
            |tx| {
                self.lock_chain(tx)?;
                let boundary = tx
                    .query_opt(
                        &self.q(
                            "SELECT seq, mac FROM {S}.audit_log WHERE project_id = $1 AND at < $2
                             ORDER BY seq DESC LIMIT 1",
                        ),
                        &[&self.project, &before],
                    )?
                    .map(|r| ChainLink {
                        seq: r.get(0),
                        mac: r.get(1),
                    });
                // The last link is the same before and after the pruning (the anchor takes
                // the boundary's place when the boundary is the newest entry).
                boundary
                    .map(|b| Ok((b, self.last_link(tx)?)))
                    .transpose()
            },
            |found| {
                Ok(found.map(|(boundary, last)| {
                    let row = entry(&last, &boundary);
                    (anchor_mac(&boundary), boundary, row)
                }))
            },
            |tx, found| {
                let Some((anchor_mac, boundary, row)) = found else {
                    return Ok(0);
                };
                let removed = tx.execute(
                    &self.q("DELETE FROM {S}.audit_log WHERE project_id = $1 AND seq <= $2"),
                    &[&self.project, &boundary.seq],
                )?;
                tx.execute(
                    &self.q(
                        "INSERT INTO {S}.audit_anchor (project_id, seq, mac, anchor_mac) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (project_id) DO UPDATE SET seq = excluded.seq, mac = excluded.mac,
                             anchor_mac = excluded.anchor_mac",
                    ),
                    &[&self.project, &boundary.seq, &boundary.mac, &anchor_mac],
                )?;
                self.insert_audit(tx, &row)?;
                Ok(usize::try_from(removed).unwrap_or(usize::MAX))
            },
        )
    }

    fn record_audit_head(&self, head: &ChainLink) -> Result<()> {
        self.write(|tx| {
            self.lock_chain(tx)?;
            self.set_head(tx, head)
        })
    }
}

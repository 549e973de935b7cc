//! [`SecretStore`] on SQLite: the `secrets` and `secret_keys` tables.

use rusqlite::{Connection, OptionalExtension, params};

use super::audit::append_in;
use super::{SqliteStore, now_text};
use crate::error::Result;
use crate::store::audit::AuditAppend;
use crate::store::secrets::{
    KeyCheck, Rotation, RotationInput, SealedSecret, SecretInfo, SecretStore, scope_column,
    scope_of,
};

pub(super) fn sealed(conn: &Connection, plugin: Option<&str>) -> Result<Vec<SealedSecret>> {
    let mut stmt = conn.prepare(
        "SELECT plugin, setting, key_version, nonce, ciphertext, scope FROM secrets
         WHERE ?1 IS NULL OR plugin = ?1 ORDER BY plugin, setting, scope",
    )?;
    let rows = stmt.query_map(params![plugin], |r| {
        Ok(SealedSecret {
            plugin: r.get(0)?,
            setting: r.get(1)?,
            key_version: r.get(2)?,
            nonce: r.get(3)?,
            ciphertext: r.get(4)?,
            scope: scope_of(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Inserts or replaces one secret.
pub(super) fn upsert(conn: &Connection, s: &SealedSecret, updated_by: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO secrets (plugin, setting, key_version, nonce, ciphertext, updated_at, updated_by, scope)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (plugin, setting, scope) DO UPDATE SET key_version = excluded.key_version,
           nonce = excluded.nonce, ciphertext = excluded.ciphertext,
           updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        params![
            s.plugin,
            s.setting,
            s.key_version,
            s.nonce,
            s.ciphertext,
            now_text(),
            updated_by,
            scope_column(s.scope.as_deref())
        ],
    )?;
    Ok(())
}

impl SecretStore for SqliteStore {
    fn key_owner(&self) -> Option<String> {
        self.key_owner.clone()
    }

    fn current_key(&self) -> Result<Option<KeyCheck>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT version, check_value FROM secret_keys ORDER BY version DESC LIMIT 1",
                [],
                |r| {
                    Ok(KeyCheck {
                        version: r.get(0)?,
                        check_value: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn register_first_key(&self, check_value: &[u8]) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO secret_keys (version, check_value, created_at) VALUES (1, ?1, ?2)",
                params![check_value, now_text()],
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
            Ok(c.query_row(
                "SELECT key_version, nonce, ciphertext FROM secrets
                 WHERE plugin = ?1 AND setting = ?2 AND scope = ?3",
                params![plugin, setting, scope_column(scope)],
                |r| {
                    Ok(SealedSecret {
                        plugin: plugin.to_string(),
                        setting: setting.to_string(),
                        scope: scope.map(str::to_string),
                        key_version: r.get(0)?,
                        nonce: r.get(1)?,
                        ciphertext: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn sealed_secrets(&self, plugin: Option<&str>) -> Result<Vec<SealedSecret>> {
        self.read(|c| sealed(c, plugin))
    }

    fn secret_infos(&self) -> Result<Vec<SecretInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT plugin, setting, updated_at, updated_by, key_version, scope FROM secrets
                 ORDER BY plugin, setting, scope",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SecretInfo {
                    plugin: r.get(0)?,
                    setting: r.get(1)?,
                    environment: scope_of(r.get(5)?),
                    updated_at: r.get(2)?,
                    updated_by: r.get(3)?,
                    key_version: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn put_secret(
        &self,
        secret: &SealedSecret,
        updated_by: &str,
        entry: &AuditAppend<'_>,
    ) -> Result<()> {
        let head = self.write(|tx| {
            upsert(tx, secret, updated_by)?;
            append_in(tx, entry)
        })?;
        self.write_head(&head)
    }

    fn delete_secret(
        &self,
        plugin: &str,
        setting: &str,
        scope: Option<&str>,
        entry: &AuditAppend<'_>,
    ) -> Result<bool> {
        let head = self.write(|tx| {
            let removed = tx.execute(
                "DELETE FROM secrets WHERE plugin = ?1 AND setting = ?2 AND scope = ?3",
                params![plugin, setting, scope_column(scope)],
            )?;
            if removed == 0 {
                return Ok(None);
            }
            append_in(tx, entry).map(Some)
        })?;
        match head {
            None => Ok(false),
            Some(head) => {
                self.write_head(&head)?;
                Ok(true)
            }
        }
    }

    fn rotate_secrets(
        &self,
        rotate: &mut dyn FnMut(RotationInput) -> Result<Rotation>,
    ) -> Result<usize> {
        let (count, head) = self.write(|tx| {
            let input = RotationInput {
                secrets: sealed(tx, None)?,
                chain: self.chain_in(tx)?,
            };
            let out = rotate(input)?;
            for s in &out.secrets {
                tx.execute(
                    "UPDATE secrets SET key_version = ?3, nonce = ?4, ciphertext = ?5
                     WHERE plugin = ?1 AND setting = ?2 AND scope = ?6",
                    params![
                        s.plugin,
                        s.setting,
                        s.key_version,
                        s.nonce,
                        s.ciphertext,
                        scope_column(s.scope.as_deref())
                    ],
                )?;
            }
            if let Some(mac) = &out.chain.anchor_mac {
                tx.execute(
                    "UPDATE audit_anchor SET anchor_mac = ?1 WHERE id = 1",
                    [mac],
                )?;
            }
            for (seq, mac) in &out.chain.macs {
                tx.execute(
                    "UPDATE audit_log SET mac = ?1 WHERE seq = ?2",
                    params![mac, seq],
                )?;
            }
            tx.execute("DELETE FROM secret_keys", [])?;
            tx.execute(
                "INSERT INTO secret_keys (version, check_value, created_at) VALUES (?1, ?2, ?3)",
                params![out.key.version, out.key.check_value, now_text()],
            )?;
            super::audit::insert(tx, &out.entry)?;
            Ok((
                out.secrets.len(),
                crate::store::audit::ChainLink {
                    seq: out.entry.seq,
                    mac: out.entry.head_mac.clone(),
                },
            ))
        })?;
        self.write_head(&head)?;
        Ok(count)
    }
}

//! [`ConfigHistoryStore`] on SQLite: the `config_history` and `config_history_files` tables.

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, now_text};
use crate::error::Result;
use crate::store::config_history::{ConfigHistoryStore, ConfigRestore, ConfigVersionRow};

fn latest(conn: &Connection, plugin: &str) -> Result<Option<(i64, String)>> {
    Ok(conn
        .query_row(
            "SELECT version, yml_hash FROM config_history WHERE plugin = ?1 ORDER BY version DESC LIMIT 1",
            params![plugin],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

const COLUMNS: &str = "h.plugin, h.version, h.plugin_type, h.at, h.os_user, h.command, h.action,
    h.setting, h.yml, h.yml_hash, h.stored, h.sealed, f.environment";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConfigVersionRow> {
    Ok(ConfigVersionRow {
        plugin: r.get(0)?,
        version: r.get(1)?,
        plugin_type: r.get(2)?,
        at: r.get(3)?,
        os_user: r.get(4)?,
        command: r.get(5)?,
        action: r.get(6)?,
        setting: r.get(7)?,
        yml: r.get(8)?,
        yml_hash: r.get(9)?,
        stored: r.get(10)?,
        sealed: r.get(11)?,
        environment: r.get(12)?,
        file_text: None,
    })
}

impl ConfigHistoryStore for SqliteStore {
    fn latest_config_version(&self, plugin: &str) -> Result<Option<(i64, String)>> {
        self.read(|c| latest(c, plugin))
    }

    fn record_config_version(&self, v: &ConfigVersionRow) -> Result<i64> {
        self.write(|tx| {
            let version = latest(tx, &v.plugin)?.map_or(1, |(n, _)| n + 1);
            tx.execute(
                "INSERT INTO config_history (plugin, version, plugin_type, at, os_user, command, action,
                   setting, yml, yml_hash, stored, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    v.plugin,
                    version,
                    v.plugin_type,
                    v.at,
                    v.os_user,
                    v.command,
                    v.action,
                    v.setting,
                    v.yml,
                    v.yml_hash,
                    v.stored,
                    v.sealed,
                ],
            )?;
            tx.execute(
                "INSERT INTO config_history_files (plugin, version, environment, file_text)
                 VALUES (?1, ?2, ?3, ?4)",
                params![v.plugin, version, v.environment, v.file_text],
            )?;
            Ok(version)
        })
    }

    fn config_versions(&self, plugin: &str) -> Result<Vec<ConfigVersionRow>> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM config_history h
                 LEFT JOIN config_history_files f ON f.plugin = h.plugin AND f.version = h.version
                 WHERE h.plugin = ?1 ORDER BY h.version"
            ))?;
            let rows = stmt.query_map(params![plugin], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn config_version(&self, plugin: &str, version: i64) -> Result<Option<ConfigVersionRow>> {
        self.read(|c| {
            let found = c
                .query_row(
                    &format!(
                        "SELECT {COLUMNS}, f.file_text FROM config_history h
                         LEFT JOIN config_history_files f ON f.plugin = h.plugin AND f.version = h.version
                         WHERE h.plugin = ?1 AND h.version = ?2"
                    ),
                    params![plugin, version],
                    |r| {
                        let mut out = row(r)?;
                        out.file_text = r.get(13)?;
                        Ok(out)
                    },
                )
                .optional()?;
            Ok(found)
        })
    }

    fn restore_config(&self, restore: &ConfigRestore<'_>) -> Result<()> {
        self.write(|tx| {
            if let Some(ns) = restore.namespace {
                tx.execute("DELETE FROM settings WHERE namespace = ?1", params![ns])?;
                for (k, v) in restore.values {
                    tx.execute(
                        "INSERT INTO settings (namespace, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)",
                        params![ns, k, v, now_text()],
                    )?;
                }
            }
            tx.execute(
                "DELETE FROM secrets WHERE plugin = ?1",
                params![restore.plugin],
            )?;
            for s in restore.secrets {
                super::secrets::upsert(tx, s, restore.updated_by)?;
            }
            Ok(())
        })
    }
}

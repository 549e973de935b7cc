//! [`ConfigHistoryStore`] on PostgreSQL: the `config_history` table (each version with its
//! project file). Two hosts recording a version of the same plugin at once take turns (a
//! transaction-level advisory lock, fine through a transaction pooler), so numbers never clash.

use postgres::{GenericClient, Row};

use super::PgStore;
use crate::error::Result;
use crate::store::config_history::{ConfigHistoryStore, ConfigRestore, ConfigVersionRow};

const COLUMNS: &str = "plugin, version, plugin_type, at, os_user, command, action, setting, yml,
    yml_hash, stored, sealed, environment";

fn row(r: &Row) -> ConfigVersionRow {
    ConfigVersionRow {
        plugin: r.get(0),
        version: r.get(1),
        plugin_type: r.get(2),
        at: r.get(3),
        os_user: r.get(4),
        command: r.get(5),
        action: r.get(6),
        setting: r.get(7),
        yml: r.get(8),
        yml_hash: r.get(9),
        stored: r.get(10),
        sealed: r.get(11),
        environment: r.get(12),
        file_text: None,
    }
}

impl PgStore {
    fn latest_config_in(
        &self,
        c: &mut impl GenericClient,
        plugin: &str,
    ) -> Result<Option<(i64, String)>> {
        Ok(c.query_opt(
            &self.q(
                "SELECT version, yml_hash FROM {S}.config_history WHERE project_id = $1 AND plugin = $2
                 ORDER BY version DESC LIMIT 1",
            ),
            &[&self.project, &plugin],
        )?
        .map(|r| (r.get(0), r.get(1))))
    }
}

impl ConfigHistoryStore for PgStore {
    fn latest_config_version(&self, plugin: &str) -> Result<Option<(i64, String)>> {
        self.read(|c| self.latest_config_in(c, plugin))
    }

    fn record_config_version(&self, v: &ConfigVersionRow) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!(
                    "dsm config history {} {} {}",
                    self.schema, self.project, v.plugin
                )],
            )?;
            let version = self.latest_config_in(tx, &v.plugin)?.map_or(1, |(n, _)| n + 1);
            tx.execute(
                &self.q(
                    "INSERT INTO {S}.config_history (project_id, plugin, version, plugin_type, at, os_user,
                         command, action, setting, yml, yml_hash, stored, sealed, environment, file_text)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                ),
                &[
                    &self.project,
                    &v.plugin,
                    &version,
                    &v.plugin_type,
                    &v.at,
                    &v.os_user,
                    &v.command,
                    &v.action,
                    &v.setting,
                    &v.yml,
                    &v.yml_hash,
                    &v.stored,
                    &v.sealed,
                    &v.environment,
                    &v.file_text,
                ],
            )?;
            Ok(version)
        })
    }

    fn config_versions(&self, plugin: &str) -> Result<Vec<ConfigVersionRow>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(&format!(
                    "SELECT {COLUMNS} FROM {{S}}.config_history WHERE project_id = $1 AND plugin = $2
                     ORDER BY version"
                )),
                &[&self.project, &plugin],
            )?
            .iter()
            .map(row)
            .collect())
        })
    }

    fn config_version(&self, plugin: &str, version: i64) -> Result<Option<ConfigVersionRow>> {
        self.read(|c| {
            Ok(c.query_opt(
                &self.q(&format!(
                    "SELECT {COLUMNS}, file_text FROM {{S}}.config_history
                     WHERE project_id = $1 AND plugin = $2 AND version = $3"
                )),
                &[&self.project, &plugin, &version],
            )?
            .map(|r| {
                let mut out = row(&r);
                out.file_text = r.get(13);
                out
            }))
        })
    }

    fn restore_config(&self, restore: &ConfigRestore<'_>) -> Result<()> {
        self.write(|tx| {
            if let Some(ns) = restore.namespace {
                tx.execute(
                    &self.q("DELETE FROM {S}.settings WHERE project_id = $1 AND namespace = $2"),
                    &[&self.project, &ns],
                )?;
                for (k, v) in restore.values {
                    tx.execute(
                        &self.q(
                            "INSERT INTO {S}.settings (project_id, namespace, name, value, updated_at)
                             VALUES ($1, $2, $3, $4, now())",
                        ),
                        &[&self.project, &ns, k, v],
                    )?;
                }
            }
            tx.execute(
                &self.q("DELETE FROM {S}.secrets WHERE project_id = $1 AND plugin = $2"),
                &[&self.project, &restore.plugin],
            )?;
            for s in restore.secrets {
                self.upsert_secret(tx, s, restore.updated_by)?;
            }
            Ok(())
        })
    }
}

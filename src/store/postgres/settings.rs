//! [`SettingsStore`] on PostgreSQL: the `settings` table.

use serde_json::Value;

use super::{PgStore, parse_json};
use crate::error::Result;
use crate::store::SettingsStore;

impl SettingsStore for PgStore {
    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>> {
        self.read(|c| {
            let text: Option<String> = c
                .query_opt(
                    &self.q("SELECT value FROM {S}.settings
                         WHERE project_id = $1 AND namespace = $2 AND name = $3"),
                    &[&self.project, &namespace, &name],
                )?
                .map(|r| r.get(0));
            text.map(|t| parse_json(&t, &format!("setting `{name}` of `{namespace}`")))
                .transpose()
        })
    }

    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                &self.q(
                    "INSERT INTO {S}.settings (project_id, namespace, name, value, updated_at)
                     VALUES ($1, $2, $3, $4, now())
                     ON CONFLICT (project_id, namespace, name) DO UPDATE SET value = excluded.value,
                         updated_at = excluded.updated_at",
                ),
                &[&self.project, &namespace, &name, &value.to_string()],
            )?;
            Ok(())
        })
    }

    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                &self.q(
                    "DELETE FROM {S}.settings WHERE project_id = $1 AND namespace = $2 AND name = $3",
                ),
                &[&self.project, &namespace, &name],
            )?;
            Ok(n > 0)
        })
    }

    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>> {
        self.raw_settings(namespace)?
            .into_iter()
            .map(|(name, text)| {
                let value = parse_json(&text, &format!("setting `{name}` of `{namespace}`"))?;
                Ok((name, value))
            })
            .collect()
    }

    fn raw_settings(&self, namespace: &str) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            Ok(c.query(
                &self.q(
                    "SELECT name, value FROM {S}.settings WHERE project_id = $1 AND namespace = $2
                     ORDER BY name COLLATE \"C\"",
                ),
                &[&self.project, &namespace],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn clear_settings(&self, namespace: &str) -> Result<usize> {
        self.write(|tx| {
            let n = tx.execute(
                &self.q("DELETE FROM {S}.settings WHERE project_id = $1 AND namespace = $2"),
                &[&self.project, &namespace],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}

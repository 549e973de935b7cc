//! [`SettingsStore`] on SQLite: the `settings` table.

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use super::{SqliteStore, json_text, now_text, parse_json};
use crate::error::Result;
use crate::store::SettingsStore;

impl SettingsStore for SqliteStore {
    fn get_setting(&self, namespace: &str, name: &str) -> Result<Option<Value>> {
        self.read(|c| {
            let text: Option<String> = c
                .query_row(
                    "SELECT value FROM settings WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name],
                    |r| r.get(0),
                )
                .optional()?;
            text.map(|t| parse_json(&t, &format!("setting `{name}` of `{namespace}`")))
                .transpose()
        })
    }

    fn set_setting(&self, namespace: &str, name: &str, value: &Value) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (namespace, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![namespace, name, json_text(value), now_text()],
            )?;
            Ok(())
        })
    }

    fn unset_setting(&self, namespace: &str, name: &str) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM settings WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?;
            Ok(n > 0)
        })
    }

    fn list_settings(&self, namespace: &str) -> Result<Vec<(String, Value)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, value FROM settings WHERE namespace = ?1 ORDER BY name")?;
            let rows = stmt.query_map([namespace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, text) = row?;
                let value = parse_json(&text, &format!("setting `{name}` of `{namespace}`"))?;
                out.push((name, value));
            }
            Ok(out)
        })
    }

    fn raw_settings(&self, namespace: &str) -> Result<Vec<(String, String)>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT name, value FROM settings WHERE namespace = ?1 ORDER BY name")?;
            let rows = stmt.query_map([namespace], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn clear_settings(&self, namespace: &str) -> Result<usize> {
        self.write(|tx| Ok(tx.execute("DELETE FROM settings WHERE namespace = ?1", [namespace])?))
    }
}

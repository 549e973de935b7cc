//! [`CopyEnd`] on SQLite: the tables of `dsm store copy`, read and written by the SQLite
//! store's column names, times as RFC 3339 text.

use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};

use super::{SqliteStore, parse_time};
use crate::error::{Error, Result};
use crate::store::copy::{Cell, CopyEnd, Kind, Rows, Table};
use crate::store::format_time;

fn columns(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What selects a table's rows (`config_history` with its files; the webhook sequence once a
/// number was handed out).
fn source(table: &Table) -> String {
    match table.name {
        "config_history" => "(SELECT h.*, f.environment, f.file_text FROM config_history h
             LEFT JOIN config_history_files f ON f.plugin = h.plugin AND f.version = h.version)"
            .to_owned(),
        "webhook_sequence" => "(SELECT * FROM webhook_sequence WHERE value > 0)".to_owned(),
        name => name.to_owned(),
    }
}

fn cell(table: &Table, column: &str, kind: Kind, value: Sql) -> Result<Cell> {
    Ok(match (kind, value) {
        (_, Sql::Null) => Cell::Null,
        (Kind::Int, Sql::Integer(n)) => Cell::Int(n),
        (Kind::Text, Sql::Text(t)) => Cell::Text(t),
        (Kind::Blob, Sql::Blob(b)) => Cell::Blob(b),
        (Kind::Time, Sql::Text(t)) => Cell::Time(
            parse_time(&t)
                .map_err(|e| {
                    Error::failed(format!(
                        "`{}`.`{column}` holds `{t}`, not a time: {}",
                        table.name,
                        e.message()
                    ))
                })?
                .timestamp_millis(),
        ),
        (_, other) => {
            return Err(Error::failed(format!(
                "`{}`.`{column}` holds a {:?} value where {kind:?} was expected",
                table.name,
                other.data_type()
            )));
        }
    })
}

fn sql(value: &Cell) -> Result<Sql> {
    Ok(match value {
        Cell::Null => Sql::Null,
        Cell::Int(n) => Sql::Integer(*n),
        Cell::Text(t) => Sql::Text(t.clone()),
        Cell::Blob(b) => Sql::Blob(b.clone()),
        Cell::Time(ms) => Sql::Text(format_time(
            chrono::DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| Error::failed(format!("an invalid time ({ms} ms)")))?,
        )),
    })
}

fn insert(conn: &Connection, table: &Table, row: &[Cell]) -> Result<()> {
    let values: Vec<Sql> = row.iter().map(sql).collect::<Result<_>>()?;
    let n = table.columns.len();
    match table.name {
        "config_history" => {
            let marks = (1..=n - 2).map(|i| format!("?{i}")).collect::<Vec<_>>();
            let names: Vec<String> = table.columns[..n - 2]
                .iter()
                .map(|(c, _)| format!("\"{c}\""))
                .collect();
            conn.prepare_cached(&format!(
                "INSERT INTO config_history ({}) VALUES ({})",
                names.join(", "),
                marks.join(", ")
            ))?
            .execute(params_from_iter(&values[..n - 2]))?;
            conn.prepare_cached(
                "INSERT INTO config_history_files (plugin, version, environment, file_text)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params_from_iter([
                &values[0],
                &values[1],
                &values[n - 2],
                &values[n - 1],
            ]))?;
        }
        "audit_anchor" => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO audit_anchor (id, seq, mac, anchor_mac) VALUES (1, ?1, ?2, ?3)",
            )?
            .execute(params_from_iter(&values))?;
        }
        "webhook_sequence" => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO webhook_sequence (one, value) VALUES (1, ?1)",
            )?
            .execute(params_from_iter(&values))?;
        }
        name => {
            let marks = (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>();
            conn.prepare_cached(&format!(
                "INSERT INTO {name} ({}) VALUES ({})",
                columns(table),
                marks.join(", ")
            ))?
            .execute(params_from_iter(&values))?;
        }
    }
    Ok(())
}

impl CopyEnd for SqliteStore {
    fn count_rows(&self, table: &Table) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c.query_row(
                &format!("SELECT count(*) FROM {}", source(table)),
                [],
                |r| r.get(0),
            )?;
            Ok(n.max(0) as u64)
        })
    }

    fn read_rows(&self, table: &Table) -> Result<Vec<Vec<Cell>>> {
        self.read(|c| {
            let order = match table.name {
                // The join has no rowid of its own.
                "config_history" => "plugin, version",
                _ => table.order_sqlite,
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {} FROM {} ORDER BY {order}",
                columns(table),
                source(table)
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let mut row = Vec::with_capacity(table.columns.len());
                for (i, (name, kind)) in table.columns.iter().enumerate() {
                    row.push(cell(table, name, *kind, r.get::<_, Sql>(i)?)?);
                }
                out.push(row);
            }
            Ok(out)
        })
    }

    fn write_rows(&self, rows: &Rows) -> Result<()> {
        self.write(|tx| {
            for (table, rows) in rows {
                for row in rows {
                    insert(tx, table, row)?;
                }
            }
            // A key row may name a sender whose row is gone (confirmed): AUTOINCREMENT must
            // hand out ids past those too.
            tx.execute_batch(
                "INSERT INTO sqlite_sequence (name, seq)
                     SELECT 'merge_sends', max(sent_by) FROM merge_entities
                      WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'merge_sends')
                     HAVING max(sent_by) IS NOT NULL;
                 UPDATE sqlite_sequence
                    SET seq = max(seq, coalesce((SELECT max(sent_by) FROM merge_entities), 0))
                  WHERE name = 'merge_sends';",
            )?;
            Ok(())
        })
    }
}

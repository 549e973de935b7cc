//! [`CopyEnd`] on PostgreSQL: the tables of `dsm store copy`, this project's rows only, times
//! as milliseconds.

use postgres::GenericClient;
use postgres::types::ToSql;

use super::PgStore;
use crate::error::Result;
use crate::store::copy::{Cell, CopyEnd, Kind, Rows, Table};

impl PgStore {
    fn select_list(&self, table: &Table) -> String {
        table
            .columns
            .iter()
            .map(|(name, kind)| match kind {
                Kind::Time => format!("{}.epoch_ms(\"{name}\")", self.schema),
                Kind::Int => format!("\"{name}\"::BIGINT"),
                Kind::Text | Kind::Blob => format!("\"{name}\""),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn insert_sql(&self, table: &Table) -> String {
        let names: Vec<String> = table
            .columns
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let values: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                let n = i + 2;
                match kind {
                    Kind::Time => format!("{}.from_ms(${n}::BIGINT)", self.schema),
                    Kind::Int => format!("${n}::BIGINT"),
                    Kind::Text => format!("${n}::TEXT"),
                    Kind::Blob => format!("${n}::BYTEA"),
                }
            })
            .collect();
        format!(
            "INSERT INTO {}.{} (project_id, {}) VALUES ($1, {})",
            self.schema,
            table.name,
            names.join(", "),
            values.join(", ")
        )
    }
}

impl PgStore {
    fn rows_of(&self, c: &mut impl GenericClient, table: &Table) -> Result<Vec<Vec<Cell>>> {
        let rows = c.query(
            &format!(
                "SELECT {} FROM {}.{} WHERE project_id = $1 ORDER BY {}",
                self.select_list(table),
                self.schema,
                table.name,
                table.order_pg
            ),
            &[&self.project],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| match kind {
                        Kind::Int => r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int),
                        Kind::Time => r.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Time),
                        Kind::Text => r.get::<_, Option<String>>(i).map_or(Cell::Null, Cell::Text),
                        Kind::Blob => r
                            .get::<_, Option<Vec<u8>>>(i)
                            .map_or(Cell::Null, Cell::Blob),
                    })
                    .collect()
            })
            .collect())
    }
}

fn param(kind: Kind, cell: &Cell) -> Box<dyn ToSql + Sync + Send> {
    match (kind, cell) {
        (_, Cell::Int(n) | Cell::Time(n)) => Box::new(*n),
        (_, Cell::Text(t)) => Box::new(t.clone()),
        (_, Cell::Blob(b)) => Box::new(b.clone()),
        (Kind::Int | Kind::Time, Cell::Null) => Box::new(None::<i64>),
        (Kind::Text, Cell::Null) => Box::new(None::<String>),
        (Kind::Blob, Cell::Null) => Box::new(None::<Vec<u8>>),
    }
}

impl CopyEnd for PgStore {
    fn count_rows(&self, table: &Table) -> Result<u64> {
        self.read(|c| {
            let n: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.{} WHERE project_id = $1",
                        self.schema, table.name
                    ),
                    &[&self.project],
                )?
                .get(0);
            Ok(n.max(0) as u64)
        })
    }

    fn read_rows(&self, table: &Table) -> Result<Vec<Vec<Cell>>> {
        self.read(|c| self.rows_of(c, table))
    }

    fn read_tables(&self, tables: &'static [Table]) -> Result<Rows> {
        self.read(|c| {
            // One snapshot of every table, while runs may go on writing.
            c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            tables
                .iter()
                .map(|t| Ok((t, self.rows_of(c, t)?)))
                .collect()
        })
    }

    fn write_rows(&self, rows: &Rows) -> Result<()> {
        self.write(|tx| {
            for (table, rows) in rows {
                if rows.is_empty() {
                    continue;
                }
                let stmt = tx.prepare(&self.insert_sql(table))?;
                for row in rows {
                    let params: Vec<Box<dyn ToSql + Sync + Send>> = table
                        .columns
                        .iter()
                        .zip(row)
                        .map(|((_, kind), cell)| param(*kind, cell))
                        .collect();
                    let mut refs: Vec<&(dyn ToSql + Sync)> = vec![&self.project];
                    refs.extend(params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
                    tx.execute(&stmt, &refs)?;
                }
            }
            // A key row may name a sender whose row is gone (confirmed): new senders take ids
            // past those too.
            tx.execute(
                &self.q(
                    "SELECT setval(pg_get_serial_sequence('{S}.merge_sends', 'id'),
                            GREATEST((SELECT max(id) FROM {S}.merge_sends),
                                     (SELECT max(sent_by) FROM {S}.merge_entities), 1))",
                ),
                &[],
            )?;
            Ok(())
        })
    }
}

//! `stackmedic-remediator storage migrate`: copies one store into another, such as one host's
//! SQLite into the PostgreSQL a pair of replicas will share.
//!
//! Every table that holds work or history is copied row by row with its ids, in one
//! transaction on the destination: jobs, occurrences, incidents, escalations, the audit
//! history, on-call's resets, early resolves and the pause. Unfinished jobs are held by no
//! replica afterwards, so the first replica to start takes them over (a started action is
//! verified, not run again). Replicas and the leadership are not copied: they belong to the
//! processes of the old store.

use std::fmt;

use super::db::{Engine, Row, Value};
use super::{exec, rows, schema, Store, StoreError};

/// Rows copied, per table.
#[derive(Debug, Default)]
pub struct Copied(pub Vec<(&'static str, usize)>);

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{n} {t}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// The tables copied, in an order that keeps references valid, with their columns.
fn tables() -> Vec<(&'static str, Vec<&'static str>)> {
    schema::COPIED
        .iter()
        .map(|(name, ddl)| (*name, schema::columns(ddl)))
        .collect()
}

/// Copies every row of `from` into `to`, which must hold no work or history.
///
/// # Errors
/// When either store fails, or `to` is not empty (nothing is written then).
pub async fn copy(from: &Store, to: &Store) -> Result<Copied, StoreError> {
    let tables = tables();
    let read = tables.clone();
    let data: Vec<(&'static str, Vec<&'static str>, Vec<Row>)> = from
        .read(move |c| {
            read.into_iter()
                .map(|(t, cols)| {
                    let found = rows(
                        c,
                        &format!("SELECT {} FROM {t} ORDER BY 1", cols.join(", ")),
                        &[],
                        |r| Ok(r.clone()),
                    )?;
                    Ok((t, cols, found))
                })
                .collect()
        })
        .await?;
    let engine = to.engine();
    to.run(move |c| {
        for (t, _) in &tables {
            let n: i64 = super::row(c, &format!("SELECT COUNT(*) FROM {t}"), &[], |r| r.get(0))?;
            if n > 0 && *t != "health" {
                return Err(StoreError(format!(
                    "the destination is not empty: its table {t} holds {n} row(s); copy into an empty store"
                )));
            }
        }
        let mut out = Copied::default();
        for (t, cols, found) in &data {
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {t} ({}) VALUES ({})",
                cols.join(", "),
                marks.join(", ")
            );
            let owner = cols.iter().position(|c| *c == "owner");
            for r in found {
                let mut values = r.0.clone();
                // Held by nobody: the first replica to start takes it over.
                if let Some(i) = owner {
                    values[i] = Value::Null;
                }
                exec(c, &sql, &values)?;
            }
            if engine == Engine::Postgres && cols.first() == Some(&"id") && !found.is_empty() {
                // New rows continue after the copied ids.
                super::row(
                    c,
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT MAX(id) FROM {t}))"
                    ),
                    &[],
                    |_| Ok(()),
                )?;
            }
            out.0.push((t, found.len()));
        }
        Ok(out)
    })
    .await
}

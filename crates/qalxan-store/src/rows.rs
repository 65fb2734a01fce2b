//! Many rows written or matched by one statement.
//!
//! Bulk writes (an import of a million indicators, a batch of alerts) send a chunk of rows with
//! one statement instead of one statement per row. The two backends want that differently:
//!
//! - SQLite gets anonymous `?` placeholders in a `VALUES` list. sqlx's SQLite driver asks SQLite
//!   for each placeholder's name while binding, and SQLite finds a named placeholder (`$1`,
//!   `?1`) by walking a list of all of them, so named placeholders cost the square of their
//!   number (400 rows of 16 columns spent 70 % of an import there); anonymous ones are not in
//!   that list. Parameters bind straight into SQLite's record; the earlier JSON form of this
//!   source made SQLite parse each row's text once per column (`json_extract`), which cost a
//!   third of an import (300,000 indicators: 4.75 s against 3.34 s, measured in Python's
//!   `sqlite3` on the same statements).
//! - PostgreSQL gets the chunk as one JSON parameter expanded by `json_array_elements`: one
//!   parameter instead of thousands keeps its statements small and reusable.
//!
//! Because SQLite numbers anonymous placeholders by position, a statement that reads a
//! [`Rows`] takes no other parameter: constants of the whole chunk travel as columns.

use crate::Backend;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;
use std::borrow::Cow;

/// The column types of a [`Rows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Col {
    Text,
    Int,
}

/// One value of a row.
#[derive(Clone, Debug)]
pub(crate) enum Cell<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
}

impl<'a> From<&'a str> for Cell<'a> {
    fn from(s: &'a str) -> Self {
        Cell::Text(Some(Cow::Borrowed(s)))
    }
}

impl From<String> for Cell<'_> {
    fn from(s: String) -> Self {
        Cell::Text(Some(Cow::Owned(s)))
    }
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(s: Option<&'a str>) -> Self {
        Cell::Text(s.map(Cow::Borrowed))
    }
}

impl From<i64> for Cell<'_> {
    fn from(i: i64) -> Self {
        Cell::Int(Some(i))
    }
}

impl From<Option<i64>> for Cell<'_> {
    fn from(i: Option<i64>) -> Self {
        Cell::Int(i)
    }
}

/// Rows of the same columns, read by one statement as `FROM ({rows.source()}) AS r` with
/// columns `r.c0`, `r.c1`, ...
pub(crate) struct Rows<'a> {
    backend: Backend,
    cols: &'static [Col],
    cells: Vec<Cell<'a>>,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(backend: Backend, cols: &'static [Col]) -> Rows<'a> {
        Rows {
            backend,
            cols,
            cells: Vec::new(),
        }
    }

    /// Adds a row: one cell per column, in the columns' order.
    pub(crate) fn push<const N: usize>(&mut self, row: [Cell<'a>; N]) {
        debug_assert_eq!(N, self.cols.len(), "a row has one cell per column");
        self.cells.extend(row);
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len() / self.cols.len().max(1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// `SELECT ... AS c0, ... AS c1 FROM ...` over the rows; empty rows select nothing.
    pub(crate) fn source(&self) -> String {
        Rows::source_for(self.backend, self.cols, self.len())
    }

    /// [`Rows::source`] of `len` rows of `cols`: what a statement is made from before its rows
    /// are, so that one statement text serves every full chunk of an import.
    pub(crate) fn source_for(backend: Backend, cols: &[Col], len: usize) -> String {
        match backend {
            Backend::Sqlite => {
                let names: Vec<String> = (0..cols.len())
                    .map(|i| format!("column{} AS c{i}", i + 1))
                    .collect();
                if len == 0 {
                    let nulls = vec!["NULL"; cols.len()].join(", ");
                    return format!(
                        "SELECT {} FROM (VALUES ({nulls})) WHERE false",
                        names.join(", ")
                    );
                }
                let one = format!("({})", vec!["?"; cols.len()].join(","));
                let mut sql = format!("SELECT {} FROM (VALUES ", names.join(", "));
                sql.reserve((one.len() + 1) * len);
                for i in 0..len {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&one);
                }
                sql.push(')');
                sql
            }
            Backend::Postgres => {
                let list: Vec<String> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match c {
                        Col::Text => format!("(j->>{i}) AS c{i}"),
                        Col::Int => format!("(j->>{i})::bigint AS c{i}"),
                    })
                    .collect();
                format!(
                    "SELECT {} FROM json_array_elements($1::json) AS j",
                    list.join(", ")
                )
            }
        }
    }

    /// Binds the rows to `query`, made from [`Rows::source`]'s SQL.
    pub(crate) fn bind<'q>(
        self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>>
    where
        'a: 'q,
    {
        match self.backend {
            Backend::Sqlite => {
                for cell in self.cells {
                    query = match cell {
                        Cell::Text(Some(Cow::Borrowed(s))) => query.bind(s),
                        Cell::Text(Some(Cow::Owned(s))) => query.bind(s),
                        Cell::Text(None) => query.bind(None::<String>),
                        Cell::Int(i) => query.bind(i),
                    };
                }
                query
            }
            Backend::Postgres => {
                let width = self.cols.len().max(1);
                let rows: Vec<serde_json::Value> = self
                    .cells
                    .chunks(width)
                    .map(|row| {
                        row.iter()
                            .map(|c| match c {
                                Cell::Text(t) => {
                                    t.as_deref().map_or(serde_json::Value::Null, |s| s.into())
                                }
                                Cell::Int(i) => i.map_or(serde_json::Value::Null, |i| i.into()),
                            })
                            .collect()
                    })
                    .collect();
                query.bind(serde_json::Value::Array(rows).to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_source_has_one_anonymous_placeholder_per_cell() {
        let mut rows = Rows::new(Backend::Sqlite, &[Col::Text, Col::Int]);
        rows.push(["a".into(), 1.into()]);
        rows.push([None::<&str>.into(), None::<i64>.into()]);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows.source(),
            "SELECT column1 AS c0, column2 AS c1 FROM (VALUES (?,?),(?,?))"
        );
    }

    #[test]
    fn postgres_source_reads_one_json_parameter() {
        let rows = Rows::new(Backend::Postgres, &[Col::Text, Col::Int]);
        assert_eq!(
            rows.source(),
            "SELECT (j->>0) AS c0, (j->>1)::bigint AS c1 FROM json_array_elements($1::json) AS j"
        );
    }
}

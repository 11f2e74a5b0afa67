//! `audiencedb export tables DIR`: the whole store as six flat tables in NDJSON, with the SQL that
//! creates and loads them in ClickHouse (`clickhouse-local`, `clickhouse-client --multiquery`, a
//! chDB session) and in DuckDB, so that a warehouse can hold the same data the rules read.
//!
//! The tables keep every value with the type it has in the store, because the rule language's
//! comparisons depend on it (text `"50"` never equals the number 50): a value is a row with a
//! `kind` (`text`, `int`, `float`, `bool`, `time`, `list`) and one column per kind, the others
//! null. Times are milliseconds since the epoch, UTC. A list's elements are rows of their own.
//!
//! | file | one row per | columns |
//! | --- | --- | --- |
//! | `customers.ndjson` | known customer | `customer` (the internal id), `id`, `ids` (every id, its own first) |
//! | `traits.ndjson` | trait of a customer | `customer`, `name` (dotted path), the value |
//! | `trait_items.ndjson` | element of a list trait | `customer`, `name`, `pos`, the element |
//! | `events.ndjson` | event | `row` (numbers the events), `customer`, `event`, `ts` |
//! | `properties.ndjson` | property of an event | `row`, `name`, the value |
//! | `property_items.ndjson` | element of a list property | `row`, `name`, `pos`, the element |
//!
//! A float that JSON cannot hold (NaN, infinities) is written with `float` null. This module reads
//! the database through the library's API only (every customer as `Db::customer` returns it) and
//! writes only inside DIR, each file through a temporary name and a rename.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::time::Timestamp;
use crate::model::Value;

/// The files written, in the order they are loaded.
pub const TABLES: [&str; 6] = [
    "customers",
    "traits",
    "trait_items",
    "events",
    "properties",
    "property_items",
];

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablesReport {
    /// Rows per table, in the order of [`TABLES`].
    pub rows: [u64; 6],
    pub elapsed: Duration,
}

impl TablesReport {
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().sum()
    }
}

/// The typed columns of one value: kind, then text, int, float, bool, time (nulls but one).
fn typed(v: &Value) -> [(&'static str, Json); 6] {
    let (kind, text, int, float, boolean, time) = match v {
        Value::Str(s) => (
            "text",
            json!(s),
            Json::Null,
            Json::Null,
            Json::Null,
            Json::Null,
        ),
        Value::Int(i) => (
            "int",
            Json::Null,
            json!(i),
            Json::Null,
            Json::Null,
            Json::Null,
        ),
        Value::Float(f) => (
            "float",
            Json::Null,
            Json::Null,
            serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Json::Null,
            Json::Null,
        ),
        Value::Bool(b) => (
            "bool",
            Json::Null,
            Json::Null,
            Json::Null,
            json!(b),
            Json::Null,
        ),
        Value::Time(t) => (
            "time",
            Json::Null,
            Json::Null,
            Json::Null,
            Json::Null,
            json!(t),
        ),
        Value::List(_) => (
            "list",
            Json::Null,
            Json::Null,
            Json::Null,
            Json::Null,
            Json::Null,
        ),
    };
    [
        ("kind", json!(kind)),
        ("text", text),
        ("int", int),
        ("float", float),
        ("bool", boolean),
        ("time", time),
    ]
}

/// One NDJSON file being written under a temporary name.
struct Table {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<fs::File>,
    rows: u64,
}

impl Table {
    fn create(dir: &Path, name: &str) -> Result<Table> {
        let path = dir.join(format!("{name}.ndjson"));
        let tmp = dir.join(format!(".{name}.ndjson.part"));
        let out = BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        Ok(Table {
            path,
            tmp,
            out,
            rows: 0,
        })
    }

    fn row(&mut self, fields: impl IntoIterator<Item = (&'static str, Json)>) -> Result<()> {
        let object: serde_json::Map<String, Json> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_writer(&mut self.out, &object)
            .map_err(|e| Error::Internal(format!("writing {}: {e}", self.tmp.display())))?;
        self.out.write_all(b"\n")?;
        self.rows += 1;
        Ok(())
    }

    /// A value row: `key` columns, then the typed value; a list's elements go to `items`.
    fn value(
        &mut self,
        items: &mut Table,
        key: [(&'static str, Json); 2],
        v: &Value,
    ) -> Result<()> {
        self.row(key.clone().into_iter().chain(typed(v)))?;
        if let Value::List(elements) = v {
            for (pos, e) in elements.iter().enumerate() {
                items.row(
                    key.clone()
                        .into_iter()
                        .chain([("pos", json!(pos))])
                        .chain(typed(e)),
                )?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64> {
        self.out.flush()?;
        self.out.get_ref().sync_all()?;
        fs::rename(&self.tmp, &self.path)?;
        Ok(self.rows)
    }
}

/// Writes the tables and the SQL files into `dir` (created if missing), as the module says, for
/// every customer known at the time of the call.
pub fn export_tables(db: &Db, dir: &Path, now: Timestamp) -> Result<TablesReport> {
    let started = Instant::now();
    fs::create_dir_all(dir)?;
    let dir = fs::canonicalize(dir)?;
    let [customers, traits, trait_items, events, properties, property_items] =
        TABLES.map(|name| Table::create(&dir, name));
    let (mut customers, mut traits, mut trait_items) = (customers?, traits?, trait_items?);
    let (mut events, mut properties, mut property_items) = (events?, properties?, property_items?);
    let everyone = db.query("everyone", now)?;
    let ids = db.member_ids(&everyone)?;
    let mut row = 0u64;
    for id in &ids {
        let Some(c) = db.customer(id)? else {
            continue; // deleted since the query
        };
        let customer = json!(c.internal_id);
        customers.row([
            ("customer", customer.clone()),
            ("id", json!(c.id)),
            ("ids", json!(c.ids)),
        ])?;
        for (name, v) in c.traits.iter().flatten() {
            traits.value(
                &mut trait_items,
                [("customer", customer.clone()), ("name", json!(name))],
                v,
            )?;
        }
        for e in &c.events {
            events.row([
                ("row", json!(row)),
                ("customer", customer.clone()),
                ("event", json!(e.name)),
                ("ts", json!(e.timestamp)),
            ])?;
            for (name, v) in &e.properties {
                properties.value(
                    &mut property_items,
                    [("row", json!(row)), ("name", json!(name))],
                    v,
                )?;
            }
            row += 1;
        }
    }
    let mut report = TablesReport::default();
    let tables = [
        customers,
        traits,
        trait_items,
        events,
        properties,
        property_items,
    ];
    for (i, t) in tables.into_iter().enumerate() {
        report.rows[i] = t.finish()?;
    }
    write_sql(&dir)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The columns of each table, in the SQL type names of ClickHouse and DuckDB.
fn columns(table: &str, clickhouse: bool) -> Vec<(&'static str, &'static str)> {
    let t = |ch: &'static str, duck: &'static str| if clickhouse { ch } else { duck };
    let value = [
        ("kind", t("LowCardinality(String)", "VARCHAR")),
        ("text", t("Nullable(String)", "VARCHAR")),
        ("int", t("Nullable(Int64)", "BIGINT")),
        ("float", t("Nullable(Float64)", "DOUBLE")),
        ("bool", t("Nullable(Bool)", "BOOLEAN")),
        ("time", t("Nullable(Int64)", "BIGINT")),
    ];
    let name = ("name", t("LowCardinality(String)", "VARCHAR"));
    let customer = ("customer", t("UInt32", "UINTEGER"));
    let row = ("row", t("UInt64", "UBIGINT"));
    let pos = ("pos", t("UInt32", "UINTEGER"));
    let mut cols = match table {
        "customers" => vec![
            customer,
            ("id", t("String", "VARCHAR")),
            ("ids", t("Array(String)", "VARCHAR[]")),
        ],
        "traits" => vec![customer, name],
        "trait_items" => vec![customer, name, pos],
        "events" => vec![
            row,
            customer,
            ("event", t("LowCardinality(String)", "VARCHAR")),
            ("ts", t("Int64", "BIGINT")),
        ],
        "properties" => vec![row, name],
        "property_items" => vec![row, name, pos],
        other => unreachable!("no table {other}"),
    };
    if table != "customers" && table != "events" {
        cols.extend(value);
    }
    cols
}

/// The sort key of each table in ClickHouse: the columns the generated queries filter on first.
fn order_by(table: &str) -> &'static str {
    match table {
        "customers" => "customer",
        "traits" | "trait_items" => "(name, customer)",
        "events" => "(event, customer, ts)",
        _ => "(name, row)",
    }
}

/// `schema.clickhouse.sql` (the tables, MergeTree, and a comment on the `Distributed`
/// variant), `load.clickhouse.sql` (create and load from the files by absolute path) and
/// `load.duckdb.sql` (the same for DuckDB).
fn write_sql(dir: &Path) -> Result<()> {
    let mut schema = String::from(
        "-- audiencedb tables for ClickHouse (audiencedb export tables). Times are milliseconds\n\
         -- since the epoch, UTC; a value is `kind` plus one typed column.\n\
         -- On a cluster, create these as the local tables on every shard and put a Distributed\n\
         -- table over each, sharded by customer (events and properties by the customer of their\n\
         -- row), e.g.: CREATE TABLE events_all AS events ENGINE = Distributed(cluster, db, events,\n\
         -- customer); so that every customer's rows live on one shard.\n",
    );
    let mut load = String::new();
    let mut duck = String::from("-- audiencedb tables for DuckDB (audiencedb export tables).\n");
    for table in TABLES {
        let ch_cols = columns(table, true)
            .iter()
            .map(|(c, t)| format!("`{c}` {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({ch_cols}) ENGINE = MergeTree ORDER BY {};\n",
            order_by(table)
        );
        schema.push_str(&create);
        load.push_str(&create);
        let file = dir.join(format!("{table}.ndjson"));
        let structure = columns(table, true)
            .iter()
            .map(|(c, t)| format!("`{c}` {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        load.push_str(&format!(
            "INSERT INTO {table} SELECT * FROM file({}, JSONEachRow, {});\n",
            clickhouse_string(&file.to_string_lossy()),
            clickhouse_string(&structure)
        ));
        let duck_cols = columns(table, false)
            .iter()
            .map(|(c, t)| format!("\"{c}\": '{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let duck_create = columns(table, false)
            .iter()
            .map(|(c, t)| format!("\"{c}\" {t}"))
            .collect::<Vec<_>>()
            .join(", ");
        duck.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} ({duck_create});\n\
             INSERT INTO {table} SELECT * FROM read_json({}, format = 'newline_delimited', \
             columns = {{{duck_cols}}});\n",
            duckdb_string(&file.to_string_lossy()),
        ));
    }
    for (name, text) in [
        ("schema.clickhouse.sql", schema),
        ("load.clickhouse.sql", load),
        ("load.duckdb.sql", duck),
    ] {
        let tmp = dir.join(format!(".{name}.part"));
        fs::write(&tmp, text)?;
        fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// A ClickHouse string literal: single quotes, with quotes and backslashes escaped.
pub fn clickhouse_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A DuckDB (standard SQL) string literal: single quotes, a quote doubled; backslashes are
/// ordinary characters there.
pub fn duckdb_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_cannot_end_early() {
        assert_eq!(clickhouse_string(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(duckdb_string(r"a'b\c"), r"'a''b\c'");
    }
}

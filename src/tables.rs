//! `audiencedb export tables DIR`: the whole store as six flat tables in NDJSON or Parquet
//! ([`TablesFormat`]), with the SQL that
//! creates and loads them in ClickHouse (`clickhouse-local`, `clickhouse-client --multiquery`, a
//! chDB session) and in DuckDB, so that a warehouse can hold the same data the rules read.
//!
//! The tables keep every value with the type it has in the store, because the rule language's
//! comparisons depend on it (text `"50"` never equals the number 50): a value is a row with a
//! `kind` (`text`, `int`, `float`, `bool`, `time`, `list`) and one column per kind, the others
//! null. Times are milliseconds since the epoch, UTC. A list's elements are rows of their own.
//!
//! | file (`.ndjson` or `.parquet`) | one row per | columns |
//! | --- | --- | --- |
//! | `customers.ndjson` | known customer | `customer` (the internal id), `id`, `ids` (every id, its own first) |
//! | `traits.ndjson` | trait of a customer | `customer`, `name` (dotted path), the value |
//! | `trait_items.ndjson` | element of a list trait | `customer`, `name`, `pos`, the element |
//! | `events.ndjson` | event | `row` (numbers the events), `customer`, `event`, `ts` |
//! | `properties.ndjson` | property of an event | `row`, `customer` (the event's), `name`, the value |
//! | `property_items.ndjson` | element of a list property | `row`, `customer`, `name`, `pos`, the element |
//!
//! A float that JSON cannot hold (NaN, infinities) is written with `float` null, in both formats,
//! so that both load into the same tables. In Parquet, the ids are unsigned integers, `ids` a
//! list of strings, the values' columns optional; Snappy-compressed, a row group per million rows.
//! This module reads
//! the database through the library's API only (every customer as `Db::customer` returns it) and
//! writes only inside DIR, each file through a temporary name and a rename.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
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

/// One cell of a row, typed as its column is ([`Column`]).
#[derive(Debug, Clone)]
enum Cell<'a> {
    U32(u32),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    Strs(&'a [String]),
    Null,
}

impl Cell<'_> {
    fn json(&self) -> Json {
        match self {
            Cell::U32(v) => json!(v),
            Cell::U64(v) => json!(v),
            Cell::I64(v) => json!(v),
            // Only finite floats become cells (`typed`).
            Cell::F64(v) => serde_json::Number::from_f64(*v).map_or(Json::Null, Json::Number),
            Cell::Bool(v) => json!(v),
            Cell::Str(v) => json!(v),
            Cell::Strs(v) => json!(v),
            Cell::Null => Json::Null,
        }
    }
}

/// The typed cells of one value: kind, then text, int, float, bool, time (nulls but one). A
/// float that is not finite is null, as JSON cannot hold it.
fn typed(v: &Value) -> [Cell<'_>; 6] {
    let mut cells = [
        Cell::Str(""),
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Null,
        Cell::Null,
    ];
    let (kind, slot, cell) = match v {
        Value::Str(s) => ("text", 1, Cell::Str(s)),
        Value::Int(i) => ("int", 2, Cell::I64(*i)),
        Value::Float(f) if f.is_finite() => ("float", 3, Cell::F64(*f)),
        Value::Float(_) => ("float", 3, Cell::Null),
        Value::Bool(b) => ("bool", 4, Cell::Bool(*b)),
        Value::Time(t) => ("time", 5, Cell::I64(*t)),
        Value::List(_) => ("list", 1, Cell::Null),
    };
    cells[0] = Cell::Str(kind);
    cells[slot] = cell;
    cells
}

/// The file format of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TablesFormat {
    /// One JSON object a line (`.ndjson`).
    #[default]
    Ndjson,
    /// Apache Parquet, Snappy-compressed, a row group per million rows (`.parquet`).
    Parquet,
}

impl TablesFormat {
    /// The files' extension.
    pub fn extension(self) -> &'static str {
        match self {
            TablesFormat::Ndjson => "ndjson",
            TablesFormat::Parquet => "parquet",
        }
    }
}

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1_000_000;

/// Where a table's rows go.
enum Sink {
    Ndjson(BufWriter<fs::File>),
    Parquet(Box<ParquetTable>),
}

/// One table's file being written under a temporary name.
struct Table {
    path: PathBuf,
    tmp: PathBuf,
    names: Vec<&'static str>,
    sink: Sink,
    rows: u64,
}

impl Table {
    fn create(dir: &Path, name: &str, format: TablesFormat) -> Result<Table> {
        let ext = format.extension();
        let path = dir.join(format!("{name}.{ext}"));
        let tmp = dir.join(format!(".{name}.{ext}.part"));
        let file = BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        let cols = columns(name);
        let sink = match format {
            TablesFormat::Ndjson => Sink::Ndjson(file),
            TablesFormat::Parquet => Sink::Parquet(Box::new(
                ParquetTable::new(file, &cols).map_err(|e| parquet_error(&tmp, e))?,
            )),
        };
        Ok(Table {
            path,
            tmp,
            names: cols.iter().map(|(n, _)| *n).collect(),
            sink,
            rows: 0,
        })
    }

    /// One row: a cell per column, in the order of [`columns`].
    fn row(&mut self, cells: &[Cell<'_>]) -> Result<()> {
        debug_assert_eq!(cells.len(), self.names.len());
        match &mut self.sink {
            Sink::Ndjson(out) => {
                let object: serde_json::Map<String, Json> = self
                    .names
                    .iter()
                    .zip(cells)
                    .map(|(k, c)| ((*k).to_owned(), c.json()))
                    .collect();
                serde_json::to_writer(&mut *out, &object)
                    .map_err(|e| Error::Internal(format!("writing {}: {e}", self.tmp.display())))?;
                out.write_all(b"\n")?;
            }
            Sink::Parquet(t) => t.row(cells).map_err(|e| parquet_error(&self.tmp, e))?,
        }
        self.rows += 1;
        Ok(())
    }

    /// A value row: the `key` cells, then the typed value; a list's elements go to `items`
    /// (the key, the position, the element).
    fn value(&mut self, items: &mut Table, key: &[Cell<'_>], v: &Value) -> Result<()> {
        let mut cells = Vec::with_capacity(key.len() + 7);
        cells.extend_from_slice(key);
        cells.extend(typed(v));
        self.row(&cells)?;
        if let Value::List(elements) = v {
            for (pos, e) in elements.iter().enumerate() {
                cells.truncate(key.len());
                cells.push(Cell::U32(u32::try_from(pos).unwrap_or(u32::MAX)));
                cells.extend(typed(e));
                items.row(&cells)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<u64> {
        match self.sink {
            Sink::Ndjson(mut out) => {
                out.flush()?;
                out.get_ref().sync_all()?;
            }
            Sink::Parquet(t) => {
                let out = t.finish().map_err(|e| parquet_error(&self.tmp, e))?;
                out.get_ref().sync_all()?;
            }
        }
        fs::rename(&self.tmp, &self.path)?;
        Ok(self.rows)
    }
}

fn parquet_error(path: &Path, e: parquet::errors::ParquetError) -> Error {
    match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => Error::from(*io),
                Err(other) => Error::Internal(format!("writing {}: {other}", path.display())),
            }
        }
        e => Error::Internal(format!("writing {}: {e}", path.display())),
    }
}

/// One column's values of the row group being gathered, with Parquet's definition and
/// repetition levels where the column has them.
#[derive(Default)]
struct ColumnBuffer {
    int32: Vec<i32>,
    int64: Vec<i64>,
    double: Vec<f64>,
    boolean: Vec<bool>,
    bytes: Vec<ByteArray>,
    defs: Vec<i16>,
    reps: Vec<i16>,
}

/// A Parquet file written a row group at a time.
struct ParquetTable {
    writer: SerializedFileWriter<BufWriter<fs::File>>,
    kinds: Vec<Column>,
    buffers: Vec<ColumnBuffer>,
    rows: usize,
}

impl ParquetTable {
    fn new(
        out: BufWriter<fs::File>,
        cols: &[(&'static str, Column)],
    ) -> std::result::Result<ParquetTable, parquet::errors::ParquetError> {
        let fields: String = cols.iter().map(|(n, c)| c.parquet(n)).collect();
        let schema = parse_message_type(&format!("message audiencedb {{ {fields} }}"))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("audiencedb export tables".to_owned())
            .build();
        Ok(ParquetTable {
            writer: SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props))?,
            kinds: cols.iter().map(|(_, c)| *c).collect(),
            buffers: cols.iter().map(|_| ColumnBuffer::default()).collect(),
            rows: 0,
        })
    }

    fn row(&mut self, cells: &[Cell<'_>]) -> std::result::Result<(), ParquetError> {
        for ((kind, buf), cell) in self.kinds.iter().zip(&mut self.buffers).zip(cells) {
            let optional = kind.optional();
            match cell {
                Cell::Null if optional => buf.defs.push(0),
                Cell::Strs(items) => {
                    if items.is_empty() {
                        buf.defs.push(0);
                        buf.reps.push(0);
                    }
                    for (i, s) in items.iter().enumerate() {
                        buf.bytes.push(ByteArray::from(s.as_bytes().to_vec()));
                        buf.defs.push(1);
                        buf.reps.push(i16::from(i > 0));
                    }
                }
                cell => {
                    if optional {
                        buf.defs.push(1);
                    }
                    match cell {
                        Cell::U32(v) => buf.int32.push(*v as i32),
                        Cell::U64(v) => buf.int64.push(*v as i64),
                        Cell::I64(v) => buf.int64.push(*v),
                        Cell::F64(v) => buf.double.push(*v),
                        Cell::Bool(v) => buf.boolean.push(*v),
                        Cell::Str(v) => buf.bytes.push(ByteArray::from(v.as_bytes().to_vec())),
                        Cell::Null | Cell::Strs(_) => {
                            return Err(ParquetError::General(format!(
                                "{cell:?} in a {kind:?} column"
                            )))
                        }
                    }
                }
            }
        }
        self.rows += 1;
        if self.rows >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows gathered as one row group.
    fn flush(&mut self) -> std::result::Result<(), ParquetError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        for (kind, buf) in self.kinds.iter().zip(&mut self.buffers) {
            let mut col = group
                .next_column()?
                .ok_or_else(|| ParquetError::General("fewer columns than the schema".into()))?;
            let defs = kind.optional().then_some(&buf.defs[..]);
            match kind {
                Column::U32 => {
                    col.typed::<Int32Type>()
                        .write_batch(&buf.int32, None, None)?;
                }
                Column::U64 | Column::I64 | Column::OptI64 => {
                    col.typed::<Int64Type>()
                        .write_batch(&buf.int64, defs, None)?;
                }
                Column::OptF64 => {
                    col.typed::<DoubleType>()
                        .write_batch(&buf.double, defs, None)?;
                }
                Column::OptBool => {
                    col.typed::<BoolType>()
                        .write_batch(&buf.boolean, defs, None)?;
                }
                Column::Str | Column::Name | Column::OptStr => {
                    col.typed::<ByteArrayType>()
                        .write_batch(&buf.bytes, defs, None)?;
                }
                Column::StrList => {
                    col.typed::<ByteArrayType>().write_batch(
                        &buf.bytes,
                        Some(&buf.defs),
                        Some(&buf.reps),
                    )?;
                }
            }
            col.close()?;
            *buf = ColumnBuffer::default();
        }
        group.close()?;
        self.rows = 0;
        Ok(())
    }

    fn finish(mut self) -> std::result::Result<BufWriter<fs::File>, ParquetError> {
        self.flush()?;
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}

/// Writes the tables and the SQL files into `dir` (created if missing), as the module says, for
/// every customer known at the time of the call.
pub fn export_tables(
    db: &Db,
    dir: &Path,
    now: Timestamp,
    format: TablesFormat,
) -> Result<TablesReport> {
    let started = Instant::now();
    fs::create_dir_all(dir)?;
    let dir = fs::canonicalize(dir)?;
    let [customers, traits, trait_items, events, properties, property_items] =
        TABLES.map(|name| Table::create(&dir, name, format));
    let (mut customers, mut traits, mut trait_items) = (customers?, traits?, trait_items?);
    let (mut events, mut properties, mut property_items) = (events?, properties?, property_items?);
    let everyone = db.query("everyone", now)?;
    let ids = db.member_ids(&everyone)?;
    let mut row = 0u64;
    for id in &ids {
        let Some(c) = db.customer(id)? else {
            continue; // deleted since the query
        };
        let customer = Cell::U32(c.internal_id);
        customers.row(&[customer.clone(), Cell::Str(&c.id), Cell::Strs(&c.ids)])?;
        for (name, v) in c.traits.iter().flatten() {
            traits.value(&mut trait_items, &[customer.clone(), Cell::Str(name)], v)?;
        }
        for e in &c.events {
            events.row(&[
                Cell::U64(row),
                customer.clone(),
                Cell::Str(&e.name),
                Cell::I64(e.timestamp),
            ])?;
            for (name, v) in &e.properties {
                let key = [Cell::U64(row), customer.clone(), Cell::Str(name)];
                properties.value(&mut property_items, &key, v)?;
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
    write_sql(&dir, format)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The type of a column, as each format and engine spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    U32,
    U64,
    I64,
    /// Text.
    Str,
    /// Text with few distinct values (names of traits, events, kinds).
    Name,
    StrList,
    OptStr,
    OptI64,
    OptF64,
    OptBool,
}

impl Column {
    fn optional(self) -> bool {
        matches!(
            self,
            Column::OptStr | Column::OptI64 | Column::OptF64 | Column::OptBool
        )
    }

    fn clickhouse(self) -> &'static str {
        match self {
            Column::U32 => "UInt32",
            Column::U64 => "UInt64",
            Column::I64 => "Int64",
            Column::Str => "String",
            Column::Name => "LowCardinality(String)",
            Column::StrList => "Array(String)",
            Column::OptStr => "Nullable(String)",
            Column::OptI64 => "Nullable(Int64)",
            Column::OptF64 => "Nullable(Float64)",
            Column::OptBool => "Nullable(Bool)",
        }
    }

    fn duckdb(self) -> &'static str {
        match self {
            Column::U32 => "UINTEGER",
            Column::U64 => "UBIGINT",
            Column::I64 | Column::OptI64 => "BIGINT",
            Column::Str | Column::Name | Column::OptStr => "VARCHAR",
            Column::StrList => "VARCHAR[]",
            Column::OptF64 => "DOUBLE",
            Column::OptBool => "BOOLEAN",
        }
    }

    /// The field in a Parquet message type.
    fn parquet(self, name: &str) -> String {
        match self {
            Column::U32 => format!("REQUIRED INT32 {name} (INTEGER(32,false));"),
            Column::U64 => format!("REQUIRED INT64 {name} (INTEGER(64,false));"),
            Column::I64 => format!("REQUIRED INT64 {name};"),
            Column::Str | Column::Name => format!("REQUIRED BYTE_ARRAY {name} (STRING);"),
            Column::StrList => format!(
                "REQUIRED GROUP {name} (LIST) {{ REPEATED GROUP list {{ \
                 REQUIRED BYTE_ARRAY element (STRING); }} }}"
            ),
            Column::OptStr => format!("OPTIONAL BYTE_ARRAY {name} (STRING);"),
            Column::OptI64 => format!("OPTIONAL INT64 {name};"),
            Column::OptF64 => format!("OPTIONAL DOUBLE {name};"),
            Column::OptBool => format!("OPTIONAL BOOLEAN {name};"),
        }
    }
}

/// The columns of each table.
fn columns(table: &str) -> Vec<(&'static str, Column)> {
    let value = [
        ("kind", Column::Name),
        ("text", Column::OptStr),
        ("int", Column::OptI64),
        ("float", Column::OptF64),
        ("bool", Column::OptBool),
        ("time", Column::OptI64),
    ];
    let name = ("name", Column::Name);
    let customer = ("customer", Column::U32);
    let row = ("row", Column::U64);
    let pos = ("pos", Column::U32);
    let mut cols = match table {
        "customers" => vec![customer, ("id", Column::Str), ("ids", Column::StrList)],
        "traits" => vec![customer, name],
        "trait_items" => vec![customer, name, pos],
        "events" => vec![row, customer, ("event", Column::Name), ("ts", Column::I64)],
        "properties" => vec![row, customer, name],
        "property_items" => vec![row, customer, name, pos],
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
fn write_sql(dir: &Path, format: TablesFormat) -> Result<()> {
    let mut schema = String::from(
        "-- audiencedb tables for ClickHouse (audiencedb export tables). Times are milliseconds\n\
         -- since the epoch, UTC; a value is `kind` plus one typed column.\n\
         -- On a cluster, create these as the local tables on every shard and put a Distributed\n\
         -- table over each, sharded by the `customer` column every table has, e.g.:\n\
         -- CREATE TABLE events_all AS events ENGINE = Distributed(cluster, db, events, customer);\n\
         -- so that all of a customer's rows live on one shard and its joins stay local.\n",
    );
    let mut load = String::new();
    let mut duck = String::from("-- audiencedb tables for DuckDB (audiencedb export tables).\n");
    for table in TABLES {
        let cols = columns(table);
        let ch_cols = cols
            .iter()
            .map(|(c, t)| format!("`{c}` {}", t.clickhouse()))
            .collect::<Vec<_>>()
            .join(", ");
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({ch_cols}) ENGINE = MergeTree ORDER BY {};\n",
            order_by(table)
        );
        schema.push_str(&create);
        load.push_str(&create);
        let file = dir.join(format!("{table}.{}", format.extension()));
        let file = file.to_string_lossy();
        let duck_create = cols
            .iter()
            .map(|(c, t)| format!("\"{c}\" {}", t.duckdb()))
            .collect::<Vec<_>>()
            .join(", ");
        duck.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {table} ({duck_create});\n"
        ));
        match format {
            TablesFormat::Ndjson => {
                load.push_str(&format!(
                    "INSERT INTO {table} SELECT * FROM file({}, JSONEachRow, {});\n",
                    clickhouse_string(&file),
                    clickhouse_string(&ch_cols)
                ));
                let duck_cols = cols
                    .iter()
                    .map(|(c, t)| format!("\"{c}\": '{}'", t.duckdb()))
                    .collect::<Vec<_>>()
                    .join(", ");
                duck.push_str(&format!(
                    "INSERT INTO {table} SELECT * FROM read_json({}, format = \
                     'newline_delimited', columns = {{{duck_cols}}});\n",
                    duckdb_string(&file),
                ));
            }
            TablesFormat::Parquet => {
                load.push_str(&format!(
                    "INSERT INTO {table} SELECT * FROM file({}, Parquet, {});\n",
                    clickhouse_string(&file),
                    clickhouse_string(&ch_cols)
                ));
                duck.push_str(&format!(
                    "INSERT INTO {table} SELECT * FROM read_parquet({});\n",
                    duckdb_string(&file),
                ));
            }
        }
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

//! `audiencedb export tables`: every customer, trait, event and property comes back from the
//! NDJSON files with its type, and DuckDB loads the files with the `load.duckdb.sql` written
//! beside them and counts the same rows, and the Parquet export loads into the same rows (when the
//! test venv has the `duckdb` package, as `scripts/test.sh` installs it).

mod engines;
mod fixture;

use std::collections::BTreeMap;
use std::path::Path;

use audiencedb::ingest::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::tables::{export_tables, TablesFormat, TABLES};
use fixture::Fixture;
use serde_json::Value as Json;

fn rows(dir: &Path, table: &str) -> Vec<Json> {
    let text = std::fs::read_to_string(dir.join(format!("{table}.ndjson"))).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A value back from its typed columns (and its elements, for a list).
fn value(row: &Json, items: &[&Json]) -> Value {
    match row["kind"].as_str().unwrap() {
        "text" => Value::Str(row["text"].as_str().unwrap().into()),
        "int" => Value::Int(row["int"].as_i64().unwrap()),
        "float" => Value::Float(row["float"].as_f64().unwrap_or(f64::NAN)),
        "bool" => Value::Bool(row["bool"].as_bool().unwrap()),
        "time" => Value::Time(row["time"].as_i64().unwrap()),
        "list" => {
            let mut items: Vec<&&Json> = items.iter().collect();
            items.sort_by_key(|i| i["pos"].as_u64().unwrap());
            Value::List(items.iter().map(|i| value(i, &[])).collect())
        }
        other => panic!("kind {other}"),
    }
}

#[test]
fn every_value_comes_back_with_its_type() {
    let mut f = Fixture::new();
    let now = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
    f.ingest(vec![Message::identify(
        "u'1\\\"x",
        vec![
            ("tier".into(), Some(Value::Str("Gold".into()))),
            ("age".into(), Some(Value::Int(i64::MAX))),
            ("score".into(), Some(Value::Float(0.1))),
            ("newsletter".into(), Some(Value::Bool(false))),
            ("signup_at".into(), Some(Value::Time(-86_400_001))),
            (
                "tags".into(),
                Some(Value::List(vec![
                    Value::Str("eco".into()),
                    Value::Int(7),
                    Value::Bool(true),
                ])),
            ),
            ("address.city".into(), Some(Value::Str("Åbo".into()))),
        ],
    )]);
    f.track(
        "u'1\\\"x",
        "purchased",
        now - 1,
        vec![
            ("amount", Value::Float(19.9)),
            ("amount_text", Value::Str("12.50".into())),
            ("sizes", Value::List(vec![Value::Int(40), Value::Int(41)])),
        ],
    );
    f.track(
        "anon-2",
        "viewed",
        now + 5,
        vec![("product", Value::Int(12345))],
    );
    f.track("anon-2", "did \"it\"", 0, vec![]);
    let out = tempfile::tempdir().unwrap();
    let report = export_tables(&f.db, out.path(), now, TablesFormat::Ndjson).unwrap();
    let customers = f.customers();
    assert_eq!(report.rows[0], customers.len() as u64);

    let (traits, trait_items) = (rows(out.path(), "traits"), rows(out.path(), "trait_items"));
    let (events, properties) = (rows(out.path(), "events"), rows(out.path(), "properties"));
    let property_items = rows(out.path(), "property_items");
    let by_internal: BTreeMap<u64, Json> = rows(out.path(), "customers")
        .into_iter()
        .map(|c| (c["customer"].as_u64().unwrap(), c))
        .collect();
    for c in &customers {
        let row = &by_internal[&u64::from(c.internal_id)];
        assert_eq!(row["id"], c.id);
        assert_eq!(row["ids"], serde_json::json!(c.ids));
        let key = Json::from(c.internal_id);
        let got: Vec<(String, Value)> = traits
            .iter()
            .filter(|t| t["customer"] == key)
            .map(|t| {
                let items: Vec<&Json> = trait_items
                    .iter()
                    .filter(|i| i["customer"] == key && i["name"] == t["name"])
                    .collect();
                (t["name"].as_str().unwrap().to_owned(), value(t, &items))
            })
            .collect();
        let mut expected = c.traits.clone().unwrap_or_default();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, expected, "traits of {}", c.id);
        let mine: Vec<&Json> = events.iter().filter(|e| e["customer"] == key).collect();
        assert_eq!(mine.len(), c.events.len(), "events of {}", c.id);
        for (row, e) in mine.iter().zip(&c.events) {
            assert_eq!(row["event"], e.name);
            assert_eq!(row["ts"], e.timestamp);
            let mut got: Vec<(String, Value)> = properties
                .iter()
                .filter(|p| p["row"] == row["row"])
                .inspect(|p| assert_eq!(p["customer"], key, "a property's customer"))
                .map(|p| {
                    let items: Vec<&Json> = property_items
                        .iter()
                        .filter(|i| i["row"] == row["row"] && i["name"] == p["name"])
                        .collect();
                    (p["name"].as_str().unwrap().to_owned(), value(p, &items))
                })
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let mut expected = e.properties.clone();
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, expected, "properties of {} {}", c.id, e.name);
        }
    }
    for name in [
        "schema.clickhouse.sql",
        "load.clickhouse.sql",
        "load.duckdb.sql",
    ] {
        let text = std::fs::read_to_string(out.path().join(name)).unwrap();
        for table in TABLES {
            assert!(
                text.contains(&format!("CREATE TABLE IF NOT EXISTS {table} (")),
                "{name}"
            );
        }
        // Every statement ends in `;` and a newline, so a client can run the file as it is.
        for line in text.lines().filter(|l| !l.starts_with("--")) {
            assert!(line.ends_with(';'), "{name}: {line}");
        }
    }
    let parquet = tempfile::tempdir().unwrap();
    let again = export_tables(&f.db, parquet.path(), now, TablesFormat::Parquet).unwrap();
    assert_eq!(again.rows, report.rows);
    for table in TABLES {
        assert!(parquet.path().join(format!("{table}.parquet")).is_file());
    }
    let load = std::fs::read_to_string(parquet.path().join("load.clickhouse.sql")).unwrap();
    assert!(load.contains("Parquet"), "{load}");
    load_into_duckdb(out.path(), parquet.path(), &report.rows);
}

/// Runs `load.duckdb.sql` of the NDJSON export and of the Parquet one in DuckDB (Python package),
/// compares the row counts with the export's, and requires every table to hold the same rows
/// from both files; skipped, with a line saying so, when no Python with `duckdb` is found.
fn load_into_duckdb(ndjson: &Path, parquet: &Path, counts: &[u64; 6]) {
    if !engines::has_module("duckdb") {
        eprintln!(
            "skipped the DuckDB load: no duckdb in {} (scripts/test.sh installs it)",
            engines::python().display()
        );
        return;
    }
    let script = format!(
        "import duckdb, json\n\
         def load(path):\n\
         \x20   con = duckdb.connect()\n\
         \x20   con.execute(open(path).read())\n\
         \x20   return {{t: sorted(map(repr, con.execute(f'SELECT * FROM {{t}}').fetchall())) for t in {tables:?}}}\n\
         a, b = load({:?}), load({:?})\n\
         print(json.dumps({{'counts': [len(a[t]) for t in {tables:?}], 'differ': [t for t in {tables:?} if a[t] != b[t]]}}))\n",
        ndjson.join("load.duckdb.sql").to_string_lossy(),
        parquet.join("load.duckdb.sql").to_string_lossy(),
        tables = TABLES
    );
    let got: Json = engines::python_json(["-c", &script]);
    assert_eq!(got["counts"], serde_json::json!(counts));
    assert_eq!(
        got["differ"],
        serde_json::json!([]),
        "NDJSON and Parquet tables differ"
    );
}

//! The SQL engines of the tests: DuckDB and ClickHouse's engine (chDB), as the Python packages
//! `scripts/test.sh` installs into `target/server-venv`. [`run_on`] loads an `export tables`
//! folder into one of them and runs queries there.

#![allow(dead_code)] // each test binary uses a different part

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The engines, each with its Python module and the dialect `audiencedb sql` writes for it.
pub const ENGINES: [(&str, &str, audiencedb::query::sql::Dialect); 2] = [
    ("duckdb", "duckdb", audiencedb::query::sql::Dialect::DuckDb),
    ("chdb", "chdb", audiencedb::query::sql::Dialect::ClickHouse),
];

pub fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/server-venv/bin/python")
}

pub fn has_module(module: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the venv's Python with `args` and reads what it prints as JSON; its error output is the
/// failure message.
pub fn python_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The CDNOW fits and predictions of the PyPI package `lifetimes`
/// (`scripts/lifetimes_reference.py`); `None`, with a note, when the venv has no `lifetimes`.
pub fn lifetimes_reference() -> Option<serde_json::Value> {
    if !has_module("lifetimes") {
        eprintln!(
            "skipped: no `lifetimes` in {} (scripts/test.sh installs it)",
            python().display()
        );
        return None;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/lifetimes_reference.py"
    );
    Some(python_json([script]))
}

/// Stores the CDNOW transactions of `lifetimes_reference()["transactions"]` as `purchased` events
/// with their `amount`, by the sample's customer number (`0001` is customer `1`), at midnight UTC
/// of their date; how many.
pub fn store_cdnow_transactions(db: &audiencedb::Db, path: &str) -> usize {
    use audiencedb::model::{time::parse_date, Value};
    let text = std::fs::read_to_string(path).unwrap();
    let mut messages = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id = f[1].trim_start_matches('0').to_owned();
        let d = f[2];
        let day = parse_date(&format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])).unwrap();
        let amount: f64 = f[4].parse().unwrap();
        messages.push(audiencedb::Message::track(
            id,
            "purchased",
            vec![("amount".into(), Value::Float(amount))],
            Some(day),
        ));
    }
    let n = messages.len();
    for chunk in messages.chunks(2000) {
        db.ingest(chunk.to_vec()).unwrap();
    }
    n
}

/// Runs each query on the engine over the tables in `dir`; the ids of each, or the engine's
/// error as text.
pub fn run_on(engine: &str, dir: &Path, queries: &[String]) -> Vec<Result<Vec<String>, String>> {
    let script = r#"
import json, os, sys
engine, tables = sys.argv[1], sys.argv[2]
queries = json.load(sys.stdin)
out = []
if engine == "duckdb":
    import duckdb
    con = duckdb.connect()
    con.execute(open(os.path.join(tables, "load.duckdb.sql")).read())
    run = lambda q: [r[0] for r in con.execute(q).fetchall()]
else:
    from chdb import session
    s = session.Session()
    s.query("CREATE DATABASE IF NOT EXISTS shop")
    s.query("USE shop")
    for stmt in open(os.path.join(tables, "load.clickhouse.sql")).read().split(";\n"):
        if stmt.strip():
            s.query(stmt)
    run = lambda q: [l for l in s.query(q, "TabSeparatedRaw").bytes().decode().split("\n") if l != ""]
for q in queries:
    try:
        out.append({"ids": run(q)})
    except Exception as e:
        out.append({"error": str(e)})
print(json.dumps(out))
"#;
    let mut child = Command::new(python())
        .args(["-c", script, engine, &dir.to_string_lossy()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(queries).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{engine}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    answers
        .into_iter()
        .map(|a| match a.get("ids") {
            Some(ids) => Ok(ids
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_owned())
                .collect()),
            None => Err(a["error"].to_string()),
        })
        .collect()
}

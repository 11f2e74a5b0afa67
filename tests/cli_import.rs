//! `audiencedb import` and the customer commands, run as a user would run them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use audiencedb::model::Value;
use audiencedb::Db;

fn run(db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GOOD_AND_BAD: &str = r#"{"type":"identify","userId":"c-1","traits":{"tier":"Gold"}}
{"type":"track","userId":"c-1","event":"viewed","properties":{"product":"X"},"timestamp":"2026-01-05T10:01:00Z"}
not json at all

{"type":"track","event":"viewed"}
{"type":"track","userId":"c-2","event":"viewed","timestamp":"2026-99-05"}
{"type":"alias","previousId":"c-1","userId":"c-1"}
{"type":"track","userId":"c-2","event":"viewed","timestamp":1767607260000}
{"type":"track","userId":"c-3","event":"purch"#;

#[test]
fn bad_lines_are_reported_with_numbers_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, GOOD_AND_BAD).unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for expected in [
        "in.ndjson:3: not valid JSON",
        "in.ndjson:5: missing customer id",
        "in.ndjson:6: bad timestamp",
        "in.ndjson:7: an alias message's \"previousId\" and \"userId\" are the same",
        "in.ndjson:9: not valid JSON", // truncated last line
        "read 8, stored 3, skipped 5, duplicates 0",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let db = Db::open(&db).unwrap();
    assert_eq!(db.customer("c-1").unwrap().unwrap().events.len(), 1);
    assert_eq!(db.customer("c-2").unwrap().unwrap().events.len(), 1);
    assert!(db.customer("c-3").unwrap().is_none());
}

#[test]
fn merges_are_imported_and_refused_merges_are_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("in.ndjson");
    std::fs::write(
        &file,
        r#"{"type":"track","anonymousId":"a-1","event":"viewed","timestamp":1767607200000}
{"type":"track","userId":"u-1","event":"bought","timestamp":1767607300000}
{"type":"track","userId":"u-2","event":"bought","timestamp":1767607300000}
{"type":"alias","previousId":"a-1","userId":"u-1"}
{"type":"alias","previousId":"u-2","userId":"u-1"}
{"type":"alias","userId":"u-1"}
{"type":"identify","anonymousId":"a-2","userId":"u-2","traits":{"tier":"Gold"}}
"#,
    )
    .unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for expected in [
        "in.ndjson:5: merge refused: \"u-2\" and \"u-1\" are two known customers",
        "in.ndjson:6: an alias message needs \"previousId\"",
        "read 7, stored 5, skipped 2, duplicates 0, merges 2",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let out = run(&db, &["customer", "show", "a-1"], None);
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("customer u-1 ") && shown.contains("ids: u-1, a-1"),
        "{shown}"
    );
    // With the flag, the known customers merge.
    let again = dir.path().join("again.ndjson");
    std::fs::write(
        &again,
        "{\"type\":\"alias\",\"previousId\":\"u-2\",\"userId\":\"u-1\"}\n",
    )
    .unwrap();
    let out = run(
        &db,
        &["import", "--allow-known-merge", again.to_str().unwrap()],
        None,
    );
    assert!(
        text(&out.stderr).contains("merges 1"),
        "{}",
        text(&out.stderr)
    );
    let db = Db::open(&db).unwrap();
    let c = db.customer("a-2").unwrap().unwrap();
    assert_eq!(c.ids, ["u-1", "a-1", "u-2", "a-2"]);
    assert_eq!(c.events.len(), 3);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn strict_import_stores_nothing_from_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = run(
        &db,
        &["import", "-"],
        Some(r#"{"type":"identify","userId":"keep","traits":{"a":1}}"#),
    );
    assert!(out.status.success());
    for source in ["file", "stdin"] {
        let file = dir.path().join("bad.ndjson");
        std::fs::write(&file, GOOD_AND_BAD).unwrap();
        let out = match source {
            "file" => run(
                &db,
                &[
                    "import",
                    "--strict",
                    "--batch-size",
                    "1",
                    file.to_str().unwrap(),
                ],
                None,
            ),
            _ => run(
                &db,
                &["import", "--strict", "--batch-size", "1", "-"],
                Some(GOOD_AND_BAD),
            ),
        };
        assert_eq!(out.status.code(), Some(1), "{source}");
        let err = text(&out.stderr);
        assert!(err.contains(":3: not valid JSON"), "{source}: {err}");
        assert!(err.contains("nothing was stored"), "{source}: {err}");
        let db = Db::open(&db).unwrap();
        assert!(db.customer("c-1").unwrap().is_none(), "{source}");
        assert_eq!(db.schema().customers, 1, "{source}");
    }
}

#[test]
fn csv_profiles_are_imported_with_types() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "customer,tier,age,vip,zip,signup_at\n\
         a,Gold,34,true,00120,2025-02-03T10:00:00Z\n\
         b,Silver,,false,90210,\n\
         ,Gold,1,true,1,\n\
         c,Bronze,3\n",
    )
    .unwrap();
    let out = run(
        &db,
        &["import", "--id-column", "customer", file.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("people.csv:4: the customer id is empty"),
        "{err}"
    );
    assert!(err.contains("people.csv:5: bad CSV record"), "{err}");
    assert!(err.contains("read 4, stored 2, skipped 2"), "{err}");
    let db_ = Db::open(&db).unwrap();
    let a = db_.customer("a").unwrap().unwrap().traits.unwrap();
    let get = |k: &str| a.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("age"), Some(Value::Int(34)));
    assert_eq!(get("vip"), Some(Value::Bool(true)));
    assert_eq!(get("zip"), Some(Value::Str("00120".into())));
    assert_eq!(get("signup_at"), Some(Value::Time(1_738_576_800_000)));
    let b = db_.customer("b").unwrap().unwrap().traits.unwrap();
    assert!(
        b.iter().all(|(n, _)| n != "age"),
        "an empty cell sets nothing"
    );
    drop(db_);

    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no \"userId\" column"));
}

#[test]
fn an_unclosed_csv_quote_is_reported_at_the_line_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("people.csv");
    // A quoted cell over two lines is fine; the quote on line 4 is never closed, so every later
    // row is inside it (and b's row still has three cells: it used to be stored, with the rows
    // after it as its note).
    std::fs::write(
        &file,
        "userId,tier,note\n\
         a,Gold,\"two\n\
         lines\"\n\
         b,Silver,\"oops\n\
         c,Gold,x\n\
         d,Gold,y\n",
    )
    .unwrap();
    let expected = "people.csv:4: a quoted cell opened on this line is never closed, so the rest \
                    of the input (to line 6) was read as part of it and not imported";
    let db = dir.path().join("db");
    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(expected), "{err}");
    assert!(err.contains("read 2, stored 1, skipped 1"), "{err}");
    let db_ = Db::open(&db).unwrap();
    let a = db_.customer("a").unwrap().unwrap().traits.unwrap();
    assert!(a.contains(&("note".into(), Value::Str("two\nlines".into()))));
    for id in ["b", "c", "d"] {
        assert!(db_.customer(id).unwrap().is_none(), "{id}");
    }
    drop(db_);

    let db = dir.path().join("strict");
    let out = run(&db, &["import", "--strict", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(expected), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");

    // In the header, too.
    std::fs::write(&file, "userId,\"tier\na,Gold\n").unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "people.csv: line 1: bad CSV header: a quoted cell opened on this line is never closed"
        ),
        "{err}"
    );
}

#[test]
fn customer_show_export_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let out = run(&db, &["import", "-"], Some(GOOD_AND_BAD));
    assert!(out.status.success());
    let out = run(&db, &["customer", "show", "c-1"], None);
    let shown = text(&out.stdout);
    assert!(shown.contains("tier = \"Gold\""), "{shown}");
    assert!(
        shown.contains("2026-01-05T10:01:00.000Z  viewed  product=\"X\""),
        "{shown}"
    );
    let out = run(&db, &["customer", "export", "c-1"], None);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["traits"]["tier"], "Gold");
    assert_eq!(json["events"][0]["properties"]["product"], "X");
    let out = run(&db, &["customer", "delete", "c-1"], None);
    assert!(text(&out.stdout).contains("deleted customer \"c-1\" and 1 events"));
    let out = run(&db, &["customer", "show", "c-1"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no customer \"c-1\""));
    let out = run(&db, &["verify"], None);
    assert!(
        text(&out.stdout).contains("ok: the indexes equal"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&db, &["rebuild-indexes"], None);
    assert!(out.status.success());
    let out = run(&db, &["schema", "--json"], None);
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["customers"], 1);
}

#[test]
fn misuse_exits_2_and_bad_folders_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&dir.path().join("db"), &["import"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&dir.path().join("db"), &["frobnicate"], None);
    assert_eq!(out.status.code(), Some(2));
    let file = dir.path().join("plain.txt");
    std::fs::write(&file, "x").unwrap();
    let out = run(&file, &["schema"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not an audiencedb database"));
}

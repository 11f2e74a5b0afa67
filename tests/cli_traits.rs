//! `audiencedb trait ...` as a user runs it: define, list, show, drop, the refusals with their
//! exit codes and messages, and the trait in `query`, `customer show` and `schema`.

use std::path::Path;
use std::process::{Command, Output};

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn fails(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

const SHOP: &str = r#"{"type":"identify","userId":"c-1","traits":{"tier":"Gold"}}
{"type":"track","userId":"c-1","event":"purchased","timestamp":"2026-03-01T10:00:00Z","properties":{"amount":120,"category":"shoes"}}
{"type":"track","userId":"c-1","event":"purchased","timestamp":"2026-03-02T10:00:00Z","properties":{"amount":60,"category":"shoes"}}
{"type":"track","userId":"c-2","event":"purchased","timestamp":"2026-01-02T10:00:00Z","properties":{"amount":20,"category":"hats"}}
"#;

#[test]
fn computed_traits_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, SHOP).unwrap();
    ok(&db, &["import", file.to_str().unwrap()]);

    let defined = ok(
        &db,
        &["trait", "define", "aov", "purchased avg(amount) ever"],
    );
    assert_eq!(
        defined,
        "defined computed trait aov = purchased avg(amount) ever\n"
    );
    // The expression may also come as several words.
    ok(
        &db,
        &[
            "trait",
            "define",
            "favourite_category",
            "purchased",
            "top(category)",
            "in",
            "last",
            "365",
            "days",
        ],
    );
    ok(
        &db,
        &["trait", "define", "last_order_at", "purchased last time"],
    );
    let list = ok(&db, &["trait", "list"]);
    assert!(
        list.contains("favourite_category")
            && list.contains("purchased top(category) in last 365 days"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&db, &["trait", "show", "aov", "--json"])).unwrap();
    assert_eq!(json["expression"], "purchased avg(amount) ever");

    let rule = "aov > 80 and favourite_category = shoes and last_order_at < 3 days ago";
    let members = ok(
        &db,
        &[
            "query",
            "--now",
            "2026-03-10T00:00:00Z",
            "--format",
            "ids",
            rule,
        ],
    );
    assert_eq!(members, "c-1\n");
    let count = ok(&db, &["query", "--now", "2026-03-10T00:00:00Z", "aov < 50"]);
    assert!(count.starts_with('1'), "{count}");

    let explained = ok(
        &db,
        &[
            "query",
            "--explain",
            "aov > 80 and favourite_category = shoes",
        ],
    );
    assert!(
        explained.contains(
            "aov > 80 (computed trait: purchased avg(amount) ever; answered as event conditions)"
        ) && explained.contains("derived for each candidate"),
        "{explained}"
    );
    let why = ok(&db, &["query", "--why", "c-1", "aov > 80"]);
    assert!(
        why.contains("aov is 90 (computed: purchased avg(amount) ever, from 2 matching events"),
        "{why}"
    );
    let shown = ok(&db, &["customer", "show", "c-1"]);
    assert!(shown.contains("aov = 90  (computed)"), "{shown}");
    let shown = ok(&db, &["customer", "show", "c-2"]);
    assert!(shown.contains("aov = 20  (computed)"), "{shown}");
    let export: serde_json::Value =
        serde_json::from_str(&ok(&db, &["customer", "export", "c-1"])).unwrap();
    assert_eq!(export["computed_traits"]["aov"], 90.0);
    assert!(ok(&db, &["schema"]).contains("computed traits:"));

    // Refusals: a clear message and a failing exit code, nothing changed.
    assert!(fails(&db, &["trait", "define", "aov", "purchased count"]).contains("already defined"));
    assert!(fails(&db, &["trait", "define", "tier", "purchased count"]).contains("stored trait"));
    assert!(
        fails(&db, &["trait", "define", "x", "purchased sum(category)"]).contains("needs a number")
    );
    assert!(fails(&db, &["trait", "define", "x", "purchased"]).contains("expected a reducer"));
    assert!(fails(&db, &["trait", "define", "x", "purchased count evr"])
        .contains("did you mean 'ever'"));
    assert!(fails(&db, &["trait", "show", "nosuch"]).contains("nosuch"));
    ok(&db, &["audience", "define", "big_spenders", "aov > 80"]);
    assert!(fails(&db, &["trait", "drop", "aov"]).contains("big_spenders"));
    ok(&db, &["audience", "drop", "big_spenders"]);
    assert_eq!(
        ok(&db, &["trait", "drop", "aov"]),
        "dropped computed trait aov\n"
    );
    assert!(!ok(&db, &["trait", "list"]).contains("aov "));
    assert!(ok(&db, &["verify"]).contains("ok"));
}

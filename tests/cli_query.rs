//! `audiencedb query` as a user runs it: the three output formats, `--now`, `--explain`, and
//! the answers to a bad rule, a bad time and a missing database.

mod cli;

use cli::{run, text};

const SHOP: &str = r#"{"type":"identify","userId":"c-2","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c-1","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c-3","traits":{"tier":"Silver"}}
{"type":"track","userId":"c-1","event":"viewed","properties":{"product":"X"},"timestamp":"2026-03-01T10:00:00Z"}
{"type":"track","userId":"c-2","event":"viewed","properties":{"product":"X"},"timestamp":"2026-01-01T10:00:00Z"}
{"type":"track","userId":"c-3","event":"viewed","properties":{"product":"X"},"timestamp":"2026-03-02T10:00:00Z"}
"#;

fn shop() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, SHOP).unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (dir, db)
}

#[test]
fn formats_and_now() {
    let (_dir, db) = shop();
    let rule = "viewed product X in last 30 days and tier = Gold";
    let ids = run(
        &db,
        &["query", "--now", "2026-03-10", "--format", "ids", rule],
    );
    assert!(ids.status.success(), "{}", text(&ids.stderr));
    assert_eq!(text(&ids.stdout), "c-1\n");

    // Sorted ids; a window that reaches back to January takes c-2 in too.
    let rule = "viewed in last 90 days and tier = Gold";
    let ids = run(
        &db,
        &["query", "--now", "2026-03-10", "--format", "ids", rule],
    );
    assert_eq!(text(&ids.stdout), "c-1\nc-2\n");
    let count = run(&db, &["query", "--now", "2026-03-10", rule]);
    assert_eq!(text(&count.stdout), "2\n");

    // The window ends at now: at 2026-03-01T09:59:59.999Z c-1's view has not happened yet.
    let rule = "viewed in last 1 day";
    let ids = run(
        &db,
        &[
            "query",
            "--now",
            "2026-03-01T09:59:59.999Z",
            "--format",
            "ids",
            rule,
        ],
    );
    assert_eq!(text(&ids.stdout), "");
    let ids = run(
        &db,
        &[
            "query",
            "--now",
            "2026-03-01T10:00:00Z",
            "--format",
            "ids",
            rule,
        ],
    );
    assert_eq!(text(&ids.stdout), "c-1\n");

    let json = run(
        &db,
        &[
            "query",
            "--now",
            "2026-03-10",
            "--format",
            "json",
            "everyone",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["count"], 3);
    assert_eq!(v["ids"], serde_json::json!(["c-1", "c-2", "c-3"]));
    assert_eq!(v["now"], "2026-03-10T00:00:00.000Z");
    assert!(v["elapsed_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn explain_shows_the_plan_tree_with_sizes() {
    let (_dir, db) = shop();
    let out = run(
        &db,
        &[
            "query",
            "--explain",
            "--now",
            "2026-03-10",
            "viewed at least 1 time in last 30 days and not tier = Silver",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("and  estimate"), "{shown}");
    assert!(
        shown.contains("├─ viewed at least 1 time in last 30 days"),
        "{shown}"
    );
    assert!(shown.contains("└─ not"), "{shown}");
    assert!(
        shown.contains("└─ tier = Silver  estimate 1 (exact), actual 1"),
        "{shown}"
    );
}

#[test]
fn mistakes_are_answered_clearly() {
    let (_dir, db) = shop();
    let out = run(&db, &["query", "viewed in lst 30 days"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: unknown keyword 'lst', did you mean 'last'?"),
        "{err}"
    );
    assert!(err.contains("1 | viewed in lst 30 days"), "{err}");
    assert!(err.contains("^^^"), "{err}");

    let out = run(&db, &["query", "--now", "yesterday", "everyone"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--now \"yesterday\" is not a date"));

    // A rule that parses but names what the store has never seen still answers (exit 0), with
    // a warning on stderr naming the nearest known name or value.
    let out = run(&db, &["query", "viewd in last 30 days"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "0\n");
    assert_eq!(
        text(&out.stderr),
        "warning: no event 'viewd' in this store; did you mean 'viewed'?\n"
    );
    let out = run(&db, &["query", "--format", "ids", "tier = gold"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stderr),
        "warning: no customer has tier 'gold'; did you mean 'Gold'?\n"
    );
    // The natural `EVENT between` is the event, as with `did`.
    let out = run(
        &db,
        &[
            "query",
            "--format",
            "ids",
            "viewed between 2026-03-01 and 2026-03-31",
        ],
    );
    assert_eq!(text(&out.stdout), "c-1\nc-3\n");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    let out = run(&db, &["query", "in audience vip"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown audience 'vip'"));

    let missing = db.with_file_name("nothing-here");
    let out = run(&missing, &["query", "everyone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no database at"));
    assert!(!missing.exists(), "a query must not create a database");
}

#[test]
fn why_tells_clause_by_clause_and_when_it_changes() {
    let (_dir, db) = shop();
    let rule = "viewed product X in last 30 days and tier = Gold";
    let out = run(&db, &["query", "--now", "2026-03-10", "--why", "c-1", rule]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for expected in [
        "customer \"c-1\" is in the audience at 2026-03-10T00:00:00.000Z",
        "yes and: every clause holds",
        "yes ├─ viewed product X in last 30 days: 1 matching event from 2026-02-08T00:00:00.001Z to 2026-03-10T00:00:00.000Z; needs count >= 1",
        "2026-03-01T10:00:00.000Z viewed product=\"X\"",
        "yes └─ tier = Gold: tier is \"Gold\"",
        // The view of 2026-03-01T10:00 leaves the 30-day window exactly 30 days later.
        "by time alone, the answer becomes no at 2026-03-31T10:00:00.000Z",
    ] {
        assert!(shown.contains(expected), "missing {expected:?} in:\n{shown}");
    }

    let out = run(&db, &["query", "--now", "2026-03-10", "--why", "c-3", rule]);
    let shown = text(&out.stdout);
    assert!(shown.contains("is not in the audience"), "{shown}");
    assert!(
        shown.contains("no  └─ tier = Gold: tier is \"Silver\""),
        "{shown}"
    );
    assert!(shown.contains("the answer does not change"), "{shown}");

    // Before c-1's view happens, the answer changes when it does.
    let out = run(&db, &["query", "--now", "2026-02-01", "--why", "c-1", rule]);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("by time alone, the answer becomes yes at 2026-03-01T10:00:00.000Z"),
        "{shown}"
    );

    let out = run(&db, &["query", "--why", "nobody", "everyone"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not found: customer \"nobody\""));
}

#[test]
fn demo_builds_a_shop_and_shows_the_example_audiences() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let out = run(&db, &["demo", "--customers", "300"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("audiences at "), "{shown}");
    for rule in [
        "viewed product X in last 30 days and tier = Gold",
        "country in (FI, SE) and (device = mobile or source = facebook)",
    ] {
        assert!(shown.contains(rule), "{rule} missing in:\n{shown}");
    }
    // The second run reuses the shop.
    let again = run(&db, &["demo", "--customers", "300"]);
    assert!(again.status.success());
    assert!(text(&again.stderr).contains("reusing the demo shop"));
}

//! `audiencedb trait ...` as a user runs it: define, list, show, drop, the refusals with their
//! exit codes and messages, and the trait in `query`, `customer show` and `schema`.

mod cli;

use std::path::Path;
use std::process::Command;

use cli::{fails, ok, text};

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

/// A generated shop of `customers` ending today, imported into `db`.
fn generated(dir: &Path, db: &Path, customers: u32) {
    let file = dir.join("gen.ndjson");
    let gen = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .args(["gen", "--customers", &customers.to_string(), "--seed", "7"])
        .output()
        .unwrap();
    assert!(gen.status.success(), "{}", text(&gen.stderr));
    std::fs::write(&file, &gen.stdout).unwrap();
    ok(db, &["import", file.to_str().unwrap()]);
}

#[test]
fn predictive_traits_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // Too few repeat customers: a clear error naming how many are needed, nothing defined.
    let small = dir.path().join("small");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, SHOP).unwrap();
    ok(&small, &["import", file.to_str().unwrap()]);
    let e = fails(&small, &["trait", "define", "p_alive", "purchased p_alive"]);
    assert!(
        e.contains("at least 20") && e.contains("there are 1"),
        "{e}"
    );
    assert!(ok(&small, &["trait", "list"]).contains("no computed traits"));

    let db = dir.path().join("db");
    generated(dir.path(), &db, 300);
    ok(&db, &["trait", "define", "p_alive", "purchased p_alive"]);
    ok(
        &db,
        &[
            "trait",
            "define",
            "clv_90d",
            "purchased clv(amount) in next 90 days",
        ],
    );
    ok(
        &db,
        &[
            "trait",
            "define",
            "rfm",
            "purchased rfm(amount) in last 365 days",
        ],
    );
    let json =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&ok(&db, args)).unwrap() };
    let shown = json(&["trait", "show", "clv_90d", "--format", "json"]);
    assert_eq!(shown["name"], "clv_90d");
    assert_eq!(shown["expression"], "purchased clv(amount) in next 90 days");
    let model = &shown["model"];
    for key in ["r", "alpha", "a", "b", "p", "q", "v", "log_likelihood"] {
        assert!(model[key].is_f64(), "{key}: {model}");
    }
    assert_eq!(model["time_unit"], "weeks");
    assert!(model["customers"].as_u64().unwrap() > 20);
    let kept_at = model["fitted_at"].as_str().unwrap().to_owned();
    // p_alive keeps no spend model; rfm keeps no model at all.
    assert!(json(&["trait", "show", "p_alive", "--json"])["model"]["p"].is_null());
    assert!(json(&["trait", "show", "rfm", "--json"])
        .get("model")
        .is_none());

    // `--now T`: the fit on the events up to T; the kept fit stays.
    let day = audiencedb::model::time::DAY_MS;
    let earlier = audiencedb::model::time::now().div_euclid(day) * day - 60 * day;
    let earlier = audiencedb::model::time::format_rfc3339(earlier);
    let then = json(&[
        "trait", "show", "clv_90d", "--now", &earlier, "--format", "json",
    ]);
    assert_eq!(then["model"]["fitted_at"], earlier.as_str());
    assert_ne!(then["model"]["r"], model["r"]);
    assert_eq!(
        json(&["trait", "show", "clv_90d", "--format", "json"])["model"]["fitted_at"],
        kept_at.as_str()
    );
    let text_show = ok(&db, &["trait", "show", "clv_90d"]);
    assert!(
        text_show.contains("BG/NBD r") && text_show.contains("Gamma-Gamma p"),
        "{text_show}"
    );
    let e = fails(&db, &["trait", "show", "clv_90d", "--format", "yaml"]);
    assert!(e.contains("json or text"), "{e}");

    // Refit: a new fit at the clock's now.
    let refit = ok(&db, &["trait", "refit", "p_alive"]);
    assert!(
        refit.starts_with("refitted computed trait p_alive"),
        "{refit}"
    );
    let e = fails(&db, &["trait", "refit", "rfm"]);
    assert!(e.contains("keeps no purchase model"), "{e}");

    // In rules and in customer show.
    let few = ok(
        &db,
        &[
            "query",
            "--format",
            "count",
            "p_alive < 0.5 and clv_90d > 0",
        ],
    );
    assert!(few.trim().parse::<u64>().is_ok(), "{few}");
    let best = ok(&db, &["query", "--format", "ids", "rfm contains \"5\""]);
    let first = best
        .lines()
        .next()
        .expect("someone scores a 5")
        .trim()
        .to_owned();
    let shown = ok(&db, &["customer", "show", &first]);
    assert!(
        shown.contains("rfm = \"") && shown.contains("(computed)"),
        "{shown}"
    );

    // Refusals: a window after p_alive (with its caret), a saved audience on a prediction.
    let e = fails(
        &db,
        &["trait", "define", "x", "purchased p_alive in last 9 days"],
    );
    assert!(e.contains("takes no window") && e.contains('^'), "{e}");
    let e = fails(&db, &["audience", "define", "leaving", "p_alive < 0.3"]);
    assert!(e.contains("predictive trait p_alive"), "{e}");
}

//! `audiencedb top`, `recommend` and `customer recent` as a user runs them: the table, the JSON,
//! `--now`, `--window`, `--order lift`, the warnings and the errors.

mod cli;

use cli::{run, text};

/// c-1 and c-2 bought X; c-1 also Y (twice), c-2 also Z, c-3 only Y, c-4 Y on 2026-03-09 at
/// 11:00 (outside `in last 1 day` at 2026-03-10T12:00Z) and W inside it; prices are floats.
const SHOP: &str = r#"{"type":"identify","userId":"c-1","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c-2","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c-3","traits":{"tier":"Silver"}}
{"type":"track","userId":"c-1","event":"purchased","properties":{"product":"X","price":9.5},"timestamp":"2026-03-01T10:00:00Z"}
{"type":"track","userId":"c-1","event":"purchased","properties":{"product":"Y","price":9.5},"timestamp":"2026-03-02T10:00:00Z"}
{"type":"track","userId":"c-1","event":"purchased","properties":{"product":"Y","price":9.5},"timestamp":"2026-03-05T10:00:00Z"}
{"type":"track","userId":"c-2","event":"purchased","properties":{"product":"X","price":9.5},"timestamp":"2026-03-03T10:00:00Z"}
{"type":"track","userId":"c-2","event":"purchased","properties":{"product":"Z","price":9.5},"timestamp":"2026-03-04T10:00:00Z"}
{"type":"track","userId":"c-3","event":"purchased","properties":{"product":"Y","price":9.5},"timestamp":"2026-03-04T11:00:00Z"}
{"type":"track","userId":"c-4","event":"purchased","properties":{"product":"Y","price":9.5},"timestamp":"2026-03-09T11:00:00Z"}
{"type":"track","userId":"c-4","event":"purchased","properties":{"product":"W","price":9.5},"timestamp":"2026-03-09T13:00:00Z"}
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
fn top_prints_a_table_and_json() {
    let (_dir, db) = shop();
    let top = |extra: &[&str]| {
        let mut args = vec![
            "top",
            "purchased product X",
            "--event",
            "purchased",
            "--by",
            "product",
        ];
        args.extend(extra);
        run(&db, &args)
    };
    let out = top(&["--now", "2026-03-10"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "audience: 2 customers\n\
         value  customers    share   everyone     lift\n\
         X              2  100.00%          2     2.00\n\
         Y              1   50.00%          3     0.67\n\
         Z              1   50.00%          1     2.00\n"
    );
    assert_eq!(text(&out.stderr), "");
    let out = top(&["--now", "2026-03-10", "--format", "json", "--limit", "1"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"audience": 2, "rows": [
            {"value": "X", "customers": 2, "share": 1.0, "everyone": 2, "lift": 2.0}
        ]})
    );
    // By lift among values with at least one customer: X and Z (2.0), then Y.
    let out = top(&[
        "--now",
        "2026-03-10",
        "--order",
        "lift",
        "--min-customers",
        "1",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let values: Vec<&str> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["X", "Z", "Y"]);
    // With the default --min-customers 5, nothing.
    let out = top(&["--now", "2026-03-10", "--order", "lift"]);
    assert!(
        text(&out.stdout).ends_with("(no value)\n"),
        "{}",
        text(&out.stdout)
    );
    // A window cutting 2026-03-09: c-4's Y at 11:00 is outside, W at 13:00 inside.
    let out = run(
        &db,
        &[
            "top",
            "everyone",
            "--event",
            "purchased",
            "--by",
            "product",
            "--window",
            "in last 1 day",
            "--now",
            "2026-03-10T12:00:00Z",
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["rows"][0]["value"], "W");
    assert_eq!(json["audience"], 4);
}

#[test]
fn top_warns_of_unknown_names_and_refuses_unindexed_properties() {
    let (_dir, db) = shop();
    let out = run(
        &db,
        &[
            "top",
            "tier = Gold",
            "--event",
            "purchasd",
            "--by",
            "product",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "warning: no event 'purchasd' in this store; did you mean 'purchased'?\n"
    );
    let out = run(
        &db,
        &[
            "top",
            "tier = Gold",
            "--event",
            "purchased",
            "--by",
            "price",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: property 'price' of event 'purchased' holds float values"),
        "{err}"
    );
    assert!(err.contains("Config::value_bound"), "{err}");
    let out = run(
        &db,
        &[
            "top",
            "tier = Gold",
            "--event",
            "purchased",
            "--by",
            "product",
            "--window",
            "last week",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a window"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        &db,
        &[
            "top",
            "tier = = Gold",
            "--event",
            "purchased",
            "--by",
            "product",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("-->"), "{}", text(&out.stderr));
}

#[test]
fn recommend_and_recent() {
    let (_dir, db) = shop();
    let rec = |id: &str, extra: &[&str]| {
        let mut args = vec!["recommend", id, "--event", "purchased", "--by", "product"];
        if !extra.contains(&"--now") {
            args.extend(["--now", "2026-03-10"]);
        }
        args.extend(extra);
        let out = run(&db, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // c-3 bought Y: W scores 1/sqrt(3·1), X 1/sqrt(3·2), Z nothing in common.
    assert_eq!(rec("c-3", &[]), "0.577350  W\n0.408248  X\n");
    let json: serde_json::Value =
        serde_json::from_str(&rec("c-3", &["--format", "json", "--limit", "1"])).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"value": "W", "score": 1.0 / 3f64.sqrt()}])
    );
    // c-2 bought X and Z: Y through X only.
    assert_eq!(rec("c-2", &[]), "0.408248  Y\n");
    // Nobody known: the most popular, scored by their share of all customers.
    assert_eq!(
        rec("c-9", &[]),
        "(no purchased by \"c-9\" in the window: the most popular values)\n\
         0.750000  Y\n0.500000  X\n0.250000  W\n0.250000  Z\n"
    );
    // In the last day at noon on the 10th only c-4's W counts: c-3 has nothing in the window.
    assert!(rec(
        "c-3",
        &["--window", "in last 1 day", "--now", "2026-03-10T12:00:00Z"]
    )
    .contains("most popular"));
    let out = run(
        &db,
        &["recommend", "c-1", "--event", "purchased", "--by", "price"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("holds float values"),
        "{}",
        text(&out.stderr)
    );

    let recent_by = |id: &str, by: &str, extra: &[&str]| {
        let mut args = vec!["customer", "recent", id, "--event", "purchased", "--by", by];
        args.extend(extra);
        let out = run(&db, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let recent = |id: &str, extra: &[&str]| recent_by(id, "product", extra);
    assert_eq!(
        recent("c-1", &[]).0,
        "2026-03-05T10:00:00.000Z  Y\n2026-03-01T10:00:00.000Z  X\n"
    );
    assert_eq!(
        recent("c-1", &["--now", "2026-03-04", "--format", "json"]).0,
        "[{\"at\":\"2026-03-02T10:00:00.000Z\",\"value\":\"Y\"},{\"at\":\"2026-03-01T10:00:00.000Z\",\"value\":\"X\"}]\n"
    );
    assert_eq!(
        recent("c-1", &["--limit", "1"]).0,
        "2026-03-05T10:00:00.000Z  Y\n"
    );
    // Any property, indexed or not.
    let (out, _) = recent_by("c-1", "price", &[]);
    assert_eq!(out, "2026-03-05T10:00:00.000Z  9.5\n");
    let (out, err) = recent_by("c-1", "prodcut", &[]);
    assert_eq!(out, "");
    assert!(err.contains("did you mean 'product'"), "{err}");
    assert_eq!(recent("nobody", &[]).0, "");
}

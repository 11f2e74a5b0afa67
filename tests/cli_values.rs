//! `audiencedb top`, `recommend` and `customer recent` as a user runs them: the table, the JSON,
//! `--now`, `--window`, `--order lift`, the warnings and the errors.

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

/// c-1 and c-2 bought X; c-1 also Y (twice), c-2 also Z, c-3 only Y, c-4 Y on 2026-03-09 at
/// 23:00 (outside `in last 1 day` at 2026-03-10T12:00Z) and W inside it; prices are floats.
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

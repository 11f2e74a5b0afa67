//! `audiencedb audience ...` as a user runs it: define, list, show, members (now and --at),
//! export in three formats, diff, the change feed, drop, and the refusals with their exit codes.

mod cli;

use cli::{ok, run, text};

const SHOP: &str = r#"{"type":"identify","userId":"c-2","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c-1","traits":{"tier":"Gold"}}
{"type":"identify","userId":"c,3","traits":{"tier":"Silver"}}
{"type":"track","userId":"c-1","event":"viewed","timestamp":"2026-03-01T10:00:00Z"}
"#;

#[test]
fn a_saved_audience_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, SHOP).unwrap();
    ok(&db, &["import", file.to_str().unwrap()]);

    let saved = ok(&db, &["audience", "define", "gold", "tier", "=", "Gold"]);
    assert!(
        saved.starts_with("saved audience gold: 2 members"),
        "{saved}"
    );
    ok(
        &db,
        &["audience", "define", "others", "not in audience gold"],
    );
    let list = ok(&db, &["audience", "list"]);
    assert!(
        list.contains("gold") && list.contains("tier = Gold"),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&db, &["audience", "show", "gold", "--json"])).unwrap();
    assert_eq!(json["size"], 2);
    assert_eq!(json["rule"], "tier = Gold");
    assert!(ok(&db, &["audience", "show", "others"]).contains("members         1"));

    assert_eq!(
        ok(&db, &["audience", "members", "gold", "--format", "ids"]),
        "c-1\nc-2\n"
    );
    assert_eq!(ok(&db, &["audience", "export", "others"]), "c,3\n");
    assert_eq!(
        ok(&db, &["audience", "export", "others", "--format", "csv"]),
        "id\n\"c,3\"\n"
    );
    let nd = ok(&db, &["audience", "export", "gold", "--format", "ndjson"]);
    assert_eq!(nd.lines().count(), 2);
    assert!(
        nd.contains(r#""audience":"gold""#) && nd.contains(r#""id":"c-1""#),
        "{nd}"
    );

    // History: `viewed in last 1 day` held c-1 only on the day after its view.
    ok(
        &db,
        &["audience", "define", "viewers", "viewed in last 1 day"],
    );
    let then = ok(
        &db,
        &[
            "audience",
            "members",
            "viewers",
            "--at",
            "2026-03-01T12:00:00Z",
            "--format",
            "ids",
        ],
    );
    assert_eq!(then, "c-1\n");
    assert_eq!(ok(&db, &["audience", "members", "viewers"]), "0\n");

    let diff = ok(
        &db,
        &[
            "audience", "diff", "gold", "tier", "in", "(Gold,", "Silver)", "and", "not", "viewed",
            "ever",
        ],
    );
    assert!(
        diff.starts_with("gold: 2 members now, 2 with the new rule (+1 entering, -1 leaving)"),
        "{diff}"
    );
    assert!(
        diff.contains("\n+c,3\n") && diff.contains("\n-c-1\n"),
        "{diff}"
    );

    let feed = ok(&db, &["audience", "changes"]);
    let first: serde_json::Value = serde_json::from_str(feed.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["audience"], "gold");
    assert_eq!(first["change"], "entered");
    assert_eq!(feed.lines().count(), 3, "{feed}");

    // Refusals: exit 1 and a message naming the trouble; nothing changes.
    let refused = run(&db, &["audience", "drop", "gold"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("used by others"),
        "{}",
        text(&refused.stderr)
    );
    let bad = run(&db, &["audience", "define", "x", "in audience nosuch"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad.stderr).contains("unknown audience 'nosuch'"));
    let bad = run(&db, &["audience", "define", "x", "tier =="]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains('^'),
        "the caret: {}",
        text(&bad.stderr)
    );
    let bad = run(&db, &["audience", "show", "nosuch"]);
    assert_eq!(bad.status.code(), Some(1));
    let bad = run(&db, &["audience", "members", "gold", "--at", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2));

    ok(&db, &["audience", "drop", "others"]);
    ok(&db, &["audience", "drop", "gold"]);
    assert!(!ok(&db, &["audience", "list"]).contains("gold"));
    assert!(ok(&db, &["verify"]).contains("ok"));
}

/// `audience load NAME FILE`: a warehouse's member list, from a file (Windows line ends, blank
/// lines and spaces tolerated) or standard input, then usable in rules; refusals exit 1.
#[test]
fn a_member_list_loaded_from_a_file_or_standard_input() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("shop.ndjson");
    std::fs::write(&file, SHOP).unwrap();
    ok(&db, &["import", file.to_str().unwrap()]);

    let ids = dir.path().join("vips.txt");
    std::fs::write(&ids, "c-1\r\n\n  c,3  \r\nnot-yet\n").unwrap();
    let loaded = ok(&db, &["audience", "load", "vips", ids.to_str().unwrap()]);
    assert!(
        loaded.starts_with("loaded list vips: 3 ids naming 2 customers"),
        "{loaded}"
    );
    let members = ok(
        &db,
        &[
            "query",
            "in audience vips and tier = Gold",
            "--format",
            "ids",
        ],
    );
    assert_eq!(members.trim(), "c-1");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&db, &["audience", "show", "vips", "--json"])).unwrap();
    assert_eq!(
        (json["size"].as_u64(), json["list_ids"].as_u64()),
        (Some(2), Some(3))
    );

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(&db)
        .args(["audience", "load", "vips", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"c-2\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("loaded list vips: 1 ids naming 1 customers"));

    for (args, says) in [
        (
            vec!["audience", "load", "vips", "/no/such/file"],
            "reading /no/such/file",
        ),
        (
            vec!["audience", "load", "gold2", dir.path().to_str().unwrap()],
            "reading",
        ),
    ] {
        let bad = run(&db, &args);
        assert_eq!(bad.status.code(), Some(1), "{args:?}");
        assert!(text(&bad.stderr).contains(says), "{}", text(&bad.stderr));
    }
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    let bad = run(&db, &["audience", "load", "vips", empty.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("no ids"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(
        ok(&db, &["audience", "members", "vips", "--format", "ids"]).trim(),
        "c-2"
    );
    assert!(ok(&db, &["verify"]).contains("ok"));
}

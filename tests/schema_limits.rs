//! Bounded schema growth: limits on distinct event names, property names (per event and in
//! all) and trait names, through the library, an import, the command line and the socket.

use std::path::Path;
use std::process::Command;

use audiencedb::import::{self, CollectErrors, ImportOptions};
use audiencedb::model::Value;
use audiencedb::testing::Internals;
use audiencedb::{Config, Db, Error, Message, SchemaLimit, SchemaLimits};

fn open(path: &Path, limits: SchemaLimits) -> Db {
    let mut config = Config::new(path);
    config.limits = limits;
    Db::open_with(config).unwrap()
}

fn small() -> SchemaLimits {
    SchemaLimits {
        event_names: 3,
        properties_per_event: 2,
        property_names: 3,
        trait_names: 2,
    }
}

fn props(names: &[&str]) -> Vec<(audiencedb::CompactString, Value)> {
    names.iter().map(|n| ((*n).into(), Value::Int(1))).collect()
}

fn limit_of(e: &Error) -> Option<SchemaLimit> {
    match e {
        Error::Limit { limit, .. } => Some(*limit),
        _ => None,
    }
}

#[test]
fn the_1001st_event_name_is_refused_and_known_names_still_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let batch: Vec<Message> = (0..1000)
        .map(|i| Message::track("c", format!("e{i}"), vec![], Some(1)))
        .collect();
    assert_eq!(
        db.ingest(batch).unwrap().stored,
        1000,
        "1,000 names are fine"
    );
    let err = db.track("c", "e1000", vec![], Some(2)).unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::EventNames), "{err}");
    let text = err.to_string();
    assert!(text.contains("max-event-names = 1000"), "{text}");
    assert!(text.contains("\"e1000\""), "{text}");
    // A known name goes on being accepted.
    db.track("c", "e7", vec![], Some(3)).unwrap();
    let c = db.customer("c").unwrap().unwrap();
    assert_eq!(c.events.len(), 1001);
    assert!(c.events.iter().all(|e| e.name != "e1000"));
    assert_eq!(db.schema().events.len(), 1000);
}

#[test]
fn property_and_trait_names_are_limited_per_event_in_all_and_per_profile() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"), small());
    db.track("c", "a", props(&["x", "y"]), Some(1)).unwrap();
    // A third property name for `a`.
    let err = db.track("c", "a", props(&["x", "z"]), Some(2)).unwrap_err();
    assert_eq!(
        limit_of(&err),
        Some(SchemaLimit::PropertiesPerEvent),
        "{err}"
    );
    assert!(err.to_string().contains("event \"a\""), "{err}");
    // Names known to `a` are fine, in any combination.
    db.track("c", "a", props(&["y", "x"]), Some(3)).unwrap();
    // `b` may take `x`, known in all, and one new name; a second new name is one too many in all.
    db.track("c", "b", props(&["x", "z"]), Some(4)).unwrap();
    // `z` is known in all now, but still new to `a`, which has its two.
    let err = db.track("c", "a", props(&["x", "z"]), Some(4)).unwrap_err();
    assert_eq!(
        limit_of(&err),
        Some(SchemaLimit::PropertiesPerEvent),
        "{err}"
    );
    let err = db.track("d", "c", props(&["w"]), Some(5)).unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::PropertyNames), "{err}");
    assert!(
        db.customer("d").unwrap().is_none(),
        "a refused message adds no customer"
    );
    // A repeated new name counts once.
    db.identify(
        "c",
        vec![
            ("t1".into(), Some(Value::Int(1))),
            ("t1".into(), Some(Value::Int(2))),
        ],
    )
    .unwrap();
    db.identify("c", vec![("t2".into(), Some(Value::Int(1)))])
        .unwrap();
    let err = db
        .identify("c", vec![("t3".into(), Some(Value::Int(1)))])
        .unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::TraitNames), "{err}");
    let schema = db.schema();
    assert_eq!(schema.traits.len(), 2);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn a_refused_message_fails_its_batch_or_alone_when_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"), small());
    db.track("c", "a", vec![], Some(1)).unwrap();
    let batch = || {
        vec![
            Message::track("c", "b", vec![], Some(2)),
            Message::track("c", "c", vec![], Some(3)),
            // The fourth event name.
            Message::track("new", "d", props(&["p"]), Some(4)),
            Message::track("c", "a", vec![], Some(5)),
        ]
    };
    let err = db.ingest(batch()).unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::EventNames));
    assert_eq!(
        db.customer("c").unwrap().unwrap().events.len(),
        1,
        "ingest: nothing of the batch"
    );
    let (report, refused) = db.ingest_lenient(batch()).unwrap();
    assert_eq!(report.stored, 3);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].0, 2);
    assert_eq!(limit_of(&refused[0].1), Some(SchemaLimit::EventNames));
    assert_eq!(db.customer("c").unwrap().unwrap().events.len(), 4);
    assert!(db.customer("new").unwrap().is_none());
    assert_eq!(
        db.read().catalog.prop_id("p"),
        None,
        "no name of it interned"
    );
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn a_folder_over_a_limit_still_opens_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Db::open(&path).unwrap();
        for e in ["a", "b", "c", "d", "e"] {
            db.track("c", e, props(&["p", "q", "r"]), Some(1)).unwrap();
        }
    }
    let db = open(&path, small());
    assert_eq!(db.query("a ever", 10).unwrap().len(), 1);
    // Every stored name is still accepted; a new one is not.
    db.track("c", "e", props(&["p", "q", "r"]), Some(2))
        .unwrap();
    let err = db.track("c", "f", vec![], Some(3)).unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::EventNames));
    let err = db.track("c", "a", props(&["s"]), Some(3)).unwrap_err();
    assert_eq!(limit_of(&err), Some(SchemaLimit::PropertiesPerEvent));
    assert!(db.verify().unwrap().is_ok());
}

/// Ten lines: 1-3 fine, 4 a new event name past the limit of 3, 5 a new property of `a` past
/// its limit of 2, 6 not JSON, 7-10 fine.
fn limited_file() -> String {
    let line = |c: &str, e: &str, props: &str| {
        format!(
            r#"{{"type":"track","userId":"{c}","event":"{e}","properties":{{{props}}},"timestamp":"2026-01-05T10:00:00Z"}}"#
        )
    };
    [
        line("c-1", "a", r#""x":1,"y":2"#),
        line("c-1", "b", ""),
        line("c-2", "c", ""),
        line("c-3", "d", ""),
        line("c-1", "a", r#""z":1"#),
        "not json".to_owned(),
        line("c-1", "a", r#""y":3"#),
        line("c-2", "b", ""),
        line("c-2", "a", ""),
        line("c-1", "c", ""),
    ]
    .join("\n")
}

#[test]
fn an_import_reports_lines_over_a_limit_as_bad_and_stores_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"), small());
    let mut errors = CollectErrors::default();
    let options = ImportOptions {
        batch_size: 4,
        ..ImportOptions::default()
    };
    let summary =
        import::import_ndjson(&db, limited_file().as_bytes(), &options, &mut errors).unwrap();
    assert_eq!((summary.read, summary.stored, summary.skipped), (10, 7, 3));
    let mut lines: Vec<u64> = errors.0.iter().map(|e| e.line).collect();
    lines.sort();
    assert_eq!(lines, [4, 5, 6]);
    let reason = |l: u64| &errors.0.iter().find(|e| e.line == l).unwrap().reason;
    assert!(reason(4).contains("max-event-names = 3"), "{}", reason(4));
    assert!(
        reason(5).contains("max-properties-per-event = 2"),
        "{}",
        reason(5)
    );
    assert!(db.customer("c-3").unwrap().is_none());
    assert_eq!(db.customer("c-1").unwrap().unwrap().events.len(), 4);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn a_strict_import_over_a_limit_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&dir.path().join("db"), small());
    let file: String = limited_file()
        .lines()
        .take(4)
        .collect::<Vec<_>>()
        .join("\n");
    let options = ImportOptions {
        strict: true,
        batch_size: 2,
        ..ImportOptions::default()
    };
    let mut errors = CollectErrors::default();
    let err = import::import_ndjson(&db, file.as_bytes(), &options, &mut errors).unwrap_err();
    assert!(
        matches!(&err, Error::BadLine { line: 4, reason } if reason.contains("max-event-names")),
        "{err}"
    );
    assert_eq!(db.schema().customers, 0);

    // CSV: the third trait column is one too many.
    let csv = "userId,t1,t2\nc-1,a,b\n";
    let wide = "userId,t3\nc-2,x\n";
    import::import_csv(&db, csv.as_bytes(), &ImportOptions::default(), &mut errors).unwrap();
    let err = import::import_csv(&db, wide.as_bytes(), &options, &mut errors).unwrap_err();
    assert!(matches!(err, Error::BadLine { line: 2, .. }), "{err}");
    let mut errors = CollectErrors::default();
    let s =
        import::import_csv(&db, wide.as_bytes(), &ImportOptions::default(), &mut errors).unwrap();
    assert_eq!((s.stored, s.skipped), (0, 1));
    assert_eq!(errors.0[0].line, 2);
    assert!(db.customer("c-2").unwrap().is_none());
}

#[test]
fn the_command_line_sets_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, limited_file()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(&db)
        .args([
            "import",
            "--max-event-names",
            "3",
            "--max-properties-per-event",
        ])
        .arg("2")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in.ndjson:4: schema limit max-event-names = 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("in.ndjson:5: schema limit max-properties-per-event = 2"),
        "{stderr}"
    );
    assert!(stderr.contains("stored 7, skipped 3"), "{stderr}");
}

#[test]
fn the_socket_answers_invalid() {
    use audiencedb::server::client::{Client, ClientError, RespValue};
    use audiencedb::server::{ServeOptions, Server};
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServeOptions::new(dir.path().join("s.sock"));
    options.schema_limits = small();
    let server = Server::start(&dir.path().join("db"), options).unwrap();
    let socket = server.socket().to_owned();
    let stop = server.shutdown_handle();
    let running = std::thread::spawn(move || server.run());
    let mut client = Client::connect(&socket).unwrap();
    for e in ["a", "b", "c"] {
        let reply = client.call(&["TRACK", "c-1", e, "{}"]).unwrap();
        assert_eq!(reply, RespValue::Simple("OK".into()));
    }
    let refused = |reply: Result<RespValue, ClientError>, limit: &str| match reply {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, "INVALID");
            assert!(
                message.starts_with(&format!("schema limit {limit}")),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    };
    refused(
        client.call(&["TRACK", "c-1", "d", "{}"]),
        "max-event-names = 3",
    );
    refused(
        client.call(&["IDENTIFY", "c-1", r#"{"t1":1,"t2":2,"t3":3}"#]),
        "max-trait-names = 2",
    );
    // The connection goes on, and a known name is accepted.
    let reply = client.call(&["TRACK", "c-1", "a", "{}"]).unwrap();
    assert_eq!(reply, RespValue::Simple("OK".into()));
    drop(client);
    stop.shutdown();
    running.join().unwrap().unwrap();
}

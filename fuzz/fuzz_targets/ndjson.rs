//! One NDJSON input line, as `import` and the socket's `INGEST` read it, and a traits or
//! properties object on its own, as `TRACK` and `IDENTIFY` read it. Any text is a message or an
//! error, never a panic; a message keeps the documented limits; and a message written back as
//! a JSON line reads as the same message.
#![no_main]

use audiencedb::ingest::message::{parse_fields, MAX_NAME_BYTES, MAX_NESTING, MAX_STRING_BYTES};
use audiencedb::ingest::{Body, Message};
use audiencedb::model::time::in_accepted_range;
use audiencedb::model::Value;
use libfuzzer_sys::fuzz_target;

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn check_name(what: &str, name: &str) {
    assert!(!name.is_empty(), "empty {what}");
    assert!(
        name.len() <= MAX_NAME_BYTES,
        "{what} of {} bytes",
        name.len()
    );
}

fn check_value(v: &Value, top: bool) {
    match v {
        Value::Str(s) => assert!(s.len() <= MAX_STRING_BYTES, "string of {} bytes", s.len()),
        Value::Float(f) => assert!(f.is_finite(), "float {f}"),
        Value::List(items) => {
            assert!(top, "a list inside a list");
            items.iter().for_each(|v| check_value(v, false));
        }
        _ => {}
    }
}

fn check_field(name: &str, v: Option<&Value>) {
    check_name("field name", name);
    // Each level of nesting adds a dot; the nesting limit bounds the dots only when names
    // themselves hold none, so this only checks that names are not empty at their ends.
    let _ = MAX_NESTING;
    if let Some(v) = v {
        check_value(v, true);
    }
}

/// The message as a JSON line, in the Segment form the parser reads.
fn to_line(m: &Message) -> String {
    let mut out = String::from("{");
    let (kind, rest) = match &m.body {
        Body::Identify { traits } => {
            let fields: Vec<String> = traits
                .iter()
                .map(|(k, v)| {
                    let v = v.as_ref().map_or(serde_json::Value::Null, Value::to_json);
                    format!("{}:{}", json_str(k), v)
                })
                .collect();
            ("identify", format!(r#""traits":{{{}}}"#, fields.join(",")))
        }
        Body::Track { event, properties } => {
            let fields: Vec<String> = properties
                .iter()
                .map(|(k, v)| format!("{}:{}", json_str(k), v.to_json()))
                .collect();
            (
                "track",
                format!(
                    r#""event":{},"properties":{{{}}}"#,
                    json_str(event),
                    fields.join(",")
                ),
            )
        }
    };
    out.push_str(&format!(
        r#""type":"{kind}","userId":{}"#,
        json_str(&m.customer)
    ));
    if let Some(id) = &m.message_id {
        out.push_str(&format!(r#","messageId":{}"#, json_str(id)));
    }
    if let Some(ts) = m.timestamp {
        out.push_str(&format!(r#","timestamp":{ts}"#));
    }
    out.push(',');
    out.push_str(&rest);
    out.push('}');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fields) = parse_fields(line, "properties") {
        for (k, v) in &fields {
            check_field(k, v.as_ref());
        }
    }
    let Ok(m) = Message::from_json_line(line) else {
        return;
    };
    check_name("customer id", &m.customer);
    if let Some(ts) = m.timestamp {
        assert!(in_accepted_range(ts), "timestamp {ts}");
    }
    if let Some(id) = &m.message_id {
        assert!(
            id.len() <= MAX_NAME_BYTES,
            "message id of {} bytes",
            id.len()
        );
    }
    match &m.body {
        Body::Identify { traits } => traits.iter().for_each(|(k, v)| check_field(k, v.as_ref())),
        Body::Track { event, properties } => {
            check_name("event", event);
            properties.iter().for_each(|(k, v)| check_field(k, Some(v)));
        }
    }
    let written = to_line(&m);
    match Message::from_json_line(&written) {
        Ok(again) => assert_eq!(
            again, m,
            "{line:?} written back as {written:?} reads differently"
        ),
        Err(e) => panic!("{line:?} written back as {written:?} does not read: {e}"),
    }
});

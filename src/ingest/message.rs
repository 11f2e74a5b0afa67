//! One input message (Segment-spec `identify` or `track`) and how a JSON object becomes one.
//! Everything a message carries is checked here, so that the store only sees valid input.

use serde_json::{Map, Value as Json};

use crate::model::time::{self, Timestamp};
use crate::model::Value;

/// The longest customer id, event name, trait or property name, or message id accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest string value accepted, in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// How deep nested trait and property objects may go before they are refused.
pub const MAX_NESTING: usize = 8;

/// A message ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The customer: `userId`, or `anonymousId` when there is no `userId`.
    pub customer: String,
    /// The sender's message id: a message whose id is already stored is skipped.
    pub message_id: Option<String>,
    /// When it happened; `None` is stamped with the time of arrival.
    pub timestamp: Option<Timestamp>,
    pub body: Body,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Merge these traits into the profile; `None` removes the trait.
    Identify {
        traits: Vec<(String, Option<Value>)>,
    },
    /// One event with its properties.
    Track {
        event: String,
        properties: Vec<(String, Value)>,
    },
}

impl Message {
    /// An `identify` message.
    pub fn identify(customer: impl Into<String>, traits: Vec<(String, Option<Value>)>) -> Self {
        Message {
            customer: customer.into(),
            message_id: None,
            timestamp: None,
            body: Body::Identify { traits },
        }
    }

    /// A `track` message.
    pub fn track(
        customer: impl Into<String>,
        event: impl Into<String>,
        properties: Vec<(String, Value)>,
        timestamp: Option<Timestamp>,
    ) -> Self {
        Message {
            customer: customer.into(),
            message_id: None,
            timestamp,
            body: Body::Track {
                event: event.into(),
                properties,
            },
        }
    }

    /// Parses one NDJSON line.
    pub fn from_json_line(line: &str) -> Result<Message, String> {
        let json: Json = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        Message::from_json(&json)
    }

    /// Converts one JSON message object.
    pub fn from_json(json: &Json) -> Result<Message, String> {
        let obj = json.as_object().ok_or("a message must be a JSON object")?;
        let kind = match obj.get("type") {
            Some(Json::String(s)) => s.as_str(),
            Some(_) => return Err("\"type\" must be a string".into()),
            None => return Err("missing \"type\" (identify or track)".into()),
        };
        let customer = customer_id(obj)?;
        let message_id = match obj.get("messageId") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(checked_name("messageId", s)?.to_owned()),
            Some(_) => return Err("\"messageId\" must be a string".into()),
        };
        let timestamp = match obj.get("timestamp") {
            None | Some(Json::Null) => None,
            Some(t) => Some(parse_timestamp(t)?),
        };
        let body = match kind {
            "identify" => {
                let mut traits = Vec::new();
                match obj.get("traits") {
                    None | Some(Json::Null) => {}
                    Some(Json::Object(map)) => flatten(map, "", 0, &mut |k, v| {
                        traits.push((k, v));
                        Ok(())
                    })?,
                    Some(_) => return Err("\"traits\" must be an object".into()),
                }
                Body::Identify { traits }
            }
            "track" => {
                let event = match obj.get("event") {
                    Some(Json::String(s)) if !s.is_empty() => checked_name("event", s)?.to_owned(),
                    Some(Json::String(_)) => return Err("\"event\" is empty".into()),
                    Some(_) => return Err("\"event\" must be a string".into()),
                    None => return Err("a track message needs \"event\"".into()),
                };
                let mut properties = Vec::new();
                match obj.get("properties") {
                    None | Some(Json::Null) => {}
                    Some(Json::Object(map)) => flatten(map, "", 0, &mut |k, v| {
                        // A null property is an absent property.
                        if let Some(v) = v {
                            properties.push((k, v));
                        }
                        Ok(())
                    })?,
                    Some(_) => return Err("\"properties\" must be an object".into()),
                }
                Body::Track { event, properties }
            }
            "alias" => {
                return Err(
                    "alias messages are not supported yet: merging two ids into one customer is planned"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "unsupported message type {other:?} (identify and track are stored)"
                ))
            }
        };
        Ok(Message {
            customer,
            message_id,
            timestamp,
            body,
        })
    }
}

fn checked_name<'a>(what: &str, s: &'a str) -> Result<&'a str, String> {
    if s.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME_BYTES}",
            s.len()
        ));
    }
    Ok(s)
}

/// Checks a customer id given by a caller: non-empty and not over-long.
pub fn check_customer_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the customer id is empty".into());
    }
    checked_name("the customer id", id).map(|_| ())
}

fn customer_id(obj: &Map<String, Json>) -> Result<String, String> {
    for field in ["userId", "anonymousId"] {
        match obj.get(field) {
            None | Some(Json::Null) => continue,
            Some(Json::String(s)) if s.is_empty() => continue,
            Some(Json::String(s)) => {
                check_customer_id(s)?;
                return Ok(s.clone());
            }
            // Many exports write numeric ids: they are the same customer as their decimal text.
            Some(Json::Number(n)) if n.is_u64() || n.is_i64() => return Ok(n.to_string()),
            Some(_) => return Err(format!("\"{field}\" must be a string")),
        }
    }
    Err("missing customer id (\"userId\" or \"anonymousId\")".into())
}

/// Parses a timestamp: an RFC 3339 string or milliseconds since the epoch, within the accepted
/// range (1970 to 2100).
pub fn parse_timestamp(t: &Json) -> Result<Timestamp, String> {
    let ts = match t {
        Json::String(s) => time::parse_rfc3339(s)
            .ok_or_else(|| format!("bad timestamp {s:?}: expected RFC 3339"))?,
        Json::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("bad timestamp {n}: expected whole milliseconds"))?,
        _ => return Err("\"timestamp\" must be an RFC 3339 string or milliseconds".into()),
    };
    if !time::in_accepted_range(ts) {
        return Err(format!(
            "timestamp {} is outside 1970-01-01 .. 2100-01-01",
            t
        ));
    }
    Ok(ts)
}

/// Calls `f` with each field of a JSON object, nested objects flattened into dotted names
/// (`{"address":{"city":"Oulu"}}` gives `address.city`).
fn flatten(
    map: &Map<String, Json>,
    prefix: &str,
    depth: usize,
    f: &mut dyn FnMut(String, Option<Value>) -> Result<(), String>,
) -> Result<(), String> {
    if depth >= MAX_NESTING {
        return Err(format!("objects nested deeper than {MAX_NESTING} levels"));
    }
    for (k, v) in map {
        if k.is_empty() {
            return Err("an empty field name".into());
        }
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        checked_name("a field name", &name)?;
        if let Json::Object(inner) = v {
            flatten(inner, &name, depth + 1, f)?;
            continue;
        }
        if let Json::String(s) = v {
            if s.len() > MAX_STRING_BYTES {
                return Err(format!(
                    "field {name:?} is {} bytes long; the limit is {MAX_STRING_BYTES}",
                    s.len()
                ));
            }
        }
        let value = Value::from_json(v).map_err(|e| format!("field {name:?}: {e}"))?;
        f(name, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_examples() {
        let m = Message::from_json_line(r#"{"type":"identify","userId":"c-1001","traits":{"tier":"Gold","country":"FI","age":34,"tags":["eco","pets"],"signup_at":"2025-02-03T10:00:00Z"},"timestamp":"2026-01-05T10:00:00Z"}"#).unwrap();
        assert_eq!(m.customer, "c-1001");
        let Body::Identify { traits } = &m.body else {
            panic!("identify expected")
        };
        assert_eq!(traits.len(), 5);
        let get = |k: &str| traits.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("tier"), Some(Some(Value::Str("Gold".into()))));
        assert_eq!(get("signup_at"), Some(Some(Value::Time(1_738_576_800_000))));

        let m = Message::from_json_line(r#"{"type":"track","userId":"c-1001","event":"viewed","properties":{"product":"X","category":"shoes","price":59.9},"timestamp":"2026-01-05T10:01:00Z"}"#).unwrap();
        let Body::Track {
            event,
            mut properties,
        } = m.body.clone()
        else {
            panic!("track expected")
        };
        properties.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(event, "viewed");
        assert_eq!(
            properties,
            vec![
                ("category".into(), Value::Str("shoes".into())),
                ("price".into(), Value::Float(59.9)),
                ("product".into(), Value::Str("X".into())),
            ]
        );
        assert_eq!(m.timestamp, time::parse_rfc3339("2026-01-05T10:01:00Z"));
    }

    #[test]
    fn anonymous_ids_numeric_ids_and_nested_objects() {
        let m = Message::from_json_line(
            r#"{"type":"identify","anonymousId":"anon-7","traits":{"address":{"city":"Oulu"},"gone":null}}"#,
        )
        .unwrap();
        assert_eq!(m.customer, "anon-7");
        assert_eq!(
            m.body,
            Body::Identify {
                traits: vec![
                    ("address.city".into(), Some(Value::Str("Oulu".into()))),
                    ("gone".into(), None)
                ]
            }
        );
        let m = Message::from_json_line(
            r#"{"type":"track","userId":42,"event":"x","timestamp":1700000000000}"#,
        )
        .unwrap();
        assert_eq!(m.customer, "42");
        assert_eq!(m.timestamp, Some(1_700_000_000_000));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "must be a JSON object"),
            (r#"{"userId":"a"}"#, "missing \"type\""),
            (r#"{"type":"track","event":"x"}"#, "missing customer id"),
            (r#"{"type":"track","userId":"a"}"#, "needs \"event\""),
            (
                r#"{"type":"track","userId":"a","event":7}"#,
                "\"event\" must be a string",
            ),
            (
                r#"{"type":"track","userId":"a","event":"x","timestamp":"yesterday"}"#,
                "bad timestamp",
            ),
            (
                r#"{"type":"track","userId":"a","event":"x","timestamp":"1969-12-31T23:59:59Z"}"#,
                "outside",
            ),
            (
                r#"{"type":"track","userId":"a","event":"x","timestamp":"2300-01-01T00:00:00Z"}"#,
                "outside",
            ),
            (
                r#"{"type":"alias","userId":"a","previousId":"b"}"#,
                "alias messages are not supported",
            ),
            (
                r#"{"type":"page","userId":"a"}"#,
                "unsupported message type",
            ),
            (
                r#"{"type":"identify","userId":"a","traits":[1]}"#,
                "must be an object",
            ),
            (
                r#"{"type":"identify","userId":"a","traits":{"x":[[1]]}}"#,
                "field \"x\"",
            ),
            (
                r#"{"type":"identify","userId":{"a":1}}"#,
                "must be a string",
            ),
        ];
        for (line, expected) in cases {
            let err = Message::from_json_line(line).unwrap_err();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let err = Message::from_json_line(&format!(r#"{{"type":"identify","userId":"{long}"}}"#))
            .unwrap_err();
        assert!(err.contains("limit is 256"), "{err}");
        let deep = format!(
            r#"{{"type":"identify","userId":"a","traits":{}1{}}}"#,
            r#"{"a":"#.repeat(12),
            "}".repeat(12)
        );
        assert!(Message::from_json_line(&deep)
            .unwrap_err()
            .contains("nested deeper"));
    }
}

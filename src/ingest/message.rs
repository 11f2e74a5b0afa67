//! One input message (Segment-spec `identify`, `track` or `alias`) and how a JSON object becomes
//! one.
//! Everything a message carries is checked here, so that the store only sees valid input.

use std::borrow::Cow;

use compact_str::{format_compact, CompactString};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value as Json;

use crate::model::time::{self, Timestamp};
use crate::model::value::string_value;
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
    pub customer: CompactString,
    /// An `anonymousId` sent beside a different `userId`: that id's customer is merged into
    /// `customer` before the message is stored (as an `alias` would).
    pub merge_from: Option<CompactString>,
    /// Whether `customer` is an anonymous id (the message has no `userId`): a customer it
    /// creates is anonymous until it is merged with one that has a `userId`.
    pub anonymous: bool,
    /// The sender's message id: a message whose id is already stored is skipped.
    pub message_id: Option<CompactString>,
    /// When it happened; `None` is stamped with the time of arrival.
    pub timestamp: Option<Timestamp>,
    pub body: Body,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Merge these traits into the profile; `None` removes the trait.
    Identify {
        traits: Vec<(CompactString, Option<Value>)>,
    },
    /// One event with its properties.
    Track {
        event: CompactString,
        properties: Vec<(CompactString, Value)>,
    },
    /// `previous` and `customer` are one person: `previous`'s customer is merged into
    /// `customer`'s (`alias`, with `previousId` and `userId`).
    Alias { previous: CompactString },
}

impl Message {
    /// An `identify` message.
    pub fn identify(
        customer: impl Into<CompactString>,
        traits: Vec<(CompactString, Option<Value>)>,
    ) -> Self {
        Message {
            customer: customer.into(),
            merge_from: None,
            anonymous: false,
            message_id: None,
            timestamp: None,
            body: Body::Identify { traits },
        }
    }

    /// An `alias` message: `previous` and `user` are one customer, known as `user`.
    pub fn alias(previous: impl Into<CompactString>, user: impl Into<CompactString>) -> Self {
        Message {
            customer: user.into(),
            merge_from: None,
            anonymous: false,
            message_id: None,
            timestamp: None,
            body: Body::Alias {
                previous: previous.into(),
            },
        }
    }

    /// A `track` message.
    pub fn track(
        customer: impl Into<CompactString>,
        event: impl Into<CompactString>,
        properties: Vec<(CompactString, Value)>,
        timestamp: Option<Timestamp>,
    ) -> Self {
        Message {
            customer: customer.into(),
            merge_from: None,
            anonymous: false,
            message_id: None,
            timestamp,
            body: Body::Track {
                event: event.into(),
                properties,
            },
        }
    }

    /// Parses one NDJSON line. Fields other than those of the Segment spec used here (`context`,
    /// `integrations`, ...) are skipped without being built.
    pub fn from_json_line(line: &str) -> Result<Message, String> {
        if !line.trim_start().starts_with('{') {
            return Err(match serde_json::from_str::<IgnoredAny>(line) {
                Ok(_) => "a message must be a JSON object".into(),
                Err(e) => format!("not valid JSON: {e}"),
            });
        }
        let env: Envelope<'_> =
            serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
        let kind = match env.kind {
            Some(raw) => string_field("type", raw)?,
            None => return Err("missing \"type\" (identify, track or alias)".into()),
        };
        let user = id_field("userId", env.user_id)?;
        let anonymous_id = id_field("anonymousId", env.anonymous_id)?;
        let message_id = match env.message_id {
            None => None,
            Some(raw) => Some(checked_name("messageId", &string_field("messageId", raw)?)?.into()),
        };
        let timestamp = env.timestamp.map(parse_timestamp).transpose()?;
        let body = match &*kind {
            "identify" => {
                let mut traits = Vec::new();
                if let Some(raw) = env.traits {
                    fields(raw, "traits", &mut |k, v| traits.push((k, v)))?;
                }
                Body::Identify { traits }
            }
            "track" => {
                let event = match env.event {
                    Some(raw) => string_field("event", raw)?,
                    None => return Err("a track message needs \"event\"".into()),
                };
                if event.is_empty() {
                    return Err("\"event\" is empty".into());
                }
                let event = CompactString::from(checked_name("event", &event)?);
                let mut properties = Vec::new();
                if let Some(raw) = env.properties {
                    // A null property is an absent property.
                    fields(raw, "properties", &mut |k, v| {
                        if let Some(v) = v {
                            properties.push((k, v));
                        }
                    })?;
                }
                Body::Track { event, properties }
            }
            "alias" => {
                let previous = id_field("previousId", env.previous_id)?
                    .ok_or("an alias message needs \"previousId\"")?;
                let Some(user) = user else {
                    return Err("an alias message needs \"userId\"".into());
                };
                if previous == user {
                    return Err(format!(
                        "an alias message's \"previousId\" and \"userId\" are the same ({user:?})"
                    ));
                }
                return Ok(Message {
                    customer: user,
                    merge_from: None,
                    anonymous: false,
                    message_id,
                    timestamp,
                    body: Body::Alias { previous },
                });
            }
            other => {
                return Err(format!(
                    "unsupported message type {other:?} (identify, track and alias are stored)"
                ))
            }
        };
        let anonymous = user.is_none();
        let (customer, merge_from) = match (user, anonymous_id) {
            (Some(u), Some(a)) if a != u => (u, Some(a)),
            (Some(u), _) => (u, None),
            (None, Some(a)) => (a, None),
            (None, None) => {
                return Err("missing customer id (\"userId\" or \"anonymousId\")".into())
            }
        };
        Ok(Message {
            customer,
            merge_from,
            anonymous,
            message_id,
            timestamp,
            body,
        })
    }
}

/// The fields of a message this store reads, each still as raw JSON text. `null` reads as
/// absent.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", borrow, default)]
    previous_id: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traits: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

fn string_field<'a>(name: &str, raw: &'a RawValue) -> Result<Cow<'a, str>, String> {
    json_str(raw.get()).map_err(|_| format!("\"{name}\" must be a string"))
}

/// The string a JSON value's text (a [`RawValue`]'s, which serde_json has checked) holds:
/// borrowed from the text when it has no escapes, where it is the text between the quotes
/// (a `RawValue`'s text has no surrounding whitespace, and a string's control characters were
/// refused when it was read); otherwise serde_json's reading. An error when it is no string.
fn json_str(text: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(Cow::Borrowed(inner)),
        _ => serde_json::from_str(text),
    }
}

/// Parses a JSON object of traits or properties given on its own (the socket server's `TRACK` and
/// `IDENTIFY`) exactly as the same object inside a message is parsed: nested objects become dotted
/// names, `null` is `None`, the same limits apply. `what` names the object in errors.
pub fn parse_fields(json: &str, what: &str) -> Result<Vec<(CompactString, Option<Value>)>, String> {
    let raw: &RawValue = serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut out = Vec::new();
    fields(raw, what, &mut |k, v| out.push((k, v)))?;
    Ok(out)
}

/// Parses a `traits` or `properties` object, calling `f` with each field, nested objects
/// flattened into dotted names (`{"address":{"city":"Oulu"}}` gives `address.city`).
fn fields(
    raw: &RawValue,
    what: &str,
    f: &mut dyn FnMut(CompactString, Option<Value>),
) -> Result<(), String> {
    if !raw.get().starts_with('{') {
        return Err(format!("\"{what}\" must be an object"));
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    FieldsSeed {
        prefix: CompactString::default(),
        depth: 0,
        out: f,
    }
    .deserialize(&mut de)
    .map_err(|e| {
        // serde_json appends the position within the object's own text: not useful here.
        let text = e.to_string();
        match text.find(" at line ") {
            Some(i) => text[..i].to_owned(),
            None => text,
        }
    })
}

/// Visits one JSON object of fields, flattening nested objects.
struct FieldsSeed<'f> {
    prefix: CompactString,
    depth: usize,
    out: &'f mut dyn FnMut(CompactString, Option<Value>),
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth >= MAX_NESTING {
            return Err(de::Error::custom(format!(
                "objects nested deeper than {MAX_NESTING} levels"
            )));
        }
        // Names are read into inline strings (up to 24 bytes need no allocation).
        while let Some(key) = map.next_key::<CompactString>()? {
            if key.is_empty() {
                return Err(de::Error::custom("an empty field name"));
            }
            let name = if self.prefix.is_empty() {
                key
            } else {
                format_compact!("{}.{key}", self.prefix)
            };
            checked_name("a field name", &name).map_err(de::Error::custom)?;
            let parsed = map.next_value_seed(FieldValueSeed {
                name: &name,
                depth: self.depth,
            })?;
            match parsed {
                FieldValue::Scalar(v) => (self.out)(name, v),
                FieldValue::Object(nested) => {
                    // Re-read the nested object with the longer prefix.
                    let mut de = serde_json::Deserializer::from_str(nested.get());
                    FieldsSeed {
                        prefix: name,
                        depth: self.depth + 1,
                        out: &mut *self.out,
                    }
                    .deserialize(&mut de)
                    .map_err(de::Error::custom)?;
                }
            }
        }
        Ok(())
    }
}

/// What one field's value was: a value (or null), or a nested object still to flatten.
enum FieldValue<'de> {
    Scalar(Option<Value>),
    Object(&'de RawValue),
}

struct FieldValueSeed<'n> {
    name: &'n str,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for FieldValueSeed<'_> {
    type Value = FieldValue<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldValue<'de>, D::Error> {
        let raw: &'de RawValue = Deserialize::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('{') {
            return Ok(FieldValue::Object(raw));
        }
        let _ = self.depth;
        field_value(self.name, text)
            .map(FieldValue::Scalar)
            .map_err(de::Error::custom)
    }
}

/// Converts one field's JSON text: a scalar, `null`, or a list of scalars.
fn field_value(name: &str, text: &str) -> Result<Option<Value>, String> {
    let first = text.as_bytes().first().copied().unwrap_or(b' ');
    let value = match first {
        b'"' => {
            let s = json_str(text).map_err(|e| e.to_string())?;
            if s.len() > MAX_STRING_BYTES {
                return Err(format!(
                    "field {name:?} is {} bytes long; the limit is {MAX_STRING_BYTES}",
                    s.len()
                ));
            }
            string_value(&s)
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                match item.get().as_bytes().first() {
                    Some(b'[' | b'{') => {
                        return Err(format!(
                            "field {name:?}: a list may hold only strings, numbers and booleans"
                        ))
                    }
                    _ => list.extend(field_value(name, item.get())?),
                }
            }
            Value::List(list)
        }
        _ => {
            let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            return Value::from_json(&json).map_err(|e| format!("field {name:?}: {e}"));
        }
    };
    Ok(Some(value))
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

/// A customer id field (`userId`, `anonymousId`, `previousId`): `None` when absent or empty.
fn id_field(field: &str, raw: Option<&RawValue>) -> Result<Option<CompactString>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    let id = if text.starts_with('"') {
        let s = string_field(field, raw)?;
        if s.is_empty() {
            return Ok(None);
        }
        CompactString::from(s)
    } else {
        // Many exports write numeric ids: they are the same customer as their text as written
        // (`42` is "42"), whatever their size (a 30-digit id is no integer of ours).
        if serde_json::from_str::<serde_json::Number>(text).is_err() {
            return Err(format!("\"{field}\" must be a string or a number"));
        }
        CompactString::from(text)
    };
    check_customer_id(&id).map_err(|e| format!("\"{field}\": {e}"))?;
    Ok(Some(id))
}

/// Parses a timestamp: an RFC 3339 string or milliseconds since the epoch, within the accepted
/// range (1970 to 2100).
pub fn parse_timestamp(raw: &RawValue) -> Result<Timestamp, String> {
    // A string without escapes is read between its quotes (serde_json checked the line), in
    // place: the common case, and the reading below gives the same answers for it.
    let text = raw.get();
    if let Some(inner) = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.bytes().any(|b| b == b'\\' || b == b'"'))
    {
        if let Some(ts) = time::parse_rfc3339(inner).filter(|ts| time::in_accepted_range(*ts)) {
            return Ok(ts);
        }
    }
    let t: Json = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let ts = match &t {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_the_nearest_float_to_their_text() {
        // Found by the fuzz target `ndjson`: serde_json's default float parser may be off by
        // a unit in the last place for long numbers, so a value could differ from the same
        // text in a CSV cell (read with `str::parse`) and not survive being written back.
        for text in [
            "18447074746309551615",
            "1.8447074746309554e19",
            "0.30000000000000004",
            "2.2250738585072011e-308",
            "9007199254740993.0000000001",
            "123456789012345678901234567890",
        ] {
            let line = format!(
                r#"{{"type":"track","userId":"c","event":"e","properties":{{"x":{text}}}}}"#
            );
            let m = Message::from_json_line(&line).unwrap();
            let Body::Track { properties, .. } = m.body else {
                panic!()
            };
            let expected: f64 = text.parse().unwrap();
            assert_eq!(properties, [("x".into(), Value::Float(expected))], "{text}");
        }
    }

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
        // Issue 16: any number, by its text as written, however long.
        for (id, customer) in [
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("-7", "-7"),
            ("1.50", "1.50"),
            ("1e3", "1e3"),
        ] {
            let m = Message::from_json_line(&format!(
                r#"{{"type":"identify","userId":{id},"traits":{{}}}}"#
            ))
            .unwrap();
            assert_eq!(m.customer, customer);
        }
        let long = "9".repeat(300);
        let err = Message::from_json_line(&format!(r#"{{"type":"identify","userId":{long}}}"#))
            .unwrap_err();
        assert!(err.contains("256"), "{err}");
    }

    #[test]
    fn aliases_and_messages_with_both_ids() {
        let m = Message::from_json_line(
            r#"{"type":"alias","previousId":"anon-77","userId":"c-1001","messageId":"m1"}"#,
        )
        .unwrap();
        assert_eq!(m.customer, "c-1001");
        assert_eq!(
            m.body,
            Body::Alias {
                previous: "anon-77".into()
            }
        );
        assert_eq!((m.merge_from, m.anonymous), (None, false));
        assert_eq!(m.message_id.as_deref(), Some("m1"));
        // Numeric ids are their text, as for userId.
        let m =
            Message::from_json_line(r#"{"type":"alias","previousId":42,"userId":"u"}"#).unwrap();
        assert_eq!(
            m.body,
            Body::Alias {
                previous: "42".into()
            }
        );
        let both = Message::from_json_line(
            r#"{"type":"identify","anonymousId":"a-1","userId":"u-1","traits":{}}"#,
        )
        .unwrap();
        assert_eq!(both.customer, "u-1");
        assert_eq!(both.merge_from.as_deref(), Some("a-1"));
        assert!(!both.anonymous);
        let same = Message::from_json_line(
            r#"{"type":"track","anonymousId":"u-1","userId":"u-1","event":"x"}"#,
        )
        .unwrap();
        assert_eq!((same.customer.as_str(), same.merge_from), ("u-1", None));
        let anon = Message::from_json_line(
            r#"{"type":"track","anonymousId":"a-1","userId":"","event":"x"}"#,
        )
        .unwrap();
        assert_eq!((anon.customer.as_str(), anon.anonymous), ("a-1", true));
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
            (r#"{"type":"alias","userId":"a"}"#, "needs \"previousId\""),
            (
                r#"{"type":"alias","previousId":"a","anonymousId":"b"}"#,
                "needs \"userId\"",
            ),
            (
                r#"{"type":"alias","previousId":"a","userId":"a"}"#,
                "are the same",
            ),
            (
                r#"{"type":"alias","previousId":{},"userId":"a"}"#,
                "\"previousId\" must be a string",
            ),
            (
                r#"{"type":"track","userId":"a","anonymousId":true,"event":"x"}"#,
                "\"anonymousId\" must be a string",
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
        let err = Message::from_json_line(&format!(
            r#"{{"type":"alias","userId":"a","previousId":"{long}"}}"#
        ))
        .unwrap_err();
        assert!(
            err.contains("previousId") && err.contains("limit is 256"),
            "{err}"
        );
        let deep = format!(
            r#"{{"type":"identify","userId":"a","traits":{}1{}}}"#,
            r#"{"a":"#.repeat(12),
            "}".repeat(12)
        );
        assert!(Message::from_json_line(&deep)
            .unwrap_err()
            .contains("nested deeper"));
    }

    /// The borrowed fast path of [`json_str`] reads every string as serde_json does.
    fn json_str_is_serde_json(text: &str) {
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let ours = json_str(raw.get()).map(Cow::into_owned).ok();
        let theirs = serde_json::from_str::<String>(text).ok();
        assert_eq!(ours, theirs, "{text}");
    }

    #[test]
    fn strings_read_without_escapes_are_the_same() {
        for text in [
            r#""""#,
            r#""plain""#,
            r#""with \"quote\"""#,
            r#""a\\b""#,
            r#""\u00e9t\u00e9""#,
            r#""\ud83d\ude00""#,
            r#""été 😀""#,
            r#""\/""#,
            r#"  "spaced"  "#,
            "12",
            "null",
            r#"["a"]"#,
            "{}",
            "true",
        ] {
            json_str_is_serde_json(text);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_reads_back(s in ".*") {
            let json = serde_json::to_string(&s).unwrap();
            json_str_is_serde_json(&json);
            let line = format!(
                r#"{{"type":"track","userId":"u","event":"e","properties":{{"p":{json}}}}}"#
            );
            if let Ok(Message { body: Body::Track { properties, .. }, .. }) =
                Message::from_json_line(&line)
            {
                proptest::prop_assert_eq!(&properties[0].1, &string_value(&s));
            }
        }
    }
}

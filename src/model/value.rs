//! Typed trait and property values, and how JSON input becomes them.

use std::fmt;

use compact_str::CompactString;

use super::time::{self, Timestamp};

/// One trait or event-property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text; up to 24 bytes are held inline, without an allocation.
    Str(CompactString),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An RFC 3339 string in the input: compares as a date-time in rules.
    Time(Timestamp),
    /// A JSON array of scalars (never of lists or objects): what `contains` looks into.
    List(Vec<Value>),
}

/// The type of a [`Value`], as the schema reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Bool,
    Time,
    List,
}

impl ValueType {
    /// Every type, in the order of their bits in [`ValueType::bit`].
    pub const ALL: [ValueType; 6] = [
        ValueType::Str,
        ValueType::Int,
        ValueType::Float,
        ValueType::Bool,
        ValueType::Time,
        ValueType::List,
    ];

    /// The type's bit in a set of types.
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The lower-case name used in the schema view.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Str => "string",
            ValueType::Int => "integer",
            ValueType::Float => "float",
            ValueType::Bool => "boolean",
            ValueType::Time => "datetime",
            ValueType::List => "list",
        }
    }
}

impl Value {
    /// This value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Str(_) => ValueType::Str,
            Value::Int(_) => ValueType::Int,
            Value::Float(_) => ValueType::Float,
            Value::Bool(_) => ValueType::Bool,
            Value::Time(_) => ValueType::Time,
            Value::List(_) => ValueType::List,
        }
    }

    /// The value as a number, if it is one (integers widen to floats). Strings never are.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Converts one JSON value. `Ok(None)` is JSON `null` (which removes a trait). Objects are
    /// not values: callers flatten them into dotted names first.
    pub fn from_json(json: &serde_json::Value) -> Result<Option<Value>, String> {
        Ok(Some(match json {
            serde_json::Value::Null => return Ok(None),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number_from_json(n)?,
            serde_json::Value::String(s) => string_value(s),
            serde_json::Value::Array(items) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                            return Err("a list may hold only strings, numbers and booleans".into())
                        }
                        serde_json::Value::Null => {}
                        scalar => list.extend(Value::from_json(scalar)?),
                    }
                }
                Value::List(list)
            }
            serde_json::Value::Object(_) => {
                return Err("an object is not a value (nested objects become dotted names)".into())
            }
        }))
    }

    /// The JSON form used by export: date-times as RFC 3339 strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Time(t) => serde_json::Value::String(time::format_rfc3339(*t)),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
        }
    }
}

/// A string from input: RFC 3339 date-times become [`Value::Time`], everything else stays text.
/// A string is never a number, even `"12.50"`.
pub fn string_value(s: &str) -> Value {
    match time::parse_rfc3339(s) {
        Some(t) => Value::Time(t),
        None => Value::Str(s.into()),
    }
}

fn number_from_json(n: &serde_json::Number) -> Result<Value, String> {
    if let Some(i) = n.as_i64() {
        Ok(Value::Int(i))
    } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
        Ok(Value::Float(f))
    } else {
        Err(format!("number {n} is out of range"))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Time(t) => f.write_str(&time::format_rfc3339(*t)),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_scalars_become_typed_values() {
        assert_eq!(Value::from_json(&json!(34)).unwrap(), Some(Value::Int(34)));
        assert_eq!(
            Value::from_json(&json!(59.9)).unwrap(),
            Some(Value::Float(59.9))
        );
        assert_eq!(
            Value::from_json(&json!("12.50")).unwrap(),
            Some(Value::Str("12.50".into()))
        );
        assert_eq!(
            Value::from_json(&json!(true)).unwrap(),
            Some(Value::Bool(true))
        );
        assert_eq!(Value::from_json(&json!(null)).unwrap(), None);
        assert_eq!(
            Value::from_json(&json!("2025-02-03T10:00:00Z")).unwrap(),
            Some(Value::Time(1_738_576_800_000))
        );
    }

    #[test]
    fn lists_hold_scalars_only() {
        assert_eq!(
            Value::from_json(&json!(["eco", 3, null])).unwrap(),
            Some(Value::List(vec![Value::Str("eco".into()), Value::Int(3)]))
        );
        assert!(Value::from_json(&json!([[1]])).is_err());
        assert!(Value::from_json(&json!({"a": 1})).is_err());
    }

    #[test]
    fn export_form_round_trips_through_json() {
        for v in [
            Value::Str("x".into()),
            Value::Int(-3),
            Value::Float(19.9),
            Value::Bool(false),
            Value::Time(1_738_576_800_000),
            Value::List(vec![Value::Str("eco".into())]),
        ] {
            assert_eq!(Value::from_json(&v.to_json()).unwrap(), Some(v));
        }
    }
}

//! [`Rule`] → canonical rule text. The printer writes the fewest parentheses the precedence needs,
//! lower-case keywords, one space between words, `in last` (never `in the last`) and `did` only
//! where it is required, so `print(parse(s))` is a fixed point and `parse(print(ast)) == ast`.

use std::fmt::{self, Display, Formatter, Write as _};

use super::ast::*;
use super::words;
use crate::model::time::format_rfc3339;

/// The canonical text of `rule`.
pub fn print(rule: &Rule) -> String {
    rule.to_string()
}

impl Display for Rule {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            // A child needs parentheses when it is an operator of lower or equal precedence
            // (equal too: `(a and b) and c` is a nested `And`, kept as written).
            ExprKind::And(items) => join(f, items, " and ", |e| {
                matches!(e.kind, ExprKind::And(_) | ExprKind::Or(_))
            }),
            ExprKind::Or(items) => join(f, items, " or ", |e| matches!(e.kind, ExprKind::Or(_))),
            ExprKind::Not(inner) => {
                f.write_str("not ")?;
                let group = matches!(inner.kind, ExprKind::And(_) | ExprKind::Or(_));
                write_grouped(f, inner.as_ref(), group)
            }
            ExprKind::Trait(cond) | ExprKind::EventOrTrait(cond) => cond.fmt(f),
            ExprKind::Event(cond) => cond.fmt(f),
            ExprKind::Sequence(seq) => seq.fmt(f),
            ExprKind::FirstLast(fl) => write!(f, "{} {}", fl.keyword(), fl.event),
            ExprKind::Bucket(b) => write!(f, "bucket({}) {}", b.name.text, b.test),
            ExprKind::InAudience(name) => write!(f, "in audience {}", name.text),
            ExprKind::Everyone => f.write_str("everyone"),
        }
    }
}

impl Display for Predicate {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PredicateKind::And(items) => join(f, items, " and ", |p| {
                matches!(p.kind, PredicateKind::And(_) | PredicateKind::Or(_))
            }),
            PredicateKind::Or(items) => {
                join(f, items, " or ", |p| matches!(p.kind, PredicateKind::Or(_)))
            }
            PredicateKind::Not(inner) => {
                f.write_str("not ")?;
                let group = matches!(inner.kind, PredicateKind::And(_) | PredicateKind::Or(_));
                write_grouped(f, inner.as_ref(), group)
            }
            PredicateKind::Cond(cond) => cond.fmt(f),
        }
    }
}

fn join<T: Display>(
    f: &mut Formatter<'_>,
    items: &[T],
    separator: &str,
    needs_group: impl Fn(&T) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write_grouped(f, item, needs_group(item))?;
    }
    Ok(())
}

fn write_grouped(f: &mut Formatter<'_>, item: &impl Display, group: bool) -> fmt::Result {
    if group {
        write!(f, "({item})")
    } else {
        item.fmt(f)
    }
}

impl Display for TraitCondition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.text, self.test)
    }
}

impl Display for Test {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Test::Compare { op, value } => write!(f, "{op} {value}"),
            Test::In { negated, values } => {
                if *negated {
                    f.write_str("not ")?;
                }
                f.write_str("in (")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    value.fmt(f)?;
                }
                f.write_str(")")
            }
            Test::Between { low, high } => write!(f, "between {low} and {high}"),
            Test::Contains(value) => write!(f, "contains {value}"),
            Test::IsSet { negated: false } => f.write_str("is set"),
            Test::IsSet { negated: true } => f.write_str("is not set"),
        }
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            LiteralKind::Str { text, quoted } => {
                if !quoted && words::is_bare_text(text) {
                    f.write_str(text)
                } else {
                    write_quoted(f, text)
                }
            }
            LiteralKind::Number(n) => f.write_str(n.text()),
            LiteralKind::Bool(b) => write!(f, "{b}"),
            LiteralKind::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            LiteralKind::DateTime(ts) => f.write_str(&format_rfc3339(*ts)),
            LiteralKind::Ago(d) => write!(f, "{d} ago"),
        }
    }
}

/// `text` as a double-quoted string of the language, which reads back as `text`.
pub fn quote(text: &str) -> String {
    struct Quoted<'a>(&'a str);
    impl Display for Quoted<'_> {
        fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
            write_quoted(f, self.0)
        }
    }
    Quoted(text).to_string()
}

/// `"text"` with `" \ newline tab` and other control characters escaped.
fn write_quoted(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl Display for Duration {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let unit = if self.amount == 1 {
            self.unit.singular()
        } else {
            self.unit.plural()
        };
        write!(f, "{} {unit}", self.amount)
    }
}

impl Display for EventCondition {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let name = &self.event.text;
        if words::is_name(name) && !words::is_keyword(name) {
            // `did` is needed only where a bare name would read as a trait: `x between a and b`.
            let reads_as_trait = self.shorthand.is_none()
                && self.predicate.is_none()
                && self.frequency.is_none()
                && matches!(
                    &self.window,
                    Some(Window {
                        kind: WindowKind::Between(..),
                        ..
                    })
                );
            // `first purchased X` starts a `first` condition: an event named `first` with a
            // shorthand needs its `did`.
            let reads_as_first = name.eq_ignore_ascii_case("first") && self.shorthand.is_some();
            if reads_as_trait || reads_as_first {
                f.write_str("did ")?;
            }
            f.write_str(name)?;
        } else {
            f.write_str("did ")?;
            write_quoted(f, name)?;
        }
        if let Some(s) = &self.shorthand {
            write!(f, " {} {}", s.property.text, s.value)?;
        }
        if let Some(p) = &self.predicate {
            match p.kind {
                PredicateKind::Cond(_) => write!(f, " where {p}")?,
                _ => write!(f, " where ({p})")?,
            }
        }
        if let Some(freq) = &self.frequency {
            write!(f, " {freq}")?;
        }
        if let Some(window) = &self.window {
            write!(f, " {window}")?;
        }
        Ok(())
    }
}

impl Display for Sequence {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let last = self.steps.len().saturating_sub(1);
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(" then ")?;
                if self.negated && i == last {
                    f.write_str("not ")?;
                }
            }
            step.fmt(f)?;
        }
        if let Some(p) = &self.same {
            write!(f, " with same {}", p.text)?;
        }
        write!(f, " within {}", self.within)?;
        if let Some(window) = &self.window {
            write!(f, " {window}")?;
        }
        Ok(())
    }
}

impl Display for Frequency {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let times = |n: u64| if n == 1 { "time" } else { "times" };
        match &self.kind {
            FrequencyKind::AtLeast(n) => write!(f, "at least {n} {}", times(*n)),
            FrequencyKind::AtMost(n) => write!(f, "at most {n} {}", times(*n)),
            FrequencyKind::Exactly(n) => write!(f, "exactly {n} {}", times(*n)),
            FrequencyKind::Count { op, count } => write!(f, "count {op} {count}"),
            FrequencyKind::Distinct {
                property,
                op,
                count,
            } => write!(f, "distinct({}) {op} {count}", property.text),
            FrequencyKind::Aggregate {
                func,
                property,
                op,
                value,
            } => write!(
                f,
                "{}({}) {op} {}",
                func.keyword(),
                property.text,
                value.text()
            ),
        }
    }
}

impl Display for Window {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WindowKind::Last(d) => write!(f, "in last {d}"),
            WindowKind::Ever => f.write_str("ever"),
            WindowKind::Since(t) => write!(f, "since {t}"),
            WindowKind::Before(t) => write!(f, "before {t}"),
            WindowKind::Between(a, b) => write!(f, "between {a} and {b}"),
        }
    }
}

impl Display for TimePoint {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.kind {
            TimeKind::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            TimeKind::DateTime(ts) => f.write_str(&format_rfc3339(ts)),
            TimeKind::Ago(d) => write!(f, "{d} ago"),
        }
    }
}

impl Display for Computed {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let head = EventCondition {
            window: None,
            frequency: None,
            ..self.event.clone()
        };
        write!(f, "{head} {}", self.reducer.text())?;
        if let Some(window) = &self.event.window {
            write!(f, " {window}")?;
        }
        Ok(())
    }
}

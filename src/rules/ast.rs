//! The typed syntax tree of one rule. It says what was written, precisely typed, and nothing about how
//! it will be evaluated: the planner reads it, the printer turns it back into canonical text.
//!
//! Every node carries the [`Span`] of the source text it came from. Spans never take part in
//! equality (see [`Span`]), so `parse(a) == parse(b)` means "the same rule", whatever the spacing.

use std::fmt;

use chrono::NaiveDate;

use crate::model::time::{Timestamp, DAY_MS};

/// A byte range `start..end` of the rule text.
///
/// Invariant of the tree's equality: a `Span` compares equal to every other `Span`, so the derived
/// `PartialEq` of every node compares what was written and ignores where it was written. Compare
/// `start` and `end` directly to test positions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Eq for Span {}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub expr: Expr,
}

/// A boolean expression over conditions. Parentheses leave no node of their own: `(a and b) and c`
/// is an `And` inside an `And`, and the printer puts the parentheses back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// All of at least two operands, in the order written.
    And(Vec<Expr>),
    /// Any of at least two operands, in the order written.
    Or(Vec<Expr>),
    /// The complement over all customers.
    Not(Box<Expr>),
    /// A condition on a profile trait: `tier = Gold`.
    Trait(TraitCondition),
    /// A condition on events: `purchased at least 3 times in last 90 days`.
    Event(Box<EventCondition>),
    /// `NAME between A and B` with a plain name and a time point at both ends: the one form that
    /// reads both as a trait condition and as an event condition (`did NAME between A and B`).
    /// Kept as the trait condition it was written as; which reading it has is decided against the
    /// store when the rule is planned (see [`TraitCondition::as_event`]).
    EventOrTrait(TraitCondition),
    /// A sequence of events: `added_to_cart then not purchased within 1 hour in last 7 days`.
    Sequence(Box<Sequence>),
    /// The customer's first or last matching event lies in a window: `first purchased in last
    /// 30 days`, `last purchased before 180 days ago`.
    FirstLast(Box<FirstLast>),
    /// The customer's place in a split, compared like a whole number: `bucket(checkout) < 50`.
    Bucket(Box<Bucket>),
    /// Membership of a saved audience: `in audience vip`.
    InAudience(Name),
    /// Every known customer.
    Everyone,
}

/// A plain name (`[A-Za-z_][A-Za-z0-9_]*`) of an audience, or the text of an event name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A trait or property path: names joined by dots (`address.city`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub text: String,
    pub span: Span,
}

impl Path {
    /// The dot-separated names of the path.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.split('.')
    }
}

/// `PATH TEST`: a condition on one trait of the profile, or on one property of an event inside a
/// `where` predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraitCondition {
    pub path: Path,
    pub test: Test,
    pub span: Span,
}

impl TraitCondition {
    /// Whether this condition can also be read as an event condition: a plain name (no dots)
    /// followed by `between` with a date, a date-time or `N unit ago` at both ends, which is
    /// exactly `did NAME between A and B` without the `did`.
    pub fn reads_as_event_too(&self) -> bool {
        self.as_event().is_some()
    }

    /// The event reading of `NAME between A and B` (see [`TraitCondition::reads_as_event_too`]):
    /// the event `NAME` with a `between` window, or `None` for a condition with no such reading.
    pub fn as_event(&self) -> Option<EventCondition> {
        let Test::Between { low, high } = &self.test else {
            return None;
        };
        if !crate::rules::words::is_name(&self.path.text) {
            return None;
        }
        let (from, to) = (low.as_time_point()?, high.as_time_point()?);
        Some(EventCondition {
            event: Name {
                text: self.path.text.clone(),
                span: self.path.span,
            },
            shorthand: None,
            predicate: None,
            frequency: None,
            window: Some(Window {
                kind: WindowKind::Between(from, to),
                span: Span::new(self.path.span.end, self.span.end),
            }),
            span: self.span,
        })
    }
}

impl Literal {
    /// The literal as a window's time point: a date, a date-time or `N unit ago`.
    pub fn as_time_point(&self) -> Option<TimePoint> {
        let kind = match &self.kind {
            LiteralKind::Date(d) => TimeKind::Date(*d),
            LiteralKind::DateTime(t) => TimeKind::DateTime(*t),
            LiteralKind::Ago(d) => TimeKind::Ago(*d),
            _ => return None,
        };
        Some(TimePoint {
            kind,
            span: self.span,
        })
    }
}

/// What a [`TraitCondition`] asks of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `= != < <= > >=` a value.
    Compare { op: CmpOp, value: Literal },
    /// `in (a, b)` or, negated, `not in (a, b)`. At least one value.
    In { negated: bool, values: Vec<Literal> },
    /// `between low and high`, both ends included.
    Between { low: Literal, high: Literal },
    /// `contains value`.
    Contains(Literal),
    /// `is set` or, negated, `is not set`.
    IsSet { negated: bool },
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ];

    /// The operator as written in a rule.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// A value written in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub kind: LiteralKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralKind {
    /// Text, quoted (`"Gold"`) or a bare word (`Gold`). `quoted` only records how it was written;
    /// both mean the same string.
    Str { text: String, quoted: bool },
    /// An integer or decimal number.
    Number(Number),
    /// `true` or `false`.
    Bool(bool),
    /// A calendar date: midnight UTC when compared with an instant (also at either end of a trait
    /// condition's `between`). A window's `between` uses [`TimeKind::Date`] and covers whole days.
    Date(NaiveDate),
    /// An instant, milliseconds since the epoch, UTC.
    DateTime(Timestamp),
    /// `N unit ago`: an instant relative to the evaluation time.
    Ago(Duration),
}

/// A number as written. The text is kept because equality with a string value compares the text
/// as written (`product = 12345` matches `"12345"`, `product = 007` matches `"007"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Number {
    /// `-?[0-9]+`, within `i64`. Invariant: `text` parses to `value`.
    Int { value: i64, text: String },
    /// `-?[0-9]+.[0-9]+`.
    Decimal { text: String },
}

impl Number {
    /// The text as written.
    pub fn text(&self) -> &str {
        match self {
            Number::Int { text, .. } | Number::Decimal { text } => text,
        }
    }

    /// The numeric value (decimals may round to the nearest `f64`).
    pub fn as_f64(&self) -> f64 {
        match self {
            // Precision loss above 2^53 is inherent to comparing with f64 values.
            Number::Int { value, .. } => *value as f64,
            Number::Decimal { text } => text.parse().unwrap_or(f64::NAN),
        }
    }
}

/// A length of time: `30 days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Duration {
    pub amount: u32,
    pub unit: Unit,
}

impl Duration {
    /// The length in milliseconds, or `None` if it overflows an `i64` (the parser rejects those).
    pub fn millis(self) -> Option<i64> {
        i64::from(self.amount).checked_mul(self.unit.millis())
    }
}

/// A unit of time. A month is 30 days and a year 365 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    pub const ALL: [Unit; 6] = [
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    /// Milliseconds in one unit.
    pub fn millis(self) -> i64 {
        match self {
            Unit::Minute => 60_000,
            Unit::Hour => 3_600_000,
            Unit::Day => DAY_MS,
            Unit::Week => 7 * DAY_MS,
            Unit::Month => 30 * DAY_MS,
            Unit::Year => 365 * DAY_MS,
        }
    }

    /// The singular name (`day`).
    pub fn singular(self) -> &'static str {
        match self {
            Unit::Minute => "minute",
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// The plural name (`days`).
    pub fn plural(self) -> &'static str {
        match self {
            Unit::Minute => "minutes",
            Unit::Hour => "hours",
            Unit::Day => "days",
            Unit::Week => "weeks",
            Unit::Month => "months",
            Unit::Year => "years",
        }
    }
}

/// `EVENT [PROPERTY VALUE] [where PREDICATE] [FREQUENCY] [WINDOW]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCondition {
    /// The event name, any text (quoted in the rule when it is not a plain name).
    pub event: Name,
    /// `viewed product X`: shorthand for `where product = X`.
    pub shorthand: Option<Shorthand>,
    pub predicate: Option<Predicate>,
    /// `None` means at least once.
    pub frequency: Option<Frequency>,
    /// `None` means no window was written, which means `ever`.
    pub window: Option<Window>,
    pub span: Span,
}

/// `STEP then [not] STEP ... [with same PROPERTY] within DURATION [WINDOW]`.
///
/// `A then B then C within T`: events a < b < c (strictly, to the millisecond) with c within T of a.
/// `A then not B within T` (exactly two steps): an `a` with a + T ≤ now and no `b` in (a, a + T].
/// The window applies to the first step's event; every event counts only up to *now*.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// At least two steps, each an event condition without a frequency or a window.
    pub steps: Vec<EventCondition>,
    /// `then not` before the last step (then there are exactly two steps).
    pub negated: bool,
    /// `with same PROPERTY`: every later step's event has the first step's value of it.
    pub same: Option<Path>,
    /// `within DURATION`: the last step's event is at most this long after the first's.
    pub within: Duration,
    /// The window of the first step's event; `None` is `ever`.
    pub window: Option<Window>,
    pub span: Span,
}

/// `first EVENT [...] [WINDOW]` or `last EVENT [...] [WINDOW]`.
///
/// `first`: the customer's earliest matching event (of those up to *now*) lies in the window;
/// `last`: their latest matching event up to *now* does. False for a customer without a
/// matching event. The event condition carries the window and never a frequency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstLast {
    /// `last` rather than `first`.
    pub last: bool,
    /// The event, its shorthand and `where`, and the window (`None`: `ever`); no frequency.
    pub event: EventCondition,
    pub span: Span,
}

impl FirstLast {
    /// The keyword written before the event: `first` or `last`.
    pub fn keyword(&self) -> &'static str {
        if self.last {
            "last"
        } else {
            "first"
        }
    }
}

/// `bucket(NAME) TEST`: the customer's bucket, 0 to 99, in the split NAME (see
/// `crate::model::bucket`), compared like a number. The test is a comparison, `in`/`not in` or
/// `between`, and every value in it is a whole number (the parser refuses anything else); values
/// outside 0..=99 are allowed and compare as numbers (`bucket(x) < 100` holds for everyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The split's name: a plain name, keywords included (`bucket(set)`), case-sensitive.
    pub name: Name,
    pub test: Test,
    pub span: Span,
}

/// `PROPERTY VALUE` right after an event name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shorthand {
    pub property: Path,
    pub value: Literal,
    pub span: Span,
}

/// A boolean expression over conditions on one event's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    pub kind: PredicateKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredicateKind {
    /// All of at least two operands.
    And(Vec<Predicate>),
    /// Any of at least two operands.
    Or(Vec<Predicate>),
    Not(Box<Predicate>),
    /// A condition on one property; the path names the property.
    Cond(TraitCondition),
}

/// How many matching events, or an aggregate over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frequency {
    pub kind: FrequencyKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrequencyKind {
    /// `at least N times`.
    AtLeast(u64),
    /// `at most N times`.
    AtMost(u64),
    /// `exactly N time(s)`.
    Exactly(u64),
    /// `count OP N`.
    Count { op: CmpOp, count: u64 },
    /// `sum(amount) > 500`.
    Aggregate {
        func: AggregateFn,
        property: Path,
        op: CmpOp,
        value: Number,
    },
    /// `distinct(product) >= 3`: how many different values the property takes among the
    /// matching events, compared like `count`. Values are told apart as `with same` tells them
    /// (numbers by value, text exactly, booleans, instants); events without the property or with
    /// a list in it add nothing.
    Distinct {
        property: Path,
        op: CmpOp,
        count: u64,
    },
}

/// An aggregate of a numeric property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFn {
    Sum,
    Avg,
    Min,
    Max,
}

impl AggregateFn {
    pub const ALL: [AggregateFn; 4] = [
        AggregateFn::Sum,
        AggregateFn::Avg,
        AggregateFn::Min,
        AggregateFn::Max,
    ];

    pub fn keyword(self) -> &'static str {
        match self {
            AggregateFn::Sum => "sum",
            AggregateFn::Avg => "avg",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
        }
    }
}

/// The time window the events must fall in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kind: WindowKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowKind {
    /// `in [the] last N unit`: now − N·unit < t ≤ now.
    Last(Duration),
    /// `ever`: t ≤ now.
    Ever,
    /// `since T`: T ≤ t ≤ now.
    Since(TimePoint),
    /// `before T`: t < T (and ≤ now).
    Before(TimePoint),
    /// `between A and B`: a date end covers its whole day, a date-time end is inclusive.
    Between(TimePoint, TimePoint),
}

/// A point in time used by a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePoint {
    pub kind: TimeKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeKind {
    Date(NaiveDate),
    DateTime(Timestamp),
    Ago(Duration),
}

/// A computed trait's expression: `EVENT [PROPERTY VALUE] [where PREDICATE] REDUCER [WINDOW]`,
/// a value derived for each customer from their matching events in the window (`purchased
/// avg(amount) in last 365 days`). Parsed by [`crate::rules::parse_computed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// The event, its shorthand and `where`, and the window (`None`: `ever`); never a
    /// frequency.
    pub event: EventCondition,
    pub reducer: Reducer,
    pub span: Span,
}

/// What a computed trait folds the matching events into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reducer {
    /// How many (0 without any).
    Count,
    /// `sum(p)` (0 without any number), `avg(p)`, `min(p)`, `max(p)` over the events whose
    /// property is a number (no value without one).
    Aggregate { func: AggregateFn, property: Path },
    /// `distinct(p)`: how many different values, told apart as `distinct(p)` in a rule does (0
    /// without any).
    Distinct(Path),
    /// `top(p)`: the value held by the most events; of several, the smallest (numbers by value,
    /// then text, then booleans, then instants). No value without any.
    Top(Path),
    /// `first time`: the instant of the earliest matching event in the window.
    FirstTime,
    /// `last time`: the instant of the latest matching event in the window.
    LastTime,
    /// `p_alive`: the probability that the customer is still buying, from the kept purchase
    /// model (BG/NBD) and the customer's matching events up to *now* (never a window).
    PAlive,
    /// `expected count in next T`: the purchases the kept model expects from the customer in
    /// the coming `horizon`.
    Expected { horizon: Duration },
    /// `clv(p) in next T`: the expected count times the expected value of a purchase
    /// (Gamma–Gamma on `p`).
    Clv { property: Path, horizon: Duration },
    /// `rfm(p)`: three digits, the customer's quintiles (5 best) of recency, frequency and the
    /// sum of `p` among the customers with a matching event in the window.
    Rfm(Path),
}

impl Reducer {
    /// The reducer as written in an expression.
    pub fn text(&self) -> String {
        match self {
            Reducer::Count => "count".to_owned(),
            Reducer::Aggregate { func, property } => {
                format!("{}({})", func.keyword(), property.text)
            }
            Reducer::Distinct(p) => format!("distinct({})", p.text),
            Reducer::Top(p) => format!("top({})", p.text),
            Reducer::FirstTime => "first time".to_owned(),
            Reducer::LastTime => "last time".to_owned(),
            Reducer::PAlive => "p_alive".to_owned(),
            Reducer::Expected { horizon } => format!("expected count in next {horizon}"),
            Reducer::Clv { property, horizon } => {
                format!("clv({}) in next {horizon}", property.text)
            }
            Reducer::Rfm(p) => format!("rfm({})", p.text),
        }
    }

    /// Whether the value comes from the kept purchase model (`p_alive`, `expected count`,
    /// `clv`), which reads every matching event up to *now* and takes no window.
    pub fn is_model(&self) -> bool {
        matches!(
            self,
            Reducer::PAlive | Reducer::Expected { .. } | Reducer::Clv { .. }
        )
    }

    /// Whether the value has no equivalent in the rule language and moves with *now* in ways
    /// saved audiences cannot follow: the model reducers and `rfm(p)`.
    pub fn is_predictive(&self) -> bool {
        self.is_model() || matches!(self, Reducer::Rfm(_))
    }

    /// The property folded, for the reducers that read one.
    pub fn property(&self) -> Option<&Path> {
        match self {
            Reducer::Aggregate { property, .. }
            | Reducer::Distinct(property)
            | Reducer::Top(property)
            | Reducer::Clv { property, .. }
            | Reducer::Rfm(property) => Some(property),
            Reducer::Count
            | Reducer::FirstTime
            | Reducer::LastTime
            | Reducer::PAlive
            | Reducer::Expected { .. } => None,
        }
    }
}

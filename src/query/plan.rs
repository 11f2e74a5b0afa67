//! From a parsed rule to a plan: names resolved to the catalog's interned ids, literals to every
//! form they can be compared in, windows to inclusive millisecond ranges at one *now*.
//!
//! The plan is the AST's meaning with nothing left to look up: evaluation (`exec`) never touches
//! a name or a string of the rule again. This module reads the catalog; it knows nothing of
//! bitmaps or storage.

use chrono::NaiveDate;
use std::sync::Arc;

use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::Indexes;
use crate::model::bucket::BUCKETS;
use crate::model::time::{Timestamp, DAY_MS};
use crate::predict::PurchaseModel;
use crate::rules::{
    AggregateFn, CmpOp, Computed, EventCondition, Expr, ExprKind, FrequencyKind, Literal,
    LiteralKind, Number, Predicate, PredicateKind, Reducer, Rule, Sequence, Span, Test, TimeKind,
    TimePoint, TraitCondition, WindowKind,
};
use crate::storage::Catalog;

use super::reading::{self, Reading};

/// One node of a plan. `Trait` and `Event` are the leaves that read data.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    /// Where the node came from in the rule text, for explain and why.
    pub span: Span,
    /// For a `NAME between A and B` that reads two ways, the reading it took here.
    pub reading: Option<Reading>,
}

impl Node {
    /// The node's text in the rule it was planned from.
    pub fn source_text<'r>(&self, rule: &'r str) -> &'r str {
        rule.get(self.span.start..self.span.end).unwrap_or("?")
    }

    /// How explain and why name the node: its text, and for a `NAME between A and B` that reads
    /// two ways, the reading taken.
    pub fn label(&self, rule: &str) -> String {
        let text = self.source_text(rule);
        match self.reading {
            Some(r) => format!("{text} (read as the {r})"),
            None => text.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Everyone,
    /// A test on one trait; `trait_id` is `None` when no customer ever had the trait.
    Trait {
        trait_id: Option<u32>,
        test: ValueTest,
    },
    Event(Box<EventNode>),
    Sequence(Box<SeqNode>),
    /// `first EVENT WINDOW` / `last EVENT WINDOW`.
    FirstLast(Box<FirstLastNode>),
    /// `bucket(NAME) TEST`.
    Bucket(Box<BucketNode>),
    /// A test on a computed trait (`aov > 80`): its value derived from the customer's events.
    Computed(Box<ComputedNode>),
    /// `in audience NAME`: the saved audience's own rule, planned at the same *now*. The inner
    /// node's spans point into that rule's text, not this one's.
    Audience {
        name: String,
        inner: Box<Node>,
    },
    /// `in audience NAME` of a loaded list: its members as the plan found them.
    List {
        name: String,
        members: Arc<RoaringBitmap>,
    },
}

/// An event condition at one *now*.
#[derive(Debug, Clone)]
pub(crate) struct EventNode {
    /// `None` when no such event was ever stored.
    pub event: Option<u32>,
    /// What each event must satisfy (shorthand and `where` together); `None` is every event.
    pub filter: Option<Filter>,
    pub frequency: Frequency,
    /// The window as an inclusive range of timestamps, already capped at *now*. Empty when
    /// `from > to`.
    pub from: Timestamp,
    pub to: Timestamp,
}

/// A sequence at one *now*: each step as an event condition over the instants its event may
/// have. The first step's range is the sequence's window (for `then not`, ending at most at
/// now − T: the wait must be over); a later step's starts a millisecond after the window's start
/// and ends T after the first step's end (at most *now*). A step's frequency is unused.
#[derive(Debug, Clone)]
pub(crate) struct SeqNode {
    /// At least two, at most [`crate::rules::MAX_STEPS`].
    pub steps: Vec<EventNode>,
    /// `A then not B within T` (two steps).
    pub negated: bool,
    /// `with same PROPERTY`: `Some(None)` when no event ever had the property. The first step's
    /// filter then also requires the property to be set (unless every stored event of its kind
    /// has it).
    pub same: Option<Option<u32>>,
    /// T, in milliseconds.
    pub within: i64,
}

/// `first`/`last` at one *now*: the customer's first (last) matching event up to *now* lies in
/// the window exactly when some matching event lies in the window and none lies before it (for
/// `last`: after it, up to *now*). Both parts are plain presence conditions, so the bitmaps bound
/// them as they bound any event condition.
#[derive(Debug, Clone)]
pub(crate) struct FirstLastNode {
    /// `last` rather than `first`.
    pub last: bool,
    /// The matching events in the window (presence).
    pub inside: EventNode,
    /// The matching events before the window (`first`) or after it up to *now* (`last`), which
    /// must be none. Empty when the window reaches back to the start of time (`first`) or up to
    /// *now* (`last`).
    pub outside: EventNode,
    pub now: Timestamp,
}

/// A test on a computed trait at one *now*. When the test has an equivalent in the rule
/// language's event conditions (`orders_90d >= 3` is `purchased count >= 3 in last 90 days`,
/// `last_order_at < T` is "a purchase, and none from T on"), `expanded` holds it and answers
/// (bounds, exact check); otherwise the value is derived for each candidate and tested
/// ([`crate::query::customer::computed_value`]), the candidates bounded by who has a matching
/// event in the window. `why` always derives the value.
#[derive(Debug, Clone)]
pub(crate) struct ComputedNode {
    /// The trait's name.
    pub name: String,
    /// The expression as defined, canonical.
    pub expression: String,
    pub reducer: PlannedReducer,
    /// The matching events in the window (frequency: presence).
    pub events: EventNode,
    pub test: ValueTest,
    /// The same test as event conditions, when it has one.
    pub expanded: Option<Box<Node>>,
    /// The kept purchase model, for `p_alive`, `expected count` and `clv` (`None`: no fit is
    /// kept, and no customer has a value).
    pub model: Option<Arc<PurchaseModel>>,
    /// Every customer's value at this *now*, once computed (`rfm(p)`, which ranks each customer
    /// among all the others, and the model reducers when their history cache is valid: filled
    /// by [`super::predictive::prepare`] before any customer is checked). Shared by the plan's
    /// clones.
    pub table: Option<Arc<super::predictive::TableSlot>>,
    /// The model reducers' cache of every customer's history, kept with the definition.
    pub histories: Option<Arc<super::predictive::HistoryCache>>,
}

/// A computed trait's reducer with its property resolved (`None`: never seen on any event).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PlannedReducer {
    Count,
    Aggregate {
        func: AggregateFn,
        prop: Option<u32>,
    },
    Distinct(Option<u32>),
    Top(Option<u32>),
    FirstTime,
    LastTime,
    /// `p_alive`, from [`ComputedNode::model`].
    PAlive,
    /// `expected count in next T`, `T` in milliseconds.
    Expected {
        horizon: i64,
    },
    /// `clv(p) in next T`, `T` in milliseconds.
    Clv {
        prop: Option<u32>,
        horizon: i64,
    },
    /// `rfm(p)`, from the population's quintiles in [`ComputedNode::table`].
    Rfm(Option<u32>),
}

impl PlannedReducer {
    /// The value of a customer without a matching event: 0 for `count`, `sum` and `distinct`,
    /// none for the others.
    pub fn value_for_none(self) -> Option<crate::model::Value> {
        use crate::model::Value;
        match self {
            PlannedReducer::Count | PlannedReducer::Distinct(_) => Some(Value::Int(0)),
            PlannedReducer::Aggregate {
                func: AggregateFn::Sum,
                ..
            } => Some(Value::Float(0.0)),
            _ => None,
        }
    }
}

/// `bucket(NAME) TEST`: the buckets the test accepts, decided once when planning, so a
/// customer's check is one hash of `NAME:ID` and one bit. Nothing here moves with *now* or with
/// events; it moves only when the customer's external id does (an identity merge keeps the id
/// the customer was merged into, as the experiment report does).
#[derive(Debug, Clone)]
pub(crate) struct BucketNode {
    /// The split's name, as written.
    pub name: String,
    /// Bit `b` set: bucket `b` passes the test.
    pub accepted: u128,
}

impl BucketNode {
    /// The node of `bucket(name) test`; the test's values are whole numbers (the parser sees to
    /// it) and are compared with each bucket as numbers, so a value outside 0..=99 simply
    /// accepts all buckets or none on its side.
    pub fn new(name: &str, test: &Test) -> BucketNode {
        let int = |l: &Literal| match &l.kind {
            LiteralKind::Number(Number::Int { value, .. }) => Some(*value),
            _ => None,
        };
        let passes = |b: i64| match test {
            Test::Compare { op, value } => int(value).is_some_and(|v| match op {
                CmpOp::Eq => b == v,
                CmpOp::Ne => b != v,
                CmpOp::Lt => b < v,
                CmpOp::Le => b <= v,
                CmpOp::Gt => b > v,
                CmpOp::Ge => b >= v,
            }),
            Test::In { negated, values } => values.iter().any(|l| int(l) == Some(b)) != *negated,
            Test::Between { low, high } => {
                int(low).is_some_and(|l| l <= b) && int(high).is_some_and(|h| b <= h)
            }
            Test::Contains(_) | Test::IsSet { .. } => false,
        };
        let accepted = (0..BUCKETS)
            .filter(|&b| passes(i64::from(b)))
            .fold(0u128, |m, b| m | 1 << b);
        BucketNode {
            name: name.to_owned(),
            accepted,
        }
    }

    /// Whether bucket `b` passes.
    pub fn accepts(&self, b: u8) -> bool {
        b < BUCKETS && self.accepted >> b & 1 == 1
    }

    /// The accepted buckets, lowest first.
    pub fn buckets(&self) -> impl Iterator<Item = u8> + '_ {
        (0..BUCKETS).filter(|&b| self.accepts(b))
    }
}

impl FirstLastNode {
    /// The same condition over every instant up to *now*: the events among which the first
    /// (last) is chosen.
    pub fn all_events(&self) -> EventNode {
        EventNode {
            from: Timestamp::MIN,
            to: self.now,
            ..self.inside.clone()
        }
    }
}

impl EventNode {
    pub fn window_is_empty(&self) -> bool {
        self.from > self.to
    }
}

/// A predicate over one event's properties.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `prop` is `None` when no event ever had the property.
    Cond {
        prop: Option<u32>,
        test: ValueTest,
    },
}

/// How many matching events must there be, or what must their aggregate be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Frequency {
    /// `count OP n`; plain presence is `count >= 1`.
    Count { op: CmpOp, n: u64 },
    /// `FUNC(prop) OP value`; `prop` is `None` when never seen (no event has a number for it).
    Aggregate {
        func: AggregateFn,
        prop: Option<u32>,
        op: CmpOp,
        value: f64,
    },
    /// `distinct(prop) OP n`: how many different values of `prop` (see
    /// [`crate::query::customer::DistinctValue`]) the matching events hold; `prop` is `None`
    /// when no event ever had the property (every customer has 0).
    Distinct {
        prop: Option<u32>,
        op: CmpOp,
        n: u64,
    },
}

impl Frequency {
    /// Whether a customer with no matching event satisfies it (a count or a sum of 0).
    pub fn holds_for_none(&self) -> bool {
        match *self {
            Frequency::Count { op, n } => compare_u64(0, op, n),
            Frequency::Aggregate {
                func: AggregateFn::Sum,
                op,
                value,
                ..
            } => compare_f64(0.0, op, value),
            Frequency::Aggregate { .. } => false,
            Frequency::Distinct { op, n, .. } => compare_u64(0, op, n),
        }
    }

    /// Whether every customer with at least one matching event satisfies it, whatever the count
    /// (`count >= 1`, `count > 0`, `count != 0`): then presence answers it.
    pub fn holds_for_any_presence(&self) -> bool {
        match *self {
            Frequency::Count { op, n } => match op {
                CmpOp::Ge => n <= 1,
                CmpOp::Gt | CmpOp::Ne => n == 0,
                _ => false,
            },
            Frequency::Aggregate { .. } | Frequency::Distinct { .. } => false,
        }
    }

    /// For `count >= n` (also `> n-1`): the `n` such that any customer with at least `n`
    /// matching events satisfies it, so that `n` distinct days prove it.
    pub fn at_least(&self) -> Option<u64> {
        match *self {
            Frequency::Count { op: CmpOp::Ge, n } => Some(n),
            Frequency::Count { op: CmpOp::Gt, n } => n.checked_add(1),
            _ => None,
        }
    }
}

/// What a trait condition or a property condition asks of one value.
#[derive(Debug, Clone)]
pub(crate) enum ValueTest {
    Compare { op: CmpOp, lit: Lit },
    In { negated: bool, lits: Vec<Lit> },
    Between { low: Lit, high: Lit },
    Contains(Lit),
    IsSet { negated: bool },
}

/// A literal of the rule in every form a stored value may be compared with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lit {
    /// The text a string value must equal: a string as written, a number's text as written,
    /// a date as `YYYY-MM-DD`. `None` for booleans and date-times.
    pub text: Option<String>,
    /// The exact integer, for integer literals (and decimals with no fraction).
    pub int: Option<i64>,
    /// The numeric value, for numbers.
    pub num: Option<f64>,
    pub boolean: Option<bool>,
    /// The instant, for dates (midnight UTC), date-times, `N unit ago`, and strings that are
    /// RFC 3339 date-times (as ingest stores such strings as date-times).
    pub time: Option<Timestamp>,
    /// The literal is a string (quoted or a bare word): never a number.
    pub is_str: bool,
}

impl Lit {
    pub(crate) fn resolve(lit: &Literal, now: Timestamp) -> Lit {
        let mut out = Lit {
            text: None,
            int: None,
            num: None,
            boolean: None,
            time: None,
            is_str: false,
        };
        match &lit.kind {
            LiteralKind::Str { text, .. } => {
                out.time = crate::model::time::parse_rfc3339(text);
                out.text = Some(text.clone());
                out.is_str = true;
            }
            LiteralKind::Number(n) => {
                out.text = Some(n.text().to_owned());
                out.num = Some(n.as_f64());
                out.int = match n {
                    Number::Int { value, .. } => Some(*value),
                    Number::Decimal { .. } => whole(n.as_f64()),
                };
            }
            LiteralKind::Bool(b) => out.boolean = Some(*b),
            LiteralKind::Date(d) => {
                out.text = Some(d.format("%Y-%m-%d").to_string());
                out.time = Some(midnight(*d));
            }
            LiteralKind::DateTime(t) => out.time = Some(*t),
            LiteralKind::Ago(d) => out.time = Some(now.saturating_sub(d.millis().unwrap_or(0))),
        }
        out
    }
}

/// The integer a float holds exactly, if any.
fn whole(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn midnight(d: NaiveDate) -> Timestamp {
    d.and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_millis())
}

/// `a OP b` for counts.
pub(crate) fn compare_u64(a: u64, op: CmpOp, b: u64) -> bool {
    op_holds(a.cmp(&b), op)
}

/// `a OP b` for numbers; false whenever either side is NaN.
pub(crate) fn compare_f64(a: f64, op: CmpOp, b: f64) -> bool {
    a.partial_cmp(&b).is_some_and(|o| op_holds(o, op))
}

/// Whether an ordering satisfies the operator.
pub(crate) fn op_holds(o: std::cmp::Ordering, op: CmpOp) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => o == Equal,
        CmpOp::Ne => o != Equal,
        CmpOp::Lt => o == Less,
        CmpOp::Le => o != Greater,
        CmpOp::Gt => o == Greater,
        CmpOp::Ge => o != Less,
    }
}

/// The plan of one rule at one *now*.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub root: Node,
    pub now: Timestamp,
    /// The earliest instant any event leaf looks at: residual checks read events from here on.
    pub events_from: Option<Timestamp>,
}

/// The rules of saved audiences by name, for `in audience`.
pub(crate) trait SavedRules: Sync {
    fn saved_rule(&self, name: &str) -> Option<&Rule>;
    /// The members of a loaded list saved under `name` (`None`: no list by that name).
    fn saved_list(&self, _name: &str) -> Option<Arc<RoaringBitmap>> {
        None
    }
    /// Every saved audience's name, for suggestions.
    fn saved_names(&self) -> Vec<String>;
    /// The expression of the computed trait `name`, if one is defined.
    fn computed_trait(&self, _name: &str) -> Option<&Computed> {
        None
    }
    /// The purchase model kept for the computed trait `name`, if it keeps one, and the cache
    /// of its customers' histories.
    fn computed_model(
        &self,
        _name: &str,
    ) -> Option<(Arc<PurchaseModel>, Arc<super::predictive::HistoryCache>)> {
        None
    }
}

/// How deep `in audience` may nest (saving refuses cycles; this guards against what a damaged
/// store could still hold).
const MAX_AUDIENCE_DEPTH: usize = 32;

/// Resolves `rule` against the catalog and the saved audiences at `now`. Fails only on what
/// cannot be evaluated: an `in audience` naming no saved audience, a `NAME between A and B`
/// that the store gives two readings (see [`reading`]).
pub(crate) fn plan(
    rule: &Rule,
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn SavedRules,
    now: Timestamp,
) -> Result<Plan> {
    let mut planner = Planner {
        catalog,
        indexes,
        saved,
        inside: Vec::new(),
        now,
        events_from: None,
    };
    let root = planner.expr(&rule.expr)?;
    Ok(Plan {
        root,
        now,
        events_from: planner.events_from,
    })
}

struct Planner<'a> {
    catalog: &'a Catalog,
    /// Read only to choose the reading of `NAME between A and B`.
    indexes: &'a Indexes,
    saved: &'a dyn SavedRules,
    /// The saved audiences being planned inline, outermost first.
    inside: Vec<String>,
    now: Timestamp,
    events_from: Option<Timestamp>,
}

impl Planner<'_> {
    fn expr(&mut self, e: &Expr) -> Result<Node> {
        let mut reading = None;
        let kind = match &e.kind {
            ExprKind::And(items) => NodeKind::And(self.exprs(items)?),
            ExprKind::Or(items) => NodeKind::Or(self.exprs(items)?),
            ExprKind::Not(inner) => NodeKind::Not(Box::new(self.expr(inner)?)),
            ExprKind::Everyone => NodeKind::Everyone,
            ExprKind::Trait(c) | ExprKind::EventOrTrait(c)
                if self.saved.computed_trait(&c.path.text).is_some() =>
            {
                self.computed(c, e.span)
            }
            ExprKind::Trait(c) => NodeKind::Trait {
                trait_id: self.catalog.trait_id(&c.path.text),
                test: self.test(&c.test),
            },
            ExprKind::EventOrTrait(c) => {
                let r = reading::reading(c, self.catalog, self.indexes)?;
                reading = Some(r);
                match (r, c.as_event()) {
                    (Reading::Event, Some(ec)) => self.event(&ec),
                    _ => NodeKind::Trait {
                        trait_id: self.catalog.trait_id(&c.path.text),
                        test: self.test(&c.test),
                    },
                }
            }
            ExprKind::InAudience(name) => {
                let name = &name.text;
                if let Some(members) = self.saved.saved_list(name) {
                    return Ok(Node {
                        kind: NodeKind::List {
                            name: name.clone(),
                            members,
                        },
                        span: e.span,
                        reading,
                    });
                }
                let Some(rule) = self.saved.saved_rule(name) else {
                    return Err(Error::Evaluation(unknown_audience(name, self.saved)));
                };
                if self.inside.iter().any(|n| n == name) || self.inside.len() >= MAX_AUDIENCE_DEPTH
                {
                    return Err(Error::Evaluation(format!(
                        "audiences refer to each other in a cycle or too deeply: {} -> {name}",
                        self.inside.join(" -> ")
                    )));
                }
                self.inside.push(name.clone());
                let inner = self.expr(&rule.expr);
                self.inside.pop();
                NodeKind::Audience {
                    name: name.clone(),
                    inner: Box::new(inner?),
                }
            }
            ExprKind::Event(ec) => self.event(ec),
            ExprKind::Sequence(seq) => self.sequence(seq),
            ExprKind::FirstLast(fl) => self.first_last(&fl.event, fl.last),
            ExprKind::Bucket(b) => {
                NodeKind::Bucket(Box::new(BucketNode::new(&b.name.text, &b.test)))
            }
        };
        Ok(Node {
            kind,
            span: e.span,
            reading,
        })
    }

    /// An event condition at this *now*.
    fn event(&mut self, ec: &EventCondition) -> NodeKind {
        let event = self.catalog.event_id(&ec.event.text);
        let mut filters = Vec::new();
        if let Some(sh) = &ec.shorthand {
            filters.push(Filter::Cond {
                prop: self.catalog.prop_id(&sh.property.text),
                test: ValueTest::Compare {
                    op: CmpOp::Eq,
                    lit: Lit::resolve(&sh.value, self.now),
                },
            });
        }
        if let Some(p) = &ec.predicate {
            filters.push(self.predicate(p));
        }
        let filter = match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(Filter::And(filters)),
        };
        let frequency = match ec.frequency.as_ref().map(|f| &f.kind) {
            None => Frequency::Count {
                op: CmpOp::Ge,
                n: 1,
            },
            Some(FrequencyKind::AtLeast(n)) => Frequency::Count {
                op: CmpOp::Ge,
                n: *n,
            },
            Some(FrequencyKind::AtMost(n)) => Frequency::Count {
                op: CmpOp::Le,
                n: *n,
            },
            Some(FrequencyKind::Exactly(n)) => Frequency::Count {
                op: CmpOp::Eq,
                n: *n,
            },
            Some(FrequencyKind::Count { op, count }) => Frequency::Count { op: *op, n: *count },
            Some(FrequencyKind::Aggregate {
                func,
                property,
                op,
                value,
            }) => Frequency::Aggregate {
                func: *func,
                prop: self.catalog.prop_id(&property.text),
                op: *op,
                value: value.as_f64(),
            },
            Some(FrequencyKind::Distinct {
                property,
                op,
                count,
            }) => Frequency::Distinct {
                prop: self.catalog.prop_id(&property.text),
                op: *op,
                n: *count,
            },
        };
        let (from, to) = self.window(ec.window.as_ref().map(|w| &w.kind));
        if from <= to {
            self.events_from = Some(self.events_from.map_or(from, |f| f.min(from)));
        }
        NodeKind::Event(Box::new(EventNode {
            event,
            filter,
            frequency,
            from,
            to,
        }))
    }

    /// A test on the computed trait `c.path` at this *now* (see [`ComputedNode`]).
    fn computed(&mut self, c: &TraitCondition, span: Span) -> NodeKind {
        let def: &Computed = self
            .saved
            .computed_trait(&c.path.text)
            .expect("the caller found the computed trait");
        let NodeKind::Event(events) = self.event(&def.event) else {
            unreachable!("an event condition plans to an event node")
        };
        let prop = |p: &crate::rules::Path| self.catalog.prop_id(&p.text);
        let reducer = match &def.reducer {
            Reducer::Count => PlannedReducer::Count,
            Reducer::Aggregate { func, property } => PlannedReducer::Aggregate {
                func: *func,
                prop: prop(property),
            },
            Reducer::Distinct(p) => PlannedReducer::Distinct(prop(p)),
            Reducer::Top(p) => PlannedReducer::Top(prop(p)),
            Reducer::FirstTime => PlannedReducer::FirstTime,
            Reducer::LastTime => PlannedReducer::LastTime,
            Reducer::PAlive => PlannedReducer::PAlive,
            Reducer::Expected { horizon } => PlannedReducer::Expected {
                horizon: horizon.millis().unwrap_or(i64::MAX),
            },
            Reducer::Clv { property, horizon } => PlannedReducer::Clv {
                prop: prop(property),
                horizon: horizon.millis().unwrap_or(i64::MAX),
            },
            Reducer::Rfm(p) => PlannedReducer::Rfm(prop(p)),
        };
        let (model, histories) = match def.reducer.is_model() {
            true => self.saved.computed_model(&c.path.text).unzip(),
            false => (None, None),
        };
        let table = def
            .reducer
            .is_predictive()
            .then(|| Arc::new(super::predictive::TableSlot::default()));
        let expanded = super::computed::expand(reducer, &events, &c.test, self.now).map(|kind| {
            let mut n = Node {
                kind,
                span,
                reading: None,
            };
            super::computed::set_span(&mut n, span);
            Box::new(n)
        });
        NodeKind::Computed(Box::new(ComputedNode {
            name: c.path.text.clone(),
            expression: def.to_string(),
            reducer,
            events: *events,
            test: self.test(&c.test),
            expanded,
            model,
            table,
            histories,
        }))
    }

    /// `first`/`last` at this *now* (see [`FirstLastNode`]).
    fn first_last(&mut self, ec: &EventCondition, last: bool) -> NodeKind {
        let NodeKind::Event(inside) = self.event(ec) else {
            unreachable!("an event condition plans to an event node")
        };
        let (from, to) = match (last, inside.window_is_empty()) {
            // An empty window holds no first or last event: nothing is left to rule out.
            (_, true) => (1, 0),
            (false, false) => (Timestamp::MIN, inside.from.saturating_sub(1)),
            (true, false) => (inside.to.saturating_add(1), self.now),
        };
        // `from == MIN` means no range before the window: `inside.from` was already the start.
        let empty = (!last && inside.from == Timestamp::MIN) || from > to;
        let outside = EventNode {
            from: if empty { 1 } else { from },
            to: if empty { 0 } else { to },
            ..(*inside).clone()
        };
        if !outside.window_is_empty() {
            self.events_from = Some(
                self.events_from
                    .map_or(outside.from, |f| f.min(outside.from)),
            );
        }
        NodeKind::FirstLast(Box::new(FirstLastNode {
            last,
            inside: *inside,
            outside,
            now: self.now,
        }))
    }

    /// A sequence at this *now* (see [`SeqNode`]).
    fn sequence(&mut self, seq: &Sequence) -> NodeKind {
        let within = seq.within.millis().unwrap_or(Timestamp::MAX);
        let same = seq.same.as_ref().map(|p| self.catalog.prop_id(&p.text));
        let (from, mut to) = self.window(seq.window.as_ref().map(|w| &w.kind));
        if seq.negated {
            to = to.min(self.now.saturating_sub(within));
        }
        // The steps' own (absent) windows must not widen what the residual checks read.
        let events_from = self.events_from;
        let mut steps = Vec::with_capacity(seq.steps.len());
        for (i, step) in seq.steps.iter().enumerate() {
            let NodeKind::Event(mut node) = self.event(step) else {
                unreachable!("an event condition plans to an event node")
            };
            if i == 0 {
                (node.from, node.to) = (from, to);
                // When every stored event of the first step's kind carries the property (the
                // catalog's counts say so), the test is always true and is left out, so that the
                // bitmaps still bound the first step exactly.
                let always_set = |p: Option<u32>| {
                    let info = node.event.and_then(|e| self.catalog.event_info(e));
                    info.zip(p)
                        .and_then(|(info, p)| Some(info.props.get(&p)?.count == info.count))
                        .unwrap_or(false)
                };
                if let Some(prop) = same.filter(|p| !always_set(*p)) {
                    let set = Filter::Cond {
                        prop,
                        test: ValueTest::IsSet { negated: false },
                    };
                    node.filter = Some(match node.filter.take() {
                        None => set,
                        Some(Filter::And(mut items)) => {
                            items.push(set);
                            Filter::And(items)
                        }
                        Some(f) => Filter::And(vec![f, set]),
                    });
                }
            } else {
                node.from = from.saturating_add(1);
                node.to = to.saturating_add(within).min(self.now);
            }
            steps.push(*node);
        }
        self.events_from = events_from;
        if from <= to {
            self.events_from = Some(self.events_from.map_or(from, |f| f.min(from)));
        }
        NodeKind::Sequence(Box::new(SeqNode {
            steps,
            negated: seq.negated,
            same,
            within,
        }))
    }

    fn exprs(&mut self, items: &[Expr]) -> Result<Vec<Node>> {
        items.iter().map(|e| self.expr(e)).collect()
    }

    fn predicate(&self, p: &Predicate) -> Filter {
        match &p.kind {
            PredicateKind::And(items) => {
                Filter::And(items.iter().map(|p| self.predicate(p)).collect())
            }
            PredicateKind::Or(items) => {
                Filter::Or(items.iter().map(|p| self.predicate(p)).collect())
            }
            PredicateKind::Not(inner) => Filter::Not(Box::new(self.predicate(inner))),
            PredicateKind::Cond(c) => Filter::Cond {
                prop: self.catalog.prop_id(&c.path.text),
                test: self.test(&c.test),
            },
        }
    }

    fn test(&self, t: &Test) -> ValueTest {
        let lit = |l: &Literal| Lit::resolve(l, self.now);
        match t {
            Test::Compare { op, value } => ValueTest::Compare {
                op: *op,
                lit: lit(value),
            },
            Test::In { negated, values } => ValueTest::In {
                negated: *negated,
                lits: values.iter().map(lit).collect(),
            },
            Test::Between { low, high } => ValueTest::Between {
                low: lit(low),
                high: lit(high),
            },
            Test::Contains(v) => ValueTest::Contains(lit(v)),
            Test::IsSet { negated } => ValueTest::IsSet { negated: *negated },
        }
    }

    /// The inclusive range of timestamps a window admits, capped at *now*.
    fn window(&self, w: Option<&WindowKind>) -> (Timestamp, Timestamp) {
        let now = self.now;
        match w {
            None | Some(WindowKind::Ever) => (Timestamp::MIN, now),
            Some(WindowKind::Last(d)) => {
                let len = d.millis().unwrap_or(Timestamp::MAX);
                (now.saturating_sub(len).saturating_add(1), now)
            }
            Some(WindowKind::Since(t)) => (self.instant(t), now),
            Some(WindowKind::Before(t)) => {
                (Timestamp::MIN, self.instant(t).saturating_sub(1).min(now))
            }
            Some(WindowKind::Between(a, b)) => {
                let end = match b.kind {
                    TimeKind::Date(d) => midnight(d).saturating_add(DAY_MS - 1),
                    _ => self.instant(b),
                };
                (self.instant(a), end.min(now))
            }
        }
    }

    /// A window's time point: a date is its midnight UTC.
    fn instant(&self, t: &TimePoint) -> Timestamp {
        match t.kind {
            TimeKind::Date(d) => midnight(d),
            TimeKind::DateTime(ts) => ts,
            TimeKind::Ago(d) => self
                .now
                .saturating_sub(d.millis().unwrap_or(Timestamp::MAX)),
        }
    }
}

/// The error for an `in audience` naming no saved audience, with the nearest saved name.
fn unknown_audience(name: &str, saved: &dyn SavedRules) -> String {
    let names = saved.saved_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let hint = match super::check::nearest(name, &names) {
        Some(near) => format!("; did you mean '{near}'?"),
        None => String::new(),
    };
    format!("unknown audience '{name}' (no audience has been saved under that name){hint}")
}

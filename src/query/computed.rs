//! Computed traits in plans: a test on a computed trait rewritten, where the rule language has
//! an equivalent, as event conditions at the plan's *now*, which the indexes bound like any
//! other (rollups for counts and aggregates, day bitmaps and event columns for presence), which
//! saved audiences keep exact as time passes, and which translate to SQL.
//!
//! The rewrite must mean exactly what deriving the value and testing it means (`customer.rs`:
//! [`super::customer::computed_value`] then [`super::customer::passes`]); a test it cannot
//! rewrite exactly is left to that derivation (`None`). It owns no data and reads nothing.

use super::plan::{EventNode, Frequency, Lit, Node, NodeKind, PlannedReducer};
use crate::model::time::Timestamp;
use crate::rules::{CmpOp, Literal, LiteralKind, Number, Span, Test};

/// The event conditions equivalent to `test` on a computed trait whose matching events (in its
/// window) are `events`, or `None` when there is no exact equivalent. Its nodes carry no span
/// ([`set_span`] gives them the condition's).
pub(crate) fn expand(
    reducer: PlannedReducer,
    events: &EventNode,
    test: &Test,
    now: Timestamp,
) -> Option<NodeKind> {
    let x = Expander { reducer, events };
    match test {
        Test::Compare { op, value } => x.compare(*op, value, now),
        Test::Between { low, high } => Some(and(vec![
            x.compare(CmpOp::Ge, low, now)?,
            x.compare(CmpOp::Le, high, now)?,
        ])),
        Test::In { negated, values } => {
            let any = or(values
                .iter()
                .map(|v| x.compare(CmpOp::Eq, v, now))
                .collect::<Option<_>>()?);
            if !negated {
                return Some(any);
            }
            // `not in` holds for a set value equal to none of them.
            if x.always_set() {
                return Some(not(any));
            }
            Some(and(vec![x.set()?, not(any)]))
        }
        Test::IsSet { negated } => {
            let set = x.set()?;
            Some(if *negated { not(set) } else { set })
        }
        Test::Contains(_) => None,
    }
}

struct Expander<'a> {
    reducer: PlannedReducer,
    events: &'a EventNode,
}

/// What a whole-number value (a count) compared with a number comes to.
enum Whole {
    All,
    Nobody,
    Cmp(CmpOp, u64),
}

impl Expander<'_> {
    /// Whether every customer has a value (0 without matching events).
    fn always_set(&self) -> bool {
        self.reducer.value_for_none().is_some()
    }

    /// The customers with a value: everyone for the reducers whose value is always set, who
    /// has a matching event for `first/last time`; `None` for the others (`avg` needs a number).
    fn set(&self) -> Option<NodeKind> {
        match self.reducer {
            _ if self.always_set() => Some(NodeKind::Everyone),
            PlannedReducer::FirstTime | PlannedReducer::LastTime => Some(self.range(None, None)),
            _ => None,
        }
    }

    /// A literal of another kind than the value (text or an instant against a number, a number
    /// against an instant): never equal, never ordered, so only `!=` holds, for a set value.
    fn incomparable(&self, op: CmpOp) -> Option<NodeKind> {
        match op {
            CmpOp::Ne => self.set(),
            _ => Some(nobody()),
        }
    }

    fn compare(&self, op: CmpOp, value: &Literal, now: Timestamp) -> Option<NodeKind> {
        let numeric = matches!(
            self.reducer,
            PlannedReducer::Count | PlannedReducer::Distinct(_) | PlannedReducer::Aggregate { .. }
        );
        if numeric && !matches!(value.kind, LiteralKind::Number(_)) {
            return self.incomparable(op);
        }
        match self.reducer {
            PlannedReducer::Count | PlannedReducer::Distinct(_) => {
                let LiteralKind::Number(n) = &value.kind else {
                    return None;
                };
                Some(match whole(op, n) {
                    Whole::All => NodeKind::Everyone,
                    Whole::Nobody => nobody(),
                    Whole::Cmp(op, n) => self.with(match self.reducer {
                        PlannedReducer::Distinct(prop) => Frequency::Distinct { prop, op, n },
                        _ => Frequency::Count { op, n },
                    }),
                })
            }
            PlannedReducer::Aggregate { func, prop } => {
                let LiteralKind::Number(n) = &value.kind else {
                    return None;
                };
                Some(self.with(Frequency::Aggregate {
                    func,
                    prop,
                    op,
                    value: n.as_f64(),
                }))
            }
            PlannedReducer::FirstTime | PlannedReducer::LastTime => {
                match Lit::resolve(value, now).time {
                    Some(t) => Some(self.time(op, t)),
                    None => self.incomparable(op),
                }
            }
            PlannedReducer::Top(_)
            | PlannedReducer::PAlive
            | PlannedReducer::Expected { .. }
            | PlannedReducer::Clv { .. }
            | PlannedReducer::Rfm(_) => None,
        }
    }

    /// `first time OP t` / `last time OP t`: the first (last) matching event in the window
    /// against `t`, as presence of matching events in ranges of the window.
    fn time(&self, op: CmpOp, t: Timestamp) -> NodeKind {
        let any = || self.range(None, None);
        let last = self.reducer == PlannedReducer::LastTime;
        let below = t.checked_sub(1);
        let above = t.checked_add(1);
        // Some matching event at or after (before) the bound; `None` bound: nothing there.
        let from = |b: Option<Timestamp>| match b {
            Some(b) => self.range(Some(b), None),
            None => nobody(),
        };
        let until = |b: Option<Timestamp>| match b {
            Some(b) => self.range(None, Some(b)),
            None => nobody(),
        };
        let equal = || {
            let at = self.range(Some(t), Some(t));
            if last {
                and(vec![at, not(from(above))])
            } else {
                and(vec![at, not(until(below))])
            }
        };
        match (last, op) {
            (_, CmpOp::Eq) => equal(),
            (_, CmpOp::Ne) => and(vec![any(), not(equal())]),
            (true, CmpOp::Lt) => and(vec![any(), not(from(Some(t)))]),
            (true, CmpOp::Le) => and(vec![any(), not(from(above))]),
            (true, CmpOp::Gt) => from(above),
            (true, CmpOp::Ge) => from(Some(t)),
            (false, CmpOp::Lt) => until(below),
            (false, CmpOp::Le) => until(Some(t)),
            (false, CmpOp::Gt) => and(vec![any(), not(until(Some(t)))]),
            (false, CmpOp::Ge) => and(vec![any(), not(until(below))]),
        }
    }

    /// Presence of a matching event in the window cut to `[from, to]` (`None`: uncut).
    fn range(&self, from: Option<Timestamp>, to: Option<Timestamp>) -> NodeKind {
        let mut e = self.events.clone();
        e.frequency = Frequency::Count {
            op: CmpOp::Ge,
            n: 1,
        };
        if let Some(f) = from {
            e.from = e.from.max(f);
        }
        if let Some(t) = to {
            e.to = e.to.min(t);
        }
        NodeKind::Event(Box::new(e))
    }

    fn with(&self, frequency: Frequency) -> NodeKind {
        NodeKind::Event(Box::new(EventNode {
            frequency,
            ..self.events.clone()
        }))
    }
}

/// `count OP n` with `n` any number, as a comparison of whole numbers (or all, or nobody),
/// with the rule language's comparison of an integer with a number (`customer::order`).
fn whole(op: CmpOp, n: &Number) -> Whole {
    let f = n.as_f64();
    let j = match n {
        Number::Int { value, .. } => *value,
        Number::Decimal { .. } if f.fract() == 0.0 => f as i64,
        // A fraction: no count equals it, and orderings round to the nearest whole number on
        // their side.
        Number::Decimal { .. } => {
            return match op {
                CmpOp::Eq => Whole::Nobody,
                CmpOp::Ne => Whole::All,
                CmpOp::Lt | CmpOp::Le => whole_int(CmpOp::Le, f.floor() as i64),
                CmpOp::Gt | CmpOp::Ge => whole_int(CmpOp::Ge, f.ceil() as i64),
            }
        }
    };
    whole_int(op, j)
}

fn whole_int(op: CmpOp, j: i64) -> Whole {
    let Ok(n) = u64::try_from(j) else {
        // Below zero: every count is greater.
        return match op {
            CmpOp::Eq | CmpOp::Lt | CmpOp::Le => Whole::Nobody,
            CmpOp::Ne | CmpOp::Gt | CmpOp::Ge => Whole::All,
        };
    };
    match (op, n) {
        (CmpOp::Lt, 0) => Whole::Nobody,
        (CmpOp::Ge, 0) => Whole::All,
        _ => Whole::Cmp(op, n),
    }
}

fn node(kind: NodeKind) -> Node {
    Node {
        kind,
        span: Span::default(),
        reading: None,
    }
}

fn and(items: Vec<NodeKind>) -> NodeKind {
    NodeKind::And(items.into_iter().map(node).collect())
}

fn or(items: Vec<NodeKind>) -> NodeKind {
    match items.len() {
        1 => items.into_iter().next().expect("one item"),
        _ => NodeKind::Or(items.into_iter().map(node).collect()),
    }
}

fn not(inner: NodeKind) -> NodeKind {
    NodeKind::Not(Box::new(node(inner)))
}

fn nobody() -> NodeKind {
    not(NodeKind::Everyone)
}

/// Gives `n` and every node below it `span`: the nodes of a rewrite stand for the condition.
pub(crate) fn set_span(n: &mut Node, span: Span) {
    n.span = span;
    match &mut n.kind {
        NodeKind::And(items) | NodeKind::Or(items) => {
            items.iter_mut().for_each(|i| set_span(i, span));
        }
        NodeKind::Not(inner) => set_span(inner, span),
        _ => {}
    }
}

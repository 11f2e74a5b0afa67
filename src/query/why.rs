//! `why`: does one customer satisfy a rule, clause by clause, with the trait values and events
//! that decided each clause, and when the answer would next change by time alone.
//!
//! It evaluates the plan on the customer's own stored data, without bitmaps, with the same
//! exact check (`exec::holds`) that the engine runs on the customers its bitmaps leave open. The next change is found by trying the instants
//! at which some event or date-time trait of the customer crosses a window or `ago` edge of the
//! rule, in order, and re-evaluating there.

use std::fmt;

use crate::error::Result;
use crate::index::Indexes;
use crate::model::time::{format_rfc3339, Timestamp};
use crate::model::Value;
use crate::rules::Rule;
use crate::storage::view::ValueView;
use crate::storage::{Catalog, Store};

use super::customer::{self, Tally};
use super::exec::{self, CustomerData};
use super::footprint::{self, Footprint};
use super::plan::{self, EventNode, FirstLastNode, Frequency, Node, NodeKind, SavedRules, SeqNode};

/// At most this many events are shown as the evidence of one clause (the latest ones).
pub const EVIDENCE_EVENTS: usize = 3;

/// At most this many instants are tried when looking for the next change.
const MAX_CANDIDATES: usize = 20_000;

/// The answer to "why is (or isn't) this customer in the audience?".
#[derive(Debug, Clone)]
pub struct Why {
    pub customer: String,
    pub rule: String,
    pub now: Timestamp,
    /// The whole rule's answer and, clause by clause, what decided it.
    pub root: WhyNode,
    /// The next instant after `now` at which the answer flips with no new data, if any.
    pub next_change: Option<Timestamp>,
}

/// One clause's answer for the customer.
#[derive(Debug, Clone)]
pub struct WhyNode {
    /// `and`, `or`, `not`, or the condition's text as written.
    pub label: String,
    pub holds: bool,
    /// What the customer's data says about the clause, in words.
    pub reason: String,
    /// The latest events that the clause counted (at most [`EVIDENCE_EVENTS`]).
    pub events: Vec<WhyEvent>,
    pub children: Vec<WhyNode>,
}

/// An event shown as evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct WhyEvent {
    pub name: String,
    pub timestamp: Timestamp,
    pub properties: Vec<(String, Value)>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn why(
    store: &Store,
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn SavedRules,
    rule: &Rule,
    text: &str,
    customer: &str,
    cust: u32,
    now: Timestamp,
) -> Result<Why> {
    // Every event of the customer: the instants tried below look at windows other than now's.
    let mut data = CustomerData::new(store, Some(Timestamp::MIN));
    data.load(cust);
    let explainer = Explainer { catalog, text };
    let sources = exec::Sources {
        indexes,
        catalog,
        store,
        ids: None,
    };
    let planned = plan::plan(rule, catalog, indexes, saved, now)?;
    super::predictive::prepare(&planned.root, &sources)?;
    let root = explainer.node(&planned.root, &mut data)?;
    let mut next_change = None;
    // A predictive trait's value moves with every day and every refit: no instant is searched.
    let instants = if super::predictive::reads_predictive(&planned.root) {
        Vec::new()
    } else {
        candidate_instants(rule, catalog, saved, &mut data, now)?
    };
    for t in instants {
        let at = plan::plan(rule, catalog, indexes, saved, t)?;
        super::predictive::prepare(&at.root, &sources)?;
        if exec::holds(&at.root, None, &mut data)? != root.holds {
            next_change = Some(t);
            break;
        }
    }
    Ok(Why {
        customer: customer.to_owned(),
        rule: text.to_owned(),
        now,
        root,
        next_change,
    })
}

struct Explainer<'a> {
    catalog: &'a Catalog,
    text: &'a str,
}

impl Explainer<'_> {
    /// The answer with its reasons.
    fn node(&self, n: &Node, data: &mut CustomerData<'_>) -> Result<WhyNode> {
        let children = match &n.kind {
            NodeKind::And(items) | NodeKind::Or(items) => items
                .iter()
                .map(|i| self.node(i, data))
                .collect::<Result<_>>()?,
            NodeKind::Not(inner) => vec![self.node(inner, data)?],
            _ => Vec::new(),
        };
        let label = || n.label(self.text);
        let mut events = Vec::new();
        let (label, holds, reason) = match &n.kind {
            NodeKind::And(_) => {
                let failed = children.iter().filter(|c| !c.holds).count();
                let reason = match failed {
                    0 => "every clause holds".to_owned(),
                    n => format!("{n} of {} clauses do not hold", children.len()),
                };
                ("and".to_owned(), failed == 0, reason)
            }
            NodeKind::Or(_) => {
                let held = children.iter().filter(|c| c.holds).count();
                let reason = match held {
                    0 => "no clause holds".to_owned(),
                    n => format!("{n} of {} clauses hold", children.len()),
                };
                ("or".to_owned(), held > 0, reason)
            }
            NodeKind::Not(_) => {
                let inner = children.iter().any(|c| c.holds);
                let reason = if inner {
                    "the clause inside holds"
                } else {
                    "the clause inside does not hold"
                };
                ("not".to_owned(), !inner, reason.to_owned())
            }
            NodeKind::Everyone => (label(), true, "every known customer".to_owned()),
            NodeKind::Trait { trait_id, test } => {
                let label = label();
                let name = label.split_whitespace().next().unwrap_or("");
                let stored = customer::field(data.profile()?, *trait_id);
                let reason = match stored {
                    Some(v) => format!("{name} is {v}"),
                    None => format!("{name} is not set"),
                };
                let holds = customer::passes(stored.map(ValueView::of), test);
                (label, holds, reason)
            }
            NodeKind::Audience { name, inner } => {
                let holds = exec::holds(inner, None, data)?;
                let reason = if holds {
                    format!("a member of the saved audience {name}")
                } else {
                    format!("not a member of the saved audience {name}")
                };
                (label(), holds, reason)
            }
            NodeKind::List { name, members } => {
                let holds = members.contains(data.customer());
                let reason = if holds {
                    format!("named by the loaded list {name}")
                } else {
                    format!("not named by the loaded list {name}")
                };
                (label(), holds, reason)
            }
            NodeKind::Sequence(s) => {
                let (holds, reason, shown) = self.sequence(s, data)?;
                events = shown;
                (label(), holds, reason)
            }
            NodeKind::Bucket(b) => {
                let id = data.external_id()?;
                let x = crate::model::bucket::bucket(&b.name, &id);
                let reason = format!(
                    "bucket({}) is {x} (SHA-256 of {:?})",
                    b.name,
                    format!("{}:{id}", b.name)
                );
                (label(), b.accepts(x), reason)
            }
            NodeKind::FirstLast(fl) => {
                let (holds, reason, shown) = self.first_last(fl, data)?;
                events = shown;
                (label(), holds, reason)
            }
            NodeKind::Computed(c) => {
                let cust = data.cust;
                let (bodies, blocks) = data.events()?;
                let value = customer::computed_value(c, cust, bodies, blocks)?;
                let t = data.tally(&c.events)?;
                events = self.evidence(&c.events, data)?;
                let shown = match &value {
                    Some(crate::model::Value::Float(x)) => ((x * 1e6).round() / 1e6).to_string(),
                    Some(v) => v.to_string(),
                    None => "not set".to_owned(),
                };
                let matching = match t.count {
                    0 => "no matching event".to_owned(),
                    1 => "1 matching event".to_owned(),
                    n => format!("{n} matching events"),
                };
                let reason = format!(
                    "{} is {shown} (computed: {}, from {matching} up to {})",
                    c.name,
                    c.expression,
                    format_rfc3339(c.events.to)
                );
                let holds = customer::passes(value.as_ref().map(ValueView::of), &c.test);
                (label(), holds, reason)
            }
            NodeKind::Event(e) => {
                let t = data.tally(e)?;
                events = self.evidence(e, data)?;
                let mut reason = self.event_reason(e, &t);
                if matches!(e.frequency, Frequency::Distinct { .. }) {
                    reason.push_str(&distinct_values(e, data)?);
                }
                (label(), t.satisfies(&e.frequency), reason)
            }
        };
        Ok(WhyNode {
            label,
            holds,
            reason,
            events,
            children,
        })
    }

    fn event_reason(&self, e: &EventNode, t: &Tally) -> String {
        let matching = match t.count {
            0 => "no matching event".to_owned(),
            1 => "1 matching event".to_owned(),
            n => format!("{n} matching events"),
        };
        let window = if e.window_is_empty() {
            " (the window is empty)".to_owned()
        } else if e.from == Timestamp::MIN {
            format!(" up to {}", format_rfc3339(e.to))
        } else {
            format!(
                " from {} to {}",
                format_rfc3339(e.from),
                format_rfc3339(e.to)
            )
        };
        match e.frequency {
            Frequency::Count { op, n } => format!("{matching}{window}; needs count {op} {n}"),
            Frequency::Aggregate {
                func, op, value, ..
            } => {
                let got = t.aggregate(func);
                // Rounded for reading: sums of prices print as 374.01, not 374.00999999999993.
                let got = got.map_or("undefined (no numeric values)".to_owned(), |x| {
                    ((x * 1e6).round() / 1e6).to_string()
                });
                format!(
                    "{matching}{window}, {} with a number; {}(...) = {got}; needs {op} {value}",
                    t.numbers,
                    func.keyword()
                )
            }
            Frequency::Distinct { op, n, .. } => format!(
                "{matching}{window}; {} distinct value{}; needs {op} {n}",
                t.distinct,
                if t.distinct == 1 { "" } else { "s" }
            ),
        }
    }

    /// A sequence's answer, the reason in words, and the events that formed it, or that broke
    /// the latest attempt.
    fn sequence(
        &self,
        s: &SeqNode,
        data: &mut CustomerData<'_>,
    ) -> Result<(bool, String, Vec<WhyEvent>)> {
        let (bodies, blocks) = data.events()?;
        let mut hits = Vec::new();
        customer::sequence_hits(s, bodies, blocks, &mut hits)?;
        let holds = customer::sequence_holds(s, &hits);
        let first = &s.steps[0];
        let range = if first.window_is_empty() {
            " (the window is empty)".to_owned()
        } else if first.from == Timestamp::MIN {
            format!(" up to {}", format_rfc3339(first.to))
        } else {
            format!(
                " from {} to {}",
                format_rfc3339(first.from),
                format_rfc3339(first.to)
            )
        };
        let witness = customer::sequence_witness(s, &hits);
        let (reason, shown) = match witness {
            None => (format!("no first-step event{range}"), Vec::new()),
            Some(w) if !w.formed.is_empty() => {
                let reason = if s.negated {
                    "the first step's event had no second within the wait, which is over"
                } else {
                    "these events form the sequence, in order and within the time"
                };
                (reason.to_owned(), w.formed)
            }
            Some(w) => {
                let reason = if s.negated {
                    "the second step's event came within the wait of every first-step event \
                     (the latest attempt shown)"
                        .to_owned()
                } else {
                    format!(
                        "no first-step event{range} is followed by the later steps in time (the \
                         latest attempt shown: {} of {} steps)",
                        w.broken.len(),
                        s.steps.len()
                    )
                };
                (reason, w.broken)
            }
        };
        let shown = shown
            .into_iter()
            .map(|i| {
                let v = &hits[i].view;
                Ok(WhyEvent {
                    name: self.catalog.event_name(v.event).to_owned(),
                    timestamp: v.ts,
                    properties: v
                        .props()?
                        .into_iter()
                        .map(|(p, v)| (self.catalog.prop_name(p).to_owned(), v))
                        .collect(),
                })
            })
            .collect::<Result<_>>()?;
        Ok((holds, reason, shown))
    }

    /// `first`/`last`: the answer, the reason in words, and the first (last) matching event up
    /// to *now* with its time.
    fn first_last(
        &self,
        fl: &FirstLastNode,
        data: &mut CustomerData<'_>,
    ) -> Result<(bool, String, Vec<WhyEvent>)> {
        let all = fl.all_events();
        let mut chosen = None;
        let (bodies, blocks) = data.events()?;
        customer::for_each_match(&all, bodies, blocks, |ev| {
            if fl.last || chosen.is_none() {
                chosen = Some((ev.ts, ev.event, ev.props()?));
            }
            Ok(())
        })?;
        let which = if fl.last { "last" } else { "first" };
        let window = if fl.inside.window_is_empty() {
            "the window is empty".to_owned()
        } else if fl.inside.from == Timestamp::MIN {
            format!("the window is up to {}", format_rfc3339(fl.inside.to))
        } else {
            format!(
                "the window is {} to {}",
                format_rfc3339(fl.inside.from),
                format_rfc3339(fl.inside.to)
            )
        };
        let Some((ts, event, props)) = chosen else {
            return Ok((
                false,
                format!("no matching event up to now; {window}"),
                Vec::new(),
            ));
        };
        let holds = !fl.inside.window_is_empty() && fl.inside.from <= ts && ts <= fl.inside.to;
        let place = if holds { "inside" } else { "outside" };
        let reason = format!(
            "the {which} matching event is at {}, {place} the window; {window}",
            format_rfc3339(ts)
        );
        let shown = vec![self.why_event(ts, event, props)];
        Ok((holds, reason, shown))
    }

    /// The latest few events the clause counted.
    fn evidence(&self, e: &EventNode, data: &mut CustomerData<'_>) -> Result<Vec<WhyEvent>> {
        let mut latest = std::collections::VecDeque::with_capacity(EVIDENCE_EVENTS + 1);
        let (bodies, blocks) = data.events()?;
        customer::for_each_match(e, bodies, blocks, |ev| {
            latest.push_back((ev.ts, ev.event, ev.props()?));
            if latest.len() > EVIDENCE_EVENTS {
                latest.pop_front();
            }
            Ok(())
        })?;
        Ok(latest
            .into_iter()
            .rev()
            .map(|(ts, event, props)| self.why_event(ts, event, props))
            .collect())
    }

    /// An event as `why` shows it, with its names.
    fn why_event(&self, ts: Timestamp, event: u32, props: Vec<(u32, Value)>) -> WhyEvent {
        WhyEvent {
            name: self.catalog.event_name(event).to_owned(),
            timestamp: ts,
            properties: props
                .into_iter()
                .map(|(p, v)| (self.catalog.prop_name(p).to_owned(), v))
                .collect(),
        }
    }
}

/// The instants after `now`, in order, at which the answer may change by time alone (see
/// [`footprint::for_each_candidate`]), at most [`MAX_CANDIDATES`] of them.
fn candidate_instants(
    rule: &Rule,
    catalog: &Catalog,
    saved: &dyn SavedRules,
    data: &mut CustomerData<'_>,
    now: Timestamp,
) -> Result<Vec<Timestamp>> {
    let fp = Footprint::of(rule, saved);
    let events = footprint::event_ids(&fp, catalog);
    let mut out = Vec::new();
    footprint::for_each_candidate(&fp, &events, data, now, |t| out.push(t))?;
    out.sort_unstable();
    out.dedup();
    out.truncate(MAX_CANDIDATES);
    Ok(out)
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.root.holds {
            "is in"
        } else {
            "is not in"
        };
        writeln!(
            f,
            "customer {:?} {verdict} the audience at {}",
            self.customer,
            format_rfc3339(self.now)
        )?;
        writeln!(f, "rule: {}", self.rule)?;
        write_node(f, &self.root, "", "")?;
        match self.next_change {
            Some(t) => writeln!(
                f,
                "by time alone, the answer becomes {} at {}",
                if self.root.holds { "no" } else { "yes" },
                format_rfc3339(t)
            ),
            None => writeln!(f, "by time alone, the answer does not change"),
        }
    }
}

fn write_node(f: &mut fmt::Formatter<'_>, n: &WhyNode, first: &str, rest: &str) -> fmt::Result {
    let mark = if n.holds { "yes" } else { "no " };
    writeln!(f, "{mark} {first}{}: {}", n.label, n.reason)?;
    let pad = if n.children.is_empty() {
        "   "
    } else {
        "│  "
    };
    for e in &n.events {
        let props: Vec<String> = e
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        writeln!(
            f,
            "    {rest}{pad}{} {} {}",
            format_rfc3339(e.timestamp),
            e.name,
            props.join(" ")
        )?;
    }
    super::explain::write_children(f, &n.children, rest, write_node)
}

/// `: "a", "b"`: the different values a `distinct(prop)` condition counted for the customer,
/// sorted (numbers, then text, booleans, instants); empty when there are none.
fn distinct_values(e: &EventNode, data: &mut CustomerData<'_>) -> Result<String> {
    let (bodies, blocks) = data.events()?;
    let mut seen = customer::Distinct::of(&e.frequency);
    customer::for_each_match(e, bodies, blocks, |ev| seen.add(ev))?;
    let mut values: Vec<_> = seen.seen.into_iter().collect();
    if values.is_empty() {
        return Ok(String::new());
    }
    values.sort();
    let shown: Vec<String> = values.iter().map(|v| v.display()).collect();
    Ok(format!(" (values: {})", shown.join(", ")))
}

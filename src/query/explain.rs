//! `explain`: the plan tree of a rule with, for every node, what the bitmaps bounded it to (the
//! estimate), its exact size, and the time spent on each. Computing the exact size of inner
//! nodes costs extra checks that a plain query skips; explain is for people, not hot paths.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::model::time::{format_rfc3339, Timestamp};
use crate::storage::Store;

use super::exec::{resolve_node, Bounds};
use super::plan::{Node, NodeKind, Plan};

/// One node of an explained plan.
#[derive(Debug, Clone)]
pub struct ExplainNode {
    /// `and`, `or`, `not`, or the condition's text as written.
    pub label: String,
    /// Customers the bitmaps prove to match.
    pub sure: u64,
    /// Customers the bitmaps leave possible (the estimate's upper end).
    pub maybe: u64,
    /// The exact number of customers matching this node.
    pub actual: u64,
    /// Time computing the bounds from bitmaps, children included.
    pub bounds_time: Duration,
    /// Time checking the customers between `sure` and `maybe` against stored data.
    pub check_time: Duration,
    pub children: Vec<ExplainNode>,
}

/// A rule's plan with sizes and times.
#[derive(Debug, Clone)]
pub struct Explain {
    pub rule: String,
    pub now: Timestamp,
    pub root: ExplainNode,
    /// The rule's warnings (see [`crate::query::Warning`]).
    pub warnings: Vec<super::Warning>,
}

pub(crate) fn explain(text: &str, plan: &Plan, bounds: &Bounds, store: &Store) -> Result<Explain> {
    Ok(Explain {
        rule: text.to_owned(),
        now: plan.now,
        root: node(text, &plan.root, bounds, plan.events_from, store)?,
        warnings: Vec::new(),
    })
}

fn node(
    text: &str,
    n: &Node,
    b: &Bounds,
    events_from: Option<Timestamp>,
    store: &Store,
) -> Result<ExplainNode> {
    let started = Instant::now();
    let actual = resolve_node(n, b, events_from, store)?.len();
    let check_time = started.elapsed();
    let (label, kids): (String, Vec<&Node>) = match &n.kind {
        NodeKind::And(items) => ("and".into(), items.iter().collect()),
        NodeKind::Or(items) => ("or".into(), items.iter().collect()),
        NodeKind::Not(inner) => ("not".into(), vec![inner]),
        NodeKind::Computed(c) => (
            format!(
                "{} (computed trait: {}; {})",
                n.label(text),
                c.expression,
                if c.expanded.is_some() {
                    "answered as event conditions"
                } else {
                    "derived for each candidate"
                }
            ),
            Vec::new(),
        ),
        _ => (n.label(text), Vec::new()),
    };
    let children = kids
        .into_iter()
        .zip(&b.children)
        .map(|(k, kb)| node(text, k, kb, events_from, store))
        .collect::<Result<_>>()?;
    Ok(ExplainNode {
        label,
        sure: b.sure.len(),
        maybe: b.maybe.len(),
        actual,
        bounds_time: b.elapsed,
        check_time,
        children,
    })
}

impl fmt::Display for Explain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rule: {}", self.rule)?;
        writeln!(f, "now:  {}", format_rfc3339(self.now))?;
        writeln!(
            f,
            "(estimate: proven by bitmaps..possible; check: customers in between read from storage)"
        )?;
        write_node(f, &self.root, "", "")?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn write_node(f: &mut fmt::Formatter<'_>, n: &ExplainNode, first: &str, rest: &str) -> fmt::Result {
    let estimate = if n.sure == n.maybe {
        format!("{} (exact)", n.sure)
    } else {
        format!("{}..{}", n.sure, n.maybe)
    };
    writeln!(
        f,
        "{first}{}  estimate {estimate}, actual {}, bitmaps {}, check {} ({} customers)",
        n.label,
        n.actual,
        ms(n.bounds_time),
        ms(n.check_time),
        n.maybe - n.sure
    )?;
    write_children(f, &n.children, rest, write_node)
}

/// Draws the children of a tree node, each with `write(f, child, first-line prefix, prefix of
/// its further lines)`, joined by box-drawing lines.
pub(crate) fn write_children<T>(
    f: &mut fmt::Formatter<'_>,
    children: &[T],
    rest: &str,
    write: fn(&mut fmt::Formatter<'_>, &T, &str, &str) -> fmt::Result,
) -> fmt::Result {
    let last = children.len().saturating_sub(1);
    for (i, c) in children.iter().enumerate() {
        let (head, tail) = if i == last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        write(f, c, &format!("{rest}{head}"), &format!("{rest}{tail}"))?;
    }
    Ok(())
}

//! One reading per name: which meaning `NAME between A and B` has in this store.
//!
//! That form is the only one of the language that two readings share: a condition on the trait
//! `NAME` (its value in the range, both ends included) and an event condition with a `between`
//! window (`did NAME between A and B`). The parser keeps it as [`ExprKind::EventOrTrait`]; this
//! module decides, against who has the trait and the event today:
//! - the event when the store holds events of that name and no customer has such a trait;
//! - the trait when some customer has it and the store holds no such event;
//! - neither: the event (both readings match nobody then; the rule's warnings say so);
//! - both: an evaluation error that names both readings and how to write each.
//!
//! Saving an audience pins the reading ([`pin`]): the saved rule says explicitly what it meant
//! when it was saved, so a trait or event of the same name arriving later cannot change it.
//!
//! This module reads the catalog and which customers have a trait or an event; it never writes.

use std::fmt;

use super::plan::SavedRules;
use crate::error::{Error, Result};
use crate::index::Indexes;
use crate::rules::{CmpOp, Expr, ExprKind, Rule, Test, TraitCondition};
use crate::storage::Catalog;

/// The meaning a `NAME between A and B` took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The event `NAME` with a `between` window.
    Event,
    /// The trait `NAME` in a range.
    Trait,
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reading::Event => "event",
            Reading::Trait => "trait",
        })
    }
}

/// What the store has under one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Presence {
    /// Some stored event has the name.
    pub event: bool,
    /// Some customer has a trait of the name.
    pub trait_: bool,
}

impl Presence {
    /// What the store has under `name` today.
    pub fn of(name: &str, catalog: &Catalog, indexes: &Indexes) -> Presence {
        Presence {
            event: catalog
                .event_id(name)
                .is_some_and(|id| event_stored(indexes, id)),
            trait_: catalog
                .trait_id(name)
                .is_some_and(|id| trait_set(indexes, id)),
        }
    }
}

/// Whether some stored event has event id `id`.
pub(crate) fn event_stored(indexes: &Indexes, id: u32) -> bool {
    indexes
        .event_index(id)
        .is_some_and(|ei| !ei.days.is_empty())
}

/// Whether some customer has trait id `id`.
pub(crate) fn trait_set(indexes: &Indexes, id: u32) -> bool {
    indexes.trait_index(id).is_some_and(|ti| !ti.set.is_empty())
}

/// The reading of `cond` (an [`ExprKind::EventOrTrait`]) in this store, or the error that says
/// it has two.
pub(crate) fn reading(
    cond: &TraitCondition,
    catalog: &Catalog,
    indexes: &Indexes,
) -> Result<Reading> {
    let has = Presence::of(&cond.path.text, catalog, indexes);
    match (has.event, has.trait_) {
        (true, true) => Err(two_readings(
            cond,
            "is both an event and a trait in this store",
        )),
        (false, true) => Ok(Reading::Trait),
        _ => Ok(Reading::Event),
    }
}

/// The rule with every `NAME between A and B` written as the reading it has today, so that it
/// keeps that meaning whatever is stored later: `did NAME between A and B` for the event,
/// `NAME >= A and NAME <= B` for the trait. A name the store has neither as an event nor as a
/// trait cannot be pinned and is an error, as is one it has as both.
pub(crate) fn pin(
    rule: &Rule,
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn SavedRules,
) -> Result<Rule> {
    Ok(Rule {
        expr: pin_expr(&rule.expr, catalog, indexes, saved)?,
    })
}

fn pin_expr(
    e: &Expr,
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn SavedRules,
) -> Result<Expr> {
    let kind = match &e.kind {
        ExprKind::And(items) => ExprKind::And(pin_all(items, catalog, indexes, saved)?),
        ExprKind::Or(items) => ExprKind::Or(pin_all(items, catalog, indexes, saved)?),
        ExprKind::Not(inner) => ExprKind::Not(Box::new(pin_expr(inner, catalog, indexes, saved)?)),
        // A computed trait is the trait reading, whatever the store holds.
        ExprKind::EventOrTrait(cond) if saved.computed_trait(&cond.path.text).is_some() => {
            as_trait(cond).kind
        }
        ExprKind::EventOrTrait(cond) => {
            let has = Presence::of(&cond.path.text, catalog, indexes);
            match (has.event, has.trait_) {
                (true, false) => as_event(cond),
                (false, true) => as_trait(cond).kind,
                (true, true) => {
                    return Err(two_readings(cond, "is both an event and a trait in this store"))
                }
                (false, false) => {
                    return Err(two_readings(
                        cond,
                        "is neither an event nor a trait in this store yet, so a saved audience cannot tell which it means",
                    ))
                }
            }
        }
        other => other.clone(),
    };
    Ok(Expr { kind, span: e.span })
}

fn pin_all(
    items: &[Expr],
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn SavedRules,
) -> Result<Vec<Expr>> {
    items
        .iter()
        .map(|e| pin_expr(e, catalog, indexes, saved))
        .collect()
}

/// The event reading as an expression.
fn as_event(cond: &TraitCondition) -> ExprKind {
    match cond.as_event() {
        Some(ec) => ExprKind::Event(Box::new(ec)),
        // Not an event-or-trait form after all: it only ever meant the trait.
        None => ExprKind::Trait(cond.clone()),
    }
}

/// The trait reading as an expression that has no event reading: `NAME >= A and NAME <= B`,
/// which is what `between` means for a trait (both ends included).
fn as_trait(cond: &TraitCondition) -> Expr {
    let Test::Between { low, high } = &cond.test else {
        return Expr {
            kind: ExprKind::Trait(cond.clone()),
            span: cond.span,
        };
    };
    let side = |op, value: &crate::rules::Literal| Expr {
        kind: ExprKind::Trait(TraitCondition {
            path: cond.path.clone(),
            test: Test::Compare {
                op,
                value: value.clone(),
            },
            span: cond.span,
        }),
        span: cond.span,
    };
    Expr {
        kind: ExprKind::And(vec![side(CmpOp::Ge, low), side(CmpOp::Le, high)]),
        span: cond.span,
    }
}

/// The error for a `NAME between A and B` that cannot be given one reading: `why` says what the
/// store has, then how to write each reading.
fn two_readings(cond: &TraitCondition, why: &str) -> Error {
    let written = Rule {
        expr: Expr {
            kind: ExprKind::Trait(cond.clone()),
            span: cond.span,
        },
    };
    let event = Rule {
        expr: Expr {
            kind: as_event(cond),
            span: cond.span,
        },
    };
    let trait_ = Rule {
        expr: as_trait(cond),
    };
    Error::Evaluation(format!(
        "'{name}' {why}, so `{written}` has two readings: write `{event}` for the event, or `{trait_}` for the trait",
        name = cond.path.text,
    ))
}

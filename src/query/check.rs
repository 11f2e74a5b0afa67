//! Warnings: what a rule that parses and plans may still say that its writer did not mean.
//!
//! A name the store has never seen (`viewd`, `teir`), a property no stored event of that name
//! carries, or a value no customer has for an indexed trait or property (`tier = gold` in a shop
//! of `Gold`) makes its condition match nobody. That is the rule's exact meaning, so it is not an
//! error, but it is never silent: each becomes a [`Warning`] with the nearest known name or value.
//!
//! Only the interfaces people type into ask for warnings (`Db::query`, `Db::explain`,
//! `Db::check`); saved audiences kept up to date on every write, and the socket's `QUERY` (whose
//! clients ask `CHECK`), never pay for them. The names
//! and values are read from the catalog and the indexes; this module never writes, and it does
//! not follow `in audience` into saved rules (those were checked when they were saved, and an
//! unknown audience is an evaluation error of its own).

use std::fmt;

use crate::index::{IndexValue, Indexes};
use crate::model::value::ValueType;
use crate::model::FastMap;
use crate::rules::words;
use crate::rules::{
    CmpOp, EventCondition, Expr, ExprKind, FrequencyKind, Literal, LiteralKind, Predicate,
    PredicateKind, Rule, Span, Test, TraitCondition,
};
use crate::storage::Catalog;

use super::exec::index_keys;
use super::plan::Lit;
use super::reading::{self, Presence};

/// Something a rule says that its writer probably did not mean; the rule still evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What is wrong: `no event 'viewd' in this store`.
    pub message: String,
    /// The nearest known name or value, when one is close.
    pub suggestion: Option<String>,
    /// The part of the rule it is about.
    pub span: Span,
}

impl fmt::Display for Warning {
    /// `no event 'viewd' in this store; did you mean 'viewed'?`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, "; did you mean '{s}'?")?;
        }
        Ok(())
    }
}

/// Value types that equality answers from the value bitmaps.
const KEYED: u8 = ValueType::Str.bit() | ValueType::Int.bit() | ValueType::Bool.bit();

/// The warnings of `rule` against what is stored.
/// Computed traits (named in `saved`) are not warned about: their definitions were checked.
pub(crate) fn warnings(
    rule: &Rule,
    catalog: &Catalog,
    indexes: &Indexes,
    saved: &dyn super::plan::SavedRules,
) -> Vec<Warning> {
    let mut checker = Checker {
        catalog,
        indexes,
        saved,
        out: Vec::new(),
    };
    checker.expr(&rule.expr);
    checker.out
}

struct Checker<'a> {
    catalog: &'a Catalog,
    indexes: &'a Indexes,
    saved: &'a dyn super::plan::SavedRules,
    out: Vec<Warning>,
}

impl Checker<'_> {
    fn warn(&mut self, message: String, suggestion: Option<String>, span: Span) {
        let w = Warning {
            message,
            suggestion,
            span,
        };
        if !self.out.contains(&w) {
            self.out.push(w);
        }
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::And(items) | ExprKind::Or(items) => items.iter().for_each(|i| self.expr(i)),
            ExprKind::Not(inner) => self.expr(inner),
            ExprKind::Everyone | ExprKind::InAudience(_) | ExprKind::Bucket(_) => {}
            ExprKind::Trait(c) | ExprKind::EventOrTrait(c)
                if self.saved.computed_trait(&c.path.text).is_some() => {}
            ExprKind::Trait(c) => self.trait_condition(c),
            ExprKind::Event(ec) => self.event_condition(ec),
            ExprKind::FirstLast(fl) => self.event_condition(&fl.event),
            ExprKind::Sequence(seq) => {
                for step in &seq.steps {
                    self.event_condition(step);
                    let event = self
                        .catalog
                        .event_id(&step.event.text)
                        .filter(|id| self.event_stored(*id));
                    if let (Some(event), Some(p)) = (event, &seq.same) {
                        self.property(event, &p.text, p.span, &[]);
                    }
                }
            }
            ExprKind::EventOrTrait(c) => {
                let has = Presence::of(&c.path.text, self.catalog, self.indexes);
                match (has.event, has.trait_) {
                    (false, false) => {
                        let mut known = self.known_events();
                        known.extend(self.known_traits());
                        let near = nearest(&c.path.text, &known);
                        self.warn(
                            format!("no event or trait '{}' in this store", c.path.text),
                            near,
                            c.path.span,
                        );
                    }
                    (false, true) => self.trait_condition(c),
                    // The event reading has no property or value to check; both readings at
                    // once are an evaluation error.
                    (true, _) => {}
                }
            }
        }
    }

    /// Traits some customer has.
    fn known_traits(&self) -> Vec<&str> {
        self.catalog
            .traits()
            .filter(|(id, _)| self.trait_set(*id))
            .map(|(_, t)| t.name.as_str())
            .collect()
    }

    /// Events the store holds.
    fn known_events(&self) -> Vec<&str> {
        self.catalog
            .events()
            .filter(|(id, _)| self.event_stored(*id))
            .map(|(_, e)| e.name.as_str())
            .collect()
    }

    fn trait_set(&self, id: u32) -> bool {
        reading::trait_set(self.indexes, id)
    }

    fn event_stored(&self, id: u32) -> bool {
        reading::event_stored(self.indexes, id)
    }

    fn trait_condition(&mut self, c: &TraitCondition) {
        let name = &c.path.text;
        let Some(id) = self.catalog.trait_id(name).filter(|id| self.trait_set(*id)) else {
            let near = nearest(name, &self.known_traits());
            self.warn(
                format!("no trait '{name}' in this store"),
                near,
                c.path.span,
            );
            return;
        };
        let indexed = self.indexes.trait_values_indexed(id);
        let types = self.catalog.trait_types(id);
        let Some(ti) = self.indexes.trait_index(id).filter(|_| indexed) else {
            return;
        };
        for lit in equality_literals(&c.test) {
            if let Some(near) = missing_value(&ti.values, types, lit) {
                self.warn(
                    format!("no customer has {name} {}", quoted(lit)),
                    near,
                    lit.span,
                );
            }
        }
    }

    fn event_condition(&mut self, ec: &EventCondition) {
        let name = &ec.event.text;
        let Some(event) = self
            .catalog
            .event_id(name)
            .filter(|id| self.event_stored(*id))
        else {
            let near = nearest(name, &self.known_events());
            self.warn(
                format!("no event '{name}' in this store"),
                near,
                ec.event.span,
            );
            return;
        };
        if let Some(sh) = &ec.shorthand {
            self.property(event, &sh.property.text, sh.property.span, &[&sh.value]);
        }
        if let Some(p) = &ec.predicate {
            self.predicate(event, p);
        }
        if let Some(f) = &ec.frequency {
            if let FrequencyKind::Aggregate { property, .. }
            | FrequencyKind::Distinct { property, .. } = &f.kind
            {
                self.property(event, &property.text, property.span, &[]);
            }
        }
    }

    fn predicate(&mut self, event: u32, p: &Predicate) {
        match &p.kind {
            PredicateKind::And(items) | PredicateKind::Or(items) => {
                items.iter().for_each(|i| self.predicate(event, i));
            }
            PredicateKind::Not(inner) => self.predicate(event, inner),
            PredicateKind::Cond(c) => {
                let lits = equality_literals(&c.test);
                self.property(event, &c.path.text, c.path.span, &lits);
            }
        }
    }

    /// Checks that events `event` carry property `prop`, and that some has each of `lits`.
    fn property(&mut self, event: u32, prop: &str, span: Span, lits: &[&Literal]) {
        let catalog = self.catalog;
        let event_name = catalog.event_name(event);
        let carried = |catalog: &Catalog, id: u32| {
            catalog
                .event_info(event)
                .and_then(|e| e.props.get(&id))
                .is_some_and(|p| p.count > 0)
        };
        let Some(prop_id) = self
            .catalog
            .prop_id(prop)
            .filter(|id| carried(self.catalog, *id))
        else {
            let known: Vec<&str> = self
                .catalog
                .event_info(event)
                .map(|e| {
                    e.props
                        .iter()
                        .filter(|(_, p)| p.count > 0)
                        .map(|(id, _)| self.catalog.prop_name(*id))
                        .collect()
                })
                .unwrap_or_default();
            let near = nearest(prop, &known);
            self.warn(
                format!("no '{event_name}' event has property '{prop}'"),
                near,
                span,
            );
            return;
        };
        if lits.is_empty() || !self.indexes.prop_values_indexed(event, prop_id) {
            return;
        }
        let types = self.catalog.prop_types(event, prop_id);
        let Some(values) = self
            .indexes
            .event_index(event)
            .and_then(|ei| ei.props.get(&prop_id))
        else {
            return;
        };
        for lit in lits {
            if let Some(near) = missing_value(values, types, lit) {
                self.warn(
                    format!("no '{event_name}' event has {prop} {}", quoted(lit)),
                    near,
                    lit.span,
                );
            }
        }
    }
}

/// The literals a test compares for equality (`=`, `!=`, `in`, `not in`): the ones a missing
/// value makes meaningless.
fn equality_literals(t: &Test) -> Vec<&Literal> {
    match t {
        Test::Compare {
            op: CmpOp::Eq | CmpOp::Ne,
            value,
        } => vec![value],
        Test::In { values, .. } => values.iter().collect(),
        _ => Vec::new(),
    }
}

/// `Some(nearest)` when the literal equals no value in `values` although the values are all
/// keyed there (the field holds only strings, integers and booleans): no customer has it. The
/// nearest is a stored string that differs only by case, else by one edit.
fn missing_value<V>(
    values: &FastMap<IndexValue, V>,
    types: u8,
    lit: &Literal,
) -> Option<Option<String>> {
    let keyed_only = types & KEYED != 0 && types & !KEYED & !ValueType::List.bit() == 0;
    let comparable = matches!(
        lit.kind,
        LiteralKind::Str { .. } | LiteralKind::Number(_) | LiteralKind::Bool(_)
    );
    if !keyed_only || !comparable {
        return None;
    }
    let resolved = Lit::resolve(lit, 0);
    let mut keys = Vec::new();
    index_keys(&resolved, &mut keys);
    if keys.iter().any(|k| values.contains_key(k)) {
        return None;
    }
    let text = resolved.text.as_deref()?;
    Some(nearest_value(text, values.keys()))
}

/// A stored string equal to `text` but for case, else one edit away; the smallest such.
fn nearest_value<'k>(text: &str, keys: impl Iterator<Item = &'k IndexValue>) -> Option<String> {
    let len = text.chars().count();
    let mut best: Option<(usize, &str)> = None;
    for key in keys {
        let IndexValue::Str(s) = key else { continue };
        if s.chars().count().abs_diff(len) > 1 {
            continue;
        }
        let distance = if s.to_lowercase() == text.to_lowercase() {
            0
        } else if words::edit_distance(s, text) <= 1 {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(d, b)| (distance, &**s) < (d, b)) {
            best = Some((distance, s));
        }
    }
    best.map(|(_, s)| s.to_owned())
}

/// The known name nearest to `name`: one that differs only by case, else the closest within the
/// parser's limit for misspellings (one edit up to four letters, two for longer names).
pub(crate) fn nearest(name: &str, known: &[&str]) -> Option<String> {
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some((*same).to_owned());
    }
    let mut sorted = known.to_vec();
    sorted.sort_unstable();
    words::suggest(name, &sorted).map(str::to_owned)
}

/// A literal as the warning quotes it.
fn quoted(lit: &Literal) -> String {
    match &lit.kind {
        LiteralKind::Str { text, .. } => format!("'{text}'"),
        _ => format!("'{lit}'"),
    }
}

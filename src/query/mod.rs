//! The query engine: a parsed rule becomes the set of customers it describes at one *now*.
//!
//! Work flows through three steps, one module each:
//! 1. `plan`: the AST is resolved against the catalog (names to interned ids) and turned into a
//!    tree of bitmap operations. Every node knows two sets: customers who surely match and
//!    customers who may match. Conditions the bitmaps answer exactly (trait equality, `is set`,
//!    presence on whole days of a window) have equal sets; the rest (ranges, counts, aggregates,
//!    partial days at a window's edge) leave a gap between them.
//! 2. `exec`: the bounds are computed from the indexes, smallest operands first; the customers in
//!    the gap are checked one by one against their stored profile and events, in parallel.
//! 3. `customer`: the exact meaning of every construct for one customer (the residual check, and
//!    what `why` reports).
//!
//! This module reads the indexes and storage through [`Db`]; it never writes.

use std::time::Duration;

use roaring::RoaringBitmap;

use crate::model::time::Timestamp;
use crate::rules::{self, Rule};

/// A rule parsed once, to run many times at different *now*s.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    text: String,
    rule: Rule,
}

impl PreparedRule {
    /// Parses `text`; a bad rule is [`crate::Error::Rule`].
    pub fn new(text: &str) -> crate::Result<PreparedRule> {
        Ok(PreparedRule {
            text: text.to_owned(),
            rule: rules::parse(text)?,
        })
    }

    /// The rule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

/// The customers a rule describes at one *now*, as internal ids.
#[derive(Debug, Clone)]
pub struct Audience {
    members: RoaringBitmap,
    now: Timestamp,
    elapsed: Duration,
}

impl Audience {
    /// The number of members.
    pub fn len(&self) -> u64 {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members' internal ids.
    pub fn bitmap(&self) -> &RoaringBitmap {
        &self.members
    }

    /// Takes the members' internal ids.
    pub fn into_bitmap(self) -> RoaringBitmap {
        self.members
    }

    /// The evaluation time the rule was run at.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// How long the evaluation took.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

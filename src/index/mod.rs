//! Roaring-bitmap indexes over customers' internal ids, kept in step with stored data:
//! everyone; customers with a profile; per trait, who has it and who has each value (for
//! low-cardinality traits); per event, who did it on each UTC day; and per (event, property, value)
//! who did it on each day, for low-cardinality string/integer/boolean properties.
//!
//! This module owns the in-memory bitmaps and their snapshot encoding. It does not read or write
//! storage: the database layer feeds it profiles and events, and persists the snapshots it returns.

mod snapshot;

use std::collections::{BTreeMap, HashMap, HashSet};

use roaring::RoaringBitmap;

use crate::model::time::day_of;
use crate::model::Value;
use crate::storage::StoredEvent;

pub use snapshot::Family;

/// A value as an index key: only strings, integers and booleans are indexed for equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexValue {
    Str(Box<str>),
    Int(i64),
    Bool(bool),
}

impl IndexValue {
    /// The index key of a scalar value, or `None` for values answered by residual checks
    /// (floats, date-times) and for lists (whose elements are indexed separately).
    pub fn of(v: &Value) -> Option<IndexValue> {
        match v {
            Value::Str(s) => Some(IndexValue::Str(s.as_str().into())),
            Value::Int(i) => Some(IndexValue::Int(*i)),
            Value::Bool(b) => Some(IndexValue::Bool(*b)),
            Value::Float(_) | Value::Time(_) | Value::List(_) => None,
        }
    }
}

/// Who has a trait, and who has each of its values.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TraitIndex {
    /// Customers who have the trait at all (`is set`).
    pub set: RoaringBitmap,
    /// Customers whose scalar value equals the key. Empty when the trait is unindexed.
    pub values: HashMap<IndexValue, RoaringBitmap>,
    /// Customers whose list value holds the key.
    pub elements: HashMap<IndexValue, RoaringBitmap>,
}

/// Per UTC day, the customers with at least one matching event that day.
pub type DayBitmaps = BTreeMap<u32, RoaringBitmap>;

/// Who did an event, per day, overall and per indexed property value.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventIndex {
    pub days: DayBitmaps,
    pub props: HashMap<u32, HashMap<IndexValue, DayBitmaps>>,
}

/// All indexes of one database.
#[derive(Debug, Clone)]
pub struct Indexes {
    /// Every known customer: every id seen in a profile or an event.
    pub everyone: RoaringBitmap,
    /// Customers with a stored profile.
    pub profiles: RoaringBitmap,
    traits: HashMap<u32, TraitIndex>,
    events: HashMap<u32, EventIndex>,
    /// Traits with more distinct values than the bound: only `set` is kept for them.
    unindexed_traits: HashSet<u32>,
    /// (event, property) pairs with more distinct values than the bound.
    unindexed_props: HashSet<(u32, u32)>,
    /// The most distinct values a trait or an (event, property) may have and stay indexed.
    value_bound: usize,
    /// Families changed since the last snapshot.
    changed: HashSet<Family>,
}

impl PartialEq for Indexes {
    /// Equal content; the change tracking is not content.
    fn eq(&self, other: &Self) -> bool {
        self.everyone == other.everyone
            && self.profiles == other.profiles
            && self.traits == other.traits
            && self.events == other.events
            && self.unindexed_traits == other.unindexed_traits
            && self.unindexed_props == other.unindexed_props
    }
}

fn add_to<K: Eq + std::hash::Hash>(map: &mut HashMap<K, RoaringBitmap>, key: K, cust: u32) {
    map.entry(key).or_default().insert(cust);
}

/// Removes `cust` from the bitmap under `key`, dropping the bitmap once it is empty, so that an
/// incrementally maintained index equals one rebuilt from scratch.
fn remove_from<K, Q>(map: &mut HashMap<K, RoaringBitmap>, key: &Q, cust: u32)
where
    K: Eq + std::hash::Hash + std::borrow::Borrow<Q>,
    Q: Eq + std::hash::Hash + ?Sized,
{
    if let Some(bm) = map.get_mut(key) {
        bm.remove(cust);
        if bm.is_empty() {
            map.remove(key);
        }
    }
}

fn remove_from_day(days: &mut DayBitmaps, day: u32, cust: u32) {
    if let Some(bm) = days.get_mut(&day) {
        bm.remove(cust);
        if bm.is_empty() {
            days.remove(&day);
        }
    }
}

impl Indexes {
    /// Empty indexes that stop indexing a field's values past `value_bound` distinct values.
    pub fn new(value_bound: usize) -> Self {
        Indexes {
            everyone: RoaringBitmap::new(),
            profiles: RoaringBitmap::new(),
            traits: HashMap::new(),
            events: HashMap::new(),
            unindexed_traits: HashSet::new(),
            unindexed_props: HashSet::new(),
            value_bound,
            changed: HashSet::new(),
        }
    }

    /// Empty indexes with the same bound and the same unindexed fields as `self`: what a rebuild
    /// from stored data starts from, so that it reaches the same state as live maintenance.
    pub fn empty_like(&self) -> Self {
        let mut fresh = Indexes::new(self.value_bound);
        fresh.unindexed_traits = self.unindexed_traits.clone();
        fresh.unindexed_props = self.unindexed_props.clone();
        fresh
    }

    pub fn value_bound(&self) -> usize {
        self.value_bound
    }

    pub fn trait_index(&self, trait_id: u32) -> Option<&TraitIndex> {
        self.traits.get(&trait_id)
    }

    pub fn event_index(&self, event_id: u32) -> Option<&EventIndex> {
        self.events.get(&event_id)
    }

    /// Whether equality on this trait can be answered from bitmaps.
    pub fn trait_values_indexed(&self, trait_id: u32) -> bool {
        !self.unindexed_traits.contains(&trait_id)
    }

    /// Whether equality on this event property can be answered from bitmaps.
    pub fn prop_values_indexed(&self, event_id: u32, prop_id: u32) -> bool {
        !self.unindexed_props.contains(&(event_id, prop_id))
    }

    /// Records that a customer exists.
    pub fn add_customer(&mut self, cust: u32) {
        if self.everyone.insert(cust) {
            self.changed.insert(Family::Everyone);
        }
    }

    /// Adds a customer's profile (its traits) to the indexes.
    pub fn add_profile(&mut self, cust: u32, traits: &[(u32, Value)]) {
        self.add_customer(cust);
        if self.profiles.insert(cust) {
            self.changed.insert(Family::Profiles);
        }
        for (t, v) in traits {
            self.add_trait(cust, *t, v);
        }
    }

    /// Removes a customer's profile, given the traits that were indexed for it.
    pub fn remove_profile(&mut self, cust: u32, traits: &[(u32, Value)]) {
        if self.profiles.remove(cust) {
            self.changed.insert(Family::Profiles);
        }
        for (t, v) in traits {
            self.remove_trait(cust, *t, v);
        }
    }

    fn add_trait(&mut self, cust: u32, t: u32, v: &Value) {
        self.changed.insert(Family::Trait(t));
        let ti = self.traits.entry(t).or_default();
        ti.set.insert(cust);
        if self.unindexed_traits.contains(&t) {
            return;
        }
        match v {
            Value::List(items) => {
                for item in items {
                    if let Some(k) = IndexValue::of(item) {
                        add_to(&mut ti.elements, k, cust);
                    }
                }
            }
            scalar => {
                if let Some(k) = IndexValue::of(scalar) {
                    add_to(&mut ti.values, k, cust);
                }
            }
        }
        if ti.values.len() + ti.elements.len() > self.value_bound {
            ti.values = HashMap::new();
            ti.elements = HashMap::new();
            self.unindexed_traits.insert(t);
            self.changed.insert(Family::Unindexed);
        }
    }

    fn remove_trait(&mut self, cust: u32, t: u32, v: &Value) {
        let Some(ti) = self.traits.get_mut(&t) else {
            return;
        };
        self.changed.insert(Family::Trait(t));
        ti.set.remove(cust);
        match v {
            Value::List(items) => {
                for item in items {
                    if let Some(k) = IndexValue::of(item) {
                        remove_from(&mut ti.elements, &k, cust);
                    }
                }
            }
            scalar => {
                if let Some(k) = IndexValue::of(scalar) {
                    remove_from(&mut ti.values, &k, cust);
                }
            }
        }
        if ti.set.is_empty() && ti.values.is_empty() && ti.elements.is_empty() {
            self.traits.remove(&t);
        }
    }

    /// Adds one event of a customer.
    pub fn add_event(&mut self, cust: u32, e: &StoredEvent) {
        self.add_customer(cust);
        let day = day_of(e.ts);
        let ei = self.events.entry(e.event).or_default();
        if ei.days.entry(day).or_default().insert(cust) {
            self.changed.insert(Family::EventDays(e.event));
        }
        for (p, v) in &e.props {
            if self.unindexed_props.contains(&(e.event, *p)) {
                continue;
            }
            let Some(k) = IndexValue::of(v) else {
                continue;
            };
            let values = ei.props.entry(*p).or_default();
            if !values.contains_key(&k) && values.len() >= self.value_bound {
                // Too many values: drop the property's bitmaps, and their snapshot records.
                for dropped in values.keys() {
                    self.changed
                        .insert(Family::EventProp(e.event, *p, dropped.clone()));
                }
                ei.props.remove(p);
                self.unindexed_props.insert((e.event, *p));
                self.changed.insert(Family::Unindexed);
                continue;
            }
            let days = values.entry(k.clone()).or_default();
            if days.entry(day).or_default().insert(cust) {
                self.changed.insert(Family::EventProp(e.event, *p, k));
            }
        }
    }

    /// Removes all of a customer's events, given those events: used when the customer is deleted,
    /// so every day bit they set goes.
    pub fn remove_events(&mut self, cust: u32, events: &[StoredEvent]) {
        for e in events {
            let Some(ei) = self.events.get_mut(&e.event) else {
                continue;
            };
            let day = day_of(e.ts);
            remove_from_day(&mut ei.days, day, cust);
            self.changed.insert(Family::EventDays(e.event));
            for (p, v) in &e.props {
                let (Some(values), Some(k)) = (ei.props.get_mut(p), IndexValue::of(v)) else {
                    continue;
                };
                if let Some(days) = values.get_mut(&k) {
                    remove_from_day(days, day, cust);
                    if days.is_empty() {
                        values.remove(&k);
                    }
                }
                if values.is_empty() {
                    ei.props.remove(p);
                }
                self.changed.insert(Family::EventProp(e.event, *p, k));
            }
            if ei.days.is_empty() && ei.props.is_empty() {
                self.events.remove(&e.event);
            }
        }
    }

    /// Removes the customer from `everyone`: the last step of deleting them.
    pub fn remove_customer(&mut self, cust: u32) {
        if self.everyone.remove(cust) {
            self.changed.insert(Family::Everyone);
        }
    }

    /// Removes every bit of the given customers from every bitmap, whatever their data was. Slow
    /// (it visits every bitmap), for crash recovery, where the old data is not known.
    pub fn purge(&mut self, custs: &RoaringBitmap) {
        let mut changed = Vec::new();
        self.everyone -= custs;
        self.profiles -= custs;
        self.traits.retain(|t, ti| {
            ti.set -= custs;
            for map in [&mut ti.values, &mut ti.elements] {
                map.retain(|_, bm| {
                    *bm -= custs;
                    !bm.is_empty()
                });
            }
            changed.push(Family::Trait(*t));
            !(ti.set.is_empty() && ti.values.is_empty() && ti.elements.is_empty())
        });
        self.events.retain(|e, ei| {
            ei.days.retain(|_, bm| {
                *bm -= custs;
                !bm.is_empty()
            });
            changed.push(Family::EventDays(*e));
            ei.props.retain(|p, values| {
                values.retain(|k, days| {
                    days.retain(|_, bm| {
                        *bm -= custs;
                        !bm.is_empty()
                    });
                    changed.push(Family::EventProp(*e, *p, k.clone()));
                    !days.is_empty()
                });
                !values.is_empty()
            });
            !(ei.days.is_empty() && ei.props.is_empty())
        });
        self.changed.extend(changed);
        self.changed.insert(Family::Everyone);
        self.changed.insert(Family::Profiles);
    }

    /// The number of bitmaps held, for reports.
    pub fn bitmap_count(&self) -> usize {
        2 + self
            .traits
            .values()
            .map(|t| 1 + t.values.len() + t.elements.len())
            .sum::<usize>()
            + self
                .events
                .values()
                .map(|e| {
                    e.days.len()
                        + e.props
                            .values()
                            .flat_map(|v| v.values())
                            .map(|d| d.len())
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Describes the first differences between two indexes, for `verify`. Empty when equal.
    pub fn differences(&self, other: &Indexes) -> Vec<String> {
        let mut out = Vec::new();
        if self.everyone != other.everyone {
            out.push(format!(
                "everyone: {} vs {} customers",
                self.everyone.len(),
                other.everyone.len()
            ));
        }
        if self.profiles != other.profiles {
            out.push(format!(
                "profiles: {} vs {} customers",
                self.profiles.len(),
                other.profiles.len()
            ));
        }
        let trait_ids: HashSet<&u32> = self.traits.keys().chain(other.traits.keys()).collect();
        for t in trait_ids {
            if self.traits.get(t) != other.traits.get(t) {
                out.push(format!("trait #{t}: value bitmaps differ"));
            }
        }
        let event_ids: HashSet<&u32> = self.events.keys().chain(other.events.keys()).collect();
        for e in event_ids {
            let (a, b) = (self.events.get(e), other.events.get(e));
            if a.map(|x| &x.days) != b.map(|x| &x.days) {
                out.push(format!("event #{e}: day bitmaps differ"));
            }
            if a.map(|x| &x.props) != b.map(|x| &x.props) {
                out.push(format!("event #{e}: property bitmaps differ"));
            }
        }
        if self.unindexed_traits != other.unindexed_traits
            || self.unindexed_props != other.unindexed_props
        {
            out.push("the sets of unindexed fields differ".into());
        }
        out.sort();
        out
    }
}

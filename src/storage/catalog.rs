//! The catalog: interned names (traits, events, event properties ↔ dense `u32` ids) and the
//! statistics the schema view reports (types seen, event and property counts). It is small and
//! is stored as one record, rewritten by every write that changes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::value::ValueType;
use crate::model::FastMap as HashMap;
use crate::model::FastSet;
use crate::model::Value;

/// How far a store's schema may grow: the most distinct names of each kind. A message that would
/// add a name past a limit is refused whole ([`Error::Limit`]); names already stored are always
/// accepted, also in a folder that holds more than a limit (written by an older build, or with
/// higher limits). Every name ever interned counts, also one whose events were all deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaLimits {
    /// Distinct event names.
    pub event_names: usize,
    /// Distinct property names of one event name.
    pub properties_per_event: usize,
    /// Distinct property names over all events (property names are interned once for all).
    pub property_names: usize,
    /// Distinct trait names (a nested trait's dotted name counts as one).
    pub trait_names: usize,
}

impl Default for SchemaLimits {
    /// Limits a real shop does not meet: 1,000 event names, 1,000 property names per event,
    /// 10,000 property names in all, 10,000 trait names.
    fn default() -> Self {
        SchemaLimits {
            event_names: 1_000,
            properties_per_event: 1_000,
            property_names: 10_000,
            trait_names: 10_000,
        }
    }
}

/// One of the [`SchemaLimits`], as an [`Error::Limit`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaLimit {
    EventNames,
    PropertiesPerEvent,
    PropertyNames,
    TraitNames,
}

impl SchemaLimit {
    /// The limit's name, as the command line's flag spells it (`--max-event-names`).
    pub fn name(self) -> &'static str {
        match self {
            SchemaLimit::EventNames => "max-event-names",
            SchemaLimit::PropertiesPerEvent => "max-properties-per-event",
            SchemaLimit::PropertyNames => "max-property-names",
            SchemaLimit::TraitNames => "max-trait-names",
        }
    }
}

impl std::fmt::Display for SchemaLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The refusal of a message that would take the schema past `limit`.
fn over_limit(limit: SchemaLimit, max: usize, what: String) -> Error {
    Error::Limit {
        limit,
        max,
        message: format!(
            "schema limit {limit} = {max} reached: {what} (names already stored are still accepted)"
        ),
    }
}

/// `Err` naming the limit when the distinct names among `names` that `known` does not know,
/// added to the `have` names `owner` already has, would pass `max`. Allocation-free when every
/// name is known.
fn past_limit<'a>(
    names: impl Iterator<Item = &'a str> + Clone,
    known: impl Fn(&str) -> bool,
    have: usize,
    (limit, max): (SchemaLimit, usize),
    owner: &dyn std::fmt::Display,
    noun: &str,
) -> Result<()> {
    let new = count_new(names.clone(), &known);
    if new == 0 || have + new <= max {
        return Ok(());
    }
    let first = names.clone().find(|n| !known(n)).unwrap_or_default();
    let more = if new > 1 { ", ..." } else { "" };
    Err(over_limit(
        limit,
        max,
        format!("{owner} has {have} distinct {noun} and this message adds {new} ({first:?}{more})"),
    ))
}

/// Counts the distinct names among `names` that `known` does not know. Allocates only when
/// there are unknown names, and then only for them.
fn count_new<'a>(names: impl Iterator<Item = &'a str>, known: impl Fn(&str) -> bool) -> usize {
    let mut first: Option<&str> = None;
    let mut more: Option<FastSet<&str>> = None;
    for n in names.filter(|n| !known(n)) {
        match (first, &mut more) {
            (None, _) => first = Some(n),
            (Some(f), None) if f == n => {}
            (Some(f), None) => more = Some([f, n].into_iter().collect()),
            (Some(_), Some(set)) => {
                set.insert(n);
            }
        }
    }
    match (first, more) {
        (None, _) => 0,
        (Some(_), None) => 1,
        (Some(_), Some(set)) => set.len(),
    }
}

/// What is known of one trait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraitInfo {
    pub name: String,
    /// The types seen, as [`ValueType::bit`]s.
    pub types: u8,
}

/// What is known of one event property.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropInfo {
    pub types: u8,
    /// Stored events that carry the property.
    pub count: u64,
}

/// What is known of one event name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventInfo {
    pub name: String,
    /// Stored events of this name.
    pub count: u64,
    /// Per property id.
    pub props: BTreeMap<u32, PropInfo>,
}

/// Names and statistics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    traits: Vec<TraitInfo>,
    events: Vec<EventInfo>,
    props: Vec<String>,
    #[serde(skip)]
    trait_ids: HashMap<String, u32>,
    #[serde(skip)]
    event_ids: HashMap<String, u32>,
    #[serde(skip)]
    prop_ids: HashMap<String, u32>,
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.traits == other.traits && self.events == other.events && self.props == other.props
    }
}

fn intern(ids: &mut HashMap<String, u32>, len: usize, name: &str) -> (u32, bool) {
    if let Some(id) = ids.get(name) {
        return (*id, false);
    }
    let id = u32::try_from(len).unwrap_or(u32::MAX);
    ids.insert(name.to_owned(), id);
    (id, true)
}

/// The type bits of a value.
pub fn type_bits(v: &Value) -> u8 {
    v.value_type().bit()
}

/// The type names of a set of type bits.
pub fn type_names(bits: u8) -> Vec<&'static str> {
    ValueType::ALL
        .iter()
        .filter(|t| bits & t.bit() != 0)
        .map(|t| t.name())
        .collect()
}

impl Catalog {
    /// Restores the lookup maps after deserialising.
    pub fn reindex(&mut self) {
        self.trait_ids = self
            .traits
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i as u32))
            .collect();
        self.event_ids = self
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i as u32))
            .collect();
        self.prop_ids = self
            .props
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
    }

    pub fn trait_id(&self, name: &str) -> Option<u32> {
        self.trait_ids.get(name).copied()
    }

    pub fn event_id(&self, name: &str) -> Option<u32> {
        self.event_ids.get(name).copied()
    }

    pub fn prop_id(&self, name: &str) -> Option<u32> {
        self.prop_ids.get(name).copied()
    }

    pub fn trait_name(&self, id: u32) -> &str {
        self.traits
            .get(id as usize)
            .map_or("?", |t| t.name.as_str())
    }

    pub fn event_name(&self, id: u32) -> &str {
        self.events
            .get(id as usize)
            .map_or("?", |e| e.name.as_str())
    }

    pub fn prop_name(&self, id: u32) -> &str {
        self.props.get(id as usize).map_or("?", |p| p.as_str())
    }

    /// The value types seen for a trait, as [`ValueType::bit`]s (0 for an unknown id).
    pub fn trait_types(&self, id: u32) -> u8 {
        self.traits.get(id as usize).map_or(0, |t| t.types)
    }

    /// The value types seen for a property of an event (0 when never seen).
    pub fn prop_types(&self, event: u32, prop: u32) -> u8 {
        self.events
            .get(event as usize)
            .and_then(|e| e.props.get(&prop))
            .map_or(0, |p| p.types)
    }

    /// What is known of one event name.
    pub fn event_info(&self, id: u32) -> Option<&EventInfo> {
        self.events.get(id as usize)
    }

    pub fn traits(&self) -> impl Iterator<Item = (u32, &TraitInfo)> {
        self.traits.iter().enumerate().map(|(i, t)| (i as u32, t))
    }

    pub fn events(&self) -> impl Iterator<Item = (u32, &EventInfo)> {
        self.events.iter().enumerate().map(|(i, e)| (i as u32, e))
    }

    /// The id of a trait, interning the name if new; notes the value's type.
    pub fn intern_trait(&mut self, name: &str, value: Option<&Value>) -> u32 {
        let (id, new) = intern(&mut self.trait_ids, self.traits.len(), name);
        if new {
            self.traits.push(TraitInfo {
                name: name.to_owned(),
                types: 0,
            });
        }
        if let Some(v) = value {
            self.traits[id as usize].types |= type_bits(v);
        }
        id
    }

    /// The id of an event name, interning it if new.
    pub fn intern_event(&mut self, name: &str) -> u32 {
        let (id, new) = intern(&mut self.event_ids, self.events.len(), name);
        if new {
            self.events.push(EventInfo {
                name: name.to_owned(),
                count: 0,
                props: BTreeMap::new(),
            });
        }
        id
    }

    /// The id of a property name, interning it if new.
    pub fn intern_prop(&mut self, name: &str) -> u32 {
        let (id, new) = intern(&mut self.prop_ids, self.props.len(), name);
        if new {
            self.props.push(name.to_owned());
        }
        id
    }

    /// The id of a `track`'s event when the event is known and every property name is known for
    /// it, the property ids (in the order given) going into `ids` (cleared first: a buffer the
    /// caller keeps from one track to the next): such a track adds no name, so it passes every
    /// schema limit ([`Catalog::check_event`]) and interns nothing. `None` otherwise. One lookup
    /// per name, where checking and then interning took three.
    pub fn known_track<'a>(
        &self,
        event: &str,
        props: impl Iterator<Item = &'a str>,
        ids: &mut Vec<u32>,
    ) -> Option<u32> {
        ids.clear();
        let e = *self.event_ids.get(event)?;
        let info = self.events.get(e as usize)?;
        for name in props {
            let p = *self.prop_ids.get(name)?;
            if !info.props.contains_key(&p) {
                return None;
            }
            ids.push(p);
        }
        Some(e)
    }

    /// Counts one stored event (`delta` = 1) or one deleted event (`delta` = -1).
    pub fn count_event(&mut self, event: u32, props: &[(u32, Value)], delta: i64) {
        let Some(info) = self.events.get_mut(event as usize) else {
            return;
        };
        info.count = info.count.saturating_add_signed(delta);
        for (p, v) in props {
            let pi = info.props.entry(*p).or_default();
            pi.count = pi.count.saturating_add_signed(delta);
            if delta > 0 {
                pi.types |= type_bits(v);
            }
        }
    }
}

impl Catalog {
    /// Whether an `identify` with these trait names stays within `limits`. Allocation-free when
    /// every name is known.
    pub fn check_traits<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
        limits: &SchemaLimits,
    ) -> Result<()> {
        past_limit(
            names,
            |n| self.trait_ids.contains_key(n),
            self.traits.len(),
            (SchemaLimit::TraitNames, limits.trait_names),
            &"the store",
            "trait names",
        )
    }

    /// Whether a `track` of `event` with these property names stays within `limits`.
    /// Allocation-free when the event and every property name are known for it.
    pub fn check_event<'a>(
        &self,
        event: &str,
        props: impl Iterator<Item = &'a str> + Clone,
        limits: &SchemaLimits,
    ) -> Result<()> {
        let info = self
            .event_ids
            .get(event)
            .map(|&id| &self.events[id as usize]);
        if info.is_none() && self.events.len() >= limits.event_names {
            return Err(over_limit(
                SchemaLimit::EventNames,
                limits.event_names,
                format!(
                    "the store has {} distinct event names and {event:?} would be a new one",
                    self.events.len()
                ),
            ));
        }
        let known_for_event = |n: &str| match (self.prop_ids.get(n), info) {
            (Some(p), Some(info)) => info.props.contains_key(p),
            _ => false,
        };
        let had = info.map_or(0, |i| i.props.len());
        past_limit(
            props.clone(),
            known_for_event,
            had,
            (SchemaLimit::PropertiesPerEvent, limits.properties_per_event),
            &format_args!("event {event:?}"),
            "property names",
        )?;
        // Names new to this event may be new to the store too.
        past_limit(
            props,
            |n| self.prop_ids.contains_key(n),
            self.props.len(),
            (SchemaLimit::PropertyNames, limits.property_names),
            &"the store",
            "property names",
        )
    }

    /// Zeroes an event's counts (before recounting them from stored data). Property types stay.
    pub fn reset_counts(&mut self, event: u32) {
        if let Some(info) = self.events.get_mut(event as usize) {
            info.count = 0;
            for p in info.props.values_mut() {
                p.count = 0;
            }
        }
    }
}

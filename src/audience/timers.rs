//! When each customer's membership of one saved audience may next change by time alone.
//!
//! Two levels, so that a million customers cost little: instants on the *open* day (the day of
//! the audiences' current time, and any earlier) are kept exactly, one entry per customer;
//! later ones only by day, in a roaring bitmap per day. When a day opens, its customers are
//! re-evaluated and get exact instants (or a later day). A customer may sit in a day bitmap it no
//! longer needs (it was rescheduled since): re-evaluating it then is harmless and drops it.
//!
//! This module is plain data; it knows nothing of rules or storage.

use std::collections::{BTreeMap, BTreeSet};

use roaring::RoaringBitmap;

use crate::error::{corrupt, Result};
use crate::model::time::{Timestamp, DAY_MS};
use crate::model::FastMap;

#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    /// Customers due on a later day than the open one, by day.
    days: BTreeMap<u32, Day>,
    /// Exact instants on the open day or before, with the reverse map to replace them.
    exact: BTreeSet<(Timestamp, u32)>,
    due: FastMap<u32, Timestamp>,
    open_day: u32,
}

/// The customers due on one later day: a bitmap, and those added since it was last folded into
/// it. A write adds a few customers to each of many audiences' days, and adding a few to a large
/// bitmap is a search and a shift (or a copy) each time; so they wait in a short list, folded in
/// when it grows long and whenever the day is read whole. Never empty in [`Timers::days`].
#[derive(Debug, Clone, Default)]
struct Day {
    set: RoaringBitmap,
    /// Not sorted; may repeat customers, and customers of `set`.
    added: Vec<u32>,
}

/// How many added customers a day holds before folding them into its bitmap.
const FOLD_AT: usize = 1024;

impl Day {
    fn add(&mut self, custs: impl IntoIterator<Item = u32>) {
        self.added.extend(custs);
        if self.added.len() >= FOLD_AT {
            self.fold();
        }
    }

    fn fold(&mut self) {
        if !self.added.is_empty() {
            self.added.sort_unstable();
            let added: RoaringBitmap = self.added.drain(..).collect();
            self.set |= added;
        }
    }

    /// Every customer of the day, folded.
    fn into_set(mut self) -> RoaringBitmap {
        self.fold();
        self.set
    }

    fn remove(&mut self, cust: u32) {
        self.set.remove(cust);
        self.added.retain(|&c| c != cust);
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.added.is_empty()
    }

    fn len(&self) -> u64 {
        let added: RoaringBitmap = self.added.iter().copied().collect();
        self.set.len() + (&added - &self.set).len()
    }
}

/// The day of an instant, for any instant (clamped to the `u32` range).
fn day(t: Timestamp) -> u32 {
    u32::try_from(t.max(0) / DAY_MS).unwrap_or(u32::MAX)
}

impl Timers {
    pub fn new(now: Timestamp) -> Timers {
        Timers {
            open_day: day(now),
            ..Timers::default()
        }
    }

    /// Sets (or with `None` clears) the customer's next instant.
    pub fn schedule(&mut self, cust: u32, next: Option<Timestamp>) {
        if let Some(old) = self.due.remove(&cust) {
            self.exact.remove(&(old, cust));
        }
        if let Some(t) = next {
            let d = day(t);
            if d <= self.open_day {
                self.exact.insert((t, cust));
                self.due.insert(cust, t);
            } else {
                self.days.entry(d).or_default().add([cust]);
            }
        }
    }

    /// [`Timers::schedule`] for many customers (each at most once): the same timers, with the
    /// later days' customers added day by day.
    pub fn schedule_all(&mut self, next: impl IntoIterator<Item = (u32, Option<Timestamp>)>) {
        let next = next.into_iter();
        let mut later: Vec<(u32, u32)> = Vec::with_capacity(next.size_hint().0);
        for (cust, t) in next {
            // Most audiences' timers are all on later days: no exact entry to look for.
            if !self.due.is_empty() {
                if let Some(old) = self.due.remove(&cust) {
                    self.exact.remove(&(old, cust));
                }
            }
            let Some(t) = t else {
                continue;
            };
            let d = day(t);
            if d <= self.open_day {
                self.exact.insert((t, cust));
                self.due.insert(cust, t);
            } else {
                later.push((d, cust));
            }
        }
        later.sort_unstable();
        for run in later.chunk_by(|a, b| a.0 == b.0) {
            self.days
                .entry(run[0].0)
                .or_default()
                .add(run.iter().map(|&(_, c)| c));
        }
    }

    /// Removes every timer of the customer (deleted).
    pub fn forget(&mut self, cust: u32) {
        self.schedule(cust, None);
        for b in self.days.values_mut() {
            b.remove(cust);
        }
        self.days.retain(|_, b| !b.is_empty());
    }

    /// Takes the customers whose instant is at or before `now`, and those of every day that
    /// `now` opens (they must be re-evaluated and rescheduled).
    pub fn take_due(&mut self, now: Timestamp) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let today = day(now);
        if today > self.open_day {
            self.open_day = today;
            let later = self.days.split_off(&today.saturating_add(1));
            for (_, b) in std::mem::replace(&mut self.days, later) {
                out |= b.into_set();
            }
        }
        while let Some(&(t, cust)) = self.exact.first() {
            if t > now {
                break;
            }
            self.exact.pop_first();
            self.due.remove(&cust);
            out.insert(cust);
        }
        out
    }

    /// The earliest instant anything is due (day entries count from their day's start).
    pub fn earliest(&self) -> Option<Timestamp> {
        let exact = self.exact.first().map(|(t, _)| *t);
        let day = self
            .days
            .first_key_value()
            .map(|(d, _)| i64::from(*d) * DAY_MS);
        match (exact, day) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers held: exact entries plus day entries.
    pub fn len(&self) -> u64 {
        self.exact.len() as u64 + self.days.values().map(|b| b.len()).sum::<u64>()
    }

    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.open_day.to_le_bytes());
        out.extend_from_slice(&(self.exact.len() as u64).to_le_bytes());
        for (t, c) in &self.exact {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.extend_from_slice(&(self.days.len() as u64).to_le_bytes());
        for (d, day) in &self.days {
            let folded;
            let b = if day.added.is_empty() {
                &day.set
            } else {
                folded = day.clone().into_set();
                &folded
            };
            out.extend_from_slice(&d.to_le_bytes());
            out.extend_from_slice(&(b.serialized_size() as u64).to_le_bytes());
            b.serialize_into(&mut *out)?;
        }
        Ok(())
    }

    pub fn decode(r: &mut &[u8]) -> Result<Timers> {
        let mut t = Timers {
            open_day: u32::from_le_bytes(take(r)?),
            ..Timers::default()
        };
        for _ in 0..u64::from_le_bytes(take(r)?) {
            let ts = i64::from_le_bytes(take(r)?);
            let cust = u32::from_le_bytes(take(r)?);
            t.exact.insert((ts, cust));
            t.due.insert(cust, ts);
        }
        for _ in 0..u64::from_le_bytes(take(r)?) {
            let d = u32::from_le_bytes(take(r)?);
            let b = take_bitmap(r)?;
            t.days.insert(
                d,
                Day {
                    set: b,
                    added: Vec::new(),
                },
            );
        }
        Ok(t)
    }
}

/// Reads a fixed number of bytes.
pub(crate) fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N]> {
    if r.len() < N {
        return Err(corrupt!("audience record cut short"));
    }
    let (head, rest) = r.split_at(N);
    *r = rest;
    head.try_into()
        .map_err(|_| corrupt!("audience record cut short"))
}

/// Reads a length-prefixed roaring bitmap.
pub(crate) fn take_bitmap(r: &mut &[u8]) -> Result<RoaringBitmap> {
    let len =
        usize::try_from(u64::from_le_bytes(take(r)?)).map_err(|_| corrupt!("bad bitmap length"))?;
    if r.len() < len {
        return Err(corrupt!("audience record cut short"));
    }
    let (head, rest) = r.split_at(len);
    *r = rest;
    RoaringBitmap::deserialize_from(head).map_err(|e| corrupt!("bad bitmap: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_today_and_by_day_later() {
        let now = 10 * DAY_MS + 5;
        let mut t = Timers::new(now);
        t.schedule(1, Some(now + 10));
        t.schedule(2, Some(12 * DAY_MS + 7));
        t.schedule(3, Some(now + 20));
        t.schedule(3, Some(now + 30)); // replaces
        assert_eq!(t.len(), 3);
        assert!(t.take_due(now + 9).is_empty());
        assert_eq!(t.take_due(now + 25).iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.take_due(now + 30).iter().collect::<Vec<_>>(), vec![3]);
        // Day 12 opens: customer 2 is due for re-evaluation (not yet at its instant).
        assert!(t.take_due(11 * DAY_MS + 1).is_empty());
        assert_eq!(t.take_due(12 * DAY_MS).iter().collect::<Vec<_>>(), vec![2]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn schedule_all_is_schedule_one_by_one() {
        let now = 10 * DAY_MS + 5;
        let start: Vec<(u32, Option<Timestamp>)> = (0..300u32)
            .map(|c| (c, Some(now + i64::from(c % 7) * DAY_MS / 2 + i64::from(c))))
            .collect();
        let again: Vec<(u32, Option<Timestamp>)> = (0..600u32)
            .step_by(3)
            .map(|c| {
                let t = match c % 4 {
                    0 => None,
                    1 => Some(now + i64::from(c)),
                    _ => Some(now + i64::from(c % 5) * DAY_MS + 1),
                };
                (c, t)
            })
            .collect();
        let (mut one, mut all) = (Timers::new(now), Timers::new(now));
        for (c, t) in start.iter().chain(&again) {
            one.schedule(*c, *t);
        }
        all.schedule_all(start);
        all.schedule_all(again);
        let mut a = Vec::new();
        let mut b = Vec::new();
        one.encode(&mut a).unwrap();
        all.encode(&mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(one.due, all.due);
        // Taking what is due day by day gives the same customers.
        for d in 10..16 {
            assert_eq!(one.take_due(d * DAY_MS + 1), all.take_due(d * DAY_MS + 1));
        }
    }

    #[test]
    fn a_day_with_many_additions_holds_each_customer_once() {
        let now = 10 * DAY_MS + 5;
        let later = 12 * DAY_MS + 7;
        let mut t = Timers::new(now);
        // Past the folding threshold, each customer twice, some forgotten on the way.
        for round in 0..2 {
            t.schedule_all((0..3000u32).map(|c| (c, Some(later + i64::from(round)))));
            t.forget(7 + round);
        }
        t.schedule(2999, Some(later));
        t.schedule(5000, Some(later));
        t.forget(4000); // never scheduled
                        // 7 was forgotten, then scheduled again; 8 forgotten last.
        let expected: RoaringBitmap = (0..3000u32).filter(|&c| c != 8).chain([5000]).collect();
        assert_eq!(t.len(), expected.len());
        let mut bytes = Vec::new();
        t.encode(&mut bytes).unwrap();
        let mut back = Timers::decode(&mut &bytes[..]).unwrap();
        assert_eq!(back.len(), expected.len());
        assert_eq!(t.take_due(12 * DAY_MS), expected);
        assert_eq!(back.take_due(12 * DAY_MS), expected);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn forget_and_round_trip() {
        let mut t = Timers::new(0);
        t.schedule(1, Some(5));
        t.schedule(2, Some(3 * DAY_MS));
        t.schedule(3, Some(4 * DAY_MS));
        t.forget(2);
        let mut bytes = Vec::new();
        t.encode(&mut bytes).unwrap();
        let mut r = &bytes[..];
        let back = Timers::decode(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(back.len(), 2);
        assert_eq!(back.earliest(), Some(5));
        assert!(Timers::decode(&mut &bytes[..bytes.len() - 1]).is_err());
    }
}

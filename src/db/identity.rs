//! Identity merge: two ids found to be one person (an `alias` message, or a message carrying both
//! `anonymousId` and `userId`) become one customer within a write.
//!
//! The customer of the `userId` survives (it is made if new); the other one, with every id it
//! had, is folded into it: its ids map to the survivor from then on, its pending changes in the
//! write and its stored records move over when the write is prepared (`write.rs`:
//! `Work::absorbed`, `ProfileOp::Absorb`), and the indexes and saved audiences forget it once the
//! write is committed. A merge is part of the write that carries it: one atomic, durable commit.
//!
//! [`Ids`] is the write's view of the id map: the stored map (read-only under the writer lock)
//! with this write's new customers and merges laid over it, so later messages of the same write
//! find the merged customer. [`Merge`] checks the guard rails (`Config::max_ids_per_customer`,
//! `Config::allow_known_merge`) before it changes anything: a refused merge
//! ([`Error::MergeRefused`]) leaves the write as it was.
//!
//! Moves events only through storage's event API (`Store::events`, `Store::remove_events`,
//! `Store::write_events`), never by key.

use roaring::RoaringBitmap;

use super::write::{ProfileOp, WorkMap};
use super::Config;
use crate::error::{invalid, Error, Result};
use crate::model::FastMap;
use crate::storage::{IdMap, Store, WriteBatch};

/// The id map as one write sees it: the stored map with the write's changes over it.
pub(super) struct Ids<'a> {
    known: &'a IdMap,
    /// Ids this write maps to a customer: new customers' and merged customers' ids.
    local: FastMap<String, u32>,
    /// New customers of this write and their own ids.
    new_own: FastMap<u32, String>,
    /// The aliases of every customer whose aliases this write changes.
    aliases: FastMap<u32, Vec<String>>,
    /// Stored customers merged into others by this write.
    removed: RoaringBitmap,
}

impl<'a> Ids<'a> {
    pub(super) fn new(known: &'a IdMap) -> Ids<'a> {
        Ids {
            known,
            local: FastMap::default(),
            new_own: FastMap::default(),
            aliases: FastMap::default(),
            removed: RoaringBitmap::new(),
        }
    }

    /// The customer an id belongs to, with this write's changes.
    pub(super) fn resolve(&self, id: &str) -> Option<u32> {
        match self.local.get(id) {
            Some(&c) => Some(c),
            None => self.known.get(id),
        }
    }

    /// The customer of `id`, made with the next internal id if there is none; and whether it is
    /// new.
    pub(super) fn resolve_or_add(&mut self, id: &str, next_id: &mut u32) -> Result<(u32, bool)> {
        if let Some(c) = self.resolve(id) {
            return Ok((c, false));
        }
        let c = *next_id;
        *next_id = next_id
            .checked_add(1)
            .ok_or_else(|| invalid!("the database holds the most customers it can"))?;
        self.local.insert(id.to_owned(), c);
        self.new_own.insert(c, id.to_owned());
        Ok((c, true))
    }

    /// A customer's own id (that of its `r` record).
    fn own_id(&self, c: u32) -> Option<&str> {
        self.new_own
            .get(&c)
            .map(String::as_str)
            .or_else(|| self.known.external(c))
    }

    /// A customer's aliases, with this write's changes.
    fn aliases_of(&self, c: u32) -> Vec<String> {
        match self.aliases.get(&c) {
            Some(a) => a.clone(),
            None => self.known.aliases(c).to_vec(),
        }
    }

    fn id_count(&self, c: u32) -> usize {
        1 + self
            .aliases
            .get(&c)
            .map_or_else(|| self.known.aliases(c).len(), Vec::len)
    }

    /// Hands the changed aliases to the customers' work, adds the new customers' id records to
    /// `batch`, and returns the new customers (in internal id order) and the stored customers
    /// merged away.
    pub(super) fn finish(
        self,
        work: &mut WorkMap,
        batch: &mut WriteBatch,
    ) -> (Vec<(String, u32)>, RoaringBitmap) {
        for (c, list) in self.aliases {
            work.entry(c).or_default().aliases = Some(list);
        }
        let mut new: Vec<(String, u32)> = self.new_own.into_iter().map(|(c, e)| (e, c)).collect();
        new.sort_unstable_by_key(|(_, c)| *c);
        for (external, c) in &new {
            batch.put_id(external, *c);
        }
        (new, self.removed)
    }
}

/// One merge within a write: what it reads and the settings that guard it.
pub(super) struct Merge<'a> {
    pub(super) store: &'a Store,
    pub(super) config: &'a Config,
}

impl Merge<'_> {
    /// Merges the customer of `previous` into that of `user` (made if new). Returns whether
    /// anything changed: `false` when the two ids are one customer already. Refused, with
    /// nothing changed, past the id limit or between two known customers.
    pub(super) fn run(
        &self,
        ids: &mut Ids<'_>,
        work: &mut WorkMap,
        next_id: &mut u32,
        previous: &str,
        user: &str,
    ) -> Result<bool> {
        let a = ids.resolve(previous);
        let b = ids.resolve(user);
        if a.is_some() && a == b {
            return Ok(false);
        }
        let limit = self.config.max_ids_per_customer;
        let count = a.map_or(1, |a| ids.id_count(a)) + b.map_or(1, |b| ids.id_count(b));
        if count > limit {
            return Err(Error::MergeRefused(format!(
                "merging {previous:?} into {user:?} would give one customer {count} ids; \
                 the limit is {limit} (max_ids_per_customer)"
            )));
        }
        if let (Some(a), Some(b)) = (a, b) {
            if !self.config.allow_known_merge
                && !self.anonymous(a, work)?
                && !self.anonymous(b, work)?
            {
                return Err(Error::MergeRefused(format!(
                    "{previous:?} and {user:?} are two known customers (each has a userId); \
                     merging them is allowed only with allow_known_merge"
                )));
            }
        }
        let (b, b_new) = ids.resolve_or_add(user, next_id)?;
        let mut moved_ids = Vec::new();
        let mut absorbed = None;
        match a {
            None => moved_ids.push(previous.to_owned()),
            Some(a) => {
                moved_ids.extend(ids.own_id(a).map(str::to_owned));
                moved_ids.extend(ids.aliases_of(a));
                let mut wa = work.remove(&a).unwrap_or_default();
                if !wa.is_new {
                    // The merged customer's stored message ids go with it.
                    let before = match wa.seen_before.take() {
                        Some(s) => s,
                        None => self.store.seen_messages(a)?,
                    };
                    wa.seen_now.extend(before);
                    ids.removed.insert(a);
                } else {
                    ids.new_own.remove(&a);
                }
                ids.aliases.remove(&a);
                absorbed = Some((a, wa));
            }
        }
        let wb = work.entry(b).or_default();
        wb.is_new |= b_new;
        // Known from now on: the id it is merged under is a userId.
        wb.anonymous = Some(false);
        if let Some((a, mut wa)) = absorbed {
            if wb.seen_before.is_none() {
                wb.seen_before = Some(if wb.is_new {
                    Vec::new()
                } else {
                    self.store.seen_messages(b)?
                });
            }
            wb.seen_now.extend(wa.seen_now.drain());
            wb.events.append(&mut wa.events);
            wb.trait_updates.push(ProfileOp::Absorb(wb.absorbed.len()));
            wa.aliases = None;
            wa.anonymous = None;
            wb.absorbed.push((a, *wa));
        }
        let mut list = ids.aliases_of(b);
        for id in moved_ids {
            ids.local.insert(id.clone(), b);
            list.push(id);
        }
        ids.aliases.insert(b, list);
        Ok(true)
    }

    /// Whether a customer is known only by anonymous ids, with this write's changes.
    fn anonymous(&self, c: u32, work: &WorkMap) -> Result<bool> {
        match work.get(&c) {
            Some(w) if w.anonymous.is_some() => Ok(w.anonymous == Some(true)),
            Some(w) if w.is_new => Ok(false),
            _ => self.store.is_anonymous(c),
        }
    }
}

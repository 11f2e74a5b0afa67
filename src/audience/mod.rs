//! Saved audiences: named rules whose members are kept, and kept true as data arrives and time
//! passes, so that "which audiences is this customer in?" is one short list (`by_customer`,
//! the members' inverse, kept with them).
//!
//! - A definition (name, rule text, times) is stored as JSON under its name; its rule is parsed
//!   once and lives in the read state, where `in audience NAME` finds it.
//! - Each audience's members are a roaring bitmap, with `timers::Timers` saying when each
//!   customer's membership may next change by time alone. After a write, only the customers it
//!   touched are re-evaluated, and only for audiences whose rules read what changed (their
//!   `Footprint`), found through `readers::Readers` (audiences by event and trait read) at a
//!   cost that follows the write, not the number of audiences. Time moves the audiences when
//!   the writer runs or `Db::advance_audiences` is called: due timers are re-evaluated at the
//!   new *now*; only audiences whose earliest timer is due (`Live::wake`) are looked at.
//! - Every entry and exit goes to the `feed`: stored, numbered, and handed to subscribers.
//! - Members and timers are snapshotted at checkpoints. On open, the feed after each snapshot is
//!   replayed onto its members, and the customers written since the index snapshot are
//!   re-evaluated, so a crash loses nothing and the feed misses no change.
//!
//! Invariant: at the audiences' time `as_of`, every saved audience's members equal a fresh
//! evaluation of its rule at `as_of` (`Db::verify` checks it).
//!
//! This module owns definitions (their records; the parsed rules live in the read state,
//! `query::ReadState`), members, timers and the feed. It is handed the store and the read state
//! explicitly (`Env`) and does not know the database handle; the changes take an `Upkeep`,
//! which only the holder of the writer lock has. It reads customer data and indexes only
//! through the query engine, and writes records only through `storage::WriteBatch`.

mod by_customer;
pub(crate) mod feed;
mod names;
mod readers;
mod timers;
mod traits;

pub use feed::{Change, Subscription, SUBSCRIBER_BUFFER};
pub use names::{AudienceNames, Names};
pub use traits::{check_trait_name, ComputedTraitInfo, MAX_TRAIT_NAME_LEN};
pub(crate) use traits::{fit_trait, get as computed_trait, list as computed_traits};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::error::{corrupt, internal, invalid, Error, Result};
use crate::index::Indexes;
use crate::ingest::message::check_customer_id;
use crate::model::time::{day_of, Clock, Timestamp};
use crate::model::{FastMap, FastSet, StoredEvent};
use crate::query::due::{self, DueAnswer, DueDays};
use crate::query::footprint::{self, Footprint};
use crate::query::plan::{self, Plan};
use crate::query::settle::{self, SettledSome};
use crate::query::subset::{self, Ask, Context, SubsetAnswer};
use crate::query::{
    self, Audience, Definition, Definitions, LoadedList, PreparedRule, ReadState, Warnings,
};
use crate::storage::{meta, IdMap, Store, WriteBatch};

use by_customer::ByCustomer;
use feed::Subscribers;
use names::NameOrder;
use readers::Readers;
use timers::{take, take_bitmap, Timers};

/// Whether a write's own events may decide audiences without reading the customer
/// ([`crate::testing::settle_writes`]).
pub(crate) static SETTLE_WRITES: AtomicBool = AtomicBool::new(true);

/// Whether the written customers the events do not settle are asked of the indexes before they
/// are read ([`crate::testing::settle_by_indexes`]).
pub(crate) static BY_INDEXES: AtomicBool = AtomicBool::new(true);

/// The longest audience name.
pub const MAX_NAME_LEN: usize = 64;

/// A saved audience as listed and shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudienceInfo {
    pub name: String,
    /// The rule as written when saved; for a loaded list, `(a loaded list of N ids)`.
    pub rule: String,
    /// Members now (as of `as_of`).
    pub size: u64,
    /// When the audience was first saved.
    pub created: Timestamp,
    /// When its rule was last saved.
    pub rule_changed: Timestamp,
    /// For a loaded list (`audience load`): how many ids it holds (`None`: a rule's audience).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_ids: Option<u64>,
    /// When a customer last entered or left it (`None`: never since it was saved).
    pub members_changed: Option<Timestamp>,
    /// The time its members are exact at.
    pub as_of: Timestamp,
    /// Customers with a pending time-driven re-evaluation.
    pub timers: u64,
    /// The earliest of those (a customer waiting on a later day counts from that day's start;
    /// one set from the indexes may be up to two seconds before the customer's edge, never after).
    pub next_check: Option<Timestamp>,
}

/// What saving a new rule under a name would change, before it is saved.
#[derive(Debug, Clone)]
pub struct AudienceDiff {
    pub name: String,
    /// The new rule.
    pub rule: String,
    /// The time both sides are evaluated at (the audiences' `as_of`).
    pub now: Timestamp,
    /// Members under the saved rule (0 for a new name).
    pub before: u64,
    /// Members under the new rule.
    pub after: u64,
    pub entering: Audience,
    pub leaving: Audience,
    pub elapsed: Duration,
}

#[derive(Serialize, Deserialize)]
struct StoredDefinition {
    id: u32,
    name: String,
    rule: String,
    created: Timestamp,
    changed: Timestamp,
    /// A loaded list: its ids are in their own record (`Store::audience_list`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    list: bool,
}

/// A loaded list's rule: itself, which plans to the list's members.
fn list_rule(name: &str) -> Result<PreparedRule> {
    PreparedRule::new(&format!("in audience {name}"))
}

/// A loaded list's ids as stored: one per line, sorted.
fn encode_list(list: &LoadedList) -> Vec<u8> {
    let mut ids: Vec<&str> = list.ids().iter().map(|id| &**id).collect();
    ids.sort_unstable();
    ids.join("\n").into_bytes()
}

fn decode_list(name: &str, bytes: &[u8]) -> Result<FastSet<Box<str>>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| corrupt!("loaded list {name}: ids are not UTF-8"))?;
    Ok(text
        .split('\n')
        .filter(|id| !id.is_empty())
        .map(Box::from)
        .collect())
}

/// The ids of a list file's text, one per line, as `audience load` reads them: spaces around an
/// id and a Windows line end trimmed, blank lines skipped. Checking them is
/// [`crate::Db::load_audience`]'s.
pub fn ids_of_list_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks a list's ids: at least one, each a valid customer id (non-empty, not over-long)
/// without a line break.
pub fn check_list_ids(ids: &FastSet<Box<str>>) -> Result<()> {
    if ids.is_empty() {
        return Err(invalid!("the list holds no ids"));
    }
    for id in ids {
        if id.contains(['\n', '\r']) {
            return Err(invalid!("the id {id:?} holds a line break"));
        }
        check_customer_id(id).map_err(|e| invalid!("{e}: {id:?}"))?;
    }
    Ok(())
}

fn load_definitions(store: &Store, map: &IdMap) -> Result<Definitions> {
    let mut defs = Definitions::default();
    traits::load(store, &mut defs)?;
    for item in store.audience_definitions() {
        let v = item?;
        let s: StoredDefinition =
            serde_json::from_slice(&v).map_err(|e| corrupt!("bad audience definition: {e}"))?;
        let rule = PreparedRule::new(&s.rule)
            .map_err(|e| corrupt!("saved audience {} no longer parses: {e}", s.name))?;
        let list = if s.list {
            let bytes = store
                .audience_list(s.id)?
                .ok_or_else(|| corrupt!("loaded list {} has no ids record", s.name))?;
            Some(Arc::new(LoadedList::new(
                decode_list(&s.name, &bytes)?,
                map,
            )))
        } else {
            None
        };
        defs.insert(Arc::new(Definition {
            id: s.id,
            name: s.name,
            rule,
            list,
            created: s.created,
            changed: s.changed,
        }));
    }
    Ok(defs)
}

/// The loaded lists holding any of `ids` (a customer's, being deleted), without them: their
/// records are put in `batch`, and the definitions returned go into the read state once it is
/// committed, so that a deleted customer's ids leave every list (and a later customer with one
/// of those ids does not join it).
pub(crate) fn lists_without(
    defs: &Definitions,
    ids: &[&str],
    batch: &mut WriteBatch,
) -> Vec<Arc<Definition>> {
    let mut out = Vec::new();
    for d in defs.iter() {
        let Some(kept) = d.list.as_ref().and_then(|l| l.without(ids)) else {
            continue;
        };
        let kept = Arc::new(kept);
        batch.put_audience_list(d.id, encode_list(&kept));
        out.push(Arc::new(Definition {
            id: d.id,
            name: d.name.clone(),
            rule: d.rule.clone(),
            list: Some(kept),
            created: d.created,
            changed: d.changed,
        }));
    }
    out
}

/// One audience's members and timers.
#[derive(Debug)]
struct LiveAudience {
    name: String,
    members: RoaringBitmap,
    timers: Timers,
    members_changed: Option<Timestamp>,
    /// Changed since its last snapshot.
    dirty: bool,
    /// Its entry in [`Live::wake`], if any.
    wake_at: Option<Timestamp>,
}

/// Every audience's members, the audiences' time, and the feed's positions.
#[derive(Debug, Default)]
struct Live {
    as_of: Timestamp,
    by_id: BTreeMap<u32, LiveAudience>,
    /// The sequence number the next change gets (changes are numbered from 1).
    next_seq: u64,
    /// The oldest sequence number still stored.
    first_seq: u64,
    /// When each audience with timers must next be looked at, as (instant, audience id): at or
    /// before its earliest timer (never later), so that a write looks only at the audiences
    /// whose timers are due, not at every audience.
    wake: BTreeSet<(Timestamp, u32)>,
    /// The audiences by what they read; `None` once the definitions changed, built again by
    /// the next maintenance.
    readers: Option<Arc<Readers>>,
    /// The inverse of the members (customer → its audiences), changed with them.
    by_customer: ByCustomer,
    /// The audiences' names by id in name order, rebuilt when audiences are saved or dropped.
    names: NameOrder,
}

impl Live {
    /// Rebuilds [`Live::names`] after audiences were saved or dropped.
    fn index_names(&mut self) {
        self.names = NameOrder::new(self.by_id.iter().map(|(&id, la)| (id, la.name.as_str())));
    }

    /// Puts audience `id`'s entry in `wake` at its earliest timer.
    fn rewake(&mut self, id: u32) {
        let Some(la) = self.by_id.get_mut(&id) else {
            return;
        };
        let next = la.timers.earliest();
        if la.wake_at != next {
            if let Some(old) = la.wake_at {
                self.wake.remove(&(old, id));
            }
            if let Some(t) = next {
                self.wake.insert((t, id));
            }
            la.wake_at = next;
        }
    }

    /// Takes the audiences whose wake-up instant is at or before `now`.
    fn take_woken(&mut self, now: Timestamp) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(&(t, id)) = self.wake.first() {
            if t > now {
                break;
            }
            self.wake.pop_first();
            if let Some(la) = self.by_id.get_mut(&id) {
                la.wake_at = None;
            }
            out.push(id);
        }
        out
    }
}

/// The materialised side of saved audiences, held by the database handle.
pub(crate) struct Audiences {
    live: RwLock<Live>,
    subscribers: Subscribers,
    settle_stats: Mutex<SettleStats>,
}

/// Counts, over the writes since the database was opened, of what the writes' own events
/// decided (for benchmarks: how much reading they saved).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SettleStats {
    /// (audience, customer) pairs to answer for a customer who got events.
    pub pairs: u64,
    /// Of those, answered from the written events alone.
    pub forced: u64,
    /// Of those, left as kept (the events cannot have moved the answer).
    pub unchanged: u64,
    /// Of those, answered from the indexes (kept totals, day bitmaps, spans) without a read.
    pub by_indexes: u64,
    /// Customers who got events.
    pub customers: u64,
    /// Of those, the ones still read for some audience.
    pub customers_read: u64,
}

impl SettleStats {
    fn add(&mut self, o: &SettleStats) {
        self.pairs += o.pairs;
        self.forced += o.forced;
        self.unchanged += o.unchanged;
        self.by_indexes += o.by_indexes;
        self.customers += o.customers;
        self.customers_read += o.customers_read;
    }
}

/// What one write changed, customer by customer: who is new, which traits changed for whom,
/// who got which events. Customers in `all` count as changed in every way (recovery: what was
/// written is not known). A new customer's traits and events are in `traits` and `events` too.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub all: RoaringBitmap,
    pub new: RoaringBitmap,
    /// Customers who gained an external id (every new customer, ids merged into them): rules
    /// that read the ids (`bucket(NAME)`, loaded lists) are asked about them.
    pub ids: RoaringBitmap,
    pub traits: FastMap<u32, RoaringBitmap>,
    pub events: FastMap<u32, RoaringBitmap>,
    /// The events stored for each customer (its own, and those moved from customers merged
    /// into it): a rule they decide by themselves is answered without reading the customer.
    pub written: FastMap<u32, Vec<StoredEvent>>,
}

/// One audience to bring up to date in a maintenance pass: its footprint and which customers.
type Todo = (Arc<Definition>, Arc<Footprint>, RoaringBitmap);

fn ask((d, fp, custs): &Todo) -> Ask<'_> {
    Ask {
        rule: d.rule.rule(),
        fp,
        custs,
    }
}

/// Entries and exits of customers from audiences, in order, before they get their numbers:
/// each is (the audience's place in `names`, customer, entered), so that a new audience's many
/// first members cost no copy of its name each.
#[derive(Debug, Default)]
struct Flips {
    names: Vec<String>,
    items: Vec<(u32, u32, bool)>,
}

impl Flips {
    /// Adds the entries of `entered`, then the exits of `left`, each in customer order, to the
    /// audience `name`.
    fn add(&mut self, name: &str, entered: &RoaringBitmap, left: &RoaringBitmap) {
        if entered.is_empty() && left.is_empty() {
            return;
        }
        let n = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.items.extend(entered.iter().map(|c| (n, c, true)));
        self.items.extend(left.iter().map(|c| (n, c, false)));
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Puts into `batch` the feed records of `flips` numbered from `first`, with the customers'
/// external ids from `ids` (records of [`feed::CHUNK`] changes, encoded in parallel straight from
/// the ids), the feed's next position and the audiences' time; returns the position after them.
fn flips_to_batch(
    batch: &mut WriteBatch,
    ids: &IdMap,
    flips: &Flips,
    first: u64,
    now: Timestamp,
) -> Result<u64> {
    let records: Vec<Vec<u8>> = flips
        .items
        .par_chunks(feed::CHUNK)
        .map(|run| {
            let parts = run
                .iter()
                .map(|&(n, cust, entered)| {
                    let customer = ids
                        .external(cust)
                        .ok_or_else(|| corrupt!("customer {cust} has no external id"))?;
                    Ok((now, entered, flips.names[n as usize].as_str(), customer))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(feed::encode_chunk_parts(parts.into_iter()))
        })
        .collect::<Result<_>>()?;
    for (start, bytes) in (first..).step_by(feed::CHUNK).zip(records) {
        batch.put_feed_chunk(start, bytes);
    }
    let next = first + flips.len() as u64;
    if !flips.is_empty() {
        batch.put_meta_u64(meta::FEED_NEXT, next);
    }
    batch.put_meta_u64(meta::AUDIENCES_AS_OF, now.max(0) as u64);
    Ok(next)
}

/// Checks an audience name: the rule language's plain names, at most [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(invalid!(
            "audience name {name:?}: use letters, digits and '_', starting with a letter or '_'"
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid!(
            "audience name {name:?} is longer than {MAX_NAME_LEN} bytes"
        ));
    }
    Ok(())
}

impl Audiences {
    /// Loads definitions, members and timers, replays the feed after each snapshot, and
    /// returns the definitions for the read state and the one [`Upkeep`], for the writer.
    /// Members are cut to the customers that exist.
    pub(crate) fn load(
        store: &Store,
        indexes: &Indexes,
        ids: &IdMap,
    ) -> Result<(Definitions, Audiences, Upkeep)> {
        let defs = load_definitions(store, ids)?;
        let mut live = Live {
            as_of: store.meta_u64(meta::AUDIENCES_AS_OF)? as Timestamp,
            ..Live::default()
        };
        let mut replay_from = u64::MAX;
        // By name: the audience's id and the first feed position its snapshot does not hold.
        let mut snapshots: FastMap<String, (u32, u64)> = FastMap::default();
        for d in defs.iter() {
            let bytes = store
                .audience_state(d.id)?
                .ok_or_else(|| corrupt!("saved audience {} has no members record", d.name))?;
            let snap = Snapshot::decode(&bytes)?;
            live.as_of = live.as_of.max(snap.as_of);
            replay_from = replay_from.min(snap.next_seq);
            snapshots.insert(d.name.clone(), (d.id, snap.next_seq));
            live.by_id.insert(
                d.id,
                LiveAudience {
                    name: d.name.clone(),
                    members: snap.members,
                    timers: snap.timers,
                    members_changed: snap.members_changed,
                    dirty: false,
                    wake_at: None,
                },
            );
        }
        live.index_names();
        // The feed: its bounds, and the changes made after each audience's snapshot.
        migrate_feed_v1(store)?;
        live.first_seq = match store.feed_chunks().next() {
            Some(item) => item?.0,
            None => 0,
        };
        live.next_seq = match store.last_feed_chunk()? {
            Some((first, v)) => first + feed::chunk_len(&v)?,
            None => store.meta_u64(meta::FEED_NEXT)?.max(1),
        };
        if live.first_seq == 0 {
            live.first_seq = live.next_seq;
        }
        if replay_from < live.next_seq {
            read_feed(store, replay_from, |c| {
                let Some(&(id, from)) = snapshots.get(c.audience.as_str()) else {
                    return Ok(true);
                };
                let (Some(cust), Some(la)) = (ids.get(&c.customer), live.by_id.get_mut(&id)) else {
                    return Ok(true);
                };
                if c.seq >= from {
                    if c.entered {
                        la.members.insert(cust);
                    } else {
                        la.members.remove(cust);
                    }
                    la.members_changed = Some(c.at);
                    la.dirty = true;
                }
                Ok(true)
            })?;
        }
        let ids: Vec<u32> = live.by_id.keys().copied().collect();
        for id in ids {
            if let Some(la) = live.by_id.get_mut(&id) {
                la.members &= &indexes.everyone;
                live.by_customer.insert_all(id, &la.members);
            }
            live.rewake(id);
        }
        Ok((
            defs,
            Audiences {
                live: RwLock::new(live),
                subscribers: Subscribers::default(),
                settle_stats: Mutex::default(),
            },
            Upkeep(()),
        ))
    }

    /// Audiences holding these members (ids 0, 1, ... in order) and nothing else: no
    /// definitions, timers or feed. For measuring `audiences_of` at a scale no test shop
    /// reaches ([`crate::testing::MembersOnly`]).
    pub(crate) fn with_members(members: Vec<(String, RoaringBitmap)>) -> Audiences {
        let mut live = Live::default();
        for (id, (name, members)) in (0u32..).zip(members) {
            live.by_customer.insert_all(id, &members);
            let la = LiveAudience {
                name,
                members,
                timers: Timers::default(),
                members_changed: None,
                dirty: false,
                wake_at: None,
            };
            live.by_id.insert(id, la);
        }
        live.index_names();
        Audiences {
            live: RwLock::new(live),
            subscribers: Subscribers::default(),
            settle_stats: Mutex::default(),
        }
    }

    /// The audiences' time.
    pub(crate) fn as_of(&self) -> Timestamp {
        self.live.read().as_of
    }

    /// Adds to a checkpoint's batch the snapshots of the audiences changed since theirs, the
    /// audiences' time, and the removal of feed entries beyond `capacity`. Returns what to
    /// call [`Audiences::checkpointed`] with once the batch is durable.
    pub(crate) fn checkpoint(
        &self,
        store: &Store,
        batch: &mut WriteBatch,
        capacity: u64,
    ) -> Result<(Vec<u32>, u64)> {
        let live = self.live.read();
        let mut written = Vec::new();
        for (id, la) in live.by_id.iter().filter(|(_, la)| la.dirty) {
            batch.put_audience_state(*id, Snapshot::encode(la, live.as_of, live.next_seq)?);
            written.push(*id);
        }
        batch.put_meta_u64(meta::AUDIENCES_AS_OF, live.as_of.max(0) as u64);
        batch.put_meta_u64(meta::FEED_NEXT, live.next_seq);
        // Whole records go: the oldest kept one may hold up to `CHUNK - 1` changes more.
        let keep_from = live.next_seq.saturating_sub(capacity);
        let mut first = live.next_seq;
        for item in store.feed_chunks() {
            let (start, v) = item?;
            if start + feed::chunk_len(&v)? > keep_from {
                first = start;
                break;
            }
            batch.remove_feed_chunk(start);
        }
        Ok((written, first))
    }

    pub(crate) fn checkpointed(&self, (written, first_seq): (Vec<u32>, u64)) {
        let mut live = self.live.write();
        for id in written {
            if let Some(la) = live.by_id.get_mut(&id) {
                la.dirty = false;
            }
        }
        live.first_seq = first_seq;
    }
}

/// Decodes a saved audience's members-and-timers record; for [`crate::fuzzing`].
pub(crate) fn decode_state_record(bytes: &[u8]) -> Result<u64> {
    Snapshot::decode(bytes).map(|s| s.members.len() + s.timers.len())
}

/// Decodes a change-feed record stored under position `first`; for [`crate::fuzzing`].
pub(crate) fn decode_feed_record(first: u64, bytes: &[u8]) -> Result<u64> {
    let mut n = 0;
    feed::decode_chunk(first, bytes, |_| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// An audience's members and timers as stored at a checkpoint.
struct Snapshot {
    as_of: Timestamp,
    /// The feed's next sequence number when it was taken: later changes are not in it.
    next_seq: u64,
    members_changed: Option<Timestamp>,
    members: RoaringBitmap,
    timers: Timers,
}

impl Snapshot {
    fn encode(la: &LiveAudience, as_of: Timestamp, next_seq: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(32 + la.members.serialized_size());
        out.extend_from_slice(&as_of.to_le_bytes());
        out.extend_from_slice(&next_seq.to_le_bytes());
        out.extend_from_slice(&la.members_changed.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&(la.members.serialized_size() as u64).to_le_bytes());
        la.members.serialize_into(&mut out)?;
        la.timers.encode(&mut out)?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let mut r = bytes;
        let as_of = i64::from_le_bytes(take(&mut r)?);
        let next_seq = u64::from_le_bytes(take(&mut r)?);
        let changed = i64::from_le_bytes(take(&mut r)?);
        let members = take_bitmap(&mut r)?;
        let timers = Timers::decode(&mut r)?;
        if !r.is_empty() {
            return Err(corrupt!("audience members record has trailing bytes"));
        }
        Ok(Snapshot {
            as_of,
            next_seq,
            members_changed: (changed != i64::MIN).then_some(changed),
            members,
            timers,
        })
    }
}

/// What saved audiences work against besides their own state: the store, the read state (whose
/// definitions saving and dropping change), the clock and the bulk threshold. The database
/// handle lends one for each call.
pub(crate) struct Env<'a> {
    pub store: &'a Store,
    pub state: &'a RwLock<ReadState>,
    pub clock: &'a Clock,
    /// See [`crate::Config::audience_bulk_from`].
    pub bulk_from: u64,
    /// See [`crate::Config::audience_due_days_from`].
    pub due_days_from: usize,
    /// See [`crate::Config::audience_write_days_from`].
    pub write_days_from: usize,
}

impl<'a> Env<'a> {
    /// What [`subset`] evaluates against: the store, `state`'s names and indexes, and the saved
    /// rules `saved` (the read state's, or an edited copy).
    fn subset_context(&self, state: &'a ReadState, saved: &'a Definitions) -> Context<'a> {
        Context {
            store: self.store,
            catalog: &state.catalog,
            indexes: &state.indexes,
            ids: &state.ids,
            saved,
            bulk_from: self.bulk_from,
        }
    }
}

/// The right to change saved audiences (members, timers, the feed, definitions). One is made
/// when the audiences are loaded, and the database's writer keeps it: a `&mut Upkeep` can only
/// be had under the writer lock, so the methods that change audiences take one as proof.
pub(crate) struct Upkeep(());

fn audience_id(state: &ReadState, name: &str) -> Result<u32> {
    state
        .definitions
        .get(name)
        .map(|d| d.id)
        .ok_or_else(|| Error::NotFound(format!("audience {name:?}")))
}

/// The rule saved under `name`, or [`Error::NotFound`].
pub(crate) fn saved_rule(state: &ReadState, name: &str) -> Result<PreparedRule> {
    state
        .definitions
        .get(name)
        .map(|d| d.rule.clone())
        .ok_or_else(|| Error::NotFound(format!("audience {name:?}")))
}

impl Audiences {
    /// Saves an audience: `rule` under `name`, replacing the rule saved under that name if any.
    /// The rule is checked (it parses, every audience it names exists, no cycle) before
    /// anything changes. Its members are computed at the audiences' time and kept from then on;
    /// each entry and exit (against the old rule's members, or every member for a new name) goes
    /// to the change feed. Audiences that name this one are recomputed with it. `name` has
    /// passed [`check_name`] and `prepared` is the rule as written.
    pub(crate) fn define(
        &self,
        up: &mut Upkeep,
        env: &Env<'_>,
        name: &str,
        prepared: PreparedRule,
        list: Option<Arc<LoadedList>>,
    ) -> Result<AudienceInfo> {
        self.maintain(up, env, None)?;
        let now = self.as_of();
        let state = env.state.read();
        if let Some(old) = state.definitions.get(name) {
            match (old.list.is_some(), list.is_some()) {
                (true, false) => {
                    return Err(invalid!(
                    "audience {name} is a loaded list: drop it before saving a rule under its name"
                ))
                }
                (false, true) => {
                    return Err(invalid!(
                        "audience {name} has a rule: drop it before loading a list under its name"
                    ))
                }
                _ => {}
            }
        }
        // A name with two readings is saved as the one it has today, so that what is stored
        // later cannot change the audience's meaning.
        let prepared = prepared.pinned(&state.catalog, &state.indexes, &state.definitions)?;
        traits::refuse_predictive(prepared.rule(), &state.definitions)?;
        let old = state.definitions.get(name).cloned();
        let new_id = match &old {
            Some(d) => d.id,
            None => u32::try_from(env.store.meta_u64(meta::NEXT_AUDIENCE)?)
                .map_err(|_| invalid!("too many audiences have been saved"))?,
        };
        let def = Arc::new(Definition {
            id: new_id,
            name: name.to_owned(),
            rule: prepared,
            list,
            created: old.as_ref().map_or(now, |d| d.created),
            changed: now,
        });
        let mut defs = state.definitions.clone();
        defs.insert(def.clone());
        let mut redo = vec![def.clone()];
        if old.is_some() {
            redo.extend(
                defs.dependents(name)
                    .iter()
                    .filter_map(|n| defs.get(n).cloned()),
            );
        }
        let cx = env.subset_context(&state, &defs);
        // The new rule is planned first: unknown audiences and cycles fail there, before
        // anything is written (and whatever the answer plans: an ask about nobody is not).
        let answers: Vec<SubsetAnswer> = redo
            .iter()
            .map(|d| {
                plan::plan(d.rule.rule(), cx.catalog, cx.indexes, cx.saved, now)?;
                let fp = Footprint::of(d.rule.rule(), &defs);
                let ask = Ask {
                    rule: d.rule.rule(),
                    fp: &fp,
                    custs: &state.indexes.everyone,
                };
                subset::answer(&cx, &ask, now)
            })
            .collect::<Result<_>>()?;

        let mut flips = Flips::default();
        let mut fresh = Vec::new();
        let first = {
            let live = self.live.read();
            for (d, a) in redo.iter().zip(answers) {
                let before = live.by_id.get(&d.id);
                let empty = RoaringBitmap::new();
                let old_members = before.map_or(&empty, |la| &la.members);
                let at = flips.len();
                flips.add(
                    &d.name,
                    &(&a.members - old_members),
                    &(old_members - &a.members),
                );
                let mut timers = Timers::new(now);
                timers.schedule_all(a.next);
                let changed = if flips.len() > at {
                    Some(now)
                } else {
                    before.and_then(|la| la.members_changed)
                };
                fresh.push((
                    d.id,
                    LiveAudience {
                        name: d.name.clone(),
                        members: a.members,
                        timers,
                        members_changed: changed,
                        dirty: false,
                        wake_at: None,
                    },
                ));
            }
            live.next_seq
        };
        let next_seq = first + flips.len() as u64;
        let mut batch = WriteBatch::new();
        let stored = StoredDefinition {
            id: def.id,
            name: def.name.clone(),
            rule: def.rule.text().to_owned(),
            created: def.created,
            changed: def.changed,
            list: def.list.is_some(),
        };
        if let Some(list) = &def.list {
            batch.put_audience_list(def.id, encode_list(list));
        }
        batch.put_audience(
            name,
            serde_json::to_vec(&stored).map_err(|e| internal!("audience definition: {e}"))?,
        );
        for (id, la) in &fresh {
            batch.put_audience_state(*id, Snapshot::encode(la, now, next_seq)?);
        }
        if old.is_none() {
            batch.put_meta_u64(meta::NEXT_AUDIENCE, u64::from(new_id) + 1);
        }
        flips_to_batch(&mut batch, &state.ids, &flips, first, now)?;
        env.store.commit(batch)?;
        drop(state);

        env.state.write().definitions = defs;
        {
            let mut live = self.live.write();
            for (id, la) in fresh {
                let empty = RoaringBitmap::new();
                let old = live.by_id.get(&id).map_or(&empty, |o| &o.members);
                let (left, entered) = (old - &la.members, &la.members - old);
                live.by_customer.remove_all(id, &left);
                live.by_customer.insert_all(id, &entered);
                if let Some(old) = live.by_id.insert(id, la) {
                    if let Some(t) = old.wake_at {
                        live.wake.remove(&(t, id));
                    }
                }
                live.rewake(id);
            }
            live.index_names();
            live.next_seq = next_seq;
            live.readers = None;
        }
        self.deliver_flips(env.state, &flips, first, now);
        self.get(&env.state.read(), name)
    }

    /// Loads a member list produced elsewhere under `name`: the customers with these external
    /// ids (their own or merged into them), now and as they arrive. A new name is saved like a
    /// rule; loading again under the same name replaces the ids, with the entries and exits in
    /// the feed and the audiences naming it recomputed. Refused for a name that holds a rule.
    pub(crate) fn load_list(
        &self,
        up: &mut Upkeep,
        env: &Env<'_>,
        name: &str,
        ids: FastSet<Box<str>>,
    ) -> Result<AudienceInfo> {
        check_name(name)?;
        check_list_ids(&ids)?;
        // The writer's lock (`up`) keeps the id map as it is until the list is saved.
        let list = Arc::new(LoadedList::new(ids, &env.state.read().ids));
        self.define(up, env, name, list_rule(name)?, Some(list))
    }

    /// Drops a saved audience. Refused, with their names, while other audiences name it.
    /// Its members are not reported as leaving; its past changes stay in the feed.
    pub(crate) fn drop_audience(&self, _: &mut Upkeep, env: &Env<'_>, name: &str) -> Result<()> {
        let id = {
            let state = env.state.read();
            let def = state
                .definitions
                .get(name)
                .ok_or_else(|| Error::NotFound(format!("audience {name:?}")))?;
            let users = state.definitions.dependents(name);
            if !users.is_empty() {
                return Err(invalid!(
                    "audience {name} is used by {}: change or drop {} first",
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                ));
            }
            def.id
        };
        let mut batch = WriteBatch::new();
        batch.remove_audience(name);
        batch.remove_audience_state(id);
        batch.remove_audience_list(id);
        env.store.commit(batch)?;
        env.state.write().definitions.remove(name);
        let mut live = self.live.write();
        if let Some(la) = live.by_id.remove(&id) {
            if let Some(t) = la.wake_at {
                live.wake.remove(&(t, id));
            }
            live.by_customer.remove_all(id, &la.members);
        }
        live.index_names();
        live.readers = None;
        Ok(())
    }

    /// Every saved audience, by name.
    pub(crate) fn list(&self, state: &ReadState) -> Vec<AudienceInfo> {
        let live = self.live.read();
        state
            .definitions
            .iter()
            .filter_map(|d| info(d, &live))
            .collect()
    }

    /// One saved audience, or [`Error::NotFound`].
    pub(crate) fn get(&self, state: &ReadState, name: &str) -> Result<AudienceInfo> {
        let live = self.live.read();
        state
            .definitions
            .get(name)
            .and_then(|d| info(d, &live))
            .ok_or_else(|| Error::NotFound(format!("audience {name:?}")))
    }

    /// A saved audience's members as kept (exact at the audiences' time).
    pub(crate) fn members(&self, state: &ReadState, name: &str) -> Result<Audience> {
        let started = Instant::now();
        let id = audience_id(state, name)?;
        let live = self.live.read();
        let la = live
            .by_id
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("audience {name:?}")))?;
        Ok(Audience::new(
            la.members.clone(),
            live.as_of,
            started.elapsed(),
        ))
    }

    /// What saving `rule` under `name` would change, computed without saving anything: the
    /// size before and after, and who would enter and leave, at the audiences' time.
    pub(crate) fn diff(&self, env: &Env<'_>, name: &str, rule: &str) -> Result<AudienceDiff> {
        check_name(name)?;
        let started = Instant::now();
        let state = env.state.read();
        let prepared =
            PreparedRule::new(rule)?.pinned(&state.catalog, &state.indexes, &state.definitions)?;
        traits::refuse_predictive(prepared.rule(), &state.definitions)?;
        let now = self.as_of();
        if state
            .definitions
            .get(name)
            .is_some_and(|d| d.list.is_some())
        {
            return Err(invalid!(
                "audience {name} is a loaded list: drop it before saving a rule under its name"
            ));
        }
        let mut defs = state.definitions.clone();
        let before = match defs.get(name) {
            Some(d) => {
                let live = self.live.read();
                live.by_id
                    .get(&d.id)
                    .map(|la| la.members.clone())
                    .unwrap_or_default()
            }
            None => RoaringBitmap::new(),
        };
        defs.insert(Arc::new(Definition {
            id: u32::MAX,
            name: name.to_owned(),
            rule: prepared.clone(),
            list: None,
            created: now,
            changed: now,
        }));
        let cx = env.subset_context(&state, &defs);
        let after = subset::members(&cx, prepared.rule(), now)?;
        let elapsed = started.elapsed();
        Ok(AudienceDiff {
            name: name.to_owned(),
            rule: prepared.text().to_owned(),
            now,
            before: before.len(),
            after: after.len(),
            entering: Audience::new(&after - &before, now, elapsed),
            leaving: Audience::new(&before - &after, now, elapsed),
            elapsed,
        })
    }

    /// The saved audiences customer `cust` is in, by name, from the kept members' inverse (its
    /// own short list: the cost follows how many audiences it is in, not how many are saved).
    pub(crate) fn of(&self, cust: u32) -> AudienceNames {
        let live = self.live.read();
        live.names.names_in_order(live.by_customer.of(cust))
    }

    /// Listens to every entry and exit from now on.
    pub(crate) fn subscribe(&self) -> Subscription {
        self.subscribers.subscribe()
    }

    /// Up to `limit` stored changes after position `after` (0: from the oldest kept), in order.
    /// A position older than the oldest kept change is an error: read the members afresh.
    pub(crate) fn changes_since(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let (first, next) = {
            let live = self.live.read();
            (live.first_seq, live.next_seq)
        };
        let from = after.saturating_add(1).max(first);
        if after != 0 && after.saturating_add(1) < first {
            return Err(invalid!(
                "position {after} is no longer in the change feed (the oldest kept is {first}): \
                 read the audiences' members afresh and resume from {}",
                next - 1
            ));
        }
        let mut out = Vec::new();
        if limit > 0 {
            read_feed(store, from, |c| {
                out.push(c);
                Ok(out.len() < limit)
            })?;
        }
        Ok(out)
    }

    /// How many subscriptions are live.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.count()
    }

    /// The position of the latest change (0 before any).
    pub(crate) fn feed_position(&self) -> u64 {
        self.live.read().next_seq - 1
    }

    /// Brings every saved audience to the clock's time (never backwards while any is saved) and,
    /// with `touched`, up to date with a write that changed those customers.
    pub(crate) fn maintain(
        &self,
        _: &mut Upkeep,
        env: &Env<'_>,
        touched: Option<&Touched>,
    ) -> Result<usize> {
        let state = env.state.read();
        if state.definitions.is_empty() {
            // No members to keep exact: the audiences' time is simply the clock's, even if it
            // went back (a backfill with a manual clock, a bench starting at a fixed date).
            self.live.write().as_of = env.clock.now();
            return Ok(0);
        }
        let now = self.as_of().max(env.clock.now());
        // For each audience to look at, the customers to re-evaluate: those whose timers are due
        // (only audiences woken by now are asked), and those the write may have changed.
        let mut custs: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        let woken = {
            let mut live = self.live.write();
            let woken = live.take_woken(now);
            if woken.is_empty() && touched.is_none() {
                // Nothing due and nothing written: time moves on, and the readers are not
                // rebuilt (saving many audiences in a row builds them once, afterwards).
                live.as_of = now;
                return Ok(0);
            }
            for &id in &woken {
                if let Some(la) = live.by_id.get_mut(&id) {
                    *custs.entry(id).or_default() |= la.timers.take_due(now);
                }
            }
            woken
        };
        let readers = match self.readers(env, &state) {
            Ok(r) => r,
            Err(e) => {
                // The woken audiences' customers are tried again at the next chance.
                let mut live = self.live.write();
                for (id, c) in &custs {
                    if let Some(la) = live.by_id.get_mut(id) {
                        c.iter().for_each(|c| la.timers.schedule(c, Some(now)));
                    }
                    live.rewake(*id);
                }
                return Err(e);
            }
        };
        // The customers the write touched are read; those only due by time are answered
        // from the indexes first, and only the ones the indexes cannot decide are read.
        let mut written: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
        if let Some(t) = touched {
            readers.touched(t, &state.catalog, &mut written);
        }
        let cx = env.subset_context(&state, &state.definitions);
        // What the write's own events decide, audience by audience: those customers are not
        // read for it (nor handed to the due path).
        let mut forced: FastMap<u32, DueAnswer> = FastMap::default();
        if let Some(t) =
            touched.filter(|t| !t.written.is_empty() && SETTLE_WRITES.load(Ordering::Relaxed))
        {
            let stats = self.settle_written(
                &cx,
                &readers,
                t,
                &mut written,
                &mut custs,
                now,
                env.write_days_from,
            );
            forced = stats.0;
            let mut s = self.settle_stats.lock();
            s.add(&stats.1);
        }
        let due: Vec<Todo> = custs
            .into_iter()
            .filter_map(|(id, mut c)| {
                if let Some(w) = written.get(&id) {
                    c -= w;
                }
                let r = readers.by_id.get(&id)?;
                (!c.is_empty()).then(|| (r.def.clone(), r.fp.clone(), c))
            })
            .collect();
        // With many audiences due, their customers' days are listed once for all of them.
        let days = (due.len() >= env.due_days_from).then(|| {
            let mut custs = RoaringBitmap::new();
            let mut events: Vec<u32> = Vec::new();
            for (_, fp, c) in &due {
                custs |= c;
                events.extend(footprint::event_ids(fp, &state.catalog));
            }
            events.sort_unstable();
            events.dedup();
            DueDays::build(&state.indexes, custs, &events, 0)
        });
        let due_answers: Vec<DueAnswer> = due
            .par_iter()
            .map(|t| {
                // A failure here leaves every due customer to the reading path, which reports it.
                due::answer_due_with(&cx, &ask(t), now, days.as_ref()).unwrap_or_else(|_| {
                    DueAnswer {
                        read: t.2.clone(),
                        ..DueAnswer::default()
                    }
                })
            })
            .collect();
        let mut decided: FastMap<u32, DueAnswer> = FastMap::default();
        for ((d, _, _), mut a) in due.iter().zip(due_answers) {
            *written.entry(d.id).or_default() |= std::mem::take(&mut a.read);
            decided.insert(d.id, a);
        }
        // The forced answers join the indexes' ones (the customers are disjoint: forced ones
        // were taken out of the due ones).
        for (id, f) in forced {
            let e = decided.entry(id).or_default();
            e.asked |= f.asked;
            e.decided.members |= f.decided.members;
            e.decided.next.extend(f.decided.next);
        }
        written.retain(|_, c| !c.is_empty());
        let mut todo: Vec<Todo> = written
            .into_iter()
            .filter_map(|(id, c)| {
                let r = readers.by_id.get(&id)?;
                Some((r.def.clone(), r.fp.clone(), c))
            })
            .collect();
        // Audiences whose due customers were all decided are settled with an empty read.
        let read: FastSet<u32> = todo.iter().map(|t| t.0.id).collect();
        for (id, _) in decided.iter() {
            if !read.contains(id) {
                if let Some(r) = readers.by_id.get(id) {
                    todo.push((r.def.clone(), r.fp.clone(), RoaringBitmap::new()));
                }
            }
        }
        // In the definitions' order (by name), as the feed has always reported them.
        todo.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        // Audiences asked about many customers go through the bitmaps, each on its own; the
        // others share one read of each customer.
        let bulk_from = env.bulk_from;
        let (many, few): (Vec<Todo>, Vec<Todo>) =
            todo.into_iter().partition(|t| t.2.len() >= bulk_from);
        let many_answers: Vec<Result<SubsetAnswer>> = many
            .par_iter()
            .map(|t| subset::answer(&cx, &ask(t), now))
            .collect();
        let few_asks: Vec<Ask<'_>> = few.iter().map(ask).collect();
        let (few_answers, few_failure) = match subset::answer_each(&cx, &few_asks, now) {
            Ok(answers) => (answers, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        drop(few_asks);
        drop(state);
        let mut flips = Flips::default();
        let mut failure = None;
        // Each audience's answer in the feed's order, or `None` when it failed (its customers
        // are tried again at the next chance), with what the indexes decided for its due
        // customers.
        let mut settled: Vec<(RoaringBitmap, Option<SubsetAnswer>)> = Vec::new();
        let mut ids: Vec<u32> = Vec::new();
        let few_answers = few_answers
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None));
        let answers = many_answers
            .into_iter()
            .map(|a| a.map_err(|e| failure.get_or_insert(e)).ok())
            .chain(few_answers);
        for ((d, _, mut custs), mut answer) in many.into_iter().chain(few).zip(answers) {
            if let Some(t) = decided.remove(&d.id) {
                custs |= &t.asked;
                if let Some(a) = &mut answer {
                    a.members |= t.decided.members;
                    a.next.extend(t.decided.next);
                }
            }
            ids.push(d.id);
            settled.push((custs, answer));
        }
        failure = failure.or(few_failure);
        {
            let mut live = self.live.write();
            let Live {
                by_id, by_customer, ..
            } = &mut *live;
            // Each audience's own timers and members, in parallel when they are many (a clock
            // step's thousands of due customers); the inverse of the members and the flips
            // after, in order.
            let place: FastMap<u32, usize> =
                ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
            let mut own: Vec<Option<&mut LiveAudience>> = ids.iter().map(|_| None).collect();
            for (id, la) in by_id.iter_mut() {
                if let Some(&i) = place.get(id) {
                    own[i] = Some(la);
                }
            }
            let pairs: u64 = settled.iter().map(|(custs, _)| custs.len()).sum();
            type Own<'a> = (
                Option<&'a mut LiveAudience>,
                (RoaringBitmap, Option<SubsetAnswer>),
            );
            let work = |(la, (custs, answer)): Own<'_>| {
                let la = la?;
                match answer {
                    Some(a) => Some(apply(la, &custs, a, now)),
                    None => {
                        custs.iter().for_each(|c| la.timers.schedule(c, Some(now)));
                        None
                    }
                }
            };
            let changed: Vec<Option<(RoaringBitmap, RoaringBitmap)>> =
                if pairs >= PARALLEL_APPLY_FROM {
                    own.into_par_iter().zip(settled).map(work).collect()
                } else {
                    own.into_iter().zip(settled).map(work).collect()
                };
            for (&id, change) in ids.iter().zip(changed) {
                let (Some((entered, left)), Some(la)) = (change, by_id.get(&id)) else {
                    continue;
                };
                flips.add(&la.name, &entered, &left);
                by_customer.remove_all(id, &left);
                by_customer.insert_all(id, &entered);
            }
            for id in ids.into_iter().chain(woken) {
                live.rewake(id);
            }
            live.as_of = now;
        }
        let n = flips.len();
        self.publish(env, &flips, now)?;
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Takes out of `written` (audience → customers to read) the customers whose answer the
    /// write's own events decide ([`settle`]): those forced are returned as answers by audience
    /// (and taken out of `due` too), those unchanged are simply dropped. A customer's kept
    /// answer counts as exact unless it is new, merged, gained an id, is due for the audience,
    /// or had a trait the audience reads changed. Returns the answers and what was counted.
    ///
    /// The audiences are settled in parallel, each rule planned once for both steps; what the
    /// events leave open is asked of the indexes, with the written customers' days listed once
    /// for all the audiences asking when at least `days_from` of them do.
    #[allow(clippy::too_many_arguments)]
    fn settle_written(
        &self,
        cx: &Context<'_>,
        readers: &Readers,
        t: &Touched,
        written: &mut BTreeMap<u32, RoaringBitmap>,
        due: &mut BTreeMap<u32, RoaringBitmap>,
        now: Timestamp,
        days_from: usize,
    ) -> (FastMap<u32, DueAnswer>, SettleStats) {
        let mut forced: FastMap<u32, DueAnswer> = FastMap::default();
        let mut stats = SettleStats::default();
        let with_events: RoaringBitmap = t.written.keys().copied().collect();
        let unsure = &(&t.all | &t.new) | &t.ids;
        let live = self.live.read();
        for custs in written.values() {
            stats.pairs += custs.intersection_len(&with_events);
        }
        // Each audience on its own: what the events decide, and what is left to ask the
        // indexes (the written customers not new, merged or given an id).
        let settled: Vec<(u32, Plan, SettledSome, RoaringBitmap)> = written
            .par_iter()
            .filter_map(|(id, custs)| {
                let (r, la) = (readers.by_id.get(id)?, live.by_id.get(id)?);
                if !settle::may_settle(&r.fp) || custs.is_disjoint(&with_events) {
                    return None;
                }
                let mut changed = unsure.clone();
                for name in &r.fp.traits {
                    if let Some(c) = cx.catalog.trait_id(name).and_then(|tr| t.traits.get(&tr)) {
                        changed |= c;
                    }
                }
                if let Some(d) = due.get(id) {
                    changed |= d;
                }
                let kept = |c: u32| (!changed.contains(c)).then(|| la.members.contains(c));
                // A failure leaves the customers to be read, which reports it.
                let plan = plan::plan(r.def.rule.rule(), cx.catalog, cx.indexes, cx.saved, now);
                let plan = plan.ok()?;
                let s = settle::settle_some(cx, &plan, &r.fp, custs, &t.written, now, kept).ok()?;
                let mut rest = RoaringBitmap::new();
                if BY_INDEXES.load(Ordering::Relaxed) {
                    rest = custs & &with_events;
                    rest -= &s.forced_custs;
                    rest -= &s.unchanged;
                    rest -= &unsure;
                }
                Some((*id, plan, s, rest))
            })
            .collect();
        drop(live);
        // Presence from the day bitmaps, counts and aggregates from the kept totals, next
        // instants from the spans, as for a tick's due customers.
        // Their days are listed from the earliest cut of the asking audiences' windows: a
        // look-up of an earlier day (`ever`, `before`, fixed dates) passes over the day bitmaps.
        let asking = settled.iter().filter(|s| !s.3.is_empty()).count();
        let days = (asking > 0 && asking >= days_from).then(|| {
            let mut custs = RoaringBitmap::new();
            let mut events: Vec<u32> = Vec::new();
            let mut longest = 0;
            for (id, _, _, rest) in settled.iter().filter(|s| !s.3.is_empty()) {
                custs |= rest;
                if let Some(r) = readers.by_id.get(id) {
                    events.extend(footprint::event_ids(&r.fp, cx.catalog));
                    longest = longest.max(r.fp.longest());
                }
            }
            events.sort_unstable();
            events.dedup();
            let from = day_of(now.saturating_sub(longest));
            DueDays::build(cx.indexes, custs, &events, from)
        });
        let by_indexes: Vec<Option<DueAnswer>> = settled
            .par_iter()
            .map(|(id, plan, _, rest)| {
                let r = readers.by_id.get(id).filter(|_| !rest.is_empty())?;
                let ask = Ask {
                    rule: r.def.rule.rule(),
                    fp: &r.fp,
                    custs: rest,
                };
                Some(due::answer_due_planned(cx, &ask, plan, now, days.as_ref()))
            })
            .collect();
        for ((id, _, s, _), a) in settled.into_iter().zip(by_indexes) {
            let Some(custs) = written.get_mut(&id) else {
                continue;
            };
            stats.forced += s.forced_custs.len();
            stats.unchanged += s.unchanged.len();
            *custs -= &s.forced_custs;
            *custs -= &s.unchanged;
            let mut answer = DueAnswer {
                decided: s.forced,
                asked: s.forced_custs,
                read: RoaringBitmap::new(),
            };
            if let Some(a) = a {
                stats.by_indexes += a.asked.len();
                *custs -= &a.asked;
                answer.asked |= a.asked;
                answer.decided.members |= a.decided.members;
                answer.decided.next.extend(a.decided.next);
            }
            if let Some(d) = due.get_mut(&id) {
                *d -= &answer.asked;
            }
            if !answer.asked.is_empty() {
                forced.insert(id, answer);
            }
        }
        let mut read = RoaringBitmap::new();
        for custs in written.values() {
            read |= custs;
        }
        stats.customers = with_events.len();
        stats.customers_read = read.intersection_len(&with_events);
        (forced, stats)
    }

    /// What the writes so far decided by themselves ([`SettleStats`]).
    pub(crate) fn settle_stats(&self) -> SettleStats {
        *self.settle_stats.lock()
    }

    /// The audiences by what they read, built from the read state's definitions when they
    /// changed since the last build.
    fn readers(&self, env: &Env<'_>, state: &ReadState) -> Result<Arc<Readers>> {
        if let Some(r) = &self.live.read().readers {
            return Ok(r.clone());
        }
        let cx = env.subset_context(state, &state.definitions);
        let r = Arc::new(Readers::build(&state.definitions, &cx, self.as_of())?);
        self.live.write().readers = Some(r.clone());
        Ok(r)
    }

    /// Removes deleted (or merged away) customers from every audience, reported as exits under
    /// the external id given, and their timers; the exits are stored in one durable write.
    pub(crate) fn forget(
        &self,
        _: &mut Upkeep,
        store: &Store,
        customers: &[(u32, &str)],
    ) -> Result<()> {
        let now = self.as_of();
        let mut names = Vec::new();
        {
            let mut live = self.live.write();
            let Live {
                by_id, by_customer, ..
            } = &mut *live;
            for &(cust, external) in customers {
                let was_in = by_customer.take(cust);
                for (id, la) in by_id.iter_mut() {
                    la.timers.forget(cust);
                    if was_in.binary_search(id).is_ok() && la.members.remove(cust) {
                        la.members_changed = Some(now);
                        names.push((la.name.clone(), external));
                    }
                    la.dirty = true;
                }
            }
        }
        let first = self.live.read().next_seq;
        let changes: Vec<Change> = names
            .into_iter()
            .zip(first..)
            .map(|((audience, external), seq)| Change {
                seq,
                audience,
                customer: external.to_owned(),
                entered: false,
                at: now,
            })
            .collect();
        // One durable write for them all.
        self.store_and_deliver(store, changes, now)
    }

    /// Stores the flips of a maintenance pass durably as the feed's next changes, advances the
    /// feed, and hands them to subscribers.
    fn publish(&self, env: &Env<'_>, flips: &Flips, now: Timestamp) -> Result<()> {
        if flips.is_empty() {
            return Ok(());
        }
        let first = self.live.read().next_seq;
        let mut batch = WriteBatch::new();
        let next = flips_to_batch(&mut batch, &env.state.read().ids, flips, first, now)?;
        env.store.commit(batch)?;
        self.live.write().next_seq = next;
        self.deliver_flips(env.state, flips, first, now);
        Ok(())
    }

    /// Hands `flips`, numbered from `first`, to the subscribers; the changes are made only
    /// when someone listens.
    fn deliver_flips(&self, state: &RwLock<ReadState>, flips: &Flips, first: u64, now: Timestamp) {
        if flips.is_empty() || self.subscribers.count() == 0 {
            return;
        }
        let changes: Vec<Change> = {
            let state = state.read();
            flips
                .items
                .iter()
                .zip(first..)
                .filter_map(|(&(n, cust, entered), seq)| {
                    Some(Change {
                        seq,
                        audience: flips.names[n as usize].clone(),
                        customer: state.ids.external(cust)?.to_owned(),
                        entered,
                        at: now,
                    })
                })
                .collect()
        };
        self.subscribers.deliver(&changes);
    }

    /// Makes numbered changes durable, advances the feed, and hands them to subscribers.
    fn store_and_deliver(&self, store: &Store, changes: Vec<Change>, now: Timestamp) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        feed_records(&mut batch, &changes, now);
        store.commit(batch)?;
        if let Some(last) = changes.last() {
            self.live.write().next_seq = last.seq + 1;
        }
        self.subscribers.deliver(&changes);
        Ok(())
    }

    /// For verification: each saved audience whose kept members differ from a fresh
    /// evaluation of its rule at the audiences' time.
    pub(crate) fn problems(&self, env: &Env<'_>) -> Result<Vec<String>> {
        let (defs, now) = (env.state.read().definitions.clone(), self.as_of());
        let mut problems = Vec::new();
        {
            let live = self.live.read();
            let held: u64 = live.by_id.values().map(|la| la.members.len()).sum();
            let listed = live.by_customer.len();
            let missing = live
                .by_id
                .iter()
                .flat_map(|(id, la)| la.members.iter().map(move |c| (c, *id)))
                .filter(|(c, id)| live.by_customer.of(*c).binary_search(id).is_err())
                .count();
            if held != listed || missing > 0 {
                problems.push(format!(
                    "audiences' per-customer lists: {listed} memberships listed, {held} in the \
                     members ({missing} members not listed)"
                ));
            }
        }
        for d in defs.iter() {
            let fresh =
                query::run(env.state, env.store, &d.rule, now, Warnings::Skipped)?.into_bitmap();
            let live = self.live.read();
            let kept = live.by_id.get(&d.id).map(|la| &la.members);
            if kept != Some(&fresh) {
                let kept = kept.cloned().unwrap_or_default();
                problems.push(format!(
                    "audience {}: {} kept members, {} by a fresh evaluation ({} missing, {} extra)",
                    d.name,
                    kept.len(),
                    fresh.len(),
                    (&fresh - &kept).len(),
                    (&kept - &fresh).len()
                ));
            }
        }
        Ok(problems)
    }
}

/// From how many (audience, customer) pairs answered at once [`Audiences::maintain`] applies
/// the audiences' answers in parallel (below, the hand-off costs more than it saves).
const PARALLEL_APPLY_FROM: u64 = 4096;

/// Applies one audience's answer for the customers asked about to its members and timers;
/// returns who entered and who left (for the flips and the inverse of the members).
fn apply(
    la: &mut LiveAudience,
    asked: &RoaringBitmap,
    a: SubsetAnswer,
    now: Timestamp,
) -> (RoaringBitmap, RoaringBitmap) {
    la.dirty = true;
    la.timers.schedule_all(a.next);
    let before = &la.members & asked;
    let entered = &a.members - &before;
    let left = &before - &a.members;
    if !entered.is_empty() || !left.is_empty() {
        la.members -= &left;
        la.members |= &entered;
        la.members_changed = Some(now);
    }
    (entered, left)
}

/// Calls `f` with each stored change from position `from` on, in order, until it returns
/// `false`.
fn read_feed(store: &Store, from: u64, mut f: impl FnMut(Change) -> Result<bool>) -> Result<()> {
    // The record holding `from` starts at most `CHUNK - 1` positions before it.
    let start = from.saturating_sub(feed::CHUNK as u64 - 1);
    for item in store.feed_chunks_from(start) {
        let (first, v) = item?;
        let go_on = feed::decode_chunk(first, &v, |c| if c.seq < from { Ok(true) } else { f(c) })?;
        if !go_on {
            break;
        }
    }
    Ok(())
}

/// Rewrites a feed stored one record per change (before chunks) as chunks, in one batch.
fn migrate_feed_v1(store: &Store) -> Result<()> {
    let mut batch = WriteBatch::new();
    let mut run: Vec<Change> = Vec::new();
    let mut any = false;
    for item in store.feed_v1_records() {
        let (seq, v) = item?;
        let c = Change::decode(seq, &v)?;
        batch.remove_feed_v1(seq);
        any = true;
        let follows = run.last().is_some_and(|last| last.seq + 1 == c.seq);
        if !run.is_empty() && (!follows || run.len() == feed::CHUNK) {
            batch.put_feed_chunk(run[0].seq, feed::encode_chunk(&run));
            run.clear();
        }
        run.push(c);
    }
    if let Some(first) = run.first() {
        batch.put_feed_chunk(first.seq, feed::encode_chunk(&run));
    }
    if any {
        store.commit(batch)?;
    }
    Ok(())
}

fn feed_records(batch: &mut WriteBatch, changes: &[Change], now: Timestamp) {
    for run in changes.chunks(feed::CHUNK) {
        batch.put_feed_chunk(run[0].seq, feed::encode_chunk(run));
    }
    if let Some(last) = changes.last() {
        batch.put_meta_u64(meta::FEED_NEXT, last.seq + 1);
    }
    batch.put_meta_u64(meta::AUDIENCES_AS_OF, now.max(0) as u64);
}

fn info(d: &Definition, live: &Live) -> Option<AudienceInfo> {
    let la = live.by_id.get(&d.id)?;
    Some(AudienceInfo {
        name: d.name.clone(),
        rule: match &d.list {
            Some(l) => format!("(a loaded list of {} ids)", l.ids().len()),
            None => d.rule.text().to_owned(),
        },
        list_ids: d.list.as_ref().map(|l| l.ids().len() as u64),
        size: la.members.len(),
        created: d.created,
        rule_changed: d.changed,
        members_changed: la.members_changed,
        as_of: live.as_of,
        timers: la.timers.len(),
        next_check: la.timers.earliest(),
    })
}

#[cfg(test)]
mod tests {
    use super::feed::tests::change;
    use super::*;

    fn read_all(store: &Store, from: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        read_feed(store, from, |c| {
            seqs.push(c.seq);
            Ok(true)
        })
        .unwrap();
        seqs
    }

    #[test]
    fn the_feed_reads_from_any_position_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let n = feed::CHUNK as u64 * 2 + 5;
        let changes: Vec<Change> = (1..=n).map(|s| change(s, &format!("c{s}"))).collect();
        let mut batch = WriteBatch::new();
        feed_records(&mut batch, &changes, 0);
        store.commit(batch).unwrap();
        assert_eq!(store.feed_chunks().count(), 3, "three records");
        for from in [1, 2, feed::CHUNK as u64, feed::CHUNK as u64 + 1, n, n + 1] {
            assert_eq!(read_all(&store, from), (from..=n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_feed_of_one_record_per_change_becomes_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        // Positions 5..=1030 and, after a gap, 2000..=2002.
        let seqs: Vec<u64> = (5..=1030).chain(2000..=2002).collect();
        let mut batch = WriteBatch::new();
        for &seq in &seqs {
            let c = change(seq, &format!("c{seq}"));
            batch.put_feed_v1(seq, c.encode());
        }
        store.commit(batch).unwrap();
        migrate_feed_v1(&store).unwrap();
        assert_eq!(store.feed_v1_records().count(), 0);
        let starts: Vec<u64> = store.feed_chunks().map(|i| i.unwrap().0).collect();
        assert_eq!(starts, [5, 5 + feed::CHUNK as u64, 2000]);
        let mut back = Vec::new();
        read_feed(&store, 0, |c| {
            back.push(c);
            Ok(true)
        })
        .unwrap();
        let expected: Vec<Change> = seqs.iter().map(|&s| change(s, &format!("c{s}"))).collect();
        assert_eq!(back, expected);
        migrate_feed_v1(&store).unwrap(); // nothing left to do
        assert_eq!(store.feed_chunks().count(), 3);
    }
}

//! The write path: one writer at a time, and writes that arrive together committed together.
//!
//! [`Writer`] is what only the holder of the writer lock may change: the generation, the id
//! counter, the customers touched since the last checkpoint. One is made at open and moved into
//! `Db::writer`, so a `&mut Writer` comes only from that lock's guard: every step that must run
//! under the lock is a method of `Writer` (here, and the checkpoints in `recovery.rs`), and the
//! types prove the lock is held.
//!
//! [`submit`] is group commit: writers that find the lock taken queue their batches, and the next
//! holder stores them all in one atomic, durable write ([`Writer::ingest`]) and answers each. A
//! write resolves ids (folding customers found to be one person into one: `identity.rs`, whose
//! stored records `prepare_customer` moves), drops duplicate message ids, merges events into
//! time-ordered blocks (`prepare_customer`, storage's timeline), commits everything with a
//! dirty-log record ([`Writer::commit`]), and applies the change to the read state, which no
//! reader sees before the commit is durable: a large write's index changes are applied under the
//! state's write lock while its commit runs on a thread of its own, and the lock is let go only
//! once the commit is durable (a failed commit has those customers' indexes recomputed from
//! storage). Then it keeps saved audiences up to date.
//!
//! Writes records only through `storage::WriteBatch` (no key layout here) and hands the indexes
//! grouped `index::Changes`; it never reads index internals.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rayon::prelude::*;
use roaring::RoaringBitmap;

use super::identity::{Ids, Merge};
use super::{Db, IngestReport, Outcome};
use crate::audience::{self, Touched, Upkeep};
use crate::error::{internal, invalid, Error, Result};
use crate::index::Changes;
use crate::ingest::message::{check_customer_id, Body, Message};
use crate::model::time::{self, Timestamp};
use crate::model::{FastSet, Fields, StoredEvent, Value};
use crate::storage::codec;
use crate::storage::dictionary;
use crate::storage::timeline::time_blocks;
use crate::storage::{meta, BlockDictionary, Catalog, SchemaLimits, WriteBatch};

/// About how many bytes an event takes in an uncompressed block body (the generated shop's
/// average): sizes dictionary training samples before encoding them.
const BODY_BYTES_PER_EVENT: usize = 25;

/// A checkpoint comes at the latest once the writes since the last one have touched this many
/// times `Config::checkpoint_after` customers, each counted once per write ([`Writer`]).
pub(super) const REPEAT_TOUCHES: u64 = 16;

/// A write touching at least this many customers frees its records on rayon's pool.
const BACKGROUND_DROP_FROM: usize = 64;

/// What only the holder of the writer lock changes. Made once, at open, and kept in
/// `Db::writer`: a `&mut Writer` proves that the writer lock is held.
pub(crate) struct Writer {
    pub(super) generation: u64,
    pub(super) next_id: u32,
    /// The customers written since the last index snapshot: the ones an open after a crash
    /// recomputes (the dirty log names them). A checkpoint comes once they are
    /// `Config::checkpoint_after`: the recovery work is per customer, however many writes
    /// touched each (a time-ordered import touches most customers in every batch)...
    pub(super) touched_since_checkpoint: RoaringBitmap,
    /// ... or once the writes since it have touched [`REPEAT_TOUCHES`] times as many, counting
    /// a customer again in each write: that bounds the dirty log (a record per write) an open
    /// reads, where a few customers are written over and over (a server's stream).
    pub(super) touches_since_checkpoint: u64,
    /// The right to change saved audiences, which only the writer has.
    pub(super) upkeep: Upkeep,
}

/// A batch waiting to be committed with others, and where its answer goes.
pub(super) struct PendingWrite {
    messages: Vec<Message>,
    /// Whether messages over a schema limit are refused one by one ([`Db::ingest_lenient`])
    /// rather than failing the whole batch.
    lenient: bool,
    /// When it was handed in: the time of its messages that carry none.
    arrival: Timestamp,
    answer: Arc<Mutex<Option<Result<Outcome>>>>,
}

/// A customer's pending changes within one write.
#[derive(Default)]
pub(super) struct Work {
    pub(super) is_new: bool,
    pub(super) identified: bool,
    /// Changes to the profile, in the order the write makes them.
    pub(super) trait_updates: Vec<ProfileOp>,
    pub(super) events: Vec<StoredEvent>,
    /// Hashes of the message ids stored before this write (sorted), once needed: those of its
    /// message-id record and its unfolded ones (`Store::seen_messages`), as merges need them.
    pub(super) seen_before: Option<Vec<u64>>,
    /// The hashes of its message-id record alone (sorted), read by the duplicate check when
    /// `seen_before` is not (the unfolded ones are looked up in place: copying and sorting
    /// them for every write took 16% of a time-ordered import's writer thread).
    pub(super) seen_stored: Option<Vec<u64>>,
    /// Hashes of the message ids this write stores (those of customers merged into this one
    /// included).
    pub(super) seen_now: FastSet<u64>,
    /// Customers merged into this one in this write, each with its own pending changes: their
    /// stored records move here when the write is prepared ([`ProfileOp::Absorb`] says when
    /// their traits join).
    pub(super) absorbed: Vec<(u32, Work)>,
    /// Its aliases, when this write changes them ([`super::identity`]).
    pub(super) aliases: Option<Vec<String>>,
    /// Whether it is anonymous, when this write sets that (a new customer, a merge).
    pub(super) anonymous: Option<bool>,
}

/// Each customer's pending changes within one write, by internal id. Boxed: a time-ordered
/// write touches tens of thousands of customers, and the map's nodes stay small (its lookups,
/// one per message, and the move into the parallel preparation were an eighth of the writer
/// thread's time with the changes held in the nodes).
pub(super) type WorkMap = BTreeMap<u32, Box<Work>>;

/// One change to a profile within a write.
pub(super) enum ProfileOp {
    /// Sets (`Some`) or removes a trait.
    Set(u32, Option<Value>),
    /// The profile of `Work::absorbed[i]` fills in the traits this one does not have: the
    /// surviving customer's traits win where both are set.
    Absorb(usize),
}

/// A customer's applied changes, for the in-memory indexes.
struct Applied {
    cust: u32,
    is_new: bool,
    /// Its aliases, when the write changed them.
    aliases: Option<Vec<String>>,
    profile: Option<(Option<Fields>, Fields)>,
    /// Its new events: the write's own and those moved from the customers merged into it.
    events: Vec<StoredEvent>,
    /// The stored customers merged into it, whose records this write removes.
    removed: Vec<Removed>,
}

/// A stored customer merged into another: what the indexes and saved audiences must forget.
pub(super) struct Removed {
    pub(super) cust: u32,
    pub(super) external: String,
    pub(super) profile: Option<Fields>,
    pub(super) events: Vec<StoredEvent>,
}

/// Stores a batch for [`Db::ingest`] and [`Db::ingest_lenient`], committed together with the
/// batches other threads queue meanwhile (group commit).
pub(super) fn submit(db: &Db, messages: Vec<Message>, lenient: bool) -> Result<Outcome> {
    for m in &messages {
        check_message(m)?;
    }
    let answer: Arc<Mutex<Option<Result<Outcome>>>> = Arc::default();
    db.pending.lock().push(PendingWrite {
        messages,
        lenient,
        arrival: db.config.clock.now(),
        answer: answer.clone(),
    });
    let mut w = db.writer.lock();
    // Only a holder of the write lock takes queued writes, and it answers them all before
    // letting go: so either ours was answered, or it is still queued.
    if let Some(done) = answer.lock().take() {
        return done;
    }
    let mut group = std::mem::take(&mut *db.pending.lock());
    let mut all = Vec::with_capacity(group.iter().map(|p| p.messages.len()).sum());
    let mut owners = Vec::with_capacity(all.capacity());
    let mut lens = Vec::with_capacity(group.len());
    let arrivals: Vec<Timestamp> = group.iter().map(|p| p.arrival).collect();
    let lenient: Vec<bool> = group.iter().map(|p| p.lenient).collect();
    for (i, p) in group.iter_mut().enumerate() {
        owners.extend(std::iter::repeat_n(i, p.messages.len()));
        lens.push(p.messages.len());
        all.append(&mut p.messages);
    }
    let mut committing = false;
    if group.len() == 1 {
        *group[0].answer.lock() = Some(
            w.ingest(db, all, &owners, &arrivals, &lenient, &mut committing)
                .map(|mut r| r.remove(0)),
        );
    } else {
        // Kept in case the group fails before its commit (no ids left, a read error), so
        // that each write can then be committed alone and get the outcome it would have had
        // alone.
        let copy = all.clone();
        match w.ingest(db, all, &owners, &arrivals, &lenient, &mut committing) {
            Ok(reports) => {
                for (p, r) in group.iter().zip(reports) {
                    *p.answer.lock() = Some(Ok(r));
                }
            }
            Err(e) if committing => {
                // The storage failed under the whole group: every write gets the error.
                for p in &group {
                    *p.answer.lock() = Some(Err(e.clone()));
                }
            }
            Err(_) => {
                let mut rest = copy.into_iter();
                for (p, n) in group.iter().zip(lens) {
                    let mine: Vec<Message> = rest.by_ref().take(n).collect();
                    let alone = vec![0; n];
                    let mut committing = false;
                    *p.answer.lock() = Some(
                        w.ingest(
                            db,
                            mine,
                            &alone,
                            &[p.arrival],
                            &[p.lenient],
                            &mut committing,
                        )
                        .map(|mut r| r.remove(0)),
                    );
                }
            }
        }
    }
    drop(w);
    let done = answer.lock().take();
    done.unwrap_or_else(|| Err(internal!("the write was not answered")))
}

impl Writer {
    /// A fresh writer state, for the database being opened.
    pub(super) fn new(
        generation: u64,
        next_id: u32,
        touched_since_checkpoint: RoaringBitmap,
        upkeep: Upkeep,
    ) -> Writer {
        Writer {
            generation,
            next_id,
            touches_since_checkpoint: touched_since_checkpoint.len(),
            touched_since_checkpoint,
            upkeep,
        }
    }

    /// Stores the messages of a group of writes (`owners[i]` is the write message `i` came
    /// from; `arrivals[w]` stamps write `w`'s messages without a time) as one atomic write, and
    /// reports per write. `committing` is set once the commit is attempted: an error before it
    /// stored nothing and changed nothing. A message over a schema limit fails the whole group,
    /// unless its write is `lenient`: then it is skipped, before anything of it (its customer,
    /// its message id, its names) is taken in, and listed in that write's outcome.
    fn ingest(
        &mut self,
        db: &Db,
        messages: Vec<Message>,
        owners: &[usize],
        arrivals: &[Timestamp],
        lenient: &[bool],
        committing: &mut bool,
    ) -> Result<Vec<Outcome>> {
        let mut messages = messages;
        let mut catalog = db.state.read().catalog.clone();
        let mut reports = vec![IngestReport::default(); arrivals.len()];
        let mut refused: Vec<Vec<(usize, Error)>> =
            (0..arrivals.len()).map(|_| Vec::new()).collect();
        let mut positions = vec![0usize; arrivals.len()];
        let mut stored = 0u64;
        let mut merges = 0u64;
        let mut batch = WriteBatch::new();
        let mut work: WorkMap = BTreeMap::new();
        let mut next_id = self.next_id;
        // The writer lock is held: nobody else changes the id map until this write is applied.
        let known = db.state.read();
        let mut ids = Ids::new(&known.ids);
        // A known track's property ids, in the order of its properties.
        let mut known_props: Vec<u32> = Vec::new();

        // The messages are read in place and their values moved out: what is left of them (ids,
        // names: an allocation each, made on the parsing threads) is freed below, off this
        // thread for a large write.
        for (m, &owner) in messages.iter_mut().zip(owners) {
            let position = positions[owner];
            positions[owner] += 1;
            // A track whose names are all known for its event passes every limit (and sets no
            // trait): its ids are kept for below instead of being looked up three times.
            let known_track = match &m.body {
                Body::Track { event, properties } => catalog.known_track(
                    event,
                    properties.iter().map(|(n, _)| n.as_str()),
                    &mut known_props,
                ),
                _ => None,
            };
            let checked = match known_track {
                Some(_) => Ok(()),
                None => check_limits(&catalog, &m.body, &db.config.limits)
                    .and_then(|()| check_computed(&known.definitions, &m.body)),
            };
            if let Err(e) = checked {
                if !lenient[owner] {
                    return Err(e);
                }
                refused[owner].push((position, e));
                continue;
            }
            let report = &mut reports[owner];
            let previous = match &m.body {
                Body::Alias { previous } => Some(previous.as_str()),
                _ => m.merge_from.as_deref(),
            };
            if let Some(previous) = previous {
                let merge = Merge {
                    store: &db.store,
                    config: &db.config,
                };
                match merge.run(&mut ids, &mut work, &mut next_id, previous, &m.customer) {
                    Ok(merged) => {
                        report.merges += u64::from(merged);
                        merges += u64::from(merged);
                    }
                    Err(e @ Error::MergeRefused(_)) if lenient[owner] => {
                        refused[owner].push((position, e));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                if let Body::Alias { .. } = m.body {
                    // An alias is stored by its merge (done now, or before: a no-op).
                    report.stored += 1;
                    stored += 1;
                    continue;
                }
            }
            let (cust, is_new) = ids.resolve_or_add(&m.customer, &mut next_id)?;
            let wk = work.entry(cust).or_default();
            wk.is_new |= is_new;
            if is_new && m.anonymous {
                wk.anonymous = Some(true);
            }
            if let Some(mid) = &m.message_id {
                let h = codec::message_hash(mid);
                let stored = match &wk.seen_before {
                    // Read by a merge: the whole stored set.
                    Some(before) => before.binary_search(&h).is_ok(),
                    // A customer new in this write has no stored message ids to read.
                    None if wk.is_new => false,
                    None => {
                        if wk.seen_stored.is_none() {
                            wk.seen_stored = Some(db.store.stored_seen(cust)?);
                        }
                        let record = wk.seen_stored.as_deref().unwrap_or_default();
                        record.binary_search(&h).is_ok() || db.store.has_unfolded_message(cust, h)
                    }
                };
                if stored || !wk.seen_now.insert(h) {
                    report.duplicates += 1;
                    continue;
                }
            }
            report.stored += 1;
            stored += 1;
            match &mut m.body {
                Body::Identify { traits } => {
                    wk.identified = true;
                    for (name, value) in traits.iter_mut() {
                        let t = catalog.intern_trait(name, value.as_ref());
                        wk.trait_updates.push(ProfileOp::Set(t, value.take()));
                    }
                }
                Body::Track { event, properties } => {
                    let (e, mut props): (u32, Vec<(u32, Value)>) = match known_track {
                        Some(e) => (
                            e,
                            known_props
                                .iter()
                                .zip(properties.iter_mut())
                                .map(|(p, (_, v))| (*p, take_value(v)))
                                .collect(),
                        ),
                        None => {
                            let e = catalog.intern_event(event);
                            let props = properties
                                .iter_mut()
                                .map(|(k, v)| (catalog.intern_prop(k), take_value(v)))
                                .collect();
                            (e, props)
                        }
                    };
                    props.sort_by_key(|(p, _)| *p);
                    props.dedup_by_key(|(p, _)| *p);
                    catalog.count_event(e, &props, 1);
                    wk.events.push(StoredEvent {
                        ts: m.timestamp.unwrap_or(arrivals[owner]),
                        event: e,
                        props,
                    });
                }
                Body::Alias { .. } => unreachable!("alias messages are stored by their merge"),
            }
        }

        let (new_ids, removed_custs) = ids.finish(&mut work, &mut batch);
        drop(known);
        if messages.len() >= BACKGROUND_DROP_FROM {
            rayon::spawn(move || drop(messages));
        } else {
            drop(messages);
        }
        let reports: Vec<Outcome> = reports.into_iter().zip(refused).collect();
        if stored == 0 && merges == 0 {
            return Ok(reports);
        }
        // The first write with enough events trains the folder's block dictionary. It is stored
        // in this write's batch, with the first blocks compressed with it, and used from the
        // commit on: no stored block ever names a dictionary that is not stored.
        let trained = match db.store.dictionaries().current() {
            Some(_) => None,
            None => train_from_write(&work, dictionary::FIRST_ID),
        };
        if let Some(d) = &trained {
            batch.put_dictionary(d);
        }
        let dict = db.store.dictionaries().current().or(trained.as_ref());
        // Each customer's records are independent of the others': prepare them in parallel.
        let mut touched: RoaringBitmap = work.keys().copied().collect();
        touched |= removed_custs;
        let prepared: Vec<(Applied, WriteBatch)> = work
            .into_iter()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(cust, wk)| db.prepare_customer(cust, *wk, dict))
            .collect::<Result<_>>()?;
        let mut applied = Vec::with_capacity(prepared.len());
        for (a, records) in prepared {
            batch.append(records);
            applied.push(a);
        }
        *committing = true;
        // The ids this write hands out name customers with nothing stored yet: storage need not
        // search for their message-id records or blocks until it puts some.
        db.store.note_bare(self.next_id, next_id);
        // Group the index changes before taking the lock that readers wait for; under it, large
        // writes are applied on every core.
        let mut changes = Changes::default();
        for a in &applied {
            let profile = a
                .profile
                .as_ref()
                .map(|(old, new)| (old.as_deref(), &new[..]));
            changes.customer(a.cust, a.is_new, profile, &a.events);
        }
        let overlapped = changes.events() >= db.config.parallel_index_from;
        let mut state = if overlapped {
            // A large write's index changes are applied while its batch is committed on a thread
            // of its own: the state's write lock, which readers wait for, is held until the
            // commit is durable, so no reader sees them before. Should the commit fail, the
            // written customers' indexes are recomputed from what is stored, as an open after a
            // crash does.
            let batch = self.seal(batch, &touched, &catalog, next_id)?;
            let (committed, mut state) = std::thread::scope(|s| {
                let commit = s.spawn(|| db.store.commit(batch));
                let mut state = db.state.write();
                remove_merged_from_indexes(&mut state.indexes, &applied);
                state.indexes.apply(&changes, db.config.parallel_index_from);
                let committed = commit
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (committed, state)
            });
            if let Err(e) = committed {
                let mut again = touched.clone();
                again.extend(applied.iter().flat_map(|a| &a.removed).map(|r| r.cust));
                // Recomputed from storage, which this write did not change; a read error here
                // leaves the indexes for `verify` and the next open to repair.
                let _ = super::recovery::reindex(&db.store, &mut state.indexes, &again);
                return Err(e);
            }
            self.advance(&touched, next_id);
            state
        } else {
            self.commit(db, batch, &touched, &catalog, next_id)?;
            let mut state = db.state.write();
            remove_merged_from_indexes(&mut state.indexes, &applied);
            state.indexes.apply(&changes, db.config.parallel_index_from);
            state
        };
        if let Some(d) = trained {
            // There was none before this write, and only the writer (whose lock this is) installs.
            db.store.dictionaries().install(d)?;
        }
        // Saved audiences change only under the writer lock, which is held.
        let audiences_saved = !state.definitions.is_empty();
        {
            state.catalog = catalog;
            // Merged customers go first: their ids then belong to the customers they joined.
            for r in applied.iter().flat_map(|a| &a.removed) {
                state.ids.remove(r.cust);
            }
            for (external, c) in &new_ids {
                // Committed already: a refusal here means the map had drifted from storage.
                state.ids.insert(external, *c)?;
            }
            for a in &applied {
                if let Some(aliases) = &a.aliases {
                    state.ids.set_aliases(a.cust, aliases.clone())?;
                }
            }
            if state.definitions.has_lists() {
                let removed: RoaringBitmap = applied
                    .iter()
                    .flat_map(|a| &a.removed)
                    .map(|r| r.cust)
                    .collect();
                let new = new_ids.iter().map(|(external, c)| (external.as_str(), *c));
                let merged = applied.iter().flat_map(|a| {
                    let ids = a.aliases.as_deref().unwrap_or_default();
                    ids.iter().map(move |external| (external.as_str(), a.cust))
                });
                state.definitions.follow_ids(&removed, new.chain(merged));
            }
        }
        drop(state);
        drop(changes);
        // The write is durable and visible: saved audiences follow. Should that fail (storage
        // trouble), the customers are retried at the next write or advance, and recovery redoes
        // them after a crash; the write itself stands. Merged customers leave their audiences
        // first (their exits in the feed), then the customers they joined are evaluated again.
        let gone: Vec<(u32, &str)> = applied
            .iter()
            .flat_map(|a| &a.removed)
            .map(|r| (r.cust, r.external.as_str()))
            .collect();
        if !gone.is_empty() {
            let _ = self.forget_in_audiences(db, &gone);
        }
        // Without a saved audience there is nothing to keep up to date, and nothing for what the
        // write touched to be worked out for (it copied every event of the write: with freeing
        // the copies, about 6% of a time-ordered import's CPU).
        let touched = if audiences_saved {
            touched_by(&mut applied)
        } else {
            Touched::default()
        };
        let _ = self.maintain_audiences(db, Some(&touched));
        // Predictive traits whose event has grown by a tenth are fitted again (a failure keeps
        // the last good fit and is recorded with it; the write stands either way).
        let _ = self.refit_grown_traits(db);
        if applied.len() >= BACKGROUND_DROP_FROM {
            // Freeing a large write's events (an allocation or more per event) is work the next
            // write need not wait for.
            rayon::spawn(move || drop((applied, touched)));
        }
        // The write is durable: a failed fold leaves the memtable and the log as they were (a
        // fold's batches each leave every timeline reading the same), and the next write retries.
        let _ = self.fold_if_over(db);
        if self.checkpoint_due(db) {
            // The write is durable already: a failed snapshot is retried at the next checkpoint
            // (and until then recovery covers these customers), not this write's failure.
            let _ = self.checkpoint(db);
        }
        Ok(reports)
    }

    /// Adds the write's bookkeeping (dirty-log record, generation, id counter, catalog) to the
    /// batch, commits it durably, and advances the writer.
    pub(super) fn commit(
        &mut self,
        db: &Db,
        batch: WriteBatch,
        touched: &RoaringBitmap,
        catalog: &Catalog,
        next_id: u32,
    ) -> Result<()> {
        let batch = self.seal(batch, touched, catalog, next_id)?;
        db.store.commit(batch)?;
        self.advance(touched, next_id);
        Ok(())
    }

    /// Adds the write's bookkeeping (dirty-log record, generation, id counter, catalog) to the
    /// batch, for [`Store::commit`](crate::storage::Store::commit).
    fn seal(
        &self,
        mut batch: WriteBatch,
        touched: &RoaringBitmap,
        catalog: &Catalog,
        next_id: u32,
    ) -> Result<WriteBatch> {
        let generation = self.generation + 1;
        batch.put_dirty(generation, touched)?;
        batch.put_meta_u64(meta::GENERATION, generation);
        batch.put_next_id(next_id);
        batch.put_meta(meta::CATALOG, &catalog_bytes(catalog)?);
        Ok(batch)
    }

    /// Advances the writer past a committed write ([`Writer::seal`]'s batch).
    fn advance(&mut self, touched: &RoaringBitmap, next_id: u32) {
        self.generation += 1;
        self.next_id = next_id;
        self.touched_since_checkpoint |= touched;
        self.touches_since_checkpoint += touched.len();
    }

    /// Whether the writes since the last checkpoint call for one ([`Writer`]'s counts).
    fn checkpoint_due(&self, db: &Db) -> bool {
        let after = db.config.checkpoint_after;
        self.touched_since_checkpoint.len() >= after
            || self.touches_since_checkpoint >= after.saturating_mul(REPEAT_TOUCHES)
    }

    /// Folds the write log's memtable into sealed blocks when it is over its bound (storage's
    /// timeline).
    fn fold_if_over(&mut self, db: &Db) -> Result<bool> {
        db.store.fold_if_over(
            db.config.fold_events,
            db.config.fold_bytes,
            db.config.fold_batch_bytes,
            db.store.dictionaries().current(),
        )
    }

    /// Deletes a customer: profile, every event, the id maps and every bitmap bit. Returns the
    /// number of events removed. Durable when it returns.
    pub(super) fn delete_customer(&mut self, db: &Db, customer: &str) -> Result<u64> {
        let Some(cust) = db.internal_id(customer)? else {
            return Err(Error::NotFound(format!("customer {customer:?}")));
        };
        let profile = db.store.profile(cust)?;
        let mut events = Vec::new();
        db.store.events(cust, &mut events)?;
        let mut batch = WriteBatch::new();
        let (mut catalog, own_id, lists) = {
            let state = db.state.read();
            let own = state.ids.external(cust).unwrap_or(customer).to_owned();
            let lists =
                audience::lists_without(&state.definitions, &state.ids.ids_of(cust), &mut batch);
            (state.catalog.clone(), own, lists)
        };
        // Every id of a merged customer goes with it.
        batch.remove_id(&own_id, cust);
        batch.put_aliases(cust, &[]);
        batch.put_anonymous(cust, false);
        batch.remove_profile(cust);
        db.store.remove_seen(&mut batch, cust)?;
        db.store.remove_events(&mut batch, cust)?;
        for e in &events {
            catalog.count_event(e.event, &e.props, -1);
        }
        let mut touched = RoaringBitmap::new();
        touched.insert(cust);
        let next_id = self.next_id;
        self.commit(db, batch, &touched, &catalog, next_id)?;
        {
            let mut state = db.state.write();
            state.catalog = catalog;
            if let Some(p) = &profile {
                state.indexes.remove_profile(cust, p);
            }
            state.indexes.remove_events(cust, &events);
            state.indexes.remove_customer(cust);
            state.ids.remove(cust);
            for d in lists {
                state.definitions.insert(d);
            }
            let mut removed = RoaringBitmap::new();
            removed.insert(cust);
            state.definitions.follow_ids(&removed, std::iter::empty());
        }
        self.forget_in_audiences(db, &[(cust, own_id.as_str())])?;
        Ok(events.len() as u64)
    }
}

/// Preparing one customer's records runs on rayon's pool, for every customer of a write at once,
/// while [`Writer::ingest`] holds the lock; these read the customer's stored records only.
impl Db {
    /// Works out the records one customer's changes write, and what the indexes must learn.
    fn prepare_customer(
        &self,
        cust: u32,
        wk: Work,
        dict: Option<&BlockDictionary>,
    ) -> Result<(Applied, WriteBatch)> {
        let mut records = WriteBatch::new();
        let mut a = Applied {
            cust,
            is_new: wk.is_new,
            aliases: wk.aliases,
            profile: None,
            events: Vec::new(),
            removed: Vec::new(),
        };
        if let Some(aliases) = &a.aliases {
            records.put_aliases(cust, aliases);
        }
        if let Some(anonymous) = wk.anonymous {
            records.put_anonymous(cust, anonymous);
        }
        let mut events = wk.events;
        if wk.identified || !wk.absorbed.is_empty() {
            let old = self.store.profile(cust)?;
            let mut absorbed: Vec<Option<(u32, Work)>> =
                wk.absorbed.into_iter().map(Some).collect();
            let new = self.apply_profile_ops(
                old.clone(),
                wk.trait_updates,
                &mut absorbed,
                &mut records,
                &mut a.removed,
                &mut events,
            )?;
            // An identify makes a profile, even without traits; a merge only carries one over.
            let new = if wk.identified {
                Some(new.unwrap_or_default())
            } else {
                new
            };
            if let Some(new) = new {
                records.put_profile(cust, codec::encode_profile(&new));
                a.profile = Some((old, new));
            }
        }
        // New events go into the write's log record, or straight into blocks when the write
        // holds a new customer's whole history (storage's timeline).
        // Where the write stores a customer's first blocks (nothing of it unfolded) its stored
        // hashes are its record's alone.
        let seen_before = wk.seen_before.or(wk.seen_stored);
        let mut new_seen: Vec<u64> = wk.seen_now.into_iter().collect();
        new_seen.sort_unstable();
        // Stably: at equal times, this customer's own events before those moved into it.
        events.sort_by_key(|e| e.ts);
        self.store
            .write_events(&mut records, cust, &events, seen_before, &new_seen, dict)?;
        a.events = events;
        Ok((a, records))
    }
}

impl Db {
    /// Applies profile changes in order to `profile`: traits set or removed, and the profiles of
    /// customers merged in ([`ProfileOp::Absorb`]) filling in the traits it lacks. Each merged
    /// customer's stored records are removed in `records`, its stored events appended to
    /// `events` and its old state to `removed`. `None` when there is no profile at all.
    fn apply_profile_ops(
        &self,
        mut profile: Option<Fields>,
        ops: Vec<ProfileOp>,
        absorbed: &mut [Option<(u32, Work)>],
        records: &mut WriteBatch,
        removed: &mut Vec<Removed>,
        events: &mut Vec<StoredEvent>,
    ) -> Result<Option<Fields>> {
        for op in ops {
            match op {
                ProfileOp::Set(t, v) => {
                    let new = profile.get_or_insert_with(Vec::new);
                    match (new.binary_search_by_key(&t, |(k, _)| *k), v) {
                        (Ok(i), Some(v)) => new[i].1 = v,
                        (Ok(i), None) => {
                            new.remove(i);
                        }
                        (Err(i), Some(v)) => new.insert(i, (t, v)),
                        (Err(_), None) => {}
                    }
                }
                ProfileOp::Absorb(i) => {
                    let (c, w) = absorbed
                        .get_mut(i)
                        .and_then(Option::take)
                        .ok_or_else(|| internal!("a merged customer is missing"))?;
                    let theirs = self.absorb(c, w, records, removed, events)?;
                    if let Some(theirs) = theirs {
                        let new = profile.get_or_insert_with(Vec::new);
                        for (t, v) in theirs {
                            if let Err(at) = new.binary_search_by_key(&t, |(k, _)| *k) {
                                new.insert(at, (t, v));
                            }
                        }
                    }
                }
            }
        }
        Ok(profile)
    }

    /// Takes in customer `cust`, merged into another by this write: removes its stored records
    /// (in `records`), appends its stored and pending events to `events`, and returns its
    /// profile as this write leaves it (customers merged into it in turn included).
    fn absorb(
        &self,
        cust: u32,
        wk: Work,
        records: &mut WriteBatch,
        removed: &mut Vec<Removed>,
        events: &mut Vec<StoredEvent>,
    ) -> Result<Option<Fields>> {
        let mut profile = None;
        if !wk.is_new {
            let external = self
                .store
                .external_id(cust)?
                .ok_or_else(|| internal!("merged customer {cust} has no id"))?;
            profile = self.store.profile(cust)?;
            let mut stored = Vec::new();
            self.store.events(cust, &mut stored)?;
            records.remove_id(&external, cust);
            records.put_aliases(cust, &[]);
            records.put_anonymous(cust, false);
            records.remove_profile(cust);
            self.store.remove_seen(records, cust)?;
            self.store.remove_events(records, cust)?;
            events.extend(stored.iter().cloned());
            removed.push(Removed {
                cust,
                external,
                profile: profile.clone(),
                events: stored,
            });
        }
        events.extend(wk.events);
        let mut absorbed: Vec<Option<(u32, Work)>> = wk.absorbed.into_iter().map(Some).collect();
        let profile = self.apply_profile_ops(
            profile,
            wk.trait_updates,
            &mut absorbed,
            records,
            removed,
            events,
        )?;
        Ok(if wk.identified {
            Some(profile.unwrap_or_default())
        } else {
            profile
        })
    }
}

/// Moves a value out of a message, leaving one that owns no memory.
fn take_value(v: &mut Value) -> Value {
    std::mem::replace(v, Value::Bool(false))
}

/// Takes the customers a write merged into others out of the indexes (before its own changes
/// are applied: their ids then belong to the customers they joined).
fn remove_merged_from_indexes(indexes: &mut crate::index::Indexes, applied: &[Applied]) {
    for r in applied.iter().flat_map(|a| &a.removed) {
        if let Some(p) = &r.profile {
            indexes.remove_profile(r.cust, p);
        }
        indexes.remove_events(r.cust, &r.events);
        indexes.remove_customer(r.cust);
    }
}

/// Trains a block dictionary on the events of a write, when it has enough of them: the bodies
/// of (a sample of) its customers' new blocks. `None` for a smaller write, or when training
/// finds nothing.
fn train_from_write(work: &WorkMap, id: u32) -> Option<BlockDictionary> {
    let events: usize = work.values().map(|w| w.events.len()).sum();
    if events * BODY_BYTES_PER_EVENT < dictionary::TRAIN_MIN_BYTES {
        return None;
    }
    // Every `step`th customer, for a sample of about TRAIN_SAMPLE_BYTES from across the write.
    let step = (events * BODY_BYTES_PER_EVENT).div_ceil(dictionary::TRAIN_SAMPLE_BYTES);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut timeline: Vec<&StoredEvent> = Vec::new();
    for wk in work.values().filter(|w| !w.events.is_empty()).step_by(step) {
        timeline.clear();
        timeline.extend(&wk.events);
        timeline.sort_by_key(|e| e.ts);
        for chunk in time_blocks(&timeline) {
            let mut body = Vec::new();
            codec::put_block_body(&mut body, chunk);
            bodies.push(body);
        }
    }
    let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
    BlockDictionary::new(id, dictionary::train(&samples)?).ok()
}

/// What a write's applied changes touched, for saved audiences. Each customer's new events move
/// into [`Touched::written`] (the indexes have them already; nothing else reads them).
fn touched_by(applied: &mut [Applied]) -> Touched {
    let mut t = Touched::default();
    for a in applied {
        if a.is_new {
            t.new.insert(a.cust);
            t.ids.insert(a.cust);
        }
        if a.aliases.is_some() {
            t.ids.insert(a.cust);
        }
        if !a.removed.is_empty() {
            // A customer that took in another one's stored history is evaluated afresh for
            // every saved audience, whatever its rule reads.
            t.all.insert(a.cust);
        }
        if let Some((old, new)) = &a.profile {
            let old = old.as_deref().unwrap_or_default();
            let mut mark = |id: u32| {
                t.traits.entry(id).or_default().insert(a.cust);
            };
            for (id, v) in new {
                if customer_field(old, *id) != Some(v) {
                    mark(*id);
                }
            }
            for (id, _) in old {
                if customer_field(new, *id).is_none() {
                    mark(*id);
                }
            }
        }
        for e in &a.events {
            t.events.entry(e.event).or_default().insert(a.cust);
        }
        if !a.events.is_empty() {
            let events = std::mem::take(&mut a.events);
            let written = t.written.entry(a.cust).or_default();
            if written.is_empty() {
                *written = events;
            } else {
                written.extend(events);
            }
        }
    }
    t
}

fn customer_field(fields: &[(u32, Value)], id: u32) -> Option<&Value> {
    fields
        .binary_search_by_key(&id, |(k, _)| *k)
        .ok()
        .map(|i| &fields[i].1)
}

pub(super) fn catalog_bytes(catalog: &Catalog) -> Result<Vec<u8>> {
    serde_json::to_vec(catalog).map_err(|e| internal!("catalog: {e}"))
}

/// Whether a message's names keep the schema within `limits` (given the names of `catalog`).
pub(super) fn check_limits(catalog: &Catalog, body: &Body, limits: &SchemaLimits) -> Result<()> {
    match body {
        Body::Identify { traits } => {
            catalog.check_traits(traits.iter().map(|(n, _)| n.as_str()), limits)
        }
        Body::Track { event, properties } => {
            catalog.check_event(event, properties.iter().map(|(n, _)| n.as_str()), limits)
        }
        Body::Alias { .. } => Ok(()),
    }
}

/// Refuses an identify that sets a computed trait: its value is derived, never stored.
pub(super) fn check_computed(defs: &crate::query::Definitions, body: &Body) -> Result<()> {
    if let Body::Identify { traits } = body {
        if let Some((name, _)) = traits.iter().find(|(n, _)| defs.get_trait(n).is_some()) {
            return Err(invalid!(
                "trait {name} is a computed trait ({}): its value is derived from events and \
                 cannot be set by identify",
                defs.get_trait(name)
                    .map(|d| d.expr.to_string())
                    .unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// Checks a message built by a library caller (parsed messages were checked already).
fn check_message(m: &Message) -> Result<()> {
    check_customer_id(&m.customer).map_err(Error::InvalidInput)?;
    if let Some(ts) = m.timestamp {
        if !time::in_accepted_range(ts) {
            return Err(invalid!(
                "timestamp {ts} is outside 1970-01-01 .. 2100-01-01"
            ));
        }
    }
    if let Body::Track { event, .. } = &m.body {
        if event.is_empty() {
            return Err(invalid!("the event name is empty"));
        }
    }
    let previous = match &m.body {
        Body::Alias { previous } => Some(previous),
        _ => m.merge_from.as_ref(),
    };
    if let Some(previous) = previous {
        check_customer_id(previous).map_err(Error::InvalidInput)?;
        if *previous == m.customer {
            return Err(invalid!(
                "a customer cannot be merged into itself ({previous:?})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod group_commit_tests {
    //! Group commit, made deterministic: the test holds the write lock while writers queue.
    use super::*;
    use crate::db::Config;
    use crate::model::time::Clock;
    use std::thread;
    use std::time::Duration;

    fn tracked(cust: &str, id: Option<&str>, ts: Timestamp) -> Message {
        let mut m = Message::track(cust, "viewed", vec![], Some(ts));
        m.message_id = id.map(Into::into);
        m
    }

    /// Starts one writer per batch, each queued behind the held lock before the next starts.
    fn queue_behind_lock(
        db: &Arc<Db>,
        batches: Vec<Vec<Message>>,
    ) -> Vec<thread::JoinHandle<Result<IngestReport>>> {
        let mut handles = Vec::new();
        for (i, batch) in batches.into_iter().enumerate() {
            let db2 = Arc::clone(db);
            handles.push(thread::spawn(move || db2.ingest(batch)));
            while db.pending.lock().len() < i + 1 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        handles
    }

    #[test]
    fn queued_writes_are_committed_together_with_reports_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db")).unwrap());
        db.track("x", "viewed", vec![], Some(1)).unwrap();
        let w = db.writer.lock();
        let generation = w.generation;
        let handles = queue_behind_lock(
            &db,
            vec![
                vec![tracked("x", Some("m1"), 10), tracked("x", Some("m2"), 11)],
                // m1 again: a duplicate of the write queued before it.
                vec![tracked("x", Some("m1"), 10), tracked("y", None, 12)],
                vec![Message::identify("z", vec![])],
            ],
        );
        drop(w);
        let reports: Vec<IngestReport> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(
            reports,
            [(2, 0), (1, 1), (1, 0)].map(|(stored, duplicates)| IngestReport {
                stored,
                duplicates,
                merges: 0
            })
        );
        assert_eq!(db.writer.lock().generation, generation + 1, "one commit");
        assert_eq!(db.customer("x").unwrap().unwrap().events.len(), 3);
        assert_eq!(db.customer("y").unwrap().unwrap().events.len(), 1);
        assert!(db.customer("z").unwrap().is_some());
        assert!(db.verify().unwrap().is_ok());
    }

    #[test]
    fn messages_without_a_time_take_their_own_writes_arrival() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(0);
        let mut config = Config::new(dir.path().join("db"));
        config.clock = clock.clone();
        let db = Arc::new(Db::open_with(config).unwrap());
        let untimed = || vec![Message::track("x", "viewed", vec![], None)];
        let w = db.writer.lock();
        let generation = w.generation;
        let mut handles = Vec::new();
        for (i, at) in [1_000, 2_000].into_iter().enumerate() {
            clock.set(at);
            let db2 = Arc::clone(&db);
            handles.push(thread::spawn(move || db2.ingest(untimed())));
            while db.pending.lock().len() < i + 1 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        drop(w);
        for h in handles {
            h.join().unwrap().unwrap();
        }
        assert_eq!(db.writer.lock().generation, generation + 1, "one commit");
        let times: Vec<Timestamp> = db
            .customer("x")
            .unwrap()
            .unwrap()
            .events
            .iter()
            .map(|e| e.timestamp)
            .collect();
        assert_eq!(times, [1_000, 2_000]);
    }

    #[test]
    fn a_group_that_fails_before_its_commit_is_retried_write_by_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db")).unwrap());
        db.track("bad", "viewed", vec![], Some(1)).unwrap();
        db.track("good", "viewed", vec![], Some(1)).unwrap();
        // Damage one customer's message-id record: a write with a message id for it must read
        // the record (to skip re-sends), and fails to.
        let cust = db.internal_id("bad").unwrap().unwrap();
        let mut batch = WriteBatch::new();
        batch.put_seen(cust, vec![0xff, 0xff, 0xff]);
        db.store.commit(batch).unwrap();

        let w = db.writer.lock();
        let generation = w.generation;
        let handles = queue_behind_lock(
            &db,
            vec![
                vec![tracked("good", None, 5)],
                vec![tracked("bad", Some("b1"), 5)],
                vec![tracked("new", None, 5)],
            ],
        );
        drop(w);
        let results: Vec<Result<IngestReport>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results[0].as_ref().unwrap().stored, 1);
        assert!(
            matches!(results[1], Err(Error::Corrupt(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(results[2].as_ref().unwrap().stored, 1);
        // The two good writes were committed alone; the bad one changed nothing.
        assert_eq!(db.writer.lock().generation, generation + 2);
        assert_eq!(db.customer("good").unwrap().unwrap().events.len(), 2);
        assert_eq!(db.customer("new").unwrap().unwrap().events.len(), 1);
    }

    #[test]
    fn many_threads_writing_at_once_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path().join("db")).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let db = Arc::clone(&db);
                thread::spawn(move || {
                    for i in 0..50 {
                        let id = format!("t{t}-{i}");
                        let r = db
                            .ingest(vec![tracked(&format!("c{}", i % 7), Some(&id), i)])
                            .unwrap();
                        assert_eq!((r.stored, r.duplicates), (1, 0));
                        // The same message again is a duplicate, grouped or not.
                        let r = db
                            .ingest(vec![tracked(&format!("c{}", i % 7), Some(&id), i)])
                            .unwrap();
                        assert_eq!((r.stored, r.duplicates), (0, 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let events: usize = (0..7)
            .map(|c| db.customer(&format!("c{c}")).unwrap().unwrap().events.len())
            .sum();
        assert_eq!(events, 400);
        assert!(db.verify().unwrap().is_ok());
    }
}

#[cfg(test)]
mod checkpoint_tests {
    use crate::db::{Config, Db};

    fn dirty_records(db: &Db) -> u64 {
        db.record_stats()
            .unwrap()
            .iter()
            .find(|s| s.kind == "dirty log")
            .map_or(0, |s| s.records)
    }

    /// `checkpoint_after` counts customers, not writes: recovery recomputes each written
    /// customer once, however many writes touched it.
    #[test]
    fn a_checkpoint_comes_after_that_many_distinct_customers() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("db"));
        config.checkpoint_after = 3;
        let db = Db::open_with(config).unwrap();
        for ts in 0..5 {
            db.track("a", "viewed", vec![], Some(ts)).unwrap();
        }
        assert_eq!(dirty_records(&db), 5, "one customer: no checkpoint yet");
        db.track("b", "viewed", vec![], Some(5)).unwrap();
        assert_eq!(dirty_records(&db), 6, "two customers: no checkpoint yet");
        db.track("a", "viewed", vec![], Some(6)).unwrap();
        assert_eq!(dirty_records(&db), 7);
        db.track("c", "viewed", vec![], Some(7)).unwrap();
        assert_eq!(dirty_records(&db), 0, "the third customer: a checkpoint");
        // The count starts again after it.
        db.track("a", "viewed", vec![], Some(8)).unwrap();
        db.track("a", "viewed", vec![], Some(9)).unwrap();
        db.track("a", "viewed", vec![], Some(10)).unwrap();
        assert_eq!(dirty_records(&db), 3);
    }

    /// A few customers written over and over still get checkpoints: the dirty log an open
    /// reads stays bounded.
    #[test]
    fn writes_of_the_same_customers_checkpoint_after_repeat_touches() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("db"));
        config.checkpoint_after = 3;
        let db = Db::open_with(config).unwrap();
        let bound = 3 * super::REPEAT_TOUCHES as i64;
        for ts in 0..bound - 1 {
            db.track("a", "viewed", vec![], Some(ts)).unwrap();
        }
        assert_eq!(dirty_records(&db), bound as u64 - 1);
        db.track("a", "viewed", vec![], Some(bound)).unwrap();
        assert_eq!(dirty_records(&db), 0);
    }

    /// A whole snapshot keeps every id chunk, those an earlier snapshot wrote too; and an open
    /// of a folder missing a chunk below the id counter reads the ids from their records. With
    /// a chunk of ids lost, an open knew no external id for those customers (a saved audience
    /// over them failed, `verify` said the id map differed).
    #[test]
    fn whole_snapshots_keep_every_id_chunk() {
        use crate::ingest::message::Message;
        use crate::model::Value;
        use crate::storage::{ids::CHUNK_IDS, WriteBatch};
        let dir = tempfile::tempdir().unwrap();
        let open = || Db::open_with(Config::new(dir.path().join("db"))).unwrap();
        let db = open();
        let identify = |range: std::ops::Range<u32>| -> Vec<Message> {
            range
                .map(|i| {
                    Message::identify(
                        format!("c{i}"),
                        vec![("n".into(), Some(Value::Int(i.into())))],
                    )
                })
                .collect()
        };
        db.ingest(identify(0..10)).unwrap();
        db.checkpoint().unwrap(); // chunk 0 written
        db.ingest(identify(10..CHUNK_IDS + 5)).unwrap();
        db.checkpoint_whole().unwrap(); // chunks 0 and 1, the first one written before
        drop(db);
        let db = open();
        let last = CHUNK_IDS + 4;
        for cust in [0, 9, 10, CHUNK_IDS - 1, CHUNK_IDS, last] {
            assert_eq!(
                db.external_id(cust).unwrap(),
                Some(format!("c{cust}")),
                "customer {cust} after a whole snapshot"
            );
        }
        assert!(db.verify().unwrap().is_ok());
        // A folder missing chunk 0 (as an earlier build left them): the records say.
        let mut batch = WriteBatch::new();
        batch.remove_id_chunk(0);
        db.store.commit(batch).unwrap();
        drop(db);
        let db = open();
        assert_eq!(db.external_id(5).unwrap(), Some("c5".to_string()));
        assert_eq!(db.external_id(last).unwrap(), Some(format!("c{last}")));
        assert!(db.verify().unwrap().is_ok());
    }

    /// An open after a crash recomputes the customers the dirty log names and checkpoints:
    /// the count starts again from none.
    #[test]
    fn after_a_crash_the_count_starts_again_at_the_recovery_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let mut config = Config::new(dir.path().join("db"));
            config.checkpoint_after = 3;
            Db::open_with(config).unwrap()
        };
        let db = open();
        db.track("a", "viewed", vec![], Some(1)).unwrap();
        db.track("b", "viewed", vec![], Some(2)).unwrap();
        db.abandon();
        // Recovery recomputes a and b and checkpoints; the count starts again at zero.
        let db = open();
        assert_eq!(dirty_records(&db), 0);
        db.track("a", "viewed", vec![], Some(3)).unwrap();
        db.track("b", "viewed", vec![], Some(4)).unwrap();
        assert_eq!(dirty_records(&db), 2);
        db.track("c", "viewed", vec![], Some(5)).unwrap();
        assert_eq!(dirty_records(&db), 0);
    }
}

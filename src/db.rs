//! The library API: open a database folder, ingest messages, read and delete customers, inspect
//! the schema, verify and rebuild the indexes.
//!
//! Writes are serialised by one writer lock. A write is committed as one sled batch (data, id
//! maps, catalog and a dirty-log record naming the customers it touched), flushed to disk, and
//! only then applied to the in-memory indexes that readers see. The indexes are snapshotted to
//! storage from time to time; on open, the snapshot is loaded and the customers in the dirty log
//! after it are recomputed from their stored data, so the indexes always equal a rebuild.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use rayon::prelude::*;
use roaring::RoaringBitmap;
use serde::Serialize;
use std::sync::Arc;

use crate::audience::{Audiences, Definitions, Touched};
use crate::error::{internal, invalid, Error, Result};
use crate::index::{
    Changes, DecodedFamily, Family, FastMap, Indexes, DEFAULT_ROLLUP_BOUND, PARALLEL_FROM,
    SNAPSHOT_VERSION,
};
use crate::ingest::message::{check_customer_id, Body, Message};
use crate::model::time::{self, Clock, Timestamp};
use crate::model::value::ValueType;
use crate::model::Value;
use crate::storage::catalog::type_names;
use crate::storage::codec::{self, StoredEvent};
use crate::storage::dictionary;
use crate::storage::{meta, BlockDictionary, Catalog, IdMap, SchemaLimits, Store, WriteBatch};

use crate::storage::timeline::time_blocks;
pub use crate::storage::timeline::BLOCK_EVENTS;

/// About how many bytes an event takes in an uncompressed block body (the generated shop's
/// average): sizes dictionary training samples before encoding them.
const BODY_BYTES_PER_EVENT: usize = 25;

/// A write touching at least this many customers frees its records on rayon's pool.
const BACKGROUND_DROP_FROM: usize = 64;

/// Value types whose equality the indexes answer (lists: by their elements).
const INDEXED_TYPES: u8 =
    ValueType::Str.bit() | ValueType::Int.bit() | ValueType::Bool.bit() | ValueType::List.bit();

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// A trait or an (event, property) with more distinct values than this keeps no value bitmaps.
    pub value_bound: usize,
    /// How many numeric properties of one event get per-day rollups (count, sum, min, max per
    /// customer and day), which answer aggregates without reading events; properties seen after
    /// that many have none, and aggregates over them read the customers' events.
    pub rollup_bound: usize,
    /// Snapshot the indexes once writes since the last snapshot have touched this many customers
    /// (bounds the recovery work after a crash).
    pub checkpoint_after: u64,
    /// Where the time comes from: it stamps events without a timestamp and is the *now* saved
    /// audiences are kept true at.
    pub clock: Clock,
    /// How many changes the stored change feed keeps (at least 1); older ones are dropped at
    /// checkpoints.
    pub feed_capacity: u64,
    /// A saved audience re-evaluated for at least this many customers at once (a new audience,
    /// a large import, a day of timers) takes the bulk path: bounds and wake-up days from the
    /// bitmaps first, so only the customers they leave undecided are read. Fewer are checked one
    /// by one. Both give the same members; tests set it low to run the bulk path on small data.
    pub audience_bulk_from: u64,
    /// A write with at least this many events applies its index changes on every core (a
    /// thread per core, each taking whole families); smaller ones on the writer's thread. Both
    /// give the same indexes; tests set it to 0 to run the parallel path on small writes.
    pub parallel_index_from: usize,
    /// How far the schema may grow: distinct event names, property names per event and in
    /// all, trait names. A message past a limit is refused ([`Error::Limit`]) and nothing of it
    /// is stored; names already stored are always accepted.
    pub limits: SchemaLimits,
}

impl Config {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Config {
            path: path.into(),
            value_bound: 1000,
            rollup_bound: DEFAULT_ROLLUP_BOUND,
            checkpoint_after: 250_000,
            clock: Clock::System,
            feed_capacity: 1_000_000,
            audience_bulk_from: 2048,
            parallel_index_from: PARALLEL_FROM,
            limits: SchemaLimits::default(),
        }
    }
}

/// What readers see: names and statistics, and the indexes. Changed only by the writer, after
/// the change is durable.
pub struct ReadState {
    pub catalog: Catalog,
    pub indexes: Indexes,
    /// Every customer's external and internal id, both ways.
    pub ids: IdMap,
    /// Saved audiences' rules, for `in audience`.
    pub(crate) definitions: Definitions,
}

/// A batch waiting to be committed with others, and where its answer goes.
struct PendingWrite {
    messages: Vec<Message>,
    /// Whether messages over a schema limit are refused one by one ([`Db::ingest_lenient`])
    /// rather than failing the whole batch.
    lenient: bool,
    /// When it was handed in: the time of its messages that carry none.
    arrival: Timestamp,
    answer: Arc<Mutex<Option<Result<Outcome>>>>,
}

/// A batch's report, and the messages refused for a schema limit (their positions in the
/// batch and the errors), as [`Db::ingest_lenient`] returns them.
pub type Outcome = (IngestReport, Vec<(usize, Error)>);

pub(crate) struct Writer {
    generation: u64,
    next_id: u32,
    touched_since_checkpoint: u64,
}

/// An open audiencedb database.
pub struct Db {
    pub(crate) store: Store,
    pub(crate) config: Config,
    pub(crate) writer: Mutex<Writer>,
    /// Writes waiting for the write lock, taken together by the next holder (group commit).
    pending: Mutex<Vec<PendingWrite>>,
    pub(crate) state: RwLock<ReadState>,
    pub(crate) audiences: Audiences,
    abandoned: std::sync::atomic::AtomicBool,
}

/// The outcome of one [`Db::ingest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Messages stored.
    pub stored: u64,
    /// Messages skipped because their `messageId` was already stored.
    pub duplicates: u64,
}

/// One event as the library returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub timestamp: Timestamp,
    pub properties: Vec<(String, Value)>,
}

/// All stored data of one customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub id: String,
    /// The dense internal id used in bitmaps.
    pub internal_id: u32,
    /// `None` when the customer is known only from events.
    pub traits: Option<Vec<(String, Value)>>,
    /// In time order.
    pub events: Vec<Event>,
}

impl Customer {
    /// Everything stored about the customer as JSON: the export a privacy request asks for.
    pub fn to_json(&self) -> serde_json::Value {
        let fields = |fs: &[(String, Value)]| {
            serde_json::Value::Object(fs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
        };
        serde_json::json!({
            "id": self.id,
            "traits": self.traits.as_deref().map(fields),
            "events": self.events.iter().map(|e| serde_json::json!({
                "event": e.name,
                "timestamp": time::format_rfc3339(e.timestamp),
                "properties": fields(&e.properties),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The schema view: which traits, events and properties exist, their types and counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    pub customers: u64,
    pub profiles: u64,
    pub traits: Vec<TraitSchema>,
    pub events: Vec<EventSchema>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraitSchema {
    pub name: String,
    pub types: Vec<&'static str>,
    /// Customers who have the trait.
    pub customers: u64,
    /// Whether equality is answered from value bitmaps.
    pub indexed: bool,
    /// Distinct indexed values (0 when not indexed).
    pub distinct_values: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSchema {
    pub name: String,
    pub count: u64,
    /// Customers who did it at least once.
    pub customers: u64,
    pub properties: Vec<PropertySchema>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertySchema {
    pub name: String,
    pub types: Vec<&'static str>,
    /// Events that carry it.
    pub count: u64,
    pub indexed: bool,
}

/// The outcome of [`Db::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    pub customers: u64,
    pub events: u64,
    pub bitmaps: usize,
    /// Each difference between the live indexes and a rebuild from stored data; empty when sound.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A customer's pending changes within one write.
#[derive(Default)]
struct Work {
    is_new: bool,
    identified: bool,
    trait_updates: Vec<(u32, Option<Value>)>,
    events: Vec<StoredEvent>,
    /// Hashes of the message ids stored before this write (sorted), once needed.
    seen_before: Option<Vec<u64>>,
    /// Hashes of the message ids this write stores.
    seen_now: crate::index::FastSet<u64>,
}

/// A customer's applied changes, for the in-memory indexes.
struct Applied {
    cust: u32,
    is_new: bool,
    profile: Option<(Option<codec::Fields>, codec::Fields)>,
    events: Vec<StoredEvent>,
}

impl Db {
    /// Opens the database folder at `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(Config::new(path.as_ref()))
    }

    /// Opens a database with explicit settings.
    pub fn open_with(config: Config) -> Result<Db> {
        let store = Store::open(&config.path)?;
        let catalog = store.catalog()?;
        let generation = store.meta_u64(meta::GENERATION)?;
        let index_generation = store.meta_u64(meta::INDEX_GENERATION)?;
        let next_id = store.next_id()?;

        let mut indexes = Indexes::with_bounds(config.value_bound, config.rollup_bound);
        // A snapshot of another layout (written by an older build) is not read: the indexes are
        // rebuilt from the stored data, once, and snapshotted in this build's layout.
        let version = store.index_family(&Family::Version.key())?;
        let current = version
            .as_deref()
            .and_then(|v| codec::Reader::new(v).u32().ok())
            == Some(SNAPSHOT_VERSION);
        let stale = !current && store.has_index_snapshot();
        if current {
            // Reading is sequential (one sled iterator), decoding parallel: at 1M customers the
            // snapshot is 600 MB of records whose decoding is most of an open.
            let decoded: Vec<DecodedFamily> = store
                .index_families()
                .par_bridge()
                .map(|item| {
                    let (family_key, v) = item?;
                    Indexes::decode_family(&family_key, &v)
                })
                .collect::<Result<_>>()?;
            for family in decoded {
                indexes.install_family(family);
            }
        }
        // Recompute the customers written after the snapshot from their stored data.
        let mut dirty = RoaringBitmap::new();
        if stale {
            indexes = rebuild_from(&store, &indexes)?.0;
        } else {
            for (g, custs) in store.dirty_log()? {
                if g > index_generation {
                    dirty |= custs;
                }
            }
        }
        let ids = if stale {
            IdMap::load(&store)?
        } else {
            IdMap::open(&store, &dirty)?
        };
        if !dirty.is_empty() {
            indexes.purge(&dirty);
            for cust in &dirty {
                index_customer(&store, &mut indexes, cust)?;
            }
        }
        let (definitions, audiences) = Audiences::load(&store, &indexes, &ids)?;
        let db = Db {
            store,
            pending: Mutex::new(Vec::new()),
            writer: Mutex::new(Writer {
                generation,
                next_id,
                touched_since_checkpoint: dirty.len(),
            }),
            state: RwLock::new(ReadState {
                catalog,
                indexes,
                ids,
                definitions,
            }),
            audiences,
            config,
            abandoned: false.into(),
        };
        // Saved audiences: customers written since the snapshot are evaluated again (their
        // changes may not have reached the feed), and time catches up with the clock.
        {
            let _w = db.writer.lock();
            let touched = Touched {
                all: dirty.clone(),
                ..Touched::default()
            };
            db.maintain_audiences_locked(Some(&touched))?;
        }
        if stale {
            let mut w = db.writer.lock();
            db.snapshot_locked(&mut w, true)?;
        } else if !dirty.is_empty() {
            db.checkpoint()?;
        }
        Ok(db)
    }

    /// A checker of messages against the schema limits, starting from the names stored now.
    pub fn limit_check(&self) -> LimitCheck {
        LimitCheck {
            catalog: self.state.read().catalog.clone(),
            limits: self.config.limits,
        }
    }

    /// The folder this database lives in.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The settings it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A consistent view of the catalog and the indexes. Hold it briefly: writers wait for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ReadState> {
        self.state.read()
    }

    /// Merges traits into a customer's profile (`None` removes a trait).
    pub fn identify(&self, customer: &str, traits: Vec<(String, Option<Value>)>) -> Result<()> {
        self.ingest(vec![Message::identify(customer, traits)])
            .map(|_| ())
    }

    /// Records one event; `timestamp` `None` means now.
    pub fn track(
        &self,
        customer: &str,
        event: &str,
        properties: Vec<(String, Value)>,
        timestamp: Option<Timestamp>,
    ) -> Result<()> {
        self.ingest(vec![Message::track(customer, event, properties, timestamp)])
            .map(|_| ())
    }

    /// Stores a batch of messages atomically and durably: when this returns `Ok`, all of them are
    /// on disk and visible to readers; on `Err`, none is. Messages whose `messageId` is already
    /// stored (or repeated within the batch) are skipped.
    ///
    /// Writes from many threads at once are committed together (group commit): a writer that
    /// finds the write lock taken queues its batch, and whoever takes the lock next stores every
    /// queued batch in one atomic, durable write, then hands each writer its own report. Each
    /// batch is still all or nothing. A group that fails before its commit is retried batch by
    /// batch; one whose commit fails gives every batch the error and stores none.
    ///
    /// A message that would take the schema past one of [`Config::limits`] fails the batch
    /// with [`Error::Limit`]; [`Db::ingest_lenient`] stores the others instead.
    pub fn ingest(&self, messages: Vec<Message>) -> Result<IngestReport> {
        self.submit(messages, false).map(|(report, _)| report)
    }

    /// As [`Db::ingest`], except that a message that would take the schema past one of
    /// [`Config::limits`] is refused alone: nothing of it is stored, the batch's other messages
    /// are, and the refusals come back with their positions in `messages` (what an import does
    /// with a bad line). Other bad input still fails the whole batch.
    pub fn ingest_lenient(&self, messages: Vec<Message>) -> Result<Outcome> {
        self.submit(messages, true)
    }

    fn submit(&self, messages: Vec<Message>, lenient: bool) -> Result<Outcome> {
        for m in &messages {
            check_message(m)?;
        }
        let answer: Arc<Mutex<Option<Result<Outcome>>>> = Arc::default();
        self.pending.lock().push(PendingWrite {
            messages,
            lenient,
            arrival: self.config.clock.now(),
            answer: answer.clone(),
        });
        let mut w = self.writer.lock();
        // Only a holder of the write lock takes queued writes, and it answers them all before
        // letting go: so either ours was answered, or it is still queued.
        if let Some(done) = answer.lock().take() {
            return done;
        }
        let mut group = std::mem::take(&mut *self.pending.lock());
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
                self.ingest_locked(&mut w, all, &owners, &arrivals, &lenient, &mut committing)
                    .map(|mut r| r.remove(0)),
            );
        } else {
            // Kept in case the group fails before its commit (no ids left, a read error), so
            // that each write can then be committed alone and get the outcome it would have had
            // alone.
            let copy = all.clone();
            match self.ingest_locked(&mut w, all, &owners, &arrivals, &lenient, &mut committing) {
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
                            self.ingest_locked(
                                &mut w,
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

    /// Stores the messages of a group of writes (`owners[i]` is the write message `i` came
    /// from; `arrivals[w]` stamps write `w`'s messages without a time) as one atomic write, and
    /// reports per write. `committing` is set once the commit is attempted: an error before it
    /// stored nothing and changed nothing. A message over a schema limit fails the whole group,
    /// unless its write is `lenient`: then it is skipped, before anything of it (its customer,
    /// its message id, its names) is taken in, and listed in that write's outcome.
    fn ingest_locked(
        &self,
        w: &mut Writer,
        messages: Vec<Message>,
        owners: &[usize],
        arrivals: &[Timestamp],
        lenient: &[bool],
        committing: &mut bool,
    ) -> Result<Vec<Outcome>> {
        let mut catalog = self.state.read().catalog.clone();
        let mut reports = vec![IngestReport::default(); arrivals.len()];
        let mut refused: Vec<Vec<(usize, Error)>> =
            (0..arrivals.len()).map(|_| Vec::new()).collect();
        let mut positions = vec![0usize; arrivals.len()];
        let mut stored = 0u64;
        let mut batch = WriteBatch::new();
        let mut new_ids: FastMap<String, u32> = FastMap::default();
        let mut work: BTreeMap<u32, Work> = BTreeMap::new();
        let mut next_id = w.next_id;
        // The writer lock is held: nobody else changes the id map until this write is applied.
        let known = self.state.read();

        for (m, &owner) in messages.into_iter().zip(owners) {
            let position = positions[owner];
            positions[owner] += 1;
            if let Err(e) = check_limits(&catalog, &m.body, &self.config.limits) {
                if !lenient[owner] {
                    return Err(e);
                }
                refused[owner].push((position, e));
                continue;
            }
            let report = &mut reports[owner];
            let (cust, is_new) = match known.ids.get(&m.customer) {
                Some(c) => (c, false),
                None => match new_ids.get(&m.customer) {
                    Some(&c) => (c, false),
                    None => {
                        let c = next_id;
                        next_id = next_id.checked_add(1).ok_or_else(|| {
                            invalid!("the database holds the most customers it can")
                        })?;
                        batch.put_id(&m.customer, c);
                        new_ids.insert(m.customer.clone(), c);
                        (c, true)
                    }
                },
            };
            let wk = work.entry(cust).or_default();
            wk.is_new |= is_new;
            if let Some(mid) = &m.message_id {
                if wk.seen_before.is_none() {
                    // A customer new in this write has no stored message ids to read.
                    wk.seen_before = Some(if wk.is_new {
                        Vec::new()
                    } else {
                        self.store.seen_messages(cust)?
                    });
                }
                let before = wk.seen_before.as_deref().unwrap_or_default();
                let h = codec::message_hash(mid);
                if before.binary_search(&h).is_ok() || !wk.seen_now.insert(h) {
                    report.duplicates += 1;
                    continue;
                }
            }
            report.stored += 1;
            stored += 1;
            match m.body {
                Body::Identify { traits } => {
                    wk.identified = true;
                    for (name, value) in traits {
                        let t = catalog.intern_trait(&name, value.as_ref());
                        wk.trait_updates.push((t, value));
                    }
                }
                Body::Track { event, properties } => {
                    let e = catalog.intern_event(&event);
                    let mut props: Vec<(u32, Value)> = properties
                        .into_iter()
                        .map(|(k, v)| (catalog.intern_prop(&k), v))
                        .collect();
                    props.sort_by_key(|(p, _)| *p);
                    props.dedup_by_key(|(p, _)| *p);
                    catalog.count_event(e, &props, 1);
                    wk.events.push(StoredEvent {
                        ts: m.timestamp.unwrap_or(arrivals[owner]),
                        event: e,
                        props,
                    });
                }
            }
        }

        drop(known);
        let reports: Vec<Outcome> = reports.into_iter().zip(refused).collect();
        if stored == 0 {
            return Ok(reports);
        }
        // The first write with enough events trains the folder's block dictionary. It is stored
        // in this write's batch, with the first blocks compressed with it, and used from the
        // commit on: no stored block ever names a dictionary that is not stored.
        let trained = match self.store.dictionaries().current() {
            Some(_) => None,
            None => train_from_write(&work, dictionary::FIRST_ID),
        };
        if let Some(d) = &trained {
            batch.put_dictionary(d);
        }
        let dict = self.store.dictionaries().current().or(trained.as_ref());
        // Each customer's records are independent of the others': prepare them in parallel.
        let touched: RoaringBitmap = work.keys().copied().collect();
        let prepared: Vec<(Applied, WriteBatch)> = work
            .into_iter()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(cust, wk)| self.prepare_customer(cust, wk, dict))
            .collect::<Result<_>>()?;
        let mut applied = Vec::with_capacity(prepared.len());
        for (a, records) in prepared {
            batch.append(records);
            applied.push(a);
        }
        *committing = true;
        self.commit_write(w, batch, &touched, &catalog, next_id)?;
        if let Some(d) = trained {
            // There was none before this write, and only the writer (whose lock this is) installs.
            self.store.dictionaries().install(d)?;
        }
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
        let mut new_ids: Vec<(String, u32)> = new_ids.into_iter().collect();
        new_ids.sort_unstable_by_key(|(_, c)| *c);
        {
            let mut state = self.state.write();
            state.catalog = catalog;
            for (external, c) in &new_ids {
                // Committed already: a refusal here means the map had drifted from storage.
                state.ids.insert(external, *c)?;
            }
            state
                .indexes
                .apply(&changes, self.config.parallel_index_from);
        }
        drop(changes);
        // The write is durable and visible: saved audiences follow. Should that fail (storage
        // trouble), the customers are retried at the next write or advance, and recovery redoes
        // them after a crash; the write itself stands.
        let _ = self.maintain_audiences_locked(Some(&touched_by(&applied)));
        if applied.len() >= BACKGROUND_DROP_FROM {
            // Freeing a large write's events (an allocation or more per event) is work the next
            // write need not wait for.
            rayon::spawn(move || drop(applied));
        }
        if w.touched_since_checkpoint >= self.config.checkpoint_after {
            // The write is durable already: a failed snapshot is retried at the next checkpoint
            // (and until then recovery covers these customers), not this write's failure.
            let _ = self.checkpoint_locked(w);
        }
        Ok(reports)
    }

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
            profile: None,
            events: Vec::new(),
        };
        if wk.identified {
            let old = self.store.profile(cust)?;
            let mut new = old.clone().unwrap_or_default();
            for (t, v) in wk.trait_updates {
                match (new.binary_search_by_key(&t, |(k, _)| *k), v) {
                    (Ok(i), Some(v)) => new[i].1 = v,
                    (Ok(i), None) => {
                        new.remove(i);
                    }
                    (Err(i), Some(v)) => new.insert(i, (t, v)),
                    (Err(_), None) => {}
                }
            }
            records.put_profile(cust, codec::encode_profile(&new));
            a.profile = Some((old, new));
        }
        // Events appended after the stored ones rewrite nothing stored (storage's timeline).
        let mut new_seen: Vec<u64> = wk.seen_now.into_iter().collect();
        new_seen.sort_unstable();
        let mut events = wk.events;
        events.sort_by_key(|e| e.ts);
        self.store
            .write_events(&mut records, cust, &events, wk.seen_before, &new_seen, dict)?;
        a.events = events;
        Ok((a, records))
    }

    /// Adds the write's bookkeeping (dirty-log record, generation, id counter, catalog) to the
    /// batch, commits it durably, and advances the writer.
    fn commit_write(
        &self,
        w: &mut Writer,
        mut batch: WriteBatch,
        touched: &RoaringBitmap,
        catalog: &Catalog,
        next_id: u32,
    ) -> Result<()> {
        let generation = w.generation + 1;
        batch.put_dirty(generation, touched)?;
        batch.put_meta_u64(meta::GENERATION, generation);
        batch.put_next_id(next_id);
        batch.put_meta(meta::CATALOG, &catalog_bytes(catalog)?);
        self.store.commit(batch)?;
        w.generation = generation;
        w.next_id = next_id;
        w.touched_since_checkpoint += touched.len();
        Ok(())
    }

    /// Drops the database without snapshotting its indexes, as a crash would (the data itself
    /// is durable once written). For recovery tests.
    #[doc(hidden)]
    /// Testing only: the next `commits` commits succeed, and every later one fails with "No
    /// space left on device" without storing anything, as sled's commits all fail once a
    /// write of its log did. `u64::MAX` turns it off.
    #[doc(hidden)]
    pub fn inject_no_space_after_commits(&self, commits: u64) {
        self.store.inject_no_space_after_commits(commits);
    }

    pub fn abandon(self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The storage layer, for the query engine's reads.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The internal id of a customer.
    pub fn internal_id(&self, customer: &str) -> Result<Option<u32>> {
        Ok(self.state.read().ids.get(customer))
    }

    /// The external id of an internal id.
    pub fn external_id(&self, internal: u32) -> Result<Option<String>> {
        Ok(self.state.read().ids.external(internal).map(str::to_owned))
    }

    /// A customer's stored events in time order, with interned ids: the raw form for evaluators.
    pub fn stored_events(&self, internal: u32, out: &mut Vec<StoredEvent>) -> Result<()> {
        self.store.events(internal, out)
    }

    /// A customer's stored traits by trait id, or `None` without a profile.
    pub fn stored_profile(&self, internal: u32) -> Result<Option<codec::Fields>> {
        self.store.profile(internal)
    }

    /// Everything stored about a customer, or `None` for an unknown id.
    pub fn customer(&self, customer: &str) -> Result<Option<Customer>> {
        let Some(cust) = self.internal_id(customer)? else {
            return Ok(None);
        };
        let profile = self.store.profile(cust)?;
        let mut stored = Vec::new();
        self.store.events(cust, &mut stored)?;
        let state = self.state.read();
        let c = &state.catalog;
        Ok(Some(Customer {
            id: customer.to_owned(),
            internal_id: cust,
            traits: profile.map(|p| {
                p.into_iter()
                    .map(|(t, v)| (c.trait_name(t).to_owned(), v))
                    .collect()
            }),
            events: stored
                .into_iter()
                .map(|e| Event {
                    name: c.event_name(e.event).to_owned(),
                    timestamp: e.ts,
                    properties: e
                        .props
                        .into_iter()
                        .map(|(p, v)| (c.prop_name(p).to_owned(), v))
                        .collect(),
                })
                .collect(),
        }))
    }

    /// All stored data of a customer as JSON, or `NotFound`.
    pub fn export_customer(&self, customer: &str) -> Result<serde_json::Value> {
        self.customer(customer)?
            .map(|c| c.to_json())
            .ok_or_else(|| Error::NotFound(format!("customer {customer:?}")))
    }

    /// Deletes a customer: profile, every event, the id maps and every bitmap bit. Returns the
    /// number of events removed. Durable when it returns.
    pub fn delete_customer(&self, customer: &str) -> Result<u64> {
        let mut w = self.writer.lock();
        let Some(cust) = self.internal_id(customer)? else {
            return Err(Error::NotFound(format!("customer {customer:?}")));
        };
        let profile = self.store.profile(cust)?;
        let mut events = Vec::new();
        self.store.events(cust, &mut events)?;
        let mut catalog = self.state.read().catalog.clone();
        let mut batch = WriteBatch::new();
        batch.remove_id(customer, cust);
        batch.remove_profile(cust);
        batch.remove_seen(cust);
        self.store.remove_events(&mut batch, cust)?;
        for e in &events {
            catalog.count_event(e.event, &e.props, -1);
        }
        let mut touched = RoaringBitmap::new();
        touched.insert(cust);
        let next_id = w.next_id;
        self.commit_write(&mut w, batch, &touched, &catalog, next_id)?;
        {
            let mut state = self.state.write();
            state.catalog = catalog;
            if let Some(p) = &profile {
                state.indexes.remove_profile(cust, p);
            }
            state.indexes.remove_events(cust, &events);
            state.indexes.remove_customer(cust);
            state.ids.remove(cust);
        }
        self.forget_in_audiences(cust, customer)?;
        Ok(events.len() as u64)
    }

    /// Which traits, events and properties exist, with types and counts.
    pub fn schema(&self) -> Schema {
        let state = self.state.read();
        let (c, ix) = (&state.catalog, &state.indexes);
        let traits = c
            .traits()
            .filter_map(|(id, t)| {
                let ti = ix.trait_index(id)?;
                let indexed = ix.trait_values_indexed(id) && t.types & INDEXED_TYPES != 0;
                Some(TraitSchema {
                    name: t.name.clone(),
                    types: type_names(t.types),
                    customers: ti.set.len(),
                    indexed,
                    distinct_values: ti.values.len() + ti.elements.len(),
                })
            })
            .collect();
        let events = c
            .events()
            .filter(|(_, e)| e.count > 0)
            .map(|(id, e)| {
                let customers = ix.event_index(id).map_or(0, |ei| {
                    use roaring::MultiOps;
                    ei.days.values().union().len()
                });
                EventSchema {
                    name: e.name.clone(),
                    count: e.count,
                    customers,
                    properties: e
                        .props
                        .iter()
                        .filter(|(_, p)| p.count > 0)
                        .map(|(p, info)| PropertySchema {
                            name: c.prop_name(*p).to_owned(),
                            types: type_names(info.types),
                            count: info.count,
                            indexed: ix.prop_values_indexed(id, *p)
                                && info.types & INDEXED_TYPES != 0,
                        })
                        .collect(),
                }
            })
            .collect();
        Schema {
            customers: ix.everyone.len(),
            profiles: ix.profiles.len(),
            traits,
            events,
        }
    }

    /// Rebuilds the indexes and the catalog counts from stored data alone.
    fn rebuild(&self, like: &Indexes) -> Result<(Indexes, Catalog, u64)> {
        rebuild_from(&self.store, like)
    }

    /// Checks that the live indexes and counts equal a rebuild from the stored data.
    pub fn verify(&self) -> Result<VerifyReport> {
        let _w = self.writer.lock();
        let state = self.state.read();
        let (rebuilt, catalog, events) = self.rebuild(&state.indexes)?;
        let mut problems = state.indexes.differences(&rebuilt);
        if state.ids != IdMap::load(&self.store)? {
            problems.push("the in-memory id map differs from the stored ids".into());
        }
        for (id, e) in state.catalog.events() {
            let recount = catalog.events().nth(id as usize).map(|(_, r)| r);
            if recount.map(|r| (r.count, &r.props)) != Some((e.count, &e.props)) {
                problems.push(format!("event {:?}: stored counts differ", e.name));
            }
        }
        drop(state);
        problems.extend(self.audience_problems()?);
        Ok(VerifyReport {
            customers: rebuilt.everyone.len(),
            events,
            bitmaps: rebuilt.bitmap_count(),
            problems,
        })
    }

    /// Replaces the indexes and counts with a rebuild from stored data and snapshots them.
    pub fn rebuild_indexes(&self) -> Result<VerifyReport> {
        let mut w = self.writer.lock();
        let like = self.state.read().indexes.empty_like();
        let (rebuilt, catalog, events) = self.rebuild(&like)?;
        let ids = IdMap::load(&self.store)?;
        let report = VerifyReport {
            customers: rebuilt.everyone.len(),
            events,
            bitmaps: rebuilt.bitmap_count(),
            problems: Vec::new(),
        };
        let mut batch = WriteBatch::new();
        batch.put_meta(meta::CATALOG, &catalog_bytes(&catalog)?);
        self.store.commit(batch)?;
        {
            let mut state = self.state.write();
            state.indexes = rebuilt;
            state.catalog = catalog;
            state.ids = ids;
        }
        self.snapshot_locked(&mut w, true)?;
        Ok(report)
    }

    /// Writes the changed index families to storage so that the next open need not recompute
    /// them. Runs by itself after enough writes, and when the database is dropped.
    pub fn checkpoint(&self) -> Result<()> {
        let mut w = self.writer.lock();
        self.checkpoint_locked(&mut w)
    }

    fn checkpoint_locked(&self, w: &mut Writer) -> Result<()> {
        self.snapshot_locked(w, false)?;
        // After the snapshot, so that trouble reading stored blocks cannot hold it back.
        if self.store.dictionaries().current().is_none() {
            if let Some(d) = train_from_store(&self.store, dictionary::FIRST_ID)? {
                let mut batch = WriteBatch::new();
                batch.put_dictionary(&d);
                self.store.commit(batch)?;
                self.store.dictionaries().install(d)?;
            }
        }
        Ok(())
    }

    fn snapshot_locked(&self, w: &mut Writer, all: bool) -> Result<()> {
        let index_generation = self.store.meta_u64(meta::INDEX_GENERATION)?;
        if !all
            && index_generation == w.generation
            && w.touched_since_checkpoint == 0
            && !self.state.read().ids.has_changes()
        {
            return Ok(());
        }
        let (families, id_chunks): (Vec<Family>, Vec<u32>) = {
            let mut state = self.state.write();
            let changed = state.indexes.take_changed();
            let changed_ids = state.ids.take_changed();
            if all {
                (
                    state.indexes.all_families(),
                    state.ids.all_chunks().collect(),
                )
            } else {
                (
                    changed.into_iter().collect(),
                    changed_ids.into_iter().collect(),
                )
            }
        };
        let written = self.write_snapshot(w, all, &families, &id_chunks);
        if written.is_err() {
            // Nothing of it is stored: what changed must still be written by the next one (or
            // a later checkpoint would move the index generation past families never written).
            let mut state = self.state.write();
            state.indexes.restore_changed(families);
            state.ids.restore_changed(id_chunks);
        }
        written
    }

    /// Writes the index and id map snapshot records `families` and `id_chunks` in one batch.
    fn write_snapshot(
        &self,
        w: &mut Writer,
        all: bool,
        families: &[Family],
        id_chunks: &[u32],
    ) -> Result<()> {
        let state = self.state.read();
        let mut batch = WriteBatch::new();
        if all {
            // A whole snapshot replaces every record of the previous one, in the same batch (a
            // later insert of a key wins over its removal).
            self.store.clear_index_snapshot(&mut batch)?;
        }
        // Families are encoded (and compressed) independently: on every core.
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = families
            .par_iter()
            .map(|f| (f.key(), state.indexes.encode_family(f)))
            .collect();
        for (family_key, blob) in encoded {
            match blob {
                Some(blob) => batch.put_index_family(&family_key, blob),
                None => batch.remove_index_family(&family_key),
            }
        }
        for &chunk in id_chunks {
            match state.ids.encode_chunk(chunk) {
                Some(blob) => batch.put_id_chunk(chunk, blob),
                None => batch.remove_id_chunk(chunk),
            }
        }
        drop(state);
        self.store.clear_dirty_log(&mut batch)?;
        batch.put_meta_u64(meta::INDEX_GENERATION, w.generation);
        let audiences =
            self.audiences
                .checkpoint(&self.store, &mut batch, self.config.feed_capacity.max(1))?;
        self.store.commit(batch)?;
        self.audiences.checkpointed(audiences);
        w.touched_since_checkpoint = 0;
        Ok(())
    }

    /// Records and bytes per kind of record.
    pub fn record_stats(&self) -> Result<Vec<crate::storage::RecordStats>> {
        self.store.record_stats()
    }

    /// Bytes the folder takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.store.size_on_disk()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Best effort: a failed snapshot only means more recovery work at the next open.
        if !self.abandoned.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = self.checkpoint();
        }
    }
}

/// Trains a block dictionary on the events of a write, when it has enough of them: the bodies
/// of (a sample of) its customers' new blocks. `None` for a smaller write, or when training
/// finds nothing.
fn train_from_write(work: &BTreeMap<u32, Work>, id: u32) -> Option<BlockDictionary> {
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

/// Trains a block dictionary on stored blocks (their first ones in key order, up to
/// [`dictionary::TRAIN_SAMPLE_BYTES`] of bodies): for a folder filled by writes too small to
/// train one, or written by a build without dictionaries. `None` while there are too few.
pub(crate) fn train_from_store(store: &Store, id: u32) -> Result<Option<BlockDictionary>> {
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    for item in store.event_block_bytes() {
        let v = item?;
        let mut body = Vec::new();
        codec::block_body(&v, store.dictionaries(), &mut body)?;
        total += body.len();
        bodies.push(body);
        if total >= dictionary::TRAIN_SAMPLE_BYTES {
            break;
        }
    }
    let samples: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
    Ok(dictionary::train(&samples).and_then(|bytes| BlockDictionary::new(id, bytes).ok()))
}

/// What a write's applied changes touched, for saved audiences.
fn touched_by(applied: &[Applied]) -> Touched {
    let mut t = Touched::default();
    for a in applied {
        if a.is_new {
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
    }
    t
}

fn customer_field(fields: &[(u32, Value)], id: u32) -> Option<&Value> {
    fields
        .binary_search_by_key(&id, |(k, _)| *k)
        .ok()
        .map(|i| &fields[i].1)
}

/// Rebuilds the indexes (like `like`: same bounds and unindexed fields) and the catalog counts
/// from stored data alone.
fn rebuild_from(store: &Store, like: &Indexes) -> Result<(Indexes, Catalog, u64)> {
    let mut ix = like.empty_like();
    let mut catalog = store.catalog()?;
    let counted: Vec<u32> = catalog.events().map(|(id, _)| id).collect();
    for id in counted {
        catalog.reset_counts(id);
    }
    for cust in &store.customer_ids()? {
        ix.add_customer(cust);
    }
    for item in store.profiles() {
        let (cust, traits) = item?;
        ix.add_profile(cust, &traits);
    }
    let mut events = Vec::with_capacity(BLOCK_EVENTS);
    let mut total = 0u64;
    for item in store.event_blocks() {
        let (cust, start, v) = item?;
        events.clear();
        codec::decode_block(start, &v, store.dictionaries(), &mut events)?;
        for e in &events {
            ix.add_event(cust, e);
            catalog.count_event(e.event, &e.props, 1);
        }
        total += events.len() as u64;
    }
    ix.take_changed();
    Ok((ix, catalog, total))
}

/// Adds one customer's stored data to `ix` (after a purge): used by crash recovery.
fn index_customer(store: &Store, ix: &mut Indexes, cust: u32) -> Result<()> {
    if store.external_id(cust)?.is_none() {
        return Ok(());
    }
    ix.add_customer(cust);
    if let Some(p) = store.profile(cust)? {
        ix.add_profile(cust, &p);
    }
    let mut events = Vec::new();
    store.events(cust, &mut events)?;
    for e in &events {
        ix.add_event(cust, e);
    }
    Ok(())
}

fn catalog_bytes(catalog: &Catalog) -> Result<Vec<u8>> {
    serde_json::to_vec(catalog).map_err(|e| internal!("catalog: {e}"))
}

/// Whether a message's names keep the schema within `limits` (given the names of `catalog`).
fn check_limits(catalog: &Catalog, body: &Body, limits: &SchemaLimits) -> Result<()> {
    match body {
        Body::Identify { traits } => {
            catalog.check_traits(traits.iter().map(|(n, _)| n.as_str()), limits)
        }
        Body::Track { event, properties } => {
            catalog.check_event(event, properties.iter().map(|(n, _)| n.as_str()), limits)
        }
    }
}

/// Messages checked against the schema limits in order, as a write would take them in, without
/// storing anything: a strict import's first pass, so that a file with a message over a limit
/// is refused before anything of it is stored. From [`Db::limit_check`].
pub struct LimitCheck {
    catalog: Catalog,
    limits: SchemaLimits,
}

impl LimitCheck {
    /// Refuses a message over a limit; otherwise notes its names, as storing it would.
    pub fn admit(&mut self, m: &Message) -> Result<()> {
        check_limits(&self.catalog, &m.body, &self.limits)?;
        match &m.body {
            Body::Identify { traits } => {
                for (name, value) in traits {
                    self.catalog.intern_trait(name, value.as_ref());
                }
            }
            Body::Track { event, properties } => {
                let e = self.catalog.intern_event(event);
                let props: Vec<(u32, Value)> = properties
                    .iter()
                    .map(|(k, v)| (self.catalog.intern_prop(k), v.clone()))
                    .collect();
                self.catalog.count_event(e, &props, 1);
            }
        }
        Ok(())
    }
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
    Ok(())
}

#[cfg(test)]
mod group_commit_tests {
    //! Group commit, made deterministic: the test holds the write lock while writers queue.
    use super::*;
    use std::thread;
    use std::time::Duration;

    fn tracked(cust: &str, id: Option<&str>, ts: Timestamp) -> Message {
        let mut m = Message::track(cust, "viewed", vec![], Some(ts));
        m.message_id = id.map(str::to_owned);
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
            [(2, 0), (1, 1), (1, 0)]
                .map(|(stored, duplicates)| IngestReport { stored, duplicates })
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
        // Damage one customer's stored block: a write that must merge into it fails to read it.
        let cust = db.internal_id("bad").unwrap().unwrap();
        let mut batch = WriteBatch::new();
        for (_, start, _) in db.store.blocks_from(cust, 0).unwrap() {
            batch.put_block(cust, start, &[0xff, 0xff, 0xff][..]);
        }
        db.store.commit(batch).unwrap();

        let w = db.writer.lock();
        let generation = w.generation;
        let handles = queue_behind_lock(
            &db,
            vec![
                vec![tracked("good", None, 5)],
                vec![tracked("bad", None, 5)],
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

//! The library API: open a database folder, ingest messages, read and delete customers, inspect
//! the schema, verify and rebuild the indexes. [`Db`] is a thin handle: each method takes the
//! lock it needs and hands the work to the module that owns it.
//!
//! - `write.rs`: the `Writer` (group commit, per-write ingest, prepare, merge,
//!   commit, delete); a `&mut Writer` comes only from the writer lock's guard, so the functions
//!   that need the lock take one.
//! - `identity.rs`: identity merge (aliases), the guard rails and the write's view of the ids.
//! - `recovery.rs`: open, replay of the dirty log, rebuild, verify, checkpoints and snapshots.
//! - `query.rs`, `values.rs`, `audiences.rs`: delegations to the query engine, to its value
//!   counts (`top`, `recommend`, `recent`) and to saved audiences.
//!
//! Writes are serialised by one writer lock. A write is committed as one sled batch (data, id
//! maps, catalog and a dirty-log record naming the customers it touched), flushed to disk, and
//! only then applied to the in-memory indexes that readers see. The indexes are snapshotted to
//! storage from time to time; on open, the snapshot is loaded and the customers in the dirty log
//! after it are recomputed from their stored data, so the indexes always equal a rebuild.
//!
//! Owns the handle's state (store, read state, saved audiences, writer lock, write queue) and
//! the public types. Must not hold the logic of the layers below: queries, saved audiences,
//! storage records and indexes are worked on by their own modules, which it calls.

mod audiences;
mod identity;
mod predict;
mod query;
mod recovery;
mod reports;
mod values;
mod write;

use std::path::{Path, PathBuf};

use compact_str::CompactString;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::audience::Audiences;
use crate::error::{Error, Result};
use crate::index::{DEFAULT_ROLLUP_BOUND, PARALLEL_FROM};
use crate::ingest::message::{Body, Message};
use crate::model::time::{self, Clock, Timestamp};
use crate::model::value::ValueType;
use crate::model::{Fields, StoredEvent, Value};
pub(crate) use crate::query::ReadState;
use crate::storage::catalog::type_names;
use crate::storage::{compact, Catalog, SchemaLimits, Store};

pub(crate) use recovery::train_from_store;
use write::{check_limits, PendingWrite, Writer};

use crate::storage::timeline;
pub use crate::storage::timeline::BLOCK_EVENTS;

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
    /// Snapshot the indexes once writes since the last snapshot have touched this many
    /// distinct customers: what an open after a crash recomputes, each once however many writes
    /// touched it, so this bounds the recovery work. (Counting every write's customers instead
    /// made a time-ordered import, which touches most customers again in every batch, snapshot
    /// the indexes about ten times over at 200,000 customers.) At the latest, a checkpoint comes
    /// once the writes have touched 16 times this many, each customer counted once per write:
    /// that bounds the dirty log, a record per write, where few customers are written often.
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
    /// From how many saved audiences with customers due at one step of the clock those
    /// customers' days are listed once for all of them (each audience's day look-ups a search
    /// in a customer's own days) instead of each audience passing over the day bitmaps. Both
    /// give the same answers; tests set it to 0 or `usize::MAX` to run either path. The listing
    /// pays from about a hundred audiences due: at 20k customers it made the clock 0.87 of its
    /// speed with 100 saved audiences and 1.3 times it with 1,000 (`BENCHMARKS.md`).
    pub audience_due_days_from: usize,
    /// The same for a write: from how many saved audiences asking the indexes about the
    /// written customers (what their events leave open) those customers' days are listed once
    /// for all of them, from the earliest cut of the asking audiences' windows. A write's
    /// customers are few and the listing covers only those windows' days, so it pays from a
    /// few audiences: at 20k customers with 1,000 saved audiences it let 26 of 9,957 written
    /// customers go unread instead of 3,378 (`BENCHMARKS.md`). Tests set it to 0 or
    /// `usize::MAX` to run either path.
    pub audience_write_days_from: usize,
    /// A write with at least this many events applies its index changes on every core (a
    /// thread per core, each taking whole families); smaller ones on the writer's thread. Both
    /// give the same indexes; tests set it to 0 to run the parallel path on small writes.
    pub parallel_index_from: usize,
    /// How far the schema may grow: distinct event names, property names per event and in
    /// all, trait names. A message past a limit is refused ([`Error::Limit`]) and nothing of it
    /// is stored; names already stored are always accepted.
    pub limits: SchemaLimits,
    /// The most ids one customer may have: a merge past it is refused
    /// ([`Error::MergeRefused`]) rather than gluing many people together through one shared id.
    pub max_ids_per_customer: usize,
    /// Whether two customers that both have a `userId` may be merged (off: such a merge is
    /// refused, [`Error::MergeRefused`]).
    pub allow_known_merge: bool,
    /// The write log's memtable is folded into sealed blocks once it holds more than this many
    /// events (storage's timeline; docs/STORAGE.md "Write log and memtable")...
    pub fold_events: usize,
    /// ... or more than this many bytes: the memory it may take, and what an open reads back.
    /// Both default to what a sixteenth of the machine's memory holds, between 2,000,000
    /// events in 128 MiB and 16,000,000 in 1 GiB (storage's `timeline::fold_bounds`).
    pub fold_bytes: usize,
    /// A fold commits a batch once it holds about this many bytes of new blocks (each batch is
    /// atomic, and a crash between them loses nothing).
    pub fold_batch_bytes: usize,
}

/// The default of [`Config::max_ids_per_customer`].
pub const DEFAULT_MAX_IDS_PER_CUSTOMER: usize = 100;

impl Config {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let (fold_events, fold_bytes) = timeline::fold_bounds();
        Config {
            path: path.into(),
            value_bound: 1000,
            rollup_bound: DEFAULT_ROLLUP_BOUND,
            checkpoint_after: 250_000,
            clock: Clock::System,
            feed_capacity: 1_000_000,
            audience_bulk_from: 2048,
            audience_due_days_from: 128,
            audience_write_days_from: 8,
            parallel_index_from: PARALLEL_FROM,
            limits: SchemaLimits::default(),
            max_ids_per_customer: DEFAULT_MAX_IDS_PER_CUSTOMER,
            allow_known_merge: false,
            fold_events,
            fold_bytes,
            fold_batch_bytes: timeline::FOLD_BATCH_BYTES,
        }
    }
}

/// A batch's report, and the messages refused for a schema limit (their positions in the
/// batch and the errors), as [`Db::ingest_lenient`] returns them.
pub type Outcome = (IngestReport, Vec<(usize, Error)>);

/// An open audiencedb database.
pub struct Db {
    pub(crate) store: Store,
    pub(crate) config: Config,
    pub(crate) writer: Mutex<Writer>,
    /// Writes waiting for the write lock, taken together by the next holder (group commit).
    pending: Mutex<Vec<PendingWrite>>,
    pub(crate) state: RwLock<ReadState>,
    pub(crate) audiences: Audiences,
    /// Closed (`close`) or abandoned (`abandon`): its drop does nothing more.
    closed: std::sync::atomic::AtomicBool,
}

/// The outcome of one [`Db::ingest`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Messages stored.
    pub stored: u64,
    /// Messages skipped because their `messageId` was already stored.
    pub duplicates: u64,
    /// Merges of two customers into one done (an alias of ids that are one customer already
    /// does none).
    pub merges: u64,
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
    /// Its own id: the one it was first stored under, or the `userId` it was merged into.
    pub id: String,
    /// Every id it is known by, its own first, then those merged into it in order.
    pub ids: Vec<String>,
    /// The dense internal id used in bitmaps.
    pub internal_id: u32,
    /// `None` when the customer is known only from events.
    pub traits: Option<Vec<(String, Value)>>,
    /// In time order.
    pub events: Vec<Event>,
    /// Every computed trait's value now (`None`: no value for this customer), by name. Derived
    /// from the events, never stored.
    pub computed: Vec<(String, Option<Value>)>,
}

impl Customer {
    /// Everything stored about the customer as JSON: the export a privacy request asks for.
    pub fn to_json(&self) -> serde_json::Value {
        let fields = |fs: &[(String, Value)]| {
            serde_json::Value::Object(fs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
        };
        let mut json = serde_json::json!({
            "id": self.id,
            "ids": self.ids,
            "traits": self.traits.as_deref().map(fields),
            "events": self.events.iter().map(|e| serde_json::json!({
                "event": e.name,
                "timestamp": time::format_rfc3339(e.timestamp),
                "properties": fields(&e.properties),
            })).collect::<Vec<_>>(),
        });
        // Only a store with computed traits has the field: derived, not stored, and marked so.
        if !self.computed.is_empty() {
            json["computed_traits"] = serde_json::Value::Object(
                self.computed
                    .iter()
                    .map(|(k, v)| {
                        let v = v.as_ref().map_or(serde_json::Value::Null, Value::to_json);
                        (k.clone(), v)
                    })
                    .collect(),
            );
        }
        json
    }
}

/// The schema view: which traits, events and properties exist, their types and counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    pub customers: u64,
    pub profiles: u64,
    pub traits: Vec<TraitSchema>,
    pub events: Vec<EventSchema>,
    /// The computed traits, by name: traits in rules, derived from events.
    pub computed_traits: Vec<ComputedTraitSchema>,
}

/// A computed trait in the schema view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputedTraitSchema {
    pub name: String,
    /// Its expression, canonical.
    pub expression: String,
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

/// The database's totals, counted without reading any bitmap: what `audiencedb stats` and the
/// socket's `INFO` and `DBSIZE` print. [`Db::schema`] has them name by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub customers: u64,
    pub profiles: u64,
    /// Events stored.
    pub events: u64,
    /// Trait names known (including those no customer has any more).
    pub trait_names: usize,
    /// Event names with at least one event stored.
    pub event_names: usize,
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

impl Db {
    /// Opens the database folder at `path`, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(Config::new(path.as_ref()))
    }

    /// Opens a database with explicit settings.
    pub fn open_with(config: Config) -> Result<Db> {
        recovery::open(config)
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

    /// Whether a database folder is at `path`, or a compaction interrupted between its renames
    /// left one beside it (which opening puts back).
    pub fn exists(path: impl AsRef<Path>) -> bool {
        let path = path.as_ref();
        path.exists() || compact::new_folder(path).exists() || compact::old_folder(path).exists()
    }

    /// Merges traits into a customer's profile (`None` removes a trait).
    pub fn identify(
        &self,
        customer: &str,
        traits: Vec<(CompactString, Option<Value>)>,
    ) -> Result<()> {
        self.ingest(vec![Message::identify(customer, traits)])
            .map(|_| ())
    }

    /// Records one event; `timestamp` `None` means now.
    pub fn track(
        &self,
        customer: &str,
        event: &str,
        properties: Vec<(CompactString, Value)>,
        timestamp: Option<Timestamp>,
    ) -> Result<()> {
        self.ingest(vec![Message::track(customer, event, properties, timestamp)])
            .map(|_| ())
    }

    /// Merges two ids into one customer (a Segment `alias`): `previous`'s customer, with its
    /// events, traits and ids, becomes `user`'s (made if new), whose traits win where both have
    /// one. Later messages for either id go to that customer. Returns whether anything changed
    /// (`false`: they are one customer already). Refused ([`Error::MergeRefused`]) past
    /// [`Config::max_ids_per_customer`], or between two known customers unless
    /// [`Config::allow_known_merge`]; refused or not, it is one atomic, durable write.
    pub fn alias(&self, previous: &str, user: &str) -> Result<bool> {
        self.ingest(vec![Message::alias(previous, user)])
            .map(|r| r.merges > 0)
    }

    /// Every id a customer is known by (its own first), or `None` for an unknown id.
    pub fn ids_of(&self, customer: &str) -> Option<Vec<String>> {
        let state = self.state.read();
        let cust = state.ids.get(customer)?;
        Some(
            state
                .ids
                .ids_of(cust)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )
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
        write::submit(self, messages, false).map(|(report, _)| report)
    }

    /// As [`Db::ingest`], except that a message that would take the schema past one of
    /// [`Config::limits`] is refused alone: nothing of it is stored, the batch's other messages
    /// are, and the refusals come back with their positions in `messages` (what an import does
    /// with a bad line). Other bad input still fails the whole batch.
    pub fn ingest_lenient(&self, messages: Vec<Message>) -> Result<Outcome> {
        write::submit(self, messages, true)
    }

    /// Testing only: the next `commits` commits succeed, and every later one fails with "No
    /// space left on device" without storing anything, as sled's commits all fail once a
    /// write of its log did. `u64::MAX` turns it off.
    #[doc(hidden)]
    pub fn inject_no_space_after_commits(&self, commits: u64) {
        self.store.inject_no_space_after_commits(commits);
    }

    /// Drops the database without snapshotting its indexes, as a crash would (the data itself
    /// is durable once written). For recovery tests.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Closes the database as dropping it would (the write log folded, the last checkpoint
    /// written), but reporting a failure, and waits until everything is durable. What dropping it
    /// afterwards does is only to free its memory: a process about to exit may skip that
    /// (`std::mem::ManuallyDrop`), as `audiencedb query` does (at 1M customers the freeing took
    /// about 5% of its process). Nothing written after it is checkpointed at the drop.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        // A clean close folds the write log, so that the next open (every command of the CLI
        // opens the folder) has none to read back; a failed fold still lets the checkpoint run.
        let folded = {
            let _w = self.writer.lock();
            self.store.fold(
                self.store.dictionaries().current(),
                self.config.fold_batch_bytes,
            )
        };
        let checkpointed = self.final_checkpoint();
        folded?;
        checkpointed?;
        self.store.flush()
    }

    /// Builds the id map's hash table now; it is otherwise built by the first look-up of a
    /// customer by external id (0.10–0.18 s at 1M customers). For a server, whose first request
    /// should not wait for it.
    pub fn prepare_lookups(&self) {
        self.state.read().ids.prepare_lookups();
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
    pub fn stored_profile(&self, internal: u32) -> Result<Option<Fields>> {
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
        let computed =
            crate::query::computed_values(&state, &self.store, cust, self.config.clock.now())?;
        let c = &state.catalog;
        let ids: Vec<String> = state
            .ids
            .ids_of(cust)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Some(Customer {
            id: ids.first().cloned().unwrap_or_else(|| customer.to_owned()),
            ids,
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
            computed,
        }))
    }

    /// All stored data of a customer as JSON, or `NotFound`.
    pub fn export_customer(&self, customer: &str) -> Result<serde_json::Value> {
        self.customer(customer)?
            .map(|c| c.to_json())
            .ok_or_else(|| Error::NotFound(format!("customer {customer:?}")))
    }

    /// Deletes a customer, found by any of its ids: profile, every event, every id and every
    /// bitmap bit. Returns the number of events removed. Durable when it returns.
    pub fn delete_customer(&self, customer: &str) -> Result<u64> {
        self.writer.lock().delete_customer(self, customer)
    }

    /// The totals: customers, profiles, events, names, bitmaps.
    pub fn totals(&self) -> Totals {
        let state = self.state.read();
        let (c, ix) = (&state.catalog, &state.indexes);
        Totals {
            customers: ix.everyone.len(),
            profiles: ix.profiles.len(),
            events: c.events().map(|(_, e)| e.count).sum(),
            trait_names: c.traits().count(),
            event_names: c.events().filter(|(_, e)| e.count > 0).count(),
        }
    }

    /// How many bitmaps the indexes hold.
    pub fn bitmap_count(&self) -> usize {
        self.state.read().indexes.bitmap_count()
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
            computed_traits: state
                .definitions
                .traits()
                .map(|d| ComputedTraitSchema {
                    name: d.name.clone(),
                    expression: d.expr.to_string(),
                })
                .collect(),
        }
    }

    /// Checks that the live indexes and counts equal a rebuild from the stored data.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.writer.lock().verify(self)
    }

    /// Replaces the indexes and counts with a rebuild from stored data and snapshots them.
    pub fn rebuild_indexes(&self) -> Result<VerifyReport> {
        self.writer.lock().rebuild_indexes(self)
    }

    /// Writes the changed index families to storage so that the next open need not recompute
    /// them. Runs by itself after enough writes; [`Db::final_checkpoint`] runs when the database
    /// is dropped.
    pub fn checkpoint(&self) -> Result<()> {
        self.writer.lock().checkpoint(self)
    }

    /// The last checkpoint before a close: what [`Db::checkpoint`] writes, and the trait families
    /// whole instead of a trait patch that later opens would have to apply (past
    /// `index::close_patch_limit` customers). Runs by itself when the database is dropped; an
    /// import calls it to report its failure.
    pub fn final_checkpoint(&self) -> Result<()> {
        self.writer.lock().final_checkpoint(self)
    }

    /// Writes a whole index snapshot (a new index snapshot file) whatever changed: for a
    /// compaction, whose copy must hold nothing an earlier snapshot file kept of deleted
    /// customers.
    pub(crate) fn checkpoint_whole(&self) -> Result<()> {
        self.writer.lock().snapshot(self, true)
    }

    /// Records and bytes per kind of record.
    pub fn unfolded(&self) -> timeline::Unfolds {
        self.store.unfolded()
    }

    /// Counts and sizes of the stored records, by kind.
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
        // Best effort: a failed snapshot only means more recovery work at the next open, and a
        // failed fold more of the write log to read back. Nothing after `close` or `abandon`.
        let _ = self.close();
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
            Body::Alias { .. } => {}
        }
        Ok(())
    }
}

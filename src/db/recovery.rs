//! Opening a folder and keeping what a crash would lose cheap to recover: the index and id-map
//! snapshots are loaded, the customers in the dirty log after them are recomputed from their
//! stored data (`docs/DURABILITY.md`), a snapshot of an older layout is rebuilt; `verify` and
//! `rebuild_indexes` compare or replace the live indexes with a rebuild; checkpoints write the
//! changed index families (or, for traits, the patch of customers to recompute from their
//! profiles at the next open), id-map chunks and saved audiences' members.
//!
//! Checkpoints, `verify` and `rebuild_indexes` run under the writer lock: they are methods of
//! [`Writer`]. Reads records only through `Store` and writes through `storage::WriteBatch`.

use rayon::prelude::*;
use roaring::RoaringBitmap;

use parking_lot::{Mutex, RwLock};

use super::write::{catalog_bytes, Writer};
use super::{Config, Db, VerifyReport, BLOCK_EVENTS};
use crate::audience::{Audiences, Touched};
use crate::error::Result;
use crate::index::{DecodedFamily, Family, Indexes, SNAPSHOT_VERSION};
use crate::query::ReadState;
use crate::storage::codec;
use crate::storage::dictionary;
use crate::storage::snapshot_file::FileRecords;
use crate::storage::{meta, BlockDictionary, Catalog, IdMap, Store, WriteBatch};

/// Opens the database of `config`: loads the snapshots, recovers the customers written after
/// them, brings saved audiences up to date, and snapshots again when it recovered anything.
pub(super) fn open(config: Config) -> Result<Db> {
    // The index snapshot file is read and decoded while sled opens.
    let (store, ahead) = Store::open_reading_ahead(&config.path, decode_file_families)?;
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
    let mut stale = !current && store.has_index_snapshot();
    if current {
        if let Err(e) = load_snapshot(&store, &mut indexes, ahead) {
            if !store.index_file_damaged() {
                return Err(e);
            }
            // The index snapshot file is missing or damaged. It only summarises the stored
            // data: the indexes are rebuilt from that, and snapshotted into a new file.
            indexes = Indexes::with_bounds(config.value_bound, config.rollup_bound);
            stale = true;
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
    // The id map read from the snapshot chunks must name exactly the customers the indexes know
    // (a customer is known exactly when it has an id record); damaged or stale chunks do not.
    let ids = if stale || ids.holds_exactly(&indexes.everyone) {
        ids
    } else {
        IdMap::load(&store)?
    };
    let (definitions, audiences, upkeep) = Audiences::load(&store, &indexes, &ids)?;
    let db = Db {
        store,
        pending: Mutex::new(Vec::new()),
        writer: Mutex::new(Writer::new(generation, next_id, dirty.clone(), upkeep)),
        state: RwLock::new(ReadState {
            catalog,
            indexes,
            ids,
            definitions,
        }),
        audiences,
        config,
        closed: false.into(),
    };
    // Saved audiences: customers written since the snapshot are evaluated again (their
    // changes may not have reached the feed), and time catches up with the clock.
    let mut w = db.writer.lock();
    let touched = Touched {
        all: dirty.clone(),
        ..Touched::default()
    };
    w.maintain_audiences(&db, Some(&touched))?;
    if stale {
        w.snapshot(&db, true)?;
    } else if !dirty.is_empty() {
        w.checkpoint(&db)?;
    }
    drop(w);
    Ok(db)
}

impl Writer {
    /// Checks that the live indexes and counts equal a rebuild from the stored data.
    pub(super) fn verify(&mut self, db: &Db) -> Result<VerifyReport> {
        let state = db.state.read();
        let (rebuilt, catalog, events) = rebuild_from(&db.store, &state.indexes)?;
        let mut problems = state.indexes.differences(&rebuilt);
        if state.ids != IdMap::load(&db.store)? {
            problems.push("the in-memory id map differs from the stored ids".into());
        }
        for (id, e) in state.catalog.events() {
            let recount = catalog.events().nth(id as usize).map(|(_, r)| r);
            if recount.map(|r| (r.count, &r.props)) != Some((e.count, &e.props)) {
                problems.push(format!("event {:?}: stored counts differ", e.name));
            }
        }
        drop(state);
        problems.extend(db.audiences.problems(&db.audience_env())?);
        Ok(VerifyReport {
            customers: rebuilt.everyone.len(),
            events,
            bitmaps: rebuilt.bitmap_count(),
            problems,
        })
    }

    /// Replaces the indexes and counts with a rebuild from stored data and snapshots them.
    pub(super) fn rebuild_indexes(&mut self, db: &Db) -> Result<VerifyReport> {
        let like = db.state.read().indexes.empty_like();
        let (rebuilt, catalog, events) = rebuild_from(&db.store, &like)?;
        let ids = IdMap::load(&db.store)?;
        let report = VerifyReport {
            customers: rebuilt.everyone.len(),
            events,
            bitmaps: rebuilt.bitmap_count(),
            problems: Vec::new(),
        };
        let mut batch = WriteBatch::new();
        batch.put_meta(meta::CATALOG, &catalog_bytes(&catalog)?);
        db.store.commit(batch)?;
        {
            let mut state = db.state.write();
            state.indexes = rebuilt;
            state.catalog = catalog;
            state.ids = ids;
        }
        self.snapshot(db, true)?;
        Ok(report)
    }

    pub(super) fn checkpoint(&mut self, db: &Db) -> Result<()> {
        self.checkpoint_at(db, false)
    }

    /// [`Writer::checkpoint`]; `closing` for the last one before a close, which writes a whole
    /// snapshot at a lower mark ([`Store::index_file_due`]).
    fn checkpoint_at(&mut self, db: &Db, closing: bool) -> Result<()> {
        self.snapshot_at(db, false, closing)?;
        // After the snapshot, so that trouble reading stored blocks cannot hold it back.
        if db.store.dictionaries().current().is_none() {
            if let Some(d) = train_from_store(&db.store, dictionary::FIRST_ID)? {
                let mut batch = WriteBatch::new();
                batch.put_dictionary(&d);
                db.store.commit(batch)?;
                db.store.dictionaries().install(d)?;
            }
        }
        Ok(())
    }

    /// [`Writer::checkpoint`] before a close: the trait families whole when the patch would
    /// cost later opens too much ([`crate::index::Indexes::closing`]), and, when it writes
    /// anything, a whole snapshot when the families kept in sled beside the snapshot file would
    /// pass a sixteenth of it.
    pub(super) fn final_checkpoint(&mut self, db: &Db) -> Result<()> {
        db.state.write().indexes.closing();
        self.checkpoint_at(db, true)
    }

    /// Writes what changed since the last snapshot (`all`: everything, into a new index
    /// snapshot file).
    pub(super) fn snapshot(&mut self, db: &Db, all: bool) -> Result<()> {
        self.snapshot_at(db, all, false)
    }

    /// [`Writer::snapshot`], before a close when `closing`.
    fn snapshot_at(&mut self, db: &Db, all: bool, closing: bool) -> Result<()> {
        let index_generation = db.store.meta_u64(meta::INDEX_GENERATION)?;
        if !all
            && index_generation == self.generation
            && self.touched_since_checkpoint.is_empty()
            && !db.state.read().ids.has_changes()
            && !db.state.read().indexes.traits_due_whole()
        {
            return Ok(());
        }
        // A whole snapshot goes into a new index snapshot file, which gives the space of the
        // previous one back; the families that change in between are written into sled.
        let all = all || db.store.index_file_due(0, closing);
        let (families, id_chunks): (Vec<Family>, Vec<u32>) = {
            let mut state = db.state.write();
            let changed = state.indexes.take_changed();
            let changed_ids = state.ids.take_changed();
            if all {
                state.indexes.traits_written_whole();
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
        let written = self.write_snapshot(db, all, closing, &families, &id_chunks);
        if !matches!(written, Ok(true)) {
            // Nothing of it is stored: what changed must still be written by the next one (or
            // a later checkpoint would move the index generation past families never written).
            let mut state = db.state.write();
            state.indexes.restore_changed(families);
            state.ids.restore_changed(id_chunks);
        }
        match written {
            Ok(true) => Ok(()),
            // The changed families would take the ones beside the file past half its size.
            Ok(false) => self.snapshot(db, true),
            Err(e) => Err(e),
        }
    }

    /// Writes the index and id map snapshot records `families` and `id_chunks` in one batch
    /// (`all`: every family, into a new index snapshot file). Returns `false`, having written
    /// nothing, when the families are not `all` and would take the ones written into sled
    /// beside the file past half its size (a sixteenth when `closing`): a whole snapshot is due
    /// instead.
    fn write_snapshot(
        &mut self,
        db: &Db,
        all: bool,
        closing: bool,
        families: &[Family],
        id_chunks: &[u32],
    ) -> Result<bool> {
        let state = db.state.read();
        let mut batch = WriteBatch::new();
        // Families are encoded (and compressed) independently: on every core.
        let mut encoded: Vec<(Vec<u8>, Option<bytes::Bytes>)> = families
            .par_iter()
            .map(|f| (f.key(), state.indexes.encode_family(f)))
            .collect();
        let id_blobs: Vec<(u32, Option<Vec<u8>>)> = id_chunks
            .iter()
            .map(|&chunk| (chunk, state.ids.encode_chunk(chunk)))
            .collect();
        drop(state);
        if !all {
            let more: usize = encoded
                .iter()
                .filter_map(|(_, b)| b.as_ref())
                .map(|b| b.len())
                .sum();
            if db.store.index_file_due(more as u64, closing) {
                return Ok(false);
            }
        }
        let mut file = None;
        let mut overrides = 0;
        if all {
            // A whole snapshot replaces every record of the previous one, in the same batch (a
            // later insert of a key wins over its removal), and the previous file.
            db.store.clear_index_snapshot(&mut batch)?;
            // The layout version stays in sled, where an open reads it first.
            let version = Family::Version.key();
            encoded.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some((family_key, Some(blob))) = encoded.iter().find(|(k, _)| *k == version) {
                batch.put_index_family(family_key, blob.to_vec());
            }
            let seq = db.store.write_index_file(
                encoded
                    .iter()
                    .filter(|(k, _)| *k != version)
                    .filter_map(|(k, b)| b.as_deref().map(|b| (&k[..], b))),
            )?;
            batch.put_index_file(seq);
            file = Some(seq);
        } else {
            let in_file = db.store.has_index_file();
            for (family_key, blob) in encoded {
                match blob {
                    Some(blob) => {
                        overrides += blob.len() as u64;
                        // A fresh encoding's buffer moves back without a copy.
                        batch.put_index_family(&family_key, Vec::from(blob));
                    }
                    None if in_file => batch.hide_index_family(&family_key),
                    None => batch.remove_index_family(&family_key),
                }
            }
        }
        // After a whole snapshot's clearing, which removes every id chunk record: in a batch
        // the last operation on a key wins.
        for (chunk, blob) in id_blobs {
            match blob {
                Some(blob) => batch.put_id_chunk(chunk, blob),
                None => batch.remove_id_chunk(chunk),
            }
        }
        db.store.clear_dirty_log(&mut batch)?;
        batch.put_meta_u64(meta::INDEX_GENERATION, self.generation);
        let audiences =
            db.audiences
                .checkpoint(&db.store, &mut batch, db.config.feed_capacity.max(1))?;
        if let Err(e) = db.store.commit(batch) {
            if let Some(seq) = file {
                db.store.index_file_abandoned(seq);
            }
            return Err(e);
        }
        match file {
            Some(seq) => db.store.index_file_committed(seq),
            None => db.store.note_index_overrides(overrides),
        }
        db.audiences.checkpointed(audiences);
        self.touched_since_checkpoint.clear();
        self.touches_since_checkpoint = 0;
        Ok(true)
    }
}

/// The families of an index snapshot file, decoded, each with its key; in no particular order.
type FileFamilies = Result<Vec<(Vec<u8>, DecodedFamily)>>;

/// Decodes every family of an index snapshot file: reading is sequential, decoding parallel (at
/// 1M customers the file holds 300 MB of records whose decoding is most of an open).
fn decode_file_families(records: FileRecords) -> FileFamilies {
    records
        .par_bridge()
        .map(|item| {
            let (family_key, v) = item?;
            let family = Indexes::decode_owned_family(&family_key, v)?;
            Ok((family_key, family))
        })
        .collect()
}

/// Loads the stored index snapshot into `indexes` (empty, of the folder's bounds): the snapshot
/// file's families, each replaced by the one written into sled since under its key. `ahead` is
/// the file decoded while sled opened, when that was the folder's file; otherwise (none, or an
/// error, which the merged read meets again and reports) the file is read here, merged with
/// sled's records as it goes.
fn load_snapshot(store: &Store, indexes: &mut Indexes, ahead: Option<FileFamilies>) -> Result<()> {
    let decoded: Vec<DecodedFamily> = match ahead {
        Some(Ok(file)) => {
            let overrides = store.index_overrides()?;
            let replaced: std::collections::BTreeSet<&[u8]> =
                overrides.iter().map(|(key, _)| &key[..]).collect();
            let mut decoded: Vec<DecodedFamily> = file
                .into_iter()
                .filter(|(key, _)| !replaced.contains(&key[..]))
                .map(|(_, family)| family)
                .collect();
            let newer: Vec<DecodedFamily> = overrides
                .into_par_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(key, v)| Indexes::decode_owned_family(&key, v))
                .collect::<Result<_>>()?;
            decoded.extend(newer);
            decoded
        }
        _ => store
            .index_families()
            .par_bridge()
            .map(|item| {
                let (family_key, v) = item?;
                Indexes::decode_owned_family(&family_key, v)
            })
            .collect::<Result<_>>()?,
    };
    for family in decoded {
        indexes.install_family(family);
    }
    indexes.settle_latest();
    // The customers whose traits changed after the trait families were last written whole (up
    // to a thirty-second of them): their profiles are read on every core, then applied in order.
    let patch: Vec<u32> = indexes.trait_patch().iter().collect();
    let profiles: Vec<_> = patch
        .par_iter()
        .map(|&cust| store.profile(cust))
        .collect::<Result<_>>()?;
    let mut read = patch.into_iter().zip(profiles);
    indexes.apply_trait_patch(|cust| match read.next() {
        Some((read_cust, profile)) if read_cust == cust => Ok(profile),
        _ => Err(crate::error::internal!(
            "the trait patch changed while it was applied"
        )),
    })
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

/// Recomputes the given customers' indexes from their stored data: used where a write's
/// changes reached the indexes but its commit failed.
pub(super) fn reindex(store: &Store, ix: &mut Indexes, custs: &RoaringBitmap) -> Result<()> {
    ix.purge(custs);
    for cust in custs {
        index_customer(store, ix, cust)?;
    }
    Ok(())
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

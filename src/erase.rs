//! Erasure: removing every byte of deleted customers from the folder's files, and proving it.
//!
//! [`Db::delete_customer`] removes a customer's records from the tree, but sled keeps old
//! versions of records in its log segments until it happens to reuse them, and other records
//! can hold the customer's bytes too: the change feed's entries and exits name the external id,
//! and the block compression dictionary is trained on sample blocks, so it can hold substrings of
//! the customer's event properties. [`Db::compact`] writes every live record into a fresh folder
//! (the dictionary trained again from the remaining blocks and every block compressed again with
//! it, the feed's changes of customers no longer stored kept without their id), and replaces the
//! old folder with it crash-safely (`storage/compact.rs`). Once it returns, the folder's files
//! hold nothing of any customer deleted before it. [`find_traces`] checks that, byte by byte.

use std::fs;
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::audience::feed;
use crate::db::{train_from_store, Db};
use crate::error::{internal, invalid, Error, Result};
pub use crate::storage::compact::Trace;
use crate::storage::compact::{self, Step, DONE};
use crate::storage::{
    self, codec, dictionary, meta, BlockDictionary, Bytes, RecordKind, Store, WriteBatch,
};

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompactReport {
    /// Records written into the new folder.
    pub records: u64,
    /// Event blocks among them, each decompressed and compressed again.
    pub blocks: u64,
    /// Customers whose unfolded events (the write log's) were folded into sealed blocks first
    /// (in the folder itself, before the copy), so that the new folder holds no write log.
    pub customers_folded: u64,
    /// Changes of the feed whose customer is no longer stored, kept without the id.
    pub feed_changes_erased: u64,
    /// Whether the new folder has a block dictionary (trained on its own blocks).
    pub dictionary: bool,
    /// Bytes of the folder's files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// How long it took.
    pub seconds: f64,
}

/// The outcome of [`find_traces`].
#[derive(Debug, Clone, Default)]
pub struct TraceReport {
    /// Every place a searched string was found: in a stored record (decompressed) or in a file.
    pub traces: Vec<Trace>,
    /// Stored records read.
    pub records: u64,
    /// Files and bytes read.
    pub files: u64,
    pub bytes: u64,
}

/// A batch written into the new folder is applied once it holds this many bytes. About two of
/// sled's 512 KiB log segments: sled left fewer dead copies in the new folder's file with
/// batches of 0.5–2 MiB than with 64 KiB or 4–16 MiB (the 100,000-customer folder compacted to
/// 46–50 bytes per event against 61–62 with 16 MiB; `BENCHMARKS.md`, "A live stream over the
/// socket"). Nothing is flushed per batch: the folder is synced once, before it is marked
/// complete.
const BATCH_BYTES: usize = 1 << 20;

/// Event blocks compressed again at once, on every core.
const BLOCKS_AT_ONCE: usize = 4096;

/// The bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// Records gathered for the new folder, committed in pieces.
struct Writing<'a> {
    to: &'a Store,
    batch: WriteBatch,
    bytes: usize,
    records: u64,
}

impl Writing<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put_record(key, value);
        self.added(key.len() + value.len())
    }

    fn put_dictionary(&mut self, d: &BlockDictionary) -> Result<()> {
        self.batch.put_dictionary(d);
        self.added(d.bytes().len())
    }

    /// Counts a record of `bytes` added, and commits once the batch is large enough.
    fn added(&mut self, bytes: usize) -> Result<()> {
        self.bytes += bytes;
        self.records += 1;
        if self.bytes >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.to.apply(std::mem::take(&mut self.batch))?;
        self.bytes = 0;
        Ok(())
    }
}

impl Db {
    /// Rewrites the folder so that its files hold nothing of any customer deleted before:
    /// every live record is written into a fresh folder beside it (event blocks compressed again
    /// with a dictionary trained on the remaining blocks only; the change feed's entries and
    /// exits of customers no longer stored kept without their id), which then replaces the
    /// folder. A crash at any moment leaves the old folder or the new one, and the next open
    /// cleans up the rest. Consumes the database: open the folder again to go on.
    pub fn compact(self) -> Result<CompactReport> {
        let started = Instant::now();
        let path = self.path().to_owned();
        compact::check_path(&path)?;
        let parent = compact::parent(&path);
        // A snapshot of everything first, so that the dirty log is empty and the index and
        // audience snapshots are current: they are copied as they are. A whole one, so that
        // the index snapshot file copied holds nothing of deleted customers.
        self.checkpoint_whole()?;
        let generation = self.store.meta_u64(meta::GENERATION)?;
        if self.store.meta_u64(meta::INDEX_GENERATION)? != generation || self.store.has_dirty_log()
        {
            return Err(invalid!(
                "the index snapshot is not current after a checkpoint: run `audiencedb verify`"
            ));
        }
        let new_path = compact::new_folder(&path);
        compact::remove_tree(&new_path)?;
        let mut report = CompactReport {
            bytes_before: folder_bytes(&path)?,
            ..CompactReport::default()
        };
        // The write log folded into sealed blocks, in this folder (each batch leaves the
        // timelines as they were), so that the copy is minimal: blocks only.
        report.customers_folded = {
            let _w = self.writer.lock();
            self.store.fold(
                self.store.dictionaries().current(),
                self.config.fold_batch_bytes,
            )?
        };
        {
            let new = Store::open(&new_path)?;
            self.copy_into(&new, &mut report)?;
        }
        // The copied meta records name the index snapshot file: the same file, copied.
        self.store.copy_index_file_into(&new_path)?;
        compact::crash_point(Step::Written);
        compact::sync_tree(&new_path)?;
        fs::File::create(new_path.join(DONE))?.sync_all()?;
        compact::sync_dir(&new_path)?;
        compact::sync_dir(&parent)?;
        compact::crash_point(Step::Marked);

        // The swap, while this process still holds the old folder (and its lock).
        let old_path = compact::old_folder(&path);
        compact::remove_tree(&old_path)?;
        fs::rename(&path, &old_path)?;
        compact::sync_dir(&parent)?;
        compact::crash_point(Step::OldAside);
        if let Err(e) = fs::rename(&new_path, &path) {
            let _ = fs::rename(&old_path, &path);
            return Err(e.into());
        }
        compact::sync_dir(&parent)?;
        compact::crash_point(Step::NewInPlace);
        fs::remove_file(path.join(DONE))?;
        // The old folder is going away: no snapshot into it.
        self.abandon();
        if let Some(first) = fs::read_dir(&old_path)?.next() {
            let first = first?.path();
            if first.is_file() {
                fs::remove_file(first)?;
            }
        }
        compact::crash_point(Step::Removing);
        compact::remove_tree(&old_path)?;
        compact::sync_dir(&parent)?;
        report.bytes_after = folder_bytes(&path)?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Writes every live record into `new` (see [`Db::compact`]).
    fn copy_into(&self, new: &Store, report: &mut CompactReport) -> Result<()> {
        let old_dicts = self.store.dictionaries();
        // Trained on the remaining blocks only: the old dictionary may hold bytes of deleted
        // customers' events.
        let dict = train_from_store(&self.store, dictionary::FIRST_ID)?;
        let mut out = Writing {
            to: new,
            batch: WriteBatch::new(),
            bytes: 0,
            records: 0,
        };
        if let Some(d) = &dict {
            out.put_dictionary(d)?;
            report.dictionary = true;
        }
        let state = self.state.read();
        let mut blocks: Vec<(Bytes, Bytes)> = Vec::with_capacity(BLOCKS_AT_ONCE);
        let flush_blocks =
            |blocks: &mut Vec<(Bytes, Bytes)>, out: &mut Writing<'_>| -> Result<()> {
                let packed: Vec<(Bytes, Vec<u8>)> = blocks
                    .par_iter()
                    .map(|(k, v)| {
                        let mut body = Vec::new();
                        codec::block_body(v, old_dicts, &mut body)?;
                        Ok((k.clone(), codec::pack_block_body(&body, dict.as_ref())))
                    })
                    .collect::<Result<_>>()?;
                blocks.clear();
                for (k, v) in packed {
                    out.put(&k, &v)?;
                }
                Ok(())
            };
        for item in self.store.records() {
            let (k, v) = item?;
            match RecordKind::of(&k) {
                RecordKind::EventBlock => {
                    report.blocks += 1;
                    blocks.push((k, v));
                    if blocks.len() >= BLOCKS_AT_ONCE {
                        flush_blocks(&mut blocks, &mut out)?;
                    }
                }
                // Empty after the checkpoint; the old dictionary is replaced; derived records
                // name customers and their values, and readers build them again.
                RecordKind::DirtyLog | RecordKind::Dictionary | RecordKind::Derived => {}
                RecordKind::FeedChunk => {
                    let first = storage::feed_chunk_start(&k)?;
                    match feed::erase_in_chunk(first, &v, |c| state.ids.get(c).is_some())? {
                        Some((erased, n)) => {
                            report.feed_changes_erased += n;
                            out.put(&k, &erased)?;
                        }
                        None => out.put(&k, &v)?,
                    }
                }
                RecordKind::FeedV1 => {
                    // Converted to chunks at open; one left would keep an id.
                    return Err(internal!(
                        "a change feed record of the first layout is left"
                    ));
                }
                _ => out.put(&k, &v)?,
            }
        }
        flush_blocks(&mut blocks, &mut out)?;
        out.commit()?;
        new.flush()?;
        report.records = out.records;
        Ok(())
    }

    /// Deletes a customer (when stored) and compacts the folder: the customer's bytes are gone
    /// from every file when it returns. The number of events deleted (`None` when the customer
    /// was not stored: the compaction still erases whatever earlier deletes left).
    pub fn erase_customer(self, customer: &str) -> Result<(Option<u64>, CompactReport)> {
        let deleted = match self.delete_customer(customer) {
            Ok(n) => Some(n),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok((deleted, self.compact()?))
    }

    /// Every stored record (key and value; event blocks and index families also decompressed)
    /// that holds one of `needles`.
    pub fn record_traces(&self, needles: &[&[u8]]) -> Result<(Vec<Trace>, u64)> {
        let finders: Vec<memchr::memmem::Finder<'_>> =
            needles.iter().map(memchr::memmem::Finder::new).collect();
        let mut traces = Vec::new();
        let mut records = 0;
        let mut body = Vec::new();
        let version_key = crate::index::Family::Version.key();
        for item in self.store.records().chain(self.store.index_file_records()) {
            let (k, v) = item?;
            records += 1;
            body.clear();
            match RecordKind::of(&k) {
                RecordKind::EventBlock => {
                    codec::block_body(&v, self.store.dictionaries(), &mut body)?;
                }
                RecordKind::IndexFamily(family)
                    if family != version_key.as_slice() && !v.is_empty() =>
                {
                    codec::unpack_into(&v, "index family", 1 << 30, &mut body)?;
                }
                RecordKind::Derived if !v.is_empty() => {
                    codec::unpack_into(&v, "derived record", 1 << 31, &mut body)?;
                }
                _ => {}
            }
            for (i, f) in finders.iter().enumerate() {
                if [&k[..], &v[..], &body[..]]
                    .iter()
                    .any(|b| f.find(b).is_some())
                {
                    traces.push(Trace {
                        needle: i,
                        place: format!(
                            "a stored {} record (key \"{}\")",
                            RecordKind::name(&k),
                            k.escape_ascii()
                        ),
                    });
                }
            }
        }
        Ok((traces, records))
    }
}

/// Looks for each of `needles` (a deleted customer's id, email, property values) in the
/// database: in every stored record, decompressed, and then in every byte of every file of the
/// folder (and of a compaction's leftovers beside it). Consumes the database, which must be
/// closed before its files are read whole.
pub fn find_traces(db: Db, needles: &[&[u8]]) -> Result<TraceReport> {
    let path = db.path().to_owned();
    let (mut traces, records) = db.record_traces(needles)?;
    drop(db);
    let (raw, files, bytes) = compact::raw_traces(&path, needles)?;
    traces.extend(raw);
    Ok(TraceReport {
        traces,
        records,
        files,
        bytes,
    })
}

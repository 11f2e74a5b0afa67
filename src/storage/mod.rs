//! Durable storage in sled: the key layout ([`keys`]), byte encodings ([`codec`]), the catalog of
//! names ([`catalog`]) and [`Store`], which opens a database folder, reads records and commits
//! write batches durably. It knows nothing of indexes beyond storing their snapshot bytes.
//!
//! Storage owns its records: the layers above write through a [`WriteBatch`], whose methods name
//! the record they put or remove (`put_profile`, `remove_block`, `put_dirty`, `put_audience`,
//! ...), and read through `Store` methods of the same kind (`profile`, `blocks_from`,
//! `audience_definitions`, `feed_chunks`, ...). The key layout of [`keys`] and docs/STORAGE.md is
//! written out in this module only; nothing above it names a key or a sled batch.

pub mod batch;
pub mod catalog;
pub mod codec;
pub mod compact;
pub mod dictionary;
pub mod ids;
pub mod keys;
pub mod snapshot_file;
pub mod timeline;
pub mod view;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use crate::error::{corrupt, Error, Result};
use crate::model::Timestamp;

pub use batch::WriteBatch;
pub use catalog::{Catalog, SchemaLimit, SchemaLimits};
pub use codec::{Fields, StoredEvent};
pub use dictionary::{BlockDictionary, Dictionaries};
pub use ids::IdMap;

/// Stored bytes as storage hands them out: a key or a value, cheap to clone.
pub type Bytes = sled::IVec;

/// The on-disk format this build writes. Bump it with any incompatible change to [`keys`] or
/// [`codec`], and write the change down in docs/STORAGE.md.
/// 2: message-id records of 6-byte hashes.
/// 3: event blocks compressed with a stored dictionary (`z` records).
/// 4: event tails (`t` records): appended events that rewrite no stored block.
/// 5: merged customers' ids (`l` records) and anonymous customers (`n` records): an older build
///    would not find a merged id.
/// 6: the write log (a file beside sled's, `timeline.rs`): each write's new events in one
///    frame, folded into blocks later; no tails.
/// 7: further message-id records (`m` + id + record number): a fold adds the hashes it brings
///    a customer as a record of their own instead of rewriting the union; a format-6 build
///    would read the first record only, and take re-sent messages for new ones.
/// 8: the index snapshot file (`snapshot_file.rs`): the families of the last whole index
///    snapshot in a file beside sled's, named by the `index_file` meta record; a format-7 build
///    would read only the families written into sled since, and take them for the whole.
/// Folders of versions 1 to 7 are read, and marked 8 when opened (the tails of a format-4 or
/// format-5 folder are folded into blocks then; the index snapshot of a folder before format 8
/// stays in sled until the next checkpoint writes it whole into a file).
pub const FORMAT_VERSION: u32 = 8;

/// The format this process writes: [`FORMAT_VERSION`], or 3 under [`timeline::write_format_3`].
fn written_format() -> u32 {
    if timeline::writes_format_3() {
        3
    } else {
        FORMAT_VERSION
    }
}

/// The oldest format this build opens: a folder of it is marked [`FORMAT_VERSION`] when opened.
const OLDEST_FORMAT: u32 = 1;

const TREE: &str = "audiencedb";

/// A file written beside sled's own once the database is initialised. Its presence with no
/// format record in the tree means sled lost the records: damage, not a new database.
const MARKER: &str = "AUDIENCEDB";

/// What the marker file begins with (then the format version it was created with and a newline).
const MARKER_TEXT: &str = "audiencedb database, format ";

/// What a folder's marker file says.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Absent,
    /// Ours; `false` while it is empty or cut short (a crash as it was written).
    Ours(bool),
    /// Something else, and what it begins with.
    Foreign(String),
}

fn read_marker(path: &Path) -> Result<Marker> {
    use std::io::Read;
    let file = match std::fs::File::open(path.join(MARKER)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Marker::Absent),
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.is_file() {
        return Ok(Marker::Foreign("not a file".into()));
    }
    let mut head = Vec::new();
    file.take(64).read_to_end(&mut head)?;
    let text = MARKER_TEXT.as_bytes();
    Ok(if head.starts_with(text) {
        Marker::Ours(true)
    } else if text.starts_with(&head) {
        Marker::Ours(false)
    } else {
        let shown: String = String::from_utf8_lossy(&head).chars().take(32).collect();
        Marker::Foreign(format!("it begins {shown:?}"))
    })
}

/// Counters and markers kept in metadata records.
pub mod meta {
    /// The format version, `u32` BE.
    pub const FORMAT: &str = "format";
    /// The number of committed writes, `u64` BE.
    pub const GENERATION: &str = "generation";
    /// The generation the index snapshot reflects, `u64` BE.
    pub const INDEX_GENERATION: &str = "index_generation";
    /// The next internal customer id, `u32` BE.
    pub const NEXT_ID: &str = "next_id";
    /// The catalog, JSON.
    pub const CATALOG: &str = "catalog";
    /// The next saved-audience id, `u64` BE.
    pub const NEXT_AUDIENCE: &str = "next_audience";
    /// The time saved audiences were last made true at, `u64` BE (a timestamp).
    pub const AUDIENCES_AS_OF: &str = "audiences_as_of";
    /// The change feed's next sequence number, `u64` BE.
    pub const FEED_NEXT: &str = "feed_next";
    /// The index snapshot file the families of the last whole snapshot are in (its sequence
    /// number, `u64` BE; [`super::snapshot_file`]); absent when they are all in sled.
    pub const INDEX_FILE: &str = "index_file";
}

fn parse_feed_record(item: Result<(sled::IVec, sled::IVec)>) -> Result<(u64, sled::IVec)> {
    let (k, v) = item?;
    Ok((keys::parse_feed(&k)?, v))
}

/// What a stored record is, as far as copying and searching the records need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind<'k> {
    EventBlock,
    DirtyLog,
    Dictionary,
    /// A chunk of the change feed.
    FeedChunk,
    /// A change of the feed as first stored.
    FeedV1,
    /// An index snapshot family, with its family key.
    IndexFamily(&'k [u8]),
    /// Derived data a reader kept (`Store::derived`).
    Derived,
    Other,
}

impl<'k> RecordKind<'k> {
    pub fn of(key: &'k [u8]) -> RecordKind<'k> {
        match key.first().copied() {
            Some(keys::EVENTS) => RecordKind::EventBlock,
            Some(keys::DIRTY) => RecordKind::DirtyLog,
            Some(keys::DICTIONARY) => RecordKind::Dictionary,
            Some(keys::FEED) => RecordKind::FeedChunk,
            Some(keys::FEED_V1) => RecordKind::FeedV1,
            Some(keys::INDEX) => RecordKind::IndexFamily(&key[1..]),
            Some(keys::DERIVED) => RecordKind::Derived,
            _ => RecordKind::Other,
        }
    }

    /// A human name for the kind of record `key` is ([`RecordStats::kind`]).
    pub fn name(key: &[u8]) -> &'static str {
        keys::kind_name(key.first().copied().unwrap_or(keys::META))
    }
}

/// The first position of a change-feed chunk's key ([`RecordKind::FeedChunk`]).
pub fn feed_chunk_start(key: &[u8]) -> Result<u64> {
    keys::parse_feed(key)
}

/// How many records of one kind there are and how many bytes they hold.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RecordStats {
    pub kind: &'static str,
    pub records: u64,
    pub key_bytes: u64,
    pub value_bytes: u64,
}

/// A stored record as (key, value), owned: what the index snapshot's readers get. The value is
/// a slice of the mapped snapshot file, or sled's own buffer, shared rather than copied.
type OwnedRecord = (Vec<u8>, bytes::Bytes);

/// The index snapshot file's records as read, or the error of opening it.
type FileRecordsOrError = Box<dyn Iterator<Item = Result<OwnedRecord>> + Send>;

/// The index snapshot file's families merged with the ones written into sled since
/// ([`Store::index_families`]). Neither side's values are copied: the file's are slices of its
/// map, sled's keep sled's buffers.
struct Merged<'s, S>
where
    S: Iterator<Item = Result<(sled::IVec, sled::IVec)>>,
{
    store: &'s Store,
    file: Option<std::iter::Peekable<FileRecordsOrError>>,
    sled: std::iter::Peekable<S>,
}

/// Which side of a [`Merged`] comes next.
enum NextFrom {
    /// The file's record (an error included: it stops the merge).
    File,
    /// Sled's record; the file's under the same key, when `true`, is out of date.
    Sled(bool),
    Done,
}

impl<S> Iterator for Merged<'_, S>
where
    S: Iterator<Item = Result<(sled::IVec, sled::IVec)>>,
{
    type Item = Result<OwnedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let file = self.file.as_mut().and_then(|f| f.peek());
            let next = match (file, self.sled.peek()) {
                (Some(Err(_)), _) => {
                    self.store.index_file.lock().damaged = true;
                    NextFrom::File
                }
                (_, Some(Err(_))) => NextFrom::Sled(false),
                (None, None) => NextFrom::Done,
                (Some(Ok(_)), None) => NextFrom::File,
                (None, Some(Ok(_))) => NextFrom::Sled(false),
                (Some(Ok((f, _))), Some(Ok((s, _)))) => match f[..].cmp(&s[..]) {
                    std::cmp::Ordering::Less => NextFrom::File,
                    // Written into sled since: the file's copy is out of date.
                    std::cmp::Ordering::Equal => NextFrom::Sled(true),
                    std::cmp::Ordering::Greater => NextFrom::Sled(false),
                },
            };
            match next {
                NextFrom::Done => return None,
                NextFrom::File => return self.file.as_mut().and_then(|f| f.next()),
                NextFrom::Sled(replaces) => {
                    if replaces {
                        self.file.as_mut().and_then(|f| f.next());
                    }
                    match self.sled.next()? {
                        Err(e) => return Some(Err(e)),
                        Ok((k, v)) => {
                            self.store.index_file.lock().overrides += v.len() as u64;
                            if !v.is_empty() {
                                return Some(Ok((k.to_vec(), bytes::Bytes::from_owner(v))));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// An open database folder.
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    dictionaries: Dictionaries,
    /// The write log's memtable ([`timeline`]).
    timeline: timeline::Timeline,
    /// Testing only: commits left before every commit fails with ENOSPC (`u64::MAX`: never).
    no_space_after: std::sync::atomic::AtomicU64,
    /// Customers known to have neither a message-id record nor a sealed block: those the writer
    /// created since the folder was opened ([`Store::note_bare`]), less every one whose such
    /// record a batch put since (taken out before the batch is applied, so the claim is never
    /// false). Their records are not looked for: in a time-ordered stream the writer's duplicate
    /// check and the fold would otherwise search sled once per customer and write for records
    /// that do not exist yet.
    bare: parking_lot::Mutex<RoaringBitmap>,
    /// The current index snapshot file, if any ([`snapshot_file`]).
    index_file: parking_lot::Mutex<IndexFile>,
}

/// What a [`Store`] knows of its index snapshot file.
#[derive(Debug, Default)]
struct IndexFile {
    /// The file's sequence number, as the `index_file` meta record names it.
    seq: Option<u64>,
    /// Its length in bytes.
    bytes: u64,
    /// Bytes of index families written into sled since (they override the file's).
    overrides: u64,
    /// Reading the file failed: it is missing or damaged.
    damaged: bool,
}

/// Whether a folder looks like something other than a sled database.
fn foreign_folder(path: &Path) -> Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    if !path.is_dir() {
        return Ok(Some("it is a file, not a folder".into()));
    }
    let mut entries = std::fs::read_dir(path)?.peekable();
    if entries.peek().is_none() {
        return Ok(None);
    }
    match read_marker(path)? {
        Marker::Ours(_) => return Ok(None),
        Marker::Foreign(what) => {
            return Ok(Some(format!(
                "its {MARKER} file is not audiencedb's marker ({what})"
            )))
        }
        Marker::Absent => {}
    }
    if path.join("conf").is_file() && path.join("db").is_file() {
        return Ok(None);
    }
    Ok(Some("the folder holds other files".into()))
}

thread_local! {
    /// Set while [`catch_quietly`] runs on this thread.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic in it into `Err` with the panic's message, without the panic hook's
/// report (the message and a backtrace on stderr) before the caller's clean error: sled panics
/// on some damaged folders. The first call wraps the process's panic hook so that it is quiet on
/// a thread inside `catch_quietly`; panics anywhere else are reported as before.
fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

/// Removes the snapshot files sled 0.34 began and never finished, if no process has the folder
/// open, so that sled can open it.
///
/// At open, sled writes a snapshot of its page table to `snap.<lsn>.generating`, syncs it and
/// renames it to `snap.<lsn>`; only then does it remove older snapshots. Its reader, though,
/// takes the file whose name sorts last among every `snap.*` but `*.in___motion`, so an
/// unfinished `.generating` file (an open that failed while writing it: a full disk, or a crash
/// in that moment) is read as the latest snapshot and fails its length or checksum check:
/// "Read corrupted data at file offset None", at every later open. Such a file is never the
/// only copy of anything: the previous snapshot is still there (or none, and sled then reads
/// the whole log), and sled's log holds every page written since. Without it sled recovers from
/// the previous snapshot and the log, and writes a new snapshot.
///
/// The files are removed under sled's own lock (an exclusive `flock` on the folder's `db` file)
/// so that a snapshot another process is writing is never touched; a folder in use is left
/// alone, and sled's open then reports it locked.
fn remove_unfinished_snapshots(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut unfinished = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            unfinished.push(entry.path());
        }
    }
    if unfinished.is_empty() {
        return Ok(());
    }
    let db_file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.join("db"))
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; closing it releases the lock.
    if unsafe { libc::flock(db_file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(());
    }
    for file in &unfinished {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Not needed for safety (a removal lost in a crash is redone at the next open), but cheap.
    std::fs::File::open(path)?.sync_all()?;
    drop(db_file);
    Ok(())
}

/// How many of a customer's blocks before a window's start [`Store::blocks_from`] steps over
/// going forward before it searches backwards instead.
const FORWARD_BEFORE: usize = 8;

/// How long opening waits for a locked folder before answering [`Error::Locked`].
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn map_open_error(path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => Error::Locked {
            path: path.to_owned(),
        },
        sled::Error::Io(io) if io.to_string().contains("lock") => Error::Locked {
            path: path.to_owned(),
        },
        sled::Error::Corruption { .. } => Error::Corrupt(format!("{}: {e}", path.display())),
        other => Error::from(other),
    }
}

fn be_u64(bytes: &[u8]) -> Result<u64> {
    let a: [u8; 8] = bytes.try_into().map_err(|_| corrupt!("bad counter"))?;
    Ok(u64::from_be_bytes(a))
}

fn be_u32(bytes: &[u8]) -> Result<u32> {
    let a: [u8; 4] = bytes.try_into().map_err(|_| corrupt!("bad id"))?;
    Ok(u32::from_be_bytes(a))
}

impl Store {
    /// Opens (creating if needed) the database folder at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store::open_reading_ahead(path, |_| ())?.0)
    }

    /// Opens the folder at `path` like [`Store::open`] while `ahead` reads, on a thread of its
    /// own, the index snapshot file the folder most likely names (the highest-numbered whole
    /// one): sled's open and the snapshot's reading, an open's two largest parts, overlap.
    /// `ahead`'s answer comes back only when that file is the one the folder names; otherwise
    /// (no file, another file named, a file that cannot be opened) it is `None`, and the caller
    /// reads the snapshot after the open as usual.
    pub fn open_reading_ahead<T: Send>(
        path: &Path,
        ahead: impl FnOnce(snapshot_file::FileRecords) -> T + Send,
    ) -> Result<(Store, Option<T>)> {
        // An interrupted compaction is finished or undone first (`compact.rs`).
        compact::recover(path)?;
        if let Some(reason) = foreign_folder(path)? {
            return Err(Error::NotADatabase {
                path: path.to_owned(),
                reason,
            });
        }
        let (store, read) = std::thread::scope(|s| {
            // Files are never changed once renamed into place, and a later one takes the next
            // number: a file whose number the folder names is the file read here.
            let reader = s.spawn(|| {
                let seq = snapshot_file::highest(path).ok().filter(|&seq| seq > 0)?;
                let records = snapshot_file::open(path, seq).ok()?;
                Some((seq, ahead(records)))
            });
            let store = Store::open_sled(path);
            let read = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (store, read)
        });
        let store = store?;
        let named = store.index_file.lock().seq;
        let read = read.and_then(|(seq, t)| (Some(seq) == named).then_some(t));
        Ok((store, read))
    }

    /// [`Store::open`] once the folder is known to be ours or new.
    fn open_sled(path: &Path) -> Result<Store> {
        // sled panics on some damaged folders (sled issues 1527, 1533): report, don't crash.
        // A folder this process has just closed can stay locked for a moment while sled's
        // background threads let go of it; wait for that (briefly) before calling it in use.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let opened = loop {
            remove_unfinished_snapshots(path)?;
            let attempt = catch_quietly(|| sled::Config::new().path(path).open());
            match &attempt {
                Ok(Err(e))
                    if matches!(map_open_error(path, e.clone()), Error::Locked { .. })
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                _ => break attempt,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(map_open_error(path, e)),
            Err(panicked) => {
                return Err(Error::Corrupt(format!(
                    "{}: the storage engine could not read the folder (it failed with: {panicked})",
                    path.display()
                )))
            }
        };
        let tree = db.open_tree(TREE)?;
        let store = Store {
            db,
            tree,
            path: path.to_owned(),
            dictionaries: Dictionaries::default(),
            timeline: timeline::Timeline::default(),
            no_space_after: std::sync::atomic::AtomicU64::new(u64::MAX),
            bare: parking_lot::Mutex::new(RoaringBitmap::new()),
            index_file: parking_lot::Mutex::new(IndexFile::default()),
        };
        match store.get(&keys::meta(meta::FORMAT))? {
            Some(v) => {
                let found = be_u32(&v).map_err(|_| Error::NotADatabase {
                    path: path.to_owned(),
                    reason: "its format record is unreadable".into(),
                })?;
                if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&found) {
                    return Err(Error::IncompatibleFormat {
                        path: path.to_owned(),
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                if found < written_format() {
                    // Its records stay readable; the ones written from now on may not be for
                    // the older build, which the new number makes refuse the folder.
                    store.tree.insert(
                        keys::meta(meta::FORMAT),
                        &written_format().to_be_bytes()[..],
                    )?;
                    store.db.flush()?;
                }
            }
            None if path.join(MARKER).exists() => {
                return Err(Error::Corrupt(format!(
                    "{}: the database folder is damaged: its records could not be read",
                    path.display()
                )))
            }
            None if store.tree.is_empty() => {
                store.tree.insert(
                    keys::meta(meta::FORMAT),
                    &written_format().to_be_bytes()[..],
                )?;
                store.db.flush()?;
            }
            None => {
                return Err(Error::NotADatabase {
                    path: path.to_owned(),
                    reason: "it has no audiencedb format record".into(),
                })
            }
        }
        if read_marker(path)? != Marker::Ours(true) {
            let marker = std::fs::File::create(path.join(MARKER))?;
            use std::io::Write;
            (&marker).write_all(
                format!("audiencedb database, format {}\n", written_format()).as_bytes(),
            )?;
            marker.sync_all()?;
        }
        for item in store.scan(keys::DICTIONARY) {
            let (k, v) = item?;
            let id = keys::parse_customer(&k)?;
            store
                .dictionaries
                .install(BlockDictionary::new(id, v.to_vec())?)?;
        }
        // The index snapshot file the folder names; any other is what a crash before or after
        // a checkpoint's commit left.
        let seq = store
            .get(&keys::meta(meta::INDEX_FILE))?
            .map(|v| be_u64(&v))
            .transpose()?;
        snapshot_file::remove_others(path, seq)?;
        if let Some(seq) = seq {
            let mut f = store.index_file.lock();
            f.seq = Some(seq);
            f.bytes = std::fs::metadata(snapshot_file::path(path, seq)).map_or(0, |m| m.len());
        }
        // The write log's unfolded events back into the memtable.
        store.recover_log()?;
        Ok(store)
    }

    /// The folder's compression dictionaries for event blocks.
    pub fn dictionaries(&self) -> &Dictionaries {
        &self.dictionaries
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record under a raw key: for this module's named readers only.
    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.tree.get(key)?)
    }

    /// The folder's format version, as its format record says.
    pub fn format_version(&self) -> Result<u32> {
        self.get(&keys::meta(meta::FORMAT))?
            .map_or(Ok(0), |v| be_u32(&v))
    }

    /// A `u64` metadata counter, 0 when absent.
    pub fn meta_u64(&self, name: &str) -> Result<u64> {
        self.get(&keys::meta(name))?.map_or(Ok(0), |v| be_u64(&v))
    }

    /// The write generation: raised by every committed write, in the batch that stores it
    /// (0 before the first). Derived records read from the stored profiles name it
    /// (`crate::index::derived`).
    pub fn generation(&self) -> Result<u64> {
        self.meta_u64(meta::GENERATION)
    }

    /// The next internal id to hand out.
    pub fn next_id(&self) -> Result<u32> {
        self.get(&keys::meta(meta::NEXT_ID))?
            .map_or(Ok(0), |v| be_u32(&v))
    }

    pub fn catalog(&self) -> Result<Catalog> {
        let mut catalog: Catalog = match self.get(&keys::meta(meta::CATALOG))? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| corrupt!("catalog record: {e}"))?
            }
            None => Catalog::default(),
        };
        catalog.reindex();
        Ok(catalog)
    }

    /// The external id of an internal id.
    pub fn external_id(&self, cust: u32) -> Result<Option<String>> {
        self.get(&keys::external(cust))?
            .map(|v| {
                String::from_utf8(v.to_vec()).map_err(|_| corrupt!("external id is not UTF-8"))
            })
            .transpose()
    }

    /// Whether a customer is marked as known only by anonymous ids (no `userId`).
    pub fn is_anonymous(&self, cust: u32) -> Result<bool> {
        Ok(self.get(&keys::anonymous(cust))?.is_some())
    }

    pub fn profile(&self, cust: u32) -> Result<Option<Fields>> {
        self.get(&keys::profile(cust))?
            .map(|v| codec::decode_profile(&v))
            .transpose()
    }

    /// Appends all of a customer's events, in time order, to `out`: its blocks' merged with its
    /// unfolded ones ([`timeline`]).
    pub fn events(&self, cust: u32, out: &mut Vec<StoredEvent>) -> Result<()> {
        let (blocks, unfolded) = self.timeline_from(cust, Timestamp::MIN)?;
        let at = out.len();
        for (start, v) in &blocks {
            codec::decode_block(*start, v, &self.dictionaries, out)?;
        }
        if let Some(u) = unfolded {
            let mut mine = out.split_off(at);
            timeline::merge_unfolded(&u, &mut mine)?;
            out.append(&mut mine);
        }
        Ok(())
    }

    /// The key of the customer's block that holds `from`: the last one starting at or before it,
    /// or the customer's first key.
    fn first_block_key(&self, cust: u32, from: Timestamp) -> Result<Vec<u8>> {
        let prefix = keys::events_of(cust);
        Ok(self
            .tree
            .range(prefix.to_vec()..=keys::block(cust, from.max(0)).to_vec())
            .next_back()
            .transpose()?
            .map_or_else(|| prefix.to_vec(), |(k, _)| k.to_vec()))
    }

    /// Appends the uncompressed bodies of the customer's blocks from the one holding `from` on,
    /// merged with its unfolded events ([`timeline`]), to `buf`, and each body's (first
    /// timestamp, byte range in `buf`) to `blocks`, in time order: every event at or after
    /// `from`, and possibly some before it, for [`view::for_each_event`].
    pub fn event_bodies_from(
        &self,
        cust: u32,
        from: Timestamp,
        buf: &mut Vec<u8>,
        blocks: &mut Vec<view::BlockSpan>,
    ) -> Result<()> {
        let (stored, unfolded) = self.timeline_from(cust, from)?;
        let (at_buf, at_spans) = (buf.len(), blocks.len());
        for (start, v) in &stored {
            let at = buf.len();
            codec::block_body(v, &self.dictionaries, buf)?;
            blocks.push((*start, at..buf.len()));
        }
        if let Some(u) = unfolded {
            timeline::merge_unfolded_bodies(&u, buf, blocks, at_buf, at_spans)?;
        }
        Ok(())
    }

    /// The customer's blocks whose events may be at or after `from`: the last block starting
    /// at or before `from`, and every later one. Returns (key, start, bytes). Not its unfolded
    /// events.
    ///
    /// One forward pass over the customer's blocks: most customers have a few blocks before a
    /// window's start, and a backward search in sled costs several forward steps (it copies a
    /// leaf). A customer with more than [`FORWARD_BEFORE`] blocks before `from` is searched
    /// backwards instead, so a long history costs what it did.
    pub fn blocks_from(
        &self,
        cust: u32,
        from: Timestamp,
    ) -> Result<Vec<(sled::IVec, Timestamp, sled::IVec)>> {
        let end = keys::block(cust, from.max(0));
        let mut out = Vec::new();
        let mut before = 0;
        for item in self.tree.scan_prefix(keys::events_of(cust)) {
            let (k, v) = item?;
            let (_, start) = keys::parse_block(&k)?;
            if k.as_ref() <= end.as_ref() {
                before += 1;
                if before > FORWARD_BEFORE {
                    return self.blocks_from_backwards(cust, from);
                }
                out.clear();
            }
            out.push((k, start, v));
        }
        Ok(out)
    }

    /// [`Store::blocks_from`] by a backward search for the block holding `from`.
    fn blocks_from_backwards(
        &self,
        cust: u32,
        from: Timestamp,
    ) -> Result<Vec<(sled::IVec, Timestamp, sled::IVec)>> {
        let start_key = self.first_block_key(cust, from)?;
        let mut out = Vec::new();
        for item in self.tree.range(start_key..) {
            let (k, v) = item?;
            if !k.starts_with(&keys::events_of(cust)) {
                break;
            }
            let (_, start) = keys::parse_block(&k)?;
            out.push((k, start, v));
        }
        Ok(out)
    }

    /// Whether the customer has a sealed block: a probe of its first block key, which reads no
    /// block but the first (where [`Store::blocks_from`] reads every one).
    pub fn has_blocks(&self, cust: u32) -> Result<bool> {
        if self.is_bare(cust) {
            return Ok(false);
        }
        Ok(self
            .tree
            .scan_prefix(keys::events_of(cust))
            .next()
            .transpose()?
            .is_some())
    }

    /// The sorted hashes of a customer's stored message ids ([`codec::message_hash`]): its
    /// message-id record's and its unfolded ones ([`timeline`]).
    pub fn seen_messages(&self, cust: u32) -> Result<Vec<u64>> {
        let mut seen = self.stored_seen(cust)?;
        let unfolded = self.unfolded_hashes(cust);
        if !unfolded.is_empty() {
            seen.extend(unfolded);
            seen.sort_unstable();
            seen.dedup();
        }
        Ok(seen)
    }

    /// The sorted hashes of a customer's message-id record alone: with
    /// [`Store::has_unfolded_message`], what [`Store::seen_messages`] tells without building the
    /// union (the writer's duplicate check, once per customer and write).
    pub fn stored_seen(&self, cust: u32) -> Result<Vec<u64>> {
        let records = self.seen_records(cust)?;
        let mut seen = Vec::new();
        for (_, v) in &records {
            seen.extend(codec::decode_seen(v)?);
        }
        if records.len() > 1 {
            seen.sort_unstable();
            seen.dedup();
        }
        Ok(seen)
    }

    /// A customer's message-id records, in key order: the first (`m` + id), then the further
    /// ones folds added (format 7), as (key, value).
    fn seen_records(&self, cust: u32) -> Result<Vec<(sled::IVec, sled::IVec)>> {
        let mut out = Vec::new();
        if self.is_bare(cust) {
            return Ok(out);
        }
        for item in self.tree.scan_prefix(keys::seen(cust)) {
            out.push(item?);
        }
        Ok(out)
    }

    /// Adds to `batch` the removal of every message-id record of a customer.
    pub fn remove_seen(&self, batch: &mut WriteBatch, cust: u32) -> Result<()> {
        for (k, _) in self.seen_records(cust)? {
            batch.remove_raw(k);
        }
        Ok(())
    }

    /// Every record, in key order, as (key, value).
    pub fn records(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.tree.iter().map(|r| r.map_err(Error::from))
    }

    /// Every record with the given one-byte prefix, as (key, value): for storage's own readers.
    fn scan(&self, prefix: u8) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.tree
            .scan_prefix([prefix])
            .map(|r| r.map_err(Error::from))
    }

    /// The last record of one kind, in key order.
    fn last(&self, prefix: u8) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self.tree.scan_prefix([prefix]).next_back().transpose()?)
    }

    /// The records of one kind from key `start` on (`start` begins with `prefix`), in key order.
    fn scan_from<'a>(
        &'a self,
        prefix: u8,
        start: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + 'a {
        self.tree
            .range(start.to_vec()..)
            .take_while(move |r| r.as_ref().map_or(true, |(k, _)| k.first() == Some(&prefix)))
            .map(|r| r.map_err(Error::from))
    }

    /// The id map in byte order of the external ids, from just after `after` (from the start
    /// without it), as (external id, internal id).
    pub fn ids_after(
        &self,
        after: Option<&str>,
    ) -> impl Iterator<Item = Result<(String, u32)>> + '_ {
        use std::ops::Bound;
        let start = match after {
            Some(a) => Bound::Excluded(keys::id(a)),
            None => Bound::Included(vec![keys::ID]),
        };
        self.tree
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![keys::ID + 1])))
            .map(|item| {
                let (k, v) = item?;
                let id = std::str::from_utf8(&k[1..])
                    .map_err(|_| corrupt!("external id is not UTF-8"))?
                    .to_owned();
                Ok((id, be_u32(&v)?))
            })
    }

    /// Every (customer, profile) pair.
    pub fn profiles(&self) -> impl Iterator<Item = Result<(u32, Fields)>> + '_ {
        self.profiles_between(0, None)
    }

    /// The stored profiles of customers `from..to` (internal ids; `to` `None`: to the last), in
    /// id order: a part of [`Store::profiles`], so that parts can be read in parallel.
    pub fn profiles_between(
        &self,
        from: u32,
        to: Option<u32>,
    ) -> impl Iterator<Item = Result<(u32, Fields)>> + '_ {
        let start = keys::profile(from);
        let end: Vec<u8> = match to {
            Some(to) => keys::profile(to).to_vec(),
            None => vec![keys::PROFILE + 1],
        };
        self.tree.range(start.to_vec()..end).map(|r| {
            let (k, v) = r?;
            Ok((keys::parse_customer(&k)?, codec::decode_profile(&v)?))
        })
    }

    /// Every internal id that has an external id: every known customer.
    pub fn customer_ids(&self) -> Result<RoaringBitmap> {
        let mut ids = RoaringBitmap::new();
        for r in self.scan(keys::EXTERNAL) {
            let (k, _) = r?;
            ids.insert(keys::parse_customer(&k)?);
        }
        Ok(ids)
    }

    /// The write log since the index snapshot: (generation, customers touched).
    pub fn dirty_log(&self) -> Result<Vec<(u64, RoaringBitmap)>> {
        let mut out = Vec::new();
        for r in self.scan(keys::DIRTY) {
            let (k, v) = r?;
            let bm = RoaringBitmap::deserialize_from(&v[..])
                .map_err(|e| corrupt!("bad dirty-log record: {e}"))?;
            out.push((keys::parse_dirty(&k)?, bm));
        }
        Ok(out)
    }

    /// Records that customers `from..to` have no stored records at all: internal ids handed out
    /// by a write about to be committed (ids are never used twice, and a failed commit stores
    /// nothing). Until a batch puts a message-id record or a block of one of them, their
    /// message-id records are known to be none without a search ([`Store::stored_seen`]).
    pub fn note_bare(&self, from: u32, to: u32) {
        if from < to {
            self.bare.lock().insert_range(from..to);
        }
    }

    /// Whether the customer is known to have neither a message-id record nor a sealed block.
    pub(super) fn is_bare(&self, cust: u32) -> bool {
        self.bare.lock().contains(cust)
    }

    /// Forgets, before `batch` is applied, that the customers it puts a message-id record or a
    /// block of have none.
    fn unmark_bare(&self, batch: &WriteBatch) {
        let mut bare = self.bare.lock();
        if bare.is_empty() {
            return;
        }
        for cust in batch.seen_or_block_customers() {
            bare.remove(cust);
        }
    }

    /// Applies a batch atomically and waits until it is durable on disk.
    ///
    /// The customers' new events it carries ([`WriteBatch::write_events`]'s) are stored as a
    /// write log record in the same batch, and readable once it is durable ([`timeline`]).
    pub fn commit(&self, mut batch: WriteBatch) -> Result<()> {
        self.unmark_bare(&batch);
        let logged = self.log_write(&mut batch)?;
        // After the log frame, as a real failure of sled's may come (the frame is then never
        // committed).
        self.injected_fault()?;
        self.tree.apply_batch(batch.into_sled())?;
        self.db.flush()?;
        self.logged(logged);
        Ok(())
    }

    /// Applies a batch atomically, durable at the next [`Store::flush`] (or commit).
    pub fn apply(&self, batch: WriteBatch) -> Result<()> {
        if !(batch.log.is_empty() && batch.forget.is_empty()) {
            return Err(crate::error::internal!(
                "a batch with logged events is committed, not applied"
            ));
        }
        self.unmark_bare(&batch);
        self.tree.apply_batch(batch.into_sled())?;
        Ok(())
    }

    /// The stored index snapshot family of `family_key`, as written into sled (the families of
    /// the index snapshot file are read by [`Store::index_families`] only; `S` is never in it).
    pub fn index_family(&self, family_key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self
            .get(&keys::index(family_key))?
            .filter(|v| !v.is_empty()))
    }

    /// The derived record under `derived_key` (`crate::index::derived`): data a reader built
    /// from the indexes and stored events and kept, to be checked before use.
    pub fn derived(&self, derived_key: &[u8]) -> Result<Option<sled::IVec>> {
        self.get(&keys::derived(derived_key))
    }

    /// Stores a derived record, outside any write's batch: it is durable at the next flush (a
    /// commit, a close, or sled's own flush within half a second), and a crash before that only
    /// loses it. Readers call this under the read lock, at the same time as writes.
    pub fn put_derived(&self, derived_key: &[u8], record: &[u8]) -> Result<()> {
        if self
            .no_space_after
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
        {
            // A full disk injected by a test: commits fail now, and so does this.
            return Err(sled::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC)).into());
        }
        self.tree.insert(keys::derived(derived_key), record)?;
        Ok(())
    }

    /// Every derived record, as (derived key, bytes).
    pub fn derived_records(&self) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.scan(keys::DERIVED)
            .map(|r| r.map(|(k, v)| (k.subslice(1, k.len() - 1), v)))
    }

    /// Removes every derived record, durably; returns how many there were.
    pub fn clear_derived(&self) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.scan(keys::DERIVED) {
            batch.remove(item?.0);
            n += 1;
        }
        if n > 0 {
            self.tree.apply_batch(batch)?;
            self.db.flush()?;
        }
        Ok(n)
    }

    /// Whether any index snapshot family is stored.
    pub fn has_index_snapshot(&self) -> bool {
        self.index_file.lock().seq.is_some()
            || self
                .scan(keys::INDEX)
                .any(|r| r.is_ok_and(|(_, v)| !v.is_empty()))
    }

    /// Every stored index snapshot family, as (family key, bytes), in key order: the index
    /// snapshot file's, each replaced by the one written into sled since under its key (an
    /// empty one there: the family was removed).
    pub fn index_families(&self) -> impl Iterator<Item = Result<OwnedRecord>> + Send + '_ {
        self.index_file.lock().overrides = 0;
        Merged {
            store: self,
            file: self.index_file_opened().map(Iterator::peekable),
            sled: self
                .scan(keys::INDEX)
                .map(|r| r.map(|(k, v)| (k.subslice(1, k.len() - 1), v)))
                .peekable(),
        }
    }

    /// The index snapshot families written into sled since the snapshot file (an empty record:
    /// the family was removed), as (family key, bytes) in key order: what replaces the file's
    /// records under the same keys when the file was read apart ([`Store::open_reading_ahead`]).
    /// Counted as [`Store::index_families`] counts them.
    pub fn index_overrides(&self) -> Result<Vec<(Vec<u8>, bytes::Bytes)>> {
        let mut overrides = 0;
        let records = self
            .scan(keys::INDEX)
            .map(|r| {
                let (k, v) = r?;
                overrides += v.len() as u64;
                Ok((k[1..].to_vec(), bytes::Bytes::from_owner(v)))
            })
            .collect::<Result<Vec<_>>>()?;
        self.index_file.lock().overrides = overrides;
        Ok(records)
    }

    /// The records of the folder's index snapshot file, if it has one (an error first when it
    /// cannot be opened).
    fn index_file_opened(&self) -> Option<FileRecordsOrError> {
        let seq = self.index_file.lock().seq?;
        Some(match snapshot_file::open(&self.path, seq) {
            Ok(records) => Box::new(records),
            Err(e) => Box::new(std::iter::once(Err(e))),
        })
    }

    /// The index snapshot file's records that sled has none for under the same key (the ones
    /// an open uses), keyed as they would be in sled (an index family's key): for searches and
    /// counts of every stored record beside [`Store::records`].
    pub fn index_file_records(
        &self,
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec)>> + '_ {
        self.index_file_opened()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let (family, v) = match r {
                    Ok(record) => record,
                    Err(e) => return Some(Err(e)),
                };
                let key = keys::index(&family);
                match self.tree.contains_key(&key) {
                    Ok(false) => Some(Ok((key.into(), sled::IVec::from(&v[..])))),
                    Ok(true) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })
    }

    /// Adds to `batch` the removal of the whole index snapshot: every family and every chunk of
    /// the id map's snapshot, and the index snapshot file's name (the file goes once the batch
    /// is committed and [`Store::index_file_committed`] names the next one).
    pub fn clear_index_snapshot(&self, batch: &mut WriteBatch) -> Result<()> {
        for prefix in [keys::INDEX, keys::ID_SNAPSHOT] {
            for item in self.scan(prefix) {
                batch.remove_raw(item?.0);
            }
        }
        batch.remove_meta(meta::INDEX_FILE);
        Ok(())
    }

    /// Writes `families` (family key, bytes; in key order) as the next index snapshot file,
    /// durably, and returns its sequence number. It is not the folder's until a batch that
    /// clears the snapshot and names it ([`WriteBatch::put_index_file`]) is committed; then
    /// call [`Store::index_file_committed`], or [`Store::index_file_abandoned`] if that fails.
    pub fn write_index_file<'a>(
        &self,
        families: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<u64> {
        let current = self.index_file.lock().seq.unwrap_or(0);
        let seq = current.max(snapshot_file::highest(&self.path)?) + 1;
        snapshot_file::write(&self.path, seq, families)?;
        // For the crash tests: a crash with the new file in place and the batch naming it not
        // committed.
        if std::env::var("AUDIENCEDB_TEST_SNAPSHOT_CRASH").as_deref() == Ok("file-written") {
            std::process::abort();
        }
        Ok(seq)
    }

    /// The index snapshot file `seq` is the folder's now: every other one is removed (at the
    /// next open, if that fails now).
    pub fn index_file_committed(&self, seq: u64) {
        let bytes = std::fs::metadata(snapshot_file::path(&self.path, seq)).map_or(0, |m| m.len());
        *self.index_file.lock() = IndexFile {
            seq: Some(seq),
            bytes,
            overrides: 0,
            damaged: false,
        };
        let _ = snapshot_file::remove_others(&self.path, Some(seq));
    }

    /// The batch that was to name index snapshot file `seq` failed: the file goes.
    pub fn index_file_abandoned(&self, seq: u64) {
        let _ = std::fs::remove_file(snapshot_file::path(&self.path, seq));
    }

    /// Notes `bytes` more of index families written into sled over the file's.
    pub fn note_index_overrides(&self, bytes: u64) {
        self.index_file.lock().overrides += bytes;
    }

    /// Whether the folder has an index snapshot file.
    pub fn has_index_file(&self) -> bool {
        self.index_file.lock().seq.is_some()
    }

    /// Whether a checkpoint that would write `more` bytes of families into sled should write a
    /// whole snapshot into a new index snapshot file instead: there is none yet, or the families
    /// written into sled since the last one would pass half of its size (sled keeps their dead
    /// copies, a new file gives the old one's space back whole), or, for the checkpoint before a
    /// close (`closing`), a sixteenth of it: every later open reads those families from sled
    /// once sled is open, where the file's are read while sled opens
    /// ([`Store::open_reading_ahead`]).
    pub fn index_file_due(&self, more: u64, closing: bool) -> bool {
        let f = self.index_file.lock();
        let limit = if closing { f.bytes / 16 } else { f.bytes / 2 };
        f.seq.is_none() || f.overrides + more > limit
    }

    /// Whether reading the index snapshot file failed (missing or damaged): the indexes are to
    /// be rebuilt from the stored data, which the file only summarises.
    pub fn index_file_damaged(&self) -> bool {
        self.index_file.lock().damaged
    }

    /// Copies the index snapshot file, if any, into the folder `to` (a compaction's new
    /// folder, whose copied meta records name it), synced.
    pub fn copy_index_file_into(&self, to: &Path) -> Result<()> {
        if let Some(seq) = self.index_file.lock().seq {
            let target = snapshot_file::path(to, seq);
            std::fs::copy(snapshot_file::path(&self.path, seq), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
        Ok(())
    }

    /// Whether the dirty log holds any record (none right after an index snapshot).
    pub fn has_dirty_log(&self) -> bool {
        self.scan(keys::DIRTY).next().is_some()
    }

    /// Adds to `batch` the removal of every dirty-log record.
    pub fn clear_dirty_log(&self, batch: &mut WriteBatch) -> Result<()> {
        for item in self.scan(keys::DIRTY) {
            batch.remove_raw(item?.0);
        }
        Ok(())
    }

    /// Every customer's event blocks and then its unfolded events ([`timeline`]) as one more
    /// block (sorted among themselves), customer by customer, as (customer, first timestamp,
    /// bytes of a block for [`codec::decode_block`]). A customer's blocks are in time order;
    /// its unfolded events may come before some of them.
    pub fn event_blocks(&self) -> impl Iterator<Item = Result<(u32, Timestamp, sled::IVec)>> + '_ {
        let mut blocks = self
            .scan(keys::EVENTS)
            .map(|r| {
                let (k, v) = r?;
                let (cust, start) = keys::parse_block(&k)?;
                Ok((cust, start, v))
            })
            .peekable();
        let unfolded: Vec<Result<(u32, Timestamp, sled::IVec)>> = match self.all_unfolded() {
            Ok(all) => all
                .into_iter()
                .map(|(cust, events)| {
                    let start = events[0].ts;
                    Ok((cust, start, codec::encode_block(&events, None).into()))
                })
                .collect(),
            Err(e) => vec![Err(e)],
        };
        let mut unfolded = unfolded.into_iter().peekable();
        std::iter::from_fn(move || {
            // An error goes out first; then the block, unless unfolded events are of an earlier
            // customer.
            let unfolded_first = match (blocks.peek(), unfolded.peek()) {
                (Some(Err(_)), _) => false,
                (_, Some(Err(_))) => true,
                (Some(Ok(b)), Some(Ok(t))) => t.0 < b.0,
                (None, _) => true,
                (_, None) => false,
            };
            if unfolded_first {
                unfolded.next()
            } else {
                blocks.next()
            }
        })
    }

    /// The bytes of every event block, in key order.
    pub fn event_block_bytes(&self) -> impl Iterator<Item = Result<sled::IVec>> + '_ {
        self.scan(keys::EVENTS).map(|r| r.map(|(_, v)| v))
    }

    /// Every saved audience's definition (JSON), in name order.
    pub fn audience_definitions(&self) -> impl Iterator<Item = Result<sled::IVec>> + '_ {
        self.scan(keys::AUDIENCE).map(|r| r.map(|(_, v)| v))
    }

    /// Every computed trait's definition (JSON), in name order.
    pub fn computed_trait_definitions(&self) -> impl Iterator<Item = Result<sled::IVec>> + '_ {
        self.scan(keys::COMPUTED_TRAIT).map(|r| r.map(|(_, v)| v))
    }

    /// The external ids of loaded list `id`.
    pub fn audience_list(&self, id: u32) -> Result<Option<sled::IVec>> {
        self.get(&keys::audience_list(id))
    }

    /// The members and timers of saved audience `id`, as of its last checkpoint.
    pub fn audience_state(&self, id: u32) -> Result<Option<sled::IVec>> {
        self.get(&keys::audience_state(id))
    }

    /// The change feed's chunks, in order, as (first position, bytes).
    pub fn feed_chunks(&self) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        self.scan(keys::FEED).map(parse_feed_record)
    }

    /// The change feed's chunks from the one starting at `start` (or the first after it) on.
    pub fn feed_chunks_from(
        &self,
        start: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        self.scan_from(keys::FEED, &keys::feed(start))
            .map(parse_feed_record)
    }

    /// The change feed's last chunk.
    pub fn last_feed_chunk(&self) -> Result<Option<(u64, sled::IVec)>> {
        self.last(keys::FEED)?
            .map(|kv| parse_feed_record(Ok(kv)))
            .transpose()
    }

    /// The change feed as first stored (one record per change), as (position, bytes).
    pub fn feed_v1_records(&self) -> impl Iterator<Item = Result<(u64, sled::IVec)>> + '_ {
        self.scan(keys::FEED_V1).map(parse_feed_record)
    }

    /// Waits until everything applied is durable on disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Testing only: see [`crate::Db::inject_no_space_after_commits`].
    pub(crate) fn inject_no_space_after_commits(&self, commits: u64) {
        self.no_space_after
            .store(commits, std::sync::atomic::Ordering::SeqCst);
    }

    /// The injected fault, if one is due: the error sled gives once its log could not be
    /// written (a copy of the first one, as sled hands them out).
    fn injected_fault(&self) -> Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let due = self
            .no_space_after
            .fetch_update(SeqCst, SeqCst, |left| match left {
                u64::MAX | 0 => None,
                n => Some(n - 1),
            })
            .is_err_and(|left| left == 0);
        if due {
            let first = sled::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
            return Err(first.clone().into());
        }
        Ok(())
    }

    /// Records, key bytes and value bytes per key prefix: where the space goes.
    pub fn record_stats(&self) -> Result<Vec<RecordStats>> {
        let mut stats: Vec<RecordStats> = Vec::new();
        for item in self.tree.iter() {
            let (k, v) = item?;
            let kind = keys::kind_name(k.first().copied().unwrap_or(keys::META));
            let s = match stats.iter_mut().position(|s| s.kind == kind) {
                Some(i) => &mut stats[i],
                None => {
                    stats.push(RecordStats {
                        kind,
                        ..RecordStats::default()
                    });
                    let last = stats.len() - 1;
                    &mut stats[last]
                }
            };
            s.records += 1;
            s.key_bytes += k.len() as u64;
            s.value_bytes += v.len() as u64;
        }
        let log = self.log_stats();
        if log.records > 0 {
            stats.push(log);
        }
        if self.has_index_file() {
            let mut file = RecordStats {
                kind: "index snapshot file",
                ..RecordStats::default()
            };
            for item in self.index_file_records() {
                let (k, v) = item?;
                file.records += 1;
                file.key_bytes += k.len() as u64;
                file.value_bytes += v.len() as u64;
            }
            stats.push(file);
        }
        Ok(stats)
    }

    /// Bytes the folder takes on disk: sled's files, as sled reports them, and the index
    /// snapshot file.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()? + self.index_file.lock().bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward walk of [`Store::blocks_from`] returns exactly the blocks the backward search
    /// does, for customers with few and with many blocks before `from`, at every block's start
    /// and a millisecond either side, before the first and after the last, beside neighbours.
    #[test]
    fn blocks_from_forward_equals_the_backward_search() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        // Customer 7 with 3 blocks, customer 8 with 20 (more than FORWARD_BEFORE before most
        // instants), customers 6 and 9 beside them; the bytes are never decoded here.
        let starts = |n: i64| (0..n).map(|i| 1_000 + 1_000 * i).collect::<Vec<i64>>();
        let mut batch = WriteBatch::new();
        for (cust, n) in [(6, 2), (7, 3), (8, 20), (9, 1)] {
            for start in starts(n) {
                batch.put_block(cust, start, format!("{cust}:{start}").into_bytes());
            }
        }
        store.commit(batch).unwrap();
        let keys = |v: Vec<(sled::IVec, Timestamp, sled::IVec)>| -> Vec<(Timestamp, Vec<u8>)> {
            v.into_iter().map(|(_, t, b)| (t, b.to_vec())).collect()
        };
        for (cust, n) in [(7u32, 3i64), (8, 20), (10, 0)] {
            let mut froms = vec![Timestamp::MIN, -1, 0, 999, 50_000, Timestamp::MAX];
            for s in starts(n) {
                froms.extend([s - 1, s, s + 1]);
            }
            for from in froms {
                let forward = keys(store.blocks_from(cust, from).unwrap());
                let backward = keys(store.blocks_from_backwards(cust, from).unwrap());
                assert_eq!(forward, backward, "customer {cust}, from {from}");
                assert!(forward
                    .iter()
                    .all(|(_, b)| b.starts_with(format!("{cust}:").as_bytes())));
            }
        }
        // Spot checks: the block holding `from` and every later one.
        let at = |cust, from| -> Vec<Timestamp> {
            store
                .blocks_from(cust, from)
                .unwrap()
                .into_iter()
                .map(|(_, t, _)| t)
                .collect()
        };
        assert_eq!(at(7, 2_500), [2_000, 3_000]);
        assert_eq!(at(7, 2_000), [2_000, 3_000]);
        assert_eq!(at(7, 1_999), [1_000, 2_000, 3_000]);
        assert_eq!(at(7, 0), [1_000, 2_000, 3_000]);
        assert_eq!(at(8, 19_000), [19_000, 20_000]);
        assert_eq!(at(8, 30_000), [20_000]);
    }

    /// Run in a child process (the test binary itself) so that what the panic hook prints can
    /// be seen: libtest otherwise captures it.
    #[test]
    fn a_caught_panic_prints_nothing_but_the_error() {
        if std::env::var_os("AUDIENCEDB_QUIET_PANIC_CHILD").is_some() {
            let caught = catch_quietly(|| -> u32 { panic!("sled fell over") });
            println!("caught: {caught:?}");
            // A panic outside catch_quietly is still reported.
            let _ = std::panic::catch_unwind(|| panic!("loud"));
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "storage::tests::a_caught_panic_prints_nothing_but_the_error",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AUDIENCEDB_QUIET_PANIC_CHILD", "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains(r#"caught: Err("sled fell over")"#),
            "{stdout}"
        );
        assert!(!stderr.contains("sled fell over"), "{stderr}");
        assert!(stderr.contains("loud"), "{stderr}");
        assert_eq!(stderr.matches("stack backtrace").count(), 1, "{stderr}");
    }

    #[test]
    fn a_marker_that_is_not_ours_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Store::open(&path).unwrap());
        let marker = path.join(MARKER);
        assert!(std::fs::read_to_string(&marker)
            .unwrap()
            .starts_with(MARKER_TEXT));
        // Cut short (a crash while it was written): ours, and written again.
        std::fs::write(&marker, b"audiencedb data").unwrap();
        drop(Store::open(&path).unwrap());
        assert!(std::fs::read_to_string(&marker)
            .unwrap()
            .starts_with(MARKER_TEXT));
        std::fs::write(&marker, b"").unwrap();
        drop(Store::open(&path).unwrap());
        // Anything else is not our folder.
        std::fs::write(&marker, b"some other program's state\n").unwrap();
        let e = Store::open(&path).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: not an audiencedb database (its AUDIENCEDB file is not audiencedb's marker \
                 (it begins \"some other program's state\\n\"))",
                path.display()
            )
        );
        std::fs::remove_file(&marker).unwrap();
        std::fs::create_dir(&marker).unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(
            e.to_string()
                .contains("is not audiencedb's marker (not a file)"),
            "{e}"
        );
    }
}

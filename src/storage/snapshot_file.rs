//! The index snapshot file: the index families of the last whole snapshot, in one file beside
//! sled's, written once and replaced whole (docs/STORAGE.md, "Index snapshot file").
//!
//! A whole snapshot is the largest write a folder takes (at the close of an import, every
//! family at once). Written into sled, it grew sled's file by more than three times its own
//! size, because sled rewrites a leaf every few inserts and keeps the dead copies in its log
//! until a segment is at most half live. Written here, it takes its own size and gives the
//! old file's space back when the next whole snapshot replaces it.
//!
//! This module owns the file's name, its format, writing it crash-safely (a temporary file,
//! synced, renamed into place, the folder synced) and reading it back, mapped into memory, with
//! every record checked. It must not touch sled: [`super::Store`] decides which file is current (the
//! `index_file` meta record, committed after the file is durable), merges it with the families
//! written into sled since, and removes files no meta record names.
//!
//! The format, little-endian: the 16 bytes [`MAGIC`], the version (`u32`), then each record as
//! the key's length (`u32`, at least 1), the key, the value's length (`u32`), the value and a
//! check (`u32`: the low bits of xxh3-64 of the value, seeded with xxh3-64 of the key); keys
//! strictly increasing. Then an end mark: a key length of 0, the record count (`u64`) and its
//! check. Anything after it, a key out of order, a check that differs or a file that ends
//! early is damage.

use std::fs;
use std::io::{BufWriter, Write};

use bytes::Bytes;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::error::{corrupt, Result};

/// What every snapshot file begins with.
const MAGIC: &[u8; 16] = b"audiencedb-index";

/// The file format's version.
const VERSION: u32 = 1;

/// The start of every snapshot file's name; the sequence number follows.
const PREFIX: &str = "index-snapshot-";

/// What a file being written is called until it is complete and synced.
const UNFINISHED: &str = ".unfinished";

/// The longest key accepted when reading (family keys are a few dozen bytes).
const MAX_KEY: u32 = 1 << 16;

/// Buffer size for writing.
const BUFFER: usize = 1 << 20;

/// The name of snapshot file number `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq}")
}

/// The path of snapshot file number `seq` in the folder `dir`.
pub fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(file_name(seq))
}

fn check(key: &[u8], value: &[u8]) -> u32 {
    xxh3_64_with_seed(value, xxh3_64(key)) as u32
}

/// Writes the records into snapshot file number `seq` in `dir`, durably: when this returns
/// `Ok`, the file is complete, synced and in place. `records` must be in strictly increasing
/// key order, keys not empty. Returns the file's length in bytes.
pub fn write<'a>(
    dir: &Path,
    seq: u64,
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<u64> {
    let final_path = path(dir, seq);
    let tmp_path = dir.join(format!("{}{UNFINISHED}", file_name(seq)));
    let written = (|| -> Result<u64> {
        let file = fs::File::create(&tmp_path)?;
        let mut out = BufWriter::with_capacity(BUFFER, file);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        let mut len = (MAGIC.len() + 4) as u64;
        let mut count = 0u64;
        let mut last: Option<&[u8]> = None;
        for (key, value) in records {
            if key.is_empty() || last.is_some_and(|l| l >= key) {
                return Err(crate::error::internal!(
                    "index snapshot file records out of order"
                ));
            }
            last = Some(key);
            let key_len = u32::try_from(key.len()).map_err(|_| corrupt!("key too long"))?;
            let value_len =
                u32::try_from(value.len()).map_err(|_| corrupt!("index family too long"))?;
            out.write_all(&key_len.to_le_bytes())?;
            out.write_all(key)?;
            out.write_all(&value_len.to_le_bytes())?;
            out.write_all(value)?;
            out.write_all(&check(key, value).to_le_bytes())?;
            len += 12 + key.len() as u64 + value.len() as u64;
            count += 1;
        }
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&count.to_le_bytes())?;
        out.write_all(&check(&[], &count.to_le_bytes()).to_le_bytes())?;
        len += 16;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp_path, &final_path)?;
        sync_dir(dir)?;
        Ok(len)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    written
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The snapshot files of a folder: each one's sequence number and path.
type Numbered = Vec<(u64, PathBuf)>;

/// The sequence numbers of the snapshot files in `dir`, and the paths of every other file of
/// this module's (unfinished ones).
fn listing(dir: &Path) -> Result<(Numbered, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut unfinished = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((files, unfinished)),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        match rest.parse::<u64>() {
            Ok(seq) if file_name(seq) == name.to_str().unwrap_or_default() => {
                files.push((seq, entry.path()))
            }
            _ => unfinished.push(entry.path()),
        }
    }
    Ok((files, unfinished))
}

/// Removes every snapshot file in `dir` but number `keep` (none when `None`), and every
/// unfinished one: what a crash before or after a checkpoint's commit left. Returns how many
/// were removed.
pub fn remove_others(dir: &Path, keep: Option<u64>) -> Result<usize> {
    let (files, unfinished) = listing(dir)?;
    let mut removed = 0;
    for p in unfinished {
        fs::remove_file(p)?;
        removed += 1;
    }
    for (seq, p) in files {
        if Some(seq) != keep {
            fs::remove_file(p)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// The highest sequence number of any snapshot file in `dir` (0 when there is none).
pub fn highest(dir: &Path) -> Result<u64> {
    Ok(listing(dir)?.0.iter().map(|(s, _)| *s).max().unwrap_or(0))
}

/// The records of a snapshot file, in key order, each checked as it is read. The file is
/// mapped into memory, and each value is handed on as a slice of the map (no copy): what its
/// reader keeps costs the page cache, not memory of the process's own.
pub struct FileRecords {
    map: Bytes,
    at: usize,
    name: String,
    count: u64,
    last: Vec<u8>,
    done: bool,
}

/// Opens snapshot file number `seq` in `dir` for reading.
pub fn open(dir: &Path, seq: u64) -> Result<FileRecords> {
    let name = file_name(seq);
    let file = fs::File::open(dir.join(&name))
        .map_err(|e| corrupt!("the index snapshot file {name} cannot be read: {e}"))?;
    // SAFETY: a snapshot file is never written after it is renamed into place (a later snapshot
    // goes into a file of its own, and an old one is unlinked, which leaves a mapping intact).
    // Only another program changing the file under an open folder could change mapped bytes.
    // Populated: the whole file is read next, and one call maps its pages faster than a fault
    // per page would.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
        .map_err(|e| corrupt!("the index snapshot file {name} cannot be read: {e}"))?;
    let map = Bytes::from_owner(map);
    let head = map
        .get(..20)
        .ok_or_else(|| corrupt!("the index snapshot file {name} ends early"))?;
    if &head[..16] != MAGIC {
        return Err(corrupt!("{name} is not an index snapshot file"));
    }
    let version = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(corrupt!(
            "the index snapshot file {name} has version {version}, this build reads {VERSION}"
        ));
    }
    Ok(FileRecords {
        map,
        at: 20,
        name,
        count: 0,
        last: Vec::new(),
        done: false,
    })
}

impl FileRecords {
    /// The next `n` bytes' place in the file; an error when the file ends first.
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.map.len())
            .ok_or_else(|| corrupt!("the index snapshot file {} ends early", self.name))?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn read_u32(&mut self) -> Result<u32> {
        let range = self.take(4)?;
        Ok(u32::from_le_bytes(
            self.map[range].try_into().unwrap_or_default(),
        ))
    }

    fn next_record(&mut self) -> Result<Option<(Vec<u8>, Bytes)>> {
        let key_len = self.read_u32()?;
        if key_len == 0 {
            let count = self.take(8)?;
            let sum = self.read_u32()?;
            let count = &self.map[count];
            if sum != check(&[], count)
                || u64::from_le_bytes(count.try_into().unwrap_or_default()) != self.count
                || self.at != self.map.len()
            {
                return Err(corrupt!(
                    "the index snapshot file {} is damaged at its end",
                    self.name
                ));
            }
            return Ok(None);
        }
        if key_len > MAX_KEY {
            return Err(corrupt!(
                "the index snapshot file {} is damaged (a key of {key_len} bytes)",
                self.name
            ));
        }
        let key = self.take(key_len as usize)?;
        let value_len = self.read_u32()?;
        let value = self.take(value_len as usize)?;
        let sum = self.read_u32()?;
        let (key, value) = (&self.map[key], self.map.slice(value));
        if sum != check(key, &value) || key <= &self.last[..] {
            return Err(corrupt!(
                "the index snapshot file {} is damaged (record {})",
                self.name,
                self.count + 1
            ));
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.count += 1;
        Ok(Some((self.last.clone(), value)))
    }
}

impl Iterator for FileRecords {
    type Item = Result<(Vec<u8>, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("k{i:05}").into_bytes(),
                    vec![(i % 251) as u8; i % 300],
                )
            })
            .collect()
    }

    fn write_all(dir: &Path, seq: u64, r: &[(Vec<u8>, Vec<u8>)]) -> u64 {
        write(dir, seq, r.iter().map(|(k, v)| (&k[..], &v[..]))).unwrap()
    }

    #[test]
    fn records_round_trip_and_the_length_is_the_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 1, 1000] {
            let r = records(n);
            let len = write_all(dir.path(), 7, &r);
            assert_eq!(len, fs::metadata(path(dir.path(), 7)).unwrap().len());
            let back: Vec<_> = open(dir.path(), 7).unwrap().collect::<Result<_>>().unwrap();
            let back: Vec<_> = back.into_iter().map(|(k, v)| (k, v.to_vec())).collect();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn out_of_order_keys_are_refused_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let r = [(b"b".to_vec(), vec![1]), (b"a".to_vec(), vec![2])];
        assert!(write(dir.path(), 1, r.iter().map(|(k, v)| (&k[..], &v[..]))).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Every flipped byte and every shortened length is found: the reader yields an error, not
    /// other records.
    #[test]
    fn every_damaged_byte_and_every_cut_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(40);
        write_all(dir.path(), 3, &r);
        let good = fs::read(path(dir.path(), 3)).unwrap();
        let read_back = |bytes: &[u8]| -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            fs::write(path(dir.path(), 3), bytes).unwrap();
            let back: Vec<(Vec<u8>, Bytes)> = open(dir.path(), 3)?.collect::<Result<_>>()?;
            Ok(back.into_iter().map(|(k, v)| (k, v.to_vec())).collect())
        };
        for i in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[i] ^= 0x5a;
            assert!(read_back(&bad).is_err(), "flipped byte {i} was not noticed");
        }
        for cut in (0..good.len()).step_by(13) {
            assert!(
                read_back(&good[..cut]).is_err(),
                "cut at {cut} was not noticed"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read_back(&longer).is_err());
        assert_eq!(read_back(&good).unwrap(), r);
    }

    #[test]
    fn others_and_unfinished_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for seq in [1, 2, 5] {
            write_all(dir.path(), seq, &records(3));
        }
        fs::write(dir.path().join("index-snapshot-6.unfinished"), b"x").unwrap();
        fs::write(dir.path().join("db"), b"sled's").unwrap();
        assert_eq!(highest(dir.path()).unwrap(), 5);
        assert_eq!(remove_others(dir.path(), Some(2)).unwrap(), 3);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["db", "index-snapshot-2"]);
        assert_eq!(remove_others(dir.path(), None).unwrap(), 1);
        assert_eq!(highest(dir.path()).unwrap(), 0);
    }
}

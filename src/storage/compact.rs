//! The folder side of compaction (`Db::compact`, `src/erase.rs`): where the new folder is
//! written, how it replaces the old one so that a crash at any moment leaves a folder that
//! opens, the clean-up of what an interrupted compaction left (run by every open), and the scan
//! of a folder's raw files for bytes that must not be there.
//!
//! Compacting the folder `P` writes every live record into a fresh sled folder `P.compact-new`,
//! syncs it, writes the file `COMPACTED` into it (synced: the new folder is complete), then
//! renames `P` to `P.compact-old`, `P.compact-new` to `P`, and removes `P.compact-old`. So:
//! - `P` present: it is the folder (old or new); `P.compact-new` beside it is an unfinished or
//!   unused copy and `P.compact-old` a replaced folder: both are removed.
//! - `P` absent, `P.compact-new` complete: the crash fell between the renames; the new folder
//!   is moved into place (then `P.compact-old` is removed as above).
//! - `P` absent, `P.compact-new` incomplete, `P.compact-old` present: cannot happen in that
//!   order; the old folder is moved back, to be safe.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{invalid, Result};

/// The file that marks a written and synced new folder as complete.
pub const DONE: &str = "COMPACTED";

/// The sibling of `path` with `suffix` added to its name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Where compaction writes the new folder.
pub fn new_folder(path: &Path) -> PathBuf {
    sibling(path, ".compact-new")
}

/// Where compaction moves the old folder before removing it.
pub fn old_folder(path: &Path) -> PathBuf {
    sibling(path, ".compact-old")
}

/// The steps of a compaction, for crash tests: `AUDIENCEDB_TEST_COMPACT_CRASH=<step>` makes the
/// process abort right after that step, as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every record is written into the new folder (not yet synced or marked).
    Written,
    /// The new folder is synced and marked complete.
    Marked,
    /// The old folder is renamed aside; no folder is at the path.
    OldAside,
    /// The new folder is in place; the old one is not yet removed.
    NewInPlace,
    /// The old folder is being removed (part of it is gone).
    Removing,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Written => "written",
            Step::Marked => "marked",
            Step::OldAside => "old-aside",
            Step::NewInPlace => "new-in-place",
            Step::Removing => "removing",
        }
    }
}

/// Aborts the process if the crash tests asked for a crash after `step`.
pub fn crash_point(step: Step) {
    if std::env::var("AUDIENCEDB_TEST_COMPACT_CRASH").as_deref() == Ok(step.name()) {
        std::process::abort();
    }
}

/// Refuses a path compaction cannot rename safely: one without a name of its own (`.`), or a
/// symbolic link (renaming would replace the link, not the folder).
pub fn check_path(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        return Err(invalid!(
            "{}: give the database folder by its name to compact it",
            path.display()
        ));
    }
    if fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(invalid!(
            "{} is a symbolic link: compact the folder it points to",
            path.display()
        ));
    }
    Ok(())
}

/// Syncs every file under `dir`, and each directory, to stable storage.
pub fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Syncs a directory's entries (a rename or a removal in it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The directory that holds `path`.
pub fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Removes a directory tree, trying again for a moment when something still creates files in
/// it (the storage engine's threads of a folder just closed).
pub fn remove_tree(dir: &Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Finishes or undoes what an interrupted compaction of `path` left (see the module's notes).
/// Runs before every open of `path`.
pub fn recover(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        return Ok(());
    }
    let (new, old) = (new_folder(path), old_folder(path));
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    if !exists(&new) && !exists(&old) {
        return Ok(());
    }
    if !exists(path) {
        if new.join(DONE).is_file() {
            fs::rename(&new, path)?;
            sync_dir(&parent(path))?;
        } else if old.is_dir() {
            fs::rename(&old, path)?;
            sync_dir(&parent(path))?;
        }
    }
    if exists(path) {
        for leftover in [&new, &old] {
            if exists(leftover) {
                remove_tree(leftover)?;
            }
        }
        sync_dir(&parent(path))?;
        let done = path.join(DONE);
        if done.exists() {
            fs::remove_file(&done)?;
        }
    }
    Ok(())
}

/// One place a searched string was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The index of the string in the list searched for.
    pub needle: usize,
    /// Where: a file and a byte offset, or a stored record.
    pub place: String,
}

/// Scans every byte of every file under `path` (and of a compaction's leftovers beside it) for
/// each of `needles`; returns every place found, and the files and bytes read.
pub fn raw_traces(path: &Path, needles: &[&[u8]]) -> Result<(Vec<Trace>, u64, u64)> {
    let finders: Vec<memchr::memmem::Finder<'_>> =
        needles.iter().map(memchr::memmem::Finder::new).collect();
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut traces = Vec::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = vec![path.to_owned()];
    for leftover in [new_folder(path), old_folder(path)] {
        if leftover.exists() {
            stack.push(leftover);
        }
    }
    while let Some(p) = stack.pop() {
        let meta = fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            for entry in fs::read_dir(&p)? {
                stack.push(entry?.path());
            }
            continue;
        }
        if !meta.is_file() {
            continue;
        }
        files += 1;
        let mut file = fs::File::open(&p)?;
        // Read in pieces that overlap by the longest needle less a byte, so that a string
        // across two pieces is found once.
        const PIECE: usize = 8 << 20;
        let mut buf = vec![0u8; PIECE + longest];
        let (mut kept, mut offset) = (0usize, 0u64);
        loop {
            let n = file.read(&mut buf[kept..])?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            let filled = kept + n;
            for (i, f) in finders.iter().enumerate() {
                for at in f.find_iter(&buf[..filled]) {
                    // A hit wholly inside the kept overlap was reported with the last piece.
                    if at + needles[i].len() > kept {
                        traces.push(Trace {
                            needle: i,
                            place: format!("{} at byte {}", p.display(), offset + at as u64),
                        });
                    }
                }
            }
            let keep = longest.saturating_sub(1).min(filled);
            buf.copy_within(filled - keep..filled, 0);
            offset += (filled - keep) as u64;
            kept = keep;
        }
    }
    Ok((traces, files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_traces_finds_strings_across_pieces_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        fs::create_dir_all(p.join("blobs")).unwrap();
        let mut big = vec![b'x'; (8 << 20) - 3];
        big.extend_from_slice(b"secret");
        big.extend_from_slice(b"....secret");
        fs::write(p.join("blobs/1"), &big).unwrap();
        fs::write(p.join("db"), b"no").unwrap();
        fs::create_dir(old_folder(&p)).unwrap();
        fs::write(old_folder(&p).join("db"), b"a secret").unwrap();
        let (traces, files, bytes) = raw_traces(&p, &[b"secret", b"absent"]).unwrap();
        assert_eq!(files, 3);
        assert_eq!(bytes, big.len() as u64 + 2 + 8);
        let places: Vec<&str> = traces.iter().map(|t| t.place.as_str()).collect();
        assert_eq!(places.len(), 3, "{places:?}");
        for end in [
            format!("blobs/1 at byte {}", (8 << 20) - 3),
            format!("blobs/1 at byte {}", (8 << 20) + 7),
            "db.compact-old/db at byte 2".to_owned(),
        ] {
            assert!(
                places.iter().any(|p| p.ends_with(&end)),
                "{end} in {places:?}"
            );
        }
        assert!(traces.iter().all(|t| t.needle == 0));
    }

    #[test]
    fn recover_rolls_forward_a_complete_new_folder_and_removes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        // Between the renames: no folder, a complete new one, the old one aside.
        fs::create_dir(new_folder(&p)).unwrap();
        fs::write(new_folder(&p).join("new"), b"").unwrap();
        fs::write(new_folder(&p).join(DONE), b"").unwrap();
        fs::create_dir(old_folder(&p)).unwrap();
        recover(&p).unwrap();
        assert!(p.join("new").exists() && !p.join(DONE).exists());
        assert!(!new_folder(&p).exists() && !old_folder(&p).exists());
        // An unfinished new folder beside the folder is removed.
        fs::create_dir(new_folder(&p)).unwrap();
        recover(&p).unwrap();
        assert!(!new_folder(&p).exists() && p.join("new").exists());
        // No folder and no complete new one: the old one comes back.
        fs::rename(&p, old_folder(&p)).unwrap();
        fs::create_dir(new_folder(&p)).unwrap();
        recover(&p).unwrap();
        assert!(p.join("new").exists() && !new_folder(&p).exists());
    }
}

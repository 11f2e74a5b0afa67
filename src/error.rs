//! The library's one error type, grouped by cause. Interfaces (CLI, REPL, socket) turn these into
//! friendly words; the library never panics on bad input and never leaves stored data half-changed.
//!
//! Errors are cheap to clone (an I/O error is shared behind an `Arc`): a group of writes
//! committed together fails as one, and every writer of the group gets the same error.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in audiencedb.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value, id, message or argument given by the caller is not acceptable.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A message would add a name past one of the schema limits (`Config::limits`); nothing of
    /// that message was stored. `message` names the limit, its value and the new name.
    #[error("{message}")]
    Limit {
        limit: crate::storage::catalog::SchemaLimit,
        max: usize,
        message: String,
    },

    /// A merge of two customers' ids (an `alias`, or a message with both `anonymousId` and
    /// `userId`) was refused by a guard rail (`Config::max_ids_per_customer`,
    /// `Config::allow_known_merge`); nothing of that message was stored.
    #[error("merge refused: {0}")]
    MergeRefused(String),

    /// One line of an import could not be used.
    #[error("line {line}: {reason}")]
    BadLine { line: u64, reason: String },

    /// A rule that does not parse. [`crate::rules::ParseError::render`] draws the caret.
    #[error("bad rule: {0}")]
    Rule(#[from] crate::rules::ParseError),

    /// A rule that parses but cannot be evaluated (an unknown audience, a value that makes no
    /// sense where it is used).
    #[error("cannot evaluate the rule: {0}")]
    Evaluation(String),

    /// An event property whose values have no per-value bitmaps (over `Config::value_bound`
    /// distinct values, or only floats, date-times or lists), asked to be counted by value
    /// (`top`, `recommend`). `message` names the limit and the setting that changes it.
    #[error("{message}")]
    NotIndexed {
        event: String,
        property: String,
        message: String,
    },

    /// The customer, audience or other named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// The folder exists but is not an audiencedb database.
    #[error("{path}: not an audiencedb database ({reason})")]
    NotADatabase { path: PathBuf, reason: String },

    /// The folder was written by a build with an on-disk format this build cannot read.
    #[error("{path}: on-disk format version {found}, this build reads version {expected}")]
    IncompatibleFormat {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    /// Stored bytes did not decode: the folder is damaged.
    #[error("corrupt data: {0}")]
    Corrupt(String),

    /// The database folder is in use by another process (still so after a 2-second wait).
    #[error("{path}: the database is in use by another process")]
    Locked { path: PathBuf },

    /// An error from the storage engine that is neither an I/O error nor damage (sled's I/O
    /// errors become [`Error::Io`], its corruption reports [`Error::Corrupt`]).
    #[error("storage: {0}")]
    Storage(sled::Error),

    /// An error reading or writing a file.
    #[error("I/O: {0}")]
    Io(Arc<std::io::Error>),

    /// A fault of the database itself, not of the caller's input: a state the code should never
    /// reach. The interfaces report it as such (the CLI exits 3, the socket answers `ERR
    /// internal error`).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

impl From<sled::Error> for Error {
    /// sled's I/O errors keep their kind, so that a full disk reads as one ("No space left on
    /// device (os error 28)") and not as damage; only sled's own corruption reports are
    /// [`Error::Corrupt`].
    fn from(e: sled::Error) -> Error {
        match e {
            sled::Error::Io(io) => Error::from(plain_io(io)),
            sled::Error::Corruption { .. } => Error::Corrupt(e.to_string()),
            other => Error::Storage(other),
        }
    }
}

/// The I/O error with its usual words. sled hands out copies of the error that stopped its log
/// as `io::Error::new(kind, format!("{:?}", original))` ("Os { code: 28, kind: StorageFull,
/// ... }"); the kinds this matters for get their system message back.
pub(crate) fn plain_io(io: std::io::Error) -> std::io::Error {
    if io.raw_os_error().is_some() {
        return io;
    }
    let errno = match io.kind() {
        std::io::ErrorKind::StorageFull => libc::ENOSPC,
        std::io::ErrorKind::QuotaExceeded => libc::EDQUOT,
        std::io::ErrorKind::ReadOnlyFilesystem => libc::EROFS,
        _ => return io,
    };
    std::io::Error::from_raw_os_error(errno)
}

impl Error {
    /// Whether this is the disk (or the user's quota) being full.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds an [`Error::InvalidInput`] from format arguments.
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::InvalidInput(format!($($arg)*)) };
}

/// Builds an [`Error::Internal`] from format arguments.
macro_rules! internal {
    ($($arg:tt)*) => { $crate::error::Error::Internal(format!($($arg)*)) };
}

/// Builds an [`Error::Corrupt`] from format arguments.
macro_rules! corrupt {
    ($($arg:tt)*) => { $crate::error::Error::Corrupt(format!($($arg)*)) };
}

pub(crate) use {corrupt, internal, invalid};

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk reads as one, whichever copy of sled's error arrives: the first (the system's
    /// error) or the later ones (sled's copies, which carry its debug form as text).
    #[test]
    fn a_full_disk_from_sled_is_an_io_error_not_damage() {
        let first = sled::Error::Io(std::io::Error::from_raw_os_error(libc::ENOSPC));
        for e in [first.clone(), first] {
            let e = Error::from(e);
            assert!(e.is_no_space(), "{e:?}");
            assert_eq!(e.to_string(), "I/O: No space left on device (os error 28)");
            assert!(e.clone().is_no_space());
            assert_eq!(
                e.clone().to_string(),
                "I/O: No space left on device (os error 28)"
            );
        }
        let other = Error::from(sled::Error::from(std::io::Error::other("something else")));
        assert!(!other.is_no_space());
        assert!(matches!(other, Error::Io(_)));
        assert!(matches!(
            Error::from(sled::Error::Unsupported("x".into())),
            Error::Storage(_)
        ));
    }
}

//! The folder as the keeper of derived data (`crate::index::derived`): the records readers
//! store and load through the store's derived records. Owns only this adapter; what a record
//! holds and when it may be used is the index layer's.

use crate::index::derived::{DerivedStore, Loaded};
use crate::storage::Store;

/// Derived records kept in the folder of `0`.
pub(crate) struct Kept<'s>(pub &'s Store);

impl DerivedStore for Kept<'_> {
    fn load(&self, key: &[u8]) -> Option<Loaded> {
        // An unreadable record is only a record to build again. Not copied: sled's bytes are
        // shared.
        self.0.derived(key).ok().flatten().map(Loaded::new)
    }

    fn save(&self, key: &[u8], record: &[u8]) {
        // A record that cannot be written (a full disk) is built again by the next process.
        let _ = self.0.put_derived(key, record);
    }
}

//! What the tests in `tests/` and the benchmarks in `benches/` need of the crate's internals,
//! and nothing else: hidden from the docs, not an API, free to change with the tests. The
//! storage and index layers are private to the crate; a test that looks at the indexes, writes
//! records as an older build did, or looks for a record by its key reaches them here.

use parking_lot::RwLockReadGuard;

use crate::Db;

/// The in-memory indexes, as a test compares them.
pub use crate::index::Indexes;
/// The read state: catalog, indexes, ids.
pub use crate::query::state::ReadState;
/// Storage's key layout (`docs/STORAGE.md`), for tests that read or write raw records.
pub use crate::storage::keys;
/// The store itself, for tests that open a folder's records without a database around them.
pub use crate::storage::Store;
/// The folder format this build writes.
pub use crate::storage::FORMAT_VERSION;

/// A customer's timeline: the switch that writes format 3 (blocks only) as an older build did,
/// and the maker of format-4 tails.
pub mod timeline {
    pub use crate::storage::timeline::{move_into_format_4_tail, write_format_3};
}

/// The folder steps of a compaction: the folders beside the path, the marker, the raw scan.
pub mod compact {
    pub use crate::storage::compact::{new_folder, old_folder, raw_traces, DONE};
}

/// Derived records (event columns, text columns, runs of days) loaded from a folder and used
/// instead of a build, so far in this process.
pub fn derived_used() -> u64 {
    crate::index::derived::used()
}

/// Sequences and funnels' journeys are decided from the event columns (once built) when at
/// least `n` customers are left to decide (256 by default); `0` sends every one through them,
/// so tests with a handful of customers check that path against the reference. Process-wide.
pub fn journeys_by_columns_from(n: u64) {
    crate::query::exec::JOURNEYS_BY_COLUMNS_FROM.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a write's own events may decide saved audiences without reading the customer
/// (`true` by default); `false` reads every customer a write touched, the path before. For
/// tests comparing the two. Process-wide.
pub fn settle_writes(on: bool) {
    crate::audience::SETTLE_WRITES.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the written customers a write's events do not settle are answered from the indexes
/// (kept totals, day bitmaps, spans) where they can be, before being read (`true` by default);
/// `false` reads them, the path before. For tests and benches comparing the two. Process-wide.
pub fn settle_by_indexes(on: bool) {
    crate::audience::BY_INDEXES.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// What writes decided by themselves (see [`Internals::settle_stats`]).
pub use crate::audience::SettleStats;

/// A look at a database's in-memory state; `use audiencedb::testing::Internals` to call it.
pub trait Internals {
    /// A consistent view of the catalog, the indexes and the ids. Hold it briefly: writers
    /// wait for it.
    fn read(&self) -> RwLockReadGuard<'_, ReadState>;
    /// Counts of what writes decided by themselves for saved audiences, since opening.
    fn settle_stats(&self) -> SettleStats;
}

impl Internals for Db {
    fn read(&self) -> RwLockReadGuard<'_, ReadState> {
        self.state.read()
    }

    fn settle_stats(&self) -> SettleStats {
        self.audiences.settle_stats()
    }
}

/// Saved audiences' members alone, without a database, for measuring `audiences_of` at a scale
/// no test shop reaches (`benches/audiences.rs`): the same lookup `Db::audiences_of` makes once
/// it has the internal id.
pub struct MembersOnly(crate::audience::Audiences);

impl MembersOnly {
    /// Audiences with these names and members.
    pub fn new(members: Vec<(String, roaring::RoaringBitmap)>) -> MembersOnly {
        MembersOnly(crate::audience::Audiences::with_members(members))
    }

    /// The names of the audiences customer `cust` (an internal id) is in, sorted.
    pub fn audiences_of(&self, cust: u32) -> crate::AudienceNames {
        self.0.of(cust)
    }
}

//! Hash maps and sets with a fast hasher, shared by the indexes, the catalog, the query engine
//! and saved audiences. Type aliases only.

/// A hash map with a fast hasher: index keys are small and not attacker-chosen in a way that
/// matters here (a slow bucket costs time, never correctness).
pub type FastMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;
/// The set counterpart of [`FastMap`].
pub type FastSet<K> = hashbrown::HashSet<K, rustc_hash::FxBuildHasher>;

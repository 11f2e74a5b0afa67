//! [`WriteBatch`]: the records one atomic write puts and removes, named by what they are. It
//! is the only way the layers above storage write, so the key layout of [`super::keys`] (and
//! docs/STORAGE.md) is written out here and nowhere above.

use roaring::RoaringBitmap;
use sled::IVec;

use super::keys;
use super::timeline::Logged;
use super::BlockDictionary;
use crate::error::Result;
use crate::model::Timestamp;

/// Puts and removals applied atomically by [`super::Store::commit`] or [`super::Store::apply`].
/// They apply in the order they were added: a later put or removal of the same record wins
/// over an earlier one (so a block put under a removed block's key replaces the removal).
///
/// A batch also carries customers' new events for the write log ([`super::timeline`]), which
/// [`super::Store::commit`] stores as the write's log records and adds to the memtable once the
/// batch is durable, and the customers whose unfolded events it drops then.
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(IVec, Option<IVec>)>,
    pub(super) log: Vec<Logged>,
    pub(super) forget: Vec<u32>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Whether nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.log.is_empty() && self.forget.is_empty()
    }

    /// Adds `other`'s puts and removals (and logged events) after this batch's own.
    pub fn append(&mut self, mut other: WriteBatch) {
        self.ops.append(&mut other.ops);
        self.log.append(&mut other.log);
        self.forget.append(&mut other.forget);
    }

    fn put(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    fn remove(&mut self, key: impl Into<IVec>) {
        self.ops.push((key.into(), None));
    }

    /// The customers whose message-id records or event blocks the batch puts.
    pub(super) fn seen_or_block_customers(&self) -> impl Iterator<Item = u32> + '_ {
        self.ops
            .iter()
            .filter(|(_, v)| v.is_some())
            .filter_map(|(k, _)| keys::seen_or_block_customer(k))
    }

    /// The sled batch, with the same last-one-wins order.
    pub(super) fn into_sled(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (key, value) in self.ops {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        batch
    }

    /// A metadata record ([`super::meta`]).
    pub fn put_meta(&mut self, name: &str, value: &[u8]) {
        self.put(keys::meta(name), value);
    }

    /// A `u64` metadata counter, big-endian (read by [`super::Store::meta_u64`]).
    pub fn put_meta_u64(&mut self, name: &str, value: u64) {
        self.put_meta(name, &value.to_be_bytes());
    }

    /// The next internal id to hand out (read by [`super::Store::next_id`]).
    pub fn put_next_id(&mut self, next_id: u32) {
        self.put_meta(super::meta::NEXT_ID, &next_id.to_be_bytes());
    }

    /// Both directions of the id map: `external` is customer `internal`.
    pub fn put_id(&mut self, external: &str, internal: u32) {
        self.put(keys::id(external), &internal.to_be_bytes()[..]);
        self.put(&keys::external(internal)[..], external.as_bytes());
    }

    /// Removes both directions of the id map of a customer.
    pub fn remove_id(&mut self, external: &str, internal: u32) {
        self.remove(keys::id(external));
        self.remove(&keys::external(internal)[..]);
    }

    /// A merged customer's other ids ([`super::ids::encode_aliases`]); none removes the record.
    pub fn put_aliases(&mut self, cust: u32, aliases: &[String]) {
        if aliases.is_empty() {
            self.remove(&keys::aliases(cust)[..]);
        } else {
            self.put(
                &keys::aliases(cust)[..],
                super::ids::encode_aliases(aliases),
            );
        }
    }

    /// Marks a customer as known only by anonymous ids (`true`), or as having a `userId`.
    pub fn put_anonymous(&mut self, cust: u32, anonymous: bool) {
        if anonymous {
            self.put(&keys::anonymous(cust)[..], &[][..]);
        } else {
            self.remove(&keys::anonymous(cust)[..]);
        }
    }

    /// A customer's profile ([`super::codec::encode_profile`]).
    pub fn put_profile(&mut self, cust: u32, bytes: Vec<u8>) {
        self.put(&keys::profile(cust)[..], bytes);
    }

    pub fn remove_profile(&mut self, cust: u32) {
        self.remove(&keys::profile(cust)[..]);
    }

    /// The sorted hashes of a customer's stored message ids ([`super::codec::encode_seen`]), in
    /// its first message-id record. A write that puts the union of every record here removes
    /// the further ones ([`super::Store::remove_seen`]).
    pub fn put_seen(&mut self, cust: u32, bytes: Vec<u8>) {
        self.put(&keys::seen(cust)[..], bytes);
    }

    /// Further message-id record `n` of a customer (format 7): the sorted hashes one fold added.
    pub(super) fn put_seen_chunk(&mut self, cust: u32, n: u32, bytes: Vec<u8>) {
        self.put(&keys::seen_chunk(cust, n)[..], bytes);
    }

    /// A block of a customer's events whose first one happened at `start`.
    pub fn put_block(&mut self, cust: u32, start: Timestamp, bytes: impl Into<IVec>) {
        self.put(&keys::block(cust, start)[..], bytes);
    }

    pub fn remove_block(&mut self, cust: u32, start: Timestamp) {
        self.remove(&keys::block(cust, start)[..]);
    }

    /// A format-4 tail (folded into blocks at open: see [`super::timeline`]). Put by tests
    /// only, which make such folders.
    pub(super) fn put_tail(&mut self, cust: u32, seq: u32, value: Vec<u8>) {
        self.put(&keys::tail(cust, seq)[..], value);
    }

    pub(super) fn remove_tail(&mut self, cust: u32, seq: u32) {
        self.remove(&keys::tail(cust, seq)[..]);
    }

    pub(super) fn remove_meta(&mut self, name: &str) {
        self.remove(&keys::meta(name)[..]);
    }

    /// A compression dictionary for event blocks.
    pub fn put_dictionary(&mut self, dictionary: &BlockDictionary) {
        self.put(&keys::dictionary(dictionary.id())[..], dictionary.bytes());
    }

    /// The dirty-log record of write `generation`: the customers it touched.
    pub fn put_dirty(&mut self, generation: u64, touched: &RoaringBitmap) -> Result<()> {
        let mut bytes = Vec::with_capacity(touched.serialized_size());
        touched.serialize_into(&mut bytes)?;
        self.put(&keys::dirty(generation)[..], bytes);
        Ok(())
    }

    /// Removes a record by its key, as read from the store.
    pub(super) fn remove_raw(&mut self, key: IVec) {
        self.remove(key);
    }

    /// An index snapshot family, by its family key.
    pub fn put_index_family(&mut self, family_key: &[u8], blob: Vec<u8>) {
        self.put(keys::index(family_key), blob);
    }

    pub fn remove_index_family(&mut self, family_key: &[u8]) {
        self.remove(keys::index(family_key));
    }

    /// The removal of an index snapshot family that the index snapshot file may hold: an empty
    /// record in its place, which hides the file's.
    pub fn hide_index_family(&mut self, family_key: &[u8]) {
        self.put(keys::index(family_key), Vec::new());
    }

    /// Names the index snapshot file `seq` as the folder's ([`super::Store::write_index_file`]).
    pub fn put_index_file(&mut self, seq: u64) {
        self.put_meta_u64(super::meta::INDEX_FILE, seq);
    }

    /// One chunk of the id map's snapshot.
    pub fn put_id_chunk(&mut self, chunk: u32, blob: Vec<u8>) {
        self.put(&keys::id_chunk(chunk)[..], blob);
    }

    pub fn remove_id_chunk(&mut self, chunk: u32) {
        self.remove(&keys::id_chunk(chunk)[..]);
    }

    /// A saved audience's definition (JSON).
    pub fn put_audience(&mut self, name: &str, bytes: Vec<u8>) {
        self.put(keys::audience(name), bytes);
    }

    pub fn remove_audience(&mut self, name: &str) {
        self.remove(keys::audience(name));
    }

    /// A computed trait's definition (JSON).
    pub fn put_computed_trait(&mut self, name: &str, bytes: Vec<u8>) {
        self.put(keys::computed_trait(name), bytes);
    }

    pub fn remove_computed_trait(&mut self, name: &str) {
        self.remove(keys::computed_trait(name));
    }

    /// A saved audience's members and timers, as of a checkpoint.
    pub fn put_audience_state(&mut self, id: u32, bytes: Vec<u8>) {
        self.put(&keys::audience_state(id)[..], bytes);
    }

    /// A loaded list's external ids.
    pub fn put_audience_list(&mut self, id: u32, bytes: Vec<u8>) {
        self.put(&keys::audience_list(id)[..], bytes);
    }

    pub fn remove_audience_list(&mut self, id: u32) {
        self.remove(&keys::audience_list(id)[..]);
    }

    pub fn remove_audience_state(&mut self, id: u32) {
        self.remove(&keys::audience_state(id)[..]);
    }

    /// A chunk of the change feed whose first change is at position `first`.
    pub fn put_feed_chunk(&mut self, first: u64, bytes: Vec<u8>) {
        self.put(&keys::feed(first)[..], bytes);
    }

    pub fn remove_feed_chunk(&mut self, first: u64) {
        self.remove(&keys::feed(first)[..]);
    }

    /// A change of the feed as first stored, one record per change (only ever read now).
    #[cfg(test)]
    pub(crate) fn put_feed_v1(&mut self, seq: u64, bytes: Vec<u8>) {
        self.put(&keys::feed_key(keys::FEED_V1, seq)[..], bytes);
    }

    pub fn remove_feed_v1(&mut self, seq: u64) {
        self.remove(&keys::feed_key(keys::FEED_V1, seq)[..]);
    }

    /// A record copied as it is, under its own key (compaction copies a folder's records).
    pub fn put_record(&mut self, key: &[u8], value: &[u8]) {
        self.put(key, value);
    }
}

//! Key encoding. Everything lives in one sled tree so that one `apply_batch` commits a whole
//! ingest atomically; the first byte of a key says what it is:
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `0x00` | `0x00` + name | metadata: format version, generation, counters, catalog |
//! | `i` | `i` + external id | internal id, `u32` big-endian |
//! | `r` | `r` + internal id (BE) | external id |
//! | `p` | `p` + internal id (BE) | profile: traits |
//! | `e` | `e` + internal id (BE) + first timestamp (BE) | a block of the customer's events, in time order |
//! | `m` | `m` + internal id (BE), then (format 7) a record number (BE) | sorted hashes of the customer's stored message ids: the first record's, then those each later fold added |
//! | `d` | `d` + generation (BE) | customers touched by that write, until the next index snapshot |
//! | `x` | `x` + family key | an index snapshot family |
//! | `a` | `a` + audience name | a saved audience's definition (JSON) |
//! | `b` | `b` + audience id (BE) | a saved audience's members and timers, as of a checkpoint |
//! | `c` | `c` + audience id (BE) | a loaded list's external ids, one per line (`audience load`) |
//! | `k` | `k` + trait name | a computed trait's definition (JSON) |
//! | `f` | `f` + sequence number (BE) | one entry of the change feed (who entered or left what) |
//! | `z` | `z` + dictionary id (BE) | a compression dictionary for event blocks (format 3) |
//! | `t` | `t` + internal id (BE) + sequence (BE) | formats 4 and 5 only: a tail, one write's events appended after the customer's blocks; folded into blocks when the folder is opened |
//! | `l` | `l` + internal id (BE) | a merged customer's other ids, besides its `r` id (format 5) |
//! | `n` | `n` + internal id (BE) | empty: the customer has no `userId`, only anonymous ids (format 5) |
//! | `y` | `y` + derived key | derived data a reader built and kept: event columns, text columns, runs of days, `bucket(NAME)` splits, marks of what was asked (`index::derived`) |
//!
//! Big-endian ids and times sort numerically, so one prefix scan reads a customer's timeline
//! in time order, and the blocks of one customer never overlap in time.

use crate::error::{corrupt, Result};
use crate::model::Timestamp;

pub const META: u8 = 0x00;
pub const ID: u8 = b'i';
pub const EXTERNAL: u8 = b'r';
pub const PROFILE: u8 = b'p';
pub const EVENTS: u8 = b'e';
pub const SEEN: u8 = b'm';
pub const DIRTY: u8 = b'd';
pub const INDEX: u8 = b'x';
pub const AUDIENCE: u8 = b'a';
pub const AUDIENCE_STATE: u8 = b'b';
/// A loaded list's external ids (an audience whose members come from elsewhere).
pub const AUDIENCE_LIST: u8 = b'c';
/// A computed trait's definition, by name.
pub const COMPUTED_TRAIT: u8 = b'k';
/// The change feed, in chunks of consecutive changes, keyed by the first one's position.
pub const FEED: u8 = b'g';
/// The change feed as first stored, one record per change (converted to chunks at open).
pub const FEED_V1: u8 = b'f';
/// The in-memory id map's snapshot, in chunks of consecutive internal ids.
pub const ID_SNAPSHOT: u8 = b'j';
/// Compression dictionaries for event blocks, by id.
pub const DICTIONARY: u8 = b'z';
/// Event tails of format 4 (a write's events appended after a customer's blocks): folded into
/// blocks when such a folder is opened.
pub const TAIL: u8 = b't';
/// A merged customer's other ids (aliases), besides the one of its `r` record.
pub const ALIASES: u8 = b'l';
/// A customer known only by anonymous ids (`anonymousId`, `previousId`): no `userId` yet.
pub const ANONYMOUS: u8 = b'n';
/// Derived data kept by readers (event columns, runs of days), checked against the indexes
/// before use and dropped by a compaction.
pub const DERIVED: u8 = b'y';

/// A human name for the kind of record a key prefix marks.
pub fn kind_name(prefix: u8) -> &'static str {
    match prefix {
        META => "metadata",
        ID => "id map",
        EXTERNAL => "reverse id map",
        PROFILE => "profiles",
        EVENTS => "event blocks",
        SEEN => "message ids",
        DIRTY => "dirty log",
        INDEX => "index snapshot",
        AUDIENCE => "audience definitions",
        AUDIENCE_STATE => "audience members",
        AUDIENCE_LIST => "loaded audience lists",
        COMPUTED_TRAIT => "computed trait definitions",
        FEED => "change feed",
        FEED_V1 => "change feed (one record a change)",
        ID_SNAPSHOT => "id map snapshot",
        DICTIONARY => "block dictionaries",
        TAIL => "event tails (formats 4 and 5)",
        ALIASES => "merged ids",
        ANONYMOUS => "anonymous customers",
        DERIVED => "derived data",
        _ => "unknown",
    }
}

pub fn meta(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(META);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn id(external: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + external.len());
    k.push(ID);
    k.extend_from_slice(external.as_bytes());
    k
}

fn with_customer(prefix: u8, cust: u32) -> [u8; 5] {
    let mut k = [prefix, 0, 0, 0, 0];
    k[1..].copy_from_slice(&cust.to_be_bytes());
    k
}

/// The id map snapshot's chunk `chunk` (internal ids `chunk * ids::CHUNK_IDS ..`).
pub fn id_chunk(chunk: u32) -> [u8; 5] {
    with_customer(ID_SNAPSHOT, chunk)
}

pub fn external(cust: u32) -> [u8; 5] {
    with_customer(EXTERNAL, cust)
}

pub fn profile(cust: u32) -> [u8; 5] {
    with_customer(PROFILE, cust)
}

pub fn events_of(cust: u32) -> [u8; 5] {
    with_customer(EVENTS, cust)
}

pub fn aliases(cust: u32) -> [u8; 5] {
    with_customer(ALIASES, cust)
}

pub fn anonymous(cust: u32) -> [u8; 5] {
    with_customer(ANONYMOUS, cust)
}

/// A customer's first message-id record, and the prefix of all of them.
pub fn seen(cust: u32) -> [u8; 5] {
    with_customer(SEEN, cust)
}

/// A customer's further message-id record `n` (format 7: the hashes one fold added).
pub fn seen_chunk(cust: u32, n: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..5].copy_from_slice(&seen(cust));
    k[5..].copy_from_slice(&n.to_be_bytes());
    k
}

/// The customer of a message-id record's or an event block's key (any key under the `m` or `e`
/// prefix long enough to name one), for [`super::Store`]'s bookkeeping of customers that have
/// neither.
pub fn seen_or_block_customer(key: &[u8]) -> Option<u32> {
    match key {
        [SEEN | EVENTS, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The number of a customer's message-id record: 0 for the first (`m` + id), `n` for
/// [`seen_chunk`] `n`.
pub fn parse_seen_chunk(key: &[u8]) -> Result<u32> {
    match key.len() {
        5 => Ok(0),
        9 => Ok(u32::from_be_bytes([key[5], key[6], key[7], key[8]])),
        _ => Err(corrupt!("bad message-id key")),
    }
}

/// The key of compression dictionary `id`.
pub fn dictionary(id: u32) -> [u8; 5] {
    with_customer(DICTIONARY, id)
}

/// The key of a block whose first event happened at `start` (never negative: see
/// [`crate::model::time::MIN_TIMESTAMP`]).
pub fn block(cust: u32, start: Timestamp) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..5].copy_from_slice(&events_of(cust));
    k[5..].copy_from_slice(&(start as u64).to_be_bytes());
    k
}

/// The key of a customer's format-4 tail number `seq`.
pub fn tail(cust: u32, seq: u32) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = TAIL;
    k[1..5].copy_from_slice(&cust.to_be_bytes());
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a format-4 tail key into its customer and sequence number.
pub fn parse_tail(key: &[u8]) -> Result<(u32, u32)> {
    match key {
        [TAIL, a, b, c, d, e, f, g, h] => Ok((
            u32::from_be_bytes([*a, *b, *c, *d]),
            u32::from_be_bytes([*e, *f, *g, *h]),
        )),
        _ => Err(corrupt!("bad event tail key")),
    }
}

/// Splits a block key into its customer and first timestamp.
pub fn parse_block(key: &[u8]) -> Result<(u32, Timestamp)> {
    if key.len() != 13 || key[0] != EVENTS {
        return Err(corrupt!("bad event block key"));
    }
    let cust = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&key[5..]);
    let start = i64::try_from(u64::from_be_bytes(t)).map_err(|_| corrupt!("bad block time"))?;
    Ok((cust, start))
}

/// The customer in a key that starts with a prefix byte and the big-endian customer id.
pub fn parse_customer(key: &[u8]) -> Result<u32> {
    match key {
        [_, a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(corrupt!("bad customer key")),
    }
}

pub fn dirty(generation: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = DIRTY;
    k[1..].copy_from_slice(&generation.to_be_bytes());
    k
}

pub fn parse_dirty(key: &[u8]) -> Result<u64> {
    let a: [u8; 8] = key
        .get(1..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt!("bad dirty-log key"))?;
    Ok(u64::from_be_bytes(a))
}

/// The key of a derived record (`index::derived` makes `derived_key`).
pub fn derived(derived_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + derived_key.len());
    k.push(DERIVED);
    k.extend_from_slice(derived_key);
    k
}

pub fn index(family_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + family_key.len());
    k.push(INDEX);
    k.extend_from_slice(family_key);
    k
}

pub fn audience(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(AUDIENCE);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn computed_trait(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(COMPUTED_TRAIT);
    k.extend_from_slice(name.as_bytes());
    k
}

pub fn audience_list(id: u32) -> [u8; 5] {
    with_customer(AUDIENCE_LIST, id)
}

pub fn audience_state(id: u32) -> [u8; 5] {
    with_customer(AUDIENCE_STATE, id)
}

pub fn feed(seq: u64) -> [u8; 9] {
    feed_key(FEED, seq)
}

pub fn feed_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number in a feed key (also a dirty-log key's generation: same layout).
pub fn parse_feed(key: &[u8]) -> Result<u64> {
    parse_dirty(key)
}

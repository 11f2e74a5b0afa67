//! Entry points for the fuzz targets in `fuzz/`, and for nothing else: hidden from the docs, not
//! an API, free to change with the targets.
//!
//! Most decoders the targets call are public already (the RESP [`crate::server::resp::Decoder`],
//! [`crate::Message::from_json_line`], [`crate::storage::codec`], the index snapshot's
//! [`crate::index::Indexes::decode_family`]). These wrap the few that decode bytes read from a
//! folder but are private to their module. Each takes the bytes as a record of that kind would be
//! read from the store and answers an error for anything it cannot read; none may panic or
//! allocate more than the record could hold.

use crate::error::Result;

/// A saved audience's members-and-timers record (key prefix `AUDIENCE_STATE` in `docs/STORAGE.md`); returns the members
/// and timers it holds.
pub fn decode_audience_state(bytes: &[u8]) -> Result<u64> {
    crate::audience::decode_state_record(bytes)
}

/// A change-feed record whose first change is at position `first` (key prefix `FEED`); returns the
/// changes it holds.
pub fn decode_feed_chunk(first: u64, bytes: &[u8]) -> Result<u64> {
    crate::audience::decode_feed_record(first, bytes)
}

/// Chunk `chunk` of the id map's snapshot (key prefix `ID_SNAPSHOT`), with the id counter at
/// `next_id`; returns the ids it holds.
pub fn decode_id_chunk(chunk: u32, bytes: &[u8], next_id: u32) -> Result<usize> {
    crate::storage::IdMap::decode_chunk_record(chunk, bytes, next_id)
}

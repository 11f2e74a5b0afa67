//! Entry points for the fuzz targets in `fuzz/`, and for nothing else: hidden from the docs, not
//! an API, free to change with the targets.
//!
//! Some decoders the targets call are public already (the RESP [`crate::server::resp::Decoder`],
//! [`crate::Message::from_json_line`]); those of the storage and index layers, which are private
//! to the crate, are handed on here as they are (the record codecs, the in-place block reader,
//! dictionary training, the key layout, the index snapshot's `Indexes::decode_family` and
//! `Family::from_key`). The functions below wrap the few that decode bytes read from a folder
//! but are private to their module. Each takes the bytes as a record of that kind would be read
//! from the store and answers an error for anything it cannot read; none may panic or allocate
//! more than the record could hold.

pub use crate::index::{Family, Indexes};
pub use crate::storage::dictionary::train;
pub use crate::storage::{codec, keys, BlockDictionary, Bytes, Dictionaries};

/// The write log's frames and their payloads.
pub mod timeline {
    pub use crate::storage::timeline::{
        decode_frames, decode_log, decode_log_events, decode_part, encode_log, Logged,
    };
}

/// The in-place reader of event blocks.
pub mod view {
    pub use crate::storage::view::{decompress_block, for_each_event, ValueView};
}

use crate::error::Result;
use crate::server::resp::{Decoder, Frame, Limits};

/// A saved audience's members-and-timers record (key prefix `AUDIENCE_STATE` in
/// `docs/STORAGE.md`); returns the members and timers it holds.
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

/// What [`drive_resp`] saw: each request's arguments, or a dropped frame's error.
pub type RespFrames = Vec<std::result::Result<Vec<Vec<u8>>, Option<String>>>;

/// Feeds `input` to a fresh RESP decoder as the server does: in the pieces that `cuts` marks,
/// dropping the bytes of each frame returned and appending the next piece when it says
/// `Incomplete`. Every frame must lie inside the buffer and take at least one byte, so decoding
/// ends (at most one call per byte and one per piece); `Incomplete` must not claim to want fewer
/// bytes than are there. Panics when one of those fails: the `resp` fuzz target and the
/// decoder's proptests both drive it.
pub fn drive_resp(limits: Limits, input: &[u8], cuts: &[usize]) -> RespFrames {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let max_calls = input.len() + cuts.len();
    let mut d = Decoder::new(limits);
    let (mut buf, mut fed, mut calls, mut frames) = (Vec::new(), 0, 0, RespFrames::new());
    for cut in cuts {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            calls += 1;
            assert!(calls <= max_calls, "the decoder does not progress");
            let len = match d.next(&buf) {
                Frame::Request { len } => {
                    assert!(d.args().iter().all(|a| a.start <= a.end && a.end <= len));
                    frames.push(Ok(d
                        .args()
                        .iter()
                        .map(|a| buf[a.clone()].to_vec())
                        .collect()));
                    len
                }
                Frame::Dropped { len, error } => {
                    frames.push(Err(error));
                    len
                }
                Frame::Incomplete => {
                    if let Some(wants) = d.wants(&buf) {
                        assert!(wants > buf.len(), "wants {wants} of {}", buf.len());
                    }
                    break;
                }
            };
            assert!(len > 0 && len <= buf.len(), "{len} of {}", buf.len());
            buf.drain(..len);
            // Asked after every frame, as the server asks it: it must not panic either.
            let _ = d.in_request();
        }
    }
    frames
}

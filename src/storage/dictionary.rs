//! Compression dictionaries for event blocks.
//!
//! Most customers' timelines fit in one block of a few hundred bytes to a few kilobytes: too
//! little for a compressor to learn the shop's vocabulary (event and property ids, product ids,
//! categories, currencies) from the block alone. A dictionary trained once on sample block
//! bodies gives zstd that vocabulary up front; on the generated shop it shrinks the stored blocks
//! by about 45% against LZ4 on its own (docs/BENCHMARKS.md).
//!
//! This module owns training a dictionary from samples, loading a stored one, and compressing
//! and decompressing block bodies with it on per-thread zstd contexts. It does not decide when
//! to train (the writer does), where dictionaries are stored (`z` records, see [`super::keys`])
//! or what a block body holds ([`super::codec`]).

use std::cell::RefCell;
use std::sync::OnceLock;

use zstd::zstd_safe::{self, CCtx, CDict, CParameter, DCtx, DDict};

use crate::error::{corrupt, Result};

/// The zstd level blocks are compressed at with a dictionary: level 3 is zstd's default, and
/// compresses a block in a few microseconds.
const LEVEL: i32 = 3;

/// The largest dictionary trained. 64 KiB compresses the generated shop within 1% of 112 KiB.
const MAX_DICTIONARY_BYTES: usize = 64 << 10;

/// Training needs at least this many sample bytes to find the shared vocabulary; fewer leave
/// the blocks on LZ4 alone.
pub const TRAIN_MIN_BYTES: usize = 256 << 10;

/// The id of the one dictionary a folder trains (the record format has room for more).
pub const FIRST_ID: u32 = 1;

/// Training reads about this many sample bytes (more adds little and costs time: 1.3 MB train
/// in about 70 ms).
pub const TRAIN_SAMPLE_BYTES: usize = 2 << 20;

/// A dictionary, digested for compressing and for decompressing.
pub struct BlockDictionary {
    id: u32,
    bytes: Vec<u8>,
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl std::fmt::Debug for BlockDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDictionary")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

thread_local! {
    /// Each thread's compression context: creating one per block would cost more than the
    /// compression. It holds no reference to a dictionary between calls.
    static COMPRESSOR: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    /// Each thread's decompression context.
    static DECOMPRESSOR: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

impl BlockDictionary {
    /// A dictionary from its stored bytes (as [`train`] made them) and its id.
    pub fn new(id: u32, bytes: Vec<u8>) -> Result<BlockDictionary> {
        if bytes.is_empty() || bytes.len() > 4 * MAX_DICTIONARY_BYTES {
            return Err(corrupt!(
                "compression dictionary {id} has an implausible size ({} bytes)",
                bytes.len()
            ));
        }
        let decompress = DDict::try_create(&bytes)
            .ok_or_else(|| corrupt!("compression dictionary {id} is unreadable"))?;
        let compress = CDict::try_create(&bytes, LEVEL)
            .ok_or_else(|| corrupt!("compression dictionary {id} is unreadable"))?;
        Ok(BlockDictionary {
            id,
            bytes,
            compress,
            decompress,
        })
    }

    /// The id stored records name this dictionary by.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The stored form.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `body` compressed with this dictionary to `out`, and returns how many bytes that
    /// took; `None` (and `out` as it was) when zstd fails, which callers answer by storing the
    /// body another way. The frame holds no size, checksum or dictionary id: the record around
    /// it does.
    pub fn compress_into(&self, body: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        COMPRESSOR.with(|cell| {
            // Taken out for the call and put back after, so a failed call drops a context that
            // may be in a bad state.
            let mut cctx = match cell.borrow_mut().take() {
                Some(c) => c,
                None => new_compressor()?,
            };
            let at = out.len();
            out.resize(at + zstd_safe::compress_bound(body.len()), 0);
            let written = cctx
                .ref_cdict(&self.compress)
                .and_then(|_| cctx.compress2(&mut out[at..], body));
            // The context must not keep pointing at a dictionary that may be dropped before its
            // next use.
            let released = cctx.disable_dictionary();
            match (written, released) {
                (Ok(n), Ok(_)) => {
                    out.truncate(at + n);
                    *cell.borrow_mut() = Some(cctx);
                    Some(n)
                }
                _ => {
                    out.truncate(at);
                    None
                }
            }
        })
    }

    /// Appends the `len` bytes that `frame` (made by [`Self::compress_into`]) decompresses to,
    /// to `out`. Damaged frames are an error; on an error `out` is as it was.
    pub fn decompress_into(&self, frame: &[u8], len: usize, out: &mut Vec<u8>) -> Result<()> {
        DECOMPRESSOR.with(|cell| {
            let mut dctx = match cell.borrow_mut().take() {
                Some(d) => d,
                None => DCtx::try_create()
                    .ok_or_else(|| corrupt!("zstd could not allocate a context"))?,
            };
            let at = out.len();
            out.resize(at + len, 0);
            match dctx.decompress_using_ddict(&mut out[at..], frame, &self.decompress) {
                Ok(n) if n == len => {
                    *cell.borrow_mut() = Some(dctx);
                    Ok(())
                }
                _ => {
                    out.truncate(at);
                    Err(corrupt!("a compressed event block does not decompress"))
                }
            }
        })
    }
}

/// A compression context set to write bare frames: no size, checksum or dictionary id.
fn new_compressor() -> Option<CCtx<'static>> {
    let mut c = CCtx::try_create()?;
    for p in [
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        c.set_parameter(p).ok()?;
    }
    Some(c)
}

/// Trains a dictionary on sample block bodies. `None` when the samples are too few or too
/// uniform for zstd's trainer to find anything (the blocks then stay on LZ4 alone).
pub fn train(samples: &[&[u8]]) -> Option<Vec<u8>> {
    let total: usize = samples.iter().map(|s| s.len()).sum();
    if total < TRAIN_MIN_BYTES || samples.len() < 8 {
        return None;
    }
    zstd::dict::from_samples(samples, MAX_DICTIONARY_BYTES).ok()
}

/// The dictionaries a database folder holds: none until enough events are stored to train one,
/// then one (id 1) for good. Reads take no lock.
#[derive(Debug, Default)]
pub struct Dictionaries {
    current: OnceLock<BlockDictionary>,
}

impl Dictionaries {
    /// The dictionary new blocks are compressed with, once there is one.
    pub fn current(&self) -> Option<&BlockDictionary> {
        self.current.get()
    }

    /// The dictionary a stored record names.
    pub fn get(&self, id: u32) -> Result<&BlockDictionary> {
        match self.current.get() {
            Some(d) if d.id == id => Ok(d),
            _ => Err(corrupt!(
                "an event block needs compression dictionary {id}, which is not stored"
            )),
        }
    }

    /// Makes `d` the current dictionary; refused (an error) when there is one already.
    pub fn install(&self, d: BlockDictionary) -> Result<()> {
        let id = d.id;
        self.current
            .set(d)
            .map_err(|_| corrupt!("a second compression dictionary ({id}) was found"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies that share a vocabulary, as a shop's blocks do.
    pub(crate) fn samples(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut b = Vec::new();
                for j in 0..40 {
                    let p = (i * 7 + j * 13) % 97;
                    b.extend_from_slice(
                        format!("product_id=SKU-{p:05} category=shoes price={}.99;", p % 50)
                            .as_bytes(),
                    );
                }
                b
            })
            .collect()
    }

    #[test]
    fn a_trained_dictionary_round_trips_and_beats_no_dictionary() {
        let bodies = samples(400);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        let d = BlockDictionary::new(1, train(&refs).expect("enough samples")).unwrap();
        let body = &bodies[3];
        let mut out = vec![9];
        let n = d.compress_into(body, &mut out).expect("compresses");
        assert_eq!(out.len(), 1 + n);
        assert!(n < lz4_flex::block::compress(body).len());
        let mut back = vec![7];
        d.decompress_into(&out[1..], body.len(), &mut back).unwrap();
        assert_eq!(&back[1..], &body[..]);
        // A reopened dictionary (the same bytes) reads what the first wrote.
        let again = BlockDictionary::new(1, d.bytes().to_vec()).unwrap();
        let mut back = Vec::new();
        again
            .decompress_into(&out[1..], body.len(), &mut back)
            .unwrap();
        assert_eq!(back, *body);
    }

    #[test]
    fn damaged_frames_and_wrong_lengths_are_errors_that_leave_the_output_alone() {
        let bodies = samples(400);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        let d = BlockDictionary::new(1, train(&refs).unwrap()).unwrap();
        let mut frame = Vec::new();
        d.compress_into(&bodies[0], &mut frame).unwrap();
        let mut out = vec![1, 2, 3];
        assert!(d
            .decompress_into(&frame, bodies[0].len() + 1, &mut out)
            .is_err());
        assert!(d
            .decompress_into(&frame[..frame.len() - 3], bodies[0].len(), &mut out)
            .is_err());
        assert!(d
            .decompress_into(&[0xff; 12], bodies[0].len(), &mut out)
            .is_err());
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn too_few_samples_train_nothing() {
        let bodies = samples(3);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        assert!(train(&refs).is_none());
        assert!(train(&[]).is_none());
    }

    #[test]
    fn one_dictionary_per_folder() {
        let bodies = samples(400);
        let refs: Vec<&[u8]> = bodies.iter().map(|b| &b[..]).collect();
        let bytes = train(&refs).unwrap();
        let ds = Dictionaries::default();
        assert!(ds.get(1).is_err());
        ds.install(BlockDictionary::new(1, bytes.clone()).unwrap())
            .unwrap();
        assert_eq!(ds.current().unwrap().id(), 1);
        assert!(ds.get(1).is_ok());
        assert!(ds.get(2).is_err());
        assert!(ds.install(BlockDictionary::new(2, bytes).unwrap()).is_err());
        assert!(BlockDictionary::new(1, Vec::new()).is_err());
    }
}

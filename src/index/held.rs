//! A snapshot record's body kept as the snapshot stored it, for a reader to decode later.
//!
//! An open verifies every record's checksum but reads the large families (rollup lists,
//! property values' days) only when a rule first needs them. Until then each is held here: a
//! slice of the snapshot file as mapped into memory (or the buffer sled returned), with no
//! copy, so an open touches no fresh memory and spends no time on what no rule reads. A record
//! the snapshot compressed is held compressed and decompressed by each use of its body.
//!
//! This module owns only the holding and the way back to the plain body; what a body means
//! and how it is checked belong to the families' readers (`snapshot.rs`, `rollup.rs`).

use std::cell::RefCell;

use bytes::Bytes;

use crate::storage::codec;

/// The largest uncompressed family a reader accepts (a guard against damaged lengths).
pub(super) const MAX_FAMILY_BYTES: usize = 1 << 30;

/// A family record as stored: a tag, then its body plain or LZ4-compressed ([`codec::pack`]).
#[derive(Clone)]
pub struct HeldBody {
    record: Bytes,
}

thread_local! {
    /// The buffer a compressed body is decompressed into: one per thread, reused, so checking
    /// every compressed record of a snapshot takes no fresh memory per record.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl HeldBody {
    /// Holds `record`, a family record whose checksum the open verified, unread.
    pub fn new(record: Bytes) -> Self {
        HeldBody { record }
    }

    /// Calls `f` with the plain body; a compressed record is decompressed into this thread's
    /// scratch buffer first (taken out while in use, so a nested call finds none and makes
    /// its own).
    pub fn with_body<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        if let Some((&codec::PACKED_PLAIN, body)) = self.record.split_first() {
            return f(body);
        }
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.clear();
        codec::unpack_into(&self.record, "index family", MAX_FAMILY_BYTES, &mut scratch)
            .expect("a held record decompresses: it passed its checksum and this build wrote it");
        let result = f(&scratch);
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        result
    }

    /// The record as stored: what a snapshot writes again for a family nobody changed.
    pub fn record(&self) -> &Bytes {
        &self.record
    }

    /// The record's bytes as stored (what holding it costs, mapped or not).
    pub fn stored_len(&self) -> usize {
        self.record.len()
    }
}

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBody")
            .field("stored", &self.record.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(body: &[u8]) -> Bytes {
        let mut tagged = vec![0];
        tagged.extend_from_slice(body);
        Bytes::from(codec::pack(tagged))
    }

    #[test]
    fn plain_and_compressed_bodies_read_the_same() {
        let repetitive: Vec<u8> = (0..4000u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let random: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for body in [&repetitive[..], &random[..], &[][..]] {
            let record = packed(body);
            let held = HeldBody::new(record.clone());
            assert_eq!(held.with_body(|b| b.to_vec()), body);
            assert_eq!(held.stored_len(), record.len());
        }
        // The repetitive body is held compressed, and reads back through the scratch buffer
        // even from inside another held body's reader.
        let outer = HeldBody::new(packed(&repetitive));
        let inner = HeldBody::new(packed(&repetitive));
        assert!(outer.stored_len() < repetitive.len() / 2);
        let both = outer.with_body(|a| inner.with_body(|b| a == b && a == &repetitive[..]));
        assert!(both);
    }
}

//! `bucket(NAME)`: a customer's place, 0 to 99, in the split called NAME. The same on every
//! machine, in every run and in every system that follows the definition, so an A/B split made
//! here can be reproduced in a warehouse: the first 8 bytes of SHA-256 of the UTF-8 text
//! `NAME:ID` (ID the customer's external id), read as a big-endian unsigned integer, modulo 100.
//!
//! Splits of different names are independent (the hash of `a:ID` says nothing of `b:ID`), so two
//! experiments running at once do not correlate. This module is a pure function: it reads no
//! store and knows no customer beyond the id it is given.

use sha2::{Digest, Sha256};

/// The number of buckets: a bucket is a percentage point of everyone.
pub const BUCKETS: u8 = 100;

/// The bucket, `0..100`, of the customer with external id `id` in the split `name`.
pub fn bucket(name: &str, id: &str) -> u8 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b":");
    hasher.update(id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(BUCKETS)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Triples computed independently of this code, with Python's standard library:
    ///
    /// ```text
    /// import hashlib
    /// def bucket(name, id):
    ///     d = hashlib.sha256(f"{name}:{id}".encode("utf-8")).digest()
    ///     return int.from_bytes(d[:8], "big") % 100
    /// ```
    #[test]
    fn agrees_with_an_independent_computation() {
        for &(name, id, expected) in PINNED {
            assert_eq!(bucket(name, id), expected, "bucket({name}) of {id:?}");
        }
    }

    const PINNED: &[(&str, &str, u8)] = &[
        ("checkout_2026", "u1", 26),
        ("checkout_2026", "u2", 60),
        ("checkout_2026", "customer-42", 71),
        ("holdout", "u1", 53),
        ("holdout", "anon-7f3a", 59),
        ("holdout", "", 15),
        ("x", "12345", 54),
        ("x", "Åsa@example.fi", 68),
        ("banner_test", "u000001", 96),
        ("banner_test", "u000002", 32),
        // Names are case-sensitive.
        ("Checkout_2026", "u1", 51),
        // The text hashed is `NAME:ID`, so these two are one text and one bucket.
        ("a:b", "c", 26),
        ("a", "b:c", 26),
    ];
}

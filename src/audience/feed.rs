//! The change feed: every entry into and exit from a saved audience, numbered in order.
//!
//! Each change is written to storage (in its own durable batch, right after the write that
//! caused it) before subscribers hear of it, so a position a subscriber has seen survives a
//! crash. Consecutive changes made together are stored in records of up to [`CHUNK`]. The
//! stored log is bounded: checkpoints drop the oldest records wholly beyond the configured
//! capacity. A subscriber that falls too far behind is cut off (it sees [`Subscription::lagged`])
//! and resumes from the stored log with [`crate::Db::changes_since`].
//!
//! This module owns the record format and the subscriber list; it does not decide membership.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{corrupt, Result};
use crate::model::time::{format_rfc3339, Timestamp};

use super::timers::take;

/// At most this many consecutive changes are stored in one record: a large change (a new
/// audience's first members) costs a few large writes instead of one per change, and reading
/// from a position decodes at most this many changes it does not need.
pub const CHUNK: usize = 1024;

/// Changes a subscriber may have pending before it is cut off.
pub const SUBSCRIBER_BUFFER: usize = 65_536;

/// One entry into or exit from a saved audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Position in the feed: increasing by one per change.
    pub seq: u64,
    pub audience: String,
    /// The customer's external id; empty once the customer was erased (deleted, then the
    /// folder compacted: `Db::compact`), which no customer id can be.
    pub customer: String,
    /// `true` for an entry, `false` for an exit.
    pub entered: bool,
    /// The audiences' time when the change was made (for changes by time alone, the first
    /// evaluation at or after the instant the rule's edge was crossed).
    pub at: Timestamp,
}

impl Change {
    /// `entered` or `left`.
    pub fn verb(&self) -> &'static str {
        if self.entered {
            "entered"
        } else {
            "left"
        }
    }

    /// Whether the customer was erased: the change is kept, its customer's id is not.
    pub fn is_erased(&self) -> bool {
        self.customer.is_empty()
    }

    /// The change as one JSON object (`"customer": null` once the customer was erased).
    pub fn to_json(&self) -> serde_json::Value {
        let customer = if self.is_erased() {
            serde_json::Value::Null
        } else {
            self.customer.as_str().into()
        };
        serde_json::json!({
            "seq": self.seq,
            "audience": self.audience,
            "customer": customer,
            "change": self.verb(),
            "at": format_rfc3339(self.at),
        })
    }

    /// One change's stored encoding (a record holds several: [`encode_chunk`]).
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.audience.len() + self.customer.len());
        encode_into(
            &mut out,
            self.at,
            self.entered,
            &self.audience,
            &self.customer,
        );
        out
    }

    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Change> {
        let mut r = bytes;
        let at = i64::from_le_bytes(take(&mut r)?);
        let [entered] = take::<1>(&mut r)?;
        let len = usize::from(u16::from_le_bytes(take(&mut r)?));
        if r.len() < len {
            return Err(corrupt!("change feed record cut short"));
        }
        let (name, id) = r.split_at(len);
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| corrupt!("change feed record is not UTF-8"))
        };
        Ok(Change {
            seq,
            audience: text(name)?,
            customer: text(id)?,
            entered: entered != 0,
            at,
        })
    }
}

/// One change's encoding (see [`Change::encode`]), appended to `out`.
fn encode_into(out: &mut Vec<u8>, at: Timestamp, entered: bool, audience: &str, customer: &str) {
    out.extend_from_slice(&at.to_le_bytes());
    out.push(u8::from(entered));
    out.extend_from_slice(&(audience.len() as u16).to_le_bytes());
    out.extend_from_slice(audience.as_bytes());
    out.extend_from_slice(customer.as_bytes());
}

/// The length of one change's encoding.
fn encoded_len(audience: &str, customer: &str) -> usize {
    11 + audience.len() + customer.len()
}

/// Encodes consecutive changes as one stored record: their count, then each change's length
/// and encoding. The first change's position is the record's key; the others follow it.
pub(crate) fn encode_chunk(changes: &[Change]) -> Vec<u8> {
    encode_chunk_parts(
        changes
            .iter()
            .map(|c| (c.at, c.entered, c.audience.as_str(), c.customer.as_str())),
    )
}

/// [`encode_chunk`] of changes given by their parts (time, entered, audience, customer), so
/// that a large change (a new audience's members) is stored without making each a [`Change`].
pub(crate) fn encode_chunk_parts<'a>(
    changes: impl ExactSizeIterator<Item = (Timestamp, bool, &'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + changes.len() * 40);
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (at, entered, audience, customer) in changes {
        out.extend_from_slice(&(encoded_len(audience, customer) as u32).to_le_bytes());
        encode_into(&mut out, at, entered, audience, customer);
    }
    out
}

/// How many changes a stored record holds.
pub(crate) fn chunk_len(bytes: &[u8]) -> Result<u64> {
    let mut r = bytes;
    Ok(u64::from(u32::from_le_bytes(take(&mut r)?)))
}

/// Calls `f` with each change of a record stored under position `first`, in order, until it
/// returns `false`; returns whether it always returned `true`.
pub(crate) fn decode_chunk(
    first: u64,
    bytes: &[u8],
    mut f: impl FnMut(Change) -> Result<bool>,
) -> Result<bool> {
    let mut r = bytes;
    let count = u32::from_le_bytes(take(&mut r)?);
    // A damaged key can put the record's position anywhere, up to where its changes would
    // number past the last position.
    let end = first
        .checked_add(u64::from(count))
        .ok_or_else(|| corrupt!("change feed record at position {first} runs past the end"))?;
    for seq in first..end {
        let len = usize::try_from(u32::from_le_bytes(take(&mut r)?))
            .map_err(|_| corrupt!("change feed record too long"))?;
        if r.len() < len {
            return Err(corrupt!("change feed record cut short"));
        }
        let (one, rest) = r.split_at(len);
        r = rest;
        if !f(Change::decode(seq, one)?)? {
            return Ok(false);
        }
    }
    if !r.is_empty() {
        return Err(corrupt!("change feed record has bytes after its changes"));
    }
    Ok(true)
}

/// A stored record (of changes from position `first` on) with the id of every customer that
/// `live` refuses erased, or `None` when it names no such customer; and how many changes that
/// erased.
pub(crate) fn erase_in_chunk(
    first: u64,
    bytes: &[u8],
    live: impl Fn(&str) -> bool,
) -> Result<Option<(Vec<u8>, u64)>> {
    let mut changes = Vec::new();
    let mut erased = 0;
    decode_chunk(first, bytes, |mut c| {
        if !c.is_erased() && !live(&c.customer) {
            c.customer.clear();
            erased += 1;
        }
        changes.push(c);
        Ok(true)
    })?;
    Ok((erased > 0).then(|| (encode_chunk(&changes), erased)))
}

/// A live stream of changes, from the moment of subscribing.
pub struct Subscription {
    rx: Receiver<Change>,
    lagged: Arc<AtomicBool>,
}

impl Subscription {
    /// The next change, waiting at most `timeout`; `None` on timeout, when the database is
    /// closed, or when this subscription was cut off for lagging (see [`Subscription::lagged`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Change> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next change if one is waiting.
    pub fn try_recv(&self) -> Option<Change> {
        self.rx.try_recv().ok()
    }

    /// Whether the subscriber fell more than [`SUBSCRIBER_BUFFER`] changes behind and was cut
    /// off: resume from the last `seq` seen with [`crate::Db::changes_since`].
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::SeqCst)
    }
}

struct Subscriber {
    tx: SyncSender<Change>,
    lagged: Arc<AtomicBool>,
}

/// The live subscribers.
#[derive(Default)]
pub(crate) struct Subscribers {
    list: Mutex<Vec<Subscriber>>,
}

impl Subscribers {
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = std::sync::mpsc::sync_channel(SUBSCRIBER_BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        self.list.lock().push(Subscriber {
            tx,
            lagged: lagged.clone(),
        });
        Subscription { rx, lagged }
    }

    /// Hands the changes to every subscriber; drops those that are gone or full.
    pub fn deliver(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut list = self.list.lock();
        list.retain(|s| {
            for c in changes {
                match s.tx.try_send(c.clone()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        s.lagged.store(true, Ordering::SeqCst);
                        return false;
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            true
        });
    }

    pub fn count(&self) -> usize {
        self.list.lock().len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let c = Change {
            seq: 7,
            audience: "vip".into(),
            customer: "c-ü-1".into(),
            entered: true,
            at: 1_700_000_000_123,
        };
        assert_eq!(Change::decode(7, &c.encode()).unwrap(), c);
        assert!(Change::decode(7, &c.encode()[..5]).is_err());
    }

    pub(crate) fn change(seq: u64, customer: &str) -> Change {
        Change {
            seq,
            audience: "gold".into(),
            customer: customer.into(),
            entered: seq.is_multiple_of(2),
            at: 1_700_000_000_000 + seq as i64,
        }
    }

    #[test]
    fn chunks_round_trip_and_stop_when_asked() {
        let changes: Vec<Change> = (40..45).map(|s| change(s, &format!("c{s}"))).collect();
        let bytes = encode_chunk(&changes);
        assert_eq!(chunk_len(&bytes).unwrap(), 5);
        let mut back = Vec::new();
        assert!(decode_chunk(40, &bytes, |c| {
            back.push(c);
            Ok(true)
        })
        .unwrap());
        assert_eq!(back, changes);
        let mut two = Vec::new();
        assert!(!decode_chunk(40, &bytes, |c| {
            two.push(c.seq);
            Ok(two.len() < 2)
        })
        .unwrap());
        assert_eq!(two, [40, 41]);
        let all = |b: &[u8]| decode_chunk(40, b, |_| Ok(true));
        assert!(all(&bytes[..bytes.len() - 1]).is_err());
        assert!(all(&[&bytes[..], &[0]].concat()).is_err());
        assert!(all(&bytes[..2]).is_err());
    }

    #[test]
    fn erasing_keeps_every_change_but_the_ids_of_customers_gone() {
        let changes: Vec<Change> = (1..=4).map(|s| change(s, &format!("c{}", s % 2))).collect();
        let bytes = encode_chunk(&changes);
        assert_eq!(erase_in_chunk(1, &bytes, |_| true).unwrap(), None);
        let (erased, n) = erase_in_chunk(1, &bytes, |c| c != "c1").unwrap().unwrap();
        assert_eq!(n, 2);
        assert!(!erased.windows(2).any(|w| w == b"c1"));
        let mut back = Vec::new();
        decode_chunk(1, &erased, |c| {
            back.push(c);
            Ok(true)
        })
        .unwrap();
        assert_eq!(back.len(), 4);
        for (b, c) in back.iter().zip(&changes) {
            assert_eq!(
                (b.seq, &b.audience, b.entered, b.at),
                (c.seq, &c.audience, c.entered, c.at)
            );
            assert_eq!(b.is_erased(), c.customer == "c1");
        }
        assert_eq!(back[0].to_json()["customer"], serde_json::Value::Null);
        assert_eq!(back[1].to_json()["customer"], "c0");
        // Erased once, nothing more to erase.
        assert_eq!(erase_in_chunk(1, &erased, |c| c != "c1").unwrap(), None);
    }

    #[test]
    fn a_record_whose_position_would_overflow_is_an_error() {
        // Seen while writing the fuzz target `stored`: a damaged feed key near the last
        // position made the positions of the record's changes overflow, a panic in the
        // release binary (built with overflow checks).
        let bytes = encode_chunk(&[change(0, "c1"), change(1, "c2")]);
        let err = decode_chunk(u64::MAX, &bytes, |_| Ok(true)).unwrap_err();
        assert!(err.to_string().contains("runs past the end"), "{err}");
        assert!(decode_chunk(u64::MAX - 2, &bytes, |_| Ok(true)).unwrap());
    }

    #[test]
    fn a_full_subscriber_is_cut_off_and_told() {
        let subs = Subscribers::default();
        let s = subs.subscribe();
        let c = Change {
            seq: 1,
            audience: "a".into(),
            customer: "x".into(),
            entered: false,
            at: 0,
        };
        let many = vec![c.clone(); SUBSCRIBER_BUFFER + 1];
        subs.deliver(&many);
        assert!(s.lagged());
        assert_eq!(subs.count(), 0);
        assert_eq!(s.try_recv(), Some(c));
    }
}

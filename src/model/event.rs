//! A stored event as every layer sees it: when, which event (an interned name id) and its
//! properties (interned name ids with values). Storage encodes it into blocks, the indexes learn
//! it, the query engine checks it. Knows nothing of how any of them keeps it: its encoding is
//! storage's (`storage::codec`).

use super::{Timestamp, Value};

/// A set of named fields (a profile's traits or an event's properties), by interned name id.
pub type Fields = Vec<(u32, Value)>;

/// One stored event: when, which (interned event name) and its properties.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub ts: Timestamp,
    pub event: u32,
    pub props: Fields,
}

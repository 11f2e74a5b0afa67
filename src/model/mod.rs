//! The data model shared by every layer: typed values, time, the stored event, and fast hash
//! maps. It knows nothing about storage, indexes or rules, and imports no other layer.

pub mod bucket;
mod event;
mod hash;
pub mod time;
pub mod value;

pub use event::{Fields, StoredEvent};
pub use hash::{FastMap, FastSet};
pub use time::Timestamp;
pub use value::Value;

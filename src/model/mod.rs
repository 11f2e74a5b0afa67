//! The data model shared by every layer: typed values and time. It knows nothing about storage,
//! indexes or rules.

pub mod time;
pub mod value;

pub use time::Timestamp;
pub use value::Value;

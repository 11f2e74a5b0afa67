//! Input: Segment-spec messages ([`message`]). It turns bytes into validated [`Message`]s and
//! knows neither the database nor the storage layout; the file importer that drives a `Db` with
//! them is `crate::import`, above the library handle.

pub mod message;

pub use message::{Body, Message};

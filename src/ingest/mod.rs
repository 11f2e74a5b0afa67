//! Input: Segment-spec messages ([`message`]) and the file importers built on them. It turns
//! bytes into validated [`Message`]s and hands batches to the database; it does not know the
//! storage layout.

pub mod import;
pub mod message;

pub use message::{Body, Message};

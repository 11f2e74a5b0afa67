//! audiencedb: an embedded customer data platform.
//!
//! Customer profiles and behavioural events live in a sled database folder; roaring bitmaps index
//! trait values and events per day; rules such as `viewed product X in last 30 days and tier = Gold`
//! describe audiences.
//!
//! The layers, in the order data flows through them:
//! 1. [`model`]: typed values and time, shared by every layer.
//! 2. [`ingest`]: Segment-spec NDJSON lines become validated messages.
//! 3. [`storage`]: messages become records in sled: profiles, blocks of events, id maps.
//! 4. [`index`]: roaring bitmaps over customers, kept in step with storage.
//! 5. [`db`]: the library API tying them together: [`Db`].
//! 6. [`rules`]: rule text → typed AST → canonical text; parse errors with line, column and caret.
//! 7. [`query`]: a rule → plan → bitmaps and exact checks → the customers it describes.
//! 8. [`audience`]: saved audiences, kept true as data arrives and time passes; the change feed.
//! 9. [`import`]: NDJSON and CSV files read in batches and stored through [`Db`], bad lines
//!    reported.
//! 10. [`repl`]: the analysts' interface over [`Db`]: line editing, completion, meta commands.
//!
//! Beside the layers:
//! - [`server`]: `audiencedb serve`, the Redis-protocol socket server in front of a [`Db`]: wire
//!   codec, command table, clients, limits and shutdown; it calls the library API only.
//! - [`erase`]: compaction, which removes every byte of deleted customers from the folder's
//!   files, and the scan that proves it.
//! - [`gen`]: the deterministic synthetic shop (`audiencedb gen`), NDJSON messages for demos, tests
//!   and benchmarks; it knows the message format, not the storage.

pub mod audience;
pub mod db;
pub mod erase;
pub mod error;
/// Entry points for the fuzz targets in `fuzz/` only (see the module); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod gen;
pub mod import;
pub mod index;
pub mod ingest;
pub mod model;
pub mod query;
pub mod repl;
pub mod rules;
pub mod server;
pub mod storage;

pub use audience::{AudienceDiff, AudienceInfo, Change, Subscription};
pub use db::{Config, Customer, Db, IngestReport, Schema};
pub use error::{Error, Result};
pub use ingest::Message;
pub use model::time::Clock;
pub use storage::{SchemaLimit, SchemaLimits};

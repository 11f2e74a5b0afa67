//! audiencedb: an embedded customer data platform.
//!
//! Customer profiles and behavioural events live in a sled database folder; roaring bitmaps index
//! trait values and events per day; rules such as `viewed product X in last 30 days and tier = Gold`
//! describe audiences.
//!
//! ```no_run
//! use audiencedb::{Db, Value};
//!
//! let db = Db::open("shop.db")?;
//! db.identify("ada", vec![("tier".into(), Some(Value::Str("Gold".into())))])?;
//! db.track("ada", "viewed", vec![("product".into(), Value::Str("X".into()))], None)?;
//! let now = audiencedb::model::time::now();
//! let gold = db.query("viewed product X in last 30 days and tier = Gold", now)?;
//! println!("{:?}", db.member_ids(&gold)?);
//! # Ok::<(), audiencedb::Error>(())
//! ```
//!
//! What a library user needs is re-exported here: [`Db`] and [`Config`], the messages
//! ([`Message`]), values and time ([`Value`], [`Clock`]), the answers ([`Audience`],
//! [`PreparedRule`], [`Explain`], [`Why`], [`Warning`]), saved audiences ([`AudienceInfo`],
//! [`Change`], [`Subscription`]) and [`Error`].
//!
//! The layers, each using only those before it (`scripts/check-layers.sh` checks the rules
//! `docs/ARCHITECTURE.md` states):
//! 1. [`model`]: typed values, time, the stored event, fast hash maps; shared by every layer.
//! 2. [`ingest`]: Segment-spec NDJSON lines become validated messages.
//! 3. `storage` (private to the crate): records in sled: profiles, blocks of events, id maps,
//!    the catalog of names; the key layout is written out only there.
//! 4. `index` (private to the crate): roaring bitmaps and per-day rollups over customers, kept
//!    in step with storage by the database layer.
//! 5. [`rules`]: rule text → typed AST → canonical text; parse errors with line, column and caret.
//! 6. [`query`]: a rule → plan → bitmaps and exact checks → the customers it describes; functions
//!    over the read state (catalog, indexes, ids, saved rules) and the store, handed in
//!    explicitly.
//! 7. [`audience`]: saved audiences, kept true as data arrives and time passes; the change feed.
//! 8. [`db`]: the handle [`Db`], thin: each method takes the lock it needs and hands the work to
//!    the layer that owns it. Its writer (`db/write.rs`) owns group commit and the write path;
//!    what needs the writer lock takes the lock's `Writer` (or the saved audiences' `Upkeep`
//!    it keeps), so holding the lock is proven by the types. `db/recovery.rs` opens, recovers,
//!    verifies and checkpoints.
//! 9. [`import`]: NDJSON and CSV files read in batches and stored through [`Db`], bad lines
//!    reported.
//! 10. [`repl`]: the analysts' interface over [`Db`]: line editing, completion, meta commands.
//!
//! Beside the layers:
//! - [`predict`]: the purchase models (BG/NBD, Gamma–Gamma) fitted by maximum likelihood to
//!   per-customer histories, which `query::histories` reads from the store; pure numbers.
//! - [`server`]: `audiencedb serve`, the Redis-protocol socket server in front of a [`Db`]: wire
//!   codec, command table, clients, limits and shutdown; it calls the library API only.
//! - [`erase`]: compaction, which removes every byte of deleted customers from the folder's
//!   files, and the scan that proves it.
//! - [`gen`]: the deterministic synthetic shop (`audiencedb gen`), NDJSON messages for demos, tests
//!   and benchmarks; it knows the message format, not the storage.
//! - `fuzzing` and `testing` (hidden): what the fuzz targets and the tests need of the private
//!   layers; not an API.

pub mod audience;
pub mod db;
pub mod erase;
pub mod error;
/// Entry points for the fuzz targets in `fuzz/` only (see the module); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod gen;
pub mod import;
pub(crate) mod index;
pub mod ingest;
pub mod model;
pub mod predict;
pub mod query;
pub mod repl;
pub mod rules;
pub mod server;
pub(crate) mod storage;
pub mod tables;
/// What the tests and benchmarks in `tests/` and `benches/` need of the internals (see the
/// module); not an API.
#[doc(hidden)]
pub mod testing;

pub use audience::{
    AudienceDiff, AudienceInfo, AudienceNames, Change, ComputedTraitInfo, Subscription,
};
pub use compact_str::CompactString;
pub use db::{
    ComputedTraitSchema, Config, Customer, Db, Event, EventSchema, IngestReport, LimitCheck,
    Outcome, PropertySchema, Schema, Totals, TraitSchema, VerifyReport,
};
pub use erase::{CompactReport, Trace, TraceReport};
pub use error::{Error, Result};
pub use ingest::Message;
pub use model::time::Clock;
pub use model::{StoredEvent, Timestamp, Value};
pub use query::{Audience, Explain, PreparedRule, Warning, Why};
pub use storage::{RecordStats, SchemaLimit, SchemaLimits};

//! audiencedb: an embedded customer data platform.
//!
//! Customer profiles and behavioural events live in a sled database folder; roaring bitmaps index
//! trait values and events per day; rules such as `viewed product X in last 30 days and tier = Gold`
//! describe audiences.
//!
//! The layers, in the order data flows through them:
//! 1. [`model`]: ids, names, typed values and time, shared by every layer.
//! 2. [`rules`]: rule text → typed AST → canonical text; parse errors with line, column and caret.

pub mod error;
pub mod model;
pub mod rules;

pub use error::{Error, Result};

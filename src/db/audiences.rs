//! Saved audiences' upkeep under the writer lock: what a write, a delete and open ask of them.

use super::write::Writer;
use super::Db;
use crate::audience::Touched;
use crate::error::Result;

impl Writer {
    /// Brings every saved audience to the clock's time and, with `touched`, up to date with a
    /// write that changed those customers.
    pub(super) fn maintain_audiences(
        &mut self,
        db: &Db,
        touched: Option<&Touched>,
    ) -> Result<usize> {
        db.maintain_audiences_locked(touched)
    }

    /// Removes a deleted customer from every saved audience, reported as exits.
    pub(super) fn forget_in_audiences(&mut self, db: &Db, cust: u32, external: &str) -> Result<()> {
        db.forget_in_audiences(cust, external)
    }
}

//! What the bitmaps say about one plan node: the customers who surely match (`sure`) and those who
//! may (`maybe`, a superset); equal sets mean the bitmaps decided the node alone. `exec` computes
//! them, `explain` reports them. This module holds the type only; it reads nothing.

use std::time::Duration;

use roaring::RoaringBitmap;

/// The bounds of one plan node, and of its children, as computed.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub sure: RoaringBitmap,
    pub maybe: RoaringBitmap,
    pub children: Vec<Bounds>,
    /// Time spent computing this node's bounds, children included.
    pub elapsed: Duration,
}

impl Bounds {
    pub(super) fn exact(set: RoaringBitmap) -> Bounds {
        Bounds {
            maybe: set.clone(),
            sure: set,
            children: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    pub(super) fn with_child(mut self, child: Bounds) -> Bounds {
        self.children.push(child);
        self
    }

    pub(super) fn range(sure: RoaringBitmap, maybe: RoaringBitmap) -> Bounds {
        Bounds {
            sure,
            maybe,
            children: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The bounds of a condition decided per customer: `decided` the customers decided to hold
    /// it (with `none_holds`, those decided not to), `gap` the undecided, `all` everyone.
    pub(super) fn from_decided(
        all: &RoaringBitmap,
        decided: RoaringBitmap,
        gap: &RoaringBitmap,
        none_holds: bool,
    ) -> Bounds {
        if none_holds {
            let sure = all - &decided - gap;
            let maybe = &sure | gap;
            Bounds::range(sure, maybe)
        } else {
            let maybe = &decided | gap;
            Bounds::range(decided, maybe)
        }
    }
}

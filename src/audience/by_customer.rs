//! The inverse of the members: for each customer, the ids of the saved audiences it is in,
//! sorted, so that "which audiences is this customer in?" reads one short list instead of
//! asking every audience's bitmap. Kept with the members, under the same lock, by whoever
//! changes the members (`mod.rs`).
//!
//! A list keeps the room it once had: a customer leaving an audience frees a slot at the end of
//! its list (marked [`FREE`]) that its next entry takes, so customers coming and going as the
//! clock moves cost no allocation each time.
//!
//! Memory: a slice header per customer id up to the largest member, plus four bytes per
//! membership (at most what the customer once held). This module is plain data; it knows
//! nothing of rules or storage.

use roaring::RoaringBitmap;

#[derive(Debug, Default)]
pub(super) struct ByCustomer {
    /// By internal customer id: the audiences it is in, sorted, without repeats, then as many
    /// [`FREE`] slots as it left since the list last grew.
    lists: Vec<Box<[u32]>>,
}

/// A free slot at the end of a list (no audience has this id in the lists).
const FREE: u32 = u32::MAX;

/// The audiences of a list, without its free slots.
fn used(list: &[u32]) -> &[u32] {
    match list.last() {
        Some(&FREE) => &list[..list.partition_point(|&x| x != FREE)],
        _ => list,
    }
}

impl ByCustomer {
    /// The audiences `cust` is in, sorted.
    pub fn of(&self, cust: u32) -> &[u32] {
        self.lists.get(cust as usize).map_or(&[], |l| used(l))
    }

    /// Records that `cust` is in audience `id`.
    pub fn insert(&mut self, cust: u32, id: u32) {
        debug_assert_ne!(id, FREE, "no audience has the free slot's id");
        let i = cust as usize;
        if i >= self.lists.len() {
            self.lists.resize_with(i + 1, Default::default);
        }
        let list = &mut self.lists[i];
        let n = used(list).len();
        if let Err(at) = list[..n].binary_search(&id) {
            if n < list.len() {
                // A free slot: the later ones move up into it.
                list.copy_within(at..n, at + 1);
                list[at] = id;
            } else {
                let mut v = Vec::with_capacity(n + 1);
                v.extend_from_slice(&list[..at]);
                v.push(id);
                v.extend_from_slice(&list[at..]);
                *list = v.into_boxed_slice();
            }
        }
    }

    /// Records that `cust` is no longer in audience `id`: its slot becomes free.
    pub fn remove(&mut self, cust: u32, id: u32) {
        let Some(list) = self.lists.get_mut(cust as usize) else {
            return;
        };
        let n = used(list).len();
        if let Ok(at) = list[..n].binary_search(&id) {
            list.copy_within(at + 1..n, at);
            list[n - 1] = FREE;
        }
    }

    /// Records that every customer in `members` is in audience `id`.
    pub fn insert_all(&mut self, id: u32, members: &RoaringBitmap) {
        if let Some(max) = members.max() {
            if max as usize >= self.lists.len() {
                self.lists.resize_with(max as usize + 1, Default::default);
            }
        }
        for c in members {
            self.insert(c, id);
        }
    }

    /// Records that no customer in `members` is in audience `id`.
    pub fn remove_all(&mut self, id: u32, members: &RoaringBitmap) {
        for c in members {
            self.remove(c, id);
        }
    }

    /// Forgets `cust` (deleted) and returns the audiences it was in.
    pub fn take(&mut self, cust: u32) -> Box<[u32]> {
        let list = self
            .lists
            .get_mut(cust as usize)
            .map(std::mem::take)
            .unwrap_or_default();
        used(&list).into()
    }

    /// Memberships held, for verification.
    pub fn len(&self) -> u64 {
        self.lists.iter().map(|l| used(l).len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_stay_sorted_and_follow_the_members() {
        let mut b = ByCustomer::default();
        b.insert_all(7, &[1, 5, 9].into_iter().collect());
        b.insert(5, 3);
        b.insert(5, 9);
        b.insert(5, 3); // already there
        assert_eq!(b.of(5), [3, 7, 9]);
        assert_eq!(b.of(1), [7]);
        assert_eq!(b.of(100), [] as [u32; 0]);
        b.remove(5, 7);
        b.remove(5, 42); // not there
        assert_eq!(b.of(5), [3, 9]);
        b.remove_all(7, &[1, 9].into_iter().collect());
        assert_eq!(b.of(1), [] as [u32; 0]);
        assert_eq!(b.len(), 2);
        assert_eq!(&*b.take(5), [3, 9]);
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_left_slot_is_taken_by_the_next_entry() {
        let mut b = ByCustomer::default();
        for id in [2, 4, 6, 8] {
            b.insert(1, id);
        }
        b.remove(1, 4);
        b.remove(1, 8);
        assert_eq!(b.of(1), [2, 6]);
        assert_eq!(b.lists[1].len(), 4, "the room is kept");
        assert_eq!(b.len(), 2);
        b.insert(1, 1);
        b.insert(1, 7);
        assert_eq!(b.of(1), [1, 2, 6, 7]);
        assert_eq!(b.lists[1].len(), 4, "the free slots were taken");
        b.insert(1, 9);
        b.insert(1, 6); // already there
        assert_eq!(b.of(1), [1, 2, 6, 7, 9]);
        for id in [1, 2, 6, 7, 9] {
            b.remove(1, id);
        }
        assert_eq!(b.of(1), [] as [u32; 0]);
        b.remove(1, 3); // not there
        b.insert(1, 3);
        assert_eq!(b.of(1), [3]);
        assert_eq!(&*b.take(1), [3]);
        assert_eq!(b.of(1), [] as [u32; 0]);
    }
}

//! The inverse of the members: for each customer, the ids of the saved audiences it is in,
//! sorted, so that "which audiences is this customer in?" reads one short list instead of
//! asking every audience's bitmap. Kept with the members, under the same lock, by whoever
//! changes the members (`mod.rs`).
//!
//! Memory: a slice header per customer id up to the largest member, plus four bytes per
//! membership. This module is plain data; it knows nothing of rules or storage.

use roaring::RoaringBitmap;

#[derive(Debug, Default)]
pub(super) struct ByCustomer {
    /// By internal customer id: the audiences it is in, sorted, without repeats.
    lists: Vec<Box<[u32]>>,
}

impl ByCustomer {
    /// The audiences `cust` is in, sorted.
    pub fn of(&self, cust: u32) -> &[u32] {
        self.lists.get(cust as usize).map_or(&[], |l| l)
    }

    /// Records that `cust` is in audience `id`.
    pub fn insert(&mut self, cust: u32, id: u32) {
        let i = cust as usize;
        if i >= self.lists.len() {
            self.lists.resize_with(i + 1, Default::default);
        }
        let list = &mut self.lists[i];
        if let Err(at) = list.binary_search(&id) {
            let mut v = Vec::with_capacity(list.len() + 1);
            v.extend_from_slice(&list[..at]);
            v.push(id);
            v.extend_from_slice(&list[at..]);
            *list = v.into_boxed_slice();
        }
    }

    /// Records that `cust` is no longer in audience `id`.
    pub fn remove(&mut self, cust: u32, id: u32) {
        let Some(list) = self.lists.get_mut(cust as usize) else {
            return;
        };
        if let Ok(at) = list.binary_search(&id) {
            let mut v = list.to_vec();
            v.remove(at);
            *list = v.into_boxed_slice();
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
        self.lists
            .get_mut(cust as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Memberships held, for verification.
    pub fn len(&self) -> u64 {
        self.lists.iter().map(|l| l.len() as u64).sum()
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
}

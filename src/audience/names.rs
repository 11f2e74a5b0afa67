//! The saved audiences' names by id, with each one's rank in name order, so that "which
//! audiences is this customer in?" answers in name order without allocating a name: the names
//! live once, in rank order, in a shared table, and an answer ([`AudienceNames`]) is that table
//! (an `Arc`) and the ranks of the customer's audiences, put in order through a bitset.
//!
//! Rebuilt whole (`O(A log A)` for A audiences) whenever the set of saved audiences changes,
//! which is rare next to lookups; an answer taken before keeps the table it was made from.
//! Plain data: it knows nothing of members, rules or storage.

use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Up to this many audiences the ranks are put in order through a bitset on the stack; beyond,
/// they are sorted.
const BITSET_WORDS: usize = 128;

/// Each live audience's rank in name order, by audience id, and the names by rank.
#[derive(Debug, Default)]
pub(super) struct NameOrder {
    /// By audience id: its rank among the names (0 the first in byte order), `u32::MAX` for an
    /// id that is not a live audience.
    rank_of: Vec<u32>,
    /// The names by rank.
    table: Arc<[Box<str>]>,
}

impl NameOrder {
    /// The order of the audiences `(id, name)`.
    pub(super) fn new<'a>(audiences: impl Iterator<Item = (u32, &'a str)>) -> Self {
        let mut sorted: Vec<(&str, u32)> = audiences.map(|(id, name)| (name, id)).collect();
        sorted.sort_unstable();
        let len = sorted
            .iter()
            .map(|&(_, id)| id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut rank_of = vec![u32::MAX; len];
        for (rank, &(_, id)) in sorted.iter().enumerate() {
            rank_of[id as usize] = rank as u32;
        }
        NameOrder {
            rank_of,
            table: sorted
                .into_iter()
                .map(|(name, _)| Box::from(name))
                .collect(),
        }
    }

    /// The names of the audiences `ids` that exist (no repeats), in name order.
    pub(super) fn names_in_order(&self, ids: &[u32]) -> AudienceNames {
        let mut ranks: Vec<u32> = Vec::with_capacity(ids.len());
        let audiences = self.table.len();
        if audiences <= BITSET_WORDS * 64 {
            // Each rank's bit set, then read back in order: no comparison sort.
            let mut bits = [0u64; BITSET_WORDS];
            let words = audiences.div_ceil(64);
            for &id in ids {
                if let Some(&r) = self.rank_of.get(id as usize) {
                    if r != u32::MAX {
                        bits[r as usize / 64] |= 1 << (r % 64);
                    }
                }
            }
            for (w, &word) in bits[..words].iter().enumerate() {
                let mut word = word;
                while word != 0 {
                    ranks.push(w as u32 * 64 + word.trailing_zeros());
                    word &= word - 1;
                }
            }
        } else {
            ranks.extend(
                ids.iter()
                    .filter_map(|&id| self.rank_of.get(id as usize).copied())
                    .filter(|&r| r != u32::MAX),
            );
            ranks.sort_unstable();
        }
        AudienceNames {
            table: self.table.clone(),
            ranks,
        }
    }
}

/// The names of the saved audiences a customer is in, in byte order of the names (what
/// [`crate::Db::audiences_of`] returns). The names are shared with the database's table of
/// audience names, not copied: iterating yields `&str`, and [`AudienceNames::to_vec`] makes
/// owned strings when those are wanted. An answer stays valid (and unchanged) after audiences
/// are saved or dropped.
///
/// It compares equal to a list of names in the same order (`["gold", "vips"]`, a
/// `Vec<String>`, ...), and serialises as a list of strings.
#[derive(Clone, Default)]
pub struct AudienceNames {
    /// Every audience's name by rank, as when the answer was made.
    table: Arc<[Box<str>]>,
    /// The ranks of the customer's audiences, increasing.
    ranks: Vec<u32>,
}

impl AudienceNames {
    /// How many audiences.
    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    /// In no audience.
    pub fn is_empty(&self) -> bool {
        self.ranks.is_empty()
    }

    /// The `i`-th name in order.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.ranks.get(i).map(|&r| &*self.table[r as usize])
    }

    /// The names, in order.
    pub fn iter(&self) -> Names<'_> {
        Names {
            table: &self.table,
            ranks: self.ranks.iter(),
        }
    }

    /// Whether the audience `name` is among them (a binary search: they are in order).
    pub fn contains(&self, name: &str) -> bool {
        self.ranks
            .binary_search_by(|&r| (*self.table[r as usize]).cmp(name))
            .is_ok()
    }

    /// The names as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// The names of an [`AudienceNames`], in order.
#[derive(Clone)]
pub struct Names<'a> {
    table: &'a [Box<str>],
    ranks: std::slice::Iter<'a, u32>,
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.ranks.next().map(|&r| &*self.table[r as usize])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ranks.size_hint()
    }
}

impl DoubleEndedIterator for Names<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.ranks.next_back().map(|&r| &*self.table[r as usize])
    }
}

impl ExactSizeIterator for Names<'_> {}

impl<'a> IntoIterator for &'a AudienceNames {
    type Item = &'a str;
    type IntoIter = Names<'a>;

    fn into_iter(self) -> Names<'a> {
        self.iter()
    }
}

impl From<AudienceNames> for Vec<String> {
    fn from(names: AudienceNames) -> Vec<String> {
        names.to_vec()
    }
}

impl fmt::Debug for AudienceNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for AudienceNames {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for name in self {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl PartialEq for AudienceNames {
    fn eq(&self, other: &AudienceNames) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for AudienceNames {}

impl<S: AsRef<str>> PartialEq<[S]> for AudienceNames {
    fn eq(&self, other: &[S]) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for AudienceNames {
    fn eq(&self, other: &[S; N]) -> bool {
        *self == other[..]
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for AudienceNames {
    fn eq(&self, other: &Vec<S>) -> bool {
        *self == other[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_in_byte_order_whatever_the_ids() {
        let order = NameOrder::new(
            [
                (7, "winback"),
                (2, "gold"),
                (9, "Zeta"),
                (4, "abandoned_cart"),
            ]
            .into_iter(),
        );
        let all = order.names_in_order(&[2, 4, 7, 9]);
        assert_eq!(all, ["Zeta", "abandoned_cart", "gold", "winback"]);
        assert_eq!(all.len(), 4);
        assert_eq!(all.get(1), Some("abandoned_cart"));
        assert_eq!(all.get(4), None);
        assert!(all.contains("gold") && all.contains("Zeta"));
        assert!(!all.contains("gol") && !all.contains("zeta"));
        assert_eq!(all.iter().next_back(), Some("winback"));
        assert_eq!(
            format!("{all:?}"),
            r#"["Zeta", "abandoned_cart", "gold", "winback"]"#
        );
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"["Zeta","abandoned_cart","gold","winback"]"#
        );
        assert_eq!(order.names_in_order(&[9, 7]), ["Zeta", "winback"]);
        assert_eq!(
            order.names_in_order(&[9, 7]),
            vec!["Zeta".to_owned(), "winback".into()]
        );
        assert_ne!(order.names_in_order(&[9, 7]), ["winback", "Zeta"]);
        assert_ne!(order.names_in_order(&[9, 7]), ["Zeta"]);
        // Ids of dropped or never saved audiences are left out.
        assert_eq!(order.names_in_order(&[3, 7, 100]), ["winback"]);
        assert!(order.names_in_order(&[]).is_empty());
        assert!(NameOrder::default().names_in_order(&[0, 1]).is_empty());
        // An answer keeps the names it was made with.
        let before = order.names_in_order(&[2]);
        let order = NameOrder::new([(2, "silver")].into_iter());
        assert_eq!(before, ["gold"]);
        assert_eq!(order.names_in_order(&[2]), ["silver"]);
    }

    /// Both ways of ordering (the bitset, and the sort beyond its size) against sorting the
    /// names themselves, on random audiences and lists.
    #[test]
    fn the_order_is_the_names_order_at_any_size() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for audiences in [
            1usize,
            2,
            63,
            64,
            65,
            1000,
            BITSET_WORDS * 64,
            BITSET_WORDS * 64 + 1,
        ] {
            // Ids with gaps, names in an order unrelated to the ids.
            let named: Vec<(u32, String)> = (0..audiences)
                .map(|i| {
                    (
                        i as u32 * 3 + 1,
                        format!("a{:08x}_{i}", rng.random::<u32>()),
                    )
                })
                .collect();
            let order = NameOrder::new(named.iter().map(|(id, n)| (*id, n.as_str())));
            for _ in 0..20 {
                let mut ids: Vec<u32> = Vec::new();
                let mut want: Vec<&str> = Vec::new();
                for (id, name) in &named {
                    if rng.random_bool(0.3) {
                        ids.push(*id);
                        want.push(name);
                    }
                }
                ids.push(0); // never saved
                want.sort_unstable();
                assert_eq!(order.names_in_order(&ids), want, "{audiences} audiences");
            }
        }
    }
}

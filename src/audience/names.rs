//! The saved audiences' names by id, with each one's rank in name order, so that "which
//! audiences is this customer in?" can answer in name order by sorting small integers instead
//! of looking each id up in a map and comparing strings.
//!
//! Rebuilt whole (`O(A log A)` for A audiences) whenever the set of saved audiences changes,
//! which is rare next to lookups. Plain data: it knows nothing of members, rules or storage.

/// Each live audience's name and rank in name order, by audience id.
#[derive(Debug, Default)]
pub(super) struct NameOrder {
    /// By audience id: its rank among the names (0 the first in byte order) and its name.
    by_id: Vec<Option<(u32, Box<str>)>>,
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
        let mut by_id = vec![None; len];
        for (rank, (name, id)) in sorted.into_iter().enumerate() {
            by_id[id as usize] = Some((rank as u32, name.into()));
        }
        NameOrder { by_id }
    }

    /// The names of the audiences `ids` that exist, in name order.
    pub(super) fn names_in_order(&self, ids: &[u32]) -> Vec<String> {
        let mut ranked: Vec<u64> = ids
            .iter()
            .filter_map(|&id| {
                let (rank, _) = self.by_id.get(id as usize)?.as_ref()?;
                Some(u64::from(*rank) << 32 | u64::from(id))
            })
            .collect();
        ranked.sort_unstable();
        ranked
            .into_iter()
            .filter_map(|key| {
                let (_, name) = self.by_id[(key & u64::from(u32::MAX)) as usize].as_ref()?;
                Some(name.to_string())
            })
            .collect()
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
        assert_eq!(
            order.names_in_order(&[2, 4, 7, 9]),
            ["Zeta", "abandoned_cart", "gold", "winback"]
        );
        assert_eq!(order.names_in_order(&[9, 7]), ["Zeta", "winback"]);
        // Ids of dropped or never saved audiences are left out.
        assert_eq!(order.names_in_order(&[3, 7, 100]), ["winback"]);
        assert!(order.names_in_order(&[]).is_empty());
        assert!(NameOrder::default().names_in_order(&[0, 1]).is_empty());
    }
}

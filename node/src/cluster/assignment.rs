//! Where each partition consumer runs: `rebalance` is balanced (per-node counts differ by
//! at most one) and sticky (a slot moves only when its owner is gone or holds more than
//! its share). Pure: the assigner (`cluster::assigner`) does the I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::topology::{NodeId, Slot};

/// A balanced, sticky assignment of `slots` to `live` nodes, starting from `current`.
pub fn rebalance(
    current: &BTreeMap<Slot, NodeId>,
    slots: &BTreeSet<Slot>,
    live: &BTreeSet<NodeId>,
) -> BTreeMap<Slot, NodeId> {
    let mut out = BTreeMap::new();
    if live.is_empty() {
        return out;
    }
    // What each live node holds now, of the slots that still exist.
    let mut held: BTreeMap<NodeId, Vec<Slot>> = live.iter().map(|n| (*n, Vec::new())).collect();
    for slot in slots {
        if let Some(node) = current.get(slot) {
            if let Some(list) = held.get_mut(node) {
                list.push(slot.clone());
            }
        }
    }
    let base = slots.len() / live.len();
    let extra = slots.len() % live.len();
    // The nodes that already hold the most get the `extra` larger shares: fewer moves.
    let mut by_load: Vec<NodeId> = live.iter().copied().collect();
    by_load.sort_by_key(|n| (std::cmp::Reverse(held.get(n).map_or(0, Vec::len)), *n));
    let quota: BTreeMap<NodeId, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, base + usize::from(i < extra)))
        .collect();
    let mut load: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (node, list) in &held {
        let keep = quota.get(node).copied().unwrap_or(0).min(list.len());
        for slot in list.iter().take(keep) {
            out.insert(slot.clone(), *node);
        }
        load.insert(*node, keep);
    }
    for slot in slots {
        if out.contains_key(slot) {
            continue;
        }
        let target = by_load
            .iter()
            .filter(|n| load.get(n).copied().unwrap_or(0) < quota.get(n).copied().unwrap_or(0))
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), **n))
            .copied();
        if let Some(node) = target {
            out.insert(slot.clone(), node);
            *load.entry(node).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Assignments;

    fn slots(n: i32) -> BTreeSet<Slot> {
        (0..n)
            .map(|p| Slot {
                table: "q".into(),
                topic: "t".into(),
                partition: p,
            })
            .collect()
    }

    fn counts(a: &BTreeMap<Slot, NodeId>) -> BTreeMap<NodeId, usize> {
        let mut c = BTreeMap::new();
        for n in a.values() {
            *c.entry(*n).or_default() += 1;
        }
        c
    }

    fn moved(a: &BTreeMap<Slot, NodeId>, b: &BTreeMap<Slot, NodeId>) -> usize {
        a.iter().filter(|(s, n)| b.get(*s) != Some(*n)).count()
    }

    #[test]
    fn balanced_from_scratch() {
        let a = rebalance(&BTreeMap::new(), &slots(8), &BTreeSet::from([1, 2, 3]));
        assert_eq!(a.len(), 8);
        let c: Vec<usize> = counts(&a).into_values().collect();
        assert_eq!(
            c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0),
            1
        );
    }

    #[test]
    fn a_join_moves_only_what_balance_requires() {
        let three = rebalance(&BTreeMap::new(), &slots(8), &BTreeSet::from([1, 2, 3]));
        let four = rebalance(&three, &slots(8), &BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(
            counts(&four).into_values().collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
        assert_eq!(moved(&three, &four), 2);
        // Nothing moves when nothing changed.
        assert_eq!(
            rebalance(&four, &slots(8), &BTreeSet::from([1, 2, 3, 4])),
            four
        );
    }

    #[test]
    fn a_leave_moves_only_the_leavers_slots() {
        let three = rebalance(&BTreeMap::new(), &slots(9), &BTreeSet::from([1, 2, 3]));
        let two = rebalance(&three, &slots(9), &BTreeSet::from([1, 3]));
        assert_eq!(moved(&three, &two), 3);
        assert!(two.values().all(|n| *n != 2));
        let c: Vec<usize> = counts(&two).into_values().collect();
        assert!(c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) <= 1);
    }

    #[test]
    fn epochs_change_only_for_moved_slots() {
        let owners = rebalance(&BTreeMap::new(), &slots(3), &BTreeSet::from([1, 2, 3]));
        let first = Assignments::default().next(&owners, 10);
        assert!(first.slots.iter().all(|(_, o)| o.epoch == 10));
        let moved = rebalance(&owners, &slots(3), &BTreeSet::from([1, 2]));
        let second = first.next(&moved, 20);
        let epochs: Vec<u64> = second.slots.iter().map(|(_, o)| o.epoch).collect();
        assert_eq!(epochs.iter().filter(|e| **e == 20).count(), 1);
        assert_eq!(epochs.iter().filter(|e| **e == 10).count(), 2);
    }
}

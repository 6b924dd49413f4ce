//! Planning where tables live: each table on `replicas` voters (its setting; by default
//! min(3, voters)), the least loaded first, sticky while members stay. Pure: the meta
//! leader's assigner proposes what `plan` returns.

use std::collections::{BTreeMap, BTreeSet};

use crate::topology::{NodeId, Placement, Placements};

/// Replicas of a table whose `replicas` setting is 0 (unset).
pub const DEFAULT_REPLICAS: usize = 3;

/// A table to place and how many replicas it asks for (0: the default).
pub struct Wanted<'a> {
    pub table: &'a str,
    pub replicas: u64,
}

/// The replica count a table gets with `voters` voters.
pub fn replica_count(setting: u64, voters: usize) -> usize {
    let wanted = match setting {
        0 => DEFAULT_REPLICAS,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    wanted.min(voters).max(1)
}

/// The placements that should change: for each table whose placement is missing or must
/// change, its next placement. `live` are the voters heard from lately (new members are
/// chosen from them first); `new_group` names the group of a table placed for the first
/// time. Tables no longer listed are not returned: dropping a table removes its placement.
pub fn plan(
    current: &Placements,
    tables: &[Wanted<'_>],
    voters: &BTreeSet<NodeId>,
    live: &BTreeSet<NodeId>,
    mut new_group: impl FnMut(&str) -> String,
) -> Vec<(String, Placement)> {
    if voters.is_empty() {
        return Vec::new();
    }
    let mut load: BTreeMap<NodeId, usize> = voters.iter().map(|v| (*v, 0)).collect();
    for p in current.tables.values() {
        for m in &p.members {
            if let Some(n) = load.get_mut(m) {
                *n += 1;
            }
        }
    }
    let mut out = Vec::new();
    for want in tables {
        let count = replica_count(want.replicas, voters.len());
        let existing = current.of(want.table);
        let mut members: Vec<NodeId> = existing
            .map(|p| {
                p.members
                    .iter()
                    .copied()
                    .filter(|m| voters.contains(m))
                    .collect()
            })
            .unwrap_or_default();
        // A group whose members all left has lost its data with them: it starts anew.
        let fresh = existing.is_none() || members.is_empty();
        while members.len() < count {
            let pick = load
                .iter()
                .filter(|(n, _)| !members.contains(n))
                .min_by_key(|(n, used)| (!live.contains(n), **used, **n))
                .map(|(n, _)| *n);
            let Some(node) = pick else { break };
            members.push(node);
            if let Some(n) = load.get_mut(&node) {
                *n += 1;
            }
        }
        let next = match existing {
            Some(p) if !fresh => {
                if p.members == members {
                    continue;
                }
                Placement {
                    group: p.group.clone(),
                    members,
                    initial: p.initial.clone(),
                    generation: p.generation + 1,
                }
            }
            _ => Placement {
                group: new_group(want.table),
                initial: members.clone(),
                members,
                generation: 0,
            },
        };
        out.push((want.table.to_string(), next));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    fn apply(current: &mut Placements, changes: Vec<(String, Placement)>) {
        for (t, p) in changes {
            current.tables.insert(t, p);
        }
    }

    fn want(table: &str, replicas: u64) -> Wanted<'_> {
        Wanted { table, replicas }
    }

    #[test]
    fn tables_spread_over_the_least_loaded_nodes() {
        let mut current = Placements::default();
        let voters = set(&[1, 2, 3, 4]);
        let changes = plan(
            &current,
            &[want("a", 2), want("b", 2), want("c", 0)],
            &voters,
            &voters,
            |t| format!("g-{t}"),
        );
        apply(&mut current, changes);
        let a = current.of("a").map(|p| p.members.clone());
        let b = current.of("b").map(|p| p.members.clone());
        assert_eq!(a, Some(vec![1, 2]));
        assert_eq!(b, Some(vec![3, 4]));
        assert_eq!(current.of("c").map(|p| p.members.len()), Some(3));
        assert_eq!(current.of("a").map(|p| p.forms(1)), Some(true));
        // Nothing changes when nothing moved.
        let again = plan(
            &current,
            &[want("a", 2), want("b", 2), want("c", 0)],
            &voters,
            &voters,
            |t| format!("g-{t}"),
        );
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_removed_member_is_replaced_and_the_others_stay() {
        let mut current = Placements::default();
        let voters = set(&[1, 2, 3, 4]);
        let changes = plan(&current, &[want("a", 3)], &voters, &voters, |_| "g".into());
        apply(&mut current, changes);
        assert_eq!(
            current.of("a").map(|p| p.members.clone()),
            Some(vec![1, 2, 3])
        );
        let after = set(&[1, 3, 4]);
        let changes = plan(&current, &[want("a", 3)], &after, &after, |_| "new".into());
        apply(&mut current, changes);
        let a = current.of("a").cloned();
        assert_eq!(a.as_ref().map(|p| p.members.clone()), Some(vec![1, 3, 4]));
        assert_eq!(a.as_ref().map(|p| p.group.as_str()), Some("g"));
        assert_eq!(a.as_ref().map(|p| p.generation), Some(1));
        // A group that changed is never formed again, not even by a first member.
        assert_eq!(a.map(|p| p.forms(1)), Some(false));
    }

    #[test]
    fn a_table_grows_to_its_replica_count_as_voters_join() {
        let mut current = Placements::default();
        let changes = plan(&current, &[want("a", 0)], &set(&[1]), &set(&[1]), |_| {
            "g".into()
        });
        apply(&mut current, changes);
        assert_eq!(current.of("a").map(|p| p.members.clone()), Some(vec![1]));
        let three = set(&[1, 2, 3, 4]);
        let changes = plan(&current, &[want("a", 0)], &three, &set(&[1, 3, 4]), |_| {
            "new".into()
        });
        apply(&mut current, changes);
        // Node 2 is silent: live voters are chosen first.
        assert_eq!(
            current.of("a").map(|p| p.members.clone()),
            Some(vec![1, 3, 4])
        );
    }

    #[test]
    fn a_table_whose_members_all_left_starts_a_new_group() {
        let mut current = Placements::default();
        let changes = plan(
            &current,
            &[want("a", 1)],
            &set(&[1, 2]),
            &set(&[1, 2]),
            |_| "old".into(),
        );
        apply(&mut current, changes);
        let changes = plan(&current, &[want("a", 1)], &set(&[2]), &set(&[2]), |_| {
            "new".into()
        });
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.group, "new");
        assert!(changes[0].1.forms(2));
    }

    #[test]
    fn replica_counts_are_bounded_by_the_voters() {
        assert_eq!(replica_count(0, 1), 1);
        assert_eq!(replica_count(0, 5), 3);
        assert_eq!(replica_count(5, 4), 4);
        assert_eq!(replica_count(2, 4), 2);
    }
}

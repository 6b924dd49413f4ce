//! Which voter runs the consumer of a (Kafka table, topic, partition).
//!
//! Every node computes the same answer from the same membership, so no assignment needs to
//! be agreed on: partitions of one topic go round-robin over the voters in id order,
//! starting at an offset drawn from the table and topic so that small topics do not all
//! land on the first node. Two nodes may briefly both run a partition while a membership
//! change reaches them; the table's stored offsets make the second writer's blocks no-ops.

use crate::ingest::status::ConsumerKey;
use crate::raft::NodeId;

/// The owner of `key` among `voters` (sorted ascending), if there are any.
pub fn owner(key: &ConsumerKey, voters: &[NodeId]) -> Option<NodeId> {
    if voters.is_empty() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.table.as_bytes());
    hasher.update(&[0]);
    hasher.update(key.topic.as_bytes());
    let digest = hasher.finalize();
    let mut start = [0u8; 8];
    start.copy_from_slice(&digest.as_bytes()[..8]);
    let start = u64::from_be_bytes(start);
    let n = voters.len() as u64;
    let slot = (start % n + u64::try_from(key.partition).unwrap_or(0)) % n;
    voters.get(usize::try_from(slot).unwrap_or(0)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> ConsumerKey {
        ConsumerKey {
            table: "github_queue".into(),
            topic: "github".into(),
            partition: p,
        }
    }

    #[test]
    fn balanced_and_the_same_everywhere() {
        let voters = [3, 10, 42];
        let mut counts = std::collections::BTreeMap::new();
        for p in 0..9 {
            let o = owner(&key(p), &voters).unwrap_or(0);
            *counts.entry(o).or_insert(0) += 1;
            assert_eq!(Some(o), owner(&key(p), &voters));
        }
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        assert_eq!(owner(&key(0), &[]), None);
    }
}

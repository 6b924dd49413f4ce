//! Which parts to merge next: ClickHouse's MergeTree keeps the number of parts bounded by
//! merging runs of similar parts into larger ones. Pure: it sees the part list only.
//!
//! Parts carry a level (0 fresh, one more than its inputs once merged). When `fan_in`
//! neighbouring parts share a level, they are merged, so the list behaves like a counter in
//! base `fan_in`: at most `fan_in - 1` parts per level stay, and levels grow with the
//! logarithm of the table. Parts past `max_part_bytes` are final, as ClickHouse's
//! `max_bytes_to_merge_at_max_space_in_pool`. Should the list hold more than `max_parts`
//! anyway (a replica's shape after odd histories), the cheapest run of `fan_in` parts is
//! merged whatever its levels.

use std::ops::Range;

use super::part::PartMeta;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePolicy {
    pub fan_in: usize,
    pub max_part_bytes: u64,
    pub max_parts: usize,
}

impl Default for MergePolicy {
    fn default() -> Self {
        MergePolicy {
            fan_in: 8,
            max_part_bytes: 2 << 30,
            max_parts: 64,
        }
    }
}

impl MergePolicy {
    /// The run of parts (indices into `parts`, in order) to merge next, if any.
    pub fn select(&self, parts: &[PartMeta]) -> Option<Range<usize>> {
        let fan_in = self.fan_in.max(2);
        if parts.len() < fan_in {
            return None;
        }
        let small = |p: &PartMeta| p.bytes < self.max_part_bytes;
        let fits =
            |run: &[PartMeta]| run.iter().map(|p| p.bytes).sum::<u64>() <= self.max_part_bytes;
        // The oldest run of `fan_in` neighbours of one level.
        for start in 0..=parts.len() - fan_in {
            let run = &parts[start..start + fan_in];
            let level = run[0].level;
            if run.iter().all(|p| p.level == level && small(p)) && fits(run) {
                return Some(start..start + fan_in);
            }
        }
        if parts.len() <= self.max_parts {
            return None;
        }
        (0..=parts.len() - fan_in)
            .filter(|&start| {
                let run = &parts[start..start + fan_in];
                run.iter().all(small) && fits(run)
            })
            .min_by_key(|&start| {
                parts[start..start + fan_in]
                    .iter()
                    .map(|p| p.bytes)
                    .sum::<u64>()
            })
            .map(|start| start..start + fan_in)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(first: u64, level: u32, bytes: u64) -> PartMeta {
        PartMeta {
            first,
            last: first,
            level,
            rows: 1,
            bytes,
        }
    }

    /// Applies the policy as a merger would until it finds nothing, returning the parts.
    fn settle(policy: &MergePolicy, mut parts: Vec<PartMeta>) -> Vec<PartMeta> {
        while let Some(run) = policy.select(&parts) {
            let inputs: Vec<PartMeta> = parts.drain(run.clone()).collect();
            let merged = PartMeta {
                first: inputs[0].first,
                last: inputs[inputs.len() - 1].last,
                level: inputs.iter().map(|p| p.level).max().unwrap_or(0) + 1,
                rows: inputs.iter().map(|p| p.rows).sum(),
                bytes: inputs.iter().map(|p| p.bytes).sum(),
            };
            parts.insert(run.start, merged);
        }
        parts
    }

    #[test]
    fn steady_ingest_keeps_the_part_count_logarithmic() {
        let policy = MergePolicy::default();
        let mut parts = Vec::new();
        let mut most = 0;
        for seq in 0..10_000 {
            parts.push(part(seq, 0, 1 << 10));
            parts = settle(&policy, parts);
            most = most.max(parts.len());
        }
        // 10,000 blocks: levels 0..4 with at most 7 parts each, plus the one being added.
        assert!(most <= 7 * 5 + 1, "{most} parts");
        assert_eq!(parts.iter().map(|p| p.rows).sum::<u64>(), 10_000);
        // Runs stay in block order: each part starts where the previous ended.
        for pair in parts.windows(2) {
            assert_eq!(pair[0].last + 1, pair[1].first);
        }
    }

    #[test]
    fn large_parts_are_final_and_odd_shapes_still_merge() {
        let policy = MergePolicy {
            fan_in: 4,
            max_part_bytes: 100,
            max_parts: 6,
        };
        // Four parts of 30 bytes would make 120: too large, so they stay.
        let parts: Vec<PartMeta> = (0..4).map(|i| part(i, 0, 30)).collect();
        assert_eq!(policy.select(&parts), None);
        // Mixed levels past max_parts: the cheapest run of four merges.
        let parts: Vec<PartMeta> = [(0, 5), (1, 50), (0, 5), (2, 5), (0, 5), (1, 5), (0, 90)]
            .iter()
            .enumerate()
            .map(|(i, &(level, bytes))| part(i as u64, level, bytes))
            .collect();
        assert_eq!(policy.select(&parts), Some(2..6));
    }
}

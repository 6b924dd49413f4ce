//! The apply decision for a block, as a pure function of the table's state.
//!
//! Every replica makes the same decision from the same state, so replicas stay identical.
//! Invariant: a Kafka offset is stored at most once per (view, topic, partition).

use super::block::Block;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    /// Store the rows and advance the source position.
    Apply,
    /// The source range is already stored: drop the block.
    AlreadyApplied { next_offset: i64 },
    /// The same block (by hash) is in the dedup window: drop it.
    Duplicate { seq: u64 },
    /// The block starts before the stored position but ends after it: a consumer read from
    /// a stale position. Refused; the consumer re-reads from the stored position.
    Overlap { next_offset: i64 },
}

/// `next_offset`: the stored next offset of the block's source partition, if any;
/// `seen_at`: the sequence number of a block with the same hash in the window, if any.
pub fn decide(block: &Block, next_offset: Option<i64>, seen_at: Option<u64>) -> Decision {
    if let (Some(range), Some(next)) = (&block.source, next_offset) {
        if range.last_offset < next {
            return Decision::AlreadyApplied { next_offset: next };
        }
        if range.first_offset < next {
            return Decision::Overlap { next_offset: next };
        }
    }
    match seen_at {
        Some(seq) => Decision::Duplicate { seq },
        None => Decision::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::block::SourceRange;

    fn block(first: i64, last: i64) -> Block {
        Block {
            table: "t".into(),
            source: Some(SourceRange {
                source: "mv".into(),
                topic: "t".into(),
                partition: 1,
                first_offset: first,
                last_offset: last,
            }),
            rows: 1,
            hash: [0; 32],
            data: vec![],
        }
    }

    #[test]
    fn offsets_decide_first() {
        assert_eq!(decide(&block(0, 9), None, None), Decision::Apply);
        assert_eq!(decide(&block(10, 19), Some(10), None), Decision::Apply);
        // Offsets may skip (transaction markers, compaction): a gap is fine.
        assert_eq!(decide(&block(15, 19), Some(10), None), Decision::Apply);
        assert_eq!(
            decide(&block(0, 9), Some(10), None),
            Decision::AlreadyApplied { next_offset: 10 }
        );
        assert_eq!(
            decide(&block(5, 14), Some(10), None),
            Decision::Overlap { next_offset: 10 }
        );
        assert_eq!(
            decide(&block(10, 19), Some(10), Some(3)),
            Decision::Duplicate { seq: 3 }
        );
    }

    #[test]
    fn direct_blocks_dedup_by_hash_only() {
        let mut b = block(0, 0);
        b.source = None;
        assert_eq!(decide(&b, None, None), Decision::Apply);
        assert_eq!(decide(&b, None, Some(7)), Decision::Duplicate { seq: 7 });
    }
}

//! The apply decision for a block, as a pure function of the table's state.
//!
//! Every replica makes the same decision from the same state, so replicas stay identical.
//! Invariants: a Kafka offset is stored at most once per (view, topic, partition), and a
//! partition's writers' epochs never go back. The second one needs nothing but the
//! table's own state, so a table fences zombie consumers by itself, wherever its blocks
//! are ordered.

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
    /// The block's writer holds an older assignment epoch than one that already wrote to
    /// its partition: a consumer that lost its partition (a paused or cut-off node).
    StaleEpoch { epoch: u64, highest: u64 },
}

/// The assignment epoch a block was written under, and the highest epoch that has written
/// to the block's source partition so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epochs {
    pub writer: Option<u64>,
    pub highest: Option<u64>,
}

/// `next_offset`: the stored next offset of the block's source partition, if any;
/// `seen_at`: the sequence number of a block with the same hash in the window, if any.
pub fn decide(
    block: &Block,
    next_offset: Option<i64>,
    seen_at: Option<u64>,
    epochs: Epochs,
) -> Decision {
    if let (Some(epoch), Some(highest)) = (epochs.writer, epochs.highest) {
        if epoch < highest {
            return Decision::StaleEpoch { epoch, highest };
        }
    }
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
            data: Default::default(),
        }
    }

    #[test]
    fn offsets_decide_first() {
        assert_eq!(
            decide(&block(0, 9), None, None, Epochs::default()),
            Decision::Apply
        );
        assert_eq!(
            decide(&block(10, 19), Some(10), None, Epochs::default()),
            Decision::Apply
        );
        // Offsets may skip (transaction markers, compaction): a gap is fine.
        assert_eq!(
            decide(&block(15, 19), Some(10), None, Epochs::default()),
            Decision::Apply
        );
        assert_eq!(
            decide(&block(0, 9), Some(10), None, Epochs::default()),
            Decision::AlreadyApplied { next_offset: 10 }
        );
        assert_eq!(
            decide(&block(5, 14), Some(10), None, Epochs::default()),
            Decision::Overlap { next_offset: 10 }
        );
        assert_eq!(
            decide(&block(10, 19), Some(10), Some(3), Epochs::default()),
            Decision::Duplicate { seq: 3 }
        );
    }

    #[test]
    fn an_older_epoch_is_refused_before_anything_else() {
        let epochs = |writer, highest| Epochs {
            writer: Some(writer),
            highest,
        };
        assert_eq!(
            decide(&block(0, 9), None, None, epochs(5, None)),
            Decision::Apply
        );
        assert_eq!(
            decide(&block(10, 19), Some(10), None, epochs(5, Some(5))),
            Decision::Apply
        );
        assert_eq!(
            decide(&block(10, 19), Some(10), None, epochs(7, Some(5))),
            Decision::Apply
        );
        // The zombie's block would fit the offsets, and is still refused.
        assert_eq!(
            decide(&block(10, 19), Some(10), None, epochs(4, Some(5))),
            Decision::StaleEpoch {
                epoch: 4,
                highest: 5
            }
        );
        assert_eq!(
            decide(&block(0, 9), Some(10), None, epochs(4, Some(5))),
            Decision::StaleEpoch {
                epoch: 4,
                highest: 5
            }
        );
        // No writer (a block not from a fenced consumer): offsets and hashes only.
        assert_eq!(
            decide(
                &block(10, 19),
                Some(10),
                None,
                Epochs {
                    writer: None,
                    highest: Some(5)
                }
            ),
            Decision::Apply
        );
    }

    #[test]
    fn direct_blocks_dedup_by_hash_only() {
        let mut b = block(0, 0);
        b.source = None;
        assert_eq!(decide(&b, None, None, Epochs::default()), Decision::Apply);
        assert_eq!(
            decide(&b, None, Some(7), Epochs::default()),
            Decision::Duplicate { seq: 7 }
        );
    }
}

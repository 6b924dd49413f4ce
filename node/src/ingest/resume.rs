//! Where a partition consumer starts reading, and what of each block a view still needs.
//!
//! Each view keeps its own position in the partition: its target table stores it with
//! every block. The consumer reads from the lowest of them, so a view that is ahead of
//! the others takes only the rows past its position, and nothing of a block it holds.
//!
//! The group's position (Kafka's committed offset, or where another table of the group
//! stored the partition) stands in for a view that has stored nothing, and moves a view
//! ahead whose partition another table of its group read since (a table that left or
//! joined the group). Sluice commits a block's offset only after every view stored it, so
//! for a group no other table shares the group is never ahead of a view, and the stored
//! positions alone decide.

use arrow::array::{BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use rdkafka::Offset;

use super::IngestError;

/// Whether the group's committed offset must be known before reading: a view that has
/// stored nothing needs it. Otherwise it is asked for too, but only briefly, since it
/// only matters when another table of the group read the partition.
pub fn needs_group_offset(stored: impl IntoIterator<Item = Option<i64>>) -> bool {
    stored.into_iter().any(|p| p.is_none())
}

/// The group's committed offset as a position. Kafka answers with a logical offset
/// (`Invalid`) for a group that never committed, which is no position.
pub fn group_position(committed: Offset) -> Option<i64> {
    match committed {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// The group's position in the partition: the furthest of its committed offset and of
/// where each other table of the group stored it (`group_peer_positions`). Kafka commits
/// trail the stored blocks, so the stored positions are the fresher of the two.
pub fn group_start(
    committed: Option<i64>,
    peers: impl IntoIterator<Item = Option<i64>>,
) -> Option<i64> {
    peers.into_iter().flatten().chain(committed).max()
}

/// Moves each view up to the group's position (a view that has stored nothing takes it),
/// and returns where to read from: the lowest position. A view with neither a stored
/// position nor a group offset reads from the partition's beginning, as
/// `auto.offset.reset = earliest` does (ClickHouse's default); so does a consumer without
/// views.
pub fn start_offset<'a>(
    positions: impl IntoIterator<Item = &'a mut Option<i64>>,
    group: Option<i64>,
) -> Offset {
    let mut lowest: Option<i64> = None;
    let mut unknown = false;
    for position in positions {
        *position = match (*position, group) {
            (Some(own), Some(group)) => Some(own.max(group)),
            (own, group) => own.or(group),
        };
        match *position {
            Some(o) => lowest = Some(lowest.map_or(o, |l| l.min(o))),
            None => unknown = true,
        }
    }
    match lowest {
        Some(o) if !unknown => Offset::Offset(o),
        _ => Offset::Beginning,
    }
}

/// Where a restart would resume: the lowest of the views' positions, once every view
/// has one (a view without one reads from the partition's beginning).
pub fn stored_position(positions: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    let mut lowest: Option<i64> = None;
    for position in positions {
        let p = position?;
        lowest = Some(lowest.map_or(p, |l| l.min(p)));
    }
    lowest
}

/// The first offset of the block `first..=last` that a view whose next offset is `next`
/// still needs; `None` when its table holds the whole block already.
pub fn first_needed(next: Option<i64>, first: i64, last: i64) -> Option<i64> {
    match next {
        Some(next) if next > last => None,
        Some(next) => Some(next.max(first)),
        None => Some(first),
    }
}

/// The rows of a decoded block read at or after `from` (by the `_offset` column).
pub fn rows_from(batch: &RecordBatch, from: i64) -> Result<RecordBatch, IngestError> {
    let offsets = batch
        .column_by_name("_offset")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| IngestError::State("decoded block has no _offset column".into()))?;
    let from = u64::try_from(from).unwrap_or_default();
    let keep: BooleanArray = offsets.iter().map(|o| o.map(|o| o >= from)).collect();
    filter_record_batch(batch, &keep).map_err(|e| IngestError::State(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn start(mut positions: Vec<Option<i64>>, group: Option<i64>) -> (Offset, Vec<Option<i64>>) {
        let offset = start_offset(positions.iter_mut(), group);
        (offset, positions)
    }

    #[test]
    fn the_group_goes_on_from_the_furthest_of_its_commit_and_its_tables() {
        assert_eq!(group_start(None, []), None);
        assert_eq!(group_start(Some(40), [None]), Some(40));
        assert_eq!(group_start(Some(40), [Some(55), None, Some(50)]), Some(55));
        assert_eq!(group_start(None, [Some(7)]), Some(7));
        assert_eq!(group_start(Some(90), [Some(55)]), Some(90));
    }

    #[test]
    fn starts_at_the_lowest_stored_position() {
        let (offset, positions) = start(vec![Some(40), Some(12), Some(25)], Some(12));
        assert_eq!(offset, Offset::Offset(12));
        assert_eq!(positions, vec![Some(40), Some(12), Some(25)]);
    }

    #[test]
    fn a_group_that_read_further_moves_the_views_ahead() {
        // Another table of the group read the partition up to 99 since these views had it.
        let (offset, positions) = start(vec![Some(40), Some(12), None], Some(99));
        assert_eq!(offset, Offset::Offset(99));
        assert_eq!(positions, vec![Some(99), Some(99), Some(99)]);
        // Behind a view, the group changes nothing for it.
        let (offset, positions) = start(vec![Some(40), Some(12)], Some(25));
        assert_eq!(offset, Offset::Offset(25));
        assert_eq!(positions, vec![Some(40), Some(25)]);
    }

    #[test]
    fn a_view_that_stored_nothing_takes_the_group_offset() {
        let (offset, positions) = start(vec![Some(40), None], Some(30));
        assert_eq!(offset, Offset::Offset(30));
        assert_eq!(positions, vec![Some(40), Some(30)]);
        // Ahead of a stored position, the group offset moves that view too.
        let (offset, positions) = start(vec![Some(40), None], Some(50));
        assert_eq!(offset, Offset::Offset(50));
        assert_eq!(positions, vec![Some(50), Some(50)]);
    }

    #[test]
    fn with_no_position_at_all_reading_starts_at_the_beginning() {
        let (offset, positions) = start(vec![Some(40), None], None);
        assert_eq!(offset, Offset::Beginning);
        assert_eq!(positions, vec![Some(40), None]);
        assert_eq!(start(vec![None], None).0, Offset::Beginning);
        assert_eq!(start(vec![], Some(5)).0, Offset::Beginning);
    }

    #[test]
    fn a_restart_resumes_at_the_lowest_position_once_every_view_has_one() {
        assert_eq!(stored_position([Some(40), Some(12), Some(25)]), Some(12));
        assert_eq!(stored_position([Some(40), None]), None);
        assert_eq!(stored_position([]), None);
        // The same place a consumer starts from.
        let mut positions = [Some(40), Some(12)];
        assert_eq!(
            start_offset(positions.iter_mut(), None),
            Offset::Offset(stored_position(positions.iter().copied()).unwrap_or(-1))
        );
    }

    #[test]
    fn offset_zero_is_a_position() {
        assert_eq!(start(vec![Some(0), Some(3)], None).0, Offset::Offset(0));
        assert_eq!(start(vec![None], Some(0)).0, Offset::Offset(0));
    }

    #[test]
    fn the_group_is_asked_only_for_a_view_without_a_position() {
        assert!(!needs_group_offset([Some(1), Some(2)]));
        assert!(needs_group_offset([Some(1), None]));
        assert!(!needs_group_offset([]));
    }

    #[test]
    fn only_a_real_committed_offset_is_a_position() {
        assert_eq!(group_position(Offset::Offset(17)), Some(17));
        assert_eq!(group_position(Offset::Offset(0)), Some(0));
        for logical in [
            Offset::Invalid,
            Offset::Beginning,
            Offset::End,
            Offset::Stored,
        ] {
            assert_eq!(group_position(logical), None, "{logical:?}");
        }
    }

    #[test]
    fn a_view_needs_the_block_from_its_position() {
        // Block 10..=14.
        assert_eq!(first_needed(None, 10, 14), Some(10));
        assert_eq!(
            first_needed(Some(3), 10, 14),
            Some(10),
            "behind: whole block"
        );
        assert_eq!(first_needed(Some(10), 10, 14), Some(10));
        assert_eq!(
            first_needed(Some(12), 10, 14),
            Some(12),
            "partway: the tail"
        );
        assert_eq!(
            first_needed(Some(14), 10, 14),
            Some(14),
            "the last row only"
        );
        assert_eq!(
            first_needed(Some(15), 10, 14),
            None,
            "holds the whole block"
        );
        assert_eq!(first_needed(Some(90), 10, 14), None);
    }

    fn block(offsets: Vec<Option<u64>>) -> RecordBatch {
        let names: Vec<String> = (0..offsets.len()).map(|i| format!("r{i}")).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("_offset", DataType::UInt64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(names)),
            Arc::new(UInt64Array::from(offsets)),
        ];
        RecordBatch::try_new(schema, columns).expect("batch")
    }

    fn names(batch: &RecordBatch) -> Vec<String> {
        let names = batch
            .column_by_name("name")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .expect("name column");
        names.iter().flatten().map(str::to_string).collect()
    }

    #[test]
    fn rows_from_keeps_the_rows_at_and_after_the_offset() {
        // A message may decode to several rows: offset 11 has two.
        let b = block(vec![Some(10), Some(11), Some(11), Some(12)]);
        assert_eq!(names(&rows_from(&b, 11).expect("rows")), ["r1", "r2", "r3"]);
        assert_eq!(names(&rows_from(&b, 12).expect("rows")), ["r3"]);
        assert_eq!(rows_from(&b, 10).expect("rows").num_rows(), 4);
    }

    #[test]
    fn rows_from_before_the_block_keeps_every_row() {
        let b = block(vec![Some(10), Some(11)]);
        assert_eq!(rows_from(&b, 0).expect("rows").num_rows(), 2);
        // A negative offset reads as 0, not as a huge unsigned one.
        assert_eq!(rows_from(&b, -5).expect("rows").num_rows(), 2);
    }

    #[test]
    fn rows_from_beyond_the_block_is_empty_with_the_same_columns() {
        let b = block(vec![Some(10), Some(11)]);
        let rows = rows_from(&b, 12).expect("rows");
        assert_eq!(rows.num_rows(), 0);
        assert_eq!(rows.schema(), b.schema());
    }

    #[test]
    fn rows_without_an_offset_are_not_kept() {
        let b = block(vec![Some(10), None, Some(12)]);
        assert_eq!(names(&rows_from(&b, 0).expect("rows")), ["r0", "r2"]);
    }

    #[test]
    fn a_block_without_offsets_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "_offset",
            DataType::Utf8,
            false,
        )]));
        let column: ArrayRef = Arc::new(StringArray::from(vec!["10"]));
        let wrong_type = RecordBatch::try_new(schema, vec![column]).expect("batch");
        let no_column = RecordBatch::new_empty(Arc::new(Schema::empty()));
        for b in [wrong_type, no_column] {
            match rows_from(&b, 0) {
                Err(IngestError::State(reason)) => assert!(reason.contains("_offset"), "{reason}"),
                other => panic!("expected a state error, got {other:?}"),
            }
        }
    }
}

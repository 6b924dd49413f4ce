//! How a partition consumer judges what comes back to it: a decoded block against the
//! table's allowance of broken messages, and the table's answer to a written block.
//! Each either lets the consumer go on or names the error that ends it; its supervisor
//! then starts a new one from the stored position, so an error loses and doubles nothing.

use crate::format::{DecodedBlock, FormatError};
use crate::table::{ApplyOutcome, Decision};

use super::status::ConsumerKey;
use super::IngestError;

/// A decoded block, or why the consumer stops: the decoder failed (`Format`), or more
/// messages were broken than `kafka_skip_broken_messages` allows (`BrokenMessages`,
/// naming the first). Up to the allowance, broken messages are skipped.
pub fn decoded(
    key: &ConsumerKey,
    decoded: Result<DecodedBlock, FormatError>,
    allowed: u64,
) -> Result<DecodedBlock, IngestError> {
    let decoded = decoded.map_err(|e| IngestError::Format {
        key: Box::new(key.clone()),
        reason: e.to_string(),
    })?;
    match decoded.broken.first() {
        Some(first) if decoded.broken.len() as u64 > allowed => Err(IngestError::BrokenMessages {
            key: Box::new(key.clone()),
            offset: first.offset,
            error: first.error.clone(),
            broken: decoded.broken.len(),
            allowed,
        }),
        _ => Ok(decoded),
    }
}

/// The rows a view's write stored, or why the consumer stops. A block the table already
/// holds (by position or by hash) stored nothing and is no error: it is a retried range.
/// A block that overlaps the stored position means this consumer read from a stale one
/// (`StalePosition`); an older assignment epoch than the partition's last writer means
/// the partition is another consumer's now (`Fenced`).
pub fn written(key: &ConsumerKey, view: &str, outcome: ApplyOutcome) -> Result<u64, IngestError> {
    match outcome {
        ApplyOutcome::Stored { rows, .. } => Ok(rows),
        ApplyOutcome::Skipped(Decision::Overlap { next_offset }) => {
            Err(IngestError::StalePosition {
                key: Box::new(key.clone()),
                view: view.to_string(),
                next_offset,
            })
        }
        ApplyOutcome::Skipped(Decision::StaleEpoch { epoch, highest }) => {
            Err(IngestError::Fenced {
                key: Box::new(key.clone()),
                epoch,
                highest,
            })
        }
        ApplyOutcome::Skipped(
            Decision::AlreadyApplied { .. } | Decision::Duplicate { .. } | Decision::Apply,
        ) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use std::sync::Arc;

    use super::*;
    use crate::format::BrokenMessage;

    fn key() -> ConsumerKey {
        ConsumerKey {
            table: "queue".into(),
            topic: "events".into(),
            partition: 0,
        }
    }

    fn block(broken_at: &[i64]) -> DecodedBlock {
        DecodedBlock {
            batch: RecordBatch::new_empty(Arc::new(Schema::empty())),
            broken: broken_at
                .iter()
                .map(|&offset| BrokenMessage {
                    offset,
                    error: format!("bad json at {offset}"),
                })
                .collect(),
        }
    }

    #[test]
    fn a_clean_block_passes() {
        let ok = decoded(&key(), Ok(block(&[])), 0).expect("clean block");
        assert!(ok.broken.is_empty());
    }

    #[test]
    fn broken_messages_up_to_the_allowance_are_skipped() {
        let ok = decoded(&key(), Ok(block(&[3, 8])), 2).expect("within allowance");
        assert_eq!(ok.broken.len(), 2, "kept for the skipped-messages count");
    }

    #[test]
    fn one_broken_message_past_the_allowance_fails_the_block() {
        match decoded(&key(), Ok(block(&[3, 8, 9])), 2) {
            Err(IngestError::BrokenMessages {
                key: k,
                offset,
                error,
                broken,
                allowed,
            }) => {
                assert_eq!(*k, key());
                assert_eq!((offset, broken, allowed), (3, 3, 2));
                assert_eq!(error, "bad json at 3");
            }
            other => panic!("expected BrokenMessages, got {other:?}"),
        }
        // The default allowance is none.
        assert!(matches!(
            decoded(&key(), Ok(block(&[5])), 0),
            Err(IngestError::BrokenMessages { offset: 5, .. })
        ));
    }

    #[test]
    fn a_decoder_failure_is_a_format_error() {
        let failed = Err(FormatError::Internal(
            "no default for Nullable(String)".into(),
        ));
        match decoded(&key(), failed, 100) {
            Err(IngestError::Format { key: k, reason }) => {
                assert_eq!(*k, key());
                assert_eq!(reason, "no default for Nullable(String)");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn stored_rows_are_counted() {
        let stored = ApplyOutcome::Stored {
            seq: Some(4),
            rows: 250,
        };
        assert_eq!(written(&key(), "v", stored).expect("stored"), 250);
    }

    #[test]
    fn a_block_the_table_holds_stores_nothing_and_goes_on() {
        for skipped in [
            Decision::AlreadyApplied { next_offset: 20 },
            Decision::Duplicate { seq: 7 },
        ] {
            let outcome = ApplyOutcome::Skipped(skipped.clone());
            assert_eq!(
                written(&key(), "v", outcome).expect("skipped"),
                0,
                "{skipped:?}"
            );
        }
    }

    #[test]
    fn an_overlap_is_a_stale_position_of_that_view() {
        let outcome = ApplyOutcome::Skipped(Decision::Overlap { next_offset: 17 });
        match written(&key(), "by_user", outcome) {
            Err(IngestError::StalePosition {
                view, next_offset, ..
            }) => {
                assert_eq!(view, "by_user");
                assert_eq!(next_offset, 17);
            }
            other => panic!("expected StalePosition, got {other:?}"),
        }
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let outcome = ApplyOutcome::Skipped(Decision::StaleEpoch {
            epoch: 3,
            highest: 5,
        });
        match written(&key(), "v", outcome) {
            Err(IngestError::Fenced {
                key: k,
                epoch,
                highest,
            }) => {
                assert_eq!(*k, key());
                assert_eq!((epoch, highest), (3, 5));
            }
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
}

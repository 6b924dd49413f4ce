//! How a partition consumer judges what comes back to it: a decoded block against the
//! table's allowance of broken messages and its `kafka_handle_error_mode`, and the
//! table's answer to a written block.
//! Each either lets the consumer go on or names the error that ends it; its supervisor
//! then starts a new one from the stored position, so an error loses and doubles nothing.

use crate::catalog::HandleErrorMode;
use crate::format::{allowance, BrokenMessage, DecodedBlock, FormatError};
use crate::table::{ApplyOutcome, Decision};

use super::status::ConsumerKey;
use super::IngestError;

/// What became of a block's broken messages. Every one is counted somewhere: skipped
/// under the allowance, a row of its own (stream mode), or a dead letter.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BrokenFate {
    /// Skipped under `kafka_skip_broken_messages`: in no table, in no queue.
    pub skipped: usize,
    /// Rows with `_error` and `_raw_message` set (`kafka_handle_error_mode = 'stream'`).
    pub streamed: usize,
    /// For `system.dead_letter_queue` (`kafka_handle_error_mode = 'dead_letter_queue'`).
    pub dead_letters: Vec<BrokenMessage>,
}

impl BrokenFate {
    /// The broken messages that left no row in any table.
    pub fn without_row(&self) -> u64 {
        (self.skipped + self.dead_letters.len()) as u64
    }
}

/// A decoded block and what becomes of its broken messages, or why the consumer stops:
/// the decoder failed (`Format`), or, in mode `default`, more messages were broken than
/// `kafka_skip_broken_messages` allows (`BrokenMessages`, naming the one past the
/// allowance, where ClickHouse stops too). The allowance is spent first in every mode, as
/// in ClickHouse; past it, `stream` makes rows of them and `dead_letter_queue` dead letters.
pub fn decoded(
    key: &ConsumerKey,
    decoded: Result<DecodedBlock, FormatError>,
    allowed: u64,
    mode: HandleErrorMode,
) -> Result<(DecodedBlock, BrokenFate), IngestError> {
    let decoded = decoded.map_err(|e| IngestError::Format {
        key: Box::new(key.clone()),
        reason: e.to_string(),
    })?;
    let (skipped, past) = allowance(&decoded.broken, allowed);
    let mut fate = BrokenFate {
        skipped: skipped.len(),
        ..BrokenFate::default()
    };
    match (mode, past.first()) {
        (_, None) => {}
        (HandleErrorMode::Default, Some(first)) => {
            return Err(IngestError::BrokenMessages {
                key: Box::new(key.clone()),
                offset: first.offset,
                error: first.error.clone(),
                broken: decoded.broken.len(),
                allowed,
            })
        }
        (HandleErrorMode::Stream, Some(_)) => fate.streamed = past.len(),
        (HandleErrorMode::DeadLetterQueue, Some(_)) => fate.dead_letters = past.to_vec(),
    }
    Ok((decoded, fate))
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

    const DEFAULT: HandleErrorMode = HandleErrorMode::Default;

    #[test]
    fn a_clean_block_passes() {
        for mode in [
            DEFAULT,
            HandleErrorMode::Stream,
            HandleErrorMode::DeadLetterQueue,
        ] {
            let (ok, fate) = decoded(&key(), Ok(block(&[])), 0, mode).expect("clean block");
            assert!(ok.broken.is_empty());
            assert_eq!(fate, BrokenFate::default());
        }
    }

    #[test]
    fn broken_messages_up_to_the_allowance_are_skipped() {
        let (ok, fate) = decoded(&key(), Ok(block(&[3, 8])), 2, DEFAULT).expect("within");
        assert_eq!(ok.broken.len(), 2);
        assert_eq!(fate.skipped, 2);
        assert_eq!(fate.without_row(), 2);
    }

    #[test]
    fn one_broken_message_past_the_allowance_fails_the_block_at_that_message() {
        match decoded(&key(), Ok(block(&[3, 8, 9])), 2, DEFAULT) {
            Err(IngestError::BrokenMessages {
                key: k,
                offset,
                error,
                broken,
                allowed,
            }) => {
                assert_eq!(*k, key());
                assert_eq!((offset, broken, allowed), (9, 3, 2));
                assert_eq!(error, "bad json at 9");
            }
            other => panic!("expected BrokenMessages, got {other:?}"),
        }
        // The default allowance is none.
        assert!(matches!(
            decoded(&key(), Ok(block(&[5])), 0, DEFAULT),
            Err(IngestError::BrokenMessages { offset: 5, .. })
        ));
    }

    #[test]
    fn stream_mode_makes_rows_of_what_is_past_the_allowance() {
        let (_, fate) =
            decoded(&key(), Ok(block(&[3, 8, 9])), 1, HandleErrorMode::Stream).expect("stream");
        assert_eq!(
            fate,
            BrokenFate {
                skipped: 1,
                streamed: 2,
                dead_letters: Vec::new()
            }
        );
        assert_eq!(fate.without_row(), 1);
    }

    #[test]
    fn dead_letter_mode_queues_what_is_past_the_allowance() {
        let (_, fate) = decoded(
            &key(),
            Ok(block(&[3, 8, 9])),
            1,
            HandleErrorMode::DeadLetterQueue,
        )
        .expect("dead letters");
        assert_eq!(fate.skipped, 1);
        assert_eq!(fate.streamed, 0);
        let offsets: Vec<i64> = fate.dead_letters.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, vec![8, 9]);
        assert_eq!(fate.dead_letters[0].error, "bad json at 8");
        assert_eq!(fate.without_row(), 3);
    }

    #[test]
    fn a_decoder_failure_is_a_format_error() {
        let failed = Err(FormatError::Internal(
            "no default for Nullable(String)".into(),
        ));
        match decoded(&key(), failed, 100, HandleErrorMode::DeadLetterQueue) {
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

//! The Kafka side of resetting a Kafka table's positions: its partitions and their
//! ranges, the offset a timestamp names, and the group's committed offsets, read and
//! written as `kafka-consumer-groups --reset-offsets` does. Every call blocks (librdkafka);
//! callers run them off the async workers.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::cause::{of_error, Cause};
use super::client::KafkaClientDefaults;
use super::client_context::{serve_events, with_failure_logs, CauseContext};
use crate::catalog::rewind::ResetTo;
use crate::catalog::KafkaSettings;

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OffsetResetError {
    /// `cause` names why when the error or the client's callbacks told it, and then
    /// stands for librdkafka's bare error.
    #[error("{what}: {}", cause.as_ref().map_or_else(|| source.to_string(), |c| c.to_string()))]
    Kafka {
        what: String,
        #[source]
        source: KafkaError,
        cause: Option<Box<Cause>>,
    },
    #[error("topic {0} does not exist on the brokers")]
    NoTopic(String),
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    NoPartition {
        topic: String,
        partition: i32,
        count: usize,
    },
}

/// What the broker knows of one partition before a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub topic: String,
    pub partition: i32,
    /// The first offset the broker still holds.
    pub low: i64,
    /// The offset the next message will get.
    pub high: i64,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// For a reset to a timestamp: the first offset at or after it (none: past the end).
    pub at_time: Option<i64>,
}

/// A client in the table's group that never joins it: it reads and commits offsets only.
pub struct ResetClient {
    consumer: BaseConsumer<CauseContext>,
}

/// A failure to make the client, whose cause only the error itself can name.
fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> OffsetResetError {
    let what = what.into();
    move |source| OffsetResetError::Kafka {
        what,
        cause: of_error(&source).map(Box::new),
        source,
    }
}

impl ResetClient {
    pub fn new(
        defaults: &KafkaClientDefaults,
        settings: &KafkaSettings,
        table: &str,
    ) -> Result<ResetClient, OffsetResetError> {
        let config = with_failure_logs(
            defaults.consumer_config(settings, &format!("sluice-reset-offsets/{table}")),
        );
        // Quiet: the statement's error tells the cause to whoever asked.
        let context = CauseContext::new(table, &config).quiet();
        let consumer = config.create_with_context(context).map_err(kafka(format!(
            "a Kafka client for brokers {}",
            settings.broker_list
        )))?;
        Ok(ResetClient { consumer })
    }

    /// A failed request's error, with the cause the client heard: its queued events
    /// (librdkafka's log lines, which name why a connection failed) are served first.
    fn kafka(&self, what: impl Into<String>) -> impl FnOnce(KafkaError) -> OffsetResetError + '_ {
        let what = what.into();
        move |source| {
            serve_events(&self.consumer);
            OffsetResetError::Kafka {
                what,
                cause: self.consumer.context().cause_of(&source).map(Box::new),
                source,
            }
        }
    }

    /// The ranges of the partitions asked for (all when `wanted` is empty) of each topic,
    /// with the group's committed offsets and, for a timestamp, the offsets it names.
    pub fn ranges(
        &self,
        topics: &[String],
        wanted: &[i32],
        to: ResetTo,
    ) -> Result<Vec<PartitionRange>, OffsetResetError> {
        let mut out = Vec::new();
        for topic in topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic.as_str()), REQUEST_TIMEOUT)
                .map_err(self.kafka(format!("the metadata of topic {topic}")))?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(OffsetResetError::NoTopic(topic.clone()));
            }
            for p in wanted {
                if !partitions.contains(p) {
                    return Err(OffsetResetError::NoPartition {
                        topic: topic.clone(),
                        partition: *p,
                        count: partitions.len(),
                    });
                }
            }
            let chosen: Vec<i32> = partitions
                .into_iter()
                .filter(|p| wanted.is_empty() || wanted.contains(p))
                .collect();
            let committed = self.committed(topic, &chosen)?;
            let at_time = match to {
                ResetTo::Timestamp(ms) => self.offsets_at(topic, &chosen, ms)?,
                _ => BTreeMap::new(),
            };
            for partition in chosen {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                    .map_err(self.kafka(format!(
                        "the offsets held for {topic} partition {partition}"
                    )))?;
                out.push(PartitionRange {
                    topic: topic.clone(),
                    partition,
                    low,
                    high,
                    committed: committed.get(&partition).copied().flatten(),
                    at_time: at_time.get(&partition).copied().flatten(),
                });
            }
        }
        Ok(out)
    }

    fn committed(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>, OffsetResetError> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(self.kafka(format!("the group's committed offsets of {topic}")))?;
        Ok(offsets_by_partition(&committed))
    }

    fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> Result<BTreeMap<i32, Option<i64>>, OffsetResetError> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(ms))
                .map_err(self.kafka(format!("asking for {topic} partition {p} at a time")))?;
        }
        let found = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(self.kafka(format!("the offsets of {topic} at a timestamp")))?;
        Ok(offsets_by_partition(&found))
    }

    /// Commits `next` as the group's offset of each partition and waits for the broker.
    pub fn commit(&self, moves: &[(String, i32, i64)]) -> Result<(), OffsetResetError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in moves {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(self.kafka(format!("committing {topic} partition {partition}")))?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(self.kafka("committing the group's new offsets"))
    }

    /// The moves whose committed offset is not (any more) what was committed.
    pub fn overwritten(
        &self,
        moves: &[(String, i32, i64)],
    ) -> Result<Vec<(String, i32, i64)>, OffsetResetError> {
        let mut out = Vec::new();
        let mut by_topic: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for (topic, partition, next) in moves {
            by_topic
                .entry(topic.as_str())
                .or_default()
                .push((*partition, *next));
        }
        for (topic, wanted) in by_topic {
            let partitions: Vec<i32> = wanted.iter().map(|(p, _)| *p).collect();
            let committed = self.committed(topic, &partitions)?;
            for (partition, next) in wanted {
                if committed.get(&partition).copied().flatten() != Some(next) {
                    out.push((topic.to_string(), partition, next));
                }
            }
        }
        Ok(out)
    }
}

/// A broker's answer per partition; a logical offset (none committed, no message at
/// that time) is no position.
fn offsets_by_partition(list: &TopicPartitionList) -> BTreeMap<i32, Option<i64>> {
    list.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), Some(o)),
            _ => (e.partition(), None),
        })
        .collect()
}

/// Where a partition goes. `from` is where the table would resume (none: from the
/// beginning). Offsets are held to what the broker holds, `[low, high]`, as
/// `kafka-consumer-groups` does.
pub fn target_offset(to: ResetTo, from: Option<i64>, range: &PartitionRange) -> i64 {
    let (low, high) = (range.low, range.high.max(range.low));
    let wanted = match to {
        ResetTo::Earliest => low,
        ResetTo::Latest => high,
        ResetTo::Offset(o) => o,
        ResetTo::Timestamp(_) => range.at_time.unwrap_or(high),
        ResetTo::ShiftBy(n) => from.unwrap_or(low).saturating_add(n),
    };
    wanted.clamp(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(low: i64, high: i64, at_time: Option<i64>) -> PartitionRange {
        PartitionRange {
            topic: "t".into(),
            partition: 0,
            low,
            high,
            committed: None,
            at_time,
        }
    }

    #[test]
    fn targets_are_held_to_what_the_broker_holds() {
        let r = range(100, 1_000, Some(400));
        assert_eq!(target_offset(ResetTo::Earliest, Some(900), &r), 100);
        assert_eq!(target_offset(ResetTo::Latest, Some(900), &r), 1_000);
        assert_eq!(target_offset(ResetTo::Offset(500), Some(900), &r), 500);
        assert_eq!(target_offset(ResetTo::Offset(5), Some(900), &r), 100);
        assert_eq!(target_offset(ResetTo::Offset(5_000), None, &r), 1_000);
        assert_eq!(target_offset(ResetTo::Timestamp(1), Some(900), &r), 400);
        // No message at or after the time: the end.
        assert_eq!(
            target_offset(ResetTo::Timestamp(1), None, &range(100, 1_000, None)),
            1_000
        );
        assert_eq!(target_offset(ResetTo::ShiftBy(-300), Some(900), &r), 600);
        assert_eq!(target_offset(ResetTo::ShiftBy(-3_000), Some(900), &r), 100);
        // Nothing stored: the table would read from the beginning, so a shift counts from there.
        assert_eq!(target_offset(ResetTo::ShiftBy(50), None, &r), 150);
        assert_eq!(
            target_offset(ResetTo::ShiftBy(i64::MAX), Some(900), &r),
            1_000
        );
    }
}

//! How many partitions each topic of a consuming Kafka table has, from Kafka's metadata:
//! the one place that asks, for the node's supervisor and the meta leader's assigner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use super::client::KafkaClientDefaults;
use crate::catalog::{Catalog, KafkaSettings};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Partition counts by (Kafka table, topic).
pub type PartitionCounts = BTreeMap<(String, String), i32>;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("topic {topic}: creating a client: {source}")]
    Client {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("metadata of topic {topic}: {source}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic} not found")]
    NoTopic { topic: String },
    #[error("topic {topic}: {error}")]
    Topic { topic: String, error: String },
    #[error("topic {topic}: the metadata lookup stopped: {reason}")]
    Stopped { topic: String, reason: String },
}

/// The partition count of `topic`, read with the table's client settings.
pub async fn partition_count(
    kafka: Arc<KafkaClientDefaults>,
    settings: KafkaSettings,
    topic: String,
) -> Result<i32, DiscoveryError> {
    let name = topic.clone();
    tokio::task::spawn_blocking(move || partition_count_blocking(&kafka, &settings, &topic))
        .await
        .unwrap_or_else(|e| {
            Err(DiscoveryError::Stopped {
                topic: name,
                reason: e.to_string(),
            })
        })
}

fn partition_count_blocking(
    kafka: &KafkaClientDefaults,
    settings: &KafkaSettings,
    topic: &str,
) -> Result<i32, DiscoveryError> {
    let client: BaseConsumer =
        kafka
            .client_config(settings)
            .create()
            .map_err(|source| DiscoveryError::Client {
                topic: topic.to_string(),
                source,
            })?;
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|source| DiscoveryError::Metadata {
            topic: topic.to_string(),
            source,
        })?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| DiscoveryError::NoTopic {
            topic: topic.to_string(),
        })?;
    if let Some(error) = t.error() {
        return Err(DiscoveryError::Topic {
            topic: topic.to_string(),
            error: format!("{error:?}"),
        });
    }
    Ok(t.partitions().len() as i32)
}

/// Every topic of every consuming Kafka table, each with its count or why it has none.
pub async fn discover(
    kafka: &Arc<KafkaClientDefaults>,
    catalog: &Catalog,
) -> Vec<((String, String), Result<i32, DiscoveryError>)> {
    let lookups = catalog
        .consuming_kafka_tables()
        .flat_map(|(table, settings)| {
            settings.topic_list.iter().map(move |topic| {
                let key = (table.name.clone(), topic.clone());
                let found = partition_count(kafka.clone(), settings.clone(), topic.clone());
                async move { (key, found.await) }
            })
        })
        .collect::<Vec<_>>();
    futures::future::join_all(lookups).await
}

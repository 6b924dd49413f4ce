//! How many partitions each topic of a consuming Kafka table has, from Kafka's metadata:
//! the one place that asks, for the node's supervisor and the meta leader's assigner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::cause::{of_code, Cause};
use super::client::KafkaClientDefaults;
use super::client_context::{serve_events, with_failure_logs, CauseContext};
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
    /// The metadata request failed; `cause` names why when the client heard it, and then
    /// stands for librdkafka's bare "transport failure".
    #[error("metadata of topic {topic}: {}", cause.as_ref().map_or_else(|| source.to_string(), |c| c.to_string()))]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
        cause: Option<Box<Cause>>,
    },
    #[error("topic {topic} not found")]
    NoTopic { topic: String },
    /// The broker answered for the topic with an error; `cause` names the topic.
    #[error("{cause}")]
    Topic { topic: String, cause: Box<Cause> },
    #[error("topic {topic}: the metadata lookup stopped: {reason}")]
    Stopped { topic: String, reason: String },
}

/// The partition count of `topic`, read with the table's client settings.
pub async fn partition_count(
    kafka: Arc<KafkaClientDefaults>,
    table: String,
    settings: KafkaSettings,
    topic: String,
) -> Result<i32, DiscoveryError> {
    let name = topic.clone();
    tokio::task::spawn_blocking(move || partition_count_blocking(&kafka, &table, &settings, &topic))
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
    table: &str,
    settings: &KafkaSettings,
    topic: &str,
) -> Result<i32, DiscoveryError> {
    let config = with_failure_logs(kafka.client_config(settings));
    // Quiet: a lookup runs every few seconds, and the supervisor logs what it returns.
    let context = CauseContext::new(table, &config).for_topic(topic).quiet();
    let client: BaseConsumer<CauseContext> =
        config
            .create_with_context(context)
            .map_err(|source| DiscoveryError::Client {
                topic: topic.to_string(),
                source,
            })?;
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|source| {
            serve_events(&client);
            DiscoveryError::Metadata {
                topic: topic.to_string(),
                cause: client.context().cause_of(&source).map(Box::new),
                source,
            }
        })?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| DiscoveryError::NoTopic {
            topic: topic.to_string(),
        })?;
    if let Some(error) = t.error() {
        let code = RDKafkaErrorCode::from(error);
        let cause = of_code(code)
            .map(|c| c.naming(Some(topic), None, None))
            .unwrap_or_else(|| Cause::Other {
                code: format!("{code:?}"),
                reason: format!("topic {topic}: {code}"),
            });
        return Err(DiscoveryError::Topic {
            topic: topic.to_string(),
            cause: Box::new(cause),
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
                let found = partition_count(
                    kafka.clone(),
                    table.name.clone(),
                    settings.clone(),
                    topic.clone(),
                );
                async move { (key, found.await) }
            })
        })
        .collect::<Vec<_>>();
    futures::future::join_all(lookups).await
}

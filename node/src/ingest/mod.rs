//! Ingestion actors: a supervisor per node and one consumer actor per (Kafka table, topic,
//! partition), restarted with backoff when they fail.
//!
//! Actors are thin: they own lifecycles and talk by message; the work of a consumer is in
//! `pipeline`, and its decisions, pure and tested without Kafka, beside it: when to cut a
//! block in `block_cutter`, where to resume and what a view still needs in `resume`, how
//! a decoded block and a write's answer are judged in `verdict`, where stored rows are
//! pushed in `route`, what an idle consumer does in `idle`, why a Kafka client failed in
//! `cause` (heard through `client_context`), when a consumer reads its
//! partition's watermarks in `watermarks`, and its messages/s and rows/s in `rate`. A
//! failing consumer never takes
//! the node down: its error is kept in `status` and shown in `system.kafka_consumers`.

pub mod block_cutter;
pub mod cause;
pub mod client;
pub mod client_context;
pub mod consumer;
pub mod discovery;
pub mod idle;
pub mod offset_reset;
pub mod open_block;
pub mod pipeline;
pub mod preflight;
pub mod rate;
pub mod resume;
pub mod route;
pub mod sink;
pub mod status;
pub mod supervisor;
pub mod verdict;
pub mod watermarks;

use rdkafka::error::KafkaError;

use status::ConsumerKey;

use crate::table::{ApplyOutcome, Block, PositionKey};
use crate::topology::Slot;

/// Why the cluster did not serve a consumer's read or write. Either way the consumer
/// stops and starts again from the stored position, so nothing is lost or doubled.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The partition is no longer this node's at this epoch.
    #[error("fenced: {slot} was given to this node at epoch {epoch} and is {} now", .current.map_or("another node's".to_string(), |e| format!("at epoch {e}")))]
    NotAssigned {
        slot: Slot,
        epoch: u64,
        current: Option<u64>,
    },
    /// The table's group did not take the block or answer the read (no leader, a
    /// refusal, a stopped replica): the coordinator's own error inside.
    #[error("table {table}: {source}")]
    Cluster {
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What ingestion needs from the cluster: where a consumer runs, and the write path of its
/// blocks (replicated, acknowledged once a majority of the table's group has them on disk
/// and its leader applied them).
#[async_trait::async_trait]
pub trait Replica: Send + Sync {
    /// The epoch at which this node was given `key`, if it runs that consumer.
    fn assigned_epoch(&self, key: &ConsumerKey) -> Option<u64>;
    /// The next offset `table` stored for a source partition, as of every write
    /// acknowledged so far (read from a replica of the table, wherever it is).
    async fn stored_offset(
        &self,
        table: &str,
        key: &PositionKey,
    ) -> Result<Option<i64>, ReplicaError>;
    /// Writes a block read under the assignment of `key` at `epoch`; refused once the
    /// partition was given to another node or epoch.
    async fn write_block(
        &self,
        key: &ConsumerKey,
        epoch: u64,
        block: Block,
    ) -> Result<ApplyOutcome, ReplicaError>;
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A Kafka call failed; `cause` names why when the error or the client's callbacks
    /// told it, and then stands for the call's bare error ("timed out").
    #[error("{}/{}/{}: {}", key.table, key.topic, key.partition, cause.as_ref().map_or_else(|| format!("kafka: {source}"), |c| c.to_string()))]
    Kafka {
        key: Box<ConsumerKey>,
        #[source]
        source: KafkaError,
        cause: Option<Box<cause::Cause>>,
    },
    #[error("{}/{}/{}: {broken} broken messages in one block, more than kafka_skip_broken_messages = {allowed}; stopped at offset {offset} (kafka_handle_error_mode = 'default'): {error}", key.table, key.topic, key.partition)]
    BrokenMessages {
        key: Box<ConsumerKey>,
        offset: i64,
        error: String,
        broken: usize,
        allowed: u64,
    },
    #[error("{}/{}/{}: recording dead letters: {reason}", key.table, key.topic, key.partition)]
    DeadLetters {
        key: Box<ConsumerKey>,
        reason: String,
    },
    #[error("{}/{}/{}: decode: {reason}", key.table, key.topic, key.partition)]
    Format {
        key: Box<ConsumerKey>,
        reason: String,
    },
    #[error("{}/{}/{}: view {view}: {reason}", key.table, key.topic, key.partition)]
    View {
        key: Box<ConsumerKey>,
        view: String,
        reason: String,
    },
    #[error("{}/{}/{}: view {view}: the table already holds offsets up to {next_offset}; re-reading from there", key.table, key.topic, key.partition)]
    StalePosition {
        key: Box<ConsumerKey>,
        view: String,
        next_offset: i64,
    },
    #[error("{}/{}/{}: stalled: the partition ends at offset {end} but nothing past offset {next} arrived for {idle_secs} s; restarting the consumer", key.table, key.topic, key.partition)]
    Stalled {
        key: Box<ConsumerKey>,
        next: i64,
        end: i64,
        idle_secs: u64,
    },
    #[error("{}/{}/{}: nothing arrived for {idle_secs} s and the partition's end could not be read ({error}); restarting the consumer with a new connection", key.table, key.topic, key.partition)]
    Unresponsive {
        key: Box<ConsumerKey>,
        idle_secs: u64,
        error: String,
    },
    #[error("{}/{}/{}: view {view} could not push rows to Kafka: {reason}", key.table, key.topic, key.partition)]
    Push {
        key: Box<ConsumerKey>,
        view: String,
        reason: String,
    },
    #[error("{}/{}/{}: fenced: this consumer's assignment epoch {epoch} is older than epoch {highest}, which already wrote to the partition; it belongs to another consumer now", key.table, key.topic, key.partition)]
    Fenced {
        key: Box<ConsumerKey>,
        epoch: u64,
        highest: u64,
    },
    #[error("table {0} is not a Kafka table")]
    NotKafka(String),
    #[error("state: {0}")]
    State(String),
    #[error("{}/{}/{}: {source}", key.table, key.topic, key.partition)]
    Replica {
        key: Box<ConsumerKey>,
        #[source]
        source: ReplicaError,
    },
}

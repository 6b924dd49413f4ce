//! The node's Prometheus endpoint (`--metrics-addr`, GET /metrics): this node's
//! consumers, its Raft state and its tables, read from the live state at each scrape.
//!
//! Nothing is kept twice: a scrape reads the consumer registry, Raft's metrics and the
//! tables' row counters, the same sources as `system.kafka_consumers` and
//! `system.replicas`. Counters count since the process started, as Prometheus expects.
//! Each node shows its own consumers: a table's lag across the cluster is the sum of
//! `sluice_consumer_lag` over the nodes.

use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::cluster::Cluster;
use crate::ingest::status::{ConsumerKey, ConsumerRegistry, ConsumerSnapshot};
use crate::state::NodeState;

/// The path Prometheus scrapes.
pub const PATH: &str = "/metrics";

/// Reads the node's state at each scrape.
pub struct NodeCollector {
    pub consumers: Arc<ConsumerRegistry>,
    pub cluster: Arc<Cluster>,
    pub state: Arc<NodeState>,
}

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;

/// A consumer counter: its name, its help, and how to read it from a snapshot.
type ConsumerCounter = (&'static str, &'static str, fn(&ConsumerSnapshot) -> u64);

/// A consumer gauge that may be unknown: its name, its help, and how to read it.
type ConsumerGauge = (
    &'static str,
    &'static str,
    fn(&ConsumerSnapshot) -> Option<i64>,
);

/// One metric family: its name, help, type, and a value per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    family(
        encoder,
        name,
        help,
        MetricType::Gauge,
        [(Labels::new(), ConstGauge::new(value))],
    )
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let consumers = self.consumers.snapshot();
        let labels = |key: &ConsumerKey| -> Labels {
            vec![
                ("table", key.table.clone()),
                ("topic", key.topic.clone()),
                ("partition", key.partition.to_string()),
            ]
        };
        let counters: [ConsumerCounter; 6] = [
            (
                "sluice_consumer_messages_read",
                "Kafka messages this node's consumer of the partition read.",
                |s| s.num_messages_read,
            ),
            (
                "sluice_consumer_rows_written",
                "Rows the consumer's blocks stored in the target tables.",
                |s| s.num_rows_written,
            ),
            (
                "sluice_consumer_skipped_messages",
                "Malformed messages that left no row: skipped under kafka_skip_broken_messages or sent to system.dead_letter_queue.",
                |s| s.num_skipped_messages,
            ),
            (
                "sluice_consumer_commits",
                "Blocks written and their offsets committed.",
                |s| s.num_commits,
            ),
            (
                "sluice_consumer_errors",
                "Errors the consumer met (consume, commit, write); the last ones are in system.kafka_consumers.",
                |s| s.num_errors,
            ),
            (
                "sluice_consumer_restarts",
                "Times the consumer was restarted after a failure.",
                |s| s.num_restarts,
            ),
        ];
        for (name, help, value) in counters {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                consumers
                    .iter()
                    .map(|(k, s)| (labels(k), ConstCounter::new(value(s)))),
            )?;
        }
        family(
            &mut encoder,
            "sluice_consumer_current_offset",
            "The next offset the consumer reads in its partition.",
            MetricType::Gauge,
            consumers
                .iter()
                .map(|(k, s)| (labels(k), ConstGauge::new(s.current_offset))),
        )?;
        // Lag and the two ends it is taken between; a consumer that has not read its
        // partition's watermarks yet has no sample rather than a made-up one.
        let known: [ConsumerGauge; 3] = [
            (
                "sluice_consumer_high_watermark",
                "The partition's high watermark (the offset of its next message), as the consumer last read it from the broker.",
                |s| s.high_watermark,
            ),
            (
                "sluice_consumer_stored_offset",
                "Where the consumer resumes: the lowest next offset its views' tables stored.",
                |s| s.stored_offset,
            ),
            (
                "sluice_consumer_lag",
                "Messages in the partition past the stored offset (high watermark - stored offset).",
                |s| s.lag().map(to_i64),
            ),
        ];
        for (name, help, value) in known {
            family(
                &mut encoder,
                name,
                help,
                MetricType::Gauge,
                consumers
                    .iter()
                    .filter_map(|(k, s)| Some((labels(k), ConstGauge::new(value(s)?)))),
            )?;
        }
        family(
            &mut encoder,
            "sluice_consumer_active",
            "1 while the consumer runs on this node.",
            MetricType::Gauge,
            consumers
                .iter()
                .map(|(k, s)| (labels(k), ConstGauge::new(i64::from(s.is_currently_used)))),
        )?;
        family(
            &mut encoder,
            "sluice_consumer_last_poll_timestamp_seconds",
            "When the consumer last received messages (Unix time).",
            MetricType::Gauge,
            consumers
                .iter()
                .map(|(k, s)| (labels(k), ConstGauge::new(s.last_poll_time))),
        )?;

        let view = self.cluster.view();
        gauge(
            &mut encoder,
            "sluice_raft_term",
            "The Raft term this node is in.",
            to_i64(view.term),
        )?;
        gauge(
            &mut encoder,
            "sluice_raft_last_log_index",
            "The last index of this node's Raft log.",
            to_i64(view.last_log_index),
        )?;
        gauge(
            &mut encoder,
            "sluice_raft_applied_index",
            "The last Raft log index this node applied.",
            to_i64(view.applied_index),
        )?;
        gauge(
            &mut encoder,
            "sluice_raft_leader",
            "1 while this node leads the cluster.",
            i64::from(view.leader == Some(view.node_id)),
        )?;
        gauge(
            &mut encoder,
            "sluice_in_quorum",
            "1 while this node is in a working quorum (what readiness reports).",
            i64::from(view.in_quorum),
        )?;
        gauge(
            &mut encoder,
            "sluice_draining",
            "1 while this node drains (on its way out).",
            i64::from(self.cluster.is_draining()),
        )?;
        gauge(
            &mut encoder,
            "sluice_cluster_members",
            "Members of the cluster as this node sees them.",
            i64::try_from(view.members.len()).unwrap_or(i64::MAX),
        )?;
        let owned = self
            .state
            .assignments()
            .slots
            .iter()
            .filter(|(_, o)| o.node == view.node_id)
            .count();
        gauge(
            &mut encoder,
            "sluice_owned_partitions",
            "Kafka partitions assigned to this node.",
            i64::try_from(owned).unwrap_or(i64::MAX),
        )?;
        let catalog = self.state.catalog();
        let tables = catalog
            .tables
            .values()
            .filter(|t| t.kafka().is_none())
            .filter(|t| self.cluster.hosted_group_of(&t.name).is_some())
            .filter_map(|t| {
                let rows = self.state.row_count(&t.name).ok()?;
                Some((
                    vec![("table", t.name.clone())],
                    ConstGauge::new(to_i64(rows)),
                ))
            })
            .collect::<Vec<_>>();
        family(
            &mut encoder,
            "sluice_table_rows",
            "Rows in this node's replica of each table.",
            MetricType::Gauge,
            tables,
        )
    }
}

/// Serves GET /metrics on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    collector: NodeCollector,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    let app = axum::Router::new()
        .route(PATH, axum::routing::get(scrape))
        .with_state(Arc::new(registry));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn scrape(State(registry): State<Arc<Registry>>) -> axum::response::Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

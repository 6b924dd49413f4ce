//! The node's ingest supervisor: turns the catalog (and, in a cluster, this node's share
//! of the partitions) into running consumer actors, and restarts failed ones with backoff.
//!
//! Reconciling is level-based: every catalog change and every tick compares what should
//! run with what runs, so a missed message cannot leave a consumer stopped for good.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::client::KafkaClientDefaults;
use super::consumer::{ConsumerActor, ConsumerExited, StopConsumer};
use super::discovery::discover;
use super::pipeline::PartitionJob;
use super::sink::KafkaSink;
use super::status::{ConsumerKey, ConsumerRegistry};
use super::Replica;
use crate::catalog::{Catalog, TableDef, ViewDef};
use crate::shutdown::Tasks;
use crate::state::NodeState;

/// How often partitions are re-read from Kafka (new partitions, topics that appear).
const METADATA_INTERVAL: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long shutdown waits for consumers to finish their open blocks.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The supervisor's own tasks only forward messages: they stop at once.
const TASKS_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The partition of the row that shows a topic's discovery error: no partition consumer
/// exists to carry it.
const TOPIC_ROW: i32 = -1;

/// Every (Kafka table, topic) that is read: attached tables with at least one view.
fn consuming_topics(catalog: &Catalog) -> BTreeSet<(String, String)> {
    catalog
        .consuming_kafka_tables()
        .flat_map(|(table, settings)| {
            settings
                .topic_list
                .iter()
                .map(move |topic| (table.name.clone(), topic.clone()))
        })
        .collect()
}

/// Re-read the catalog and converge.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconcile;

/// Stop every consumer, finishing open blocks, and start no more; answers with how many
/// were stopped once they are.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopAll;

#[derive(Message)]
#[rtype(result = "()")]
struct PartitionsFound {
    table: String,
    topic: String,
    result: Result<i32, String>,
}

struct Running {
    addr: Addr<ConsumerActor>,
    generation: u64,
    /// The table and views the consumer was started with; a change restarts it.
    fingerprint: (TableDef, Vec<ViewDef>, u64),
    commits_at_start: u64,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Supervisor {
    node_id: String,
    state: Arc<NodeState>,
    replica: Arc<dyn Replica>,
    registry: Arc<ConsumerRegistry>,
    kafka: Arc<KafkaClientDefaults>,
    /// Producers shared by every consumer of the node, for views that push to Kafka.
    sink: Arc<KafkaSink>,
    runtime: tokio::runtime::Handle,
    /// The catalog watch and partition discoveries: stopped with the supervisor.
    tasks: Arc<Tasks>,
    running: BTreeMap<ConsumerKey, Running>,
    /// Consumers told to stop for a change (new settings, views or epoch), by generation
    /// and deadline: their replacement starts once they have finished their last block.
    /// Positions already refuse an overlapping block, so this is not what prevents
    /// duplicates; it keeps two readers of one partition from racing and one of them
    /// failing on the other's block.
    draining: BTreeMap<ConsumerKey, (u64, Instant)>,
    backoff: BTreeMap<ConsumerKey, Backoff>,
    /// Partition counts by (table, topic), from Kafka metadata.
    partitions: BTreeMap<(String, String), i32>,
    next_generation: u64,
    stopping: bool,
}

impl Supervisor {
    pub fn new(
        node_id: String,
        state: Arc<NodeState>,
        replica: Arc<dyn Replica>,
        registry: Arc<ConsumerRegistry>,
        kafka: Arc<KafkaClientDefaults>,
        runtime: tokio::runtime::Handle,
    ) -> Supervisor {
        Supervisor {
            sink: Arc::new(KafkaSink::new(kafka.clone())),
            kafka,
            node_id,
            state,
            replica,
            registry,
            runtime,
            tasks: Arc::new(Tasks::new("ingest supervisor")),
            running: BTreeMap::new(),
            draining: BTreeMap::new(),
            backoff: BTreeMap::new(),
            partitions: BTreeMap::new(),
            next_generation: 0,
            stopping: false,
        }
    }

    /// Consumers that should run here: every partition placed on this node of every
    /// attached Kafka table that has at least one view and, in a shared group, reads it.
    fn desired(&self) -> BTreeMap<ConsumerKey, (TableDef, Vec<ViewDef>, u64)> {
        let catalog = self.state.catalog();
        let shares = catalog.group_shares();
        let mut out = BTreeMap::new();
        for (table, settings) in catalog.consuming_kafka_tables() {
            let views: Vec<ViewDef> = catalog.views_of(&table.name).into_iter().cloned().collect();
            for topic in &settings.topic_list {
                let count = self
                    .partitions
                    .get(&(table.name.clone(), topic.clone()))
                    .copied()
                    .unwrap_or(0);
                for partition in (0..count).filter(|p| shares.reads(&table.name, topic, *p)) {
                    let key = ConsumerKey {
                        table: table.name.clone(),
                        topic: topic.clone(),
                        partition,
                    };
                    if let Some(epoch) = self.replica.assigned_epoch(&key) {
                        out.insert(key, (table.clone(), views.clone(), epoch));
                    }
                }
            }
        }
        out
    }

    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let desired = self.desired();
        let stale: Vec<ConsumerKey> = self
            .running
            .iter()
            .filter(|(k, r)| desired.get(*k).is_none_or(|d| *d != r.fingerprint))
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(r) = self.running.remove(&key) {
                tracing::info!(table = %key.table, topic = %key.topic, partition = key.partition, "stopping consumer");
                r.addr.do_send(StopConsumer);
                self.draining
                    .insert(key, (r.generation, Instant::now() + STOP_TIMEOUT));
            }
        }
        let now = Instant::now();
        // A consumer that did not report its end in time (a panicked task) holds no one up.
        self.draining.retain(|_, (_, deadline)| *deadline > now);
        let catalog = self.state.catalog();
        // What is not desired leaves `system.kafka_consumers`, running or not: a consumer
        // waiting out its backoff, or a topic's discovery error, of a table that was
        // dropped, detached or lost its last view would otherwise be shown for good.
        let topics = consuming_topics(&catalog);
        self.registry.retain(|k| {
            desired.contains_key(k)
                || (k.partition == TOPIC_ROW
                    && topics.contains(&(k.table.clone(), k.topic.clone())))
        });
        self.backoff.retain(|k, _| desired.contains_key(k));
        for (key, (table, views, epoch)) in desired {
            if self.running.contains_key(&key) || self.draining.contains_key(&key) {
                continue;
            }
            if self
                .backoff
                .get(&key)
                .and_then(|b| b.retry_at)
                .is_some_and(|t| t > now)
            {
                continue;
            }
            let mut targets = Vec::new();
            for v in &views {
                if let Some(t) = catalog.table(&v.target) {
                    targets.push((v.clone(), t.clone()));
                }
            }
            let status = self.registry.entry(&key);
            let job = PartitionJob {
                key: key.clone(),
                node_id: self.node_id.clone(),
                table: table.clone(),
                views: targets,
                state: self.state.clone(),
                replica: self.replica.clone(),
                epoch,
                status: status.clone(),
                kafka: self.kafka.clone(),
                sink: self.sink.clone(),
            };
            self.next_generation += 1;
            let generation = self.next_generation;
            let actor = ConsumerActor::new(
                job,
                generation,
                self.runtime.clone(),
                ctx.address().recipient(),
            );
            tracing::info!(table = %key.table, topic = %key.topic, partition = key.partition, "starting consumer");
            self.running.insert(
                key,
                Running {
                    addr: actor.start(),
                    generation,
                    fingerprint: (table, views, epoch),
                    commits_at_start: status.snapshot().num_commits,
                },
            );
        }
        // Tables whose topics no longer exist in the catalog: forget their partitions.
        self.partitions
            .retain(|(t, _), _| catalog.table(t).is_some_and(|d| d.kafka().is_some()));
    }

    fn refresh_metadata(&mut self, ctx: &mut Context<Self>) {
        let catalog = self.state.catalog();
        let addr = ctx.address();
        let kafka = self.kafka.clone();
        self.tasks.spawn_on(
            "partition discovery",
            async move {
                for ((table, topic), result) in discover(&kafka, &catalog).await {
                    addr.do_send(PartitionsFound {
                        table,
                        topic,
                        result: result.map_err(|e| e.to_string()),
                    });
                }
                Ok::<(), std::convert::Infallible>(())
            },
            &self.runtime,
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Catalog changes wake the supervisor at once; the tick covers everything else.
        let mut changes = self.state.watch_catalog();
        let addr = ctx.address();
        self.tasks.spawn_on(
            "catalog watch",
            async move {
                while changes.changed().await.is_ok() {
                    addr.do_send(Reconcile);
                }
                Ok::<(), std::convert::Infallible>(())
            },
            &self.runtime,
        );
        self.refresh_metadata(ctx);
        ctx.run_interval(METADATA_INTERVAL, |act, ctx| {
            act.refresh_metadata(ctx);
            act.reconcile(ctx);
        });
    }
}

impl Handler<Reconcile> for Supervisor {
    type Result = ();
    fn handle(&mut self, _msg: Reconcile, ctx: &mut Self::Context) {
        // A new table or view needs its partitions before consumers can start.
        self.refresh_metadata(ctx);
        self.reconcile(ctx);
    }
}

impl Handler<PartitionsFound> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: PartitionsFound, ctx: &mut Self::Context) {
        // A topic-level problem is shown on a row of its own (`TOPIC_ROW`).
        let topic_key = ConsumerKey {
            table: msg.table.clone(),
            topic: msg.topic.clone(),
            partition: TOPIC_ROW,
        };
        // A discovery started before the table was dropped (or lost its last view) must
        // not bring back a row for it.
        if !consuming_topics(&self.state.catalog())
            .contains(&(msg.table.clone(), msg.topic.clone()))
        {
            self.registry.remove(&topic_key);
            return;
        }
        match msg.result {
            Ok(count) => {
                self.registry.remove(&topic_key);
                let previous = self.partitions.insert((msg.table, msg.topic), count);
                if previous != Some(count) {
                    self.reconcile(ctx);
                }
            }
            Err(error) => {
                // A lookup runs every few seconds: the same failure is told once.
                let status = self.registry.entry(&topic_key);
                let last = status.snapshot().exceptions.last().map(|e| e.1.clone());
                if last.as_deref() != Some(error.as_str()) {
                    tracing::warn!(table = %msg.table, topic = %msg.topic, %error, "partition discovery failed");
                    status.error(error);
                } else {
                    tracing::debug!(table = %msg.table, topic = %msg.topic, %error, "partition discovery failed again");
                }
            }
        }
    }
}

impl Handler<ConsumerExited> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: ConsumerExited, ctx: &mut Self::Context) {
        if self.draining.get(&msg.key).map(|d| d.0) == Some(msg.generation) {
            // The stopped consumer finished its last block: its replacement may start.
            self.draining.remove(&msg.key);
            self.registry.entry(&msg.key).set_used(false);
            self.reconcile(ctx);
            return;
        }
        let Some(running) = self.running.get(&msg.key) else {
            return;
        };
        if running.generation != msg.generation {
            return;
        }
        let commits_at_start = running.commits_at_start;
        self.running.remove(&msg.key);
        let status = self.registry.entry(&msg.key);
        status.set_used(false);
        let Some(error) = msg.error else {
            return;
        };
        tracing::warn!(table = %msg.key.table, topic = %msg.key.topic, partition = msg.key.partition, %error, "consumer failed");
        status.error(error);
        status.restarted();
        let progressed = status.snapshot().num_commits > commits_at_start;
        let backoff = self.backoff.entry(msg.key).or_default();
        backoff.failures = if progressed { 1 } else { backoff.failures + 1 };
        let delay = BACKOFF_MIN
            .saturating_mul(1 << backoff.failures.min(6).saturating_sub(1))
            .min(BACKOFF_MAX);
        backoff.retry_at = Some(Instant::now() + delay);
        ctx.run_later(delay, |act, ctx| act.reconcile(ctx));
    }
}

impl Handler<StopAll> for Supervisor {
    type Result = ResponseActFuture<Self, usize>;
    fn handle(&mut self, _msg: StopAll, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let stops: Vec<_> = std::mem::take(&mut self.running)
            .into_values()
            .map(|r| r.addr.send(StopConsumer))
            .collect();
        let count = stops.len();
        let tasks = self.tasks.clone();
        Box::pin(
            async move {
                let _ = tokio::time::timeout(STOP_TIMEOUT, futures::future::join_all(stops)).await;
                tasks.stop(TASKS_STOP_TIMEOUT).await;
                count
            }
            .into_actor(self),
        )
    }
}

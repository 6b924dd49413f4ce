//! The work of one partition consumer: read from the stored position, cut blocks, decode,
//! run the views, write each view's block, then commit the Kafka group offset.
//!
//! Where to resume is the target tables' stored position. Kafka's committed offset stands
//! in for a view that has stored nothing yet, and moves a view ahead only when another
//! table of its group read the partition since (see `resume`); otherwise it is a gauge for
//! lag tools. Each view keeps its own position, so a view that is ahead skips what it has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer as RdStreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::block_cutter::{BlockCutter, BlockLimits};
use super::client::KafkaClientDefaults;
use super::client_context::{with_failure_logs, CauseContext};
use super::idle::{fetched_to, stall_verdict, GroupOffset, StallWatch};
use super::open_block::OpenBlock;
use super::resume::{
    first_needed, group_position, group_start, needs_group_offset, rows_from, start_offset,
    stored_position,
};
use super::route;
use super::sink::KafkaSink;
use super::status::{ConsumerKey, ConsumerStatus};
use super::watermarks::{WatermarkSchedule, FETCH_TIMEOUT, QUIET_REFRESH_EVERY, REFRESH_EVERY};
use super::{verdict, IngestError, Replica};
use crate::catalog::{TableDef, ViewDef};
use crate::dead_letters::DeadLetter;
use crate::format::{allowance, decode_block, BrokenMessage, DecodedBlock, RawMessage};
use crate::query::views::run_view;
use crate::state::NodeState;
use crate::table::{Block, PositionKey, SourceRange};

/// How long to wait for the group's committed offset when a view has no stored position.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the topic's metadata is waited for before the partition is assigned.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping consumer waits for its last group commit.
pub const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a coordinator that is not ready yet is waited for.
const COMMITTED_RETRY_FOR: Duration = Duration::from_secs(30);

/// Everything a partition consumer needs, fixed for its lifetime: a catalog change that
/// touches the table or its views restarts the consumer with a new job.
#[derive(Clone)]
pub struct PartitionJob {
    pub key: ConsumerKey,
    pub node_id: String,
    pub table: TableDef,
    pub views: Vec<(ViewDef, TableDef)>,
    pub state: Arc<NodeState>,
    pub replica: Arc<dyn Replica>,
    /// The assignment epoch this consumer runs under; its blocks carry it.
    pub epoch: u64,
    pub status: Arc<ConsumerStatus>,
    pub kafka: Arc<KafkaClientDefaults>,
    pub sink: Arc<KafkaSink>,
}

struct ViewPosition {
    view: ViewDef,
    target: TableDef,
    next_offset: Option<i64>,
}

/// A partition consumer whose context names the causes of its failures.
type StreamConsumer = RdStreamConsumer<CauseContext>;

/// A message stream's next item; the stream of a consumer never ends, so an end reads as
/// an error rather than a panic.
fn next_message<'a>(
    next: Option<KafkaResult<BorrowedMessage<'a>>>,
) -> KafkaResult<BorrowedMessage<'a>> {
    next.unwrap_or(Err(KafkaError::NoMessageReceived))
}

impl PartitionJob {
    fn settings(&self) -> Result<&crate::catalog::KafkaSettings, IngestError> {
        self.table
            .kafka()
            .ok_or_else(|| IngestError::NotKafka(self.table.name.clone()))
    }

    fn create_consumer(&self) -> Result<StreamConsumer, IngestError> {
        let client_id = self.key.consumer_id(&self.node_id);
        let config = with_failure_logs(self.kafka.consumer_config(self.settings()?, &client_id));
        let context = CauseContext::new(&self.key.table, &config)
            .for_topic(&self.key.topic)
            .recording_to(self.status.clone());
        config
            .create_with_context(context)
            .map_err(|source| self.kafka_error(None, source))
    }

    /// Runs until `stop` turns true (finishing the open block) or an error.
    ///
    /// Two stages overlap: the reader polls, cuts and decodes block N+1 while the writer
    /// runs the views over block N and waits for the table's group to commit it. A
    /// one-slot channel between them bounds what is held to three blocks, and keeps the
    /// writes in offset order.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), IngestError> {
        let settings = self.settings()?.clone();
        let consumer = Arc::new(self.create_consumer()?);
        // Finding where to start waits on Raft and on the group coordinator, for up to
        // tens of seconds after a fault; a stop meanwhile has no open block to finish,
        // and must not hold up a node's shutdown.
        let (positions, start) = tokio::select! {
            (ready, ()) = async {
                tokio::join!(self.positions(&consumer), self.learn_leader(&consumer))
            } => ready?,
            () = stop_requested(&mut stop) => return Ok(()),
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.key.topic, self.key.partition, start)
            .map_err(|source| self.kafka_error(Some(&consumer), source))?;
        consumer
            .assign(&tpl)
            .map_err(|source| self.kafka_error(Some(&consumer), source))?;
        let group_offset = std::sync::Mutex::new(GroupOffset::new(Instant::now()));
        if let Offset::Offset(o) = start {
            set_group_offset(&group_offset, o);
        }
        self.status.positioned(match start {
            Offset::Offset(o) => Some(o),
            _ => None,
        });
        self.status.set_used(true);
        tracing::info!(table = %self.key.table, topic = %self.key.topic, partition = self.key.partition, ?start, "consumer assigned");

        let (blocks, decoded) = mpsc::channel(1);
        let reader = self.read_blocks(&consumer, &settings, stop, blocks, &group_offset);
        let writer = self.write_blocks(&consumer, positions, decoded, &group_offset);
        tokio::pin!(reader, writer);
        let outcome = tokio::select! {
            // The reader is done (a stop, or an error): the blocks it cut are still
            // written, since its end closes the channel and the writer drains it.
            read = &mut reader => {
                let written = writer.await;
                written.and(read)
            }
            // The writer ends early only on an error; what the reader holds is read
            // again by the partition's next consumer.
            written = &mut writer => match written {
                Ok(()) => reader.await,
                Err(e) => Err(e),
            },
        };
        self.status.set_used(false);
        let last = group_offset.lock().ok().and_then(|g| g.next());
        if let Some(next) = last {
            self.commit_final_offset(&consumer, next).await;
        }
        outcome
    }

    /// Commits where this consumer got to and waits for the broker to take it: the table
    /// of the group that reads the partition next starts from there. Losing it costs only
    /// that handover's precision (the group's next reader falls back on stored positions).
    async fn commit_final_offset(&self, consumer: &Arc<StreamConsumer>, next: i64) {
        let (c, topic, partition) = (consumer.clone(), self.key.topic.clone(), self.key.partition);
        let commit = tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            c.commit(&tpl, CommitMode::Sync)
        });
        match tokio::time::timeout(FINAL_COMMIT_TIMEOUT, commit).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::debug!(table = %self.key.table, partition = self.key.partition, error = %e, "final group commit failed")
            }
            Ok(Err(e)) => {
                tracing::debug!(table = %self.key.table, partition = self.key.partition, error = %e, "final group commit did not run")
            }
            Err(_) => {
                tracing::debug!(table = %self.key.table, partition = self.key.partition, "final group commit timed out")
            }
        }
    }

    /// The reader: polls the partition, cuts blocks and decodes them, until a stop or an
    /// error. While the partition is idle it re-sends the group offset and checks for a
    /// stalled client.
    async fn read_blocks(
        &self,
        consumer: &Arc<StreamConsumer>,
        settings: &crate::catalog::KafkaSettings,
        mut stop: watch::Receiver<bool>,
        blocks: mpsc::Sender<CutBlock>,
        group_offset: &std::sync::Mutex<GroupOffset>,
    ) -> Result<(), IngestError> {
        let mut stall = StallWatch::new(Instant::now());
        let poll_timeout = Duration::from_millis(settings.poll_timeout_ms);
        let mut cutter = BlockCutter::new(BlockLimits::of(settings));
        let mut open = OpenBlock::default();
        // One stream for the consumer's life: `recv()` makes a stream per message, and
        // registering and dropping its waker took a lock twice per message.
        let mut stream = consumer.stream();
        let mut stopping = false;
        let mut watermarks = Watermarks::default();
        self.refresh_watermarks(consumer, &mut watermarks, REFRESH_EVERY);
        loop {
            while !stopping && !cutter.is_due(Instant::now()) {
                let wait = cutter.poll_wait(Instant::now(), poll_timeout);
                tokio::select! {
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            stopping = true;
                        }
                    }
                    // The writer failed: what is polled now would never be written.
                    () = blocks.closed() => return Ok(()),
                    received = tokio::time::timeout(wait, stream.next()) => match received.map(next_message) {
                        Ok(Ok(m)) => {
                            self.refresh_watermarks(consumer, &mut watermarks, REFRESH_EVERY);
                            let now = Instant::now();
                            stall.message(now);
                            open.add(&mut cutter, &m, now);
                            // Take what librdkafka already holds without a timer or a select
                            // per message: those cost more than the message itself.
                            let mut drained = false;
                            while !cutter.is_due(now) {
                                match stream.next().now_or_never().map(next_message) {
                                    Some(Ok(m)) => open.add(&mut cutter, &m, now),
                                    Some(Err(e)) => {
                                        consumer.context().consume_error(&e);
                                        break;
                                    }
                                    None => {
                                        drained = true;
                                        break;
                                    }
                                }
                            }
                            // Caught up: librdkafka holds nothing more, so the block is
                            // cut now rather than held for the flush interval. Under a
                            // backlog librdkafka fetches ahead of the decoder and the
                            // writer, and the block fills by rows or bytes before the
                            // queue runs dry; while a block is decoded and written the
                            // next gathers what arrives, so blocks grow with the rate.
                            // (librdkafka's end-of-partition event is no substitute: it
                            // comes only with a fetch that finds nothing, which a steady
                            // trickle never lets happen.)
                            if drained {
                                break;
                            }
                        }
                        Ok(Err(e)) => {
                            // Broker errors are transient for librdkafka, which retries;
                            // they are shown, not fatal.
                            consumer.context().consume_error(&e);
                            // Errors that queued while nobody polled (a consumer that
                            // started while the broker was down holds dozens) are taken
                            // at once: one per pause held the messages behind them for
                            // seconds after the broker was back. Only a fresh error pauses.
                            let now = Instant::now();
                            let mut queued = 0u32;
                            let mut took_message = false;
                            while !cutter.is_due(now) {
                                match stream.next().now_or_never().map(next_message) {
                                    Some(Err(e)) => {
                                        queued += 1;
                                        consumer.context().consume_error(&e);
                                    }
                                    Some(Ok(m)) => {
                                        stall.message(now);
                                        open.add(&mut cutter, &m, now);
                                        took_message = true;
                                        break;
                                    }
                                    None => break,
                                }
                            }
                            if queued > 0 {
                                tracing::debug!(table = %self.key.table, partition = self.key.partition, queued, "took queued consume errors");
                            }
                            if !took_message {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        // A poll that brings nothing ends the block, as in ClickHouse: a
                        // partial block does not wait for the flush interval when the
                        // partition is drained.
                        Err(_) if !open.is_empty() => break,
                        Err(_) => {
                            self.refresh_watermarks(consumer, &mut watermarks, QUIET_REFRESH_EVERY);
                            self.while_idle(consumer, group_offset, &mut stall).await?;
                        }
                    }
                }
            }
            if !open.is_empty() {
                self.status.polled(open.len() as u64);
                let block = open.cut(&mut cutter);
                let cut = self.decode(settings, block).await?;
                if blocks.send(cut).await.is_err() {
                    return Ok(());
                }
            }
            if stopping {
                return Ok(());
            }
        }
    }

    /// Asks the broker for the partition's watermarks, for the lag the consumer shows,
    /// when `watermarks` says it is time; the answer is awaited beside the consume loop,
    /// never in it.
    fn refresh_watermarks(
        &self,
        consumer: &Arc<StreamConsumer>,
        watermarks: &mut Watermarks,
        every: Duration,
    ) {
        let in_flight = watermarks
            .request
            .as_ref()
            .is_some_and(|r| !r.is_finished());
        if !watermarks.schedule.due(Instant::now(), every, in_flight) {
            return;
        }
        let (c, status) = (consumer.clone(), self.status.clone());
        let (table, topic, partition) = (
            self.key.table.clone(),
            self.key.topic.clone(),
            self.key.partition,
        );
        watermarks.request = Some(tokio::task::spawn_blocking(move || {
            match c.fetch_watermarks(&topic, partition, FETCH_TIMEOUT) {
                Ok((low, high)) => status.watermarks(low, high),
                // The lag shows the last figures read; a broker that does not answer
                // shows in the consume errors.
                Err(error) => {
                    tracing::debug!(%table, %topic, partition, %error, "watermarks not read")
                }
            }
        }));
    }

    /// On a poll that brought nothing: re-sends the group offset now and then, and fails
    /// when the client looks stalled.
    async fn while_idle(
        &self,
        consumer: &Arc<StreamConsumer>,
        group_offset: &std::sync::Mutex<GroupOffset>,
        stall: &mut StallWatch,
    ) -> Result<(), IngestError> {
        let now = Instant::now();
        // Without a position there is nothing to re-send, nor a stall to measure from.
        let Some(next) = group_offset.lock().ok().and_then(|mut g| {
            if let Some(next) = g.resend_due(now) {
                self.commit_group_offset(consumer, next);
            }
            g.next()
        }) else {
            return Ok(());
        };
        if stall.check_due(now) {
            self.check_stalled(consumer, next, stall).await?;
        }
        Ok(())
    }

    /// Decodes a cut block off the async threads; fails when it holds more broken
    /// messages than the table allows and its error mode is `default`.
    async fn decode(
        &self,
        settings: &crate::catalog::KafkaSettings,
        messages: Vec<RawMessage>,
    ) -> Result<CutBlock, IngestError> {
        let started = Instant::now();
        let count = messages.len();
        let first_offset = messages.first().map_or(0, |m| m.offset);
        let last_offset = messages.last().map_or(0, |m| m.offset);
        let table = self.table.clone();
        let (topic, partition) = (self.key.topic.clone(), self.key.partition);
        let (result, messages) = tokio::task::spawn_blocking(move || {
            let result = decode_block(&table, &topic, partition, &messages);
            (result, messages)
        })
        .await
        .map_err(|e| IngestError::State(e.to_string()))?;
        let (decoded, fate) = verdict::decoded(
            &self.key,
            result,
            settings.skip_broken_messages,
            settings.handle_error_mode,
        )?;
        let (skipped, past) = allowance(&decoded.broken, settings.skip_broken_messages);
        for b in skipped {
            tracing::warn!(table = %self.key.table, topic = %self.key.topic, partition = self.key.partition, offset = b.offset, error = %b.error, "skipped broken message (kafka_skip_broken_messages)");
        }
        if fate.streamed > 0 {
            for b in past {
                tracing::info!(table = %self.key.table, topic = %self.key.topic, partition = self.key.partition, offset = b.offset, error = %b.error, "broken message streamed as a row with _error");
            }
        }
        let dead_letters = self.dead_letters(&fate.dead_letters, &messages);
        Ok(CutBlock {
            first_offset,
            last_offset,
            count,
            decoded,
            fate,
            dead_letters,
            decode_time: started.elapsed(),
        })
    }

    /// The letters of a block's messages that go to the dead-letter queue.
    fn dead_letters(&self, broken: &[BrokenMessage], messages: &[RawMessage]) -> Vec<DeadLetter> {
        let now_us = chrono::Utc::now().timestamp_micros();
        broken
            .iter()
            .filter_map(|b| {
                let i = messages
                    .binary_search_by_key(&b.offset, |m| m.offset)
                    .ok()?;
                let m = &messages[i];
                Some(DeadLetter {
                    table: self.key.table.clone(),
                    topic: self.key.topic.clone(),
                    partition: self.key.partition,
                    offset: b.offset,
                    key: m.key.as_deref().unwrap_or_default().to_vec(),
                    raw_message: m.payload.as_deref().unwrap_or_default().to_vec(),
                    error: b.error.clone(),
                    event_time_us: now_us,
                })
            })
            .collect()
    }

    /// The writer: writes each decoded block, in order, until the reader is done.
    async fn write_blocks(
        &self,
        consumer: &StreamConsumer,
        mut positions: Vec<ViewPosition>,
        mut decoded: mpsc::Receiver<CutBlock>,
        group_offset: &std::sync::Mutex<GroupOffset>,
    ) -> Result<(), IngestError> {
        while let Some(cut) = decoded.recv().await {
            let next = self.write_block(consumer, &mut positions, cut).await?;
            set_group_offset(group_offset, next);
        }
        Ok(())
    }

    /// Each view's stored position, and the offset to read from.
    async fn positions(
        &self,
        consumer: &Arc<StreamConsumer>,
    ) -> Result<(Vec<ViewPosition>, Offset), IngestError> {
        // The stored positions must include every block the previous owner of this
        // partition got acknowledged, or the first block would overlap them.
        let mut positions = Vec::new();
        for (view, target) in &self.views {
            let next_offset = self
                .replica
                .stored_offset(&target.name, &self.position_key(view))
                .await
                .map_err(|source| IngestError::Replica {
                    key: Box::new(self.key.clone()),
                    source,
                })?;
            positions.push(ViewPosition {
                view: view.clone(),
                target: target.clone(),
                next_offset,
            });
        }
        // A view that stored nothing must wait for the group's coordinator; otherwise one
        // brief try is enough, since the group is then ahead only after a handover.
        let committed = if needs_group_offset(positions.iter().map(|p| p.next_offset)) {
            self.committed_offset(consumer, COMMITTED_RETRY_FOR).await?
        } else {
            self.committed_offset(consumer, Duration::ZERO)
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!(table = %self.key.table, partition = self.key.partition, error = %e, "committed offset not available; the stored positions decide");
                    None
                })
        };
        let group = group_start(committed, self.group_peer_positions().await?);
        let start = start_offset(positions.iter_mut().map(|p| &mut p.next_offset), group);
        Ok((positions, start))
    }

    /// Where each other table of this table's group got to in this partition: the lowest
    /// stored position of its views, or none when they stored nothing. A partition that
    /// moved here from another table of the group goes on from there, even when that
    /// table's last commit to the group had not reached the broker.
    async fn group_peer_positions(&self) -> Result<Vec<Option<i64>>, IngestError> {
        let catalog = self.state.catalog();
        let shares = catalog.group_shares();
        let mut out = Vec::new();
        for peer in shares.group_peers(&self.key.table, &self.key.topic) {
            let mut lowest: Option<i64> = None;
            // Views into Kafka tables store no position.
            let stored_views = catalog.views_of(peer).into_iter().filter(|v| {
                catalog
                    .table(&v.target)
                    .is_some_and(|t| t.kafka().is_none())
            });
            for view in stored_views {
                let key = PositionKey {
                    source: view.name.clone(),
                    topic: self.key.topic.clone(),
                    partition: self.key.partition,
                };
                let stored = self
                    .replica
                    .stored_offset(&view.target, &key)
                    .await
                    .map_err(|source| IngestError::Replica {
                        key: Box::new(self.key.clone()),
                        source,
                    })?;
                if let Some(o) = stored {
                    lowest = Some(lowest.map_or(o, |l| l.min(o)));
                }
            }
            out.push(lowest);
        }
        Ok(out)
    }

    /// Asks for the topic's metadata before the partition is assigned. A new client learns
    /// partition leaders from its first background refresh, and until then an assigned
    /// partition waits on librdkafka's 500 ms offset-query timer: about a second lost at
    /// every consumer start, which is also how long a moved partition stays still. A failure
    /// here costs only that second, so it is logged and not returned.
    async fn learn_leader(&self, consumer: &Arc<StreamConsumer>) {
        let (c, topic) = (consumer.clone(), self.key.topic.clone());
        let fetched =
            tokio::task::spawn_blocking(move || c.fetch_metadata(Some(&topic), METADATA_TIMEOUT))
                .await;
        if let Ok(Err(e)) = fetched {
            tracing::debug!(table = %self.key.table, topic = %self.key.topic, error = %e, "topic metadata not available yet");
        }
    }

    /// Sends `rows`, new in `table`, through every view from `table` into a Kafka table.
    async fn push(&self, table: &TableDef, rows: &RecordBatch) -> Result<(), IngestError> {
        route::push(&self.state.catalog(), &self.sink, table, rows)
            .await
            .map_err(|f| IngestError::Push {
                key: Box::new(self.key.clone()),
                view: f.view,
                reason: f.reason,
            })
    }

    fn position_key(&self, view: &ViewDef) -> PositionKey {
        PositionKey {
            source: view.name.clone(),
            topic: self.key.topic.clone(),
            partition: self.key.partition,
        }
    }

    /// A Kafka call's error, with its cause when the error or the consumer's context
    /// (which heard the connection's failures) names one.
    fn kafka_error(&self, consumer: Option<&StreamConsumer>, source: KafkaError) -> IngestError {
        let cause = match consumer {
            Some(c) => c.context().cause_of(&source),
            None => super::cause::of_error(&source),
        }
        .map(|c| Box::new(c.naming(Some(&self.key.topic), None, None)));
        IngestError::Kafka {
            key: Box::new(self.key.clone()),
            source,
            cause,
        }
    }

    /// The group's committed offset. A broker that has just started answers
    /// "not coordinator" for a while; that is waited out rather than shown as a failure.
    async fn committed_offset(
        &self,
        consumer: &Arc<StreamConsumer>,
        retry_for: Duration,
    ) -> Result<Option<i64>, IngestError> {
        let deadline = Instant::now() + retry_for;
        loop {
            let c = consumer.clone();
            let (topic, partition) = (self.key.topic.clone(), self.key.partition);
            let result = tokio::task::spawn_blocking(move || {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&topic, partition);
                c.committed_offsets(tpl, COMMITTED_TIMEOUT)
            })
            .await
            .map_err(|e| IngestError::State(e.to_string()))?;
            if result.is_err() {
                serve_queued_events(consumer);
            }
            match result {
                Ok(tpl) => {
                    return Ok(tpl
                        .find_partition(&self.key.topic, self.key.partition)
                        .and_then(|p| group_position(p.offset())))
                }
                // A refused password or a missing ACL does not pass by waiting.
                Err(e)
                    if Instant::now() < deadline
                        && !consumer
                            .context()
                            .cause_of(&e)
                            .is_some_and(|c| c.is_lasting()) =>
                {
                    tracing::debug!(table = %self.key.table, partition = self.key.partition, error = %e, "committed offset not available yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(source) => return Err(self.kafka_error(Some(consumer), source)),
            }
        }
    }

    /// Writes one decoded block through every view, then commits the group offset.
    /// Returns the partition's next offset.
    async fn write_block(
        &self,
        consumer: &StreamConsumer,
        positions: &mut [ViewPosition],
        cut: CutBlock,
    ) -> Result<i64, IngestError> {
        self.record_dead_letters(positions, &cut).await?;
        let rows_written = self.write_views(positions, &cut).await?;
        let next = cut.last_offset + 1;
        self.commit_group_offset(consumer, next);
        let stored = stored_position(positions.iter().map(|p| p.next_offset)).unwrap_or(next);
        self.status
            .committed(next, stored, rows_written, cut.fate.without_row());
        Ok(next)
    }

    /// Records the block's dead letters that some view has not stored yet, before the
    /// block is written: a stored block then always has its letters, and a block written
    /// again (after a failure or a crash) writes over the same letters, keyed by offset.
    async fn record_dead_letters(
        &self,
        positions: &[ViewPosition],
        cut: &CutBlock,
    ) -> Result<(), IngestError> {
        let needed: Vec<DeadLetter> = cut
            .dead_letters
            .iter()
            .filter(|l| {
                positions
                    .iter()
                    .any(|p| p.next_offset.is_none_or(|next| l.offset >= next))
            })
            .cloned()
            .collect();
        if needed.is_empty() {
            return Ok(());
        }
        self.state
            .dead_letters
            .record(&needed)
            .await
            .map_err(|e| IngestError::DeadLetters {
                key: Box::new(self.key.clone()),
                reason: e.to_string(),
            })?;
        for l in &needed {
            tracing::warn!(table = %self.key.table, topic = %self.key.topic, partition = self.key.partition, offset = l.offset, error = %l.error, "broken message sent to system.dead_letter_queue");
        }
        Ok(())
    }

    /// Writes, for each view, the rows of the block it still needs, and moves its position
    /// past the block. Returns the rows stored.
    async fn write_views(
        &self,
        positions: &mut [ViewPosition],
        cut: &CutBlock,
    ) -> Result<u64, IngestError> {
        let (first_offset, last_offset) = (cut.first_offset, cut.last_offset);
        let started = Instant::now();
        let mut rows_written = 0;
        for position in positions.iter_mut() {
            let Some(from) = first_needed(position.next_offset, first_offset, last_offset) else {
                continue;
            };
            let batch = if from > first_offset {
                rows_from(&cut.decoded.batch, from)?
            } else {
                cut.decoded.batch.clone()
            };
            let rows = run_view(&position.view, &self.table, &position.target, batch)
                .await
                .map_err(|e| IngestError::View {
                    key: Box::new(self.key.clone()),
                    view: position.view.name.clone(),
                    reason: e.to_string(),
                })?;
            // Views that push the target's new rows to Kafka send them before the block
            // is stored: a failure then fails the block, which is read again (at least
            // once, as ClickHouse); stored first, a crash would lose them for good.
            self.push(&position.target, &rows).await?;
            let block = Block::new(
                &position.target.name,
                Some(SourceRange {
                    source: position.view.name.clone(),
                    topic: self.key.topic.clone(),
                    partition: self.key.partition,
                    first_offset: from,
                    last_offset,
                }),
                &rows,
                &position.target.order_by(),
            )
            .map_err(|e| IngestError::State(e.to_string()))?;
            let built = started.elapsed();
            let outcome = self
                .replica
                .write_block(&self.key, self.epoch, block)
                .await
                .map_err(|source| IngestError::Replica {
                    key: Box::new(self.key.clone()),
                    source,
                })?;
            tracing::debug!(
                table = %self.key.table,
                partition = self.key.partition,
                messages = cut.count,
                decode_ms = cut.decode_time.as_millis() as u64,
                build_ms = built.as_millis() as u64,
                write_ms = (started.elapsed() - built).as_millis() as u64,
                "block written"
            );
            rows_written += verdict::written(&self.key, &position.view.name, outcome)?;
            position.next_offset = Some(last_offset + 1);
        }
        Ok(rows_written)
    }

    /// Asks the broker where the partition ends, to tell a quiet partition from a stalled
    /// client (see `idle::stall_verdict`).
    async fn check_stalled(
        &self,
        consumer: &Arc<StreamConsumer>,
        next: i64,
        stall: &StallWatch,
    ) -> Result<(), IngestError> {
        let (c, topic, partition) = (consumer.clone(), self.key.topic.clone(), self.key.partition);
        let watermarks = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(&topic, partition, Duration::from_secs(5))
        })
        .await
        .map_err(|join| IngestError::State(join.to_string()))?;
        let position = consumer.position().ok().and_then(|tpl| {
            tpl.find_partition(&self.key.topic, self.key.partition)
                .and_then(|e| e.offset().to_raw())
        });
        let idle_secs = stall.idle_secs(Instant::now());
        stall_verdict(
            &self.key,
            next,
            fetched_to(next, position),
            watermarks,
            idle_secs,
        )
    }

    /// The group offset is for lag tools only; failing to commit it loses nothing.
    fn commit_group_offset(&self, consumer: &StreamConsumer, next: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.key.topic, self.key.partition, Offset::Offset(next))
            .is_ok()
        {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                self.status.error(format!("commit: {e}"));
            }
        }
    }
}

/// The reader's watermark requests: when the next is due, and the one still out.
#[derive(Default)]
struct Watermarks {
    schedule: WatermarkSchedule,
    request: Option<tokio::task::JoinHandle<()>>,
}

/// A block cut from the partition and decoded, on its way to the writer.
struct CutBlock {
    first_offset: i64,
    last_offset: i64,
    count: usize,
    decoded: DecodedBlock,
    /// What became of its broken messages.
    fate: verdict::BrokenFate,
    /// Its messages for the dead-letter queue, if the table has one.
    dead_letters: Vec<DeadLetter>,
    decode_time: Duration,
}

/// The writer stored (and committed) the partition up to `next`.
fn set_group_offset(group_offset: &std::sync::Mutex<GroupOffset>, next: i64) {
    if let Ok(mut g) = group_offset.lock() {
        g.sent(next, Instant::now());
    }
}

/// Serves what is queued on a consumer that reads nothing yet: the group coordinator's
/// refusal (a group not authorized) waits there as an error, and librdkafka's log lines
/// with the causes of connection failures, which a committed-offset request that timed
/// out does not tell. Only before the partition is assigned: no message can be taken.
fn serve_queued_events(consumer: &StreamConsumer) {
    let mut stream = consumer.stream();
    // Bounded: a consumer that keeps failing keeps queueing.
    for _ in 0..QUEUED_EVENTS_SERVED_MAX {
        match stream.next().now_or_never() {
            Some(Some(Err(e))) => consumer.context().consume_error(&e),
            Some(Some(Ok(_)) | None) | None => break,
        }
    }
}

/// How many queued events `serve_queued_events` takes at most.
const QUEUED_EVENTS_SERVED_MAX: usize = 64;

/// Resolves once a stop is asked for (or its sender is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;

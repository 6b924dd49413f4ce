//! The work of one partition consumer: read from the stored position, cut blocks, decode,
//! run the views, write each view's block, then commit the Kafka group offset.
//!
//! Where to resume is the target tables' stored position, never Kafka's committed offset
//! (that is only a fallback for a view that has stored nothing yet, and a gauge for lag
//! tools). Each view keeps its own position, so a view that is ahead skips what it has.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::filter_record_batch;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::block_cutter::{BlockCutter, BlockLimits};
use super::client::KafkaClientDefaults;
use super::sink::KafkaSink;
use super::status::{ConsumerKey, ConsumerStatus};
use super::{IngestError, Replica};
use crate::catalog::{TableDef, ViewDef};
use crate::format::{decode_block, DecodedBlock, RawMessage};
use crate::query::views::run_view;
use crate::state::NodeState;
use crate::table::{ApplyOutcome, Block, Decision, PositionKey, SourceRange};

/// A consumer that received nothing for this long while its partition holds messages past
/// its position is stuck (seen after a broker restart: librdkafka reconnected but never
/// fetched again); it fails so its supervisor starts a fresh one from the stored offset.
const STALL_AFTER: Duration = Duration::from_secs(30);

/// How often an idle consumer re-sends its group offset.
const RECOMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// How long to wait for the group's committed offset when a view has no stored position.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the topic's metadata is waited for before the partition is assigned.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
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

/// A message stream's next item; the stream of a consumer never ends, so an end reads as
/// an error rather than a panic.
fn next_message<'a>(
    next: Option<KafkaResult<BorrowedMessage<'a>>>,
) -> KafkaResult<BorrowedMessage<'a>> {
    next.unwrap_or(Err(KafkaError::NoMessageReceived))
}

/// Messages' bytes are copied into chunks of this size, each message keeping a slice of
/// its chunk: a block costs an allocation per chunk instead of two per message, and a free
/// per chunk instead of one per message on the decoding thread (those frees, crossing
/// threads, were a few per cent of a node's CPU).
const MESSAGE_CHUNK: usize = 1 << 20;

/// The messages of the block being cut.
#[derive(Default)]
struct OpenBlock {
    messages: Vec<RawMessage>,
    chunk: BytesMut,
}

impl OpenBlock {
    fn add(&mut self, cutter: &mut BlockCutter, m: &BorrowedMessage<'_>, now: Instant) {
        let raw = RawMessage {
            payload: m.payload().map(|b| self.copy(b)),
            key: m.key().map(|b| self.copy(b)),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
        };
        cutter.push(raw.len_bytes().max(1), now);
        self.messages.push(raw);
    }

    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            self.chunk = BytesMut::with_capacity(MESSAGE_CHUNK.max(bytes.len()));
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

impl PartitionJob {
    fn settings(&self) -> Result<&crate::catalog::KafkaSettings, IngestError> {
        self.table
            .kafka()
            .ok_or_else(|| IngestError::NotKafka(self.table.name.clone()))
    }

    fn create_consumer(&self) -> Result<StreamConsumer, IngestError> {
        let settings = self.settings()?;
        let mut config = self.kafka.client_config(settings);
        config
            .set("group.id", &settings.group_name)
            .set(
                "client.id",
                settings
                    .client_id
                    .clone()
                    .unwrap_or_else(|| self.key.consumer_id(&self.node_id)),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        config.create().map_err(|source| IngestError::Kafka {
            key: Box::new(self.key.clone()),
            source,
        })
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
            .map_err(|source| self.kafka_error(source))?;
        consumer
            .assign(&tpl)
            .map_err(|source| self.kafka_error(source))?;
        let group_offset = std::sync::Mutex::new(GroupOffset {
            next: None,
            committed_at: Instant::now(),
        });
        if let Offset::Offset(o) = start {
            self.status.positioned(o);
            set_group_offset(&group_offset, o);
        }
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
        outcome
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
        let mut last_message_at = Instant::now();
        let mut stall_checked_at = Instant::now();
        let limits = BlockLimits {
            max_rows: settings.max_block_size,
            max_bytes: settings.max_block_bytes,
            flush_interval: Duration::from_millis(settings.flush_interval_ms),
        };
        let poll_timeout = Duration::from_millis(settings.poll_timeout_ms);
        let mut cutter = BlockCutter::new(limits);
        let mut open = OpenBlock::default();
        // One stream for the consumer's life: `recv()` makes a stream per message, and
        // registering and dropping its waker took a lock twice per message.
        let mut stream = consumer.stream();
        let mut stopping = false;
        loop {
            while !stopping && !cutter.is_due(Instant::now()) {
                let wait = cutter
                    .deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
                    .unwrap_or(poll_timeout)
                    .min(poll_timeout);
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
                            let now = Instant::now();
                            last_message_at = now;
                            open.add(&mut cutter, &m, now);
                            // Take what librdkafka already holds without a timer or a select
                            // per message: those cost more than the message itself.
                            while !cutter.is_due(now) {
                                match stream.next().now_or_never().map(next_message) {
                                    Some(Ok(m)) => open.add(&mut cutter, &m, now),
                                    Some(Err(e)) => {
                                        self.consume_error(&e);
                                        break;
                                    }
                                    None => break,
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            // Broker errors are transient for librdkafka, which retries;
                            // they are shown, not fatal.
                            self.consume_error(&e);
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
                                        self.status.error(format!("consume: {e}"));
                                    }
                                    Some(Ok(m)) => {
                                        last_message_at = now;
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
                        Err(_) if !open.messages.is_empty() => break,
                        Err(_) => self.while_idle(consumer, group_offset, last_message_at, &mut stall_checked_at).await?,
                    }
                }
            }
            if !open.messages.is_empty() {
                self.status.polled(open.messages.len() as u64);
                let block = std::mem::take(&mut open.messages);
                cutter.reset();
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

    fn consume_error(&self, e: &KafkaError) {
        tracing::warn!(table = %self.key.table, partition = self.key.partition, error = %e, "consume error");
        self.status.error(format!("consume: {e}"));
    }

    /// On a poll that brought nothing: re-sends the group offset now and then, and fails
    /// when the client looks stalled.
    async fn while_idle(
        &self,
        consumer: &Arc<StreamConsumer>,
        group_offset: &std::sync::Mutex<GroupOffset>,
        last_message_at: Instant,
        stall_checked_at: &mut Instant,
    ) -> Result<(), IngestError> {
        let next = match group_offset.lock() {
            Ok(mut g) => match g.next {
                Some(next) => {
                    if g.committed_at.elapsed() >= RECOMMIT_INTERVAL {
                        self.commit_group_offset(consumer, next);
                        g.committed_at = Instant::now();
                    }
                    next
                }
                None => return Ok(()),
            },
            Err(_) => return Ok(()),
        };
        if last_message_at.elapsed() >= STALL_AFTER && stall_checked_at.elapsed() >= STALL_AFTER {
            *stall_checked_at = Instant::now();
            self.check_stalled(consumer, next, last_message_at).await?;
        }
        Ok(())
    }

    /// Decodes a cut block off the async threads; fails when it holds more broken
    /// messages than the table allows.
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
        let decoded =
            tokio::task::spawn_blocking(move || decode_block(&table, &topic, partition, &messages))
                .await
                .map_err(|e| IngestError::State(e.to_string()))?
                .map_err(|e| IngestError::Format {
                    key: Box::new(self.key.clone()),
                    reason: e.to_string(),
                })?;
        if decoded.broken.len() as u64 > settings.skip_broken_messages {
            let worst = &decoded.broken[0];
            return Err(IngestError::BrokenMessages {
                key: Box::new(self.key.clone()),
                offset: worst.offset,
                error: worst.error.clone(),
                broken: decoded.broken.len(),
                allowed: settings.skip_broken_messages,
            });
        }
        for b in &decoded.broken {
            tracing::warn!(table = %self.key.table, partition = self.key.partition, offset = b.offset, error = %b.error, "skipped broken message");
        }
        Ok(CutBlock {
            first_offset,
            last_offset,
            count,
            decoded,
            decode_time: started.elapsed(),
        })
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
        let start = self.start_offset(consumer, &mut positions).await?;
        Ok((positions, start))
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
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let catalog = self.state.catalog();
        for view in catalog.views_of(&table.name) {
            let Some(target) = catalog.table(&view.target).filter(|t| t.kafka().is_some()) else {
                continue;
            };
            let failed = |reason: String| IngestError::Push {
                key: Box::new(self.key.clone()),
                view: view.name.clone(),
                reason,
            };
            let out = run_view(view, table, target, rows.clone())
                .await
                .map_err(|e| failed(e.to_string()))?;
            self.sink
                .send(target, &out)
                .await
                .map_err(|e| failed(e.to_string()))?;
        }
        Ok(())
    }

    fn position_key(&self, view: &ViewDef) -> PositionKey {
        PositionKey {
            source: view.name.clone(),
            topic: self.key.topic.clone(),
            partition: self.key.partition,
        }
    }

    fn kafka_error(&self, source: KafkaError) -> IngestError {
        IngestError::Kafka {
            key: Box::new(self.key.clone()),
            source,
        }
    }

    /// The lowest position of the views. A view that has stored nothing starts at the
    /// group's committed offset, else at the partition's beginning.
    async fn start_offset(
        &self,
        consumer: &Arc<StreamConsumer>,
        positions: &mut [ViewPosition],
    ) -> Result<Offset, IngestError> {
        if positions.iter().any(|p| p.next_offset.is_none()) {
            let committed = self.committed_offset(consumer).await?;
            for p in positions.iter_mut().filter(|p| p.next_offset.is_none()) {
                p.next_offset = committed;
            }
        }
        if positions.iter().any(|p| p.next_offset.is_none()) {
            return Ok(Offset::Beginning);
        }
        Ok(positions
            .iter()
            .filter_map(|p| p.next_offset)
            .min()
            .map(Offset::Offset)
            .unwrap_or(Offset::Beginning))
    }

    /// The group's committed offset. A broker that has just started answers
    /// "not coordinator" for a while; that is waited out rather than shown as a failure.
    async fn committed_offset(
        &self,
        consumer: &Arc<StreamConsumer>,
    ) -> Result<Option<i64>, IngestError> {
        let deadline = Instant::now() + COMMITTED_RETRY_FOR;
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
            match result {
                Ok(tpl) => {
                    return Ok(tpl
                        .find_partition(&self.key.topic, self.key.partition)
                        .and_then(|p| match p.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        }))
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(table = %self.key.table, partition = self.key.partition, error = %e, "committed offset not available yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(source) => return Err(self.kafka_error(source)),
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
        let CutBlock {
            first_offset,
            last_offset,
            count,
            decoded,
            decode_time,
        } = cut;
        let started = Instant::now();
        let mut rows_written = 0;
        for position in positions.iter_mut() {
            let from = match position.next_offset {
                Some(next) if next > last_offset => continue,
                Some(next) => next.max(first_offset),
                None => first_offset,
            };
            let batch = if from > first_offset {
                rows_from(&decoded.batch, from)?
            } else {
                decoded.batch.clone()
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
                messages = count,
                decode_ms = decode_time.as_millis() as u64,
                build_ms = built.as_millis() as u64,
                write_ms = (started.elapsed() - built).as_millis() as u64,
                "block written"
            );
            match outcome {
                ApplyOutcome::Stored { rows, .. } => rows_written += rows,
                ApplyOutcome::Skipped(Decision::Overlap { next_offset }) => {
                    return Err(IngestError::StalePosition {
                        key: Box::new(self.key.clone()),
                        view: position.view.name.clone(),
                        next_offset,
                    })
                }
                ApplyOutcome::Skipped(Decision::StaleEpoch { epoch, highest }) => {
                    return Err(IngestError::Fenced {
                        key: Box::new(self.key.clone()),
                        epoch,
                        highest,
                    })
                }
                ApplyOutcome::Skipped(_) => {}
            }
            position.next_offset = Some(last_offset + 1);
        }
        self.commit_group_offset(consumer, last_offset + 1);
        self.status
            .committed(last_offset + 1, rows_written, decoded.broken.len() as u64);
        Ok(last_offset + 1)
    }

    /// Fails with `Stalled` when the partition ends past `next` although nothing arrived
    /// since `last_message_at`, and with `Unresponsive` when the partition's end cannot be
    /// read: after a broker restart, a client was seen that never reached the broker
    /// again (its requests queued for minutes) while a new client connected at once. A
    /// restart while the broker is really down costs nothing: the new consumer resumes
    /// from the stored position once the broker is back.
    async fn check_stalled(
        &self,
        consumer: &Arc<StreamConsumer>,
        next: i64,
        last_message_at: Instant,
    ) -> Result<(), IngestError> {
        let (c, topic, partition) = (consumer.clone(), self.key.topic.clone(), self.key.partition);
        let watermarks = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(&topic, partition, Duration::from_secs(5))
        })
        .await;
        // librdkafka's own fetch position steps over what is not a message (transaction
        // markers), so an idle transactional topic is not taken for a stalled one.
        let fetched_to = consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&self.key.topic, self.key.partition)
                    .and_then(|e| e.offset().to_raw())
            })
            .filter(|o| *o >= 0)
            .unwrap_or(next)
            .max(next);
        match watermarks {
            Ok(Ok((_, end))) if end > fetched_to => Err(IngestError::Stalled {
                key: Box::new(self.key.clone()),
                next,
                end,
                idle_secs: last_message_at.elapsed().as_secs(),
            }),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(IngestError::Unresponsive {
                key: Box::new(self.key.clone()),
                idle_secs: last_message_at.elapsed().as_secs(),
                error: error.to_string(),
            }),
            Err(join) => Err(IngestError::State(join.to_string())),
        }
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

/// A block cut from the partition and decoded, on its way to the writer.
struct CutBlock {
    first_offset: i64,
    last_offset: i64,
    count: usize,
    decoded: DecodedBlock,
    decode_time: Duration,
}

/// What the group offset should say (the stored position), and when it was last sent.
/// The writer sets it; the reader re-sends it while the partition is idle.
struct GroupOffset {
    next: Option<i64>,
    committed_at: Instant,
}

fn set_group_offset(group_offset: &std::sync::Mutex<GroupOffset>, next: i64) {
    if let Ok(mut g) = group_offset.lock() {
        g.next = Some(next);
        g.committed_at = Instant::now();
    }
}

/// Resolves once a stop is asked for (or its sender is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The rows of a decoded block read at or after `from` (by the `_offset` column).
fn rows_from(batch: &RecordBatch, from: i64) -> Result<RecordBatch, IngestError> {
    let offsets = batch
        .column_by_name("_offset")
        .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
        .ok_or_else(|| IngestError::State("decoded block has no _offset column".into()))?;
    let from = u64::try_from(from).unwrap_or_default();
    let keep: BooleanArray = offsets.iter().map(|o| o.map(|o| o >= from)).collect();
    filter_record_batch(batch, &keep).map_err(|e| IngestError::State(e.to_string()))
}

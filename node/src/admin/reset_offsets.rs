//! `ALTER TABLE queue RESET OFFSETS …` (and the typed `ResetOffsets` call): moves a
//! detached Kafka table's positions, which live in its views' tables, through each
//! table's Raft group, commits them as the group's offsets, and records the move.
//!
//! Why each step: the tables' stored positions decide where the table resumes, and the
//! group's committed offset is taken when it is further on, so both move. The move also
//! fences every consumer of the table from before it (one still stopping after DETACH
//! must not write its last block past the new position), and lets the blocks it reads
//! again be stored again instead of dropped as duplicates: a replay on purpose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use super::executor::{ExecError, Executor};
use crate::catalog::rewind::OffsetReset;
use crate::catalog::{CatalogCommand, CatalogError, TableDef};
use crate::ingest::offset_reset::{target_offset, OffsetResetError, PartitionRange, ResetClient};
use crate::ingest::pipeline::FINAL_COMMIT_TIMEOUT;
use crate::ingest::resume::start_offset;
use crate::ingest::Replica as _;
use crate::query::{QueryError, QueryResult};
use crate::sql::reset_offsets::ResetOffsets;
use crate::state::StateError;
use crate::table::PositionKey;

/// How often the group's offsets are read back while a stopped consumer's last commit
/// could still land on top of them.
const RECHECK_EVERY: Duration = Duration::from_millis(500);

/// One partition's move, before it is recorded.
struct Move {
    range: PartitionRange,
    from: Option<i64>,
    to: i64,
}

impl Executor {
    /// Moves the positions and returns the moves, as recorded.
    pub async fn reset_offsets(
        &self,
        reset: ResetOffsets,
        requested_by: &str,
    ) -> Result<Vec<OffsetReset>, ExecError> {
        // The catalog as of every change acknowledged so far: a DETACH made through
        // another node a moment ago counts.
        self.cluster.read_barrier().await?;
        let checked_at = Instant::now();
        let catalog = self.state.catalog();
        let table = catalog
            .table(&reset.table)
            .ok_or_else(|| StateError::Catalog(CatalogError::NoTable(reset.table.clone())))?;
        let settings = table
            .kafka()
            .ok_or_else(|| StateError::Catalog(CatalogError::NotKafka(reset.table.clone())))?
            .clone();
        if !table.detached {
            return Err(StateError::Catalog(CatalogError::ResetWhileAttached(reset.table)).into());
        }
        let refused = |reason: String| ExecError::ResetRefused {
            table: reset.table.clone(),
            reason,
        };
        // A group's tables resume a partition from the furthest of their positions, so
        // moving one table's back alone would be undone by the others'.
        if let Some((other, topic)) = catalog.tables.values().find_map(|t| {
            let s = t.kafka().filter(|_| t.name != reset.table)?;
            let shared = s
                .topic_list
                .iter()
                .find(|topic| settings.topic_list.contains(topic))?;
            (s.group_name == settings.group_name).then(|| (t.name.clone(), shared.clone()))
        }) {
            return Err(refused(format!(
                "table {other} reads topic {topic} in the same kafka_group_name '{}', and a group's tables go on from the furthest of their positions, so moving this table's alone would be undone; drop {other} or give it another kafka_group_name first",
                settings.group_name
            )));
        }
        let targets: Vec<(String, TableDef)> = catalog
            .views_of(&reset.table)
            .into_iter()
            .filter_map(|v| {
                let target = catalog.table(&v.target)?;
                target
                    .kafka()
                    .is_none()
                    .then(|| (v.name.clone(), target.clone()))
            })
            .collect();
        // Every consumer of the table was given its partitions at an epoch no later than
        // what this node applied: the table was detached here, after them.
        let fence_epoch = self.cluster.meta_applied_index();

        let kafka_failed = |source: OffsetResetError| ExecError::ResetKafka {
            table: reset.table.clone(),
            source,
        };
        let client = {
            let (defaults, settings, name) =
                (self.kafka.clone(), settings.clone(), reset.table.clone());
            Arc::new(
                blocking(move || ResetClient::new(&defaults, &settings, &name))
                    .await?
                    .map_err(kafka_failed)?,
            )
        };
        let ranges = {
            let (c, topics, partitions, to) = (
                client.clone(),
                settings.topic_list.clone(),
                reset.partitions.clone(),
                reset.to,
            );
            blocking(move || c.ranges(&topics, &partitions, to))
                .await?
                .map_err(kafka_failed)?
        };

        let mut moves = Vec::new();
        for range in ranges {
            let mut positions = Vec::new();
            for (view, target) in &targets {
                let key = position_key(view, &range);
                positions.push(
                    self.cluster
                        .stored_offset(&target.name, &key)
                        .await
                        .map_err(|e| refused(format!("reading the stored position: {e}")))?,
                );
            }
            let from = if targets.is_empty() {
                range.committed
            } else {
                match start_offset(positions.iter_mut(), range.committed) {
                    rdkafka::Offset::Offset(o) => Some(o),
                    _ => None,
                }
            };
            let to = target_offset(reset.to, from, &range);
            moves.push(Move { range, from, to });
        }

        for m in &moves {
            for (view, target) in &targets {
                self.cluster
                    .set_position(
                        &target.name,
                        position_key(view, &m.range),
                        &reset.table,
                        m.to,
                        fence_epoch,
                    )
                    .await?;
            }
        }
        let commits: Vec<(String, i32, i64)> = moves
            .iter()
            .map(|m| (m.range.topic.clone(), m.range.partition, m.to))
            .collect();
        commit_group_offsets(&reset.table, client, commits, checked_at).await?;

        let time_ms = chrono::Utc::now().timestamp_millis();
        let resets = moves
            .iter()
            .map(|m| OffsetReset {
                time_ms,
                table: reset.table.clone(),
                topic: m.range.topic.clone(),
                partition: m.range.partition,
                from_offset: m.from,
                to_offset: m.to,
                target: reset.to.to_string(),
                requested_by: requested_by.to_string(),
            })
            .collect::<Vec<_>>();
        tracing::info!(table = %reset.table, to = %reset.to, partitions = resets.len(), requested_by, "offsets reset");
        self.apply(CatalogCommand::RecordOffsetResets {
            resets: resets.clone(),
        })
        .await?;
        Ok(resets)
    }
}

/// Commits the new offsets for the group, then keeps them there until a consumer that
/// stopped at the DETACH can no longer be committing its own last offset on top: done
/// once a read-back after that time finds them all.
async fn commit_group_offsets(
    table: &str,
    client: Arc<ResetClient>,
    commits: Vec<(String, i32, i64)>,
    since: Instant,
) -> Result<(), ExecError> {
    let failed = |source| ExecError::ResetKafka {
        table: table.to_string(),
        source,
    };
    let mut pending = commits.clone();
    loop {
        if !pending.is_empty() {
            let c = client.clone();
            blocking(move || c.commit(&pending))
                .await?
                .map_err(failed)?;
        }
        tokio::time::sleep(RECHECK_EVERY).await;
        let late = since.elapsed() > FINAL_COMMIT_TIMEOUT;
        let (c, all) = (client.clone(), commits.clone());
        pending = blocking(move || c.overwritten(&all))
            .await?
            .map_err(failed)?;
        if pending.is_empty() && late {
            return Ok(());
        }
        if !pending.is_empty() {
            tracing::info!(
                partitions = pending.len(),
                "a stopping consumer committed over the reset offsets; committing them again"
            );
        }
    }
}

fn position_key(view: &str, range: &PartitionRange) -> PositionKey {
    PositionKey {
        source: view.to_string(),
        topic: range.topic.clone(),
        partition: range.partition,
    }
}

/// Runs a blocking librdkafka call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::Internal(format!("a Kafka call did not finish: {e}")))
}

/// The reply to the statement: one row per partition moved.
pub(super) fn moves_result(resets: &[OffsetReset]) -> Result<QueryResult, QueryError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("from_offset", DataType::Int64, true),
        Field::new("to_offset", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                resets.iter().map(|r| r.topic.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                resets.iter().map(|r| r.partition),
            )),
            Arc::new(Int64Array::from_iter(resets.iter().map(|r| r.from_offset))),
            Arc::new(Int64Array::from_iter_values(
                resets.iter().map(|r| r.to_offset),
            )),
        ],
    )?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}

//! The node's part merger: a thread of its own that keeps each local replica's part count
//! bounded by merging runs of parts (see `table::merge_policy`), one merge at a time.
//!
//! Merges are local to the replica: they change the layout of rows in files, never the
//! rows, the positions or the dedup window, so they need no Raft entry and no agreement
//! (see `table::store`). ClickHouse's ReplicatedMergeTree logs a MERGE_PARTS entry so that
//! replicas agree on part names, which it needs because replicas fetch parts from each
//! other. Here parts travel only inside a snapshot, which carries whatever layout its
//! sender has, and every apply decision and every query answer depends on rows, positions
//! and window alone. A merge entry would require every replica to hold the entry's inputs
//! at its log index (a snapshot install breaks that) and would either stall apply for the
//! length of the merge or need a second, asynchronous commit. The price of merging
//! locally: each replica spends its own CPU on merges, as ClickHouse's do unless they
//! fetch merged parts.
//!
//! The thread sleeps while there is nothing to merge and stops, finishing at most the
//! merge it is in, when the merger is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::state::NodeState;
use crate::table::MergePolicy;

/// How long the merger waits when a pass found nothing to merge.
const IDLE: Duration = Duration::from_millis(500);
/// How long it waits after a failed merge, so a persistent fault does not spin.
const AFTER_ERROR: Duration = Duration::from_secs(5);

pub struct Merger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Merger {
    pub fn start(state: Arc<NodeState>, policy: MergePolicy) -> std::io::Result<Merger> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("part-merger".into())
            .spawn(move || run(&state, &policy, &flag))?;
        Ok(Merger {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Merger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the part merger panicked");
            }
        }
    }
}

fn run(state: &NodeState, policy: &MergePolicy, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let pause = match merge_pass(state, policy, stop) {
            Ok(true) => Duration::ZERO,
            Ok(false) => IDLE,
            Err(e) => {
                tracing::warn!(error = %e, "merging parts");
                AFTER_ERROR
            }
        };
        sleep_unless_stopped(pause, stop);
    }
}

/// One merge in each local replica that has a run worth merging; whether any merged.
fn merge_pass(
    state: &NodeState,
    policy: &MergePolicy,
    stop: &AtomicBool,
) -> Result<bool, crate::table::TableError> {
    let catalog = state.catalog();
    let mut merged = false;
    for def in catalog.tables.values().filter(|t| t.kafka().is_none()) {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Some(store) = state.tables.existing(&def.name)? else {
            continue;
        };
        let started = std::time::Instant::now();
        if let Some(report) = store.merge_step(&def.stored_schema(), &def.order_by(), policy)? {
            tracing::info!(
                table = %def.name,
                inputs = report.inputs,
                part = %report.output,
                rows = report.rows,
                bytes = report.bytes,
                ms = started.elapsed().as_millis() as u64,
                "merged parts"
            );
            merged = true;
        }
    }
    Ok(merged)
}

fn sleep_unless_stopped(pause: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = pause;
    while !left.is_zero() && !stop.load(Ordering::Acquire) {
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
}

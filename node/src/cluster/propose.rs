//! Writes through Raft, for the `meta` group and every table's data group alike: one
//! propose-or-forward path. An attempt proposes on this node's replica of the group if
//! it runs one, else (or when that replica is not the leader) sends the command to the
//! leader it names, the leader last seen, or the group's members; until one takes it or
//! the write times out.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};

use super::{Cluster, ClusterError, WRITE_TIMEOUT};
use crate::catalog::{CatalogCommand, CatalogOutcome};
use crate::raft::messages::ProposeError;
use crate::raft::{Command, Fence, Raft, Response, META_GROUP};
use crate::table::{ApplyOutcome, Block, PositionKey};

/// A replica's part count past which writes to its table slow down, and past which they
/// are refused (ClickHouse's `parts_to_delay_insert` and `parts_to_throw_insert`, scaled to
/// a merge policy that keeps tens of parts).
const PARTS_TO_DELAY_INSERT: usize = 150;
const PARTS_TO_THROW_INSERT: usize = 300;

/// The first pause between attempts, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_millis(500);

/// Client writes waiting in this node's Raft. A shutdown lets them finish before it
/// closes the gRPC server: a write proposed here just before a leadership handover
/// learns its fate only from the new leader's next append, which arrives over gRPC.
#[derive(Default)]
pub struct Proposals(Arc<AtomicUsize>);

impl Proposals {
    pub fn waiting(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn start(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.clone())
    }
}

/// Counts one client write in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where one attempt of a write goes.
struct Attempt {
    group: String,
    /// This node's replica of the group, if it runs one.
    local: Option<Raft>,
    /// Members to send the command to when the local replica does not take it.
    members: Vec<String>,
}

impl Cluster {
    /// Applies a command through the `meta` group's leader, wherever that is; returns once
    /// a majority has it and both the leader and this node applied it, so the writer
    /// reads its own write here (a view created right after its target table finds it).
    pub async fn write(&self, command: Command) -> Result<Response, ClusterError> {
        let (response, index) = self
            .propose_or_forward(&command, |_| {
                Ok(Some(Attempt {
                    group: META_GROUP.to_string(),
                    local: Some(self.raft.clone()),
                    members: Vec::new(),
                }))
            })
            .await?;
        if let Err(e) = self
            .raft
            .wait(Some(WRITE_TIMEOUT))
            .applied_index_at_least(Some(index), "read your write")
            .await
        {
            tracing::warn!(index, error = %e, "this node did not apply its own write in time");
        }
        Ok(response)
    }

    pub async fn write_catalog(
        &self,
        command: CatalogCommand,
    ) -> Result<CatalogOutcome, ClusterError> {
        match self.write(Command::Catalog(command)).await? {
            Response::Catalog(result) => Ok(result?),
            other => Err(ClusterError::UnexpectedReply {
                group: META_GROUP.into(),
                asked: "catalog change",
                reply: format!("{other:?}"),
            }),
        }
    }

    /// Writes a block through its table's data group.
    pub async fn write_block(
        &self,
        block: Block,
        fence: Option<Fence>,
    ) -> Result<ApplyOutcome, ClusterError> {
        let table = block.table.clone();
        match self
            .write_to_table(&table, Command::Block { block, fence })
            .await?
        {
            Response::Block(result) => Ok(result?),
            other => Err(ClusterError::UnexpectedReply {
                group: table,
                asked: "block",
                reply: format!("{other:?}"),
            }),
        }
    }

    /// Moves a source partition's stored position in `table` through the table's group
    /// (a rewind); returns the position it replaced.
    pub async fn set_position(
        &self,
        table: &str,
        key: PositionKey,
        kafka_table: &str,
        next_offset: i64,
        fence_epoch: u64,
    ) -> Result<Option<i64>, ClusterError> {
        let command = Command::SetPosition {
            table: table.to_string(),
            key,
            kafka_table: kafka_table.to_string(),
            next_offset,
            fence_epoch,
        };
        match self.write_to_table(table, command).await? {
            Response::Position(result) => Ok(result?),
            other => Err(ClusterError::UnexpectedReply {
                group: table.to_string(),
                asked: "position change",
                reply: format!("{other:?}"),
            }),
        }
    }

    /// The index of the last entry of the `meta` group this node applied: every
    /// assignment epoch handed out so far is at most this.
    pub fn meta_applied_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |id| id.index)
    }

    /// Writes a command to `table`'s group, wherever its leader runs; returns once a
    /// majority of the group has it on disk and the group's leader applied it.
    pub async fn write_to_table(
        &self,
        table: &str,
        command: Command,
    ) -> Result<Response, ClusterError> {
        if self.hosted_group_of(table).is_some() {
            self.parts_back_pressure(table).await?;
        }
        let (response, _) = self
            .propose_or_forward(&command, |_| {
                let Some(placement) = self.state.placements().of(table).cloned() else {
                    if self.state.catalog().table(table).is_none() {
                        return Err(ClusterError::NoTable {
                            table: table.to_string(),
                        });
                    }
                    // Created a moment ago: the meta leader has not placed it yet.
                    return Ok(None);
                };
                let local = self.data_group(&placement.group).map(|g| g.raft.clone());
                let mut members = Vec::new();
                if local.is_none() {
                    members.extend(self.groups.leader_of(&placement.group));
                    members.extend(
                        placement
                            .members
                            .iter()
                            .filter_map(|id| self.member_of(*id))
                            .map(|m| m.addr),
                    );
                }
                Ok(Some(Attempt {
                    group: placement.group,
                    local,
                    members,
                }))
            })
            .await
            .map_err(|e| match e {
                ClusterError::NoLeader { waited, .. }
                    if self.state.placements().of(table).is_none() =>
                {
                    ClusterError::NotPlaced {
                        table: table.to_string(),
                        waited,
                    }
                }
                e => e,
            })?;
        Ok(response)
    }

    /// The one propose-or-forward loop. `route` says where each attempt goes (given the
    /// leader the last attempt was told of); `None` when the write cannot go anywhere
    /// yet, to wait and ask again.
    async fn propose_or_forward<F>(
        &self,
        command: &Command,
        mut route: F,
    ) -> Result<(Response, u64), ClusterError>
    where
        F: FnMut(Option<&str>) -> Result<Option<Attempt>, ClusterError>,
    {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut pause = FIRST_PAUSE;
        let mut hint: Option<String> = None;
        let mut group = META_GROUP.to_string();
        loop {
            if let Some(attempt) = route(hint.as_deref())? {
                group = attempt.group;
                let mut targets: Vec<String> = hint.take().into_iter().collect();
                if let Some(raft) = &attempt.local {
                    match self.propose_on(raft, &group, command.clone()).await {
                        Ok(written) => return Ok(written),
                        Err(ProposeError::ForwardToLeader(Some(leader)))
                            if leader.addr != self.member.addr =>
                        {
                            targets.push(leader.addr)
                        }
                        Err(ProposeError::ForwardToLeader(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                targets.extend(attempt.members);
                let mut seen = BTreeSet::new();
                targets.retain(|a| a != &self.member.addr && seen.insert(a.clone()));
                for addr in targets {
                    let sent = self
                        .peers
                        .call_group(&addr, &group, command, WRITE_TIMEOUT)
                        .await;
                    match sent {
                        Ok(Ok(written)) => {
                            self.groups.remember_leader(&group, &addr);
                            return Ok(written);
                        }
                        Ok(Err(ProposeError::ForwardToLeader(Some(leader)))) => {
                            hint = Some(leader.addr);
                            break;
                        }
                        Ok(Err(ProposeError::ForwardToLeader(None))) => {}
                        Ok(Err(e)) => return Err(e.into()),
                        Err(e) => tracing::debug!(%group, error = %e, "forwarding a write failed"),
                    }
                }
                if attempt.local.is_some()
                    && group == META_GROUP
                    && hint.is_none()
                    && !self.is_initialized().await
                {
                    return Err(ClusterError::NotInitialized);
                }
            }
            if Instant::now() + pause > deadline {
                return Err(ClusterError::NoLeader {
                    group,
                    waited: WRITE_TIMEOUT,
                });
            }
            if hint.is_none() {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }

    /// Proposes on this node's replica of a group (`meta` or a table's), counted in
    /// flight; succeeds only on the group's leader, with the entry's log index.
    async fn propose_on(
        &self,
        raft: &Raft,
        group: &str,
        command: Command,
    ) -> Result<(Response, u64), ProposeError> {
        // Handing over, a leader takes no new write (see `Phase::HandingOver`).
        if self.phase.is_handing_over()
            && raft.metrics().borrow().current_leader == Some(self.node_id)
        {
            return Err(ProposeError::ForwardToLeader(None));
        }
        let _in_flight = self.proposals.start();
        match raft.client_write(command).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ProposeError::ForwardToLeader(f.leader_node))
            }
            Err(e) => Err(ProposeError::Stopped {
                group: group.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// A peer's proposal for a group: refused when this node does not run it.
    pub async fn propose_for_peer(
        &self,
        group: &str,
        command: Command,
    ) -> Result<(Response, u64), ProposeError> {
        if let Command::Block { block, .. } = &command {
            self.parts_back_pressure(&block.table)
                .await
                .map_err(|e| match e {
                    ClusterError::Propose(p) => p,
                    other => ProposeError::Stopped {
                        group: group.to_string(),
                        reason: other.to_string(),
                    },
                })?;
        }
        match self.raft_of(group) {
            Some(raft) => self.propose_on(&raft, group, command).await,
            None => Err(ProposeError::ForwardToLeader(None)),
        }
    }

    /// Slows writes to a table whose local replica has too many parts, and refuses them
    /// past a limit, as ClickHouse's `parts_to_delay_insert` and `parts_to_throw_insert`
    /// do: merges are behind, and more parts would make every read slower. A refused
    /// block is not lost: its consumer reads it again from the stored position.
    pub async fn parts_back_pressure(&self, table: &str) -> Result<(), ClusterError> {
        let parts = match self.state.tables.existing(table) {
            Ok(Some(store)) => store.parts().map(|p| p.len()).unwrap_or(0),
            _ => return Ok(()),
        };
        if parts > PARTS_TO_THROW_INSERT {
            return Err(ProposeError::TooManyParts {
                table: table.to_string(),
                parts,
                limit: PARTS_TO_THROW_INSERT,
            }
            .into());
        }
        if let Some(over) = parts.checked_sub(PARTS_TO_DELAY_INSERT) {
            let delay = Duration::from_millis(10 * over as u64).min(Duration::from_secs(1));
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }
}

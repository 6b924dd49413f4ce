//! The `Admin` gRPC service: each call parses its request once and hands it to the
//! executor; proto <-> domain conversions are here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::ipc::writer::StreamWriter;
use tonic::{Request, Response, Status};

use super::executor::{ExecOutput, Executor};
use super::{cluster_status, to_status};
use crate::catalog::{CatalogCommand, Engine};
use crate::cluster::InitOutcome;
use crate::ingest::status::ConsumerRegistry;
use crate::ingest::supervisor::{StopAll, Supervisor};
use crate::proto::admin_server::Admin;
use crate::proto::*;
use crate::query::{display, QueryResult};
use crate::raft::messages::{JoinRequest, LeaveRequest};
use crate::shutdown::SHUTDOWN_OVERRAN;
use crate::sql::{self, ColumnText, CreateTable, EngineClause, Statement};

pub struct AdminService {
    pub executor: Arc<Executor>,
    pub consumers: Arc<ConsumerRegistry>,
    pub node_id: String,
    pub grpc_address: String,
    pub data_dir: String,
    pub started: Instant,
    pub supervisor: actix::Addr<Supervisor>,
}

/// How long a drain waits when the caller names no limit.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops this node's consumers (their open blocks written), then moves its partitions and
/// Raft leadership away; shared by the `Drain` call and SIGTERM.
pub async fn drain_node(
    cluster: &crate::cluster::Cluster,
    supervisor: &actix::Addr<Supervisor>,
    timeout: Duration,
) -> DrainResponse {
    // One budget for the whole drain: a consumer stuck on a write must not hold the node
    // past its grace period. A block cut short is not lost: nothing was acknowledged for
    // it, and the partition's next owner reads it again from the stored offset.
    let started = std::time::Instant::now();
    let consumers_stopped = match tokio::time::timeout(timeout / 2, supervisor.send(StopAll)).await
    {
        Ok(stopped) => stopped.unwrap_or(0),
        Err(_) => {
            tracing::warn!(after = ?timeout / 2, "{}: consumers did not stop; draining on", SHUTDOWN_OVERRAN);
            0
        }
    };
    let outcome = cluster
        .drain(timeout.saturating_sub(started.elapsed()))
        .await;
    let mut message = format!("drained: {consumers_stopped} consumers stopped");
    message.push_str(if outcome.partitions_moved {
        ", it owns no partition"
    } else {
        ", it still owns partitions (no quorum to reassign them)"
    });
    message.push_str(if outcome.leadership_released {
        ", it does not lead"
    } else {
        ", it still leads (no follower took over in time)"
    });
    DrainResponse {
        consumers_stopped: u32::try_from(consumers_stopped).unwrap_or(u32::MAX),
        partitions_moved: outcome.partitions_moved,
        leadership_released: outcome.leadership_released,
        message,
    }
}

fn result_set(result: &QueryResult) -> Result<ResultSet, Status> {
    let columns = result
        .schema
        .fields()
        .iter()
        .map(|f| ColumnMeta {
            name: f.name().clone(),
            r#type: display::type_name(f.data_type()),
        })
        .collect();
    let rows = display::rows(&result.batches)
        .map_err(|e| Status::internal(e.to_string()))?
        .into_iter()
        .map(|values| Row { values })
        .collect();
    let mut arrow_ipc = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut arrow_ipc, &result.schema)
            .map_err(|e| Status::internal(e.to_string()))?;
        for b in &result.batches {
            writer
                .write(b)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        writer
            .finish()
            .map_err(|e| Status::internal(e.to_string()))?;
    }
    Ok(ResultSet {
        columns,
        rows,
        arrow_ipc,
    })
}

fn done(output: ExecOutput) -> String {
    match output {
        ExecOutput::Done(m) => m,
        ExecOutput::Rows(_) => "Ok.".into(),
    }
}

fn mask(name: &str, value: &str) -> String {
    if name.contains("password") {
        "[HIDDEN]".into()
    } else {
        value.to_string()
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let sql = request.into_inner().sql;
        let output = self
            .executor
            .execute_sql(&sql)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(match output {
            ExecOutput::Rows(result) => ExecuteResponse {
                result: Some(result_set(&result)?),
                message: String::new(),
            },
            ExecOutput::Done(message) => ExecuteResponse {
                result: None,
                message,
            },
        }))
    }

    async fn create_table(
        &self,
        request: Request<CreateTableRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        let r = request.into_inner();
        let (engine, order_by, settings) = match r.engine {
            Some(create_table_request::Engine::Kafka(k)) => (
                EngineClause {
                    name: "Kafka".into(),
                    args: vec![],
                },
                vec![],
                k.settings.into_iter().collect::<Vec<_>>(),
            ),
            Some(create_table_request::Engine::MergeTree(m)) => (
                EngineClause {
                    name: if m.engine_name.is_empty() {
                        "MergeTree".into()
                    } else {
                        m.engine_name
                    },
                    args: vec![],
                },
                m.order_by,
                m.settings.into_iter().collect::<Vec<_>>(),
            ),
            None => return Err(Status::invalid_argument("engine is required")),
        };
        let create = CreateTable {
            name: r.name,
            if_not_exists: r.if_not_exists,
            columns: r
                .columns
                .into_iter()
                .map(|c| ColumnText {
                    name: c.name,
                    type_text: c.r#type,
                })
                .collect(),
            as_table: (!r.as_table.is_empty()).then_some(r.as_table),
            engine,
            order_by,
            settings,
        };
        let output = self
            .executor
            .execute(Statement::CreateTable(create))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(DdlResponse {
            message: done(output),
        }))
    }

    async fn create_materialized_view(
        &self,
        request: Request<CreateMaterializedViewRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        let r = request.into_inner();
        // The typed call is the SQL statement assembled from its parts, so both paths
        // share one parser and one set of checks.
        let text = format!(
            "CREATE MATERIALIZED VIEW {}`{}` TO `{}` AS {}",
            if r.if_not_exists {
                "IF NOT EXISTS "
            } else {
                ""
            },
            r.name.replace('`', ""),
            r.to_table.replace('`', ""),
            r.select
        );
        let output = self
            .executor
            .execute_sql(&text)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(DdlResponse {
            message: done(output),
        }))
    }

    async fn drop_table(
        &self,
        request: Request<DropTableRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        let r = request.into_inner();
        let command = if r.is_view {
            CatalogCommand::DropView {
                name: r.name,
                if_exists: r.if_exists,
            }
        } else {
            CatalogCommand::DropTable {
                name: r.name,
                if_exists: r.if_exists,
            }
        };
        let outcome = self
            .executor
            .apply(command)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(DdlResponse {
            message: format!("{outcome:?}"),
        }))
    }

    async fn list_tables(
        &self,
        _request: Request<ListTablesRequest>,
    ) -> Result<Response<ListTablesResponse>, Status> {
        let catalog = self.executor.state.catalog();
        let mut tables: Vec<TableInfo> =
            futures::future::join_all(catalog.tables.values().map(|t| self.table_info(t))).await;
        tables.extend(catalog.views.keys().map(|name| TableInfo {
            name: name.clone(),
            engine: "MaterializedView".into(),
            total_rows: 0,
            detached: false,
        }));
        Ok(Response::new(ListTablesResponse { tables }))
    }

    async fn describe_table(
        &self,
        request: Request<DescribeTableRequest>,
    ) -> Result<Response<DescribeTableResponse>, Status> {
        let name = request.into_inner().name;
        let catalog = self.executor.state.catalog();
        if let Some(v) = catalog.views.get(&name) {
            return Ok(Response::new(DescribeTableResponse {
                table: Some(TableInfo {
                    name: v.name.clone(),
                    engine: "MaterializedView".into(),
                    total_rows: 0,
                    detached: false,
                }),
                view_source: v.source.clone(),
                view_target: v.target.clone(),
                view_query: v.original_query.clone(),
                ..Default::default()
            }));
        }
        let t = catalog
            .table(&name)
            .ok_or_else(|| Status::not_found(format!("table {name} does not exist")))?;
        let mut settings = BTreeMap::new();
        let mut order_by = Vec::new();
        match &t.engine {
            Engine::Kafka(k) => {
                settings.insert("kafka_broker_list".to_string(), k.broker_list.clone());
                settings.insert("kafka_topic_list".to_string(), k.topic_list.join(","));
                settings.insert("kafka_group_name".to_string(), k.group_name.clone());
                settings.insert("kafka_format".to_string(), k.format.name().to_string());
                for (name, value) in k.format_settings.non_default() {
                    settings.insert(name.to_string(), value);
                }
                settings.insert(
                    "kafka_max_block_size".to_string(),
                    k.max_block_size.to_string(),
                );
                settings.insert(
                    "kafka_skip_broken_messages".to_string(),
                    k.skip_broken_messages.to_string(),
                );
                if let Some(p) = &k.sasl_password {
                    settings.insert(
                        "kafka_sasl_password".to_string(),
                        mask("kafka_sasl_password", p),
                    );
                }
            }
            Engine::MergeTree {
                order_by: keys,
                settings: s,
                ..
            } => {
                order_by = keys.clone();
                settings.insert(
                    "replicated_deduplication_window".to_string(),
                    s.dedup_window.to_string(),
                );
                if s.replicas > 0 {
                    settings.insert("replicas".to_string(), s.replicas.to_string());
                }
            }
        }
        Ok(Response::new(DescribeTableResponse {
            table: Some(self.table_info(t).await),
            columns: t
                .columns
                .iter()
                .map(|c| Column {
                    name: c.name.clone(),
                    r#type: c.ty.to_string(),
                })
                .collect(),
            settings: settings.into_iter().collect(),
            order_by,
            ..Default::default()
        }))
    }

    async fn consumer_status(
        &self,
        request: Request<ConsumerStatusRequest>,
    ) -> Result<Response<ConsumerStatusResponse>, Status> {
        let table = request.into_inner().table;
        let consumers = self
            .consumers
            .snapshot()
            .into_iter()
            .filter(|(k, _)| table.is_empty() || k.table == table)
            .map(|(k, s)| PartitionConsumer {
                database: sql::DEFAULT_DATABASE.into(),
                consumer_id: k.consumer_id(&self.node_id),
                node: self.node_id.clone(),
                table: k.table,
                topic: k.topic,
                partition: k.partition,
                current_offset: s.current_offset,
                exceptions: s
                    .exceptions
                    .into_iter()
                    .map(|(time_unix, text)| ConsumerException { time_unix, text })
                    .collect(),
                last_poll_time_unix: s.last_poll_time,
                num_messages_read: s.num_messages_read,
                last_commit_time_unix: s.last_commit_time,
                num_commits: s.num_commits,
                is_currently_used: s.is_currently_used,
                num_skipped_messages: s.num_skipped_messages,
                num_rows_written: s.num_rows_written,
                num_restarts: s.num_restarts,
                num_errors: s.num_errors,
            })
            .collect();
        Ok(Response::new(ConsumerStatusResponse { consumers }))
    }

    async fn node_status(
        &self,
        _request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusResponse>, Status> {
        let catalog = self.executor.state.catalog();
        let consumers = self.consumers.snapshot();
        let with_errors = consumers
            .iter()
            .filter(|(_, s)| !s.exceptions.is_empty())
            .count();
        Ok(Response::new(NodeStatusResponse {
            node_id: self.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            grpc_address: self.grpc_address.clone(),
            data_dir: self.data_dir.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            tables: catalog.tables.len() as u32,
            views: catalog.views.len() as u32,
            consumers: consumers.len() as u32,
            consumers_with_errors: with_errors as u32,
        }))
    }

    async fn initialize(
        &self,
        _request: Request<InitializeRequest>,
    ) -> Result<Response<InitializeResponse>, Status> {
        let cluster = &self.executor.cluster;
        match cluster.initialize().await {
            Ok(InitOutcome::Initialized(id)) => Ok(Response::new(InitializeResponse {
                message: format!("initialized cluster {id}"),
                cluster_id: id,
                created: true,
            })),
            Ok(InitOutcome::AlreadyInitialized(id)) => Ok(Response::new(InitializeResponse {
                message: format!("already initialized: cluster {id}"),
                cluster_id: id,
                created: false,
            })),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn drain(
        &self,
        request: Request<DrainRequest>,
    ) -> Result<Response<DrainResponse>, Status> {
        let timeout = match request.into_inner().timeout_ms {
            0 => DEFAULT_DRAIN_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        Ok(Response::new(
            drain_node(&self.executor.cluster, &self.supervisor, timeout).await,
        ))
    }

    async fn add_node(
        &self,
        request: Request<AddNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let address = request.into_inner().address;
        let cluster = &self.executor.cluster;
        let info = cluster
            .info_of(&address)
            .await
            .map_err(|e| Status::unavailable(format!("reaching {address}: {e}")))?;
        if let (Some(theirs), Some(ours)) = (&info.cluster_id, cluster.cluster_id()) {
            if *theirs != ours {
                return Err(Status::failed_precondition(format!(
                    "{address} belongs to cluster {theirs}, not {ours}"
                )));
            }
        }
        let message = cluster
            .join(JoinRequest {
                node_id: info.node_id,
                member: info.member,
            })
            .await
            .map_err(|e| cluster_status(&e))?;
        Ok(Response::new(MembershipResponse { message }))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<MembershipResponse>, Status> {
        let node = request.into_inner().node;
        let message = self
            .executor
            .cluster
            .leave(LeaveRequest { who: node })
            .await
            .map_err(|e| cluster_status(&e))?;
        Ok(Response::new(MembershipResponse { message }))
    }

    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let view = self.executor.cluster.view();
        let assignments = self
            .executor
            .state
            .assignments()
            .slots
            .iter()
            .map(|(slot, owner)| PartitionAssignment {
                table: slot.table.clone(),
                topic: slot.topic.clone(),
                partition: slot.partition,
                node_id: owner.node,
                epoch: owner.epoch,
            })
            .collect();
        let names: std::collections::BTreeMap<u64, String> = view
            .members
            .iter()
            .map(|m| (m.node_id, m.member.name.clone()))
            .collect();
        let placements = self
            .executor
            .state
            .placements()
            .tables
            .iter()
            .map(|(table, p)| TablePlacement {
                table: table.clone(),
                group: p.group.clone(),
                nodes: p
                    .members
                    .iter()
                    .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
                    .collect(),
                generation: p.generation,
            })
            .collect();
        Ok(Response::new(ClusterStatusResponse {
            assignments,
            placements,
            cluster_id: view.cluster_id.unwrap_or_default(),
            node_id: view.node_id,
            name: view.member.name,
            role: view.role,
            term: view.term,
            last_log_index: view.last_log_index,
            applied_index: view.applied_index,
            leader_id: view.leader.unwrap_or(0),
            in_quorum: view.in_quorum,
            members: view
                .members
                .into_iter()
                .map(|m| ClusterMember {
                    node_id: m.node_id,
                    name: m.member.name,
                    address: m.member.addr,
                    voter: m.voter,
                    leader: m.is_leader,
                    matched_index: m.matched_index.unwrap_or(0),
                    has_matched_index: m.matched_index.is_some(),
                })
                .collect(),
        }))
    }
}

impl AdminService {
    /// A table's row count comes from a replica of it, wherever that is.
    async fn table_info(&self, t: &crate::catalog::TableDef) -> TableInfo {
        TableInfo {
            name: t.name.clone(),
            engine: t.engine.name().to_string(),
            total_rows: match t.engine {
                Engine::MergeTree { .. } => {
                    self.executor.cluster.table_rows(&t.name).await.unwrap_or(0)
                }
                Engine::Kafka(_) => 0,
            },
            detached: t.detached,
        }
    }
}

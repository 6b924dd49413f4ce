//! The `Admin` gRPC service: each call converts its request (`convert`), hands it to
//! the executor or the cluster, and converts what comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::convert;
use super::executor::{ExecError, Executor};
use super::{cluster_status, to_status};
use crate::catalog::Engine;
use crate::ingest::status::ConsumerRegistry;
use crate::ingest::supervisor::{StopAll, Supervisor};
use crate::proto::admin_server::Admin;
use crate::proto::*;
use crate::raft::messages::{JoinRequest, LeaveRequest};
use crate::shutdown::SHUTDOWN_OVERRAN;
use crate::sql::Statement;

pub struct AdminService {
    pub executor: Arc<Executor>,
    pub consumers: Arc<ConsumerRegistry>,
    pub node_id: String,
    pub grpc_address: String,
    pub data_dir: String,
    pub started: Instant,
    pub supervisor: actix::Addr<Supervisor>,
}

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
    convert::drain_response(consumers_stopped, &outcome)
}

/// The metadata key under which a client may name its user (`sluice sql --user`).
pub const USER_HEADER: &str = "x-sluice-user";

/// Who made a call: the user it named, if any, and where it came from.
fn caller<T>(request: &Request<T>) -> String {
    let user = request
        .metadata()
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty());
    let addr = request.remote_addr().map(|a| a.to_string());
    match (user, addr) {
        (Some(u), Some(a)) => format!("{u}@{a}"),
        (Some(u), None) => u.to_string(),
        (None, Some(a)) => a,
        (None, None) => super::executor::UNKNOWN_CALLER.to_string(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        let caller = caller(&request);
        let request = request.into_inner();
        let started = Instant::now();
        let output = self
            .executor
            .execute_sql(&request.sql, &caller)
            .await
            .map_err(|e| to_status(&e))?;
        let mut response = convert::execute_response(output, &request.format)?;
        if response.elapsed_seconds == 0.0 {
            response.elapsed_seconds = started.elapsed().as_secs_f64();
        }
        Ok(Response::new(response))
    }

    async fn insert(
        &self,
        request: Request<tonic::Streaming<InsertRequest>>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        use futures::StreamExt as _;
        let started = Instant::now();
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an Insert call starts with its statement"))?;
        let statement = crate::sql::parse(&first.sql).map_err(|e| to_status(&ExecError::Sql(e)))?;
        let Statement::Insert(insert) = statement else {
            return Err(Status::invalid_argument(
                "the Insert call takes INSERT INTO … FORMAT <name>; other statements go to Execute",
            ));
        };
        let table = insert.table.clone();
        let head = (!first.data.is_empty()).then(|| Ok(bytes::Bytes::from(first.data)));
        let rest = stream.map(move |m| {
            m.map(|r| bytes::Bytes::from(r.data))
                .map_err(|s| super::insert::InsertError::Stream {
                    table: table.clone(),
                    reason: s.message().to_string(),
                })
        });
        let message = self
            .executor
            .insert(insert, futures::stream::iter(head).chain(rest))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(ExecuteResponse {
            message,
            elapsed_seconds: started.elapsed().as_secs_f64(),
            ..Default::default()
        }))
    }

    async fn create_table(
        &self,
        request: Request<CreateTableRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        let create = convert::create_table(request.into_inner())?;
        let output = self
            .executor
            .execute(Statement::CreateTable(create))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(convert::ddl_response(output)))
    }

    async fn create_materialized_view(
        &self,
        request: Request<CreateMaterializedViewRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        // A SELECT that does not parse is refused as the SQL call refuses it.
        let create = convert::create_view(request.into_inner())
            .map_err(|e| to_status(&ExecError::Sql(e)))?;
        let output = self
            .executor
            .execute(Statement::CreateView(create))
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(convert::ddl_response(output)))
    }

    async fn drop_table(
        &self,
        request: Request<DropTableRequest>,
    ) -> Result<Response<DdlResponse>, Status> {
        let command = convert::drop_command(request.into_inner());
        let outcome = self
            .executor
            .apply(command)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(convert::outcome_response(&outcome)))
    }

    async fn reset_offsets(
        &self,
        request: Request<ResetOffsetsRequest>,
    ) -> Result<Response<ResetOffsetsResponse>, Status> {
        let caller = caller(&request);
        let reset = convert::reset_offsets(request.into_inner())?;
        let moves = self
            .executor
            .reset_offsets(reset, &caller)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(convert::reset_offsets_response(&moves)))
    }

    async fn list_tables(
        &self,
        _request: Request<ListTablesRequest>,
    ) -> Result<Response<ListTablesResponse>, Status> {
        let catalog = self.executor.state.catalog();
        let mut tables: Vec<TableInfo> =
            futures::future::join_all(catalog.tables.values().map(|t| self.table_info(t))).await;
        tables.extend(catalog.views.keys().map(|name| convert::view_info(name)));
        Ok(Response::new(ListTablesResponse { tables }))
    }

    async fn describe_table(
        &self,
        request: Request<DescribeTableRequest>,
    ) -> Result<Response<DescribeTableResponse>, Status> {
        let name = request.into_inner().name;
        let catalog = self.executor.state.catalog();
        if let Some(v) = catalog.views.get(&name) {
            return Ok(Response::new(convert::describe_view(v)));
        }
        let t = catalog
            .table(&name)
            .ok_or_else(|| Status::not_found(format!("table {name} does not exist")))?;
        Ok(Response::new(convert::describe_table(
            t,
            self.table_info(t).await,
        )))
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
            .map(|(k, s)| convert::consumer_to_proto(&self.node_id, k, s))
            .collect();
        Ok(Response::new(ConsumerStatusResponse { consumers }))
    }

    async fn dead_letters(
        &self,
        _request: Request<DeadLettersRequest>,
    ) -> Result<Response<DeadLettersResponse>, Status> {
        let letters = self
            .executor
            .state
            .dead_letters
            .letters()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DeadLettersResponse {
            node: self.node_id.clone(),
            letters: letters
                .into_iter()
                .map(convert::dead_letter_to_proto)
                .collect(),
        }))
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
        let outcome = cluster
            .initialize()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(convert::initialize_response(outcome)))
    }

    async fn drain(
        &self,
        request: Request<DrainRequest>,
    ) -> Result<Response<DrainResponse>, Status> {
        let timeout = convert::drain_timeout(&request.into_inner());
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
        Ok(Response::new(convert::cluster_status(
            self.executor.cluster.view(),
            &self.executor.state.assignments(),
            &self.executor.state.placements(),
        )))
    }
}

impl AdminService {
    /// A table's row count comes from a replica of it, wherever that is.
    async fn table_info(&self, t: &crate::catalog::TableDef) -> TableInfo {
        let total_rows = match t.engine {
            Engine::MergeTree { .. } => {
                self.executor.cluster.table_rows(&t.name).await.unwrap_or(0)
            }
            Engine::Kafka(_) => 0,
        };
        convert::table_info(t, total_rows)
    }
}

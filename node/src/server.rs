//! A node's life: open storage, start the ingest supervisor (actix) and the gRPC API
//! (tonic), serve until SIGTERM/SIGINT, then drain consumers and stop in reverse order.
//!
//! Two runtimes, on purpose: actix actors live on their own single-threaded system, while
//! consumer pipelines, queries and gRPC share one multi-threaded tokio runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::Actor;
use anyhow::Context as _;
use tokio_stream::wrappers::TcpListenerStream;

use crate::admin::executor::Executor;
use crate::admin::fanout::Fanout;
use crate::admin::service::{drain_node, AdminService};
use crate::cluster::{Cluster, ClusterOptions};
use crate::config::NodeConfig;
use crate::ingest::status::ConsumerRegistry;
use crate::ingest::supervisor::{StopAll, Supervisor};
use crate::ingest::Replica;
use crate::proto::admin_server::AdminServer;
use crate::query::QueryEngine;
use crate::raft::network::RAFT_MESSAGE_MAX;
use crate::raft::service::RaftService;
use crate::raft_proto::raft_server::RaftServer;
use crate::shutdown::{Tasks, SHUTDOWN_OVERRAN};
use crate::state::NodeState;
use crate::topology::Member;

use crate::admin::GRPC_MESSAGE_MAX;

/// HTTP/2 limits for what peers send here. A block is a few hundred KiB and a Raft
/// append carries up to `max_payload_entries` of them; with HTTP/2's 16 KiB frames and
/// hyper's 1 MiB windows, a sender cut each into dozens of frames and stalled for window
/// updates several times per append.
const H2_MAX_FRAME: u32 = 1024 * 1024;
const H2_STREAM_WINDOW: u32 = 16 * 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;

/// The file in the data dir that holds the bound gRPC address (useful with port 0).
pub const ADDRESS_FILE: &str = "grpc-address";

pub fn run(config: NodeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice-worker")
        .build()
        .context("starting the tokio runtime")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let sled_dir = config.data_dir.join("sled");
    let db = sled::Config::new()
        .path(&sled_dir)
        .open()
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let state = Arc::new(
        NodeState::open(db.clone(), config.data_dir.join("table-blocks"))
            .context("loading the catalog")?,
    );
    state.set_config_collections(config.named_collections.clone());
    let registry = Arc::new(ConsumerRegistry::default());
    let listener = runtime.block_on(async {
        tokio::net::TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))
    })?;
    let local: SocketAddr = listener.local_addr()?;
    let member = Member {
        name: config.node_id.clone(),
        addr: config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| local.to_string()),
    };
    let kafka = Arc::new(config.kafka.clone());
    if !kafka.names().is_empty() {
        tracing::info!(properties = ?kafka.names(), "node-wide Kafka client properties");
    }
    let cluster = runtime
        .block_on(Cluster::start(
            &db,
            state.clone(),
            member,
            ClusterOptions {
                peers: config.peers.clone(),
                node_timeout: config.node_timeout,
                kafka: kafka.clone(),
                // Bound to one address: leave from it too. Bound to all (a pod): any.
                source_ip: Some(local.ip()).filter(|ip| !ip.is_unspecified()),
                sled_dir: Some(sled_dir.clone()),
                snapshot_dir: Some(config.data_dir.join("raft-snapshots")),
            },
        ))
        .context("starting raft")?;

    let (tx, rx) = std::sync::mpsc::channel();
    let (done, actors_done) = std::sync::mpsc::channel();
    let replica: Arc<dyn Replica> = cluster.clone();
    let supervisor_parts = (
        config.node_id.clone(),
        state.clone(),
        replica,
        registry.clone(),
        kafka,
        runtime.handle().clone(),
    );
    let actors = std::thread::Builder::new()
        .name("sluice-actors".into())
        .spawn(move || -> std::io::Result<()> {
            let system = actix::System::new();
            let (node_id, state, replica, registry, kafka, handle) = supervisor_parts;
            let addr = system.block_on(async {
                Supervisor::new(node_id, state, replica, registry, kafka, handle).start()
            });
            let _ = tx.send((addr, actix::System::current()));
            let ran = system.run();
            let _ = done.send(());
            ran
        })
        .context("starting the actor system")?;
    let (supervisor, system) = rx.recv().context("the actor system did not start")?;
    let merger = crate::merger::Merger::start(state.clone(), crate::table::MergePolicy::default())
        .context("starting the part merger")?;

    let served = runtime.block_on(serve(
        &config,
        listener,
        state,
        cluster.clone(),
        registry,
        supervisor,
    ));
    // Each step is bounded and named in the log, so a shutdown that overruns says where.
    // Nothing here is needed for safety: what was acknowledged is on disk already.
    if runtime
        .block_on(async {
            tokio::time::timeout(STEP_TIMEOUT, cluster.shutdown(STEP_TIMEOUT / 4)).await
        })
        .is_err()
    {
        tracing::warn!(after = ?STEP_TIMEOUT, "{}: raft did not stop; stopping without it", SHUTDOWN_OVERRAN);
    } else {
        tracing::info!("raft stopped");
    }
    system.stop();
    // Stops after the merge it is in, if any; what it had not committed is removed at
    // the next open.
    drop(merger);
    match actors_done.recv_timeout(STEP_TIMEOUT) {
        Ok(()) => {
            let _ = actors.join();
            tracing::info!("actors stopped");
        }
        Err(_) => {
            tracing::warn!(after = ?STEP_TIMEOUT, "{}: actors did not stop; stopping without them", SHUTDOWN_OVERRAN)
        }
    }
    db.flush().context("flushing storage")?;
    tracing::info!("stopped");
    served
}

/// How long SIGTERM waits for partitions and leadership to move before stopping anyway,
/// within Kubernetes' default 30 s grace period.
const SHUTDOWN_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long each later step of a shutdown may take (open connections to finish their
/// requests, Raft, the actors); with the drain it stays within 30 s.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

async fn serve(
    config: &NodeConfig,
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    cluster: Arc<Cluster>,
    registry: Arc<ConsumerRegistry>,
    supervisor: actix::Addr<Supervisor>,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    // The node's own loops (health, metrics); the coordinator owns its own.
    let tasks = Tasks::new("node");
    if config.bootstrap {
        // Before the address is published, so a client's first statement finds a leader.
        match cluster.initialize().await {
            Ok(outcome) => tracing::info!(?outcome, "bootstrap"),
            Err(e) => tracing::error!(error = %e, "bootstrap failed"),
        }
    }
    if let Some(addr) = config.metrics_addr {
        let metrics_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr} (metrics_addr)"))?;
        let collector = crate::metrics::NodeCollector {
            consumers: registry.clone(),
            cluster: cluster.clone(),
            state: state.clone(),
        };
        tasks.spawn(
            "metrics endpoint",
            crate::metrics::serve(metrics_listener, collector, std::future::pending()),
        );
        tracing::info!(address = %addr, path = crate::metrics::PATH, "serving Prometheus metrics");
    }
    std::fs::write(config.data_dir.join(ADDRESS_FILE), local.to_string())
        .context("writing the address file")?;
    tracing::info!(node = %config.node_id, address = %local, "serving gRPC");
    println!("sluice node {} listening on {local}", config.node_id);

    let (health, health_service) = tonic_health::server::health_reporter();
    tasks.spawn("health", report_health(cluster.clone(), health.clone()));
    cluster.start_background();
    let query_runtime = crate::query::query_runtime(config.query_memory_limit_bytes)
        .context("setting up the query runtime")?;
    let executor = Arc::new(Executor {
        state: state.clone(),
        cluster: cluster.clone(),
        queries: QueryEngine::new(
            state,
            cluster.clone(),
            Arc::new(Fanout {
                cluster: cluster.clone(),
                consumers: registry.clone(),
            }),
            query_runtime.clone(),
        ),
        sink: crate::ingest::sink::KafkaSink::new(Arc::new(config.kafka.clone())),
        kafka: Arc::new(config.kafka.clone()),
        format_schema_path: config.format_schema_path.clone(),
    });
    let admin = AdminService {
        executor,
        consumers: registry,
        node_id: config.node_id.clone(),
        grpc_address: local.to_string(),
        data_dir: config.data_dir.display().to_string(),
        started: Instant::now(),
        supervisor: supervisor.clone(),
    };
    let draining = cluster.clone();
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let failure = failed.clone();
    let (signalled, shutting_down) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {
                tracing::info!("shutting down: draining");
                health.set_not_serving::<AdminServer<AdminService>>().await;
                let drained = drain_node(&draining, &supervisor, SHUTDOWN_DRAIN_TIMEOUT).await;
                tracing::info!("{}", drained.message);
                // Closing the server cuts this node off from the new leader, whose next
                // append is what answers a write proposed here just before the handover.
                draining.settle_proposals(STEP_TIMEOUT).await;
            }
            fatal = draining.storage_failure() => {
                // Crash-only: after a storage error (a full disk, a failed fsync) nothing
                // in memory can be trusted to match the disk. Stop acknowledging at once
                // and exit non-zero, so the supervisor restarts the node from its disk
                // once the fault clears; the rest of the cluster goes on without it.
                tracing::error!(error = %fatal, "raft stopped: storage failed; exiting");
                health.set_not_serving::<AdminServer<AdminService>>().await;
                let _ = supervisor.send(StopAll).await;
                if let Ok(mut f) = failure.lock() {
                    *f = Some(fatal);
                }
            }
        }
        let _ = signalled.send(());
    };
    let open_requests = crate::open_requests::OpenRequests::default();
    let server = tonic::transport::Server::builder()
        .max_frame_size(H2_MAX_FRAME)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .layer(open_requests.clone())
        .add_service(health_service)
        .add_service(
            RaftServer::new(RaftService {
                cluster,
                query_runtime,
            })
            .max_decoding_message_size(RAFT_MESSAGE_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_MAX),
        )
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(GRPC_MESSAGE_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_MAX),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
    // A graceful stop waits for every open request; one that waits on something that
    // will not come (a peer's forwarded write) must not keep the node up.
    let connections_closed = async {
        if shutting_down.await.is_ok() {
            tokio::time::sleep(STEP_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => {
            served.context("serving gRPC")?;
            tracing::info!("gRPC server stopped");
        }
        () = connections_closed => {
            let open: Vec<String> = open_requests
                .list()
                .into_iter()
                .map(|(path, age)| format!("{path} ({age:.1?})"))
                .collect();
            if open.is_empty() {
                // Only idle connections left, whose peer did not acknowledge the
                // shutdown (a peer cut off or paused): nothing is lost by closing them.
                tracing::info!(after = ?STEP_TIMEOUT, "closing idle connections whose peers did not acknowledge the shutdown");
            } else {
                tracing::warn!(after = ?STEP_TIMEOUT, open = ?open, "{}: requests still open; closing their connections", SHUTDOWN_OVERRAN);
            }
        }
    }
    tasks.stop(STEP_TIMEOUT / 4).await;
    let fatal = failed.lock().ok().and_then(|mut f| f.take());
    match fatal {
        Some(reason) => Err(anyhow::anyhow!("raft stopped: {reason}")),
        None => Ok(()),
    }
}

/// The gRPC health service: the whole server (service "") answers SERVING while the
/// process runs, for liveness; the Admin service only while this node is in a working
/// quorum, for readiness.
async fn report_health(
    cluster: Arc<Cluster>,
    health: tonic_health::server::HealthReporter,
) -> Result<(), std::convert::Infallible> {
    let mut phase = cluster.phase();
    let mut serving = None;
    {
        loop {
            // A draining node is on its way out: clients should go elsewhere.
            let ready = cluster.view().in_quorum && !cluster.is_draining();
            if serving != Some(ready) {
                if ready {
                    health.set_serving::<AdminServer<AdminService>>().await;
                } else {
                    health.set_not_serving::<AdminServer<AdminService>>().await;
                }
                serving = Some(ready);
            }
            // Quorum is polled (openraft's metrics change on every entry); the phase
            // (a drain, a removal) wakes it at once.
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = phase.changed() => {}
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

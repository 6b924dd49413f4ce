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
use crate::admin::service::AdminService;
use crate::cluster::Cluster;
use crate::config::NodeConfig;
use crate::ingest::status::ConsumerRegistry;
use crate::ingest::supervisor::{StopAll, Supervisor};
use crate::ingest::Replica;
use crate::proto::admin_server::AdminServer;
use crate::query::QueryEngine;
use crate::raft::network::RAFT_MESSAGE_MAX;
use crate::raft::service::RaftService;
use crate::raft::Member;
use crate::raft_proto::raft_server::RaftServer;
use crate::state::NodeState;

/// Largest gRPC message either way: query results can be large.
pub const GRPC_MESSAGE_MAX: usize = 256 * 1024 * 1024;

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
    let db = sled::Config::new()
        .path(config.data_dir.join("sled"))
        .open()
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let state = Arc::new(NodeState::open(db.clone()).context("loading the catalog")?);
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
    let cluster = runtime
        .block_on(Cluster::start(
            &db,
            state.clone(),
            member,
            config.peers.clone(),
            config.node_timeout,
        ))
        .context("starting raft")?;

    let (tx, rx) = std::sync::mpsc::channel();
    let replica: Arc<dyn Replica> = cluster.clone();
    let supervisor_parts = (
        config.node_id.clone(),
        state.clone(),
        replica,
        registry.clone(),
        runtime.handle().clone(),
    );
    let actors = std::thread::Builder::new()
        .name("sluice-actors".into())
        .spawn(move || -> std::io::Result<()> {
            let system = actix::System::new();
            let (node_id, state, replica, registry, handle) = supervisor_parts;
            let addr = system.block_on(async {
                Supervisor::new(node_id, state, replica, registry, handle).start()
            });
            let _ = tx.send((addr, actix::System::current()));
            system.run()
        })
        .context("starting the actor system")?;
    let (supervisor, system) = rx.recv().context("the actor system did not start")?;

    let served = runtime.block_on(serve(
        &config,
        listener,
        state,
        cluster.clone(),
        registry,
        supervisor,
    ));
    runtime.block_on(cluster.shutdown());
    system.stop();
    let _ = actors.join();
    db.flush().context("flushing storage")?;
    tracing::info!("stopped");
    served
}

async fn serve(
    config: &NodeConfig,
    listener: tokio::net::TcpListener,
    state: Arc<NodeState>,
    cluster: Arc<Cluster>,
    registry: Arc<ConsumerRegistry>,
    supervisor: actix::Addr<Supervisor>,
) -> anyhow::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    if config.bootstrap {
        // Before the address is published, so a client's first statement finds a leader.
        match cluster.initialize().await {
            Ok(outcome) => tracing::info!(?outcome, "bootstrap"),
            Err(e) => tracing::error!(error = %e, "bootstrap failed"),
        }
    }
    std::fs::write(config.data_dir.join(ADDRESS_FILE), local.to_string())
        .context("writing the address file")?;
    tracing::info!(node = %config.node_id, address = %local, "serving gRPC");
    println!("sluice node {} listening on {local}", config.node_id);

    let (health, health_service) = tonic_health::server::health_reporter();
    spawn_health(cluster.clone(), health.clone());
    cluster.spawn_join_loop();
    cluster.spawn_heartbeats();
    cluster.spawn_assigner();
    let executor = Arc::new(Executor {
        state: state.clone(),
        cluster: cluster.clone(),
        queries: QueryEngine::new(state, registry.clone(), cluster.clone()),
    });
    let admin = AdminService {
        executor,
        consumers: registry,
        node_id: config.node_id.clone(),
        grpc_address: local.to_string(),
        data_dir: config.data_dir.display().to_string(),
        started: Instant::now(),
    };
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining consumers");
        health.set_not_serving::<AdminServer<AdminService>>().await;
        let _ = supervisor.send(StopAll).await;
    };
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            RaftServer::new(RaftService { cluster })
                .max_decoding_message_size(RAFT_MESSAGE_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_MAX),
        )
        .add_service(
            AdminServer::new(admin)
                .max_decoding_message_size(GRPC_MESSAGE_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_MAX),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("serving gRPC")?;
    Ok(())
}

/// The gRPC health service: the whole server (service "") answers SERVING while the
/// process runs, for liveness; the Admin service only while this node is in a working
/// quorum, for readiness.
fn spawn_health(cluster: Arc<Cluster>, health: tonic_health::server::HealthReporter) {
    tokio::spawn(async move {
        let mut serving = None;
        loop {
            let in_quorum = cluster.view().in_quorum;
            if serving != Some(in_quorum) {
                if in_quorum {
                    health.set_serving::<AdminServer<AdminService>>().await;
                } else {
                    health.set_not_serving::<AdminServer<AdminService>>().await;
                }
                serving = Some(in_quorum);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
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

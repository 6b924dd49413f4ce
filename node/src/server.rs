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
use crate::config::NodeConfig;
use crate::ingest::status::ConsumerRegistry;
use crate::ingest::supervisor::{StopAll, Supervisor};
use crate::proto::admin_server::AdminServer;
use crate::query::QueryEngine;
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

    let (tx, rx) = std::sync::mpsc::channel();
    let supervisor_parts = (
        config.node_id.clone(),
        state.clone(),
        registry.clone(),
        runtime.handle().clone(),
    );
    let actors = std::thread::Builder::new()
        .name("sluice-actors".into())
        .spawn(move || -> std::io::Result<()> {
            let system = actix::System::new();
            let (node_id, state, registry, handle) = supervisor_parts;
            let addr = system
                .block_on(async { Supervisor::new(node_id, state, registry, handle).start() });
            let _ = tx.send((addr, actix::System::current()));
            system.run()
        })
        .context("starting the actor system")?;
    let (supervisor, system) = rx.recv().context("the actor system did not start")?;

    let served = runtime.block_on(serve(&config, state, registry, supervisor));
    system.stop();
    let _ = actors.join();
    db.flush().context("flushing storage")?;
    tracing::info!("stopped");
    served
}

async fn serve(
    config: &NodeConfig,
    state: Arc<NodeState>,
    registry: Arc<ConsumerRegistry>,
    supervisor: actix::Addr<Supervisor>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC address {}", config.grpc_addr))?;
    let local: SocketAddr = listener.local_addr()?;
    std::fs::write(config.data_dir.join(ADDRESS_FILE), local.to_string())
        .context("writing the address file")?;
    tracing::info!(node = %config.node_id, address = %local, "serving gRPC");
    println!("sluice node {} listening on {local}", config.node_id);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServer<AdminService>>().await;
    let executor = Arc::new(Executor {
        state: state.clone(),
        queries: QueryEngine::new(config.node_id.clone(), state, registry.clone()),
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
            AdminServer::new(admin)
                .max_decoding_message_size(GRPC_MESSAGE_MAX)
                .max_encoding_message_size(GRPC_MESSAGE_MAX),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("serving gRPC")?;
    Ok(())
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

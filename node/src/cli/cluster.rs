//! `sluice init`, `sluice add-node`, `sluice remove-node`: cluster membership from the
//! command line.

use anyhow::Context as _;

use crate::proto::{AddNodeRequest, InitializeRequest, RemoveNodeRequest};

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The node's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
}

#[derive(clap::Args, Debug)]
pub struct AddNodeArgs {
    /// Any member's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// The new node's address, host:port.
    pub address: String,
}

#[derive(clap::Args, Debug)]
pub struct RemoveNodeArgs {
    /// Any member's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// The member to remove: its name, id or address.
    pub node: String,
}

/// Idempotent: "already initialized" is a success, so a deploy hook may run it every time.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let reply = client
        .initialize(InitializeRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("initializing the cluster")?
        .into_inner();
    println!("{}", reply.message);
    Ok(())
}

pub async fn add_node(args: AddNodeArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let reply = client
        .add_node(AddNodeRequest {
            address: args.address.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("adding {}: {}", args.address, s.message()))?
        .into_inner();
    println!("{}", reply.message);
    Ok(())
}

pub async fn remove_node(args: RemoveNodeArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let reply = client
        .remove_node(RemoveNodeRequest {
            node: args.node.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("removing {}: {}", args.node, s.message()))?
        .into_inner();
    println!("{}", reply.message);
    Ok(())
}

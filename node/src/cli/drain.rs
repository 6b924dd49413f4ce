//! `sluice drain`: prepares a node to stop (Kubernetes' preStop). Its consumers finish their
//! open blocks and stop, its partitions move to the other nodes, and it hands Raft
//! leadership over; the node keeps serving queries until it is stopped.

use anyhow::Context as _;

use crate::proto::DrainRequest;

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// The gRPC address of the node to drain.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// How long to wait for partitions and leadership to move, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let reply = client
        .drain(DrainRequest {
            timeout_ms: args.timeout_secs.saturating_mul(1000),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("draining {}", args.host))?
        .into_inner();
    println!("{}", reply.message);
    if !(reply.partitions_moved && reply.leadership_released) {
        anyhow::bail!("the drain did not finish in {} s", args.timeout_secs);
    }
    Ok(())
}

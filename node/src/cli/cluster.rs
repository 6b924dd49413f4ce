//! `sluice init`, `sluice add-node`, `sluice remove-node`: cluster membership from the
//! command line. `init --wait-secs` and `remove-node --statefulset NAME --replicas N` are
//! what the Helm chart's hook Jobs run: both are idempotent and retry until a deadline, so a
//! hook that starts before the nodes answer, or runs twice, does the right thing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tonic::transport::Channel;

use crate::proto::admin_client::AdminClient;
use crate::proto::{
    AddNodeRequest, ClusterMember, ClusterStatusRequest, ClusterStatusResponse, InitializeRequest,
    RemoveNodeRequest,
};

/// Pause between two tries of a retried call.
const RETRY_INTERVAL: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The node's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
    /// Keep trying this many seconds while the node does not answer or cannot initialize
    /// yet (a deploy hook starts with the pods). 0: one try.
    #[arg(long, default_value_t = 0)]
    pub wait_secs: u64,
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
    #[arg(required_unless_present = "statefulset")]
    pub node: Option<String>,
    /// Remove every member a StatefulSet scale-down drops instead: members named
    /// `<STATEFULSET>-<ordinal>` whose ordinal is at least --replicas. Idempotent: nothing
    /// to remove is a success.
    #[arg(long, requires = "replicas", conflicts_with = "node")]
    pub statefulset: Option<String>,
    /// The StatefulSet's new replica count (with --statefulset).
    #[arg(long, requires = "statefulset", value_parser = clap::value_parser!(u32).range(1..))]
    pub replicas: Option<u32>,
    /// With --statefulset: keep trying this many seconds while the cluster cannot answer
    /// or refuses a change (no leader yet, another membership change under way).
    #[arg(long, default_value_t = 0)]
    pub wait_secs: u64,
}

/// Idempotent: "already initialized" is a success, so a deploy hook may run it every time.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        match init_once(&args.host).await {
            Ok(message) => {
                println!("{message}");
                return Ok(());
            }
            Err(e) if Instant::now() + RETRY_INTERVAL < deadline => {
                eprintln!("{e:#}; retrying");
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn init_once(host: &str) -> anyhow::Result<String> {
    let mut client = super::sql::connect(host).await?;
    let reply = client
        .initialize(InitializeRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("initializing the cluster at {host}"))?
        .into_inner();
    Ok(reply.message)
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
    if let (Some(statefulset), Some(replicas)) = (&args.statefulset, args.replicas) {
        let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
        return remove_dropped_ordinals(&args.host, statefulset, replicas, deadline).await;
    }
    let node = args
        .node
        .context("give the member to remove, or --statefulset NAME --replicas N")?;
    let mut client = super::sql::connect(&args.host).await?;
    let reply = client
        .remove_node(RemoveNodeRequest { node: node.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("removing {node}: {}", s.message()))?
        .into_inner();
    println!("{}", reply.message);
    Ok(())
}

/// The StatefulSet ordinal of a member named `<statefulset>-<ordinal>`.
fn ordinal(statefulset: &str, member_name: &str) -> Option<u32> {
    let digits = member_name.strip_prefix(statefulset)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The names of the members a scale-down to `replicas` drops, in order, each once (a name
/// can stand for several incarnations of a pod whose data dir was lost).
fn dropped_members(members: &[ClusterMember], statefulset: &str, replicas: u32) -> Vec<String> {
    let mut names: Vec<(u32, String)> = members
        .iter()
        .filter_map(|m| ordinal(statefulset, &m.name).map(|k| (k, m.name.clone())))
        .filter(|(k, _)| *k >= replicas)
        .collect();
    names.sort();
    names.dedup();
    names.into_iter().map(|(_, name)| name).collect()
}

/// Removes, one at a time, every member a scale-down of `statefulset` to `replicas` drops,
/// asking the cluster again before each removal so a run that was interrupted, or a second
/// run, only finishes the job.
async fn remove_dropped_ordinals(
    host: &str,
    statefulset: &str,
    replicas: u32,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let error = match remove_next(host, statefulset, replicas).await {
            Ok(Removal::Done(members)) => {
                println!(
                    "no member of {statefulset} has an ordinal of {replicas} or more; members: {}",
                    members.join(", ")
                );
                return Ok(());
            }
            Ok(Removal::Removed(message)) => {
                println!("{message}");
                continue;
            }
            Err(e) => e,
        };
        if Instant::now() + RETRY_INTERVAL >= deadline {
            return Err(error.context(format!(
                "removing the members of {statefulset} from ordinal {replicas} on"
            )));
        }
        eprintln!("{error:#}; retrying");
        tokio::time::sleep(RETRY_INTERVAL).await;
    }
}

enum Removal {
    /// Nothing (left) to remove; the members' names.
    Done(Vec<String>),
    /// One member removed; the cluster's message.
    Removed(String),
}

async fn cluster_status(
    host: &str,
) -> anyhow::Result<(AdminClient<Channel>, ClusterStatusResponse)> {
    let mut client = super::sql::connect(host).await?;
    let status = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("asking {host} for its cluster"))?
        .into_inner();
    anyhow::ensure!(
        !status.cluster_id.is_empty(),
        "{host} is not in an initialized cluster"
    );
    Ok((client, status))
}

async fn remove_next(host: &str, statefulset: &str, replicas: u32) -> anyhow::Result<Removal> {
    let (mut client, mut status) = cluster_status(host).await?;
    // The leader's membership is the one that counts: a member that was just removed (a
    // Service may route to it until its pod stops) can still list itself.
    let leader = status
        .members
        .iter()
        .find(|m| m.leader && m.node_id != status.node_id)
        .map(|m| format!("http://{}", m.address));
    if let Some(leader) = leader {
        match cluster_status(&leader).await {
            Ok((leader_client, leader_status)) => {
                client = leader_client;
                status = leader_status;
            }
            Err(e) => eprintln!("{e:#}; going on with the view of {host}"),
        }
    }
    let Some(name) = dropped_members(&status.members, statefulset, replicas)
        .into_iter()
        .next()
    else {
        return Ok(Removal::Done(
            status.members.into_iter().map(|m| m.name).collect(),
        ));
    };
    let reply = client
        .remove_node(RemoveNodeRequest { node: name.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("removing {name}"))?
        .into_inner();
    Ok(Removal::Removed(reply.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> ClusterMember {
        ClusterMember {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ordinals_come_from_the_statefulset_pod_name() {
        assert_eq!(ordinal("sluice", "sluice-0"), Some(0));
        assert_eq!(ordinal("sluice", "sluice-12"), Some(12));
        assert_eq!(ordinal("sluice", "sluice-a"), None);
        assert_eq!(ordinal("sluice", "sluice-"), None);
        assert_eq!(ordinal("sluice", "sluice-1-2"), None);
        assert_eq!(ordinal("sluice", "other-3"), None);
        assert_eq!(ordinal("sluice", "sluice3"), None);
        assert_eq!(ordinal("my-sluice", "sluice-3"), None);
    }

    #[test]
    fn a_scale_down_drops_the_highest_ordinals_only() {
        let members = [
            member("sluice-0"),
            member("sluice-4"),
            member("sluice-1"),
            member("sluice-10"),
            member("sluice-2"),
            member("sluice-4"),
            member("node-7"),
        ];
        assert_eq!(
            dropped_members(&members, "sluice", 2),
            vec!["sluice-2", "sluice-4", "sluice-10"]
        );
        assert!(dropped_members(&members, "sluice", 11).is_empty());
        assert!(dropped_members(&members, "other", 1).is_empty());
    }
}

//! N real nodes on fixed loopback ports that form one cluster: each lists every node as a
//! peer, the first is initialized through the `Initialize` call (as a deploy hook would),
//! and the others join by themselves.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use anyhow::Context as _;
use sluice::proto::{ClusterStatusRequest, ClusterStatusResponse, InitializeRequest};

use crate::node::{free_port, Node};
use crate::wait_for;

/// Shorter than the default, so a dead node's partitions move quickly in tests.
pub const NODE_TIMEOUT_MS: u64 = 3000;

pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub peers: String,
}

impl TestCluster {
    /// Starts `n` nodes and waits until all of them are voters of one cluster.
    pub async fn start(prefix: &str, n: usize) -> anyhow::Result<TestCluster> {
        TestCluster::start_at(prefix, &vec!["127.0.0.1"; n]).await
    }

    /// Starts one node on each of `hosts` (loopback addresses) and waits until all of them
    /// are voters of one cluster.
    pub async fn start_at(prefix: &str, hosts: &[&str]) -> anyhow::Result<TestCluster> {
        let listen: Vec<String> = hosts
            .iter()
            .map(|h| Ok(format!("{h}:{}", free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        TestCluster::start_advertised(prefix, &listen, &listen, &[]).await
    }

    /// As `start_at`, every node running under `wrapper` (see `Node::wrapper`).
    pub async fn start_at_wrapped(
        prefix: &str,
        hosts: &[&str],
        wrapper: &[String],
    ) -> anyhow::Result<TestCluster> {
        let listen: Vec<String> = hosts
            .iter()
            .map(|h| Ok(format!("{h}:{}", free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        TestCluster::start_advertised(prefix, &listen, &listen, wrapper).await
    }

    /// Starts node `i` listening on `listen[i]` and known to its peers as `advertise[i]`
    /// (a proxy in front of it, say), and waits until all are voters of one cluster.
    pub async fn start_advertised(
        prefix: &str,
        listen: &[String],
        advertise: &[String],
        wrapper: &[String],
    ) -> anyhow::Result<TestCluster> {
        anyhow::ensure!(
            listen.len() == advertise.len(),
            "one advertised address per node"
        );
        let n = listen.len();
        let peers = advertise.join(",");
        let mut nodes = Vec::new();
        for (i, (addr, advertised)) in listen.iter().zip(advertise).enumerate() {
            nodes.push(
                Node::start_wrapped(
                    &format!("{prefix}-{i}"),
                    addr,
                    vec![
                        "--peers".to_string(),
                        peers.clone(),
                        "--advertise-addr".to_string(),
                        advertised.clone(),
                        "--node-timeout-ms".to_string(),
                        NODE_TIMEOUT_MS.to_string(),
                    ],
                    wrapper.to_vec(),
                )
                .await?,
            );
        }
        let mut client = nodes[0].client().await?;
        client
            .initialize(InitializeRequest {})
            .await
            .map_err(|s| anyhow::anyhow!("initialize: {}", s.message()))?;
        let cluster = TestCluster { nodes, peers };
        cluster.wait_for_voters(n).await?;
        Ok(cluster)
    }

    /// Waits until every running node sees `n` voters and a leader.
    pub async fn wait_for_voters(&self, n: usize) -> anyhow::Result<()> {
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            wait_for(
                &format!("{} to see {n} voters and a leader", node.name),
                Duration::from_secs(60),
                || async {
                    let s = status(node).await.ok()?;
                    let voters = s.members.iter().filter(|m| m.voter).count();
                    (voters == n && s.leader_id != 0 && s.in_quorum).then_some(())
                },
            )
            .await
            .with_context(|| node.log_tail())?;
        }
        Ok(())
    }

    /// The index of the node that is the leader, as the first running node sees it.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        wait_for("a leader", Duration::from_secs(30), || async {
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                let Ok(s) = status(node).await else { continue };
                if s.role == "leader" && s.in_quorum {
                    return self.nodes.iter().position(|n| n.name == node.name);
                }
            }
            None
        })
        .await
    }

    /// The index of the running node whose Raft id is `id`.
    pub async fn index_of(&self, id: u64) -> anyhow::Result<usize> {
        for (i, node) in self.nodes.iter().enumerate() {
            if node.is_running() && status(node).await?.node_id == id {
                return Ok(i);
            }
        }
        anyhow::bail!("no running node has Raft id {id}")
    }
}

/// Which node id owns each partition, as `node` sees the replicated assignment.
pub async fn owners(node: &Node) -> anyhow::Result<std::collections::BTreeMap<(String, i32), u64>> {
    Ok(status(node)
        .await?
        .assignments
        .into_iter()
        .map(|a| ((a.topic, a.partition), a.node_id))
        .collect())
}

pub async fn status(node: &Node) -> anyhow::Result<ClusterStatusResponse> {
    let mut client = node.client().await?;
    Ok(client
        .cluster_status(ClusterStatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner())
}

/// Row count and an order-independent digest of every column of every row of a table,
/// read in slices of `created_at` so no single reply is huge.
pub async fn table_digest(node: &Node, table: &str) -> anyhow::Result<(u64, u64)> {
    let mut count = 0u64;
    let mut digest = 0u64;
    let bounds = [
        "1970-01-01 00:00:00",
        "2011-02-15 00:00:00",
        "2011-02-18 00:00:00",
        "2011-02-21 00:00:00",
        "2100-01-01 00:00:00",
    ];
    for w in bounds.windows(2) {
        let rows = node
            .rows(&format!(
                "SELECT * FROM {table} WHERE created_at >= '{}' AND created_at < '{}'",
                w[0], w[1]
            ))
            .await?;
        for row in rows {
            let mut h = DefaultHasher::new();
            row.hash(&mut h);
            digest = digest.wrapping_add(h.finish());
            count += 1;
        }
    }
    Ok((count, digest))
}

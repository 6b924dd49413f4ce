//! `sluice status`: the node and its consumers at a glance.

use anyhow::Context as _;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::proto::{ClusterStatusRequest, ConsumerStatusRequest, NodeStatusRequest};

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The node's gRPC address.
    #[arg(long, env = "SLUICE_HOST", default_value = "http://127.0.0.1:7070")]
    pub host: String,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut client = super::sql::connect(&args.host).await?;
    let node = client
        .node_status(NodeStatusRequest {})
        .await
        .context("asking the node for its status")?
        .into_inner();
    println!(
        "node {} (sluice {}) at {}: up {}s, {} tables, {} views, {} consumers ({} with errors)",
        node.node_id,
        node.version,
        node.grpc_address,
        node.uptime_seconds,
        node.tables,
        node.views,
        node.consumers,
        node.consumers_with_errors
    );
    let cluster = client
        .cluster_status(ClusterStatusRequest {})
        .await
        .context("asking the node for its cluster")?
        .into_inner();
    if cluster.cluster_id.is_empty() {
        println!(
            "not in a cluster yet: run `sluice init` on one node, or start it with --bootstrap"
        );
    } else {
        println!(
            "cluster {}: this node is {} (term {}, log {}, applied {}){}",
            cluster.cluster_id,
            cluster.role,
            cluster.term,
            cluster.last_log_index,
            cluster.applied_index,
            if cluster.in_quorum {
                ""
            } else {
                ", NOT in a quorum"
            }
        );
        let mut members = Table::new();
        members.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
            "node",
            "id",
            "address",
            "role",
            "matched log",
        ]);
        for m in cluster.members {
            members.add_row(vec![
                m.name,
                m.node_id.to_string(),
                m.address,
                match (m.leader, m.voter) {
                    (true, _) => "leader",
                    (false, true) => "voter",
                    (false, false) => "learner",
                }
                .to_string(),
                if m.has_matched_index {
                    m.matched_index.to_string()
                } else {
                    String::new()
                },
            ]);
        }
        println!("{members}");
    }
    let consumers = client
        .consumer_status(ConsumerStatusRequest::default())
        .await
        .context("asking the node for its consumers")?
        .into_inner()
        .consumers;
    if consumers.is_empty() {
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "table",
        "topic",
        "partition",
        "offset",
        "read",
        "rows",
        "skipped",
        "restarts",
        "active",
        "last error",
    ]);
    for c in consumers {
        table.add_row(vec![
            c.table,
            c.topic,
            c.partition.to_string(),
            c.current_offset.to_string(),
            c.num_messages_read.to_string(),
            c.num_rows_written.to_string(),
            c.num_skipped_messages.to_string(),
            c.num_restarts.to_string(),
            if c.is_currently_used { "yes" } else { "no" }.to_string(),
            c.exceptions
                .last()
                .map(|e| e.text.clone())
                .unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(())
}

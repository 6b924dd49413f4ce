//! `sluice status`: the node and its consumers at a glance.

use anyhow::Context as _;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::proto::{ClusterStatusRequest, ExecuteRequest, NodeStatusRequest};

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
        if !cluster.placements.is_empty() {
            let mut tables = Table::new();
            tables.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
                "table",
                "held by",
                "raft group",
            ]);
            for p in cluster.placements {
                tables.add_row(vec![p.table, p.nodes.join(", "), p.group]);
            }
            println!("{tables}");
        }
    }
    // Cluster-wide: every member's consumers, with the node that runs each.
    let result = client
        .execute(ExecuteRequest {
            sql: "SELECT node, `table`, assignments.topic, assignments.partition_id, \
                  assignments.current_offset, num_messages_read, num_rows_written, \
                  num_skipped_messages, num_restarts, is_currently_used, exceptions.text \
                  FROM system.kafka_consumers"
                .into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .context("asking for the consumers")?
        .into_inner()
        .result
        .map(|r| r.rows)
        .unwrap_or_default();
    if result.is_empty() {
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "node",
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
    let unlist = |v: &str| {
        v.trim_start_matches('[')
            .trim_end_matches(']')
            .trim_matches('\'')
            .to_string()
    };
    for row in result {
        let v = |i: usize| row.values.get(i).cloned().unwrap_or_default();
        let last_error = v(10)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .rsplit("','")
            .next()
            .unwrap_or_default()
            .trim_matches('\'')
            .to_string();
        table.add_row(vec![
            v(0),
            v(1),
            unlist(&v(2)),
            unlist(&v(3)),
            unlist(&v(4)),
            v(5),
            v(6),
            v(7),
            v(8),
            if v(9) == "true" { "yes" } else { "no" }.to_string(),
            last_error,
        ]);
    }
    println!("{table}");
    Ok(())
}

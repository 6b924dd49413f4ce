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
                  stored_offset, high_watermark, lag, messages_per_second, num_messages_read, \
                  num_rows_written, num_skipped_messages, num_restarts, is_currently_used, \
                  exceptions.text \
                  FROM system.kafka_consumers"
                .into(),
            ..ExecuteRequest::default()
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
    let rows: Vec<ConsumerRow> = result
        .into_iter()
        .map(|row| ConsumerRow::from_values(&row.values))
        .collect();
    let mut lags = Table::new();
    lags.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "table",
        "partitions",
        "lag",
        "messages/s",
    ]);
    for t in table_lags(&rows) {
        lags.add_row(vec![
            t.table,
            t.partitions.to_string(),
            match t.unknown {
                0 => t.lag.to_string(),
                n => format!("{} (+{n} partitions not measured yet)", t.lag),
            },
            format!("{:.1}", t.messages_per_second),
        ]);
    }
    println!("{lags}");
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "node",
        "table",
        "topic",
        "partition",
        "stored",
        "end",
        "lag",
        "msg/s",
        "read",
        "rows",
        "skipped",
        "restarts",
        "active",
        "last error",
    ]);
    for r in rows {
        let known = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        table.add_row(vec![
            r.node,
            r.table,
            r.topic,
            r.partition.to_string(),
            known(r.stored_offset),
            known(r.high_watermark),
            r.lag.map(|v| v.to_string()).unwrap_or_default(),
            format!("{:.1}", r.messages_per_second),
            r.read,
            r.rows,
            r.skipped,
            r.restarts,
            if r.active { "yes" } else { "no" }.to_string(),
            r.last_error,
        ]);
    }
    println!("{table}");
    Ok(())
}

/// One row of `system.kafka_consumers` as the status query selects it.
#[derive(Debug, Clone, Default, PartialEq)]
struct ConsumerRow {
    node: String,
    table: String,
    topic: String,
    /// -1 for the row that shows a topic's discovery error.
    partition: i32,
    stored_offset: Option<i64>,
    high_watermark: Option<i64>,
    lag: Option<u64>,
    messages_per_second: f64,
    read: String,
    rows: String,
    skipped: String,
    restarts: String,
    active: bool,
    last_error: String,
}

/// A one-element list as the SQL results show it (`['events']`, `[3]`), unwrapped.
fn unlist(v: &str) -> String {
    v.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_matches('\'')
        .to_string()
}

impl ConsumerRow {
    fn from_values(values: &[String]) -> ConsumerRow {
        let v = |i: usize| values.get(i).cloned().unwrap_or_default();
        let last_error = v(13)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .rsplit("','")
            .next()
            .unwrap_or_default()
            .trim_matches('\'')
            .to_string();
        ConsumerRow {
            node: v(0),
            table: v(1),
            topic: unlist(&v(2)),
            partition: unlist(&v(3)).parse().unwrap_or(-1),
            // NULL (not measured yet) parses as nothing.
            stored_offset: v(4).parse().ok(),
            high_watermark: v(5).parse().ok(),
            lag: v(6).parse().ok(),
            messages_per_second: v(7).parse().unwrap_or(0.0),
            read: v(8),
            rows: v(9),
            skipped: v(10),
            restarts: v(11),
            active: v(12) == "true",
            last_error,
        }
    }
}

/// A table's lag over its partitions, wherever they run.
#[derive(Debug, Clone, PartialEq)]
struct TableLag {
    table: String,
    partitions: usize,
    /// The sum over the partitions whose lag is known.
    lag: u64,
    /// Partitions whose consumer has not read the partition's end yet.
    unknown: usize,
    messages_per_second: f64,
}

/// Each table's total lag, in name order; topic error rows are no partitions.
fn table_lags(rows: &[ConsumerRow]) -> Vec<TableLag> {
    let mut tables: std::collections::BTreeMap<&str, TableLag> = Default::default();
    for r in rows.iter().filter(|r| r.partition >= 0) {
        let t = tables.entry(&r.table).or_insert_with(|| TableLag {
            table: r.table.clone(),
            partitions: 0,
            lag: 0,
            unknown: 0,
            messages_per_second: 0.0,
        });
        t.partitions += 1;
        match r.lag {
            Some(lag) => t.lag += lag,
            None => t.unknown += 1,
        }
        t.messages_per_second += r.messages_per_second;
    }
    tables.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_consumer_row_is_read_from_its_values() {
        let row = ConsumerRow::from_values(&values(&[
            "n1",
            "queue",
            "['events']",
            "[2]",
            "40",
            "100",
            "60",
            "12.5",
            "40",
            "38",
            "2",
            "0",
            "true",
            "['first','last one']",
        ]));
        assert_eq!(
            (
                row.topic.as_str(),
                row.partition,
                row.stored_offset,
                row.high_watermark,
                row.lag
            ),
            ("events", 2, Some(40), Some(100), Some(60))
        );
        assert!(row.active);
        assert_eq!(row.last_error, "last one");
        let unmeasured = ConsumerRow::from_values(&values(&[
            "n1",
            "queue",
            "['events']",
            "[0]",
            "NULL",
            "NULL",
            "NULL",
            "0",
            "0",
            "0",
            "0",
            "0",
            "true",
            "[]",
        ]));
        assert_eq!(
            (
                unmeasured.stored_offset,
                unmeasured.high_watermark,
                unmeasured.lag
            ),
            (None, None, None)
        );
    }

    #[test]
    fn a_tables_lag_is_the_sum_of_its_partitions() {
        let row = |table: &str, partition, lag| ConsumerRow {
            table: table.into(),
            partition,
            lag,
            messages_per_second: 10.0,
            ..ConsumerRow::default()
        };
        let lags = table_lags(&[
            row("b", 0, Some(5)),
            row("a", 0, Some(100)),
            row("a", 1, Some(20)),
            row("a", 2, None),
            // A topic's discovery error is no partition.
            row("a", -1, None),
        ]);
        assert_eq!(
            lags,
            vec![
                TableLag {
                    table: "a".into(),
                    partitions: 3,
                    lag: 120,
                    unknown: 1,
                    messages_per_second: 30.0,
                },
                TableLag {
                    table: "b".into(),
                    partitions: 1,
                    lag: 5,
                    unknown: 0,
                    messages_per_second: 10.0,
                },
            ]
        );
    }
}

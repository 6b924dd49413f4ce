//! `sluice sql` as a user runs it, the real binary against a real node: statements from
//! `-q`, a file and standard input; each output format byte for byte, from `--format` and
//! from a `FORMAT` clause; DDL quiet when piped; and the exit codes that tell a refused
//! statement from a missing node.

use std::process::Output;

use anyhow::Context as _;
use cluster_tests::node::{free_port, sluice_sql};
use cluster_tests::Node;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The output of a successful run.
fn ok(host: &str, args: &[&str], stdin: &str) -> anyhow::Result<String> {
    let output = sluice_sql(host, args, stdin.as_bytes())?;
    anyhow::ensure!(
        output.status.success(),
        "sluice sql {args:?}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout(&output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_sql_behaves_like_clickhouse_client() -> anyhow::Result<()> {
    let node = Node::start("client").await?;
    let host = node.address.as_str();

    // DDL from standard input, several statements: nothing printed when piped.
    let created = ok(
        host,
        &[],
        "CREATE TABLE t (id UInt64, name Nullable(String), tags Array(String))
           ENGINE = MergeTree ORDER BY id;
         SHOW TABLES;",
    )?;
    assert_eq!(created, "t\n");

    // Rows come from a Kafka-less table only through views; the formats are checked on
    // a query over literal rows instead, the same bytes any table would give.
    let query =
        "SELECT * FROM (VALUES (1, 'tab\tbed', 7), (20, NULL, 8)) AS v(id, name, n) ORDER BY id";
    assert_eq!(
        ok(host, &["-q", query], "")?,
        "1\ttab\\tbed\t7\n20\t\\N\t8\n"
    );
    assert_eq!(
        ok(host, &["-q", query, "--format", "TSVWithNames"], "")?,
        "id\tname\tn\n1\ttab\\tbed\t7\n20\t\\N\t8\n"
    );
    assert_eq!(
        ok(host, &["-q", query, "--format", "CSVWithNames"], "")?,
        "\"id\",\"name\",\"n\"\n1,\"tab\tbed\",7\n20,\\N,8\n"
    );
    assert_eq!(
        ok(host, &["--query", query, "--format", "JSONEachRow"], "")?,
        "{\"id\":\"1\",\"name\":\"tab\\tbed\",\"n\":\"7\"}\n{\"id\":\"20\",\"name\":null,\"n\":\"8\"}\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(host, &["-q", query, "--format", "JSON"], "")?)
            .context("the JSON format is JSON")?;
    assert_eq!(json["rows"], 2);
    assert_eq!(json["meta"][0]["name"], "id");
    assert_eq!(json["data"][1]["name"], serde_json::Value::Null);
    assert_eq!(
        ok(host, &["-q", query, "--format", "Vertical"], "")?,
        "Row 1:\n──────\nid:   1\nname: tab\tbed\nn:    7\n\nRow 2:\n──────\nid:   20\nname: ᴺᵁᴸᴸ\nn:    8\n"
    );
    assert_eq!(
        ok(host, &["-q", query, "--format", "PrettyCompact"], "")?,
        "┌─id─┬─name────┬─n─┐\n│  1 │ tab\tbed │ 7 │\n│ 20 │ ᴺᵁᴸᴸ    │ 8 │\n└────┴─────────┴───┘\n"
    );
    // A FORMAT clause wins over --format, as in ClickHouse.
    assert_eq!(
        ok(
            host,
            &["-q", &format!("{query} FORMAT CSV"), "--format", "JSON"],
            ""
        )?,
        "1,\"tab\tbed\",7\n20,\\N,8\n"
    );

    // A file of statements, and `-f -` for standard input.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("q.sql");
    std::fs::write(&file, "SELECT 1 AS one;\nSELECT 'two' AS two;\n")?;
    let path = file.to_string_lossy().to_string();
    assert_eq!(ok(host, &["-f", &path], "")?, "1\ntwo\n");
    assert_eq!(
        ok(host, &["-n", "-f", "-"], "SELECT 3; SELECT 4;")?,
        "3\n4\n"
    );

    // Exit codes: 2 for a statement the node refuses, 3 when no node answers.
    let refused = sluice_sql(host, &["-q", "SELEC 1"], b"")?;
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let missing = sluice_sql(host, &["-q", "SELECT * FROM nowhere"], b"")?;
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nowhere"),
        "{missing:?}"
    );
    let unknown = sluice_sql(host, &["-q", "SELECT 1", "--format", "Parquet"], b"")?;
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let closed = format!("127.0.0.1:{}", free_port()?);
    let unreachable = sluice_sql(&closed, &["-q", "SELECT 1"], b"")?;
    assert_eq!(unreachable.status.code(), Some(3), "{unreachable:?}");
    // The port alone can name the node.
    let port = host.rsplit(':').next().context("a port")?;
    assert_eq!(
        ok("127.0.0.1", &["--port", port, "-q", "SELECT 5"], "")?,
        "5\n"
    );
    Ok(())
}

//! INSERT into stored tables with real node processes: an insert retried after its
//! table's Raft leader was killed with SIGKILL lands exactly once on every replica;
//! deduplication by block hash, by `insert_deduplication_token`, and off with
//! `insert_deduplicate = 0` (the negative control: the same retry then doubles rows);
//! and `sluice sql` sending rows from standard input and from a script, with a bad
//! value named by row and column.

use std::process::Output;
use std::time::Duration;

use anyhow::Context as _;
use cluster_tests::node::sluice_sql;
use cluster_tests::{wait_for, Node, TestCluster};

/// Rows `first..first + n` as CSV: `id,name,score`.
fn csv_rows(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("{i},\"name {i}\",{}\n", i % 97))
        .collect()
}

/// Count, sum of ids and distinct ids of `table` on `node`.
async fn figures(node: &Node, table: &str) -> anyhow::Result<(u64, u64, u64)> {
    let rows = node
        .rows(&format!(
            "SELECT count(), sum(id), count(DISTINCT id) FROM {table}"
        ))
        .await?;
    let r = rows.first().context("no row")?;
    let n = |i: usize| -> anyhow::Result<u64> {
        Ok(r.get(i).context("short row")?.parse().unwrap_or(0))
    };
    Ok((n(0)?, n(1)?, n(2)?))
}

/// The node that leads `table`'s Raft group, as the running nodes report it.
async fn table_leader(cluster: &TestCluster, table: &str) -> anyhow::Result<usize> {
    wait_for(
        &format!("a leader for {table}'s group"),
        Duration::from_secs(60),
        || async {
            for (i, node) in cluster.nodes.iter().enumerate() {
                if !node.is_running() {
                    continue;
                }
                let rows = node
                    .rows(&format!(
                        "SELECT role FROM system.raft_groups WHERE \"table\" = '{table}'"
                    ))
                    .await
                    .ok()?;
                if rows.iter().any(|r| r[0] == "leader") {
                    return Some(i);
                }
            }
            None
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_retried_after_a_kill_9_lands_once() -> anyhow::Result<()> {
    const ROWS: u64 = 30_000;
    let mut cluster = TestCluster::start("insert-kill", 3).await?;
    cluster.nodes[0]
        .script(
            "CREATE TABLE events (id UInt64, name String, score UInt8, note String)
               ENGINE = ReplicatedMergeTree ORDER BY id SETTINGS replicas = 3",
        )
        .await?;
    let leader = table_leader(&cluster, "events").await?;
    let client = (leader + 1) % 3;
    let watcher = (leader + 2) % 3;
    // Many small blocks, so the kill lands in the middle of the insert.
    let insert = format!(
        "INSERT INTO events (id, name, score) SETTINGS max_insert_block_size = 100 FORMAT CSV\n{}",
        csv_rows(1, ROWS)
    );
    let address = cluster.nodes[client].address.clone();
    let first_try = {
        let insert = insert.clone();
        tokio::spawn(async move {
            let mut c = sluice::cli::sql::connect(&address).await?;
            let r = c
                .execute(sluice::proto::ExecuteRequest {
                    sql: insert,
                    ..Default::default()
                })
                .await;
            anyhow::Ok(r.map(|r| r.into_inner().message))
        })
    };
    // Kill the table's leader once some of the rows are stored, mid-insert.
    let watching = &cluster.nodes[watcher];
    wait_for("the first blocks", Duration::from_secs(60), || async {
        let n = figures(watching, "events").await.ok()?.0;
        (n > 0).then_some(n)
    })
    .await?;
    cluster.nodes[leader].kill9()?;
    let stored_at_kill = figures(&cluster.nodes[watcher], "events").await?.0;
    println!("{stored_at_kill} of {ROWS} rows stored when the table's leader was killed");
    assert!(stored_at_kill < ROWS, "the kill came after the insert");
    let first = first_try.await??;
    println!("first try (leader killed during it): {first:?}");
    // The client retries the same insert until it succeeds.
    let mut tries = 1;
    let reply = loop {
        tries += 1;
        match cluster.nodes[client].sql(&insert).await {
            Ok(r) => break r.message,
            Err(s) if tries < 30 => {
                println!("retry {tries}: {}", s.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => anyhow::bail!("the retried insert kept failing: {}", s.message()),
        }
    };
    println!("retry {tries}: {reply}");
    if first.is_ok() {
        assert!(
            reply.contains("duplicate block"),
            "a retry of an insert that succeeded drops every block: {reply}"
        );
    }
    let sum: u64 = (1..=ROWS).sum();
    for i in [client, watcher] {
        assert_eq!(
            figures(&cluster.nodes[i], "events").await?,
            (ROWS, sum, ROWS)
        );
    }
    // The killed leader comes back and holds the same rows.
    cluster.nodes[leader].spawn().await?;
    let back = &cluster.nodes[leader];
    wait_for(
        "the restarted replica",
        Duration::from_secs(120),
        || async { (figures(back, "events").await.ok()? == (ROWS, sum, ROWS)).then_some(()) },
    )
    .await
    .with_context(|| back.log_tail())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_deduplicate_by_block_and_by_token() -> anyhow::Result<()> {
    let node = Node::start("insert-dedup").await?;
    node.script(
        "CREATE TABLE t (id UInt64, name String, score UInt8, d Date)
           ENGINE = MergeTree ORDER BY id",
    )
    .await?;
    let count = || async { figures(&node, "t").await.map(|f| f.0) };
    let values = "INSERT INTO t (id, name, score) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)";
    let first = node.sql(values).await.map_err(|s| anyhow::anyhow!("{s}"))?;
    assert_eq!(first.message, "Ok. 3 rows written.");
    // The same rows again: one block, dropped.
    let again = node.sql(values).await.map_err(|s| anyhow::anyhow!("{s}"))?;
    assert_eq!(
        again.message,
        "Ok. 0 rows written; 1 duplicate block (3 rows) dropped."
    );
    assert_eq!(count().await?, 3);
    // The negative control: with deduplication off, the same retry doubles the rows.
    let off = "INSERT INTO t (id, name, score) SETTINGS insert_deduplicate = 0 VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)";
    node.sql(off).await.map_err(|s| anyhow::anyhow!("{s}"))?;
    node.sql(off).await.map_err(|s| anyhow::anyhow!("{s}"))?;
    assert_eq!(count().await?, 9);
    // A token names the insert: other rows under the same token are its retry.
    let token = |rows: &str| {
        format!("INSERT INTO t SETTINGS insert_deduplication_token = 'batch-7' FORMAT JSONEachRow\n{rows}")
    };
    node.sql(&token("{\"id\": 10, \"name\": \"x\"}\n{\"id\": 11}"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let retry = node
        .sql(&token("{\"id\": 12}"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    assert!(
        retry.message.contains("1 duplicate block"),
        "{}",
        retry.message
    );
    assert_eq!(count().await?, 11);
    // Missing columns take their defaults.
    assert_eq!(
        node.rows("SELECT name, score, d FROM t WHERE id = 11")
            .await?,
        vec![vec![
            "".to_string(),
            "0".to_string(),
            "1970-01-01".to_string()
        ]]
    );
    // INSERT … SELECT from the table itself: its rows again, as new blocks.
    let copied = node
        .sql("INSERT INTO t (id, name, score) SELECT id + 100, name, score FROM t WHERE id < 4")
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    assert_eq!(copied.message, "Ok. 9 rows written.");
    // Bad input is named.
    let bad = node
        .sql("INSERT INTO t (id, score) VALUES (1, 5), (2, 300)")
        .await
        .expect_err("300 does not fit UInt8");
    assert_eq!(
        bad.message(),
        "INSERT INTO t: row 2, column score: cannot convert '300' to UInt8"
    );
    let bad = node
        .sql("INSERT INTO t FORMAT CSV\n1,a,2,1970-01-01\n2,b,x,1970-01-01\n")
        .await
        .expect_err("x is no number");
    assert!(
        bad.message().starts_with("INSERT INTO t: row 2: ") && bad.message().contains("score"),
        "{}",
        bad.message()
    );
    let bad = node
        .sql("INSERT INTO t FORMAT Avro\nxx")
        .await
        .expect_err("Avro cannot be split");
    assert!(
        bad.message().contains("format Avro cannot be split"),
        "{}",
        bad.message()
    );
    let bad = node
        .sql("INSERT INTO t SETTINGS insert_dedup = 1 VALUES (1, 'a', 1, '1970-01-01')")
        .await
        .expect_err("unknown setting");
    assert!(
        bad.message().contains("unknown setting insert_dedup"),
        "{}",
        bad.message()
    );
    assert_eq!(count().await?, 20);
    Ok(())
}

fn ok(output: Output) -> anyhow::Result<String> {
    anyhow::ensure!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_sql_streams_rows_from_stdin_and_a_file() -> anyhow::Result<()> {
    const ROWS: u64 = 50_000;
    let node = Node::start("insert-cli").await?;
    let host = node.address.as_str();
    ok(sluice_sql(
        host,
        &[
            "-q",
            "CREATE TABLE t (id UInt64, name String, score UInt8) ENGINE = MergeTree ORDER BY id",
        ],
        b"",
    )?)?;
    // From standard input, as `sluice sql -q "INSERT INTO t FORMAT CSV" < rows.csv`: more
    // than one 1 MiB chunk of the stream.
    let data = csv_rows(1, ROWS);
    assert!(data.len() > 1024 * 1024);
    ok(sluice_sql(
        host,
        &["-q", "INSERT INTO t FORMAT CSV"],
        data.as_bytes(),
    )?)?;
    let sum: u64 = (1..=ROWS).sum();
    assert_eq!(figures(&node, "t").await?, (ROWS, sum, ROWS));
    // The same file again is dropped block by block.
    ok(sluice_sql(
        host,
        &["-q", "INSERT INTO t FORMAT CSV"],
        data.as_bytes(),
    )?)?;
    assert_eq!(figures(&node, "t").await?.0, ROWS);
    // With names, from a file given with --file, with inline data after each insert.
    let dir = std::env::temp_dir().join(cluster_tests::unique("insert-cli"));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("script.sql");
    std::fs::write(
        &script,
        "INSERT INTO t FORMAT JSONEachRow {\"id\": 100001, \"name\": \"j;1\"} {\"id\": 100002}\n\
         INSERT INTO t FORMAT TSVWithNames\nscore\tid\n\
         SELECT count() FROM t WHERE id > 100000;\n",
    )?;
    // TSVWithNames in a script takes one line: its header, and no row.
    let out = ok(sluice_sql(
        host,
        &["--file", &script.display().to_string()],
        b"",
    )?)?;
    assert_eq!(out, "2\n");
    let tsv = "score\tid\n7\t200001\n8\t200002\n";
    ok(sluice_sql(
        host,
        &["-q", "INSERT INTO t FORMAT TSVWithNames"],
        tsv.as_bytes(),
    )?)?;
    assert_eq!(
        node.rows("SELECT id, score FROM t WHERE id > 200000 ORDER BY id")
            .await?,
        vec![
            vec!["200001".to_string(), "7".to_string()],
            vec!["200002".to_string(), "8".to_string()]
        ]
    );
    // A bad row fails the client with the node's words and exit code 2.
    let failed = sluice_sql(
        host,
        &["-q", "INSERT INTO t FORMAT JSONEachRow"],
        b"{\"id\": 300001}\n{\"id\": \"many\"}\n",
    )?;
    assert_eq!(failed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("row 2") && stderr.contains("id"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

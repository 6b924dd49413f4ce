//! `cargo bench -p sluice --bench decode`: JSONEachRow decode of the guide's GitHub events
//! into Arrow, one block of the size a consumer cuts by default, on one thread. The piece
//! of the ingest path that `sluice bench-decode` measures over a real topic, here without a
//! broker so that a change to the decoder can be weighed in seconds.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use sluice::catalog::{Catalog, TableDef};
use sluice::format::{decode_block, RawMessage};
use sluice::ingest::block_cutter::{BlockCutter, BlockLimits};
use sluice::sample::github;

const GUIDE_DDL: &str = include_str!("../../scripts/sql/quickstart.sql");

/// The guide's Kafka table, github_queue.
fn guide_table() -> TableDef {
    let text = GUIDE_DDL
        .replace("${KAFKA_BROKERS}", "127.0.0.1:9092")
        .replace("${KAFKA_TOPIC}", "github")
        .replace("${KAFKA_GROUP}", "bench");
    let statements = sluice::sql::split_statements(&text).expect("the guide's DDL splits");
    let first = statements.first().expect("a first statement");
    let sluice::sql::Statement::CreateTable(create) =
        sluice::sql::parse(first).expect("the guide's DDL parses")
    else {
        panic!("the guide starts with its Kafka table");
    };
    sluice::sql::ddl::table_def(&create, &Catalog::default()).expect("a valid table")
}

/// One block of events, cut where the table's default rows and bytes limits cut it.
fn one_block(table: &TableDef) -> Vec<RawMessage> {
    let limits = BlockLimits::of(table.kafka().expect("a Kafka table"));
    let mut cutter = BlockCutter::new(limits);
    let now = std::time::Instant::now();
    let mut block = Vec::new();
    for i in 0.. {
        let payload = Bytes::from(github::event(42, i).json_line());
        let message = RawMessage {
            key: Some(Bytes::from(i.to_string())),
            payload: Some(payload),
            offset: i64::try_from(i).expect("a small offset"),
            timestamp_ms: Some(1_700_000_000_000),
            headers: Vec::new(),
        };
        cutter.push(message.len_bytes().max(1), now);
        block.push(message);
        if cutter.is_full() {
            break;
        }
    }
    block
}

fn decode(c: &mut Criterion) {
    let table = guide_table();
    let block = one_block(&table);
    let bytes: usize = block
        .iter()
        .map(|m| m.payload.as_ref().map_or(0, Bytes::len))
        .sum();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("guide_block_{}_events", block.len()), |b| {
        b.iter(|| {
            let decoded =
                decode_block(&table, "github", 0, black_box(&block)).expect("the events decode");
            assert_eq!(decoded.batch.num_rows(), block.len());
            decoded
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

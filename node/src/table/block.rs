//! A block: the unit that is replicated, deduplicated and stored.
//!
//! Its identity is its hash. A block read from Kafka hashes its source range with its
//! rows, so a retried range is recognized while identical rows at other offsets are not
//! mistaken for it; a block with no source (a direct insert) hashes its rows alone, which
//! is ClickHouse's rule for ReplicatedMergeTree.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::ipc::CompressionType;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::part::PartError;

/// Where a block's rows came from: a range of one Kafka partition, read for one view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRange {
    /// The view that produced the rows; each view keeps its own position in each partition.
    pub source: String,
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

impl SourceRange {
    /// The key under which the table keeps this partition's next offset.
    pub fn position_key(&self) -> PositionKey {
        PositionKey {
            source: self.source.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionKey {
    pub source: String,
    pub topic: String,
    pub partition: i32,
}

pub type BlockHash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub table: String,
    pub source: Option<SourceRange>,
    pub rows: u64,
    pub hash: BlockHash,
    /// The rows as a part (Parquet, see `part`); an Arrow IPC stream in entries written
    /// before parts; empty when the block has no rows (it then only advances its source
    /// position). Shared, not copied, when an entry is cloned: the
    /// log hands the same block to each follower's replication and to apply. Serialized
    /// as MessagePack bin, as a `Vec<u8>` under `serde_bytes` was.
    #[serde(with = "shared_bytes")]
    pub data: Bytes,
}

/// `Bytes` as a byte string.
mod shared_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(data)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        serde_bytes::ByteBuf::deserialize(d).map(|b| Bytes::from(b.into_vec()))
    }
}

impl Block {
    /// A block of a batch's rows, encoded as the part every replica will store: sorted
    /// by the target table's ORDER BY, so the writer sorts and compresses once and the
    /// replicas only write the bytes.
    pub fn new(
        table: &str,
        source: Option<SourceRange>,
        batch: &RecordBatch,
        order_by: &[String],
    ) -> Result<Block, PartError> {
        let rows = batch.num_rows() as u64;
        let data = if rows == 0 {
            Bytes::new()
        } else {
            Bytes::from(super::part::encode(batch, order_by)?)
        };
        let mut hasher = blake3::Hasher::new();
        if let Some(s) = &source {
            hasher.update(s.source.as_bytes());
            hasher.update(&[0]);
            hasher.update(s.topic.as_bytes());
            hasher.update(&[0]);
            hasher.update(&s.partition.to_be_bytes());
            hasher.update(&s.first_offset.to_be_bytes());
            hasher.update(&s.last_offset.to_be_bytes());
        }
        hasher.update(&data);
        Ok(Block {
            table: table.to_string(),
            source,
            rows,
            hash: *hasher.finalize().as_bytes(),
            data,
        })
    }
}

/// A batch as blocks were encoded before parts: an Arrow IPC stream, LZ4-compressed.
pub fn encode_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let options =
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))?;
    let mut out = Vec::new();
    {
        let mut writer = StreamWriter::try_new_with_options(&mut out, &batch.schema(), options)?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(out)
}

/// Decodes a block encoded before parts (`encode_ipc`); `projection` picks columns by index.
pub fn decode(
    data: &[u8],
    projection: Option<Vec<usize>>,
) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let reader = StreamReader::try_new(Cursor::new(data), projection)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::UInt32, false),
            Field::new("b", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["x", "ü", "修"])),
            ],
        )
        .expect("batch")
    }

    fn range(first: i64, last: i64) -> SourceRange {
        SourceRange {
            source: "mv".into(),
            topic: "t".into(),
            partition: 0,
            first_offset: first,
            last_offset: last,
        }
    }

    #[test]
    fn roundtrip_and_projection() {
        let b = Block::new("t", None, &batch(), &[]).expect("block");
        assert_eq!(
            super::super::part::decode(&b.data).expect("decode"),
            vec![batch()]
        );
        let legacy = encode_ipc(&batch()).expect("encode");
        let (_, batches) = decode(&legacy, None).expect("decode");
        assert_eq!(batches, vec![batch()]);
        let (_, batches) = decode(&legacy, Some(vec![1])).expect("decode");
        assert_eq!(batches[0].num_columns(), 1);
        assert_eq!(batches[0].num_rows(), 3);
    }

    #[test]
    fn identity_includes_the_source_range() {
        let a = Block::new("t", Some(range(0, 2)), &batch(), &[]).expect("block");
        let again = Block::new("t", Some(range(0, 2)), &batch(), &[]).expect("block");
        let elsewhere = Block::new("t", Some(range(3, 5)), &batch(), &[]).expect("block");
        assert_eq!(a.hash, again.hash);
        assert_ne!(a.hash, elsewhere.hash);
        let plain = Block::new("t", None, &batch(), &[]).expect("block");
        assert_eq!(
            plain.hash,
            Block::new("t", None, &batch(), &[]).expect("block").hash
        );
    }
}

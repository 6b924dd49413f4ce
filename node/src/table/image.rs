//! A replica's image for a Raft snapshot: its records, small, and the names of the part
//! files they refer to, which travel beside it as files and are never held in memory.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableImage {
    /// Every record of the replica: part list, positions, dedup window, epochs, writer log.
    #[serde(with = "image_pairs")]
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The part files the records name, in order: file name (no directory) and length.
    pub files: Vec<(String, u64)>,
}

/// A key and its value, as stored.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A list of byte pairs as MessagePack byte strings (not arrays of numbers).
pub mod image_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_bytes::ByteBuf;

    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let wire: Vec<(&serde_bytes::Bytes, &serde_bytes::Bytes)> = pairs
            .iter()
            .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v)))
            .collect();
        wire.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::KeyValue>, D::Error> {
        let wire: Vec<(ByteBuf, ByteBuf)> = Vec::deserialize(d)?;
        Ok(wire
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.into_vec()))
            .collect())
    }
}

//! Where a replica's state lives: the layout of its sled keys, and the name of its
//! directory of part files. Only the key encodings; what is stored under them is the
//! business of the modules that write it.

use crate::table::block::{BlockHash, PositionKey};

pub(super) const NEXT_SEQ: &[u8] = b"m/next_seq";
/// Prefix of the writer log: one entry per applied block from a Kafka partition.
pub(super) const WRITER_LOG: &[u8] = b"l/";
pub(super) const ROWS: &[u8] = b"m/rows";
/// Prefix of the part list: `p/` and the part's first block sequence number.
pub(super) const PART: &[u8] = b"p/";
/// Prefix of blocks stored before parts.
pub(super) const LEGACY_BLOCK: &[u8] = b"b/";

/// A table's directory name: its name, with every byte but letters, digits, `_` and `-`
/// written as `%xx`, so two tables never share one and no name leaves the root.
pub(super) fn dir_name(table: &str) -> String {
    let mut out = String::from("t-");
    for b in table.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

pub(super) fn seq_key(prefix: &[u8], seq: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn part_key(first: u64) -> Vec<u8> {
    seq_key(PART, first)
}

pub(super) fn window_key(seq: u64) -> Vec<u8> {
    seq_key(b"w/", seq)
}

pub(super) fn hash_key(hash: &BlockHash) -> Vec<u8> {
    let mut k = b"h/".to_vec();
    k.extend_from_slice(hash);
    k
}

pub(super) fn position_key(p: &PositionKey) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(p.source.as_bytes());
    k.push(0);
    k.extend_from_slice(p.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&p.partition.to_be_bytes());
    k
}

/// The highest assignment epoch that wrote to a source partition through a Kafka table.
/// Epochs are comparable only within one Kafka table's partition: a view created again
/// over another Kafka table starts a line of its own.
pub(super) fn epoch_key(p: &PositionKey, kafka_table: &str) -> Vec<u8> {
    let mut k = position_key(p);
    k[0] = b'e';
    k.push(0);
    k.extend_from_slice(kafka_table.as_bytes());
    k
}

/// The block sequence number at which a source partition was last rewound on purpose: a
/// block stored before it may be stored again (a replay), whatever the dedup window holds.
pub(super) fn replay_key(p: &PositionKey) -> Vec<u8> {
    let mut k = position_key(p);
    k[0] = b'r';
    k
}

pub(super) fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_make_distinct_directories() {
        assert_eq!(dir_name("events"), "t-events");
        assert_ne!(dir_name("a b"), dir_name("a_b"));
        assert_eq!(dir_name(".."), "t-%2e%2e");
        assert_eq!(dir_name("a/b"), "t-a%2fb");
    }
}

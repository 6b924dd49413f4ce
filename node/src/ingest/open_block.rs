//! The messages of the block being cut, copied out of librdkafka's buffers (which are
//! returned as soon as a message is dropped) and counted by the block cutter.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rdkafka::message::Headers as _;
use rdkafka::Message;

use super::block_cutter::BlockCutter;
use crate::format::RawMessage;

/// Messages' bytes are copied into chunks of this size, each message keeping a slice of
/// its chunk: a block costs an allocation per chunk instead of two per message, and a free
/// per chunk instead of one per message on the decoding thread (those frees, crossing
/// threads, were a few per cent of a node's CPU).
const MESSAGE_CHUNK: usize = 1 << 20;

#[derive(Default)]
pub struct OpenBlock {
    messages: Vec<RawMessage>,
    chunk: BytesMut,
}

impl OpenBlock {
    pub fn add(&mut self, cutter: &mut BlockCutter, m: &impl Message, now: Instant) {
        let raw = RawMessage {
            payload: m.payload().map(|b| self.copy(b)),
            key: m.key().map(|b| self.copy(b)),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m.headers().map_or_else(Vec::new, |headers| {
                headers
                    .iter()
                    .map(|h| (h.key.to_string(), self.copy(h.value.unwrap_or_default())))
                    .collect()
            }),
        };
        cutter.push(raw.len_bytes().max(1), now);
        self.messages.push(raw);
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Cuts the block: takes its messages and starts the cutter's count again.
    pub fn cut(&mut self, cutter: &mut BlockCutter) -> Vec<RawMessage> {
        cutter.reset();
        std::mem::take(&mut self.messages)
    }

    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            self.chunk = BytesMut::with_capacity(MESSAGE_CHUNK.max(bytes.len()));
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::message::{OwnedMessage, Timestamp};

    use super::*;
    use crate::ingest::block_cutter::BlockLimits;

    fn message(offset: i64, payload: Option<&[u8]>, key: Option<&[u8]>) -> OwnedMessage {
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            key.map(<[u8]>::to_vec),
            "events".into(),
            Timestamp::CreateTime(1_700_000_000_123),
            0,
            offset,
            None,
        )
    }

    fn cutter(max_rows: u64, max_bytes: u64) -> BlockCutter {
        BlockCutter::new(BlockLimits {
            max_rows,
            max_bytes,
            flush_interval: Duration::from_secs(1),
        })
    }

    #[test]
    fn messages_are_copied_as_read() {
        let now = Instant::now();
        let mut c = cutter(100, 1 << 20);
        let mut open = OpenBlock::default();
        open.add(&mut c, &message(7, Some(b"{\"a\":1}"), Some(b"k1")), now);
        let untimed = OwnedMessage::new(
            Some(b"x".to_vec()),
            None,
            "events".into(),
            Timestamp::NotAvailable,
            0,
            8,
            None,
        );
        open.add(&mut c, &untimed, now);
        assert_eq!(open.len(), 2);
        let messages = open.cut(&mut c);
        assert_eq!(
            messages[0],
            RawMessage {
                payload: Some(Bytes::from_static(b"{\"a\":1}")),
                key: Some(Bytes::from_static(b"k1")),
                offset: 7,
                timestamp_ms: Some(1_700_000_000_123),
                headers: Vec::new(),
            }
        );
        assert_eq!(messages[1].offset, 8);
        assert_eq!(messages[1].key, None);
        assert_eq!(messages[1].timestamp_ms, None);
    }

    #[test]
    fn payload_and_key_bytes_count_toward_the_size_limit() {
        let now = Instant::now();
        let mut c = cutter(100, 10);
        let mut open = OpenBlock::default();
        open.add(&mut c, &message(0, Some(b"12345"), Some(b"123")), now);
        assert!(!c.is_full(), "8 of 10 bytes");
        open.add(&mut c, &message(1, Some(b"12"), None), now);
        assert!(c.is_full(), "10 of 10 bytes");
    }

    #[test]
    fn an_empty_message_counts_one_byte() {
        let now = Instant::now();
        let mut c = cutter(100, 3);
        let mut open = OpenBlock::default();
        for offset in 0..2 {
            open.add(&mut c, &message(offset, None, None), now);
        }
        assert!(!c.is_full());
        open.add(&mut c, &message(2, Some(b""), None), now);
        assert!(c.is_full(), "three empty messages are three bytes");
        assert_eq!(open.cut(&mut c)[2].payload, Some(Bytes::new()));
    }

    #[test]
    fn cutting_empties_the_block_and_the_cutter() {
        let now = Instant::now();
        let mut c = cutter(2, 1 << 20);
        let mut open = OpenBlock::default();
        open.add(&mut c, &message(0, Some(b"a"), None), now);
        open.add(&mut c, &message(1, Some(b"b"), None), now);
        assert!(c.is_due(now));
        let block = open.cut(&mut c);
        assert_eq!(block.len(), 2);
        assert!(open.is_empty() && c.is_empty() && !c.is_due(now));
        // The next block starts from the next message, its bytes intact.
        open.add(&mut c, &message(2, Some(b"c"), None), now);
        assert_eq!(open.cut(&mut c)[0].payload, Some(Bytes::from_static(b"c")));
        assert_eq!(block[1].payload, Some(Bytes::from_static(b"b")));
    }

    #[test]
    fn a_message_larger_than_a_chunk_is_kept_whole() {
        let now = Instant::now();
        let mut c = cutter(100, u64::MAX);
        let mut open = OpenBlock::default();
        let big = vec![b'x'; MESSAGE_CHUNK + 10];
        open.add(&mut c, &message(0, Some(b"small"), None), now);
        open.add(&mut c, &message(1, Some(&big), None), now);
        open.add(&mut c, &message(2, Some(b"after"), None), now);
        let block = open.cut(&mut c);
        assert_eq!(block[0].payload.as_deref(), Some(&b"small"[..]));
        assert_eq!(
            block[1].payload.as_ref().map(Bytes::len),
            Some(MESSAGE_CHUNK + 10)
        );
        assert_eq!(block[2].payload.as_deref(), Some(&b"after"[..]));
    }
}

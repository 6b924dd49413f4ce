//! This node's dead-letter queue: the messages a Kafka table with
//! `kafka_handle_error_mode = 'dead_letter_queue'` could not parse, with their error, for
//! `system.dead_letter_queue` (which gathers every node's).
//!
//! Durable, as ClickHouse's system log table is: an operator looks for a lost message
//! after the fact, often after a restart, which an in-memory ring would have forgotten.
//! Bounded by a row count: the oldest letters go first. One letter per message: letters
//! are keyed by (table, topic, partition, offset), so a block read again after a retry
//! or a crash writes over its letters instead of adding to them. Must not import
//! anything of the crate: it sits under every module that writes or reads it.

use serde::{Deserialize, Serialize};

/// Letters kept per node; past it the oldest are dropped.
pub const DEFAULT_MAX_LETTERS: usize = 10_000;

/// The tree of letters by arrival (sequence number, big-endian).
const LOG_TREE: &str = "dead_letters";
/// The tree of sequence numbers by message (table, topic, partition, offset).
const INDEX_TREE: &str = "dead_letters/by_message";

/// One message that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub table: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub raw_message: Vec<u8>,
    pub error: String,
    /// When it was recorded, in microseconds since the epoch.
    pub event_time_us: i64,
}

impl DeadLetter {
    /// The message it is about: at most one letter per message is kept.
    fn message_key(&self) -> Vec<u8> {
        message_key(&self.table, &self.topic, self.partition, self.offset)
    }
}

fn message_key(table: &str, topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(table.len() + topic.len() + 14);
    key.extend_from_slice(table.as_bytes());
    key.push(0);
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead-letter queue storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("dead-letter queue: letter for {table}/{topic}/{partition} offset {offset} does not encode: {reason}")]
    Encode {
        table: String,
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error("dead-letter queue: stored letter {seq} is unreadable: {reason}")]
    Corrupt { seq: u64, reason: String },
}

/// The node's dead letters, on its sled database.
pub struct DeadLetterQueue {
    db: sled::Db,
    log: sled::Tree,
    index: sled::Tree,
    max_letters: usize,
}

impl DeadLetterQueue {
    pub fn open(db: &sled::Db, max_letters: usize) -> Result<DeadLetterQueue, DeadLetterError> {
        Ok(DeadLetterQueue {
            db: db.clone(),
            log: db.open_tree(LOG_TREE)?,
            index: db.open_tree(INDEX_TREE)?,
            max_letters: max_letters.max(1),
        })
    }

    /// Records `letters`, each replacing any letter of the same message, and flushes them
    /// to disk: a consumer records a block's letters before it writes the block, so that
    /// a block once stored never lacks its letters.
    pub async fn record(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(letters.len());
        for letter in letters {
            let value = rmp_serde::to_vec_named(letter).map_err(|e| DeadLetterError::Encode {
                table: letter.table.clone(),
                topic: letter.topic.clone(),
                partition: letter.partition,
                offset: letter.offset,
                reason: e.to_string(),
            })?;
            encoded.push((letter.message_key(), self.db.generate_id()?, value));
        }
        use sled::Transactional as _;
        (&self.log, &self.index)
            .transaction(|(log, index)| {
                for (message, seq, value) in &encoded {
                    if let Some(old) = index.insert(message.as_slice(), &seq.to_be_bytes())? {
                        log.remove(old)?;
                    }
                    log.insert(&seq.to_be_bytes(), value.as_slice())?;
                }
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => DeadLetterError::Storage(e),
                sled::transaction::TransactionError::Abort(()) => {
                    DeadLetterError::Storage(sled::Error::ReportableBug(
                        "dead-letter transaction aborted without a reason".into(),
                    ))
                }
            })?;
        self.evict()?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Drops the oldest letters past the bound.
    fn evict(&self) -> Result<(), DeadLetterError> {
        while self.log.len() > self.max_letters {
            let Some((seq, value)) = self.log.pop_min()? else {
                break;
            };
            // The index entry goes only if it still names this letter.
            if let Ok(letter) = rmp_serde::from_slice::<DeadLetter>(&value) {
                let message = letter.message_key();
                let _ = self
                    .index
                    .compare_and_swap(message, Some(seq.as_ref()), None::<&[u8]>)?;
            }
        }
        Ok(())
    }

    /// Every letter this node holds, oldest first.
    pub fn letters(&self) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let mut out = Vec::with_capacity(self.log.len());
        for item in self.log.iter() {
            let (seq, value) = item?;
            let letter = rmp_serde::from_slice::<DeadLetter>(&value).map_err(|e| {
                DeadLetterError::Corrupt {
                    seq: seq
                        .as_ref()
                        .try_into()
                        .map(u64::from_be_bytes)
                        .unwrap_or_default(),
                    reason: e.to_string(),
                }
            })?;
            out.push(letter);
        }
        Ok(out)
    }
}

/// Letters gathered from several nodes, one per message: a partition that moved while a
/// block was being retried may have had its letters recorded on both nodes; the latest
/// recording is kept. Ordered by table, topic, partition and offset.
pub fn one_per_message<I>(letters: I) -> Vec<(String, DeadLetter)>
where
    I: IntoIterator<Item = (String, DeadLetter)>,
{
    let mut by_message: std::collections::BTreeMap<Vec<u8>, (String, DeadLetter)> =
        std::collections::BTreeMap::new();
    for (node, letter) in letters {
        let message = letter.message_key();
        match by_message.get(&message) {
            Some((_, kept)) if kept.event_time_us >= letter.event_time_us => {}
            _ => {
                by_message.insert(message, (node, letter));
            }
        }
    }
    by_message.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(offset: i64, error: &str, at: i64) -> DeadLetter {
        DeadLetter {
            table: "queue".into(),
            topic: "events".into(),
            partition: 2,
            offset,
            key: b"k".to_vec(),
            raw_message: format!("{{bad {offset}").into_bytes(),
            error: error.into(),
            event_time_us: at,
        }
    }

    fn queue(max: usize) -> (tempfile::TempDir, DeadLetterQueue) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("sled opens");
        let q = DeadLetterQueue::open(&db, max).expect("queue opens");
        (dir, q)
    }

    #[tokio::test]
    async fn a_message_recorded_again_keeps_one_letter() {
        let (_dir, q) = queue(100);
        q.record(&[letter(5, "first", 1), letter(6, "x", 1)])
            .await
            .expect("record");
        q.record(&[letter(5, "retried", 2)]).await.expect("again");
        let letters = q.letters().expect("read");
        let seen: Vec<(i64, &str)> = letters
            .iter()
            .map(|l| (l.offset, l.error.as_str()))
            .collect();
        assert_eq!(seen, vec![(6, "x"), (5, "retried")]);
    }

    #[tokio::test]
    async fn the_oldest_letters_go_past_the_bound() {
        let (_dir, q) = queue(3);
        for offset in 0..5 {
            q.record(&[letter(offset, "e", offset)])
                .await
                .expect("record");
        }
        let offsets: Vec<i64> = q
            .letters()
            .expect("read")
            .iter()
            .map(|l| l.offset)
            .collect();
        assert_eq!(offsets, vec![2, 3, 4]);
        // An evicted message recorded again is a new letter, not a lost index entry.
        q.record(&[letter(0, "back", 9)]).await.expect("record");
        let offsets: Vec<i64> = q
            .letters()
            .expect("read")
            .iter()
            .map(|l| l.offset)
            .collect();
        assert_eq!(offsets, vec![3, 4, 0]);
    }

    #[tokio::test]
    async fn letters_survive_a_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = sled::Config::new().path(dir.path()).open().expect("open");
            let q = DeadLetterQueue::open(&db, 10).expect("queue");
            q.record(&[letter(1, "e", 1)]).await.expect("record");
        }
        let db = sled::Config::new().path(dir.path()).open().expect("reopen");
        let q = DeadLetterQueue::open(&db, 10).expect("queue");
        assert_eq!(q.letters().expect("read"), vec![letter(1, "e", 1)]);
    }

    #[test]
    fn gathered_letters_are_one_per_message_the_latest_kept() {
        let gathered = vec![
            ("a".to_string(), letter(7, "on a", 10)),
            ("b".to_string(), letter(7, "on b", 20)),
            ("a".to_string(), letter(3, "only", 5)),
        ];
        let kept: Vec<(String, i64, String)> = one_per_message(gathered)
            .into_iter()
            .map(|(node, l)| (node, l.offset, l.error))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("a".to_string(), 3, "only".to_string()),
                ("b".to_string(), 7, "on b".to_string())
            ]
        );
    }
}

//! A partition consumer's name and what it reports: shared by the consumers that fill
//! them in, the system tables and metrics that show them, and the peers that ask.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerKey {
    pub table: String,
    pub topic: String,
    pub partition: i32,
}

impl ConsumerKey {
    pub fn consumer_id(&self, node: &str) -> String {
        format!("{node}/{}/{}/{}", self.table, self.topic, self.partition)
    }
}

/// What a consumer reports, for `system.kafka_consumers` (ClickHouse's columns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerSnapshot {
    pub current_offset: i64,
    pub exceptions: Vec<(i64, String)>,
    pub last_poll_time: i64,
    pub num_messages_read: u64,
    pub last_commit_time: i64,
    pub num_commits: u64,
    pub is_currently_used: bool,
    pub num_skipped_messages: u64,
    pub num_rows_written: u64,
    pub num_restarts: u64,
    pub num_errors: u64,
}

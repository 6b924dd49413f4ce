//! Writing to Kafka: the table → Kafka half of the Kafka engine. Rows inserted into a
//! Kafka table, or pushed by a view whose target is one, become messages in the table's
//! `kafka_format` (encoded by `format::encode`) on the table's first topic; rows that
//! carry `_key`, `_timestamp`, `_headers.name` and `_headers.value` give their messages a
//! key, a timestamp and headers.
//!
//! At least once, as in ClickHouse: a write succeeds only after the broker acknowledged
//! every message, and a failure fails the write, so whoever retries it (the client, or a
//! consumer re-reading its block) may send some messages twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _, PurgeConfig};
use rdkafka::util::Timeout;

use super::client::KafkaClientDefaults;
use super::client_context::{with_failure_logs, CauseContext};
use crate::catalog::{KafkaSettings, TableDef, HEADER_NAMES, HEADER_VALUES};
use crate::format::encode::{encode_messages, EncodeError};

/// How long one message may wait for the broker's acknowledgment, retries included.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a write waiting for acknowledgments looks for a cause that waiting cannot
/// cure (a refused password, a missing ACL).
const LASTING_CAUSE_CHECK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("table {0} is not a Kafka table")]
    NotKafka(String),
    #[error("table {table}: no topic in kafka_topic_list")]
    NoTopic { table: String },
    #[error("table {table}: column {column}: '{value}' is not a member of its {ty}")]
    NotAnEnumMember {
        table: String,
        column: String,
        value: String,
        ty: String,
    },
    #[error("table {table}: message key, timestamp or headers: {reason}")]
    Envelope { table: String, reason: String },
    #[error("table {table}: encoding rows: {source}")]
    Encode { table: String, source: EncodeError },
    #[error("table {table}: creating a Kafka producer: {source}")]
    Producer {
        table: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("table {table}: topic {topic}: {failed} of {messages} messages not acknowledged by the broker: {error}")]
    Delivery {
        table: String,
        topic: String,
        messages: usize,
        failed: usize,
        error: String,
    },
}

/// Producers by Kafka table, made on first use and kept: a producer holds connections.
/// Each is kept with the table settings it was made from (the node-wide client defaults
/// do not change while the node runs), so a table dropped and created again with other
/// settings (another broker list, other credentials) gets a new producer instead of the
/// old one.
pub struct KafkaSink {
    defaults: Arc<KafkaClientDefaults>,
    /// Each with a handle on its context, which heard why its deliveries fail.
    producers: Mutex<HashMap<String, (KafkaSettings, Producer, CauseContext)>>,
}

/// A producer whose context names the causes of its failures.
type Producer = FutureProducer<CauseContext>;

impl KafkaSink {
    pub fn new(defaults: Arc<KafkaClientDefaults>) -> KafkaSink {
        KafkaSink {
            defaults,
            producers: Mutex::new(HashMap::new()),
        }
    }

    /// The node-wide client properties its producers are made with.
    pub fn defaults(&self) -> &KafkaClientDefaults {
        &self.defaults
    }

    fn producer(&self, table: &TableDef) -> Result<(Producer, CauseContext), SinkError> {
        let settings = table
            .kafka()
            .ok_or_else(|| SinkError::NotKafka(table.name.clone()))?;
        let mut producers = match self.producers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((made_from, p, context)) = producers.get(&table.name) {
            if made_from == settings {
                return Ok((p.clone(), context.clone()));
            }
        }
        let mut config = self.defaults.client_config(settings);
        for (name, value) in settings.compression.producer_properties() {
            config.set(name, value);
        }
        // Acknowledged by every in-sync replica, and never twice because of a retry of
        // the producer itself: duplicates come only from a retried write.
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        let config = with_failure_logs(config);
        let context = CauseContext::new(&table.name, &config).for_topic(
            settings
                .topic_list
                .first()
                .map(String::as_str)
                .unwrap_or_default(),
        );
        let producer: Producer = config
            .create_with_context(context.clone())
            .map_err(|source| SinkError::Producer {
                table: table.name.clone(),
                source,
            })?;
        producers.insert(
            table.name.clone(),
            (settings.clone(), producer.clone(), context.clone()),
        );
        Ok((producer, context))
    }

    /// Sends `batch` (already in `table`'s columns) to the table's topic and waits until
    /// the broker has acknowledged every message; the number of rows sent, and the topic.
    /// `envelope` (`query::views::envelope`, the same rows) gives each message its key,
    /// timestamp and headers: those of the message's last row, as ClickHouse takes them.
    pub async fn send(
        &self,
        table: &TableDef,
        batch: &RecordBatch,
        envelope: Option<&RecordBatch>,
    ) -> Result<(u64, String), SinkError> {
        let settings = table
            .kafka()
            .ok_or_else(|| SinkError::NotKafka(table.name.clone()))?;
        let topic = settings
            .topic_list
            .first()
            .ok_or_else(|| SinkError::NoTopic {
                table: table.name.clone(),
            })?
            .clone();
        if batch.num_rows() == 0 {
            return Ok((0, topic));
        }
        check_enums(table, batch)?;
        let per_message = usize::try_from(settings.max_rows_per_message.max(1)).unwrap_or(1);
        let payloads =
            encode_messages(&table.columns, settings, batch, per_message).map_err(|source| {
                SinkError::Encode {
                    table: table.name.clone(),
                    source,
                }
            })?;
        let last_rows: Vec<usize> = (0..payloads.len())
            .map(|i| ((i + 1) * per_message).min(batch.num_rows()) - 1)
            .collect();
        let envelopes = match envelope {
            Some(e) => last_rows
                .iter()
                .map(|&row| Envelope::of_row(e, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|reason| SinkError::Envelope {
                    table: table.name.clone(),
                    reason,
                })?,
            None => vec![Envelope::default(); payloads.len()],
        };
        let (producer, causes) = self.producer(table)?;
        let sends = payloads.iter().zip(&envelopes).map(|(payload, envelope)| {
            let mut record = FutureRecord::<[u8], [u8]>::to(&topic).payload(payload.as_slice());
            if let Some(key) = &envelope.key {
                record = record.key(key.as_bytes());
            }
            if let Some(ms) = envelope.timestamp_ms {
                record = record.timestamp(ms);
            }
            if !envelope.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(envelope.headers.len());
                for (name, value) in &envelope.headers {
                    headers = headers.insert(Header {
                        key: name,
                        value: Some(value.as_bytes()),
                    });
                }
                record = record.headers(headers);
            }
            producer.send(record, Timeout::After(DELIVERY_TIMEOUT))
        });
        let results = {
            let deliveries = futures::future::join_all(sends);
            tokio::pin!(deliveries);
            loop {
                tokio::select! {
                    results = &mut deliveries => break results,
                    () = tokio::time::sleep(LASTING_CAUSE_CHECK) => {
                        // Messages would wait out DELIVERY_TIMEOUT for nothing: the write fails
                        // now, and what is still queued is dropped so that it cannot arrive
                        // after the write was reported failed.
                        if let Some(cause) = causes.recent().filter(|c| c.is_lasting()) {
                            producer.purge(PurgeConfig::default().queue().inflight());
                            return Err(SinkError::Delivery {
                                table: table.name.clone(),
                                topic: topic.clone(),
                                messages: payloads.len(),
                                failed: payloads.len(),
                                error: cause.to_string(),
                            });
                        }
                    }
                }
            }
        };
        // A delivery fails with a bare code ("message timed out"); the producer's context
        // heard why (a refused password, a broker that cannot be reached).
        let failures: Vec<String> = results
            .into_iter()
            .filter_map(|r| {
                r.err().map(|(e, _)| match causes.cause_of(&e) {
                    Some(cause) => format!("{cause} ({e})"),
                    None => causes.redact(&e.to_string()),
                })
            })
            .collect();
        if let Some(first) = failures.first() {
            return Err(SinkError::Delivery {
                table: table.name.clone(),
                topic,
                messages: payloads.len(),
                failed: failures.len(),
                error: first.clone(),
            });
        }
        Ok((batch.num_rows() as u64, topic))
    }
}

/// A message's key, timestamp and headers, from the envelope columns of its last row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Envelope {
    key: Option<String>,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, String)>,
}

impl Envelope {
    /// The envelope of `row`; an error names the row when its header names and values
    /// differ in number (they pair up by position, as ClickHouse's Nested columns do).
    fn of_row(envelope: &RecordBatch, row: usize) -> Result<Envelope, String> {
        let mut out = Envelope::default();
        if let Some(keys) = envelope.column_by_name("_key") {
            let keys = keys.as_string::<i32>();
            if keys.is_valid(row) {
                out.key = Some(keys.value(row).to_string());
            }
        }
        if let Some(times) = envelope.column_by_name("_timestamp") {
            let times = times.as_primitive::<arrow::datatypes::TimestampSecondType>();
            if times.is_valid(row) {
                out.timestamp_ms = Some(times.value(row).saturating_mul(1000));
            }
        }
        let list = |name: &str| -> Vec<String> {
            envelope
                .column_by_name(name)
                .map(|c| c.as_list::<i32>())
                .filter(|l| l.is_valid(row))
                .map(|l| {
                    let values = l.value(row);
                    values
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (names, values) = (list(HEADER_NAMES), list(HEADER_VALUES));
        if names.len() != values.len() {
            return Err(format!(
                "row {}: {} header names but {} header values (_headers.name and _headers.value pair up by position)",
                row + 1,
                names.len(),
                values.len()
            ));
        }
        out.headers = names.into_iter().zip(values).collect();
        Ok(out)
    }
}

/// Enum columns hold names: one that is not a member would be a broken message for every
/// reader of the topic, so it is refused here, naming the column.
pub fn check_enums(table: &TableDef, batch: &RecordBatch) -> Result<(), SinkError> {
    for (column, array) in table.columns.iter().zip(batch.columns()) {
        let Some(members) = column.ty.enum_members() else {
            continue;
        };
        if array.data_type() != &DataType::Utf8 {
            continue;
        }
        let names = array.as_string::<i32>();
        for value in names.iter().flatten() {
            if !members.iter().any(|(name, _)| name == value) {
                return Err(SinkError::NotAnEnumMember {
                    table: table.name.clone(),
                    column: column.name.clone(),
                    value: value.to_string(),
                    ty: column.ty.to_string(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ChType, Column, Engine};

    fn kafka_table(brokers: &str) -> Result<TableDef, Box<dyn std::error::Error>> {
        let settings = KafkaSettings::from_pairs(&[
            ("kafka_broker_list".into(), brokers.into()),
            ("kafka_topic_list".into(), "t".into()),
            ("kafka_group_name".into(), "g".into()),
            ("kafka_format".into(), "JSONEachRow".into()),
        ])?;
        Ok(TableDef {
            name: "out".into(),
            columns: vec![Column {
                name: "a".into(),
                ty: ChType::UInt32,
            }],
            engine: Engine::Kafka(Box::new(settings)),
            detached: false,
            layout: Default::default(),
        })
    }

    fn brokers_of(sink: &KafkaSink) -> Vec<String> {
        let producers = match sink.producers.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        producers
            .values()
            .map(|(settings, _, _)| settings.broker_list.clone())
            .collect()
    }

    fn envelope_batch(names: &[&[&str]], values: &[&[&str]]) -> RecordBatch {
        use arrow::array::{ArrayRef, ListBuilder, StringArray, StringBuilder};
        let lists = |rows: &[&[&str]]| -> ArrayRef {
            let item = arrow::datatypes::Field::new("item", DataType::Utf8, false);
            let mut b = ListBuilder::new(StringBuilder::new()).with_field(item);
            for row in rows {
                for v in *row {
                    b.values().append_value(v);
                }
                b.append(true);
            }
            std::sync::Arc::new(b.finish())
        };
        let fields: Vec<arrow::datatypes::Field> = crate::catalog::kafka_envelope_columns()
            .into_iter()
            .filter(|f| f.name() != "_timestamp")
            .collect();
        RecordBatch::try_new(
            std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
            vec![
                std::sync::Arc::new(StringArray::from(vec![Some("k0"), None])),
                lists(names),
                lists(values),
            ],
        )
        .expect("an envelope")
    }

    #[test]
    fn a_rows_envelope_gives_its_message_key_and_paired_headers() {
        let batch = envelope_batch(&[&["a", "b"], &[]], &[&["1", "2"], &[]]);
        assert_eq!(
            Envelope::of_row(&batch, 0),
            Ok(Envelope {
                key: Some("k0".into()),
                timestamp_ms: None,
                headers: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            })
        );
        assert_eq!(Envelope::of_row(&batch, 1), Ok(Envelope::default()));
        let unpaired = envelope_batch(&[&["a"], &["a", "b"]], &[&["1"], &["2"]]);
        let err = Envelope::of_row(&unpaired, 1).expect_err("unpaired");
        assert!(
            err.starts_with("row 2: 2 header names but 1 header values"),
            "{err}"
        );
    }

    #[test]
    fn a_table_made_again_with_other_brokers_gets_a_new_producer(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // Creating a producer does not connect, so no broker is needed here.
        let sink = KafkaSink::new(Arc::new(KafkaClientDefaults::default()));
        let first = sink.producer(&kafka_table("127.0.0.1:1")?)?.0;
        let again = sink.producer(&kafka_table("127.0.0.1:1")?)?.0;
        assert_eq!(first.client().native_ptr(), again.client().native_ptr());
        assert_eq!(brokers_of(&sink), vec!["127.0.0.1:1".to_string()]);
        let other = sink.producer(&kafka_table("127.0.0.1:2")?)?.0;
        assert_ne!(first.client().native_ptr(), other.client().native_ptr());
        assert_eq!(brokers_of(&sink), vec!["127.0.0.1:2".to_string()]);
        Ok(())
    }
}

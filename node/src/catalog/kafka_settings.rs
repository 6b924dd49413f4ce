//! The settings of a `Kafka` engine table, validated once when the table is created.
//!
//! Setting names are ClickHouse's, verbatim. Defaults are ClickHouse's unless marked as a
//! Sluice extension. Invariant: a `KafkaSettings` value is always complete and valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default rows per block: ClickHouse's `max_insert_block_size`.
pub const DEFAULT_MAX_BLOCK_SIZE: u64 = 1_048_576;
/// Default flush interval: ClickHouse's `stream_flush_interval_ms`.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 7_500;
/// Default poll timeout: ClickHouse's `stream_poll_timeout_ms`.
pub const DEFAULT_POLL_TIMEOUT_MS: u64 = 500;
/// A block becomes one replicated log entry, so its encoded messages stay a few MiB
/// however large the rows are (Sluice extension).
pub const DEFAULT_MAX_BLOCK_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown setting '{0}' for engine Kafka")]
    Unknown(String),
    #[error("engine Kafka requires setting '{0}'")]
    Missing(&'static str),
    #[error("setting '{name}' = '{value}': {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("setting '{0}' is given twice")]
    Duplicate(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    JsonEachRow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleErrorMode {
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSettings {
    pub broker_list: String,
    pub topic_list: Vec<String>,
    pub group_name: String,
    pub format: Format,
    pub client_id: Option<String>,
    /// ClickHouse semantics: consumers per table. In Sluice every (topic, partition) gets
    /// its own consumer actor, so this only bounds nothing and is kept for compatibility.
    pub num_consumers: u64,
    /// ClickHouse semantics: whether each consumer flushes on its own thread. Sluice's
    /// consumer actors always flush independently, as with `kafka_thread_per_consumer = 1`.
    pub thread_per_consumer: bool,
    pub max_block_size: u64,
    /// Rows per message when Sluice writes to the topic (INSERT, a view into this table).
    pub max_rows_per_message: u64,
    pub max_block_bytes: u64,
    pub flush_interval_ms: u64,
    pub poll_timeout_ms: u64,
    pub skip_broken_messages: u64,
    pub handle_error_mode: HandleErrorMode,
    pub commit_every_batch: bool,
    pub security_protocol: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
}

/// Names accepted by `SETTINGS` on a Kafka table.
const KNOWN: &[&str] = &[
    "kafka_broker_list",
    "kafka_topic_list",
    "kafka_group_name",
    "kafka_format",
    "kafka_client_id",
    "kafka_num_consumers",
    "kafka_thread_per_consumer",
    "kafka_max_block_size",
    "kafka_max_block_bytes",
    "kafka_flush_interval_ms",
    "kafka_poll_timeout_ms",
    "kafka_poll_max_batch_size",
    "kafka_skip_broken_messages",
    "kafka_handle_error_mode",
    "kafka_commit_every_batch",
    "kafka_commit_on_select",
    "kafka_max_rows_per_message",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_schema",
];

impl KafkaSettings {
    /// The smallest valid settings, for tests that need a Kafka table and no broker.
    #[cfg(test)]
    pub fn for_tests() -> KafkaSettings {
        let pairs = [
            ("kafka_broker_list", "b:9092"),
            ("kafka_topic_list", "t"),
            ("kafka_group_name", "g"),
            ("kafka_format", "JSONEachRow"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        KafkaSettings::from_pairs(&pairs).expect("valid settings")
    }

    /// Validates raw `name = value` pairs (values already unquoted).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<KafkaSettings, SettingsError> {
        let mut map: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, value) in pairs {
            if !KNOWN.contains(&name.as_str()) {
                return Err(SettingsError::Unknown(name.clone()));
            }
            if map.insert(name.as_str(), value.as_str()).is_some() {
                return Err(SettingsError::Duplicate(name.clone()));
            }
        }
        let required = |name: &'static str| -> Result<String, SettingsError> {
            match map.get(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                Some(v) => Err(SettingsError::Invalid {
                    name: name.into(),
                    value: (*v).into(),
                    reason: "must not be empty".into(),
                }),
                None => Err(SettingsError::Missing(name)),
            }
        };
        let broker_list = required("kafka_broker_list")?;
        let topic_list: Vec<String> = required("kafka_topic_list")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let group_name = required("kafka_group_name")?;
        let format_text = required("kafka_format")?;
        let format = match format_text.to_ascii_lowercase().as_str() {
            "jsoneachrow" => Format::JsonEachRow,
            _ => {
                return Err(SettingsError::Invalid {
                    name: "kafka_format".into(),
                    value: format_text,
                    reason: "unsupported format (supported: JSONEachRow)".into(),
                })
            }
        };
        let handle_error_mode = match map.get("kafka_handle_error_mode").copied() {
            None | Some("default") => HandleErrorMode::Default,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "kafka_handle_error_mode".into(),
                    value: other.into(),
                    reason: "unsupported mode (supported: default)".into(),
                })
            }
        };
        let settings = KafkaSettings {
            broker_list,
            topic_list,
            group_name,
            format,
            client_id: map.get("kafka_client_id").map(|s| s.to_string()),
            num_consumers: uint(&map, "kafka_num_consumers", 1)?,
            thread_per_consumer: flag(&map, "kafka_thread_per_consumer", false)?,
            max_block_size: nonzero_or(&map, "kafka_max_block_size", DEFAULT_MAX_BLOCK_SIZE)?,
            max_rows_per_message: nonzero_or(&map, "kafka_max_rows_per_message", 1)?,
            max_block_bytes: nonzero_or(&map, "kafka_max_block_bytes", DEFAULT_MAX_BLOCK_BYTES)?,
            flush_interval_ms: nonzero_or(
                &map,
                "kafka_flush_interval_ms",
                DEFAULT_FLUSH_INTERVAL_MS,
            )?,
            poll_timeout_ms: nonzero_or(&map, "kafka_poll_timeout_ms", DEFAULT_POLL_TIMEOUT_MS)?,
            skip_broken_messages: uint(&map, "kafka_skip_broken_messages", 0)?,
            handle_error_mode,
            commit_every_batch: flag(&map, "kafka_commit_every_batch", false)?,
            security_protocol: map.get("kafka_security_protocol").map(|s| s.to_string()),
            sasl_mechanism: map.get("kafka_sasl_mechanism").map(|s| s.to_string()),
            sasl_username: map.get("kafka_sasl_username").map(|s| s.to_string()),
            sasl_password: map.get("kafka_sasl_password").map(|s| s.to_string()),
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.topic_list.is_empty() {
            return Err(SettingsError::Invalid {
                name: "kafka_topic_list".into(),
                value: String::new(),
                reason: "names no topic".into(),
            });
        }
        if self.num_consumers == 0 {
            return Err(SettingsError::Invalid {
                name: "kafka_num_consumers".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        if let Some(protocol) = &self.security_protocol {
            let known = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
            if !known.contains(&protocol.to_ascii_lowercase().as_str()) {
                return Err(SettingsError::Invalid {
                    name: "kafka_security_protocol".into(),
                    value: protocol.clone(),
                    reason: format!("expected one of {}", known.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// librdkafka properties for a client of this table (security settings included).
    pub fn client_properties(&self) -> Vec<(&'static str, String)> {
        let mut props = vec![("bootstrap.servers", self.broker_list.clone())];
        if let Some(v) = &self.security_protocol {
            props.push(("security.protocol", v.clone()));
        }
        if let Some(v) = &self.sasl_mechanism {
            props.push(("sasl.mechanisms", v.clone()));
        }
        if let Some(v) = &self.sasl_username {
            props.push(("sasl.username", v.clone()));
        }
        if let Some(v) = &self.sasl_password {
            props.push(("sasl.password", v.clone()));
        }
        props
    }
}

fn uint(map: &BTreeMap<&str, &str>, name: &str, default: u64) -> Result<u64, SettingsError> {
    match map.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<u64>().map_err(|_| SettingsError::Invalid {
            name: name.into(),
            value: (*v).into(),
            reason: "expected a non-negative integer".into(),
        }),
    }
}

/// ClickHouse treats 0 as "use the server default" for these settings.
fn nonzero_or(map: &BTreeMap<&str, &str>, name: &str, default: u64) -> Result<u64, SettingsError> {
    let v = uint(map, name, default)?;
    Ok(if v == 0 { default } else { v })
}

fn flag(map: &BTreeMap<&str, &str>, name: &str, default: bool) -> Result<bool, SettingsError> {
    match map.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "1" || v == "true" => Ok(true),
        Some(v) if v == "0" || v == "false" => Ok(false),
        Some(v) => Err(SettingsError::Invalid {
            name: name.into(),
            value: v,
            reason: "expected 0 or 1".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn guide() -> Vec<(String, String)> {
        pairs(&[
            ("kafka_broker_list", "127.0.0.1:9092"),
            ("kafka_topic_list", "github"),
            ("kafka_group_name", "clickhouse"),
            ("kafka_format", "JSONEachRow"),
            ("kafka_thread_per_consumer", "0"),
            ("kafka_num_consumers", "1"),
        ])
    }

    #[test]
    fn guide_settings_take_clickhouse_defaults() {
        let s = KafkaSettings::from_pairs(&guide()).expect("valid");
        assert_eq!(s.topic_list, vec!["github".to_string()]);
        assert_eq!(s.max_block_size, DEFAULT_MAX_BLOCK_SIZE);
        assert_eq!(s.flush_interval_ms, DEFAULT_FLUSH_INTERVAL_MS);
        assert_eq!(s.skip_broken_messages, 0);
        assert_eq!(s.format, Format::JsonEachRow);
    }

    #[test]
    fn errors_name_the_setting() {
        let mut p = guide();
        p.push(("kafka_max_blok_size".into(), "10".into()));
        assert_eq!(
            KafkaSettings::from_pairs(&p),
            Err(SettingsError::Unknown("kafka_max_blok_size".into()))
        );
        let p: Vec<_> = guide()
            .into_iter()
            .filter(|(k, _)| k != "kafka_group_name")
            .collect();
        assert_eq!(
            KafkaSettings::from_pairs(&p),
            Err(SettingsError::Missing("kafka_group_name"))
        );
        let mut p = guide();
        p.push(("kafka_skip_broken_messages".into(), "-1".into()));
        let err = KafkaSettings::from_pairs(&p).expect_err("negative");
        assert!(err.to_string().contains("kafka_skip_broken_messages"));
        let mut p = guide();
        p[3].1 = "Parquet".into();
        let err = KafkaSettings::from_pairs(&p).expect_err("format");
        assert!(err.to_string().contains("Parquet"));
    }
}

//! The settings of a `Kafka` engine table, validated once when the table is created.
//!
//! Setting names are ClickHouse's, verbatim. Defaults are ClickHouse's unless marked as a
//! Sluice extension. Invariant: a `KafkaSettings` value is always complete and valid.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kafka_compression::Compression;

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
    #[error("format {0} requires setting 'kafka_schema' = 'file.proto:MessageName' (a file in the node's format_schema_path)")]
    SchemaMissing(Format),
}

/// A message format of `kafka_format`, by ClickHouse's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    JsonEachRow,
    JsonCompactEachRow,
    JsonAsString,
    Csv,
    CsvWithNames,
    TabSeparated,
    TabSeparatedWithNames,
    LineAsString,
    RawBlob,
    /// Length-delimited Protobuf messages, a varint length before each, by `kafka_schema`.
    Protobuf,
    /// One Protobuf message, no length before it.
    ProtobufSingle,
    /// An Avro Object Container File: its schema, then rows.
    Avro,
}

/// ClickHouse's names and aliases, lower-cased (format names are case-insensitive there).
const FORMAT_NAMES: &[(&str, Format)] = &[
    ("jsoneachrow", Format::JsonEachRow),
    ("jsonlines", Format::JsonEachRow),
    ("ndjson", Format::JsonEachRow),
    ("jsoncompacteachrow", Format::JsonCompactEachRow),
    ("jsonasstring", Format::JsonAsString),
    ("csv", Format::Csv),
    ("csvwithnames", Format::CsvWithNames),
    ("tabseparated", Format::TabSeparated),
    ("tsv", Format::TabSeparated),
    ("tabseparatedwithnames", Format::TabSeparatedWithNames),
    ("tsvwithnames", Format::TabSeparatedWithNames),
    ("lineasstring", Format::LineAsString),
    ("rawblob", Format::RawBlob),
    ("protobuf", Format::Protobuf),
    ("protobufsingle", Format::ProtobufSingle),
    ("avro", Format::Avro),
];

/// ClickHouse formats Sluice knows and refuses, with the reason given at CREATE.
const REFUSED_FORMATS: &[(&str, &str)] = &[(
    "avroconfluent",
    "AvroConfluent reads each message's schema from a Confluent schema registry, which Sluice does not support; write Avro Object Container Files and use Avro",
)];

impl Format {
    /// The format a ClickHouse name or alias stands for, in any case.
    pub fn from_name(name: &str) -> Option<Format> {
        let lower = name.trim().to_ascii_lowercase();
        FORMAT_NAMES
            .iter()
            .find(|(n, _)| *n == lower)
            .map(|(_, f)| *f)
    }

    /// ClickHouse's canonical spelling.
    pub fn name(self) -> &'static str {
        match self {
            Format::JsonEachRow => "JSONEachRow",
            Format::JsonCompactEachRow => "JSONCompactEachRow",
            Format::JsonAsString => "JSONAsString",
            Format::Csv => "CSV",
            Format::CsvWithNames => "CSVWithNames",
            Format::TabSeparated => "TabSeparated",
            Format::TabSeparatedWithNames => "TabSeparatedWithNames",
            Format::LineAsString => "LineAsString",
            Format::RawBlob => "RawBLOB",
            Format::Protobuf => "Protobuf",
            Format::ProtobufSingle => "ProtobufSingle",
            Format::Avro => "Avro",
        }
    }

    /// Whether ClickHouse can write this format (JSONAsString is input only).
    pub fn can_write(self) -> bool {
        self != Format::JsonAsString
    }

    /// Formats whose table holds exactly one String column, filled with whole messages
    /// or lines.
    pub fn needs_one_string_column(self) -> bool {
        matches!(
            self,
            Format::JsonAsString | Format::LineAsString | Format::RawBlob
        )
    }

    /// Formats whose messages follow a schema file named by `kafka_schema`.
    pub fn needs_schema(self) -> bool {
        matches!(self, Format::Protobuf | Format::ProtobufSingle)
    }

    fn supported() -> String {
        [
            Format::JsonEachRow,
            Format::JsonCompactEachRow,
            Format::JsonAsString,
            Format::Csv,
            Format::CsvWithNames,
            Format::TabSeparated,
            Format::TabSeparatedWithNames,
            Format::LineAsString,
            Format::RawBlob,
            Format::Protobuf,
            Format::ProtobufSingle,
            Format::Avro,
        ]
        .map(Format::name)
        .join(", ")
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `date_time_input_format`: how DateTime (and Date) text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DateTimeInputFormat {
    /// `YYYY-MM-DD hh:mm:ss`, `YYYY-MM-DD`, or unix seconds (ClickHouse default).
    #[default]
    Basic,
    /// Also ISO 8601 / RFC 3339 with `T`, fractions and offsets, RFC 2822, and slashes.
    BestEffort,
}

/// The format settings ClickHouse accepts in a Kafka table's SETTINGS, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatSettings {
    /// `input_format_skip_unknown_fields`: a field or header column the table lacks is
    /// skipped (1, ClickHouse default since 23.x) or makes its message broken (0).
    pub skip_unknown_fields: bool,
    /// `input_format_null_as_default`: NULL into a non-Nullable column stores the
    /// column's default (1, ClickHouse default) or makes the message broken (0).
    pub null_as_default: bool,
    /// `date_time_input_format` (ClickHouse default `basic`).
    pub date_time_input_format: DateTimeInputFormat,
    /// `format_csv_delimiter` (ClickHouse default `,`), one ASCII character.
    pub csv_delimiter: u8,
    /// `input_format_avro_allow_missing_fields`: a column with no field in an Avro file's
    /// schema takes its default (1) or makes the message broken (0, ClickHouse default).
    #[serde(default)]
    pub avro_allow_missing_fields: bool,
}

impl FormatSettings {
    /// The settings that differ from ClickHouse's defaults, by their SETTINGS names and
    /// in the form they are written there: what a table's description shows.
    pub fn non_default(&self) -> Vec<(&'static str, String)> {
        let defaults = FormatSettings::default();
        let flag = |v: bool| u8::from(v).to_string();
        let mut out = Vec::new();
        if self.skip_unknown_fields != defaults.skip_unknown_fields {
            out.push((
                "input_format_skip_unknown_fields",
                flag(self.skip_unknown_fields),
            ));
        }
        if self.null_as_default != defaults.null_as_default {
            out.push(("input_format_null_as_default", flag(self.null_as_default)));
        }
        if self.date_time_input_format != defaults.date_time_input_format {
            let mode = match self.date_time_input_format {
                DateTimeInputFormat::Basic => "basic",
                DateTimeInputFormat::BestEffort => "best_effort",
            };
            out.push(("date_time_input_format", mode.to_string()));
        }
        if self.csv_delimiter != defaults.csv_delimiter {
            out.push((
                "format_csv_delimiter",
                char::from(self.csv_delimiter).to_string(),
            ));
        }
        if self.avro_allow_missing_fields != defaults.avro_allow_missing_fields {
            out.push((
                "input_format_avro_allow_missing_fields",
                flag(self.avro_allow_missing_fields),
            ));
        }
        out
    }
}

impl Default for FormatSettings {
    fn default() -> Self {
        FormatSettings {
            skip_unknown_fields: true,
            null_as_default: true,
            date_time_input_format: DateTimeInputFormat::Basic,
            csv_delimiter: b',',
            avro_allow_missing_fields: false,
        }
    }
}

/// What happens to a message that does not parse, once the block's
/// `kafka_skip_broken_messages` allowance is spent (`kafka_handle_error_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleErrorMode {
    /// The consumer stops at the message, naming it.
    Default,
    /// The message becomes a row of defaults whose `_raw_message` and `_error` virtual
    /// columns hold it and its parse error.
    Stream,
    /// The message goes to `system.dead_letter_queue`, and the consumer goes on.
    DeadLetterQueue,
}

impl HandleErrorMode {
    pub fn from_name(name: &str) -> Option<HandleErrorMode> {
        match name.trim() {
            "default" => Some(HandleErrorMode::Default),
            "stream" => Some(HandleErrorMode::Stream),
            "dead_letter_queue" => Some(HandleErrorMode::DeadLetterQueue),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HandleErrorMode::Default => "default",
            HandleErrorMode::Stream => "stream",
            HandleErrorMode::DeadLetterQueue => "dead_letter_queue",
        }
    }
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
    /// Format settings given in the table's SETTINGS; a table created before they existed
    /// reads as ClickHouse's defaults.
    #[serde(default)]
    pub format_settings: FormatSettings,
    /// How messages written to the topic are compressed; a table created before this
    /// setting existed writes them as librdkafka's default does, uncompressed.
    #[serde(default)]
    pub compression: Compression,
    /// `kafka_schema`, as given; formats that take no schema ignore it, as ClickHouse does.
    #[serde(default)]
    pub schema: Option<SchemaRef>,
    /// The Protobuf schema compiled when the table was created (see `SchemaRef`); `None`
    /// for the other formats, and for a table not yet through CREATE.
    #[serde(default)]
    pub compiled_schema: Option<CompiledSchema>,
    /// How the table was declared (collection, arguments, SETTINGS), set at CREATE; `None`
    /// for a table created before Sluice kept it.
    #[serde(default)]
    pub declaration: Option<super::named_collections::KafkaDeclaration>,
}

/// `kafka_schema = 'file.proto:Message'`: a schema file in the node's
/// `format_schema_path` and the message type each Kafka message holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRef {
    /// The file, as given; `.proto` is added at compile time when it has no extension.
    pub file: String,
    pub message: String,
}

impl SchemaRef {
    /// Splits ClickHouse's `file:Message` form (the last `:` separates them).
    pub fn parse(value: &str) -> Result<SchemaRef, SettingsError> {
        let invalid = |reason: &str| SettingsError::Invalid {
            name: "kafka_schema".into(),
            value: value.into(),
            reason: reason.into(),
        };
        let (file, message) = value
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected 'file.proto:MessageName'"))?;
        let (file, message) = (file.trim(), message.trim());
        if file.is_empty() || message.is_empty() {
            return Err(invalid("expected 'file.proto:MessageName'"));
        }
        Ok(SchemaRef {
            file: file.to_string(),
            message: message.to_string(),
        })
    }
}

impl std::fmt::Display for SchemaRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.message)
    }
}

/// A schema compiled once, at CREATE, by the node that ran it, and replicated with the
/// table: every node decodes alike even if its schema directory differs or the file
/// changes later (ClickHouse rereads the file; a cluster must not disagree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledSchema {
    /// The fully qualified message type, e.g. `shop.Order`.
    pub message: String,
    /// An encoded `FileDescriptorSet` of the file and everything it imports.
    #[serde(with = "serde_bytes")]
    pub descriptor_set: Vec<u8>,
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
    "input_format_skip_unknown_fields",
    "input_format_null_as_default",
    "date_time_input_format",
    "format_csv_delimiter",
    "input_format_avro_allow_missing_fields",
    "kafka_compression_codec",
    "kafka_compression_level",
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
        let lower = format_text.to_ascii_lowercase();
        if let Some((_, reason)) = REFUSED_FORMATS.iter().find(|(n, _)| *n == lower) {
            return Err(SettingsError::Invalid {
                name: "kafka_format".into(),
                value: format_text.clone(),
                reason: (*reason).into(),
            });
        }
        let format = Format::from_name(&format_text).ok_or_else(|| SettingsError::Invalid {
            name: "kafka_format".into(),
            value: format_text.clone(),
            reason: format!("unsupported format (supported: {})", Format::supported()),
        })?;
        let schema = match map.get("kafka_schema").map(|v| v.trim()) {
            Some(v) if !v.is_empty() => Some(SchemaRef::parse(v)),
            _ => None,
        };
        // Formats that take no schema accept and ignore one, as ClickHouse does; for
        // them a malformed value is not an error either.
        let schema = match (format.needs_schema(), schema) {
            (true, None) => return Err(SettingsError::SchemaMissing(format)),
            (true, Some(parsed)) => Some(parsed?),
            (false, parsed) => parsed.and_then(Result::ok),
        };
        let format_settings = format_settings(&map, format)?;
        let handle_error_mode = match map.get("kafka_handle_error_mode").copied() {
            None => HandleErrorMode::Default,
            Some(name) => {
                HandleErrorMode::from_name(name).ok_or_else(|| SettingsError::Invalid {
                    name: "kafka_handle_error_mode".into(),
                    value: name.into(),
                    reason: "unknown mode (supported: default, stream, dead_letter_queue)".into(),
                })?
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
            // A ProtobufSingle message holds one message, so one row, whatever is asked.
            max_rows_per_message: match format {
                Format::ProtobufSingle => 1,
                _ => nonzero_or(&map, "kafka_max_rows_per_message", 1)?,
            },
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
            format_settings,
            compression: Compression::from_settings(&map)?,
            schema,
            compiled_schema: None,
            declaration: None,
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

/// The format settings, checked against the format they are given for.
fn format_settings(
    map: &BTreeMap<&str, &str>,
    format: Format,
) -> Result<FormatSettings, SettingsError> {
    let defaults = FormatSettings::default();
    let null_as_default = flag(
        map,
        "input_format_null_as_default",
        defaults.null_as_default,
    )?;
    // JSONEachRow reads an omitted field and a `null` alike (arrow-json does), so it
    // cannot refuse the one and default the other.
    if !null_as_default && format == Format::JsonEachRow {
        return Err(SettingsError::Invalid {
            name: "input_format_null_as_default".into(),
            value: "0".into(),
            reason: "not supported with JSONEachRow, which stores the default for null".into(),
        });
    }
    let date_time_input_format = match map.get("date_time_input_format").map(|v| v.trim()) {
        None => defaults.date_time_input_format,
        Some(v) if v.eq_ignore_ascii_case("basic") => DateTimeInputFormat::Basic,
        Some(v) if v.eq_ignore_ascii_case("best_effort") => DateTimeInputFormat::BestEffort,
        Some(v) => {
            return Err(SettingsError::Invalid {
                name: "date_time_input_format".into(),
                value: v.into(),
                reason: "expected basic or best_effort".into(),
            })
        }
    };
    let csv_delimiter = match map.get("format_csv_delimiter") {
        None => defaults.csv_delimiter,
        Some(v) => csv_delimiter(v)?,
    };
    Ok(FormatSettings {
        skip_unknown_fields: flag(
            map,
            "input_format_skip_unknown_fields",
            defaults.skip_unknown_fields,
        )?,
        null_as_default,
        date_time_input_format,
        csv_delimiter,
        avro_allow_missing_fields: flag(
            map,
            "input_format_avro_allow_missing_fields",
            defaults.avro_allow_missing_fields,
        )?,
    })
}

/// One ASCII character that cannot be confused with a quote or a line end.
fn csv_delimiter(value: &str) -> Result<u8, SettingsError> {
    let invalid = |reason: &str| SettingsError::Invalid {
        name: "format_csv_delimiter".into(),
        value: value.into(),
        reason: reason.into(),
    };
    let &[byte] = value.as_bytes() else {
        return Err(invalid("must be exactly one character"));
    };
    if !byte.is_ascii() || matches!(byte, b'"' | b'\'' | b'\n' | b'\r') {
        return Err(invalid(
            "must be an ASCII character other than a quote or a line end",
        ));
    }
    Ok(byte)
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

    #[test]
    fn handle_error_modes_are_clickhouses_three() {
        assert_eq!(
            KafkaSettings::from_pairs(&guide()).map(|s| s.handle_error_mode),
            Ok(HandleErrorMode::Default)
        );
        for (name, want) in [
            ("default", HandleErrorMode::Default),
            ("stream", HandleErrorMode::Stream),
            ("dead_letter_queue", HandleErrorMode::DeadLetterQueue),
        ] {
            let mut p = guide();
            p.push(("kafka_handle_error_mode".into(), name.into()));
            let s = KafkaSettings::from_pairs(&p).expect(name);
            assert_eq!(s.handle_error_mode, want);
            assert_eq!(want.name(), name);
        }
        let mut p = guide();
        p.push(("kafka_handle_error_mode".into(), "dlq".into()));
        let err = KafkaSettings::from_pairs(&p).expect_err("unknown mode");
        assert!(
            err.to_string().contains("kafka_handle_error_mode")
                && err.to_string().contains("dead_letter_queue"),
            "{err}"
        );
    }

    #[test]
    fn format_names_are_case_insensitive_with_aliases() {
        for (name, want) in [
            ("csv", Format::Csv),
            ("CSVWithNames", Format::CsvWithNames),
            ("TSV", Format::TabSeparated),
            ("tabseparated", Format::TabSeparated),
            ("TSVWithNames", Format::TabSeparatedWithNames),
            ("JSONCompactEachRow", Format::JsonCompactEachRow),
            ("jsonasstring", Format::JsonAsString),
            ("LineAsString", Format::LineAsString),
            ("RawBLOB", Format::RawBlob),
            ("NDJSON", Format::JsonEachRow),
        ] {
            let mut p = guide();
            p[3].1 = name.into();
            let s = KafkaSettings::from_pairs(&p).expect(name);
            assert_eq!(s.format, want, "{name}");
            assert_eq!(Format::from_name(want.name()), Some(want));
        }
    }

    #[test]
    fn format_settings_are_validated_naming_setting_and_value() {
        let with = |extra: &[(&str, &str)]| {
            let mut p = guide();
            p[3].1 = "CSV".into();
            p.extend(pairs(extra));
            KafkaSettings::from_pairs(&p)
        };
        let s = with(&[]).expect("defaults");
        assert_eq!(s.format_settings, FormatSettings::default());
        assert!(s.format_settings.skip_unknown_fields);
        let s = with(&[
            ("format_csv_delimiter", ";"),
            ("input_format_skip_unknown_fields", "0"),
            ("input_format_null_as_default", "0"),
            ("date_time_input_format", "best_effort"),
        ])
        .expect("valid");
        assert_eq!(
            s.format_settings,
            FormatSettings {
                skip_unknown_fields: false,
                null_as_default: false,
                date_time_input_format: DateTimeInputFormat::BestEffort,
                csv_delimiter: b';',
                avro_allow_missing_fields: false,
            }
        );
        assert_eq!(
            s.format_settings.non_default(),
            vec![
                ("input_format_skip_unknown_fields", "0".to_string()),
                ("input_format_null_as_default", "0".to_string()),
                ("date_time_input_format", "best_effort".to_string()),
                ("format_csv_delimiter", ";".to_string()),
            ]
        );
        assert!(FormatSettings::default().non_default().is_empty());
        for (name, value) in [
            ("format_csv_delimiter", ";;"),
            ("format_csv_delimiter", "\""),
            ("format_csv_delimiter", ""),
            ("date_time_input_format", "best_effort_us"),
            ("input_format_null_as_default", "maybe"),
            ("input_format_skip_unknown_fields", "2"),
        ] {
            let err = with(&[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
        let mut p = guide();
        p.push(("input_format_null_as_default".into(), "0".into()));
        let err = KafkaSettings::from_pairs(&p)
            .expect_err("JSONEachRow")
            .to_string();
        assert!(err.contains("JSONEachRow"), "{err}");
    }
}

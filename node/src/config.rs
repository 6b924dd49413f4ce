//! Node configuration: command line, environment (what Helm sets), and an optional TOML
//! file, in that order of precedence. Each field's default is documented where declared.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::named_collections::{CollectionEntry, CollectionSource, NamedCollection};
use crate::ingest::client::{ClientPropertyError, KafkaClientDefaults};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("setting {name} = '{value}': {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Kafka(#[from] ClientPropertyError),
}

/// `sluice node` flags; every one can also come from `SLUICE_*` or the config file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NodeArgs {
    /// TOML file with the same keys as the flags (snake_case).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's name, unique in the cluster. Default: "node-1".
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<String>,
    /// Where the node keeps its data. Default: "./sluice-data".
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the gRPC admin API listens on. Default: 127.0.0.1:7070.
    #[arg(long, env = "SLUICE_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Log filter in tracing's EnvFilter syntax. Default: "info".
    #[arg(long, env = "SLUICE_LOG")]
    pub log: Option<String>,
    /// The address peers and clients reach this node at, host:port. Default: the bound
    /// gRPC address (a pod's DNS name on Kubernetes).
    #[arg(long, env = "SLUICE_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Seed peers, comma-separated host:port; a node that is not a member yet asks them to
    /// let it in. The list need not change when the cluster grows.
    #[arg(long, env = "SLUICE_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Form a new one-node cluster on first start when no peer belongs to one (a dev
    /// shortcut for `sluice init`; ignored when the data dir holds Raft state).
    #[arg(long, env = "SLUICE_BOOTSTRAP")]
    pub bootstrap: bool,
    /// A member silent this long (milliseconds) loses its partitions to the others.
    /// Default: 10000.
    #[arg(long, env = "SLUICE_NODE_TIMEOUT_MS")]
    pub node_timeout_ms: Option<u64>,
    /// Address of the Prometheus endpoint (GET /metrics). Default: none served.
    #[arg(long, env = "SLUICE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Memory the running queries of this node may hold together for their sorts,
    /// aggregations and joins, in bytes. A query that needs more spills to disk or fails
    /// with "Resources exhausted"; the node goes on.
    /// Default: 1073741824 (1 GiB).
    #[arg(long, env = "SLUICE_QUERY_MEMORY_LIMIT_BYTES")]
    pub query_memory_limit_bytes: Option<u64>,
    /// The directory `kafka_schema` files (Protobuf `.proto`) are read from at CREATE
    /// (ClickHouse's `format_schema_path`). Default: "<data_dir>/format_schemas".
    #[arg(long, env = "SLUICE_FORMAT_SCHEMA_PATH")]
    pub format_schema_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<String>,
    data_dir: Option<PathBuf>,
    grpc_addr: Option<String>,
    log: Option<String>,
    advertise_addr: Option<String>,
    peers: Option<Vec<String>>,
    bootstrap: Option<bool>,
    node_timeout_ms: Option<u64>,
    metrics_addr: Option<String>,
    query_memory_limit_bytes: Option<u64>,
    format_schema_path: Option<PathBuf>,
    /// librdkafka properties for every Kafka client of the node, ClickHouse-style names
    /// (`sasl_mechanisms`, `ssl_ca_location`); `SLUICE_RDKAFKA_*` variables override them.
    #[serde(default)]
    kafka: BTreeMap<String, String>,
    /// ClickHouse's `<named_collections>`: `[named_collections.name]` tables of
    /// `key = value`; SQL can use them but not alter or drop them.
    #[serde(default)]
    named_collections: BTreeMap<String, BTreeMap<String, ConfigValue>>,
}

/// A value of a config-file named collection: TOML strings, numbers and booleans all
/// become the text a SQL value would be.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Flag(bool),
}

impl ConfigValue {
    fn into_text(self) -> String {
        match self {
            ConfigValue::Text(s) => s,
            ConfigValue::Integer(n) => n.to_string(),
            ConfigValue::Float(x) => x.to_string(),
            ConfigValue::Flag(b) => u8::from(b).to_string(),
        }
    }
}

/// The resolved configuration of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub log: String,
    pub advertise_addr: Option<String>,
    pub peers: Vec<String>,
    pub bootstrap: bool,
    pub node_timeout: std::time::Duration,
    pub kafka: KafkaClientDefaults,
    pub metrics_addr: Option<SocketAddr>,
    pub query_memory_limit_bytes: usize,
    /// Where `kafka_schema` files are found (ClickHouse's `format_schema_path`).
    pub format_schema_path: PathBuf,
    /// Named collections of the config file, by name. Default: none.
    pub named_collections: BTreeMap<String, NamedCollection>,
}

pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:7070";
pub const DEFAULT_NODE_TIMEOUT_MS: u64 = 10_000;
/// A budget most queries over tables of a few GiB stay within, on the machines a node
/// runs on (a few GiB of memory); a smaller node lowers it.
pub const DEFAULT_QUERY_MEMORY_LIMIT_BYTES: u64 = 1024 * 1024 * 1024;
/// Below this, a query could not hold the few batches every scan and sort needs.
const MIN_QUERY_MEMORY_LIMIT_BYTES: u64 = 16 * 1024 * 1024;

/// The config file's collections as catalog values (source `config`, every key
/// overridable, as ClickHouse's config collections are unless marked otherwise).
fn config_collections(
    raw: BTreeMap<String, BTreeMap<String, ConfigValue>>,
) -> Result<BTreeMap<String, NamedCollection>, ConfigError> {
    raw.into_iter()
        .map(|(name, keys)| {
            let pairs = keys
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        CollectionEntry {
                            value: v.into_text(),
                            overridable: None,
                        },
                    )
                })
                .collect();
            NamedCollection::new(name.clone(), pairs, CollectionSource::Config)
                .map(|c| (name, c))
                .map_err(|e| ConfigError::Invalid {
                    name: "named_collections",
                    value: String::new(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

impl NodeConfig {
    pub fn resolve(args: &NodeArgs) -> Result<NodeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let grpc_addr = match (args.grpc_addr, file.grpc_addr) {
            (Some(a), _) => a,
            (None, Some(text)) => text.parse().map_err(|e| ConfigError::Invalid {
                name: "grpc_addr",
                value: text.clone(),
                reason: format!("{e}"),
            })?,
            (None, None) => DEFAULT_GRPC_ADDR
                .parse()
                .map_err(|e| ConfigError::Invalid {
                    name: "grpc_addr",
                    value: DEFAULT_GRPC_ADDR.into(),
                    reason: format!("{e}"),
                })?,
        };
        let metrics_addr = match (args.metrics_addr, file.metrics_addr) {
            (Some(a), _) => Some(a),
            (None, Some(text)) => Some(text.parse().map_err(|e| ConfigError::Invalid {
                name: "metrics_addr",
                value: text.clone(),
                reason: format!("{e}"),
            })?),
            (None, None) => None,
        };
        let kafka = KafkaClientDefaults::resolve(&file.kafka, std::env::vars())?;
        let query_memory_limit_bytes = args
            .query_memory_limit_bytes
            .or(file.query_memory_limit_bytes)
            .unwrap_or(DEFAULT_QUERY_MEMORY_LIMIT_BYTES);
        if query_memory_limit_bytes < MIN_QUERY_MEMORY_LIMIT_BYTES {
            return Err(ConfigError::Invalid {
                name: "query_memory_limit_bytes",
                value: query_memory_limit_bytes.to_string(),
                reason: format!("must be at least {MIN_QUERY_MEMORY_LIMIT_BYTES}: below that a query cannot hold the few batches every scan and sort needs"),
            });
        }
        let query_memory_limit_bytes =
            usize::try_from(query_memory_limit_bytes).map_err(|e| ConfigError::Invalid {
                name: "query_memory_limit_bytes",
                value: query_memory_limit_bytes.to_string(),
                reason: e.to_string(),
            })?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("sluice-data"));
        // ClickHouse's default is `format_schemas/` under its data path.
        let format_schema_path = args
            .format_schema_path
            .clone()
            .or(file.format_schema_path)
            .unwrap_or_else(|| data_dir.join("format_schemas"));
        let named_collections = config_collections(file.named_collections)?;
        let config = NodeConfig {
            named_collections,
            kafka,
            format_schema_path,
            metrics_addr,
            query_memory_limit_bytes,
            node_id: args
                .node_id
                .clone()
                .or(file.node_id)
                .unwrap_or_else(|| "node-1".into()),
            data_dir,
            grpc_addr,
            log: args
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            advertise_addr: args.advertise_addr.clone().or(file.advertise_addr),
            peers: if args.peers.is_empty() {
                file.peers.unwrap_or_default()
            } else {
                args.peers.clone()
            },
            bootstrap: args.bootstrap || file.bootstrap.unwrap_or(false),
            node_timeout: std::time::Duration::from_millis(
                args.node_timeout_ms
                    .or(file.node_timeout_ms)
                    .unwrap_or(DEFAULT_NODE_TIMEOUT_MS),
            ),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_timeout < std::time::Duration::from_millis(2_000) {
            return Err(ConfigError::Invalid {
                name: "node_timeout_ms",
                value: self.node_timeout.as_millis().to_string(),
                reason: "must be at least 2000: shorter than an election, it would move partitions on every leader change".into(),
            });
        }
        for peer in self.peers.iter().chain(&self.advertise_addr) {
            let valid = peer
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(ConfigError::Invalid {
                    name: "peers/advertise_addr",
                    value: peer.clone(),
                    reason: "expected host:port".into(),
                });
            }
        }
        if self.node_id.is_empty()
            || !self
                .node_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ConfigError::Invalid {
                name: "node_id",
                value: self.node_id.clone(),
                reason: "use letters, digits, '-', '_' or '.'".into(),
            });
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_collections_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "[named_collections.kc]\nkafka_broker_list = \"b:9092\"\nkafka_max_block_size = 100\nkafka_commit_every_batch = true\n",
        )
        .expect("write");
        let c = NodeConfig::resolve(&NodeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("valid");
        let kc = &c.named_collections["kc"];
        assert_eq!(kc.source, CollectionSource::Config);
        assert_eq!(kc.entries["kafka_max_block_size"].value, "100");
        assert_eq!(kc.entries["kafka_commit_every_batch"].value, "1");
        std::fs::write(&path, "[named_collections.empty]\n").expect("write");
        let err = NodeConfig::resolve(&NodeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect_err("empty collection");
        assert!(err.to_string().contains("has no keys"), "{err}");
    }

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sluice.toml");
        std::fs::write(
            &path,
            "node_id = \"from-file\"\ngrpc_addr = \"127.0.0.1:9999\"\n",
        )
        .expect("write");
        let args = NodeArgs {
            config: Some(path.clone()),
            node_id: Some("from-flag".into()),
            ..Default::default()
        };
        let c = NodeConfig::resolve(&args).expect("valid");
        assert_eq!(c.node_id, "from-flag");
        assert_eq!(c.grpc_addr.port(), 9999);
        assert_eq!(c.log, "info");
        assert_eq!(
            c.format_schema_path,
            PathBuf::from("sluice-data").join("format_schemas")
        );
        std::fs::write(&path, "format_schema_path = \"/etc/sluice/schemas\"\n").expect("write");
        let c = NodeConfig::resolve(&NodeArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(c.format_schema_path, PathBuf::from("/etc/sluice/schemas"));
        std::fs::write(&path, "node_idd = \"x\"\n").expect("write");
        let err = NodeConfig::resolve(&NodeArgs {
            config: Some(path),
            ..Default::default()
        })
        .expect_err("unknown key");
        assert!(err.to_string().contains("node_idd"), "{err}");
    }
}

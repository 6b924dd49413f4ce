//! librdkafka client configuration: the node-wide properties first (ClickHouse's `<kafka>`
//! server section: credentials and TLS that operators keep out of DDL), then the table's
//! own settings, which win.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::catalog::KafkaSettings;

/// Environment variables with this prefix set a node-wide librdkafka property:
/// `SLUICE_RDKAFKA_SASL_PASSWORD=…` sets `sasl.password` (Kubernetes fills them from Secrets).
pub const ENV_PREFIX: &str = "SLUICE_RDKAFKA_";

#[derive(Debug, thiserror::Error)]
pub enum ClientPropertyError {
    #[error("kafka client property {name} (from {origin}): {reason}")]
    Invalid {
        name: String,
        origin: String,
        reason: String,
    },
}

/// Node-wide librdkafka properties, by librdkafka name (`sasl.username`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaClientDefaults {
    properties: BTreeMap<String, String>,
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`...), whose
/// value must never reach a log, an error or a system table.
pub fn is_secret_property(name: &str) -> bool {
    let name = librdkafka_name(name);
    name.contains("password")
        || name.contains("secret")
        || name == "ssl.key.pem"
        || name == "sasl.oauthbearer.config"
}

/// ClickHouse spells librdkafka properties with underscores in its config (`sasl_mechanisms`).
fn librdkafka_name(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', ".")
}

impl KafkaClientDefaults {
    /// Properties from the config file's `[kafka]` table, then from `SLUICE_RDKAFKA_*`
    /// variables (which win, so a Secret overrides a ConfigMap). Each name is checked
    /// against librdkafka at once, so a typo stops the node at start instead of every
    /// consumer later.
    pub fn resolve(
        file: &BTreeMap<String, String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<KafkaClientDefaults, ClientPropertyError> {
        let mut properties = BTreeMap::new();
        let mut origins = BTreeMap::new();
        for (key, value) in file {
            let name = librdkafka_name(key);
            origins.insert(name.clone(), format!("[kafka] {key}"));
            properties.insert(name, value.clone());
        }
        for (var, value) in env {
            if let Some(key) = var.strip_prefix(ENV_PREFIX) {
                let name = librdkafka_name(key);
                origins.insert(name.clone(), var.clone());
                properties.insert(name, value);
            }
        }
        let origin_of = |name: &str| origins.get(name).cloned().unwrap_or_default();
        for name in properties.keys() {
            if name.is_empty() {
                return Err(ClientPropertyError::Invalid {
                    name: name.clone(),
                    origin: origin_of(name),
                    reason: "empty property name".into(),
                });
            }
            if matches!(
                name.as_str(),
                "group.id" | "enable.auto.commit" | "enable.auto.offset.store"
            ) {
                return Err(ClientPropertyError::Invalid {
                    name: name.clone(),
                    origin: origin_of(name),
                    reason: "set by Sluice itself: offsets are stored with the data, and the group comes from kafka_group_name".into(),
                });
            }
        }
        // Names and values as librdkafka checks them when they are set. Not a client
        // creation: what is checked then may come from a table's own settings
        // (kafka_sasl_username with node-wide security.protocol = SASL_SSL).
        let mut probe = ClientConfig::new();
        for (name, value) in &properties {
            probe.set(name, value);
        }
        if let Err(e) = probe.create_native_config() {
            let secrets: Vec<String> = properties
                .iter()
                .filter(|(name, _)| is_secret_property(name))
                .map(|(_, value)| value.clone())
                .collect();
            let (name, reason) = match &e {
                KafkaError::ClientConfig(_, desc, key, _) => (key.clone(), desc.clone()),
                other => (
                    properties.keys().cloned().collect::<Vec<_>>().join(", "),
                    other.to_string(),
                ),
            };
            let origin = name
                .split(", ")
                .map(origin_of)
                .collect::<Vec<_>>()
                .join(", ");
            // librdkafka quotes a value it refuses, which may be a password.
            return Err(ClientPropertyError::Invalid {
                name,
                origin,
                reason: super::cause::redact(&reason, &secrets),
            });
        }
        Ok(KafkaClientDefaults { properties })
    }

    /// A client configuration for a table: node-wide properties, then the table's own.
    pub fn client_config(&self, settings: &KafkaSettings) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        for (k, v) in settings.client_properties() {
            config.set(k, v);
        }
        config
    }

    /// A partition consumer's configuration: the table's client configuration, then what
    /// Sluice decides itself, which nothing overrides. Offsets are never committed or
    /// stored by librdkafka: where to resume is the tables' stored position, and the group
    /// offset is committed by hand after each block. An offset the broker does not hold
    /// is read from the partition's beginning, as ClickHouse does; reaching the end of a
    /// partition is no event.
    /// `client.id` is `kafka_client_id`, else `default_client_id`.
    pub fn consumer_config(
        &self,
        settings: &KafkaSettings,
        default_client_id: &str,
    ) -> ClientConfig {
        let mut config = self.client_config(settings);
        config
            .set("group.id", &settings.group_name)
            .set(
                "client.id",
                settings.client_id.as_deref().unwrap_or(default_client_id),
            )
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        config
    }

    /// Property names (never values: they hold secrets), for the start-up log.
    pub fn names(&self) -> Vec<&str> {
        self.properties.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn clickhouse_names_env_overrides_and_table_wins() {
        let defaults = KafkaClientDefaults::resolve(
            &file(&[
                ("sasl_mechanisms", "SCRAM-SHA-512"),
                ("sasl_username", "from-file"),
            ]),
            vec![
                (
                    "SLUICE_RDKAFKA_SASL_USERNAME".to_string(),
                    "from-env".to_string(),
                ),
                ("SLUICE_LOG".to_string(), "debug".to_string()),
            ],
        )
        .expect("valid properties");
        assert_eq!(defaults.names(), vec!["sasl.mechanisms", "sasl.username"]);
        let settings = KafkaSettings::from_pairs(&[
            ("kafka_broker_list".into(), "k:9092".into()),
            ("kafka_topic_list".into(), "t".into()),
            ("kafka_group_name".into(), "g".into()),
            ("kafka_format".into(), "JSONEachRow".into()),
            ("kafka_sasl_mechanism".into(), "PLAIN".into()),
        ])
        .expect("settings");
        let config = defaults.client_config(&settings);
        assert_eq!(config.get("sasl.username"), Some("from-env"));
        assert_eq!(config.get("sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9092"));
    }

    #[test]
    fn properties_are_checked_together() {
        let together = KafkaClientDefaults::resolve(
            &file(&[
                ("security_protocol", "SASL_SSL"),
                ("sasl_mechanisms", "SCRAM-SHA-512"),
            ]),
            vec![],
        );
        assert!(together.is_ok(), "{together:?}");
    }

    #[test]
    fn unknown_or_reserved_properties_are_named() {
        let err = KafkaClientDefaults::resolve(&file(&[("sasl_usernme", "x")]), vec![])
            .expect_err("typo");
        let text = err.to_string();
        assert!(
            text.contains("sasl.usernme") && text.contains("[kafka] sasl_usernme"),
            "{text}"
        );
        let err = KafkaClientDefaults::resolve(
            &BTreeMap::new(),
            vec![("SLUICE_RDKAFKA_GROUP_ID".to_string(), "g".to_string())],
        )
        .expect_err("reserved");
        assert!(err.to_string().contains("SLUICE_RDKAFKA_GROUP_ID"), "{err}");
    }

    #[test]
    fn secret_properties_are_known_in_either_spelling() {
        for name in [
            "sasl.password",
            "sasl_password",
            "ssl.key.password",
            "ssl_keystore_password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in ["sasl.username", "ssl.ca.location", "security.protocol"] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn a_consumer_never_lets_librdkafka_keep_its_offsets() {
        let defaults = KafkaClientDefaults::resolve(
            &file(&[("auto_offset_reset", "latest"), ("client_id", "node-wide")]),
            vec![],
        )
        .expect("valid properties");
        let mut settings = KafkaSettings::for_tests();
        let config = defaults.consumer_config(&settings, "n1/queue/t/0");
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("client.id"), Some("n1/queue/t/0"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(
            config.get("auto.offset.reset"),
            Some("earliest"),
            "not the node's latest"
        );
        assert_eq!(config.get("enable.partition.eof"), Some("false"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        settings.client_id = Some("from-ddl".into());
        let config = defaults.consumer_config(&settings, "n1/queue/t/0");
        assert_eq!(config.get("client.id"), Some("from-ddl"));
    }
}

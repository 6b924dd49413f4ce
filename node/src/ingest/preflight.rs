//! What can be known about a new Kafka table's connection at once, before `CREATE TABLE`
//! answers: settings that cannot work together, and broker hosts that do not resolve.
//!
//! Bounded and without a broker: a `CREATE` waits `RESOLVE_TIMEOUT` at most, and a
//! broker that is merely down does not fail it (ClickHouse creates such a table, and its
//! consumers show the cause in `system.kafka_consumers`). A lookup that cannot answer in
//! time, or answers "try again", fails nothing either.

use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use super::cause::Cause;
use super::client::KafkaClientDefaults;
use super::client_context::CauseContext;
use crate::catalog::{KafkaSettings, TableDef};

/// How long a `CREATE` waits for its broker hosts to resolve, all together.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("table {table}: {reason}")]
    Settings { table: String, reason: String },
    #[error("table {table}: {cause}")]
    Unresolvable { table: String, cause: Cause },
}

/// Settings that make a client send no credentials although the table gives some: a
/// table-level SASL setting over a protocol without SASL. Node-wide SASL properties are
/// not judged: they are meant for the tables that use SASL.
pub fn security_conflict(settings: &KafkaSettings, protocol: Option<&str>) -> Option<String> {
    let protocol = protocol.unwrap_or("plaintext").to_ascii_lowercase();
    if protocol.starts_with("sasl_") {
        return None;
    }
    let given: Vec<&str> = [
        ("kafka_sasl_mechanism", settings.sasl_mechanism.is_some()),
        ("kafka_sasl_username", settings.sasl_username.is_some()),
        ("kafka_sasl_password", settings.sasl_password.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if given.is_empty() {
        return None;
    }
    Some(format!(
        "{} given, but the security protocol is {protocol}, which sends no SASL credentials; set kafka_security_protocol = 'sasl_plaintext' or 'sasl_ssl'",
        given.join(", ")
    ))
}

/// The hosts of a broker list, as "host:port", without a listener's scheme.
pub fn broker_hosts(broker_list: &str) -> Vec<String> {
    broker_list
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| b.split_once("://").map_or(b, |(_, rest)| rest).to_string())
        .map(|b| {
            if b.contains(':') {
                b
            } else {
                format!("{b}:9092")
            }
        })
        .collect()
}

/// Whether a failed lookup's text says the name does not exist, rather than that the
/// resolver could not answer now.
fn is_definitive(error: &std::io::Error) -> bool {
    let text = error.to_string();
    !(text.contains("Temporary failure") || text.contains("try again"))
}

/// Checks a new table before it is created; Ok for any table that is not a Kafka table.
pub async fn check_new_table(
    defaults: &KafkaClientDefaults,
    table: &TableDef,
) -> Result<(), PreflightError> {
    let Some(settings) = table.kafka() else {
        return Ok(());
    };
    let config = defaults.client_config(settings);
    if let Some(reason) = security_conflict(settings, config.get("security.protocol")) {
        return Err(PreflightError::Settings {
            table: table.name.clone(),
            reason,
        });
    }
    // librdkafka checks properties against each other (a SASL mechanism with no user,
    // a CA file that is missing) only when a client is made; this one is dropped unused.
    let context = CauseContext::new(&table.name, &config).quiet();
    let made = tokio::task::spawn_blocking(move || {
        config
            .create_with_context::<_, BaseConsumer<CauseContext>>(context)
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or(Ok(()));
    if let Err(reason) = made {
        return Err(PreflightError::Settings {
            table: table.name.clone(),
            reason: super::cause::redact(&reason, &secrets(defaults, settings)),
        });
    }
    let lookups = broker_hosts(&settings.broker_list)
        .into_iter()
        .map(|host| async move {
            let found = tokio::net::lookup_host(host.as_str()).await.map(|_| ());
            (host, found)
        });
    let Ok(results) =
        tokio::time::timeout(RESOLVE_TIMEOUT, futures::future::join_all(lookups)).await
    else {
        tracing::debug!(table = %table.name, "broker hosts did not resolve in time; not judged");
        return Ok(());
    };
    for (host, found) in results {
        match found {
            Err(e) if is_definitive(&e) => {
                return Err(PreflightError::Unresolvable {
                    table: table.name.clone(),
                    cause: Cause::Unresolvable {
                        host,
                        detail: e.to_string(),
                    },
                })
            }
            Err(e) => {
                tracing::debug!(table = %table.name, %host, error = %e, "broker host lookup inconclusive")
            }
            Ok(()) => {}
        }
    }
    Ok(())
}

fn secrets(defaults: &KafkaClientDefaults, settings: &KafkaSettings) -> Vec<String> {
    defaults
        .client_config(settings)
        .config_map()
        .iter()
        .filter(|(name, _)| super::client::is_secret_property(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_settings_over_plaintext_are_refused() {
        let mut settings = KafkaSettings::for_tests();
        assert_eq!(security_conflict(&settings, None), None);
        settings.sasl_username = Some("alice".into());
        settings.sasl_password = Some("alice-secret".into());
        let reason = security_conflict(&settings, Some("SSL")).unwrap_or_default();
        assert!(
            reason.starts_with(
                "kafka_sasl_username, kafka_sasl_password given, but the security protocol is ssl"
            ),
            "{reason}"
        );
        assert!(!reason.contains("alice-secret"));
        assert_eq!(security_conflict(&settings, Some("SASL_SSL")), None);
    }

    #[test]
    fn broker_hosts_get_a_port_and_lose_a_scheme() {
        assert_eq!(
            broker_hosts("a:1, sasl_ssl://b:2,c,"),
            vec!["a:1".to_string(), "b:2".to_string(), "c:9092".to_string()]
        );
    }

    #[tokio::test]
    async fn an_unresolvable_host_fails_a_create_and_a_closed_port_does_not() {
        let defaults = KafkaClientDefaults::default();
        let mut settings = KafkaSettings::for_tests();
        settings.broker_list = "127.0.0.1:1".into();
        let table = |settings: KafkaSettings| TableDef {
            name: "queue".into(),
            columns: vec![],
            engine: crate::catalog::Engine::Kafka(Box::new(settings)),
            detached: false,
            layout: Default::default(),
        };
        assert!(check_new_table(&defaults, &table(settings.clone()))
            .await
            .is_ok());
        settings.broker_list = "127.0.0.1:1,no-such-host.invalid:9092".into();
        let err = check_new_table(&defaults, &table(settings))
            .await
            .map(|()| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(
            err.starts_with("table queue: DNS failure: broker host 'no-such-host.invalid:9092' does not resolve"),
            "{err}"
        );
    }
}

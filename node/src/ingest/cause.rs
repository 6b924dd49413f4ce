//! Why a Kafka client failed, in words an operator can act on: librdkafka's error code and
//! reason text (from its error and log callbacks, or an API call's error) classified into a
//! typed `Cause`.
//!
//! Pure: no rdkafka client, no I/O. librdkafka's reason texts are not an API, so every
//! pattern here is pinned by a unit test on a text observed from librdkafka 2.12.1 against
//! a real Kafka 4.1 broker, and what matches no pattern is shown as librdkafka said it.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// What shows instead of a secret that a text would otherwise contain.
pub const HIDDEN: &str = "[HIDDEN]";

/// The cause of a Kafka client's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A broker's host name has no address.
    Unresolvable {
        host: String,
        detail: String,
    },
    /// Nothing accepted the connection (refused, timed out, no route).
    Unreachable {
        broker: String,
        detail: String,
    },
    /// The client speaks plaintext to a listener that expects TLS.
    PlaintextToTls {
        broker: String,
    },
    /// The client speaks TLS to a listener that expects plaintext.
    TlsToPlaintext {
        broker: String,
    },
    /// Any other TLS failure: an unverifiable certificate, a protocol mismatch.
    TlsHandshake {
        broker: String,
        detail: String,
    },
    /// The listener does not offer the SASL mechanism the client asked for.
    SaslMechanism {
        broker: String,
        mechanism: String,
        supported: String,
    },
    /// The broker refused the credentials.
    Authentication {
        broker: String,
        mechanism: String,
        user: Option<String>,
    },
    TopicMissing {
        topic: Option<String>,
    },
    TopicNotAuthorized {
        topic: Option<String>,
    },
    GroupNotAuthorized {
        group: Option<String>,
    },
    /// Every broker of the list failed; their own causes come separately.
    AllBrokersDown {
        detail: String,
    },
    /// A failure no pattern here names: librdkafka's own words.
    Other {
        code: String,
        reason: String,
    },
}

impl Cause {
    /// Whether retrying with the same settings can help. A refused password or a missing
    /// ACL stays so until someone changes the broker or the table: waiting on it only
    /// hides it.
    pub fn is_lasting(&self) -> bool {
        matches!(
            self,
            Cause::PlaintextToTls { .. }
                | Cause::TlsToPlaintext { .. }
                | Cause::SaslMechanism { .. }
                | Cause::Authentication { .. }
                | Cause::TopicNotAuthorized { .. }
                | Cause::GroupNotAuthorized { .. }
        )
    }

    /// Fills in what the client knows and librdkafka's text does not say: the topic, the
    /// group, the SASL user.
    pub fn naming(mut self, topic: Option<&str>, group: Option<&str>, user: Option<&str>) -> Cause {
        match &mut self {
            Cause::TopicMissing { topic: t } | Cause::TopicNotAuthorized { topic: t }
                if t.is_none() =>
            {
                *t = topic.map(str::to_string);
            }
            Cause::GroupNotAuthorized { group: g } if g.is_none() => {
                *g = group.map(str::to_string);
            }
            Cause::Authentication { user: u, .. } if u.is_none() => {
                *u = user.map(str::to_string);
            }
            _ => {}
        }
        self
    }
}

fn quoted(name: &Option<String>) -> String {
    name.as_deref()
        .map_or_else(String::new, |n| format!(" '{n}'"))
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Unresolvable { host, detail } => write!(
                f,
                "DNS failure: broker host '{host}' does not resolve ({detail}); check kafka_broker_list"
            ),
            Cause::Unreachable { broker, detail } => write!(
                f,
                "broker {broker} is unreachable: {detail}; is a broker listening at that address?"
            ),
            Cause::PlaintextToTls { broker } => write!(
                f,
                "TLS handshake failure: broker {broker} closed a plaintext connection at its first request, as a TLS (SSL) listener does; set kafka_security_protocol to 'ssl' or 'sasl_ssl' for it"
            ),
            Cause::TlsToPlaintext { broker } => write!(
                f,
                "TLS handshake failure: broker {broker} answered TLS with plaintext, so it is not a TLS listener; set kafka_security_protocol to 'plaintext' or 'sasl_plaintext' for it"
            ),
            Cause::TlsHandshake { broker, detail } => {
                write!(f, "TLS handshake failure with broker {broker}: {detail}")
            }
            Cause::SaslMechanism {
                broker,
                mechanism,
                supported,
            } => write!(
                f,
                "SASL mechanism mismatch: broker {broker} does not offer {mechanism} (it offers {supported}); set kafka_sasl_mechanism to one of those"
            ),
            Cause::Authentication {
                broker,
                mechanism,
                user,
            } => write!(
                f,
                "authentication failure: broker {broker} refused the {mechanism} credentials of user{}: wrong password or unknown user (Kafka answers both the same way, so that user names cannot be probed); check kafka_sasl_username and kafka_sasl_password",
                quoted(user)
            ),
            Cause::TopicMissing { topic } => write!(
                f,
                "topic{} does not exist (and the broker does not create topics on demand)",
                quoted(topic)
            ),
            Cause::TopicNotAuthorized { topic } => write!(
                f,
                "not authorized to topic{}: the broker's ACLs do not let this user read or write it",
                quoted(topic)
            ),
            Cause::GroupNotAuthorized { group } => write!(
                f,
                "not authorized to consumer group{}: the broker's ACLs do not let this user use it (kafka_group_name)",
                quoted(group)
            ),
            Cause::AllBrokersDown { detail } => {
                write!(f, "no broker of kafka_broker_list can be reached ({detail})")
            }
            Cause::Other { code, reason } => write!(f, "{reason} ({code})"),
        }
    }
}

/// librdkafka ends its failure texts with when and where: "(after 3ms in state CONNECT)",
/// sometimes with ", 2 identical error(s) suppressed" inside. None of it names a cause.
fn without_tail(text: &str) -> &str {
    match text.rfind(" (after ") {
        Some(i) => text[..i].trim_end(),
        None => text.trim_end(),
    }
}

/// Splits "sasl_ssl://host:9092/bootstrap: what happened" into the broker's address and
/// what happened. Log lines start with the thread ("[thrd:main]: "), which goes first.
fn split_broker(text: &str) -> (Option<String>, &str) {
    let text = match text.strip_prefix("[thrd:") {
        Some(rest) => rest.split_once("]: ").map_or(text, |(_, after)| after),
        None => text,
    };
    // The group coordinator's connection is named for its role first:
    // "GroupCoordinator: 127.0.0.1:9092: Connect to ...".
    let text = text
        .strip_prefix("GroupCoordinator")
        .and_then(|rest| rest.split_once(": ").map(|(_, after)| after))
        .unwrap_or(text);
    let Some((head, rest)) = text.split_once(": ") else {
        return (None, text);
    };
    // A broker name is host:port, mostly with a node id or "bootstrap" after a slash.
    let without_scheme = head.split_once("://").map_or(head, |(_, h)| h);
    let address = without_scheme
        .rsplit_once('/')
        .map_or(without_scheme, |(address, _node)| address);
    let has_port = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port || address.contains(' ') {
        return (None, text);
    }
    (Some(address.to_string()), rest)
}

/// The text between `start` and the next `end` (or the text's end).
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = after(text, start)?;
    Some(rest.find(end).map_or(rest, |i| &rest[..i]))
}

/// The text after the first `start`.
fn after<'a>(text: &'a str, start: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    Some(&text[from..])
}

/// The cause of a failure that librdkafka reported with `code` (when it gave one: a log
/// line carries none) and `reason`. `None` for texts that are no failure of the client,
/// such as a log line about a rebalance.
pub fn classify(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Cause> {
    let (broker, what) = split_broker(reason);
    let what = without_tail(what);
    let broker_name = || broker.clone().unwrap_or_else(|| "(unknown)".to_string());
    if code == Some(RDKafkaErrorCode::Resolve) || what.starts_with("Failed to resolve") {
        let host = between(what, "Failed to resolve '", "'")
            .map(str::to_string)
            .unwrap_or_else(broker_name);
        let detail = after(what, "': ").unwrap_or(what).to_string();
        return Some(Cause::Unresolvable { host, detail });
    }
    // A TLS listener reads the first request as a bad handshake and hangs up without a
    // word; librdkafka 2.12 tells only that the peer closed in the ApiVersion exchange
    // (older versions added "connecting to a SSL listener?").
    let closed_at_first_request = what.starts_with("Disconnected")
        && reason.contains("in state APIVERSION_QUERY")
        && !what.contains("SSL");
    if closed_at_first_request || what.contains("connecting to a SSL listener?") {
        return Some(Cause::PlaintextToTls {
            broker: broker_name(),
        });
    }
    if what.contains("SSL handshake failed") || code == Some(RDKafkaErrorCode::SSL) {
        if what.contains("connecting to a PLAINTEXT broker listener?")
            || what.contains("wrong version number")
        {
            return Some(Cause::TlsToPlaintext {
                broker: broker_name(),
            });
        }
        let detail = after(what, "SSL handshake failed: ").unwrap_or(what);
        return Some(Cause::TlsHandshake {
            broker: broker_name(),
            detail: detail.to_string(),
        });
    }
    if what.contains("Unsupported SASL mechanism") {
        let mechanism = between(what, "SASL ", " mechanism handshake failed")
            .unwrap_or("(the configured one)")
            .to_string();
        let supported = after(what, "supported mechanisms: ")
            .unwrap_or("none it named")
            .to_string();
        return Some(Cause::SaslMechanism {
            broker: broker_name(),
            mechanism,
            supported,
        });
    }
    if what.contains("invalid credentials")
        || what.contains("SASL authentication error")
        || code == Some(RDKafkaErrorCode::SaslAuthenticationFailed)
    {
        let mechanism = between(what, "with SASL mechanism ", " ")
            .unwrap_or("SASL")
            .to_string();
        return Some(Cause::Authentication {
            broker: broker_name(),
            mechanism,
            user: None,
        });
    }
    if let Some(detail) = after(what, " failed: ").filter(|_| what.starts_with("Connect to ")) {
        return Some(Cause::Unreachable {
            broker: broker_name(),
            detail: detail.to_string(),
        });
    }
    match code {
        Some(RDKafkaErrorCode::AllBrokersDown) => Some(Cause::AllBrokersDown {
            detail: what.to_string(),
        }),
        Some(c) => of_code(c).or_else(|| {
            // Without librdkafka's "(after 3ms ...)" tail, so a repeated failure reads the
            // same each time and is told once.
            Some(Cause::Other {
                code: format!("{c:?}"),
                reason: match &broker {
                    Some(b) => format!("{b}: {what}"),
                    None => what.to_string(),
                },
            })
        }),
        None => None,
    }
}

/// The cause an error code names on its own, without a reason text: what the broker
/// answers to a request (a metadata, fetch, offset or produce request).
pub fn of_code(code: RDKafkaErrorCode) -> Option<Cause> {
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            Some(Cause::TopicMissing { topic: None })
        }
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            Some(Cause::TopicNotAuthorized { topic: None })
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => {
            Some(Cause::GroupNotAuthorized { group: None })
        }
        _ => None,
    }
}

/// The cause an API call's error names on its own, if any.
pub fn of_error(error: &KafkaError) -> Option<Cause> {
    error.rdkafka_error_code().and_then(of_code)
}

/// Whether an error code is one of those librdkafka gives for a connection that failed,
/// whose reason then came only through the client's callbacks.
pub fn is_connection_code(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::SSL
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::RequestTimedOut
    )
}

/// `text` with every non-empty secret replaced, so that a reason text that quoted a
/// configuration value cannot carry a password further.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret.as_str(), HIDDEN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unresolvable_host_is_named() {
        let cause = classify(
            Some(RDKafkaErrorCode::Resolve),
            "no-such-host.invalid:9092/bootstrap: Failed to resolve 'no-such-host.invalid:9092': Name or service not known (after 1ms in state CONNECT)",
        );
        assert_eq!(
            cause,
            Some(Cause::Unresolvable {
                host: "no-such-host.invalid:9092".into(),
                detail: "Name or service not known".into()
            })
        );
        let text = cause.map(|c| c.to_string()).unwrap_or_default();
        assert!(
            text.starts_with(
                "DNS failure: broker host 'no-such-host.invalid:9092' does not resolve"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_closed_port_names_the_broker() {
        let cause = classify(
            None,
            "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
        );
        assert_eq!(
            cause,
            Some(Cause::Unreachable {
                broker: "127.0.0.1:1".into(),
                detail: "Connection refused".into()
            })
        );
        // The same failure of the group coordinator's connection reads the same.
        let coordinator = classify(
            Some(RDKafkaErrorCode::BrokerTransportFailure),
            "GroupCoordinator: 127.0.0.1:1: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)",
        );
        assert_eq!(coordinator, cause);
    }

    #[test]
    fn tls_and_plaintext_mismatches_are_told_apart() {
        // librdkafka 2.12, as an Info "FAIL" log line only.
        let plain_to_tls = classify(
            None,
            "[thrd:127.0.0.1:19195/bootstrap]: 127.0.0.1:19195/bootstrap: Disconnected: connection closed by peer: receive 0 after POLLIN (after 2ms in state APIVERSION_QUERY)",
        );
        assert_eq!(
            plain_to_tls,
            Some(Cause::PlaintextToTls {
                broker: "127.0.0.1:19195".into()
            })
        );
        let tls_to_plain = classify(
            Some(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:19192/bootstrap: SSL handshake failed: Disconnected: SSL connection closed by peer: connecting to a PLAINTEXT broker listener? (after 9ms in state SSL_HANDSHAKE)",
        );
        assert_eq!(
            tls_to_plain,
            Some(Cause::TlsToPlaintext {
                broker: "127.0.0.1:19192".into()
            })
        );
        // Its companion line names no cause, and an idle connection closed is none.
        for line in [
            "[thrd:ssl://127.0.0.1:19192/bootstrap]: ssl://127.0.0.1:19192/bootstrap: Disconnected: SSL connection closed by peer (after 1ms in state SSL_HANDSHAKE)",
            "[thrd:127.0.0.1:19192/1]: 127.0.0.1:19192/1: Disconnected: connection closed by peer: receive 0 after POLLIN (after 600012ms in state UP)",
        ] {
            assert_eq!(classify(None, line), None, "{line}");
        }
        let unverified = classify(
            Some(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:19195/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)",
        );
        assert!(
            matches!(&unverified, Some(Cause::TlsHandshake { detail, .. }) if detail.contains("certificate verify failed")),
            "{unverified:?}"
        );
    }

    #[test]
    fn sasl_mechanism_mismatch_lists_what_the_broker_offers() {
        let cause = classify(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_plaintext://127.0.0.1:19194/bootstrap: SASL PLAIN mechanism handshake failed: Broker: Unsupported SASL mechanism: broker's supported mechanisms: SCRAM-SHA-512,SCRAM-SHA-256 (after 303ms in state AUTH_HANDSHAKE)",
        );
        assert_eq!(
            cause,
            Some(Cause::SaslMechanism {
                broker: "127.0.0.1:19194".into(),
                mechanism: "PLAIN".into(),
                supported: "SCRAM-SHA-512,SCRAM-SHA-256".into()
            })
        );
    }

    #[test]
    fn refused_credentials_say_password_or_user_and_why() {
        let cause = classify(
            Some(RDKafkaErrorCode::Authentication),
            "sasl_plaintext://127.0.0.1:19194/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256 (after 311ms in state AUTH_REQ, 1 identical error(s) suppressed)",
        )
        .map(|c| c.naming(None, None, Some("alice")));
        assert_eq!(
            cause,
            Some(Cause::Authentication {
                broker: "127.0.0.1:19194".into(),
                mechanism: "SCRAM-SHA-256".into(),
                user: Some("alice".into())
            })
        );
        let text = cause.map(|c| c.to_string()).unwrap_or_default();
        assert!(text.contains("wrong password or unknown user"), "{text}");
        assert!(text.contains("user 'alice'"), "{text}");
    }

    #[test]
    fn broker_answers_name_the_topic_or_group() {
        let topic = of_code(RDKafkaErrorCode::UnknownTopicOrPartition)
            .map(|c| c.naming(Some("events"), Some("g"), None).to_string());
        assert_eq!(
            topic.as_deref(),
            Some("topic 'events' does not exist (and the broker does not create topics on demand)")
        );
        let denied = of_error(&KafkaError::MetadataFetch(
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ))
        .map(|c| c.naming(Some("events"), None, None));
        assert_eq!(
            denied,
            Some(Cause::TopicNotAuthorized {
                topic: Some("events".into())
            })
        );
        let group = of_error(&KafkaError::OffsetFetch(
            RDKafkaErrorCode::GroupAuthorizationFailed,
        ))
        .map(|c| c.naming(None, Some("g"), None).to_string());
        assert!(
            group
                .as_deref()
                .is_some_and(|t| t.starts_with("not authorized to consumer group 'g'")),
            "{group:?}"
        );
        assert!(of_code(RDKafkaErrorCode::BrokerTransportFailure).is_none());
    }

    #[test]
    fn a_log_line_that_is_no_failure_has_no_cause() {
        assert_eq!(
            classify(None, "[thrd:main]: Group \"g\" changed join state"),
            None
        );
    }

    #[test]
    fn secrets_are_replaced() {
        let text = redact(
            "Invalid value \"alice-secret\" for property",
            &["alice-secret".into(), String::new()],
        );
        assert_eq!(text, "Invalid value \"[HIDDEN]\" for property");
    }
}

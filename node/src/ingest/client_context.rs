//! The context every Kafka client of the node is made with: it hears librdkafka's error
//! and log callbacks, names their cause (`cause`), and keeps the last one, so that an API
//! call's bare "transport failure" or "timed out" can be told with its reason.
//!
//! librdkafka gives a consumer's connection errors to its message stream as a bare code:
//! their reason text comes only through the log callback. Each distinct cause is logged
//! and recorded in the consumer's status once a minute at most, so a broker that stays
//! down cannot flood either. Secrets are replaced before any text leaves this module.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::cause::{classify, is_connection_code, of_error, redact, Cause};
use super::client::is_secret_property;
use super::status::ConsumerStatus;

/// How long a cause heard from the callbacks still explains an API call's failure.
const RECENT: Duration = Duration::from_secs(30);
/// How often the same cause is logged and recorded again while it lasts.
const REPEAT_EVERY: Duration = Duration::from_secs(60);
/// How many distinct causes the throttle remembers (a client fails in few ways at once).
const THROTTLE_KEPT: usize = 16;

/// Decides whether a cause is reported now: the first time, then once per `REPEAT_EVERY`.
#[derive(Debug, Default)]
struct Throttle {
    reported: VecDeque<(String, Instant)>,
}

impl Throttle {
    fn due(&mut self, text: &str, now: Instant) -> bool {
        if let Some(entry) = self.reported.iter_mut().find(|(t, _)| t == text) {
            if now.duration_since(entry.1) < REPEAT_EVERY {
                return false;
            }
            entry.1 = now;
            return true;
        }
        if self.reported.len() == THROTTLE_KEPT {
            self.reported.pop_front();
        }
        self.reported.push_back((text.to_string(), now));
        true
    }
}

#[derive(Debug, Default)]
struct Heard {
    last: Option<(Instant, Cause)>,
    throttle: Throttle,
}

/// Where a client's causes go, and what they may name. A clone shares what was heard, so
/// its owner can ask a client's context without going through the client.
#[derive(Debug, Clone)]
pub struct CauseContext {
    /// The Kafka table the client works for, for the log.
    table: String,
    topic: Option<String>,
    group: Option<String>,
    user: Option<String>,
    secrets: Vec<String>,
    /// A consumer's status, which shows each cause in `system.kafka_consumers`.
    status: Option<Arc<ConsumerStatus>>,
    /// Whether causes are logged as warnings; a short-lived probe leaves that to its
    /// caller, which knows whether the failure matters.
    loud: bool,
    heard: Arc<Mutex<Heard>>,
}

impl CauseContext {
    /// A context for a client made from `config` for `table`.
    pub fn new(table: &str, config: &ClientConfig) -> CauseContext {
        CauseContext {
            table: table.to_string(),
            topic: None,
            group: config.get("group.id").map(str::to_string),
            user: config.get("sasl.username").map(str::to_string),
            secrets: config
                .config_map()
                .iter()
                .filter(|(name, _)| is_secret_property(name))
                .map(|(_, value)| value.to_string())
                .collect(),
            status: None,
            loud: true,
            heard: Arc::new(Mutex::new(Heard::default())),
        }
    }

    pub fn for_topic(mut self, topic: &str) -> CauseContext {
        self.topic = Some(topic.to_string());
        self
    }

    pub fn recording_to(mut self, status: Arc<ConsumerStatus>) -> CauseContext {
        self.status = Some(status);
        self
    }

    pub fn quiet(mut self) -> CauseContext {
        self.loud = false;
        self
    }

    /// `text` without this client's secrets.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    fn heard(&self) -> std::sync::MutexGuard<'_, Heard> {
        match self.heard.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn name(&self, cause: Cause) -> Cause {
        cause.naming(
            self.topic.as_deref(),
            self.group.as_deref(),
            self.user.as_deref(),
        )
    }

    /// Takes a failure librdkafka reported through a callback.
    fn hear(&self, code: Option<RDKafkaErrorCode>, reason: &str) {
        let Some(cause) = classify(code, &self.redact(reason)) else {
            return;
        };
        // "All brokers down" follows the failures that explain it; it explains nothing
        // itself, and must not push them out.
        let explains = !matches!(cause, Cause::AllBrokersDown { .. } | Cause::Other { .. });
        let cause = self.name(cause);
        let now = Instant::now();
        let text = cause.to_string();
        let due = {
            let mut heard = self.heard();
            let explained = heard.last.as_ref().is_some_and(|(at, last)| {
                now.duration_since(*at) < RECENT
                    && !matches!(last, Cause::AllBrokersDown { .. } | Cause::Other { .. })
            });
            let news = explains || !explained;
            if news {
                heard.last = Some((now, cause));
            }
            // "All brokers down" after failures that were told tells nothing new.
            news && heard.throttle.due(&text, now)
        };
        if due {
            self.report(&text);
        }
    }

    fn report(&self, text: &str) {
        if self.loud {
            tracing::warn!(table = %self.table, cause = %text, "kafka client failure");
        } else {
            tracing::debug!(table = %self.table, cause = %text, "kafka client failure");
        }
        if let Some(status) = &self.status {
            status.error(text);
        }
    }

    /// The cause heard last, if it is recent enough to explain a failure now.
    pub fn recent(&self) -> Option<Cause> {
        let heard = self.heard();
        heard
            .last
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RECENT)
            .map(|(_, c)| c.clone())
    }

    /// The cause of an API call's error: the one its code names, else, for a connection
    /// failure, the last cause heard.
    pub fn cause_of(&self, error: &KafkaError) -> Option<Cause> {
        if let Some(cause) = of_error(error) {
            return Some(self.name(cause));
        }
        error
            .rdkafka_error_code()
            .filter(|c| is_connection_code(*c))
            .and_then(|_| self.recent())
    }

    /// Records a consumer's error from its stream, under its cause when one is known: a
    /// cause is recorded (and logged) once a minute at most, a bare error each time.
    pub fn consume_error(&self, error: &KafkaError) {
        match self.cause_of(error) {
            Some(cause) => {
                let text = cause.to_string();
                let now = Instant::now();
                let due = {
                    let mut heard = self.heard();
                    // A broker's answer (a group not authorized) explains what follows,
                    // such as a coordinator lookup that times out.
                    if of_error(error).is_some() {
                        heard.last = Some((now, cause));
                    }
                    heard.throttle.due(&text, now)
                };
                if due {
                    self.report(&text);
                }
            }
            None => {
                let text = self.redact(&error.to_string());
                tracing::warn!(table = %self.table, error = %text, "consume error");
                if let Some(status) = &self.status {
                    status.error(format!("consume: {text}"));
                }
            }
        }
    }
}

/// A client configuration that hands the callbacks at least librdkafka's informational
/// lines (it is told the `log` crate's level otherwise): a connection that a TLS
/// listener closed is told only there, as an Info "FAIL" line.
pub fn with_failure_logs(mut config: ClientConfig) -> ClientConfig {
    if !matches!(
        config.log_level,
        RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
    ) {
        config.set_log_level(RDKafkaLogLevel::Info);
    }
    config
}

/// Hands a group-less client's queued events to its context. rdkafka queues librdkafka's
/// log lines (where the causes are) on the client's main queue, which only a poll serves;
/// a consumer with a group serves them from its stream, a client that only asks for
/// metadata must do it after asking.
pub fn serve_events(client: &BaseConsumer<CauseContext>) {
    // Bounded: a client that keeps failing keeps queueing.
    for _ in 0..EVENTS_SERVED_MAX {
        if client.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

/// How many queued events `serve_events` takes at most.
const EVENTS_SERVED_MAX: usize = 256;

impl ClientContext for CauseContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let failure = fac == "FAIL"
            || matches!(
                level,
                RDKafkaLogLevel::Emerg
                    | RDKafkaLogLevel::Alert
                    | RDKafkaLogLevel::Critical
                    | RDKafkaLogLevel::Error
                    | RDKafkaLogLevel::Warning
            );
        let text = self.redact(log_message);
        tracing::debug!(table = %self.table, facility = fac, ?level, message = %text, "librdkafka");
        if failure {
            self.hear(None, &text);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.hear(error.rdkafka_error_code(), reason);
    }
}

impl ConsumerContext for CauseContext {}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "g")
            .set("sasl.username", "alice")
            .set("sasl.password", "alice-secret");
        c
    }

    #[test]
    fn a_cause_is_recorded_once_a_minute_and_without_secrets() {
        let status = Arc::new(ConsumerStatus::default());
        let context = CauseContext::new("queue", &config()).recording_to(status.clone());
        for _ in 0..5 {
            context.log(
                RDKafkaLogLevel::Error,
                "FAIL",
                "[thrd:sasl_plaintext://127.0.0.1:19194/bootstrap]: sasl_plaintext://127.0.0.1:19194/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256 (after 5ms in state AUTH_REQ)",
            );
        }
        let exceptions = status.snapshot().exceptions;
        assert_eq!(exceptions.len(), 1, "{exceptions:?}");
        assert!(exceptions[0].1.contains("user 'alice'"), "{exceptions:?}");
        assert!(context.recent().is_some_and(|c| c.is_lasting()));

        context.log(
            RDKafkaLogLevel::Error,
            "FAIL",
            "127.0.0.1:1/bootstrap: Invalid value alice-secret (after 0ms in state CONNECT)",
        );
        context.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let texts: Vec<String> = status
            .snapshot()
            .exceptions
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert!(
            texts.iter().all(|t| !t.contains("alice-secret")),
            "{texts:?}"
        );
        // What explains the failure stays the cause an API error is told with.
        let bare = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
        assert!(matches!(
            context.cause_of(&bare),
            Some(Cause::Authentication { .. })
        ));
    }

    #[test]
    fn a_broker_answer_names_the_group_itself() {
        let context = CauseContext::new("queue", &config());
        let denied = KafkaError::OffsetFetch(RDKafkaErrorCode::GroupAuthorizationFailed);
        assert_eq!(
            context.cause_of(&denied),
            Some(Cause::GroupNotAuthorized {
                group: Some("g".into())
            })
        );
        let timeout = KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        assert_eq!(context.cause_of(&timeout), None, "nothing heard yet");
    }

    #[test]
    fn the_throttle_repeats_a_cause_after_a_while() {
        let mut t = Throttle::default();
        let now = Instant::now();
        assert!(t.due("a", now));
        assert!(!t.due("a", now + Duration::from_secs(1)));
        assert!(t.due("b", now + Duration::from_secs(1)));
        assert!(t.due("a", now + REPEAT_EVERY));
    }
}

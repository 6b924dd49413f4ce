#!/usr/bin/env bash
# Runs a real single-node Apache Kafka broker (KRaft, broker and controller in
# one JVM) on 127.0.0.1 for Sluice's integration tests and the quickstart.
#
# Sluice's correctness depends on genuine broker behaviour (consumer-group
# rebalances, committed offsets, transactions), so tests talk to the real thing
# rather than a mock. The machines this project runs on reach package
# registries only, so Kafka is assembled from its Maven Central jars instead of
# the Apache release tarball. The jars live in a cache outside the work tree so
# that fresh clones and CI runs on the same machine reuse them.
#
# Usage: scripts/kafka.sh COMMAND
#   install                       resolve the Kafka jars (skipped when cached)
#   start                         start the broker and wait until it answers
#   start-secure                  start it with SASL/SCRAM and SSL listeners and ACLs too
#                                 (see "Secured broker" below)
#   stop [--wipe]                 stop it; --wipe also deletes its state dir
#   status                        exit 0 if running, 3 if not
#   bootstrap                     print the bootstrap address
#   topic-create NAME PARTITIONS [EXTRA TopicCommand ARGS...]
#   run-class CLASS [ARGS...]     run any Kafka class on the Kafka classpath
#   topics|consumer-groups|console-producer|console-consumer [ARGS...]
#                                 shorthands for run-class with the tool class
#
# Environment:
#   KAFKA_VERSION          Kafka release to use (default: the pinned one below)
#   SLUICE_CACHE           cache root (default ~/.cache/sluice)
#   SLUICE_KAFKA_DIR       state dir: data, config, log, pid (default $SLUICE_CACHE/kafka-run)
#   KAFKA_PORT             client port (default: the port this state dir last used, else 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default KAFKA_PORT+1)
#   KAFKA_HEAP_OPTS        broker heap (default -Xms256m -Xmx768m)
#   KAFKA_TOOL_OPTS        JVM options for tool classes
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to answer (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 20)
#   KAFKA_SERVER_PROPS     extra server.properties lines, appended last so they win
#
# Secured broker (start-secure), for tests of credentials, TLS and ACLs. Besides the
# PLAINTEXT listener (whose anonymous user is a super user, so tools and tests can
# administer it), it listens with SASL_PLAINTEXT (SCRAM-SHA-256 and SCRAM-SHA-512 only)
# and SSL (a self-signed certificate made with keytool, its PEM in $SLUICE_KAFKA_DIR/tls/ca.pem),
# authorizes with ACLs (a user with none may do nothing), and creates no topic on demand.
#   KAFKA_SASL_PORT        SASL_PLAINTEXT port (default KAFKA_PORT+2)
#   KAFKA_SSL_PORT         SSL port (default KAFKA_PORT+3)
#   KAFKA_SCRAM_USERS      "name:password ..." created with both SCRAM mechanisms at format
#                          time (default "alice:alice-secret")
#
# Several brokers can run side by side: give each its own SLUICE_KAFKA_DIR and
# a KAFKA_PORT whose port+1 (the controller port) is free too (and +2, +3 for a secured one).
set -euo pipefail

# Pinned so every machine tests against the same broker; bump deliberately.
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
# Kafka 4.1 ships these logging jars in its own distribution; matching them
# keeps the broker's logging identical to a stock install.
LOG4J_VERSION=2.24.3
SLF4J_VERSION=1.7.36
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

CACHE_ROOT="${SLUICE_CACHE:-$HOME/.cache/sluice}"
KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
LIBS_MARKER="$LIBS/.sluice-complete"
CONF_DIR="$KAFKA_HOME/config"
STATE_DIR="${SLUICE_KAFKA_DIR:-$CACHE_ROOT/kafka-run}"
PID_FILE="$STATE_DIR/kafka.pid"
LOG_FILE="$STATE_DIR/kafka.log"
PORT_FILE="$STATE_DIR/ports"
# Marks a directory as created by this script, so that `stop --wipe` can never
# delete a directory someone pointed SLUICE_KAFKA_DIR at by mistake.
STATE_MARKER="$STATE_DIR/.sluice-kafka-state"
# Set by start-secure; a secured state dir remembers it in this file across restarts.
SECURE_FILE="$STATE_DIR/secure"
SECURE=0
TLS_DIR="$STATE_DIR/tls"
# Only the test broker's keystore: nothing of value is behind it.
TLS_PASSWORD="sluice-test-keystore"

START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
# Tools are short-lived: a small heap, SerialGC and C1 only shave startup time.
TOOL_OPTS="${KAFKA_TOOL_OPTS:--Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1}"

if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="java"
fi

die() { echo "kafka.sh: $*" >&2; exit 1; }
log() { echo "kafka.sh: $*" >&2; }

# The port follows the state dir across restarts unless overridden, so that
# `stop`/`start`/`bootstrap` without KAFKA_PORT keep talking about the broker
# that dir belongs to.
resolve_ports() {
    local saved_port="" saved_cport=""
    if [[ -f "$PORT_FILE" ]]; then
        read -r saved_port saved_cport <"$PORT_FILE" || true
    fi
    PORT="${KAFKA_PORT:-${saved_port:-9092}}"
    if [[ -n "${KAFKA_CONTROLLER_PORT:-}" ]]; then
        CPORT="$KAFKA_CONTROLLER_PORT"
    elif [[ -z "${KAFKA_PORT:-}" && -n "$saved_cport" ]]; then
        CPORT="$saved_cport"
    else
        CPORT=$((PORT + 1))
    fi
    [[ "$PORT" =~ ^[0-9]+$ && "$CPORT" =~ ^[0-9]+$ ]] || die "ports must be numeric (got '$PORT', '$CPORT')"
    [[ "$PORT" != "$CPORT" ]] || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
    BOOTSTRAP="127.0.0.1:$PORT"
    SASL_PORT="${KAFKA_SASL_PORT:-$((PORT + 2))}"
    SSL_PORT="${KAFKA_SSL_PORT:-$((PORT + 3))}"
    if [[ -f "$SECURE_FILE" ]]; then
        SECURE=1
        read -r SASL_PORT SSL_PORT <"$SECURE_FILE" || true
    fi
}

# ---------------------------------------------------------------- install ---

libs_installed() { [[ -f "$LIBS_MARKER" ]]; }

write_file_atomically() { # PATH CONTENT; concurrent runs may race to write the same file
    local tmp
    tmp="$(mktemp "$1.XXXXXX")"
    printf '%s\n' "$2" >"$tmp"
    mv -f "$tmp" "$1"
}

write_configs() {
    mkdir -p "$CONF_DIR"
    # The broker logs to stdout, which start redirects into the state dir.
    write_file_atomically "$CONF_DIR/server-log4j2.properties" "status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN"
    # Tools print their results on stdout; only their problems go to stderr.
    write_file_atomically "$CONF_DIR/tools-log4j2.properties" "status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR"
    # The readiness probe must fail fast while the broker is still booting
    # instead of sitting in the admin client's default 60 s retry loop.
    write_file_atomically "$CONF_DIR/probe-admin.properties" "request.timeout.ms=3000
default.api.timeout.ms=5000
retries=0"
}

cmd_install() {
    if libs_installed; then
        write_configs
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (Debian: apt-get install -y maven)"
    command -v "$JAVA" >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
    mkdir -p "$KAFKA_HOME"
    # Parallel test runs may all trigger the first install; one resolves, the
    # others wait and then find the marker.
    exec 8>"$KAFKA_HOME/.install.lock"
    flock 8
    if libs_installed; then
        exec 8>&-
        write_configs
        return 0
    fi
    log "installing Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
    local work
    work="$(mktemp -d "$KAFKA_HOME/.install.XXXXXX")"
    # kafka_2.13 is the broker (kafka.Kafka, StorageTool); kafka-tools holds the
    # CLI classes; the log4j binding gives slf4j somewhere to write.
    cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    if ! mvn -q -B -f "$work/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
            -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
        cat "$work/mvn.log" >&2
        rm -rf "$work"
        die "resolving Kafka $KAFKA_VERSION with mvn failed"
    fi
    ls "$work/libs"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$work"; die "mvn produced no kafka_2.13 jar"; }
    # Moved into place only when complete, so an interrupted install is redone.
    ls "$work/libs" >"$work/libs/.sluice-complete"
    rm -rf "$LIBS"
    mv "$work/libs" "$LIBS"
    rm -rf "$work"
    exec 8>&-
    write_configs
    log "installed $(grep -c '\.jar$' "$LIBS_MARKER") jars"
}

# ------------------------------------------------------------- processes ---

# Tells our broker apart from an unrelated process that reused a stale pid.
pid_is_ours() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"kafka.Kafka"* && "$cmdline" == *"-Dsluice.kafka.dir=$STATE_DIR "* ]]
}

running_pid() { # prints the broker's pid if it is alive
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
    pid_is_ours "$pid" || return 1
    echo "$pid"
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

run_tool() { # CLASS ARGS...
    # shellcheck disable=SC2086 # TOOL_OPTS is a list of JVM flags
    "$JAVA" $TOOL_OPTS -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" \
        -cp "$LIBS/*" "$@"
}

# A real metadata round trip, not just an open socket: the port opens before
# the broker has joined the quorum and can serve requests.
broker_answers() {
    port_open "$PORT" || return 1
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
        --command-config "$CONF_DIR/probe-admin.properties" --list >/dev/null 2>&1
}

lock_state_dir() {
    mkdir -p "$STATE_DIR"
    exec 9>"$STATE_DIR/.lock"
    flock 9
}

# A self-signed key pair for the SSL listener, and its certificate as PEM for clients.
make_tls_material() {
    [[ -f "$TLS_DIR/broker.p12" && -f "$TLS_DIR/ca.pem" ]] && return 0
    command -v keytool >/dev/null || die "keytool not found (it comes with the JDK)"
    mkdir -p "$TLS_DIR"
    rm -f "$TLS_DIR/broker.p12" "$TLS_DIR/ca.pem"
    keytool -genkeypair -noprompt -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
        -dname "CN=localhost" -ext "SAN=IP:127.0.0.1,DNS:localhost" \
        -keystore "$TLS_DIR/broker.p12" -storetype PKCS12 \
        -storepass "$TLS_PASSWORD" -keypass "$TLS_PASSWORD" >/dev/null 2>&1 \
        || die "keytool could not make a key pair in $TLS_DIR"
    keytool -exportcert -rfc -alias broker -keystore "$TLS_DIR/broker.p12" \
        -storetype PKCS12 -storepass "$TLS_PASSWORD" -file "$TLS_DIR/ca.pem" >/dev/null 2>&1 \
        || die "keytool could not export the certificate"
}

write_server_properties() {
    local listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
    local advertised="PLAINTEXT://127.0.0.1:$PORT"
    local protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    local auto_create=true
    if ((SECURE)); then
        listeners+=",SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT"
        advertised+=",SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SSL://127.0.0.1:$SSL_PORT"
        protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL"
        auto_create=false
    fi
    # No time-based retention: it counts from each message's own timestamp, and tests
    # produce messages stamped in the past (to rewind a table to a time); the broker's
    # retention check, every five minutes, emptied their partitions in the middle of a run.
    local props="process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$STATE_DIR/data
num.partitions=3
auto.create.topics.enable=$auto_create
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.ms=-1"
    if ((SECURE)); then
        # The broker and the controller talk over PLAINTEXT as ANONYMOUS, which must be
        # a super user once ACLs are enforced; so is every tool using that listener.
        props+="
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$TLS_PASSWORD
ssl.key.password=$TLS_PASSWORD
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false"
    fi
    if [[ -n "${KAFKA_SERVER_PROPS:-}" ]]; then
        props+=$'\n'"$KAFKA_SERVER_PROPS"
    fi
    write_file_atomically "$STATE_DIR/server.properties" "$props"
}

fail_start() {
    log "$1"
    if [[ -f "$LOG_FILE" ]]; then
        echo "---- last 60 lines of $LOG_FILE ----" >&2
        tail -n 60 "$LOG_FILE" >&2
        echo "----" >&2
    fi
    exit 1
}

wait_until_answering() { # PID
    local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        pid_is_ours "$pid" || fail_start "broker (pid $pid) exited during startup"
        if broker_answers; then
            return 0
        fi
        sleep 0.5
    done
    fail_start "broker (pid $pid) did not answer on $BOOTSTRAP within ${START_TIMEOUT}s (still running; stop it with: $0 stop)"
}

cmd_start() {
    cmd_install
    lock_state_dir
    resolve_ports
    local pid
    if pid="$(running_pid)"; then
        # Possibly still booting from a start that timed out or raced us.
        wait_until_answering "$pid"
        echo "kafka already running (pid $pid) at $BOOTSTRAP"
        return 0
    fi
    rm -f "$PID_FILE"
    local p
    for p in "$PORT" "$CPORT"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process; pick another KAFKA_PORT (and KAFKA_CONTROLLER_PORT)"
        fi
    done

    touch "$STATE_MARKER"
    echo "$PORT $CPORT" >"$PORT_FILE"
    if ((SECURE)); then
        for p in "$SASL_PORT" "$SSL_PORT"; do
            if port_open "$p"; then
                die "port $p on 127.0.0.1 is already in use by another process; pick other KAFKA_SASL_PORT/KAFKA_SSL_PORT"
            fi
        done
        echo "$SASL_PORT $SSL_PORT" >"$SECURE_FILE"
        make_tls_material
    fi
    write_server_properties
    mkdir -p "$STATE_DIR/data"
    if [[ ! -f "$STATE_DIR/data/meta.properties" ]]; then
        local cluster_id out
        cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)" || die "could not generate a cluster id"
        # SCRAM credentials of a KRaft cluster are records of its metadata log: written
        # at format time, before the broker first starts.
        local scram=() user
        if ((SECURE)); then
            for user in ${KAFKA_SCRAM_USERS:-alice:alice-secret}; do
                [[ "$user" == *:* ]] || die "KAFKA_SCRAM_USERS entries are name:password (got '$user')"
                scram+=(--add-scram "SCRAM-SHA-256=[name=${user%%:*},password=${user#*:}]")
                scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]")
            done
        fi
        if ! out="$(run_tool kafka.tools.StorageTool format --cluster-id "$cluster_id" \
                --config "$STATE_DIR/server.properties" --ignore-formatted "${scram[@]}" 2>&1)"; then
            echo "$out" >&2
            die "formatting KRaft storage in $STATE_DIR/data failed"
        fi
        echo "$cluster_id" >"$STATE_DIR/cluster.id"
    fi

    [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    # setsid detaches the broker from the caller's process group, so a test
    # runner's Ctrl-C or group kill does not take a shared broker down with it;
    # the inner shell records its own pid, which exec hands over to java.
    # fd 9 (the state-dir lock) must not leak into the long-lived broker.
    # shellcheck disable=SC2016,SC2086
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$JAVA" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$CONF_DIR/server-log4j2.properties" \
        -Dsluice.kafka.dir="$STATE_DIR" \
        -cp "$LIBS/*" kafka.Kafka "$STATE_DIR/server.properties" \
        >"$LOG_FILE" 2>&1 </dev/null 9>&- &

    local waited=0
    while [[ ! -s "$PID_FILE" ]]; do
        ((waited++ < 100)) || fail_start "broker did not record its pid"
        sleep 0.05
    done
    pid="$(cat "$PID_FILE")"
    log "starting kafka $KAFKA_VERSION (pid $pid) at $BOOTSTRAP, state in $STATE_DIR"
    wait_until_answering "$pid"
    echo "kafka running (pid $pid) at $BOOTSTRAP"
}

cmd_stop() {
    local wipe=0
    case "${1:-}" in
        "") ;;
        --wipe) wipe=1 ;;
        *) die "usage: $0 stop [--wipe]" ;;
    esac
    [[ -d "$STATE_DIR" ]] || { echo "kafka not running"; return 0; }
    lock_state_dir
    local pid
    if pid="$(running_pid)"; then
        kill -TERM "$pid" 2>/dev/null || true
        # pid_is_ours rather than kill -0: an exited broker whose parent never
        # reaps it stays a zombie, and kill -0 would report it alive forever.
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while pid_is_ours "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if pid_is_ours "$pid"; then
            log "broker (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while pid_is_ours "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        fi
        echo "kafka stopped (pid $pid)"
    else
        echo "kafka not running"
    fi
    rm -f "$PID_FILE"
    if ((wipe)); then
        if [[ -f "$STATE_MARKER" ]]; then
            rm -rf "$STATE_DIR"
            echo "wiped $STATE_DIR"
        elif [[ -z "$(find "$STATE_DIR" -mindepth 1 -maxdepth 1 ! -name .lock -print -quit)" ]]; then
            rm -rf "$STATE_DIR"
        else
            die "refusing to wipe $STATE_DIR: it was not created by this script"
        fi
    fi
}

cmd_status() {
    resolve_ports
    local pid
    if pid="$(running_pid)"; then
        if port_open "$PORT"; then
            echo "kafka running (pid $pid) at $BOOTSTRAP"
        else
            echo "kafka running (pid $pid) at $BOOTSTRAP, port not open yet"
        fi
        return 0
    fi
    echo "kafka not running (bootstrap would be $BOOTSTRAP, state dir $STATE_DIR)"
    return 3
}

cmd_topic_create() {
    [[ $# -ge 2 ]] || die "usage: $0 topic-create NAME PARTITIONS [EXTRA TopicCommand ARGS...]"
    local name="$1" partitions="$2"
    shift 2
    cmd_install
    resolve_ports
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
        --create --if-not-exists --topic "$name" --partitions "$partitions" \
        --replication-factor 1 "$@"
}

cmd_run_class() {
    [[ $# -ge 1 ]] || die "usage: $0 run-class CLASS [ARGS...]"
    cmd_install
    run_tool "$@"
}

usage() {
    sed -n '/^# Usage:/,/^# Environment:/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start ;;
        start-secure) SECURE=1; cmd_start ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status ;;
        bootstrap) resolve_ports; echo "$BOOTSTRAP" ;;
        topic-create) cmd_topic_create "$@" ;;
        run-class) cmd_run_class "$@" ;;
        topics) cmd_run_class org.apache.kafka.tools.TopicCommand "$@" ;;
        consumer-groups) cmd_run_class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
        console-producer) cmd_run_class org.apache.kafka.tools.ConsoleProducer "$@" ;;
        console-consumer) cmd_run_class org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
        -h|--help|help) usage ;;
        *) usage ;;
    esac
}

main "$@"

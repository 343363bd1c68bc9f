#!/usr/bin/env bash
# A real Apache Kafka 4.x broker (KRaft, one combined broker/controller) on 127.0.0.1, for
# development and tests. Needs java (17+) and mvn; nothing else.
#
#   tests/infra/kafka.sh start  [DIR]   start (or restart on the same port and data); prints bootstrap=HOST:PORT
#   tests/infra/kafka.sh stop   [DIR]   stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   tests/infra/kafka.sh status [DIR]   prints bootstrap=HOST:PORT and exits 0 when running, else exits 1
#   tests/infra/kafka.sh fetch          fetch the jars only
#
# DIR (default $EXECSCOPE_KAFKA_DIR or ${TMPDIR:-/tmp}/execscope-kafka-$UID) holds the config, the
# KRaft data, the pid, the chosen port and broker.log. The first start picks free ports and formats
# the storage; a later start in the same DIR keeps both, so topics and offsets survive a restart.
# The jars come from Maven Central through tests/infra/kafka-pom.xml and are cached in
# ${XDG_CACHE_HOME:-~/.cache}/execscope/kafka-<version>/libs (fetched once, reused by every run).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/kafka-pom.xml"
VERSION="$(grep -o '<kafka.version>[^<]*' "$POM" | cut -d'>' -f2)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/execscope/kafka-$VERSION"
LIBS="$CACHE/libs"
DIR="${2:-${EXECSCOPE_KAFKA_DIR:-${TMPDIR:-/tmp}/execscope-kafka-$(id -u)}}"
START_TIMEOUT="${EXECSCOPE_KAFKA_START_TIMEOUT:-90}"

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_tools() {
    command -v java >/dev/null || die "java not found (Kafka $VERSION needs Java 17+)"
    command -v mvn >/dev/null || die "mvn not found (used to fetch the Kafka jars from Maven Central)"
}

fetch() {
    [ -f "$LIBS/.complete" ] && return 0
    need_tools
    mkdir -p "$CACHE"
    # one fetch at a time; a fetch lands under a temporary name and is renamed when complete
    exec 9>"$CACHE/.lock"
    flock 9
    if [ ! -f "$LIBS/.complete" ]; then
        local tmp="$CACHE/libs.tmp.$$"
        rm -rf "$tmp"
        echo "kafka.sh: fetching Kafka $VERSION jars into $LIBS" >&2
        mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 \
            || { rm -rf "$tmp"; die "mvn could not fetch the Kafka jars"; }
        touch "$tmp/.complete"
        rm -rf "$LIBS"
        mv "$tmp" "$LIBS"
    fi
    flock -u 9
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running_pid() {
    [ -f "$DIR/pid" ] || return 1
    local pid
    pid="$(cat "$DIR/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    # the pid must still be our broker (not a recycled pid)
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $DIR/server.properties" || return 1
    echo "$pid"
}

answers() {  # the broker accepts connections and has logged that it started
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 1
    grep -q "Kafka Server started" "$DIR/broker.log" 2>/dev/null
}

write_config() {
    local port="$1" cport="$2"
    cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=16777216
log.retention.hours=24
EOF
    cat >"$DIR/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $DIR/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.apache-server.name = org.apache.kafka.server
logger.apache-server.level = INFO
EOF
}

start() {
    fetch
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    if pid="$(running_pid)"; then
        echo "bootstrap=127.0.0.1:$(cat "$DIR/port")"
        return 0
    fi
    local cp="$LIBS/*"
    if [ ! -f "$DIR/port" ] || [ ! -f "$DIR/data/meta.properties" ]; then
        rm -rf "$DIR/data"
        local port cport
        port="$(free_port)"
        cport="$(free_port)"
        while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
        write_config "$port" "$cport"
        local cluster_id
        cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
        java -cp "$cp" -Dlog4j2.configurationFile="$DIR/log4j2.properties" kafka.tools.StorageTool format \
            --cluster-id="$cluster_id" --config "$DIR/server.properties" >"$DIR/format.log" 2>&1 \
            || { cat "$DIR/format.log" >&2; die "formatting the KRaft storage failed"; }
        echo "$port" >"$DIR/port"
    fi
    local port
    port="$(cat "$DIR/port")"
    : >"$DIR/broker.log"
    # a small heap is plenty for tests; the JVM and the broker stay in the background
    nohup java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$DIR/log4j2.properties" -cp "$cp" \
        kafka.Kafka "$DIR/server.properties" >"$DIR/stdout.log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$DIR/pid"
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$DIR/stdout.log" "$DIR/broker.log" >&2 || true
            die "the broker exited during startup (see $DIR/broker.log)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            kill -9 "$pid" 2>/dev/null || true
            die "the broker did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s (see $DIR/broker.log)"
        fi
        sleep 0.2
    done
    echo "bootstrap=127.0.0.1:$port"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$DIR/pid"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$DIR/pid"
}

status() {
    if running_pid >/dev/null && answers "$(cat "$DIR/port")"; then
        echo "bootstrap=127.0.0.1:$(cat "$DIR/port")"
        return 0
    fi
    echo "kafka.sh: no broker running in $DIR" >&2
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    fetch) fetch ;;
    *) echo "usage: $0 start|stop|status [DIR] | fetch" >&2; exit 2 ;;
esac

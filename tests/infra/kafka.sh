#!/usr/bin/env bash
# A real Apache Kafka 4.x broker (KRaft, one combined broker/controller) on 127.0.0.1, for
# development and tests. Needs java (17+), mvn and openssl; nothing else.
#
#   tests/infra/kafka.sh start  [DIR]   start (or restart on the same ports and data); prints
#                                       bootstrap=HOST:PORT (PLAINTEXT), sasl_ssl=HOST:PORT,
#                                       ssl=HOST:PORT and tls_dir=PATH, one a line
#   tests/infra/kafka.sh stop   [DIR]   stop cleanly (SIGTERM, then SIGKILL after 30 s)
#   tests/infra/kafka.sh status [DIR]   prints the lines start prints and exits 0 when running, else exits 1
#   tests/infra/kafka.sh fetch          fetch the jars only
#
# DIR (default $EXECSCOPE_KAFKA_DIR or ${TMPDIR:-/tmp}/execscope-kafka-$UID) holds the config, the
# KRaft data, the pid, the chosen port and broker.log. The first start picks free ports and formats
# the storage; a later start in the same DIR keeps both, so topics and offsets survive a restart.
#
# Besides PLAINTEXT the broker listens with TLS: SASL_SSL (mechanisms PLAIN, SCRAM-SHA-256 and
# SCRAM-SHA-512) and SSL (no client certificate asked). The first start makes, in DIR/tls, a CA of
# its own (ca.pem, which clients trust), the broker's key and certificate signed by it (for
# 127.0.0.1 and localhost) and a random password (password) for the user named in user; PLAIN
# knows that user from the listener's JAAS entry, SCRAM from the credentials the storage is
# formatted with (kafka-storage format --add-scram). A DIR made by an older kafka.sh (no TLS) is
# formatted afresh.
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

SASL_USER=execscope

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_tools() {
    command -v java >/dev/null || die "java not found (Kafka $VERSION needs Java 17+)"
    command -v mvn >/dev/null || die "mvn not found (used to fetch the Kafka jars from Maven Central)"
}

make_tls() {  # make_tls TLSDIR: a CA, the broker's key and certificate signed by it, a SASL password
    local tls="$1"
    command -v openssl >/dev/null || die "openssl not found (it makes the broker's TLS certificate)"
    rm -rf "$tls"
    mkdir -p "$tls"
    chmod 700 "$tls"
    # the extensions Python's strict verification (3.13+: VERIFY_X509_STRICT) asks for
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=execscope test CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>"$tls/openssl.log" \
        || { cat "$tls/openssl.log" >&2; die "openssl could not make the test CA"; }
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/broker.key" \
        -out "$tls/broker.csr" 2>>"$tls/openssl.log" \
        || { cat "$tls/openssl.log" >&2; die "openssl could not make the broker's key"; }
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >"$tls/broker.ext"
    openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 3650 -extfile "$tls/broker.ext" -out "$tls/broker.crt" 2>>"$tls/openssl.log" \
        || { cat "$tls/openssl.log" >&2; die "openssl could not sign the broker's certificate"; }
    # a PEM key store: the PKCS#8 key, then the certificate chain
    cat "$tls/broker.key" "$tls/broker.crt" "$tls/ca.pem" >"$tls/broker-keystore.pem"
    echo "$SASL_USER" >"$tls/user"
    python3 -c 'import secrets; print(secrets.token_hex(16))' >"$tls/password"
    chmod 600 "$tls"/*.key "$tls/password" "$tls/broker-keystore.pem"
    chmod 644 "$tls/ca.pem" "$tls/user"
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

free_ports() {  # free_ports N: N distinct free ports on 127.0.0.1 (all held while they are chosen)
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

describe() {  # the addresses clients use, one a line
    local sport tport
    echo "bootstrap=127.0.0.1:$(cat "$DIR/port")"
    [ -f "$DIR/secure-ports" ] || return 0  # a broker an older kafka.sh started (no TLS listeners)
    read -r sport tport <"$DIR/secure-ports"
    echo "sasl_ssl=127.0.0.1:$sport"
    echo "ssl=127.0.0.1:$tport"
    echo "tls_dir=$DIR/tls"
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
    local port="$1" cport="$2" sport="$3" tport="$4" tls="$DIR/tls"
    local password
    password="$(cat "$tls/password")"
    cat >"$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$tport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker-keystore.pem
ssl.client.auth=none
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
        describe
        return 0
    fi
    local cp="$LIBS/*"
    if [ ! -f "$DIR/port" ] || [ ! -f "$DIR/data/meta.properties" ] || [ ! -f "$DIR/secure-ports" ] \
        || [ ! -f "$DIR/tls/password" ]; then
        [ -f "$DIR/data/meta.properties" ] \
            && echo "kafka.sh: $DIR has no TLS listeners (made by an older kafka.sh): formatting it afresh" >&2
        rm -rf "$DIR/data"
        make_tls "$DIR/tls"
        local port cport sport tport
        read -r port cport sport tport <<<"$(free_ports 4)"
        write_config "$port" "$cport" "$sport" "$tport"
        local cluster_id password
        cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
        password="$(cat "$DIR/tls/password")"
        java -cp "$cp" -Dlog4j2.configurationFile="$DIR/log4j2.properties" kafka.tools.StorageTool format \
            --cluster-id="$cluster_id" --config "$DIR/server.properties" \
            --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$password]" \
            --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$password]" >"$DIR/format.log" 2>&1 \
            || { cat "$DIR/format.log" >&2; die "formatting the KRaft storage failed"; }
        echo "$sport $tport" >"$DIR/secure-ports"
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
    describe
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
        describe
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

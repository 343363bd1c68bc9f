"""Kafka end to end on the session's real broker and the real embedded engine.

`execscope run --exporter kafka` then `execscope collect` must store exactly what the embedded path
stores, and every fault (collector SIGKILLed mid-batch, store failing, broker restarted while the
program records, poison messages) must end with exact counts: nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.kafka_broker import Broker

pytestmark = [pytest.mark.xdist_group("kafka"), pytest.mark.slow]

EXECSCOPE = [sys.executable, "-m", "execscope"]

WORK = '''
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def classify(x):
    if x % 3 == 0:
        return "fizz"
    elif x % 5 == 0:
        return "buzz"
    return str(x)


def job(n):
    label = [classify(i) for i in range(n)]
    return label, fib(n % 12)
'''

MAIN = '''
import multiprocessing as mp
import os
import sys
import time

from kapp.work import job


def main(calls, pause, fork, wait_for=None):
    for i in range(calls):
        while wait_for and i == calls - 1 and not os.path.exists(wait_for):
            time.sleep(0.05)  # the last call waits for the test's go (the broker is back)
        job(i % 20)
        if pause:
            time.sleep(pause)
    if fork:
        with mp.get_context("fork").Pool(2) as pool:
            pool.map(job, [5, 6])


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "fork", sys.argv[4] if len(sys.argv) > 4 else None)
'''


def fib_calls(k: int) -> int:
    a, b = 1, 1  # calls(k) = 2 * F(k + 1) - 1
    for _ in range(k):
        a, b = b, a + b
    return 2 * a - 1


def expected_spans(calls: int, fork: bool = False, level: str = "functions") -> int:
    """Spans of ``kapp.main``: one per call of job/classify/fib (+ the module's import span above
    level ``functions``)."""
    ns = [i % 20 for i in range(calls)] + ([5, 6] if fork else [])
    return (level != "functions") + sum(1 + n + fib_calls(n % 12) for n in ns)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "kapp").mkdir()
    (tmp_path / "kapp" / "__init__.py").write_text("")
    (tmp_path / "kapp" / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "kapp" / "main.py").write_text(textwrap.dedent(MAIN))
    return tmp_path


def cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 240
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EXECSCOPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(cwd), **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def sql(query: str, cwd: Path, store: str) -> list[dict]:
    return json.loads(cli("sql", query, "--store", store, "--format", "json", cwd=cwd).stdout)


def record_to_kafka(app: Path, broker: Broker, topic: str, calls: int, pause: float = 0.0, fork: bool = False,
                    level: str = "functions") -> subprocess.CompletedProcess[str]:
    return cli("run", "--adaptive", "0",
               "--exporter", "kafka", "--kafka", broker.bootstrap, "--topic", topic, "--include", "kapp.work",
               "--level", level, "--", sys.executable, "-m", "kapp.main", str(calls), str(pause),
               "fork" if fork else "-", cwd=app)


def collect(app: Path, broker: Broker, topic: str, store: str, *extra: str, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return cli("collect", "--kafka", broker.bootstrap, "--topic", topic, "--group", f"g-{topic}", "--store", store,
               "--exit-when-idle", "2", "--stats", *extra, cwd=app, check=check, env=env)


def counts(app: Path, store: str) -> tuple[int, int, int]:
    row = sql("SELECT (SELECT count() FROM otel_traces) AS spans, (SELECT uniqExact(SpanId) FROM otel_traces) AS ids, "
              "(SELECT count() FROM execscope_events) AS events", app, store)[0]
    return int(row["spans"]), int(row["ids"]), int(row["events"])


CANONICAL = """
SELECT c.SpanName AS name, c.NodeId AS node, c.StatusCode AS status, c.ServiceName AS service,
       c.ScopeName AS scope,
       toString(mapFilter((k, v) -> k NOT IN ('execscope.seq', 'execscope.seq.end', 'execscope.child_ns'),
                          c.SpanAttributes)) AS attrs,
       toString(c.Events.Name) AS events,
       toString(arrayMap(a -> mapFilter((k, v) -> k != 'execscope.seq', a), c.Events.Attributes)) AS event_attrs,
       p.SpanName AS parent, c.ResourceAttributes['telemetry.sdk.name'] AS sdk
FROM otel_traces AS c LEFT JOIN otel_traces AS p ON c.ParentSpanId = p.SpanId AND c.TraceId = p.TraceId
ORDER BY name, node, attrs, events, event_attrs, parent
"""


def test_kafka_path_stores_exactly_what_the_embedded_path_stores(app: Path, kafka_broker: Broker, topic: str,
                                                                 new_store) -> None:
    """`execscope collect` into an embedded store and into a server store (``new_store``) stores what
    `execscope run` stores in an embedded one."""
    embedded = f"chdb://{app / 'embedded'}"
    cli("run", "--adaptive", "0",
        "--include", "kapp.work", "--level", "branches", "--store", embedded, "--", sys.executable, "-m",
        "kapp.main", "40", "0", "fork", cwd=app)
    record_to_kafka(app, kafka_broker, topic, 40, fork=True, level="branches")
    via_kafka = new_store("via-kafka")
    stats = json.loads(collect(app, kafka_broker, topic, via_kafka).stdout)
    n = expected_spans(40, fork=True, level="branches")
    assert (stats["spans"], stats["dead_letters"], stats["total_lag"]) == (n, 0, 0), stats
    assert counts(app, via_kafka) == counts(app, embedded)
    assert counts(app, via_kafka)[:2] == (n, n)
    assert sql(CANONICAL, app, via_kafka) == sql(CANONICAL, app, embedded)
    nodes = "SELECT node_id, code_version, kind, qualname FROM cpg_nodes FINAL ORDER BY node_id, code_version"
    assert sql(nodes, app, via_kafka) == sql(nodes, app, embedded)
    # messages are keyed by trace id hex, one trace per message, many spans in a message
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    messages = list(consumer)
    consumer.close()
    assert messages
    for m in messages:
        request = ExportTraceServiceRequest.FromString(m.value)
        ids = {s.trace_id.hex() for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans}
        assert ids == {m.key.decode()}
    assert max(sum(len(ss.spans) for rs in ExportTraceServiceRequest.FromString(m.value).resource_spans
                   for ss in rs.scope_spans) for m in messages) > 100


def test_collector_killed_mid_batch_and_restarted(app: Path, kafka_broker: Broker, topic: str) -> None:
    record_to_kafka(app, kafka_broker, topic, 120)
    store = f"chdb://{app / 'db'}"
    config = app / "small-batches.toml"
    config.write_text("[batch]\nmax_messages = 7\nmax_wait_ms = 100\n")
    args = ("--processors", str(config), "--instance-id", "collector-1")
    # SIGKILL right after the 3rd insert, before its offsets are committed
    killed = collect(app, kafka_broker, topic, store, *args, check=False,
                     env={"EXECSCOPE_COLLECT_FAULT": "kill-after-insert:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # then SIGKILL from outside while it works through the backlog, wherever it is
    proc = subprocess.Popen([*EXECSCOPE, "collect", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--group",
                             f"g-{topic}", "--store", store, *args], cwd=app, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(app)})
    time.sleep(4.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stats = json.loads(collect(app, kafka_broker, topic, store, *args).stdout)
    assert stats["total_lag"] == 0
    n = expected_spans(120)
    assert counts(app, store)[:2] == (n, n)


def immutable(path: str, on: bool) -> None:
    """Make a directory refuse new entries (the engine cannot create parts: inserts fail)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if on else "-i", path], check=True)
    else:
        os.chmod(path, 0o555 if on else 0o755)


def test_store_failing_for_a_while(app: Path, kafka_broker: Broker, topic: str) -> None:
    if os.geteuid() == 0 and shutil.which("chattr") is None:
        pytest.fail("running as root without chattr: cannot make the store fail (install e2fsprogs)")
    store = f"chdb://{app / 'db'}"
    data = sql("SELECT data_paths[1] AS p FROM system.tables WHERE name = 'otel_traces'", app, store)[0]["p"]
    record_to_kafka(app, kafka_broker, topic, 60)
    immutable(data, True)
    try:
        proc = subprocess.Popen([*EXECSCOPE, "collect", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--group",
                                 f"g-{topic}", "--store", store, "--exit-when-idle", "2", "--stats"], cwd=app,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(app)})
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        seen = 0  # --stats ticks while the collector retries with backoff: the errors show meanwhile
        while time.monotonic() < deadline and proc.poll() is None and seen < 2:
            errors = [json.loads(x)["store_errors"] for x in list(lines) if x.startswith("{")]
            seen = errors[-1] if errors else 0
            time.sleep(0.5)
        assert proc.poll() is None, lines
        assert seen >= 2, lines
    finally:
        immutable(data, False)
    out, _ = proc.communicate(timeout=120)
    reader.join(10)
    err = "".join(lines)
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert stats["store_errors"] >= 2, stats
    n = expected_spans(60)
    assert stats["spans"] == n
    assert counts(app, store)[:2] == (n, n)


def test_broker_restarted_while_the_program_records(app: Path, kafka_broker: Broker, topic: str) -> None:
    kafka_broker.claim_for_restart()  # no other test uses it while it is down
    calls = 80
    go = app / "broker-is-back"  # the program ends only once the broker answers again: on a loaded
    # machine a restart can outlast the exit flush's bounded wait, which is not what this test checks
    recorder = subprocess.Popen(
        [*EXECSCOPE, "run", "--adaptive", "0",
         "--exporter", "kafka", "--kafka", kafka_broker.bootstrap, "--topic", topic,
         "--include", "kapp.work", "--", sys.executable, "-m", "kapp.main", str(calls), "0.1", "-", str(go)],
        cwd=app, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(app), "EXECSCOPE_KAFKA_EXIT_FLUSH_S": "240"})
    try:
        time.sleep(2.0)
        kafka_broker.stop()
        assert recorder.poll() is None  # the program goes on while the broker is down
        time.sleep(3.0)
    finally:
        kafka_broker.start()
        go.touch()
    _, err = recorder.communicate(timeout=300)
    assert recorder.returncode == 0, err
    assert "not delivered" not in err, err
    store = f"chdb://{app / 'db'}"
    stats = json.loads(collect(app, kafka_broker, topic, store).stdout)
    n = expected_spans(calls)
    assert stats["spans"] == n
    assert counts(app, store)[:2] == (n, n)


def test_poison_messages_go_to_the_dead_letter_topic(app: Path, kafka_broker: Broker, topic: str) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    logs = ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[
        LogRecord(time_unix_nano=1, severity_text="INFO")])])]).SerializeToString()
    record_to_kafka(app, kafka_broker, f"{topic}-sample", 1)
    sample = KafkaConsumer(f"{topic}-sample", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=3000)
    valid = next(iter(sample)).value
    sample.close()
    poison = {b"not protobuf at all \xff\xfe": "not an OTLP", valid[: len(valid) // 2]: "not an OTLP",
              logs: "wrong schema"}
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    for i, value in enumerate(poison):  # poison first, in every partition, then the program's spans
        for partition in range(4):
            producer.send(topic, value=value, key=b"poison-%d" % i, partition=partition)
    producer.flush()
    record_to_kafka(app, kafka_broker, topic, 30)
    producer.send(topic, value=b"\x0a\xff\x01trailing junk", key=b"poison-last")  # and after them
    producer.flush()
    producer.close()
    store = f"chdb://{app / 'db'}"
    stats = json.loads(collect(app, kafka_broker, topic, store).stdout)
    assert stats["dead_letters"] == 13
    dlq = KafkaConsumer(f"{topic}.dlq", bootstrap_servers=kafka_broker.bootstrap, auto_offset_reset="earliest",
                        consumer_timeout_ms=3000)
    dead = list(dlq)
    dlq.close()
    assert len(dead) == 13
    reasons = {**poison, b"\x0a\xff\x01trailing junk": "not an OTLP"}
    for m in dead:
        headers = dict(m.headers)
        assert reasons[m.value] in headers["execscope.error"].decode()
        assert headers["execscope.source"].decode().startswith(f"{topic}:")
    n = expected_spans(30)
    assert stats["spans"] == n
    assert counts(app, store)[:2] == (n, n)
    # what --stats printed is also stored over time for the Pipeline Health dashboard
    stored = sql("SELECT Spans AS spans, DeadLetters AS dead, TotalLag AS lag, (SELECT count() FROM "
                 "execscope_collector_stats) AS rows FROM execscope_collector_stats "
                 "ORDER BY Timestamp DESC, Spans DESC LIMIT 1", app, store)
    assert stored == [{"spans": n, "dead": 13, "lag": 0, "rows": stored[0]["rows"]}] and stored[0]["rows"] >= 1


def test_processor_chain_from_a_file(app: Path, kafka_broker: Broker, topic: str) -> None:
    (app / "kapp" / "secret.py").write_text(textwrap.dedent('''
        def login(user, password, note):
            return len(password)
    '''))
    (app / "kapp" / "main.py").write_text(textwrap.dedent('''
        from kapp.secret import login
        login("ann", "hunter2", "x" * 300)
    '''))
    config = app / "chain.json"
    config.write_text(json.dumps({"processors": [
        {"name": "enrich", "attributes": {"deployment.environment": "test"}},
        {"name": "redact", "keys": ["user"]},
        {"name": "attribute_limits", "max_value_length": 50},
    ]}))
    cli("run", "--adaptive", "0",
        "--exporter", "kafka", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--include", "kapp.secret",
        "--", sys.executable, "-m", "kapp.main", cwd=app)
    store = f"chdb://{app / 'db'}"
    collect(app, kafka_broker, topic, store, "--processors", str(config))
    row = sql("SELECT SpanAttributes AS a FROM otel_traces WHERE SpanName = 'kapp.secret.login'", app, store)[0]["a"]
    assert row["execscope.arg.user"] == "<redacted>"            # the chain's redaction
    assert row["execscope.arg.password"] == "<redacted>"        # default secret names
    assert len(row["execscope.arg.note"]) == 50 and row["execscope.arg.note"].endswith("...")
    assert row["deployment.environment"] == "test"
    assert row["execscope.node.kind"] == "function" and row["execscope.node.qualname"] == "login"
    # the spool drain of `execscope run` goes through the same chain
    spool_store = f"chdb://{app / 'spool-db'}"
    cli("run", "--include", "kapp.secret", "--store", spool_store, "--processors", str(config), "--",
        sys.executable, "-m", "kapp.main", cwd=app)
    login = "SELECT SpanAttributes AS a FROM otel_traces WHERE SpanName = 'kapp.secret.login'"
    row = sql(login, app, spool_store)[0]["a"]
    assert row["execscope.arg.user"] == "<redacted>" and len(row["execscope.arg.note"]) == 50

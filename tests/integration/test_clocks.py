"""Three processes on different clocks, talking over HTTP and through the real Kafka broker.

The client (A, the host's clock) starts an HTTP server (B, its clock 4 s ahead) and a Kafka worker
(C, 3 s behind) under libfaketime (Debian's ``faketime``; tests/infra/faketime.sh installs it when
missing), all three recorded by one ``execscope run``. Each round A fetches from B (``requests`` and
WSGI instrumentations; B's response carries its clock through the response propagator, as Flask's
or Django's instrumentation injects it) and sends a Kafka request that C answers with a reply (the
trace context in the record headers, through the global propagator as a Kafka instrumentation does).

Done when: in the cinema every send precedes its receive and each process's own order is exact
(although the wall clocks order them the other way), and the clock-skew estimates (``execscope
query clock-skew``) and the process registry (``execscope query processes``) are within 50 ms of
the shifts applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.kafka_broker import Broker
from tests.integration.test_run_cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("kafka")]

FAKETIME_SH = Path(__file__).resolve().parents[1] / "infra" / "faketime.sh"
ROUNDS = 4
SHIFT_B_S, SHIFT_C_S = 4, -3

INIT = '''
import os

if os.environ.get("FAKETIME"):  # libfaketime 0.9.10 fails clock_nanosleep(TIMER_ABSTIME) on the real
    import threading            # monotonic clock (EINVAL): time.sleep waits on an event instead
    import time

    def _sleep(seconds, _wait=threading.Event().wait):
        _wait(max(0.0, seconds))

    time.sleep = _sleep
'''

FLOWS = '''
import os
import time

from opentelemetry import context, propagate

from hlcapp.headers import HEADERS


def fetch(session, port, i):
    return session.get(f"http://127.0.0.1:{port}/r{i}", timeout=60).text


def send_request(producer, topic, i):
    headers = []
    propagate.inject(headers, setter=HEADERS)
    producer.send(topic, value=f"req {i}".encode(), headers=headers).get(timeout=60)


def on_reply(value):
    return value


def await_reply(consumer):
    while True:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                propagate.extract(record.headers, getter=HEADERS)  # the receive: merges C's clock
                return on_reply(record.value.decode())


def handle(path):
    return "hello " + path


def send_reply(producer, topic, value):
    headers = []
    propagate.inject(headers, setter=HEADERS)
    producer.send(topic, value=value.replace("req", "rep").encode(), headers=headers).get(timeout=60)


def on_request(producer, topic, value):
    send_reply(producer, topic, value)
    return value


def rounds(session, port, producer, consumer, topic, n):
    for i in range(n):
        fetch(session, port, i)
        send_request(producer, topic, i)
        await_reply(consumer)
        time.sleep(0.05)
    return n
'''

HEADERS = '''
from opentelemetry.propagators.textmap import Getter, Setter


class KafkaHeaders(Getter, Setter):
    """kafka-python record headers, as a Kafka instrumentation reads and writes them."""

    def get(self, carrier, key):
        found = [v.decode() for k, v in carrier or () if k == key]
        return found or None

    def keys(self, carrier):
        return [k for k, _ in carrier or ()]

    def set(self, carrier, key, value):
        carrier.append((key, value.encode()))


HEADERS = KafkaHeaders()
'''

SERVER = '''
import os
import sys
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware, default_response_propagation_setter

from hlcapp.flows import handle


def app(environ, start_response):
    body = handle(environ["PATH_INFO"]).encode()
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    propagator = get_global_response_propagator()  # what Flask's and Django's instrumentations do
    if propagator:
        propagator.inject(headers, setter=default_response_propagation_setter)
    start_response("200 OK", headers)
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(port_file, stop_file):
    server = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(app), handler_class=Quiet)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(port_file + ".tmp", port_file)
    server.timeout = 0.2
    deadline = time.monotonic() + 900  # a safety net only: the client may take as long as its run (400 s)
    while not os.path.exists(stop_file) and time.monotonic() < deadline:  # until the client is done
        server.handle_request()
    server.server_close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''

WORKER = '''
import os
import sys

from kafka import KafkaConsumer, KafkaProducer
from opentelemetry import context, propagate

from hlcapp.flows import on_request
from hlcapp.headers import HEADERS


def main(bootstrap, requests_topic, replies_topic, n, ready_file):
    consumer = KafkaConsumer(requests_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             fetch_max_wait_ms=100)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer.poll(timeout_ms=100)
    open(ready_file, "w").close()
    done = 0
    while done < n:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                token = context.attach(propagate.extract(record.headers, getter=HEADERS))  # the receive
                try:
                    on_request(producer, replies_topic, record.value.decode())
                finally:
                    context.detach(token)
                done += 1
    producer.flush()
    producer.close()
    consumer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
'''

MAIN = '''
import os
import subprocess
import sys
import time

import requests
from kafka import KafkaConsumer, KafkaProducer
from opentelemetry.instrumentation.requests import RequestsInstrumentor

from hlcapp.flows import rounds


def faked(shift, service):
    env = dict(os.environ)
    env.update(LD_PRELOAD=os.environ["HLC_FAKETIME_LIB"], FAKETIME=shift, FAKETIME_DONT_FAKE_MONOTONIC="1",
               EXECSCOPE_SERVICE=service)
    return env


def wait_for(path, proc):
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not os.path.exists(path):
        raise SystemExit(f"{path} never appeared")


def main(workdir, bootstrap, requests_topic, replies_topic, n, shift_b, shift_c):
    RequestsInstrumentor().instrument()
    port_file, ready = os.path.join(workdir, "port"), os.path.join(workdir, "ready")
    stop = os.path.join(workdir, "stop")
    server = subprocess.Popen([sys.executable, "-m", "hlcapp.server", port_file, stop],
                              env=faked(shift_b, "svc-b"))
    worker = subprocess.Popen([sys.executable, "-m", "hlcapp.worker", bootstrap, requests_topic, replies_topic,
                               str(n), ready], env=faked(shift_c, "svc-c"))
    try:
        consumer = KafkaConsumer(replies_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                 fetch_max_wait_ms=100)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        consumer.poll(timeout_ms=100)
        wait_for(port_file, server)
        wait_for(ready, worker)
        with open(port_file) as f:
            port = int(f.read())
        with requests.Session() as session:
            session.trust_env = False
            try:
                rounds(session, port, producer, consumer, requests_topic, n)
            except Exception:  # say how the other two stand (a server gone silently: its exit code)
                sys.stderr.write(f"hlcapp: rounds failed; server exit {server.poll()}, worker exit {worker.poll()}\\n")
                raise
        producer.close()
        consumer.close()
        open(stop, "w").close()
        return server.wait(timeout=120) or worker.wait(timeout=120)
    finally:
        for child in (server, worker):
            if child.poll() is None:
                child.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]))
'''


def _faketime_lib() -> str:
    proc = subprocess.run(["bash", str(FAKETIME_SH)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"libfaketime unavailable: {proc.stderr.strip()}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def hlcapp(tmp_path: Path) -> Path:
    pkg = tmp_path / "hlcapp"
    pkg.mkdir()
    for name, text in (("__init__", INIT), ("flows", FLOWS), ("headers", HEADERS), ("server", SERVER),
                       ("worker", WORKER), ("main", MAIN)):
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    return tmp_path


def _create_topics(bootstrap: str, *names: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(n, 1, 1) for n in names])
    finally:
        admin.close()


def _named(name: str, cwd: Path, store: str, *params: str) -> list[dict]:
    return json.loads(cli("query", name, *params, "--store", store, "--format", "json", cwd=cwd).stdout)


def test_three_processes_on_shifted_clocks(hlcapp: Path, kafka_broker: Broker, topic: str) -> None:
    lib = _faketime_lib()
    store = f"chdb://{hlcapp / 'db'}"
    requests_topic, replies_topic = f"{topic}-req", f"{topic}-rep"
    _create_topics(kafka_broker.bootstrap, requests_topic, replies_topic)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONPATH=str(hlcapp), HLC_FAKETIME_LIB=lib)
    cli("run", "--store", store, "--service", "svc-a", "--level", "statements", "--include", "hlcapp.flows", "--",
        "python", "-m", "hlcapp.main", str(hlcapp),
        kafka_broker.bootstrap, requests_topic, replies_topic, str(ROUNDS), f"+{SHIFT_B_S}s", f"{SHIFT_C_S}s",
        cwd=hlcapp, env=env, timeout=400)

    from execscope.queries import cinema_views
    from execscope.queries.cinema import open_cinema
    from execscope.queries.named import run_named
    from execscope.storage.store import open_store

    with open_store(store) as db:
        (trace,), = db.query("SELECT TraceId FROM otel_traces WHERE SpanName = 'hlcapp.flows.rounds'").rows
        spans = {row[0]: row[1:] for row in db.query(
            "SELECT SpanId, SpanName, ServiceName, ResourceAttributes['execscope.process.id'], "
            "mapFilter((k, v) -> startsWith(k, 'execscope.arg.'), SpanAttributes), "
            "toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(Timestamp) + Duration "
            "FROM otel_traces WHERE TraceId = {t:String} AND NodeId != ''", parameters={"t": trace}).rows}
        # calls that a receive happened in carry the offset of their end or of their later events
        (own_offsets,), = db.query("SELECT countIf(mapContains(Attributes, 'execscope.hlc.offset')) FROM "
                                   "execscope_events WHERE TraceId = {t:String}", parameters={"t": trace}).rows
        (end_offsets,), = db.query("SELECT countIf(mapContains(SpanAttributes, 'execscope.hlc.end_offset')) FROM "
                                   "otel_traces WHERE TraceId = {t:String}", parameters={"t": trace}).rows
        assert own_offsets > 0 and end_offsets > 0
        film = open_cinema(db, trace)
        assert film.multi == 1
        frames = list(film.frames())
        # the SQL cinema (Grafana) orders the same way, and state-at reads the same state
        keys = ("seq", "kind", "function", "line", "node_id", "span_id")
        rows = cinema_views.FRAMES_AROUND.run(db, {"trace": trace, "seq": 0, "before": 0, "after": len(frames)})
        assert [tuple(r[k] for k in keys) for r in rows.dicts()] == [tuple(f[k] for k in keys) for f in frames]
        for p in range(0, len(frames), max(1, len(frames) // 8)):
            state = run_named(db, "state-at", {"trace": trace, "at": str(p)}).rows
            assert cinema_views.STATE_AT.run(db, {"trace": trace, "seq": p}).rows == state, p

    services = {sp[1] for sp in spans.values()}
    assert services == {"svc-a", "svc-b", "svc-c"}, services
    # each process's own order is exact: its sequence numbers increase along the cinema
    last: dict[str, int] = {}
    for frame in frames:
        process = spans[frame["span_id"]][2]
        seq = frame["_key"][1]
        assert seq > last.get(process, -1), (frame, last.get(process))
        last[process] = seq

    def pos(name: str, kind: str, arg: str, value: str) -> tuple[int, tuple]:
        found = [(f["seq"], spans[f["span_id"]]) for f in frames if f["kind"] == kind
                 and spans[f["span_id"]][0] == f"hlcapp.flows.{name}"
                 and spans[f["span_id"]][3].get(f"execscope.arg.{arg}") == value]
        assert len(found) == 1, (name, kind, value, found)
        return found[0]

    wall_misordered = 0
    for i in range(ROUNDS):
        fetch_call, fetch_span = pos("fetch", "call", "i", str(i))
        fetch_return, _ = pos("fetch", "return", "i", str(i))
        handle_call, handle_span = pos("handle", "call", "path", repr(f"/r{i}"))
        handle_return, _ = pos("handle", "return", "path", repr(f"/r{i}"))
        assert fetch_call < handle_call < handle_return < fetch_return  # request, then response
        send_call, send_span = pos("send_request", "call", "i", str(i))
        receive_call, receive_span = pos("on_request", "call", "value", repr(f"req {i}"))
        reply_call, _ = pos("send_reply", "call", "value", repr(f"req {i}"))
        replied, _ = pos("on_reply", "call", "value", repr(f"rep {i}"))
        assert send_call < receive_call < reply_call < replied  # Kafka request, then reply
        # the wall clocks alone order these the other way: B's handler ends after A's fetch returned,
        # C handles the request before A sent it
        wall_misordered += (handle_span[5] > fetch_span[5]) + (receive_span[4] < send_span[4])
    assert wall_misordered == 2 * ROUNDS

    process_of = {sp[1]: sp[2] for sp in spans.values()}
    skews = {(r["process_a"], r["process_b"]): r
             for r in _named("clock-skew", hlcapp, store, "--param", f"trace={trace}")}
    assert len(skews) == 2, skews  # A-B over HTTP, A-C over Kafka; B and C never talked
    for peer, shift in (("svc-b", SHIFT_B_S), ("svc-c", SHIFT_C_S)):
        a, b = process_of["svc-a"], process_of[peer]
        row = skews.get((a, b)) or skews[(b, a)]
        estimate = row["skew_ms"] if (row["process_a"], row["process_b"]) == (a, b) else -row["skew_ms"]
        assert row["method"] == "round trip" and row["messages_ab"] >= ROUNDS and row["messages_ba"] >= ROUNDS, row
        assert abs(estimate - shift * 1000) < 50, (peer, row)
        assert row["lower_ms"] <= row["skew_ms"] <= row["upper_ms"]

    registry = {r["service"]: r for r in _named("processes", hlcapp, store, "--param", f"trace={trace}")}
    assert set(registry) == {"svc-a", "svc-b", "svc-c"}
    assert registry["svc-a"]["clock_offset_ms"] == 0
    for service, shift in (("svc-b", SHIFT_B_S), ("svc-c", SHIFT_C_S)):
        row = registry[service]
        assert abs(row["clock_offset_ms"] - shift * 1000) < 50, row
        assert row["host"] and int(row["pid"]) > 0 and row["spans"] >= row["calls"] > 0
    # A ran up to ~4 s ahead of its own clock after B's responses; C up to ~7 s after A's requests
    assert registry["svc-c"]["hlc_lead_ms"] > 6000 and registry["svc-a"]["hlc_lead_ms"] > 3000

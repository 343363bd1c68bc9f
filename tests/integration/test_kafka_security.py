"""Secured Kafka transports on the session's real broker: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
over TLS, and TLS alone, with the certificate tests/infra/kafka.sh made from a CA of its own.

`execscope run --exporter kafka` records through the secured listener and `execscope collect` stores
through it, with exact span counts; settings come from flags, the environment and the processors
file. A wrong password and an untrusted certificate are each one clear error: the recorded program
runs on and exits with its own status, the collector exits non-zero, and what was on the topic is
stored in full once the settings are right. The password never reaches the output or the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from execscope.instrumentation.export.kafka_exporter import KafkaSink
from execscope.instrumentation.export.kafka_security import KafkaSecurity
from tests.integration.kafka_broker import Broker

pytestmark = [pytest.mark.xdist_group("kafka"), pytest.mark.slow]

EXECSCOPE = [sys.executable, "-m", "execscope"]
CALLS = 30
EXIT_STATUS = 3  # the program's own

WORK = '''
def settle(env):
    return len(env)


def square(x):
    return x * x


def job(n):
    return sum(square(i) for i in range(n))
'''

MAIN = '''
import os
import sys

from sapp.work import job, settle

settle({k: v for k, v in os.environ.items() if k.startswith("EXECSCOPE_KAFKA")})  # holds the password: redacted
print("total", sum(job(i % 7) for i in range(CALLS)))
sys.exit(STATUS)
'''


def expected_spans() -> int:
    """settle + one job and its squares per call."""
    return 1 + sum(1 + i % 7 for i in range(CALLS))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "sapp").mkdir()
    (tmp_path / "sapp" / "__init__.py").write_text("")
    (tmp_path / "sapp" / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "sapp" / "main.py").write_text(MAIN.replace("CALLS", str(CALLS)).replace("STATUS", str(EXIT_STATUS)))
    return tmp_path


@pytest.fixture
def broker(kafka_broker: Broker) -> Broker:
    kafka_broker.require_tls()
    return kafka_broker


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECSCOPE_KAFKA")}
    return {**env, **extra}


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXECSCOPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**env, "PYTHONPATH": str(cwd)})


def record(app: Path, bootstrap: str, topic: str, flags: list[str], env: dict[str, str]
           ) -> subprocess.CompletedProcess[str]:
    return cli(["run", "--adaptive", "0", "--exporter", "kafka", "--kafka", bootstrap, "--topic", topic, *flags,
                "--include", "sapp.work", "--", sys.executable, "-m", "sapp.main"], app, env)


def collect(app: Path, bootstrap: str, topic: str, store: str, flags: list[str], env: dict[str, str]
            ) -> subprocess.CompletedProcess[str]:
    return cli(["collect", "--kafka", bootstrap, "--topic", topic, "--group", f"g-{topic}", "--store", store,
                "--exit-when-idle", "2", "--stats", *flags], app, env)


def sql(app: Path, store: str, query: str, **params: str) -> list[dict]:
    args = ["sql", query, "--store", store, "--format", "json"]
    for name, value in params.items():
        args += ["-p", f"{name}={value}"]
    proc = cli(args, app, clean_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ok(proc: subprocess.CompletedProcess[str], status: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == status, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def assert_stored_exactly(app: Path, store: str, stats_json: str, password: str) -> None:
    n = expected_spans()
    stats = json.loads(stats_json)
    assert stats["spans"] == n and stats["dead_letters"] == 0 and stats["total_lag"] == 0, stats
    row = sql(app, store, "SELECT count() AS spans, uniqExact(SpanId) AS ids, countIf(NodeId != '') AS named, "
                          "countIf(NodeId IN (SELECT node_id FROM cpg_nodes)) AS joined FROM otel_traces")[0]
    assert (int(row["spans"]), int(row["ids"])) == (n, n), row
    assert int(row["joined"]) == int(row["named"]) == n, row  # node rows came through the secured .cpg topic
    # the recorded environment was captured, with the password redacted by its name
    settle = sql(app, store, "SELECT toString(SpanAttributes) AS a FROM otel_traces WHERE SpanName LIKE '%settle%'")
    assert len(settle) == 1 and "EXECSCOPE_KAFKA_SASL_" in settle[0]["a"], settle
    leaks = sql(app, store, "SELECT count() AS n FROM otel_traces WHERE position(toString(SpanAttributes), {p:String})"
                            " > 0 OR position(toString(ResourceAttributes), {p:String}) > 0 "
                            "OR position(toString(Events.Attributes), {p:String}) > 0", p=password)
    assert int(leaks[0]["n"]) == 0


def test_sasl_plain_over_tls_from_flags_environment_and_processors_file(app: Path, broker: Broker,
                                                                        topic: str) -> None:
    password = broker.sasl_password
    # recording: flags, the password from the environment
    rec = ok(record(app, broker.sasl_ssl, topic,
                    ["--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", broker.sasl_user,
                     "--kafka-ssl-ca-location", str(broker.ca_file)],
                    clean_env(EXECSCOPE_KAFKA_SASL_PASSWORD=password)), EXIT_STATUS)
    assert f"total {sum(sum(i * i for i in range(k % 7)) for k in range(CALLS))}" in rec.stdout
    assert "execscope: cannot record" not in rec.stderr and "spans sent to Kafka" in rec.stderr, rec.stderr
    # collecting: the processors file's [kafka] table, the password from a file
    (app / "secret").write_text(password + "\n")
    config = app / "processors.toml"
    config.write_text(textwrap.dedent(f'''
        [kafka]
        security_protocol = "SASL_SSL"
        sasl_mechanism = "PLAIN"
        sasl_username = "{broker.sasl_user}"
        sasl_password_file = "{app / 'secret'}"
        ssl_ca_location = "{broker.ca_file}"
    '''))
    store = f"chdb://{app / 'db'}"
    log = app / "kafka-client.log"  # kafka-python at DEBUG logs each request: PLAIN's holds the password
    col = ok(collect(app, broker.sasl_ssl, topic, store, ["--processors", str(config)],
                     clean_env(EXECSCOPE_COLLECT_LOG=str(log))))
    for out in (rec.stdout, rec.stderr, col.stdout, col.stderr):
        assert password not in out
    text = log.read_text()
    assert "SaslAuthenticateRequest" in text and "<redacted>" in text and password not in text
    assert_stored_exactly(app, store, col.stdout, password)


def test_sasl_scram_over_tls(app: Path, broker: Broker, topic: str) -> None:
    password = broker.sasl_password
    # recording: SCRAM-SHA-256, everything from the environment (what every recorded process reads)
    env = clean_env(EXECSCOPE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256", EXECSCOPE_KAFKA_SASL_USERNAME=broker.sasl_user,
                    EXECSCOPE_KAFKA_SASL_PASSWORD=password, EXECSCOPE_KAFKA_SSL_CA_LOCATION=str(broker.ca_file))
    rec = ok(record(app, broker.sasl_ssl, topic, [], env), EXIT_STATUS)
    assert "execscope: cannot record" not in rec.stderr, rec.stderr
    # collecting: SCRAM-SHA-512 from flags, the password file named by a flag
    (app / "secret").write_text(password)
    store = f"chdb://{app / 'db'}"
    col = ok(collect(app, broker.sasl_ssl, topic, store,
                     ["--kafka-security-protocol", "sasl_ssl", "--kafka-sasl-mechanism", "SCRAM-SHA-512",
                      "--kafka-sasl-username", broker.sasl_user, "--kafka-sasl-password-file", str(app / "secret"),
                      "--kafka-ssl-ca-location", str(broker.ca_file)], clean_env()))
    for out in (rec.stdout, rec.stderr, col.stdout, col.stderr):
        assert password not in out
    assert_stored_exactly(app, store, col.stdout, password)


def one_line(stderr: str, start: str) -> str:
    """The one diagnostic line starting with ``start`` (no traceback, no second complaint)."""
    lines = [x for x in stderr.splitlines() if x.strip() and "cannot import execscope" not in x]
    matching = [x for x in lines if x.startswith(start)]
    assert len(matching) == 1, stderr
    assert "Traceback" not in stderr and "Unable to bootstrap" not in stderr, stderr
    return matching[0]


def test_wrong_password_is_one_clear_error_and_loses_nothing_that_could_be_sent(app: Path, broker: Broker,
                                                                              topic: str) -> None:
    flags = ["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", broker.sasl_user,
             "--kafka-ssl-ca-location", str(broker.ca_file)]
    wrong = clean_env(EXECSCOPE_KAFKA_SASL_PASSWORD="not-the-password")
    right = clean_env(EXECSCOPE_KAFKA_SASL_PASSWORD=broker.sasl_password)
    started = time.monotonic()
    refused = record(app, broker.sasl_ssl, topic, flags, wrong)
    assert refused.returncode == EXIT_STATUS and "total " in refused.stdout, refused.stderr  # the program ran
    line = one_line(refused.stderr, "execscope: cannot record to Kafka:")
    assert "refused the login of SASL user" in line and "SCRAM-SHA-512" in line, line
    assert "spans sent to Kafka" not in refused.stderr  # run claims nothing it did not do
    assert "not-the-password" not in refused.stderr
    assert time.monotonic() - started < 30  # told as soon as the broker refused, not after the exit flush
    # what the right password records, a collector with the wrong one refuses to read ...
    ok(record(app, broker.sasl_ssl, topic, flags, right), EXIT_STATUS)
    store = f"chdb://{app / 'db'}"
    denied = collect(app, broker.sasl_ssl, topic, store, flags, wrong)
    assert denied.returncode == 1, denied.stderr
    line = one_line(denied.stderr, "Error: ")
    assert "refused the login of SASL user" in line, line
    # ... and the right one stores in full: the refused run committed nothing
    col = ok(collect(app, broker.sasl_ssl, topic, store, flags, right))
    assert json.loads(col.stdout)["spans"] == expected_spans()


def make_ca(directory: Path) -> Path:
    """A CA of the test's own, which never signed the broker's certificate."""
    directory.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=not the broker's CA", "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem")],
                   check=True, capture_output=True)
    return directory / "ca.pem"


def test_untrusted_certificate_is_one_clear_error(app: Path, broker: Broker, topic: str) -> None:
    rogue = make_ca(app / "rogue")
    flags = ["--kafka-ssl-ca-location", str(rogue)]  # SSL listener, protocol SSL implied by the CA file
    refused = record(app, broker.ssl, topic, flags, clean_env())
    assert refused.returncode == EXIT_STATUS and "total " in refused.stdout, refused.stderr
    line = one_line(refused.stderr, "execscope: cannot record to Kafka:")
    assert "TLS certificate is not trusted" in line and str(rogue) in line, line
    assert "spans sent to Kafka" not in refused.stderr
    denied = collect(app, broker.ssl, topic, f"chdb://{app / 'db'}", flags, clean_env())
    assert denied.returncode == 1, denied.stderr
    line = one_line(denied.stderr, "Error: ")
    assert "TLS certificate is not trusted" in line, line
    # the broker's own CA: TLS alone (no SASL) carries every span
    trusted = ["--kafka-ssl-ca-location", str(broker.ca_file)]
    ok(record(app, broker.ssl, topic, trusted, clean_env()), EXIT_STATUS)
    col = ok(collect(app, broker.ssl, topic, f"chdb://{app / 'db2'}", trusted, clean_env()))
    assert json.loads(col.stdout)["spans"] == expected_spans()


def test_refused_sink_says_so_once_and_counts_what_it_drops(broker: Broker, topic: str,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
    security = KafkaSecurity.resolve({"sasl_mechanism": "SCRAM-SHA-256", "sasl_username": broker.sasl_user,
                                      "ssl_ca_location": str(broker.ca_file)},
                                     env={"EXECSCOPE_KAFKA_SASL_PASSWORD": "not-the-password"})
    noted: list[str] = []
    sink = KafkaSink(broker.sasl_ssl, topic, security=security, on_access_error=noted.append)
    started = time.monotonic()
    assert sink.submit(b"k", b"v" * 100, 5)  # queued (never blocks): the sender thread then connects
    # access_error is set first, then the warning is written and the callback called (sender thread)
    while not (sink.access_error and noted) and time.monotonic() - started < 30:
        time.sleep(0.05)
    assert sink.access_error and noted == [sink.access_error]
    assert not sink.submit(b"k", b"v", 7)  # refused from now on, counted
    assert sink.force_flush(1.0)  # nothing left waiting: the program's exit is not held up
    sink.shutdown()
    assert (sink.dropped_messages, sink.dropped_spans, sink.sent_messages) == (2, 12, 0)
    assert sink.report() == ""  # the warning said it all
    err = capfd.readouterr().err
    assert err.count("execscope: cannot record to Kafka:") == 1 and "not-the-password" not in err, err

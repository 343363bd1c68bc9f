"""Secrets stay out of the store through Kafka too: the corpus (secrets_corpus.py) recorded by both
cores at every level with `execscope run --exporter kafka` and stored by `execscope collect` (whose
default redact processor applies the same policy to spans of other SDKs). See test_secrets.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.kafka_broker import Broker
from tests.integration.test_secrets import (
    CORES,
    CORPUS,
    LEVELS,
    assert_found_in_every_position,
    assert_markers_everywhere,
    assert_nothing_stored,
    cli,
    corpus_dir,
    redact_check,
    run_env,
    sql,
)

pytestmark = [pytest.mark.xdist_group("kafka"), pytest.mark.slow]


def record_to_kafka(app: Path, broker: Broker, topic: str, core: str, level: str, patterns: bool) -> None:
    cli("run", "--exporter", "kafka", "--kafka", broker.bootstrap, "--topic", topic, "--include", "secrets_corpus",
        "--level", level, "--adaptive", "0", "--service", f"corpus-{core}-{level}", "--",
        sys.executable, "secrets_corpus.py", cwd=app, env=run_env(core, patterns))


def collect(app: Path, broker: Broker, topic: str, store: str) -> None:
    cli("collect", "--kafka", broker.bootstrap, "--topic", topic, "--group", f"g-{topic}", "--store", store,
        "--exit-when-idle", "2", cwd=app)


def test_through_kafka_nothing_is_stored_and_with_patterns_off_everything_is_found(
        kafka_broker: Broker, topic: str, tmp_path: Path) -> None:
    app = corpus_dir(tmp_path)
    store = f"chdb://{app / 'db'}"
    services = []
    for core in CORES:
        for level in LEVELS:
            record_to_kafka(app, kafka_broker, topic, core, level, patterns=True)
            services.append(f"corpus-{core}-{level}")
    collect(app, kafka_broker, topic, store)
    assert redact_check(app, store) == (0, [])
    assert_markers_everywhere(app, store, services)
    assert_nothing_stored(app, store)

    # value patterns off in the program: its own spans arrive in clear and are found in every
    # position; the other SDK's span is redacted by the collector all the same
    clear_topic, clear_store = topic + "-clear", f"chdb://{app / 'clear-db'}"
    for core in CORES:
        record_to_kafka(app, kafka_broker, clear_topic, core, "statements", patterns=False)
    collect(app, kafka_broker, clear_topic, clear_store)
    code, findings = redact_check(app, clear_store)
    assert code == 1
    assert_found_in_every_position(findings, ("statements",), other_sdk=False)
    other = sql("SELECT SpanName AS n, StatusMessage AS m FROM otel_traces WHERE ScopeName = 'corpus.http.client'",
                app, clear_store)
    assert len(other) == 2 * len(CORPUS) and all("<redacted:" in r["n"] and "<redacted:" in r["m"] for r in other)

"""The collector's processor chain: configuration, entry point discovery, built-in processors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from execscope.collector.otlp_decode import decode_columns
from execscope.collector.processors import (
    AttributeLimitsProcessor,
    ConfigError,
    RedactProcessor,
    SpanBatch,
    build_chain,
    discover,
    load_config,
)


def decoded_batch() -> SpanBatch:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("login", attributes={"user.password": "hunter2", "note": "n" * 100,
                                                           "plain": "ok", "msg": "key=AKIA1234 end"}) as span:
        span.add_event("e", {"auth_token": "abc", "size": 3})
    columns, _ = decode_columns(encode_spans(exporter.get_finished_spans()).SerializeToString())
    return SpanBatch(columns)


def test_redact_by_key_and_value_pattern() -> None:
    batch = RedactProcessor(value_patterns=[r"AKIA\d+"]).process(decoded_batch())
    attrs = batch.column("SpanAttributes")[0]
    assert attrs["user.password"] == "<redacted>" and attrs["plain"] == "ok"
    assert attrs["msg"] == "key=<redacted:custom> end"
    assert batch.column("Events.Attributes")[0][0] == {"auth_token": "<redacted>", "size": "3"}


def test_attribute_limits_bound_values_and_counts() -> None:
    batch = AttributeLimitsProcessor(max_value_length=10, max_attributes=2).process(decoded_batch())
    attrs = batch.column("SpanAttributes")[0]
    assert attrs == {"user.password": "hunter2", "note": "nnnnnnn...", "execscope.dropped_attributes": "2"}
    with pytest.raises(ConfigError):
        AttributeLimitsProcessor(max_value_length=1)


def test_chain_from_toml_runs_processors_in_order(tmp_path: Path) -> None:
    path = tmp_path / "chain.toml"
    path.write_text('[batch]\nmax_messages = 9\n\n[[processors]]\nname = "attribute_limits"\nmax_value_length = 5\n\n'
                    '[[processors]]\nname = "redact"\nkeys = ["note"]\n')
    chain = build_chain(load_config(path))
    assert chain.batch.max_messages == 9 and not chain.native_ok
    attrs = chain.process(decoded_batch()).column("SpanAttributes")[0]
    assert attrs["note"] == "<redacted>" and attrs["plain"] == "ok" and attrs["user.password"] == "<redacted>"
    assert build_chain({}).native_ok  # no processors: the engine may parse OTLP itself


def test_configuration_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown processor 'nope'"):
        build_chain({"processors": [{"name": "nope"}]})
    with pytest.raises(ConfigError, match="processor 'redact'"):
        build_chain({"processors": [{"name": "redact", "colour": "red"}]})
    with pytest.raises(ConfigError, match="unknown processor config keys"):
        build_chain({"exporters": []})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        load_config(bad)
    (tmp_path / "ok.json").write_text(json.dumps({"batch": {"max_wait_ms": 5}}))
    assert build_chain(load_config(tmp_path / "ok.json")).batch.max_wait_ms == 5


def test_entry_points_are_discovered_and_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="execscope.processors")}
    assert {"enrich", "redact", "attribute_limits"} <= names  # registered by the distribution
    monkeypatch.setenv("EXECSCOPE_DISABLED_PROCESSORS", "redact, enrich")
    assert set(discover()) == {"attribute_limits"}
    with pytest.raises(ConfigError, match="unknown processor 'redact'"):
        build_chain({"processors": [{"name": "redact"}]})

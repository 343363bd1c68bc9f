"""The collector's processor chain: decode -> enrich -> redact -> attribute limits -> batch.

A chain is configured in a file (TOML or JSON; the format follows the extension)::

    [batch]
    max_messages = 5000      # per partition (Kafka) before an insert
    max_bytes = 33554432
    max_wait_ms = 1000

    [[processors]]
    name = "redact"          # an entry point name in the group ``execscope.processors``
    keys = ["ssn"]           # added to the secrets policy's names (password, token, api_key, ...)
    rules = [{kind = "acme-token", regex = "acme_[0-9a-f]{32}"}]

    [[processors]]
    name = "attribute_limits"
    max_value_length = 4096

    [kafka]                  # SASL/TLS of the Kafka clients, not of the chain (see export.kafka_security)
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_username = "alice"
    sasl_password_file = "/run/secrets/kafka"
    ssl_ca_location = "/etc/kafka/ca.pem"

Decoding (OTLP protobuf to ``otel_traces`` columns, :mod:`.otlp_decode`) and batching (the
``[batch]`` table) are the fixed ends of the chain; the ``processors`` in between run in the order
given on each decoded batch. Processors are found through the entry point group
``execscope.processors`` (execscope's own are registered there too); ``EXECSCOPE_DISABLED_PROCESSORS``
(comma-separated names) turns named ones off. A chain without processors lets the embedded engine
parse OTLP itself (the fast path); any processor means decoding in Python, except for Kafka batches
every processor lets through (``native_ok_for``: the default ``redact`` of ``execscope collect``
lets execscope's own spans through, redacted when captured).

Both sources use the chain: ``execscope collect`` (Kafka) and the spool drain of ``execscope run``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from execscope.collector.columns import TRACE_COLUMNS

ENTRY_POINT_GROUP = "execscope.processors"
ENV_DISABLED = "EXECSCOPE_DISABLED_PROCESSORS"
COL = {name: i for i, name in enumerate(TRACE_COLUMNS)}


class ConfigError(ValueError):
    """The chain configuration is invalid (unknown processor, bad option)."""


@dataclass
class SpanBatch:
    """Decoded spans, columnar: ``columns[i]`` holds column ``TRACE_COLUMNS[i]`` of every span."""

    columns: list[list[Any]]

    def __len__(self) -> int:
        return len(self.columns[0])

    def column(self, name: str) -> list[Any]:
        return self.columns[COL[name]]


@runtime_checkable
class Processor(Protocol):
    """One step of the chain. Built by its entry point as ``factory(**options)``.

    ``process`` is called on the collector's thread with a batch it may change in place or replace;
    it must not keep references to the batch. Raising stops the collector with the error before
    anything of the batch is committed (a restart replays it): a processor should not raise on
    unexpected data."""

    name: str

    def process(self, batch: SpanBatch) -> SpanBatch: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class BatchConfig:
    max_messages: int = 5000
    max_bytes: int = 32 << 20
    max_wait_ms: int = 1000


@dataclass
class ProcessorChain:
    processors: list[Processor] = field(default_factory=list)
    batch: BatchConfig = BatchConfig()

    @property
    def native_ok(self) -> bool:
        """True when nothing needs Python-decoded columns (the engine may parse OTLP itself)."""
        return not self.processors

    def native_ok_for(self, scopes: set[str]) -> bool:
        """True when a batch whose spans come from instrumentation ``scopes`` needs no processor (each
        processor says so through its own ``native_ok_for``, e.g. a redaction that trusts them)."""
        return all(getattr(p, "native_ok_for", lambda _s: False)(scopes) for p in self.processors)

    def process(self, batch: SpanBatch) -> SpanBatch:
        for processor in self.processors:
            batch = processor.process(batch)
        return batch

    def shutdown(self) -> None:
        for processor in self.processors:
            try:
                processor.shutdown()
            except Exception:
                pass


# -- built-in processors -------------------------------------------------------------------------

class RedactProcessor:
    """The secrets policy of capture (:mod:`execscope.instrumentation.capture.redaction`) applied to
    decoded spans, so that spans other SDKs recorded (through Kafka, or the stock collector's Kafka
    exporter) keep the store's promise too: span, event, link and resource attribute values (by key
    name, ``<redacted>``, and by value pattern, ``<redacted:KIND>``), span names and status messages.

    Options (the ``redact`` entry of a processors file; the same entry, handed to the recorded
    program by ``execscope run --processors FILE``, extends capture's policy too):
    ``keys`` more secret names (case-insensitive substrings) added to the policy's, which
    ``defaults = false`` leaves out; ``patterns`` regexes over the key; ``rules`` more value rules
    (tables of ``kind``, ``regex``, optional ``triggers``); ``value_patterns`` regexes hidden as
    ``<redacted:custom>``; ``disable`` kinds left alone; ``scan_values = false`` turns value patterns
    off; ``trust_scopes`` instrumentation scopes whose spans are left as they are (captured redacted by
    the same policy: ``execscope collect`` adds this processor with ``["execscope"]`` when the chain
    has none, so execscope's own batches keep the engine's fast path). The collector's
    ``EXECSCOPE_REDACT_*`` environment applies as in capture."""

    name = "redact"

    def __init__(self, keys: Sequence[str] = (), patterns: Sequence[str] = (),
                 value_patterns: Sequence[str] = (), defaults: bool = True, rules: Sequence[Mapping[str, Any]] = (),
                 disable: Sequence[str] = (), scan_values: bool = True, trust_scopes: Sequence[str] = ()) -> None:
        from execscope.instrumentation.capture import redaction

        try:
            extra = redaction.options_from_redact_entry({"rules": list(rules), "value_patterns": list(value_patterns)})
            for p in patterns:
                re.compile(p)
        except (re.error, KeyError, TypeError) as exc:
            raise ConfigError(f"redact: {exc}") from exc
        base = redaction.policy_from(names=[str(k) for k in keys], rules=extra["rules"],
                                     disable=[str(k) for k in disable], patterns=None if scan_values else False)
        self.policy = redaction.Policy(base.rules, base.extra_names, base.patterns, base.disabled,
                                       redaction.DEFAULT_NAMES if defaults else "", tuple(patterns))
        self.trust_scopes = frozenset(str(s) for s in trust_scopes)
        self._resources: dict[int, Any] = {}

    def native_ok_for(self, scopes: set[str]) -> bool:
        """True when every span of a batch comes from a trusted scope (nothing to do here)."""
        return bool(scopes) and scopes <= self.trust_scopes

    def _attrs(self, attrs: dict[str, str]) -> dict[str, str]:
        return self.policy.redact_attributes(attrs)  # type: ignore[return-value]

    def process(self, batch: SpanBatch) -> SpanBatch:
        policy = self.policy
        redact = policy.redact_text
        resources: dict[int, Any] = {}
        scopes = batch.column("ScopeName")
        names, status = batch.column("SpanName"), batch.column("StatusMessage")
        span_attrs, res_attrs = batch.column("SpanAttributes"), batch.column("ResourceAttributes")
        ev_attrs, link_attrs = batch.column("Events.Attributes"), batch.column("Links.Attributes")
        trusted = self.trust_scopes
        for i in range(len(names)):
            res = res_attrs[i]  # one resource is shared by many spans: redacted once
            key = id(res)
            done = resources.get(key)
            if done is None or done[0] is not res:
                done = resources[key] = (res, self._attrs(res))
            res_attrs[i] = done[1]
            if scopes[i] in trusted:
                continue
            names[i] = redact(names[i])
            if status[i]:
                status[i] = redact(status[i])
            span_attrs[i] = self._attrs(span_attrs[i])
            if ev_attrs[i]:
                ev_attrs[i] = [self._attrs(a) for a in ev_attrs[i]]
            if link_attrs[i]:
                link_attrs[i] = [self._attrs(a) for a in link_attrs[i]]
        return batch

    def shutdown(self) -> None:
        pass


class AttributeLimitsProcessor:
    """Bounds attribute values to ``max_value_length`` characters (a cut value ends with ``...``)
    and spans to ``max_attributes`` attributes (extra keys dropped, counted in
    ``execscope.dropped_attributes``); event attributes get the same value bound."""

    name = "attribute_limits"

    def __init__(self, max_value_length: int = 4096, max_attributes: int = 512) -> None:
        if max_value_length < 4 or max_attributes < 1:
            raise ConfigError("attribute_limits: max_value_length >= 4 and max_attributes >= 1")
        self.max_value_length = max_value_length
        self.max_attributes = max_attributes

    def _bound(self, attrs: dict[str, str]) -> dict[str, str]:
        n = self.max_value_length
        if len(attrs) > self.max_attributes:
            kept = dict(list(attrs.items())[: self.max_attributes])
            kept["execscope.dropped_attributes"] = str(len(attrs) - self.max_attributes)
            attrs = kept
        if any(len(v) > n for v in attrs.values()):
            attrs = {k: (v if len(v) <= n else v[: n - 3] + "...") for k, v in attrs.items()}
        return attrs

    def process(self, batch: SpanBatch) -> SpanBatch:
        col = batch.column("SpanAttributes")
        col[:] = [self._bound(a) for a in col]
        col = batch.column("Events.Attributes")
        col[:] = [[self._bound(a) for a in per_span] if per_span else per_span for per_span in col]
        return batch

    def shutdown(self) -> None:
        pass


class EnrichProcessor:
    """Node/CPG enrichment: adds ``execscope.node.kind`` and ``execscope.node.qualname`` (from
    ``cpg_nodes``, looked up by ``execscope.node_id`` + ``execscope.code_version``) to every span
    that names a node, and ``attributes`` (a fixed mapping) to every span.

    The store is handed in by the collector (:meth:`bind_store`); node rows are cached per code
    version and looked up once per version."""

    name = "enrich"

    def __init__(self, attributes: Mapping[str, str] | None = None, cpg: bool = True) -> None:
        self.attributes = {str(k): str(v) for k, v in (attributes or {}).items()}
        self.cpg = cpg
        self._store: Any = None
        self._nodes: dict[str, dict[str, tuple[str, str]]] = {}

    def bind_store(self, store: Any) -> None:
        self._store = store

    def _version(self, version: str) -> dict[str, tuple[str, str]]:
        nodes = self._nodes.get(version)
        if nodes is None:
            nodes = {}
            if self._store is not None:
                try:
                    rows = self._store.query(
                        "SELECT node_id, kind, qualname FROM cpg_nodes WHERE code_version = {v:String}",
                        parameters={"v": version}).rows
                    nodes = {r[0]: (r[1], r[2]) for r in rows}
                except Exception:
                    return {}  # not cached: looked up again with the next batch
            if nodes:
                self._nodes[version] = nodes
        return nodes

    def process(self, batch: SpanBatch) -> SpanBatch:
        col = batch.column("SpanAttributes")
        for i, attrs in enumerate(col):
            extra = dict(self.attributes)
            node_id = attrs.get("execscope.node_id")
            if self.cpg and node_id:
                found = self._version(attrs.get("execscope.code_version", "")).get(node_id)
                if found:
                    extra["execscope.node.kind"], extra["execscope.node.qualname"] = found
            if extra:
                col[i] = {**attrs, **extra}
        return batch

    def shutdown(self) -> None:
        self._nodes.clear()


BUILTIN: dict[str, Any] = {
    "redact": RedactProcessor,
    "attribute_limits": AttributeLimitsProcessor,
    "enrich": EnrichProcessor,
}


def discover() -> dict[str, Any]:
    """Processor factories by name: the entry point group ``execscope.processors`` (execscope's own
    included), minus those named in ``EXECSCOPE_DISABLED_PROCESSORS``. A plugin that fails to load
    is reported on stderr and left out."""
    from importlib.metadata import entry_points

    found: dict[str, Any] = dict(BUILTIN)  # also when the distribution's metadata is not installed
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:
            sys.stderr.write(f"execscope: processor plugin {ep.name!r} failed to load: {exc}\n")
    disabled = {n.strip() for n in os.environ.get(ENV_DISABLED, "").split(",") if n.strip()}
    return {name: factory for name, factory in found.items() if name not in disabled}


def load_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read processor config {p}: {exc.strerror}") from exc
    try:
        if p.suffix == ".json":
            doc = json.loads(text)
        else:
            import tomllib

            doc = tomllib.loads(text.decode())
    except Exception as exc:
        raise ConfigError(f"processor config {p}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"processor config {p}: expected a table/object at the top")
    return doc


def build_chain(config: Mapping[str, Any] | None = None, store: Any = None,
                default_redact: bool = False) -> ProcessorChain:
    """A chain from a parsed configuration (see the module doc); raises ConfigError. With
    ``default_redact`` (``execscope collect``), a chain without a ``redact`` processor gets one first,
    trusting execscope's own spans (see :class:`RedactProcessor`), unless ``redact`` is disabled."""
    config = config or {}
    unknown = set(config) - {"processors", "batch", "kafka"}  # [kafka]: the clients' SASL/TLS settings
    if unknown:
        raise ConfigError(f"unknown processor config keys: {sorted(unknown)}")
    try:
        batch = BatchConfig(**config.get("batch", {}))
    except TypeError as exc:
        raise ConfigError(f"[batch]: {exc}") from exc
    factories = discover()
    processors: list[Processor] = []
    for entry in config.get("processors", []):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigError(f"each processor needs a name: {entry!r}")
        options = {k: v for k, v in entry.items() if k != "name"}
        name = entry["name"]
        factory = factories.get(name)
        if factory is None:
            raise ConfigError(f"unknown processor {name!r} (known: {', '.join(sorted(factories))})")
        try:
            processor = factory(**options)
        except TypeError as exc:
            raise ConfigError(f"processor {name!r}: {exc}") from exc
        if store is not None and hasattr(processor, "bind_store"):
            processor.bind_store(store)
        processors.append(processor)
    if default_redact and "redact" in factories and not any(getattr(p, "name", "") == "redact" for p in processors):
        processors.insert(0, factories["redact"](trust_scopes=["execscope"]))
    return ProcessorChain(processors, batch)

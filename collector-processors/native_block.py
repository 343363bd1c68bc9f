"""Native blocks: OTLP requests converted to ClickHouse's Native format in C, inserted by the engine.

The fast path of the embedded store. :func:`convert` hands serialized ``ExportTraceServiceRequest``
payloads to the C converter (``_otlp_native.c``), which writes one Native block with exactly the rows
:mod:`.otlp_decode` would give, MATERIALIZED columns (:data:`.native_ingest.DERIVED`) included;
:func:`ingest` inserts a block file into ``otel_traces`` with every view (measured on 2 cores: about
3x the engine parsing the nested protobuf itself, :mod:`.native_ingest`; ``tests/benchmarks/bench_store.py``).

Optional like the capture accelerator: without a C compiler at install time the package still works
and the sources fall back to :mod:`.native_ingest`; :data:`REASON` says why (logged once as
``execscope.collector``). ``EXECSCOPE_NATIVE_BLOCKS=0`` turns it off.

Contract: :func:`convert` raises ValueError (and writes nothing) for any payload it does not take
exactly as the Python decoder would; the caller then goes payload by payload through the Python
decoder, which stores it or names the poison. An insert is idempotent under its deduplication token,
as every insert of the collector is.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from execscope.storage.migrations import INSERT_INDEX_SETTINGS
from execscope.storage.store import Store

ENV = "EXECSCOPE_NATIVE_BLOCKS"


def _load() -> tuple[Any, str]:
    if os.environ.get(ENV, "1").lower() in ("0", "false", "no", "off"):
        return None, f"turned off by {ENV}"
    try:
        from execscope.collector import _otlp_native
    except ImportError as exc:  # not built (no C compiler at install time) or built for another Python
        return None, f"OTLP -> Native converter unavailable ({exc}): the engine parses the protobuf itself"
    return _otlp_native, "OTLP -> Native converter loaded"


CONVERTER, REASON = _load()
AVAILABLE = CONVERTER is not None
logging.getLogger("execscope.collector").info("native blocks: %s", REASON)

# (name, type) of each column of a block, in order (the C module's COLUMNS): the table's own types,
# LowCardinality included (interned in C, one dictionary per column and block: the engine takes them
# as they are rather than hashing every key of every map, about 20% of the insert).
COLUMNS: tuple[tuple[str, str], ...] = tuple(CONVERTER.COLUMNS) if CONVERTER is not None else ()
_NAMES = ", ".join(f"`{name}`" for name, _type in COLUMNS)
_STRUCTURE = ", ".join(f"`{name}` {type_}" for name, type_ in COLUMNS)


def insert_sql(dedup_token: str, max_threads: int = 1) -> str:
    """The insert of one block file (``{path:String}``), its settings inline: clickhouse-connect
    applies a command's settings to chDB as a snapshot query, one SET each and one restore each
    (ten engine calls instead of one, measured 5-10 ms per insert)."""
    clause = ", ".join(f"{name} = {_literal(value)}" for name, value in settings(dedup_token, max_threads).items())
    return (f"INSERT INTO otel_traces ({_NAMES}) SETTINGS {clause} "
            f"SELECT * FROM file({{path:String}}, 'Native', '{_STRUCTURE}')")


def _literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def convert(payloads: list[bytes]) -> tuple[bytes, int, int]:
    """(Native block, spans, events) of the payloads. Raises ValueError for a payload the converter
    does not take (see the module docstring); RuntimeError when the converter is unavailable."""
    if CONVERTER is None:
        raise RuntimeError(REASON)
    block, spans, events = CONVERTER.convert(payloads)
    return block, int(spans), int(events)


def convert_each(payloads: list[bytes]) -> tuple[bytes, int, int, list[tuple[int, tuple[str, ...]] | str]]:
    """As :func:`convert`, payload by payload: (block, spans, events, results), a payload's result
    being (spans, the names of its scopes that have spans) or, for a payload left out of the block,
    why (the caller asks the Python decoder about it). RuntimeError when the converter is unavailable."""
    if CONVERTER is None:
        raise RuntimeError(REASON)
    return CONVERTER.convert_each(payloads)


def settings(dedup_token: str, max_threads: int = 1) -> dict[str, object]:
    """One engine thread: the insert is mostly serial (measured on 2 cores, as for native_ingest).
    The maps' bloom filters are left to the merges (:data:`...migrations.INDEXES_BUILT_BY_MERGES`)."""
    return {
        "insert_allow_materialized_columns": 1,  # the block carries native_ingest.DERIVED's columns
        "insert_deduplication_token": dedup_token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        "max_threads": max_threads,
        **INSERT_INDEX_SETTINGS,
    }


def ingest(store: Store, path: Path, dedup_token: str) -> None:
    """Insert the block in ``path`` (written from :func:`convert`) into ``otel_traces``. Raises
    StoreError (an unreadable file or a failing engine alike)."""
    store.command(insert_sql(dedup_token), parameters={"path": str(path)})


Payload = bytes | mmap.mmap  # what the converter reads: bytes or any object with a buffer
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: the pages mapped at once, not a fault each


@contextlib.contextmanager
def mapped(paths: Sequence[Path]) -> Iterator[list[Payload]]:
    """The files' contents for :func:`write`, each mapped read-only instead of read into bytes (fresh
    memory for a batch's copy cost a page fault per 4 KiB: about 0.2 us a span, 7% of the drain,
    measured on 2 cores); an empty file as ``b""``. Unmapped on exit. Raises OSError as reading them
    would. A file must not shrink while it is mapped: the spool's inflight files are written once,
    renamed in and read by their one owner."""
    maps: list[mmap.mmap] = []
    out: list[Payload] = []
    try:
        for path in paths:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    out.append(b"")
                    continue
                m = mmap.mmap(f.fileno(), size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
            maps.append(m)
            out.append(m)
        yield out
    finally:
        for m in maps:
            m.close()


def write(path: Path, payloads: Sequence[Payload]) -> tuple[int, int]:
    """Convert ``payloads`` into a block file at ``path``, written whole under another name, then
    renamed into place (as :func:`write_block`; the converter writes it from its own buffers, with
    no copy of the block in memory). Returns (spans, events); raises ValueError as :func:`convert`
    does, OSError when the file cannot be written (nothing left under either name)."""
    if CONVERTER is None:
        raise RuntimeError(REASON)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            spans, events, _size = CONVERTER.convert_into(payloads, fd)
        finally:
            os.close(fd)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return int(spans), int(events)


def write_block(path: Path, block: bytes) -> None:
    """``block`` into ``path``, written whole, then renamed into place (a crash never leaves half a
    block under that name)."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(block)
    os.replace(part, path)

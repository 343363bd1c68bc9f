"""Hybrid logical clocks across processes and hosts (physical ns + logical counter), off the hot path.

Every recorded span and event already has a physical time (``CLOCK_REALTIME`` ns, ``ts``) and a
number of the process-wide sequence (:data:`runtime.SEQUENCE`, ``seq``: one counter orders every
call and event of a process exactly). Its hybrid logical clock is the pair

    ``(l, c) = (max(ts, floor(seq)), seq)``

where ``floor`` is a step function of the sequence that only a *receive* raises: a message
(an HTTP request or response, a Kafka record, a spawned child's environment) carrying the sender's
``l`` sets the floor to ``l + 1`` from the receive's sequence number on, when that is ahead of this
process's clock. So every event after a receive has an ``l`` above the send's, and ordering by
``(l, c)`` puts every send before its receive and keeps each process's own order (``l`` never
decreases along the sequence; ties break by it). As in Kulkarni et al.'s HLC, ``l`` stays within the
largest lead of a peer's clock over this one, and returns to the physical clock once that passes.

Cost: capture cores record nothing new. Sends and receives (propagator calls, a few per request)
take a lock and a sequence number; the encoder asks :func:`offset` (``l - ts``) only for frames
that started before the floor (``needs_offsets``), so a process whose peers are not ahead encodes
exactly as before. Spans carry ``execscope.hlc.offset`` / ``execscope.hlc.end_offset`` and events
``execscope.hlc.offset`` only where ``l - ts`` is not 0; the store adds them to the timestamps
(``Hlc``, ``HlcEnd`` columns).

Receives are kept (bounded, dropped ones counted) for the clock-skew estimates: each holds the
sender's process id and physical send time and this process's receive time; :func:`take_receives`
hands them to the exporter. Thread-safe; state of a forked child: its own process id, no receives.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

TRACESTATE_KEY = "execscope"
ENV_HLC = "EXECSCOPE_HLC"
"""A child process started by a recording one merges this (the parent's clock when its floor last
moved) at start: subprocesses and spawned multiprocessing workers inherit it."""
MAX_STEPS = 8192
MAX_RECEIVES = 65536


_ID_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _new_process_id() -> str:
    """13 random letters (61 bits): no digits, so that no secrets pattern (a card number's Luhn
    check on a digit run) ever takes a process id for a secret and redacts it. From ``os.urandom``
    (as ``secrets`` is), without importing ``secrets``: every recorded process starts with this."""
    n = int.from_bytes(os.urandom(8), "big") % 26 ** 13
    letters = []
    for _ in range(13):
        n, digit = divmod(n, 26)
        letters.append(_ID_LETTERS[digit])
    return "".join(letters)


PROCESS_ID = _new_process_id()
"""This process's id in tracestate entries and ``execscope.process.id`` (a new one after fork)."""
PROCESS_START_NS = time.time_ns()


@dataclass(frozen=True, slots=True)
class Stamp:
    """One clock reading: ``l`` (ns), ``c`` (sequence number), ``pt`` (physical ns), ``process``."""

    l: int  # noqa: E741
    c: int
    pt: int
    process: str

    def encode(self) -> str:
        """The tracestate value: ``<l hex>.<c hex>.<l - pt hex>.<process id>``."""
        return f"{self.l:x}.{self.c:x}.{self.l - self.pt:x}.{self.process}"

    @classmethod
    def decode(cls, value: str) -> Stamp | None:
        """The stamp in a tracestate value, or None when it is not one (never raises)."""
        parts = value.strip().split(".")
        if len(parts) != 4 or not parts[3] or len(parts[3]) > 32 or not parts[3].isalnum():
            return None
        try:
            l, c, lead = (int(p, 16) for p in parts[:3])  # noqa: E741
        except ValueError:
            return None
        if lead > l or l >= 1 << 63 or c >= 1 << 63:
            return None
        return cls(l, c, l - lead, parts[3])


@dataclass(frozen=True, slots=True)
class Receive:
    """A message received from another process: the sender's stamp and this process's own at receipt."""

    sender: Stamp
    receiver: Stamp
    transport: str
    trace_id: int
    parent_span_id: int


class _Clock:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.floor = 0
        self.step_seqs: list[int] = []
        self.step_floors: list[int] = []
        self.receives: list[Receive] = []
        self.dropped_receives = 0
        self.keeping = False  # receives are kept once an exporter takes them (keep_receives)


_clock = _Clock()


def _after_fork_in_child() -> None:
    global PROCESS_ID, PROCESS_START_NS
    PROCESS_ID = _new_process_id()
    PROCESS_START_NS = time.time_ns()
    _clock.lock = threading.Lock()
    _clock.receives = []


os.register_at_fork(after_in_child=_after_fork_in_child)


def send() -> Stamp:
    """A send event: this process's clock now (it takes a sequence number). Never raises."""
    from execscope.instrumentation.capture.runtime import SEQUENCE  # (runtime imports this module)

    with _clock.lock:
        pt = time.time_ns()
        seq = SEQUENCE.next()
        return Stamp(max(pt, _clock.floor), seq, pt, PROCESS_ID)


def receive(sender: Stamp, transport: str, trace_id: int = 0, parent_span_id: int = 0, *,
            record: bool = True) -> Stamp:
    """A receive event: merge ``sender``'s clock (the floor moves to ``sender.l + 1`` when that is
    ahead) and keep the receive for the skew estimates (``record``; not for this process's own
    messages). Returns this process's stamp at receipt."""
    from execscope.instrumentation.capture.runtime import SEQUENCE

    with _clock.lock:
        pt = time.time_ns()
        seq = SEQUENCE.next()
        floor = sender.l + 1
        if floor > _clock.floor:
            _clock.floor = floor
            if floor > pt:
                if len(_clock.step_seqs) >= MAX_STEPS:  # the oldest steps are long past
                    del _clock.step_seqs[:MAX_STEPS // 2], _clock.step_floors[:MAX_STEPS // 2]
                _clock.step_seqs.append(seq)
                _clock.step_floors.append(floor)
                _publish_env(Stamp(floor, seq, pt, PROCESS_ID))
        here = Stamp(max(pt, _clock.floor), seq, pt, PROCESS_ID)
        if record and _clock.keeping and sender.process != PROCESS_ID:
            if len(_clock.receives) < MAX_RECEIVES:
                _clock.receives.append(Receive(sender, here, transport, trace_id, parent_span_id))
            else:
                _clock.dropped_receives += 1
        return here


def _publish_env(stamp: Stamp) -> None:
    try:
        os.environ[ENV_HLC] = stamp.encode()
    except Exception:  # a read-only or odd environment: children start on their own clock
        pass


def merge_from_environment() -> None:
    """At process start: merge the parent's clock passed in ``EXECSCOPE_HLC`` (not a receive kept
    for skew estimates: parent and child share the host's clock)."""
    stamp = Stamp.decode(os.environ.get(ENV_HLC, ""))
    if stamp is not None:
        receive(stamp, "spawn", record=False)


def has_steps() -> bool:
    """True once a receive raised the floor above this process's clock (frames may need offsets)."""
    return bool(_clock.step_seqs)


def floor_at(seq: int) -> int:
    """The floor in force at sequence number ``seq`` (0 before any step)."""
    seqs = _clock.step_seqs
    i = bisect.bisect_right(seqs, seq) - 1
    return _clock.step_floors[i] if i >= 0 else 0


def offset(seq: int, ts: int) -> int:
    """``l - ts`` of an event at ``ts`` with sequence number ``seq`` (0 unless a receive put the floor
    above ``ts``)."""
    floor = floor_at(seq)
    return floor - ts if floor > ts else 0


def needs_offsets(seq_end: int, start: int) -> bool:
    """Whether any span or event of a frame (``seq0..seq_end``, starting at ``start``) has a
    nonzero offset: the floor at its last sequence number is above its start."""
    return bool(_clock.step_seqs) and floor_at(seq_end) > start


def steps() -> tuple[list[int], list[int]]:
    """The live lists of the floor's steps (sequence numbers, floors), sorted; mutated in place under
    the GIL. For the native encoder (``set_clock``), which computes :func:`offset` itself."""
    return _clock.step_seqs, _clock.step_floors


def keep_receives() -> None:
    """Keep receives from now on: called by whoever exports them (:func:`take_receives`); until then
    a process keeps none (a recorder without the execscope span processor never takes them)."""
    _clock.keeping = True


def take_receives() -> tuple[list[Receive], int]:
    """The receives kept since the last call, and how many were dropped (cumulative)."""
    with _clock.lock:
        out, _clock.receives = _clock.receives, []
        return out, _clock.dropped_receives


def process_attributes() -> dict[str, Any]:
    """Resource attributes naming this process for the process registry."""
    return {"execscope.process.id": PROCESS_ID, "execscope.process.start_ns": PROCESS_START_NS,
            "host.name": _HOST, "process.pid": os.getpid()}


def _host() -> str:
    """The host's name: ``os.uname()`` where there is one (what ``socket.gethostname`` returns on
    POSIX, without importing ``socket`` into every recorded process)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    try:
        return socket.gethostname()
    except OSError:
        return ""


_HOST = _host()


def reset_for_tests() -> None:
    """Forget every step and receive (tests only)."""
    with _clock.lock:
        _clock.floor = 0
        _clock.step_seqs.clear()
        _clock.step_floors.clear()
        _clock.receives = []
        _clock.dropped_receives = 0
        _clock.keeping = True

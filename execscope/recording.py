"""``execscope run``: start a program with recording on, and own the store while it runs.

The parent (this module) opens the embedded store, drains spool batches into it while the program
runs and once more after it exits, and reports what it stored. The program and all its Python child
processes record through ``execscope/bootstrap/sitecustomize.py`` into the spool
(see :mod:`execscope.instrumentation.process_bootstrap`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import execscope
from execscope.instrumentation import process_bootstrap as pb
from execscope.instrumentation.export.kafka_security import KafkaSecurity, environment_names
from execscope.instrumentation.export.spool import Spool
from execscope.storage.store import Store, StoreAddress, StoreError

if TYPE_CHECKING:  # loaded once the program runs (see run_recorded)
    from execscope.collector.processors import ProcessorChain
    from execscope.collector.spool_source import DrainReport, SpoolSource

BOOTSTRAP_DIR = str(Path(execscope.__file__).resolve().parent / "bootstrap")
DRAIN_INTERVAL_S = 0.5


@dataclass(frozen=True)
class RunOptions:
    include: Sequence[str]
    exclude: Sequence[str] = ()
    level: str = "functions"
    service: str = ""
    exporter: str = "spool"   # spool (this process owns the store) | kafka (a collector does)
    kafka: str = ""           # bootstrap servers of the kafka exporter
    topic: str = ""           # its topic (default otlp_spans)
    kafka_security: KafkaSecurity | None = None  # its SASL/TLS settings (None: the environment's, if any)
    sample: float = 1.0       # head sampling ratio of new traces
    max_events_per_s: int = 0  # event budget (0: none)
    adaptive: int = 0          # per-node adaptive sampling budget (0: every call)
    max_spool_mb: float = pb.MAX_SPOOL_MB  # waiting in the spool beyond this: dropped, counted (0: none)
    plan: str = ""             # a plan file (absolute path): per function level and rate, in place of level


def spool_path_for(address: StoreAddress, slot: int = 0) -> Path:
    """Beside an embedded store (``<db>.spool``); under the user cache for a server store, one
    directory per `execscope run` running at once on that address (``slot``, see :func:`claim_spool`)."""
    if address.kind == "chdb":
        return Path(address.path + ".spool")
    import hashlib

    digest = hashlib.sha1(str(address).encode()).hexdigest()[:12]
    name = f"spool-{digest}-{slot}" if slot else f"spool-{digest}"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "execscope" / name


SPOOL_SLOTS = 32


def claim_spool(address: StoreAddress) -> tuple[Path, int | None]:
    """The spool a run writes and drains, and the lock that keeps it the run's own (close it when
    done; None for an embedded store, whose own lock covers its spool). A server store has no owner,
    so runs on one machine at once on one address each take the first slot no other run holds
    (``<spool>.lock``, an flock): none drains another's files, and each reports what it stored.
    Raises StoreError when every slot is taken."""
    if address.kind == "chdb":
        return spool_path_for(address), None
    import fcntl

    for slot in range(SPOOL_SLOTS):
        path = spool_path_for(address, slot)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"spool lock {path}.lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return path, fd
    raise StoreError(f"{SPOOL_SLOTS} runs already record into {address} from this machine")


def _adopt_leftovers(address: StoreAddress, own: Path, store: Store, chain: ProcessorChain | None) -> DrainReport:
    """Store what runs that ended without storing everything left in the other slots of a server
    store's spool (each slot taken only while no run holds it)."""
    import fcntl

    from execscope.collector.spool_source import DrainReport, SpoolSource

    total = DrainReport()
    for slot in range(SPOOL_SLOTS):
        path = spool_path_for(address, slot)
        if path == own or not path.is_dir():
            continue
        try:
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            total.add(SpoolSource(Spool(path), store, chain=chain).drain())
        except OSError:
            continue  # a run holds it
        finally:
            os.close(fd)
    return total


def child_environment(options: RunOptions, spool: Spool | None, command: Sequence[str]) -> dict[str, str]:
    env = dict(os.environ)
    if spool is not None:
        env[pb.ENV_SPOOL] = str(spool.path)
    else:
        env.pop(pb.ENV_SPOOL, None)
    env[pb.ENV_EXPORTER] = options.exporter
    if options.exporter == "kafka":
        env[pb.ENV_KAFKA] = options.kafka
        env[pb.ENV_KAFKA_TOPIC] = options.topic or "otlp_spans"
        if options.kafka_security is not None:  # resolved here (flags, environment, processors file)
            for name in environment_names():
                env.pop(name, None)
            env.update(options.kafka_security.environment())
    env[pb.ENV_INCLUDE] = ",".join(options.include)
    env[pb.ENV_EXCLUDE] = ",".join(options.exclude)
    env[pb.ENV_LEVEL] = options.level
    if options.plan:
        env[pb.ENV_PLAN] = options.plan
    else:
        env.pop(pb.ENV_PLAN, None)
    if options.sample < 1.0:
        env[pb.ENV_SAMPLE] = repr(options.sample)
    else:
        env.pop(pb.ENV_SAMPLE, None)
    if options.max_events_per_s:
        env[pb.ENV_EVENT_RATE] = str(options.max_events_per_s)
    else:
        env.pop(pb.ENV_EVENT_RATE, None)
    if options.adaptive:
        env[pb.ENV_ADAPTIVE] = str(options.adaptive)
    else:
        env.pop(pb.ENV_ADAPTIVE, None)
    env[pb.ENV_MAX_SPOOL_MB] = repr(options.max_spool_mb)
    env[pb.ENV_SERVICE] = options.service or Path(command[0]).name
    env["PYTHONPATH"] = os.pathsep.join(p for p in (BOOTSTRAP_DIR, env.get("PYTHONPATH", "")) if p)
    return env


class _Drainer(threading.Thread):
    def __init__(self, source: SpoolSource) -> None:
        from execscope.collector.spool_source import DrainReport

        super().__init__(name="execscope-drain", daemon=True)
        self.source = source
        self.report = DrainReport()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(DRAIN_INTERVAL_S):
            try:
                self.report.add(self.source.drain())
            except Exception as exc:  # keep draining; the files stay for the next attempt
                self.report.errors.append(f"drain failed: {type(exc).__name__}: {exc}")


def run_recorded(command: Sequence[str], options: RunOptions, store: Store | Callable[[], Store],
                 chain: ProcessorChain | Callable[[Store], ProcessorChain | None] | None = None,
                 address: StoreAddress | None = None) -> tuple[int, DrainReport]:
    """Run ``command`` recorded into ``store``; returns its exit code and what was stored
    (``report.started_ns`` marks the start, for :func:`dropped_since`). ``chain``: the processor
    chain the spool's batches go through (as in ``execscope collect``), or a function of the store
    giving it.

    ``store`` may be a function opening it, with its ``address``: the program is then started first
    and the store opened while it runs (loading the engine and migrating take a second or more).
    If that fails, the program still runs to its end, its recording stays in the spool for the next
    run, and the error is raised then."""
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise FileNotFoundError(command[0])
    if callable(store) and address is None:
        raise ValueError("a store opened while the program runs needs its address")
    address = address if callable(store) else store.address
    assert address is not None
    path, lock = claim_spool(address)
    try:
        return _run_recorded(command, options, store, chain, address, Spool(path))
    except StoreError as exc:
        exc.spool_path = path  # type: ignore[attr-defined]  # where the recording waits for the next run
        raise
    finally:
        if lock is not None:
            os.close(lock)


def _run_recorded(command: Sequence[str], options: RunOptions, store: Store | Callable[[], Store],
                  chain: ProcessorChain | Callable[[Store], ProcessorChain | None] | None, address: StoreAddress,
                  spool: Spool) -> tuple[int, DrainReport]:
    started_ns = time.time_ns()
    proc = subprocess.Popen(list(command), env=child_environment(options, spool, command))
    _yield_cpu_to_the_program()
    forwarded = _forward_signals(proc)
    drainer: _Drainer | None = None
    from execscope.collector.spool_source import SpoolSource  # now that the program is running

    try:
        if callable(store):
            try:
                store = store()
            except BaseException:
                proc.wait()
                raise
        source = SpoolSource(spool, store, chain=chain(store) if callable(chain) else chain)
        total = source.drain()  # whatever an earlier crashed run left behind, and what came since
        total.started_ns = started_ns
        source.publish_known_versions()
        drainer = _Drainer(source)
        drainer.start()
        returncode = proc.wait()
    finally:
        if drainer is not None:
            drainer.stop.set()
            drainer.join()
        _restore_signals(forwarded)
    total.add(drainer.report)
    _say_backlog(spool)
    deadline = time.monotonic() + 30
    while True:  # children may still be flushing their last batches
        try:
            report = source.drain()
        except Exception as exc:
            total.errors.append(f"drain failed: {type(exc).__name__}: {exc}")
            break
        total.add(report)
        if not spool.pending_batches() and not spool.pending_nodes():
            break
        if time.monotonic() > deadline or (report.errors and not report.spans and not report.nodes):
            break
        time.sleep(0.1)
    if address.kind != "chdb":  # what runs that could not reach the server left in other slots
        total.add(_adopt_leftovers(address, spool.path, source.store, source.chain))
    return returncode, total


BACKLOG_NOTICE_BATCHES = 8


def _say_backlog(spool: Spool) -> None:
    """Say so when the program has ended with much still to store (a statement-level recording of a
    busy program can outrun the engine): storing it can take a while, and silence looks like a hang."""
    from execscope.instrumentation.export.spool import batch_counts

    pending = spool.pending_batches()
    if len(pending) < BACKLOG_NOTICE_BATCHES:
        return
    spans = events = 0
    for path in pending:
        counts = batch_counts(path)
        if counts is not None:
            spans, events = spans + counts[0], events + counts[1]
    sys.stderr.write(f"execscope: the program has ended; storing what it recorded faster than it could be "
                     f"stored: {len(pending)} batches, {spans} spans, {events} events...\n")
    sys.stderr.flush()


PARENT_NICENESS = 10


def _yield_cpu_to_the_program() -> None:
    """Lower the priority of this thread, and of the engine's and drainer's threads it starts from
    now on (Linux: a thread's nice value is its own and threads inherit it), so that storing the
    recording never takes a core the program could use; the program is started before this."""
    if threading.current_thread() is not threading.main_thread() or os.environ.get("EXECSCOPE_PARENT_NICE") == "0":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()) + PARENT_NICENESS))
    except (OSError, AttributeError):
        pass


def run_to_kafka(command: Sequence[str], options: RunOptions) -> tuple[int, list[str]]:
    """Run ``command`` with every process exporting to Kafka (``options.kafka``/``options.topic``);
    no store is opened here: ``execscope collect`` writes the topic into the store. Returns the
    program's exit code and the refusals its processes met (a broker refusing their login or
    certificate: each said on stderr by the process itself)."""
    import tempfile

    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise FileNotFoundError(command[0])
    with tempfile.TemporaryDirectory(prefix="execscope-run-") as tmp:
        refused = Path(tmp) / "refused"
        env = child_environment(options, None, command)
        env[pb.ENV_KAFKA_REFUSED] = str(refused)
        proc = subprocess.Popen(list(command), env=env)
        forwarded = _forward_signals(proc)
        try:
            returncode = proc.wait()
        finally:
            _restore_signals(forwarded)
        try:
            refusals = refused.read_text(encoding="utf-8").splitlines()
        except OSError:
            refusals = []
    return returncode, refusals


def _forward_signals(proc: subprocess.Popen[bytes]) -> dict[int, object]:
    """Ctrl-C reaches the whole foreground process group, the program included: the parent ignores
    it (and keeps draining). SIGTERM/SIGHUP sent to the parent alone are passed on."""
    previous: dict[int, object] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous

    def forward(signum: int, _frame: object) -> None:
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    return previous


def _restore_signals(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


RUN_COUNTS_SQL = """
SELECT
    (SELECT sum(dropped) FROM (
        SELECT max(toUInt64OrZero(ResourceAttributes['execscope.dropped_spans'])) AS dropped
        FROM otel_traces WHERE Timestamp >= fromUnixTimestamp64Nano({since:Int64})
        GROUP BY ResourceAttributes['process.pid'])),
    (SELECT sum(arraySum(arrayMap(v -> toUInt64OrZero(v),
        mapValues(mapFilter((k, v) -> startsWith(k, 'execscope.unrecorded.'), SpanAttributes)))))
     FROM otel_traces WHERE Timestamp >= fromUnixTimestamp64Nano({since:Int64}))
"""


def run_counts(store: Store, report: DrainReport) -> tuple[int, int]:
    """(dropped, unrecorded) of a run's spans (stored since ``report.started_ns``), in one query:
    calls recorded but not kept (capture buffers full) by the run's processes, and calls left out by
    adaptive sampling (counted on spans, not recorded). Both are carried on stored spans, so a run
    that stored none has none (no query then). (0, 0) when the store cannot say."""
    if not report.spans:
        return 0, 0
    try:
        row = store.query(RUN_COUNTS_SQL, {"since": report.started_ns}).rows[0]
        return int(row[0] or 0), int(row[1] or 0)
    except Exception:
        return 0, 0


def describe(report: DrainReport, store: Store, dropped: int = 0, unrecorded: int = 0) -> str:
    parts = [f"execscope: stored {report.spans} spans with {report.events} events "
             f"({report.batches} batches) and {report.nodes} nodes of {report.modules} module versions "
             f"in {store.address}"]
    if unrecorded:
        parts.append(f"execscope: {unrecorded} more calls of hot functions were counted, not recorded (adaptive "
                     "sampling; see SpanAttributes['execscope.unrecorded.<node_id>']; --adaptive 0 records every call)")
    if dropped:
        parts.append(f"execscope: {dropped} calls were not kept (the capture buffer was full, more than --max-spool-mb "
                     "waited in the spool, or the program was tracing its own allocations with tracemalloc): see "
                     "ResourceAttributes['execscope.dropped_spans']")
    if report.dead:
        parts.append(f"execscope: {report.dead} unreadable spool files set aside (see <spool>/dead)")
    for error in report.errors[:5]:
        parts.append(f"execscope: error: {error}")
    if report.spans:
        parts.append(f"execscope: list traces with `execscope traces --store {store.address}`")
    return "\n".join(parts)


def exit_code_of(returncode: int) -> int:
    """A child killed by a signal exits the shell way (128 + signal number)."""
    return 128 - returncode if returncode < 0 else returncode


def resolve_python(command: Sequence[str]) -> list[str]:
    """A bare ``python``/``python3`` whose PATH interpreter lacks execscope becomes this interpreter
    (typical: execscope installed in a virtualenv that is not activated); said on stderr."""
    cmd = list(command)
    if not cmd or cmd[0] not in ("python", "python3", f"python3.{sys.version_info.minor}"):
        return cmd
    found = shutil.which(cmd[0])
    if found and os.path.realpath(found) == os.path.realpath(sys.executable):
        return cmd
    if found:
        probe = subprocess.run([found, "-c", "import execscope"], capture_output=True)
        if probe.returncode == 0:
            return cmd
    sys.stderr.write(f"execscope: {cmd[0]} on PATH ({found or 'not found'}) cannot import execscope; "
                     f"running {sys.executable} instead\n")
    return [sys.executable, *cmd[1:]]


def script_command(command: Sequence[str], include: Sequence[str]) -> list[str]:
    """``python [flags] app.py args`` with ``app`` (or ``__main__``) included: run the script through
    :mod:`execscope.instrumentation.rewrite.main_script`, since a script run directly is never imported and
    so never passes the import hook. Any other command is returned as is."""
    from execscope.instrumentation.rewrite.globs import matches

    cmd = list(command)
    if not cmd or not Path(cmd[0]).name.startswith("python"):
        return cmd
    i = 1
    while i < len(cmd) and cmd[i].startswith("-") and cmd[i] not in ("-m", "-c", "-"):
        i += 1
    if i >= len(cmd) or not cmd[i].endswith(".py"):
        return cmd
    stem = Path(cmd[i]).stem
    if not (matches(stem, include) or matches("__main__", include)):
        return cmd
    return [*cmd[:i], "-m", "execscope.instrumentation.rewrite.main_script", *cmd[i:]]

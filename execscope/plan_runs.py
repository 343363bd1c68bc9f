"""The runs ``execscope plan -- COMMAND`` measures before it plans, in this order:

1. recorded at ``statements`` level (the profile the plan is made from), not timed: it creates the
   store, stores the code's CPG and caches the statements-level rewrite (its parts are then merged,
   so that no later run pays for that); with ``run``'s adaptive
   sampling every call is counted, but of a hot function's calls beyond its first thousand in a test
   (each event counting as one more) only one in 2, 4, ... is stored (storing millions of spans would
   take minutes, overflow the spool and leave the profile short of the calls it dropped); its
   recorded calls give each function's branch and statement events per call, measured (estimating
   them from a function's self time read a generator's time suspended as loops run);
2. ``plain_runs`` times, interleaved (the load of a shared machine drifts alike for all): the
   command plain, whose median wall time is the baseline a budget is a ratio of; under a plan that
   records nothing (it leaves every module as written): the median of these less the baseline is the
   recording's **fixed cost**, what any plan pays before its first recorded call (the recorder and
   its store starting and stopping); under a plan passing every call through its rate gate and
   recording each function's first call only (into a scratch copy of the store), every included
   module rewritten anew: its median less that of the runs recording nothing is the gate's cost and
   what recording anything costs on a plan's first run, mostly rewriting
   (:func:`execscope.queries.planner.make_plan` takes the gate's modelled cost off and shares the
   rest among the modules, each paid only by a plan that records in it and only where ``plan`` could
   not rewrite it ahead); and the profile again, into a fresh copy of the store, its rewrite cached as
   on any run after the first: its median less that of the runs recording nothing is what recording
   the profile's calls cost, which gives what one recorded call costs this program
   (:func:`execscope.queries.planner.profile_scale`).

A server store has no scratch copies: no gating runs then, and the one profile run is the timed one.

Then, on an embedded store, the **calibration** (:func:`calibrate`): the first plan made from these
runs is run ``plain_runs`` times, each right after one more plain run, into fresh copies of the
store (its modules already in the rewrite cache, as on any run of it): its median less the baseline
(now the median of every plain run) is what the plan costs this program, and the statement events
it stored what it records. ``plan`` scales its model's per-function costs by what the plan cost over
its prediction (:func:`execscope.queries.planner.calibration_scale`) and plans again.

**The fixed cost is timed outside the program's body.** The plain runs and the runs recording
nothing have a ``sitecustomize`` of ``plan``'s own put on ``PYTHONPATH`` (:data:`STAMPING_SITECUSTOMIZE`,
behind execscope's bootstrap, which chains to it, and chaining in turn to the program's own): it
stamps when the interpreter hands over to the program and, from an ``atexit`` handler registered
before the program's own, when the program has ended. A run's wall time less its body (end less
start) is what it spent outside the program: starting, the bootstrap and ``execscope run``'s parent
before the program; the final flush, the interpreter's teardown and storing after it. The fixed cost
is the median of that outside time recording nothing less the median of it plain: a 1 s suite's body
moves by 0.1-0.15 s from run to run on a loaded 2-core machine, and a fixed cost taken from whole-run
medians moved with it (toolz: 0.12 s in one ``plan``, 0.35 s in the next, where ``bench_fixed_cost``
times 0.27-0.4 s), while the time outside moves by a few milliseconds (0.295 s in both ``plan`` runs
of ``tests/benchmarks/bench_planner.py toolz`` on 2026-12-06). What the runs recording nothing
cost inside the body (the import hook consulted per import, the store's engine loading beside the
program) is left out of it; the calibration's runs measure it with the first plan's own cost. A
command that never starts Python (no stamps) is timed whole, as before.

The command's own output goes to stderr, so that ``--format json`` keeps stdout one JSON document.
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeasuredRuns:
    """Wall times, in nanoseconds, of the plain runs, the profile and the run recording nothing, and
    the exit codes of the last plain run and of the profile. ``plain_outside_ns`` and
    ``nothing_outside_ns``: of the plain runs and the runs recording nothing, the time each spent
    outside the program's body (see the module docstring); empty when the command left no stamps."""

    plain_ns: tuple[int, ...]
    recorded_ns: int
    nothing_ns: tuple[int, ...]
    skipping_ns: tuple[int, ...]
    plain_returncode: int
    recorded_returncode: int
    plain_outside_ns: tuple[int, ...] = ()
    nothing_outside_ns: tuple[int, ...] = ()

    @property
    def baseline_ns(self) -> float:
        """The median plain run (what one run is expected to take, not the luckiest)."""
        return float(statistics.median(self.plain_ns))

    @property
    def fixed_ns(self) -> float:
        """What recording costs before its first recorded call: :meth:`fixed_ns_over` the baseline."""
        return self.fixed_ns_over(self.baseline_ns)

    @property
    def timed_outside(self) -> bool:
        """True when every plain run and every run recording nothing left its stamps."""
        return (len(self.plain_outside_ns) == len(self.plain_ns) > 0
                and len(self.nothing_outside_ns) == len(self.nothing_ns))

    def fixed_ns_over(self, baseline_ns: float) -> float:
        """The fixed cost: the median time outside the program's body recording nothing less that of
        the plain runs, when timed (:attr:`timed_outside`); else the median run recording nothing less
        ``baseline_ns`` (a command whose body could not be told apart). Never negative."""
        if self.timed_outside:
            return max(0.0, float(statistics.median(self.nothing_outside_ns))
                       - float(statistics.median(self.plain_outside_ns)))
        return max(0.0, self.nothing_median_ns - baseline_ns)

    @property
    def nothing_median_ns(self) -> float:
        return float(statistics.median(self.nothing_ns))

    @property
    def skipping_extra_ns(self) -> float | None:
        """What passing every call through a plan's rate gate (recording each function's first call)
        cost over recording nothing; None when not measured (a server store: no scratch copy to record
        into)."""
        if not self.skipping_ns:
            return None
        return max(0.0, float(statistics.median(self.skipping_ns)) - self.nothing_median_ns)

    @property
    def profile_ns(self) -> float:
        """What recording the profile's calls cost: the profile (median) less the runs recording nothing."""
        return max(0.0, self.recorded_ns - self.nothing_median_ns)


def _timed(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    returncode = subprocess.run(list(args), stdout=sys.stderr, env=env).returncode
    return time.perf_counter_ns() - t0, returncode


ENV_STAMPS = "EXECSCOPE_PLAN_STAMPS"
STAMPING_SITECUSTOMIZE = '''\
"""Written by `execscope plan` (execscope.plan_runs): stamps when the program starts and ends, then
runs the sitecustomize this one shadows, if any. Not in `python -m execscope` itself."""
import atexit
import os
import sys
import time


def _stamp(what):
    try:
        with open(os.environ["EXECSCOPE_PLAN_STAMPS"], "a", encoding="utf-8") as f:
            f.write(f"{what} {time.time_ns()}\\n")
    except (KeyError, OSError):
        pass


if os.environ.get("EXECSCOPE_PLAN_STAMPS") and getattr(sys, "orig_argv", sys.argv)[1:3] != ["-m", "execscope"]:
    _stamp("start")
    atexit.register(_stamp, "end")  # before the program's own handlers: runs after them

from _execscope_chain import run_shadowed_sitecustomize  # copied beside this file

run_shadowed_sitecustomize(os.path.dirname(os.path.abspath(__file__)))
'''


def stamping_folder(where: str) -> str:
    """A folder in ``where`` holding :data:`STAMPING_SITECUSTOMIZE` (and the chaining it imports):
    put first on ``PYTHONPATH`` (behind execscope's bootstrap, if any) with :data:`ENV_STAMPS` naming
    the file the stamps go to."""
    folder = os.path.join(where, "stamping")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as f:
        f.write(STAMPING_SITECUSTOMIZE)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap", "_execscope_chain.py"), folder)
    return folder


def read_stamps(stamp_file: str) -> tuple[int, int] | None:
    """(start, end) in ``time.time_ns()`` of the program's body: the first start written (the
    command's first Python process) and the last end (the processes it started end before it); None
    when the run left no start or no end (not Python, ``python -S``, ended by ``os._exit``)."""
    start = end = None
    try:
        with open(stamp_file, encoding="utf-8") as f:
            for line in f:
                what, _, value = line.partition(" ")
                if what == "start" and start is None:
                    start = int(value)
                elif what == "end":
                    end = int(value)
    except (OSError, ValueError):
        return None
    if start is None or end is None or end < start:
        return None
    return start, end


class _Stamps:
    """Runs of the command with :func:`stamping_folder` on ``PYTHONPATH`` (in ``where``), each giving
    its wall time and the time it spent outside the program's body."""

    def __init__(self, where: str) -> None:
        folder = stamping_folder(where)
        self.file = os.path.join(where, "stamps")
        path = os.environ.get("PYTHONPATH", "")
        self.env = {**os.environ, ENV_STAMPS: self.file,
                    "PYTHONPATH": os.pathsep.join(p for p in (folder, path) if p)}

    def timed(self, args: Sequence[str]) -> tuple[int, int, int | None]:
        """(wall ns, exit code, ns outside the body or None when :func:`read_stamps` finds no body)."""
        try:
            os.unlink(self.file)
        except FileNotFoundError:
            pass
        ns, returncode = _timed(args, self.env)
        body = read_stamps(self.file)
        return ns, returncode, None if body is None else max(0, ns - (body[1] - body[0]))


NOTHING_PLAN = '[default]\nlevel = "off"\nrate = 1.0\n'  # rewrites nothing: no cache to miss
# every call through the plan's rate gate, almost none recorded (each function's first call is)
SKIPPING_PLAN = ('[default]\nlevel = "functions"\nrate = 1e-9\n'
                 '[[rule]]\nmatch = "execscope.plan-runs:never.{nonce}"\nlevel = "off"\n')


SETTLED_TABLES = ("otel_traces", "execscope_events")


def _settle(store_dsn: str | None) -> None:
    """Merge the parts the profile left in an embedded store, so that the timed runs after it (and
    their copies of the store) do not pay for those merges in the background (more-itertools: a run
    recording nothing measured 0.36 s over plain once and 1.28 s the next time, right after a
    profile of 1.4 million events: the fixed cost ``bench_planner.py more-itertools`` printed). A
    server store merges on its own machine: left alone."""
    from execscope.storage import open_store
    from execscope.storage.store import resolve_address

    if resolve_address(store_dsn).kind != "chdb":
        return
    with open_store(store_dsn) as store:
        for table in SETTLED_TABLES:
            store.command(f"OPTIMIZE TABLE {table} FINAL")


def _scratch_copy(store_dsn: str | None, where: str, scope: list[str]) -> list[str] | None:
    """``scope`` with its store replaced by a copy of the embedded store (migrated, holding the CPG)
    at ``where``, for runs whose few recorded calls must not join the profile; None for a server.
    The copy is written to disk before this returns: its writeback does not land in a timed run."""
    from execscope.storage.store import resolve_address

    address = resolve_address(store_dsn)
    if address.kind != "chdb":
        return None
    shutil.copytree(address.path, where, symlinks=True)  # chDB links metadata into store/ relatively
    os.sync()
    cut = scope.index("--store") if "--store" in scope else len(scope)
    return [*scope[:cut], "--store", f"chdb://{where}"]


def scope_args(include: Sequence[str], exclude: Sequence[str], store_dsn: str | None = None) -> list[str]:
    """``execscope run``'s arguments naming what it records (and where)."""
    return [*(a for g in include for a in ("--include", g)), *(a for g in exclude for a in ("--exclude", g)),
            *(["--store", store_dsn] if store_dsn else [])]


@dataclass(frozen=True, slots=True)
class CalibrationRuns:
    """Wall times (ns) of the plain runs and the runs under the plan, paired, and the statement events
    each run under the plan stored."""

    plain_ns: tuple[int, ...]
    planned_ns: tuple[int, ...]
    statement_events: tuple[int, ...]
    planned_returncode: int = 0  # of the last run under the plan

    @property
    def planned_median_ns(self) -> float:
        return float(statistics.median(self.planned_ns))

    @property
    def statement_events_median(self) -> float:
        return float(statistics.median(self.statement_events))


def calibrate(command: Sequence[str], plan_file: str, include: Sequence[str], exclude: Sequence[str],
              store_dsn: str | None, runs: int = 1) -> CalibrationRuns | None:
    """``runs`` times: the command plain, then under ``plan_file`` into a fresh copy of the embedded
    store (the profile's: holding the CPG). None for a server store (no copies to record into)."""
    from execscope.queries.planner import stored_statement_events
    from execscope.storage import open_store

    scope = scope_args(include, exclude, store_dsn)
    plain: list[int] = []
    planned: list[int] = []
    events: list[int] = []
    planned_rc = 0
    with tempfile.TemporaryDirectory(prefix="execscope-calibrate-") as tmp:
        for i in range(max(1, runs)):
            where = os.path.join(tmp, f"plan-{i}.db")
            copy = _scratch_copy(store_dsn, where, scope)
            if copy is None:
                return None
            with open_store(f"chdb://{where}") as store:
                before = stored_statement_events(store)
            ns, _ = _timed(command)
            plain.append(ns)
            ns, planned_rc = _timed([sys.executable, "-m", "execscope", "run", "--plan", plan_file, *copy, "--",
                                     *command])
            planned.append(ns)
            with open_store(f"chdb://{where}") as store:
                events.append(stored_statement_events(store) - before)
            shutil.rmtree(where, ignore_errors=True)
            shutil.rmtree(where + ".spool", ignore_errors=True)
    return CalibrationRuns(tuple(plain), tuple(planned), tuple(events), planned_rc)


def measure(command: Sequence[str], include: Sequence[str], exclude: Sequence[str], store_dsn: str | None,
            plain_runs: int = 1) -> MeasuredRuns:
    """The runs of the module docstring, recorded ones into ``store_dsn``. Raises FileNotFoundError
    when the command does not exist."""
    scope = scope_args(include, exclude, store_dsn)
    plain: list[int] = []
    nothing: list[int] = []
    skipping: list[int] = []
    plain_outside: list[int | None] = []
    nothing_outside: list[int | None] = []
    plain_rc = 0
    recorded: list[int] = []
    profile = [sys.executable, "-m", "execscope", "run", "--level", "statements"]
    with tempfile.TemporaryDirectory(prefix="execscope-plan-") as tmp:
        stamps = _Stamps(tmp)
        # the profile itself: creates the store, stores the CPG, caches the statements-level rewrite
        first_ns, recorded_rc = _timed([*profile, *scope, "--", *command])
        _settle(store_dsn)
        nothing_plan = os.path.join(tmp, "nothing.toml")
        with open(nothing_plan, "w", encoding="utf-8") as f:
            f.write(NOTHING_PLAN)
        skip_scope = _scratch_copy(store_dsn, os.path.join(tmp, "skipping.db"), scope)
        for i in range(max(1, plain_runs)):  # interleaved: the machine's load drifts alike for both
            ns, plain_rc, outside = stamps.timed(command)
            plain.append(ns)
            plain_outside.append(outside)
            ns, _, outside = stamps.timed([sys.executable, "-m", "execscope", "run", "--plan", nothing_plan, *scope,
                                           "--", *command])
            nothing.append(ns)
            nothing_outside.append(outside)
            if skip_scope is None:
                continue
            skipping_plan = os.path.join(tmp, f"skipping-{i}.toml")
            with open(skipping_plan, "w", encoding="utf-8") as f:
                f.write(SKIPPING_PLAN.format(nonce=secrets.token_hex(8)))
            ns, _ = _timed([sys.executable, "-m", "execscope", "run", "--plan", skipping_plan, *skip_scope, "--",
                            *command])
            skipping.append(ns)
            # the profile again, timed, into a fresh copy of the store (its rewrite cached, as any run's
            # after the first with the same levels): what recording the profile's calls costs
            again = _scratch_copy(store_dsn, os.path.join(tmp, f"profile-{i}.db"), scope)
            assert again is not None  # an embedded store, as skip_scope says
            ns, _ = _timed([*profile, *again, "--", *command])
            recorded.append(ns)
            shutil.rmtree(os.path.join(tmp, f"profile-{i}.db"), ignore_errors=True)
            shutil.rmtree(os.path.join(tmp, f"profile-{i}.db.spool"), ignore_errors=True)
    recorded_ns = int(statistics.median(recorded)) if recorded else first_ns  # a server: its one profile
    return MeasuredRuns(tuple(plain), recorded_ns, tuple(nothing), tuple(skipping), plain_rc, recorded_rc,
                        tuple(o for o in plain_outside if o is not None),
                        tuple(o for o in nothing_outside if o is not None))

"""The instrumentation planner: per function a level and a sampling rate that maximise debugging
value with the predicted recording overhead within a budget (as Log20 places log statements).

Inputs, all from the store:

* **calls and time** per function from a recording (``otel_traces``: calls, self time, errors; calls
  left out by adaptive sampling are added from their ``execscope.unrecorded.<node>`` counts, and their
  statement events from ``execscope.unrecorded_events.<node>``). A
  ``functions``-level recording is enough; a finer one also gives measured events per call and
  branch entropy.
* **the CPG** (``cpg_functions``): cyclomatic complexity and statement count of the code version
  that ran, and, where the store holds an older version of the function that differs, that it
  changed.
* **the capture's cost model** (:class:`CostModel`): nanoseconds per recorded call, per branch event,
  per statement event and per call a rate leaves out, measured by
  ``tests/benchmarks/bench_plan_costs.py``.

The model. A function called ``n`` times, planned at level ``L`` and rate ``r``, records ``k`` of
its calls (``runtime.plan_keep``: the first, then ``floor(1 + (n-1)*r)`` in all, :func:`kept_calls`)
and is predicted to cost ``k*(call + B*branch_event [+ S*statement_event]) + (n-k)*skipped``
(a skipped call of a function defining others also pays its hooks: :class:`CostModel`), where ``B``
and ``S`` are its branch and statement events per call: measured when the store holds events of it,
otherwise estimated (``S``: its statements, or its self time over :data:`PLAIN_STATEMENT_NS` when
that says loops run, capped at :data:`LOOP_CAP` times its statements; ``B``: ``S`` times its
decisions per statement). The baseline is the program's plain wall time, measured by ``plan --
COMMAND`` (or given; else estimated as the time of the recorded root calls less the recording's own
predicted cost). A budget ``R`` allows ``(R - 1) * baseline``; the recording's **fixed cost** (what a
run recording nothing costs over plain: the recorder and its store starting and stopping; measured
likewise, else 0) comes out of it first and is part of the prediction, and a ``headroom`` fraction of
the rest stays unspent for run-to-run noise. Recording anything in a module costs once more, mostly
rewriting it at import (a plan leaves a module where it records nothing as written): what recording
anything in every module cost (measured: a run gating every call, less a run recording nothing and
the gate's modelled cost) is shared among the modules by their CPG node counts, and a module's share
is paid by the first function the plan records in it (:func:`module_costs`, :func:`choose`).

Its value is ``importance * information(L) * coverage(r)``: importance grows with complexity
(``log2(1 + cyclomatic)``), with errors (any error: +1.5, up to +3 at a 10% error rate), with branch
entropy (mean bits per decision) and with a recent change (+2); information is 1 for calls, up to 2.5
for branches (by entropy; only with decisions), up to 1 more for statements; coverage is 0.8 times the
recorded calls over :data:`ENOUGH_CALLS` (at most 1: a hot function at a low rate still shows enough
calls) plus 0.2 times the rate (beyond enough calls, more add a little: a loose budget records all).

The choice is a multiple-choice knapsack, solved greedily on each function's convex hull of
(cost, value) choices: hull increments taken by value per nanosecond, best first, while they fit
(the LP relaxation's solution without its one fractional item, Sinha & Zoltners 1979; within one
increment's value of the optimum).
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from execscope.instrumentation.rewrite.plan import (
    BRANCHES,
    FUNCTIONS,
    LEVEL_NAMES,
    OFF,
    STATEMENTS,
    Plan,
    Rule,
    Setting,
)
from execscope.storage.store import Store

RATES = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
ENOUGH_CALLS = 20.0      # recorded calls of a function beyond which more add no value
PLAIN_STATEMENT_NS = 40.0  # a simple statement's time in plain CPython, to read loops from self time
LOOP_CAP = 1000.0        # estimated statement events per call at most this times its statements


@dataclass(frozen=True, slots=True)
class CostModel:
    """What recording costs, per unit, in nanoseconds of wall time (see the module docstring).
    Defaults: ``bench_plan_costs.py --repeat 3`` on CPython 3.11, native capture core, 2 cores.

    The first six are the program's own CPU time: a recorded call, a branch event, a statement event
    (each beyond the plain code), a call a plan's rate leaves out, a call adaptive sampling leaves
    out and counts on its recorded caller, and, per event it would have recorded, the hooks such a
    call still runs (adaptive sampling decides inside the call; a rate's gate runs the original code
    of a leaf function, but the rewritten one of a function defining others). Storing
    (``stored_*``: the drain's CPU per span and per event, in ``execscope run``'s own process) runs
    beside the program; ``storing_share`` is the part of it the program waits for: about 0 with an
    idle core for it (the default), 1 or more on a machine with none.

    ``scale``: what this program's recorded calls, events and hooks cost over what the model's
    figures (from the micro benchmark) predict: a real program's calls carry arguments to snapshot
    and exceptions to record, and its hooks run among its own code. Measured by ``execscope plan --
    COMMAND`` from the profile's cost over a run recording nothing (:func:`profile_scale`).
    ``calibration``: what a plan's functions cost over what the scaled model predicts for them,
    measured by running a first plan (:func:`calibration_scale`); it multiplies every function's
    cost (:func:`cost_ns`), gates included. Neither touches the fixed and per-module costs, which are
    measured directly."""

    call_ns: float = 800.0        # measured 500 and 816 in two runs of 3 (2026-12-05)
    branch_event_ns: float = 480.0     # measured 491, 459
    statement_event_ns: float = 640.0  # measured 671, 612
    skipped_call_ns: float = 97.0      # measured 98, 97: the truth test and plan_keep
    counted_call_ns: float = 170.0     # measured 173, 168: a FrameObject and a count on the caller
    unrecorded_event_ns: float = 15.0  # measured 15: a statement hook of a call left out, doing nothing
    stored_span_ns: float = 4500.0     # measured 4548, 4440 (the drain's CPU: the C converter)
    stored_event_ns: float = 1300.0    # measured 1304, 1309
    storing_share: float = 0.0
    scale: float = 1.0        # this program's recorded calls, events and hooks over the figures above
    calibration: float = 1.0  # a plan's functions, measured, over what the scaled model predicts

    @property
    def modelled_span_ns(self) -> float:
        """One recorded call by the figures: recording it and the waited-for share of storing it."""
        return self.call_ns + self.storing_share * self.stored_span_ns

    @property
    def span_ns(self) -> float:
        """One recorded call in this program: the figures' cost, scaled."""
        return self.modelled_span_ns * self.scale

    @property
    def event_store_ns(self) -> float:
        return self.storing_share * self.stored_event_ns


PROFILE_SCALE_BOUNDS = (0.5, 50.0)  # the profile's measured cost over its modelled cost


def profile_scale(measured_ns: float, modelled_ns: float) -> float:
    """What the profile's recording cost the program (``measured_ns``, over a run recording nothing)
    over what the model's figures predict for it (``modelled_ns``: :func:`profile_cost_ns`): the
    whole difference is shared by every cost in proportion, not laid on one of them (the hooks of the
    tens of millions of calls a profile counts, and not the thousands it records, are most of it on a
    call-heavy suite). Within :data:`PROFILE_SCALE_BOUNDS` (the difference of two wall times is
    noisy); 1 when the model predicts nothing."""
    if modelled_ns <= 0:
        return 1.0
    low, high = PROFILE_SCALE_BOUNDS
    return max(low, min(high, measured_ns / modelled_ns))


def profile_volume(profiles: Sequence[FunctionProfile]) -> dict[str, float]:
    """What the profile recorded and counted: its recorded calls (``spans``) with their branch and
    statement events, the calls adaptive sampling counted, and the hooks those counted calls still
    ran (``counted_hooks``: one per event they would have recorded)."""
    spans = sum(p.recorded_calls for p in profiles)
    return {"spans": spans,
            "branch_events": sum((p.branch_events or 0.0) * p.recorded_calls for p in profiles),
            "statement_events": sum((p.statement_events or 0.0) * p.recorded_calls for p in profiles),
            "counted_calls": sum(p.calls for p in profiles) - spans,
            "counted_hooks": sum((p.calls - p.recorded_calls) * ((p.branch_events or 0.0) + (p.statement_events or 0.0))
                                 for p in profiles)}


def profile_cost_ns(volume: Mapping[str, float], model: CostModel) -> tuple[float, dict[str, float]]:
    """What the model's figures (unscaled) predict a profile of ``volume`` (:func:`profile_volume`)
    cost, and its parts, by the same keys."""
    per_unit = {"spans": model.modelled_span_ns,
                "branch_events": model.branch_event_ns + model.event_store_ns,
                "statement_events": model.statement_event_ns + model.event_store_ns,
                "counted_calls": model.counted_call_ns,
                "counted_hooks": model.unrecorded_event_ns}
    parts = {k: volume[k] * ns for k, ns in per_unit.items()}
    return sum(parts.values()), parts


@dataclass(frozen=True, slots=True)
class FunctionProfile:
    """One function as the recording and the CPG see it."""

    node_id: str
    name: str                 # module.qualname
    calls: int
    self_ns: int              # in the recording, which included its own recording cost
    errors: int = 0
    cyclomatic: int = 1
    statements: int = 1
    entropy: float = 0.0      # mean bits per decision over recorded branch events (0: none recorded)
    changed: bool = False     # differs from an older recorded code version of it
    branch_events: float | None = None     # measured per call (None: estimate)
    statement_events: float | None = None  # measured per call (None: estimate)
    recorded: int | None = None  # calls recorded as spans (the rest counted by adaptive sampling); None: all
    leaf: bool = True  # defines no function or class: a call a rate leaves out runs its original code

    @property
    def recorded_calls(self) -> int:
        """Its calls recorded as spans (the others were counted by adaptive sampling)."""
        return self.calls if self.recorded is None else self.recorded

    @property
    def module(self) -> str:
        return self.node_id.split(":", 1)[0]

    @property
    def decisions(self) -> int:
        return max(0, self.cyclomatic - 1)

    def events_per_call(self, level: int, model: CostModel) -> tuple[float, float]:
        """(branch events, statement events) one call records at ``level``."""
        if level < BRANCHES:
            return 0.0, 0.0
        stmts = self.statement_events
        if stmts is None:
            plain_ns = max(0.0, self.self_ns / max(1, self.calls) - model.span_ns)  # the program's own CPU
            stmts = min(max(float(self.statements), plain_ns / PLAIN_STATEMENT_NS), LOOP_CAP * self.statements)
        branches = self.branch_events
        if branches is None:
            branches = stmts * self.decisions / max(1, self.statements)
        return branches, (stmts if level >= STATEMENTS else 0.0)


def importance(p: FunctionProfile) -> float:
    """How much a person debugging wants to see this function (see the module docstring)."""
    score = 1.0 + math.log2(1 + p.cyclomatic) + p.entropy
    if p.errors:
        score += 1.5 + 1.5 * min(1.0, 10.0 * p.errors / max(1, p.calls))
    if p.changed:
        score += 2.0
    return score


def information(p: FunctionProfile, level: int) -> float:
    """What a level shows of one call of ``p`` (see the module docstring)."""
    if level == OFF:
        return 0.0
    info = 1.0
    if level >= BRANCHES and p.decisions:
        info += 0.5 + min(1.0, p.entropy)
    if level >= STATEMENTS:
        info += 0.5 + 0.5 * min(1.0, p.statements / 10)
    return info


def kept_calls(calls: int, rate: float) -> int:
    """How many of ``calls`` calls a plan's ``rate`` records: ``runtime.plan_keep`` keeps the first
    and then one whenever its credit reaches one, ``floor(1 + (calls - 1) * rate)`` of them."""
    if calls <= 0 or rate <= 0.0:
        return 0
    if rate >= 1.0:
        return calls
    return min(calls, math.floor(1.0 + (calls - 1) * rate + 1e-9))


def cost_ns(p: FunctionProfile, setting: Setting, model: CostModel) -> float:
    """Predicted recording cost of ``p`` under ``setting`` over the recorded run, in nanoseconds."""
    if not setting.records:
        return 0.0
    branches, statements = p.events_per_call(setting.level, model)
    per_call = (model.modelled_span_ns + branches * (model.branch_event_ns + model.event_store_ns)
                + statements * (model.statement_event_ns + model.event_store_ns))
    kept = kept_calls(p.calls, setting.rate)
    if setting.rate >= 1.0:
        return kept * per_call * model.scale * model.calibration
    skipped = model.skipped_call_ns  # the gate: measured apart (a run gating every call)
    if not p.leaf:  # left out, it runs its rewritten body: every hook, recording nothing
        skipped += (branches + statements) * model.unrecorded_event_ns * model.scale
    return (kept * per_call * model.scale + (p.calls - kept) * skipped) * model.calibration


def value(p: FunctionProfile, setting: Setting) -> float:
    if not setting.records:
        return 0.0
    coverage = 0.8 * min(1.0, kept_calls(p.calls, setting.rate) / ENOUGH_CALLS) + 0.2 * setting.rate
    return importance(p) * information(p, setting.level) * coverage


@dataclass(frozen=True, slots=True)
class Choice:
    setting: Setting
    cost_ns: float
    value: float


def _settings(choices: Mapping[str, Choice]) -> dict[str, Setting]:
    return {node: c.setting for node, c in choices.items()}


Worth = Callable[[FunctionProfile, Setting], float]  # what a setting of a function is worth to a plan


def _hull(p: FunctionProfile, model: CostModel, worth: Worth = value) -> list[Choice]:
    """Choices of ``p`` on the upper convex hull of (cost, worth), from OFF, cost increasing."""
    options = [Choice(Setting(level, rate), cost_ns(p, Setting(level, rate), model), worth(p, Setting(level, rate)))
               for level in (FUNCTIONS, BRANCHES, STATEMENTS) for rate in RATES]
    options.sort(key=lambda c: (c.cost_ns, -c.value))
    hull = [Choice(Setting(OFF, 1.0), 0.0, 0.0)]
    for c in options:
        if c.value <= hull[-1].value:
            continue  # dominated: costs as much or more for no more value
        if c.cost_ns <= hull[-1].cost_ns:  # free more value (cost 0): replaces the last point
            hull[-1] = c
            continue
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (b.value - a.value) * (c.cost_ns - a.cost_ns) <= (c.value - a.value) * (b.cost_ns - a.cost_ns):
                hull.pop()  # b lies under the chord a-c: never the greedy's pick
            else:
                break
        hull.append(c)
    return hull


def choose(profiles: Sequence[FunctionProfile], allowed_ns: float, model: CostModel,
           module_ns: Mapping[str, float] | None = None, worth: Worth = value) -> dict[str, Choice]:
    """Per function (node ID) the chosen setting; the predicted total cost is at most ``allowed_ns``.

    ``module_ns``: what recording anything in a module costs, once (rewriting it at import: a module
    where nothing is recorded is left as written). Greedy by value per nanosecond over two kinds of
    candidate: the next hull step of a function whose module is recorded in already, and, per module
    not yet recorded in, its opening: the first steps of some of its functions (the prefix, by their
    own value per nanosecond, whose value over cost with the module's cost added is best), so that a
    module is opened for what all it offers, not for its best function alone. ``worth``: what the
    plan maximises (default: debugging :func:`value`)."""
    module_ns = module_ns or {}
    hulls = {p.node_id: _hull(p, model, worth) for p in profiles}
    members: dict[str, list[str]] = defaultdict(list)
    for p in profiles:
        members[p.module].append(p.node_id)
    at = dict.fromkeys(hulls, 0)
    opened: set[str] = set()
    spent = 0.0
    for module, nodes in members.items():
        spent += sum(hulls[n][0].cost_ns for n in nodes)
        if any(hulls[n][0].setting.records for n in nodes):
            opened.add(module)
            spent += module_ns.get(module, 0.0)

    def step(node: str) -> tuple[float, float, float] | None:
        """(value per ns, cost, value) of ``node``'s next hull step; None at its end."""
        hull, i = hulls[node], at[node] + 1
        if i >= len(hull):
            return None
        dc, dv = hull[i].cost_ns - hull[i - 1].cost_ns, hull[i].value - hull[i - 1].value
        return (math.inf if dc <= 0 else dv / dc), dc, dv

    def opening(module: str, room: float) -> tuple[float, float, list[str]] | None:
        """(value per ns, cost, functions) of the best opening of ``module`` that fits ``room``."""
        firsts = sorted(((*st, n) for n in members[module] if (st := step(n)) is not None and st[2] > 0),
                        key=lambda f: (-f[0], f[3]))
        best: tuple[float, float, list[str]] | None = None
        cost, val = module_ns.get(module, 0.0), 0.0
        for k, (_eff, dc, dv, _n) in enumerate(firsts):
            cost, val = cost + dc, val + dv
            if cost > room:
                break
            eff = math.inf if cost <= 0 else val / cost
            if best is None or eff > best[0]:
                best = (eff, cost, [f[3] for f in firsts[:k + 1]])
        return best

    heap: list[tuple[float, str]] = []
    for module in opened:
        for node in members[module]:
            if (st := step(node)) is not None:
                heapq.heappush(heap, (-st[0], node))
    closed = sorted(set(members) - opened)
    while True:
        room = allowed_ns - spent
        while heap:  # the best step of a recorded-in module that fits (one that does not fit never will)
            _neg, node = heap[0]
            st = step(node)
            if st is not None and st[1] <= room:
                break
            heapq.heappop(heap)
        best_open = max(((o, m) for m in closed if (o := opening(m, room)) is not None),
                        key=lambda om: (om[0][0], om[1]), default=None)
        if heap and (best_open is None or -heap[0][0] >= best_open[0][0]):
            _neg, node = heapq.heappop(heap)
            st = step(node)
            assert st is not None
            spent += st[1]
            at[node] += 1
            if (nxt := step(node)) is not None:
                heapq.heappush(heap, (-nxt[0], node))
            continue
        if best_open is None:
            break
        (_eff, cost, nodes), module = best_open
        spent += cost
        opened.add(module)
        closed.remove(module)
        for node in nodes:
            at[node] += 1
        for node in members[module]:
            if (st := step(node)) is not None:
                heapq.heappush(heap, (-st[0], node))
    return {node: hulls[node][i] for node, i in at.items()}


MODULE_NODES_SQL = "SELECT module, toUInt64(uniqExact(node_id)) FROM cpg_nodes GROUP BY module"
MODULE_FILES_SQL = ("SELECT module, argMax(file, inserted_at), argMax(code_version, inserted_at) "
                    "FROM cpg_sources GROUP BY module")


def module_files(store: Store) -> dict[str, tuple[str, str]]:
    """Per module of the store's CPG, the file and code version it was last recorded from."""
    return {str(m): (str(f), str(v)) for m, f, v in store.query(MODULE_FILES_SQL).rows}


def module_costs(store: Store, recording_ns: float) -> dict[str, float]:
    """What recording anything in each module of the store's CPG costs: ``recording_ns`` (what
    recording anything in every module cost, measured) shared by their node counts, rewriting being
    most of it (a module where nothing is recorded is left as written). Assumes the CPG holds the
    program's modules (the store of its recordings)."""
    sizes = {str(m): int(n) for m, n in store.query(MODULE_NODES_SQL).rows}
    total = sum(sizes.values())
    return {m: recording_ns * n / total for m, n in sizes.items()} if total else {}


@dataclass
class PlanResult:
    """A plan with what it is predicted to do."""

    plan: Plan
    budget: float
    baseline_ns: float
    predicted_ns: float
    profiles: list[FunctionProfile]
    choices: dict[str, Choice]
    uniform_rate: float = 1.0          # the statements-level rate of every function that costs as much
    notes: list[str] = field(default_factory=list)
    fixed_ns: float = 0.0              # part of predicted_ns: the recording's cost before any recorded call
    model: CostModel = field(default_factory=CostModel)  # the model the plan was made with
    most_statement_events: float = 0.0  # what a plan maximising statement events alone records (model)
    nothing_recorded: str | None = None  # why the plan records nothing, and what budget would (None: it records)

    @property
    def predicted_ratio(self) -> float:
        return 1.0 + self.predicted_ns / self.baseline_ns if self.baseline_ns > 0 else math.inf

    @property
    def statement_events(self) -> float:
        """The statement events the plan is predicted to record over the run."""
        return statement_events(self.profiles, _settings(self.choices), self.model)

    @property
    def variable_ns(self) -> float:
        """The predicted cost of the plan's functions (calls, events, gates): beyond the fixed cost."""
        return self.predicted_ns - self.fixed_ns

    def rows(self) -> list[tuple]:
        """(function, calls, level, rate, predicted overhead ms, value) per function, costliest first."""
        out = []
        for p in self.profiles:
            c = self.choices[p.node_id]
            out.append((p.name, p.calls, c.setting.level_name, c.setting.rate, round(c.cost_ns / 1e6, 3),
                        round(c.value, 2)))
        out.sort(key=lambda r: (-r[4], r[0]))
        return out

    def summary(self) -> dict[str, object]:
        levels: dict[str, int] = defaultdict(int)
        for c in self.choices.values():
            levels[c.setting.level_name] += 1
        return {"budget": self.budget, "baseline_s": round(self.baseline_ns / 1e9, 4),
                "fixed_s": round(self.fixed_ns / 1e9, 4), "span_ns": round(self.model.span_ns, 1),
                "scale": round(self.model.scale, 4), "calibration": round(self.model.calibration, 4),
                "skipped_call_ns": round(self.model.skipped_call_ns, 1),
                "counted_call_ns": round(self.model.counted_call_ns, 1),
                "predicted_overhead": round(self.predicted_ratio, 4),
                "statement_events_at_most": round(self.most_statement_events),
                "functions": len(self.profiles), "levels": {k: levels.get(k, 0) for k in LEVEL_NAMES},
                **({"nothing_recorded": self.nothing_recorded} if self.nothing_recorded else {}),
                "sampled": sum(1 for c in self.choices.values() if c.setting.level and c.setting.rate < 1)}


PROFILE_SQL = """
SELECT t.NodeId AS node_id, any(t.SpanName) AS name, toUInt64(count()) AS calls,
       toUInt64(sum(t.Duration - least(t.ChildNs, t.Duration))) AS self_ns,
       toUInt64(countIf(t.StatusCode = 'STATUS_CODE_ERROR')) AS errors,
       argMax(t.CodeVersion, t.Timestamp) AS version
FROM otel_traces AS t
WHERE t.NodeId IN (SELECT node_id FROM cpg_nodes WHERE kind = 'function')
GROUP BY t.NodeId
"""

UNRECORDED_SQL = """
SELECT substring(k, 22) AS node_id, sum(toUInt64OrZero(SpanAttributes[k])) AS calls
FROM otel_traces ARRAY JOIN mapKeys(SpanAttributes) AS k
WHERE startsWith(k, 'execscope.unrecorded.')
GROUP BY node_id
"""

# the statement events of those calls (execscope.unrecorded_events.<node>; recordings before it lack them)
UNRECORDED_EVENTS_SQL = """
SELECT substring(k, 29) AS node_id, sum(toUInt64OrZero(SpanAttributes[k])) AS events
FROM otel_traces ARRAY JOIN mapKeys(SpanAttributes) AS k
WHERE startsWith(k, 'execscope.unrecorded_events.')
GROUP BY node_id
"""

FUNCTIONS_SQL = """
SELECT node_id, code_version, cyclomatic, statements, cfg_edges, end_line - line AS span_lines,
       inserted_at
FROM cpg_functions FINAL
WHERE node_id IN (SELECT DISTINCT NodeId FROM otel_traces WHERE NodeId != '')
"""

# functions that define others (a nested function's or class's method's qualname extends theirs)
NON_LEAF_SQL = """
SELECT DISTINCT f.node_id
FROM cpg_functions AS f
INNER JOIN cpg_functions AS g ON f.module = g.module AND f.code_version = g.code_version
WHERE startsWith(g.qualname, concat(f.qualname, '.'))
  AND f.node_id IN (SELECT DISTINCT NodeId FROM otel_traces WHERE NodeId != '')
"""

ARMS_SQL = """
SELECT s.NodeId AS function, e.NodeId AS arm, toUInt64(count()) AS n, uniqExact(e.SpanId) AS spans
FROM execscope_events AS e
INNER JOIN (SELECT DISTINCT SpanId, NodeId FROM otel_traces WHERE NodeId != '') AS s ON e.SpanId = s.SpanId
WHERE e.EventName = 'execscope.branch'
GROUP BY function, arm
"""

# statements-level events: each line run, and each assignment's value (what bench_plan_costs' cost
# per statement event is measured over)
STATEMENT_EVENTS_SQL = """
SELECT s.NodeId AS function, toUInt64(count()) AS n, uniqExact(e.SpanId) AS spans
FROM execscope_events AS e
INNER JOIN (SELECT DISTINCT SpanId, NodeId FROM otel_traces WHERE NodeId != '') AS s ON e.SpanId = s.SpanId
WHERE e.EventName IN ('execscope.line', 'execscope.assign')
GROUP BY function
"""

ROOTS_SQL = """
SELECT toUInt64(sum(Duration)) FROM otel_traces
WHERE NodeId != '' AND ParentSpanId NOT IN (SELECT SpanId FROM otel_traces WHERE NodeId != '')
"""


def _entropy(counts: Iterable[int]) -> float:
    counts = [c for c in counts if c]
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts) if total else 0.0


def profile_functions(store: Store) -> list[FunctionProfile]:
    """Every recorded function with its calls, time, errors, CPG facts, branch entropy and measured
    events per call (see the module docstring)."""
    unrecorded = {r[0]: int(r[1]) for r in store.query(UNRECORDED_SQL).rows}
    cpg: dict[str, list[tuple]] = defaultdict(list)
    for row in store.query(FUNCTIONS_SQL).rows:
        cpg[row[0]].append(row[1:])
    decisions: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    branch_events: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for function, arm, n, spans in store.query(ARMS_SQL).rows:
        owner, _, label = str(arm).rpartition(".")
        decisions[function][owner][label] = int(n)
        branch_events[function][0] += int(n)
        branch_events[function][1] = max(branch_events[function][1], int(spans))
    unrecorded_events = {r[0]: int(r[1]) for r in store.query(UNRECORDED_EVENTS_SQL).rows}
    # over every call where the calls adaptive sampling left out had their events counted; else over the
    # recorded ones (which the events' own budget biases to a test's first calls: more-itertools'
    # convolve, 125 statement events a recorded call, 1,894 over all of them)
    statements_per_call = {
        r[0]: (int(r[1]) + unrecorded_events[r[0]]) / max(1, int(r[2]) + unrecorded.get(r[0], 0))
        if r[0] in unrecorded_events else int(r[1]) / max(1, int(r[2]))
        for r in store.query(STATEMENT_EVENTS_SQL).rows}
    non_leaf = {r[0] for r in store.query(NON_LEAF_SQL).rows}
    profiles = []
    for node, name, calls, self_ns, errors, version in store.query(PROFILE_SQL).rows:
        recorded = int(calls)
        total_calls = recorded + unrecorded.get(node, 0)
        versions = cpg.get(node, [])
        ran = next((v for v in versions if v[0] == version), versions[-1] if versions else None)
        shape = {tuple(v[1:5]) for v in versions}
        arms = decisions.get(node, {})
        be = branch_events.get(node)
        profiles.append(FunctionProfile(
            node_id=node, name=name, calls=total_calls, recorded=recorded,
            self_ns=int(int(self_ns) * total_calls / max(1, recorded)), errors=int(errors),
            cyclomatic=int(ran[1]) if ran else 1, statements=max(1, int(ran[2]) if ran else 1),
            entropy=sum(_entropy(a.values()) for a in arms.values()) / len(arms) if arms else 0.0,
            changed=len(shape) > 1,
            branch_events=be[0] / max(1, be[1]) if be else None, statement_events=statements_per_call.get(node),
            leaf=node not in non_leaf))
    profiles.sort(key=lambda p: p.node_id)
    return profiles


SCALE_BOUNDS = (0.25, 4.0)  # a calibration's scale: beyond these, the difference of two wall times is noise


def calibration_scale(measured_ns: float, fixed_ns: float, variable_ns: float) -> float:
    """What a plan's functions cost the program over the model's prediction: ``measured_ns`` (a run
    under the plan less the baseline) less the plan's ``fixed_ns``, over its predicted ``variable_ns``
    (:attr:`PlanResult.variable_ns`). Within :data:`SCALE_BOUNDS`; 1 when the plan records nothing."""
    if variable_ns <= 0:
        return 1.0
    low, high = SCALE_BOUNDS
    return max(low, min(high, (measured_ns - fixed_ns) / variable_ns))


@dataclass(frozen=True, slots=True)
class Calibration:
    """A first plan measured against plain runs (``plan -- COMMAND``), and what it makes of the model.

    ``baseline_ns``: the median of every plain run (the profile's and the calibration's);
    ``fixed_ns``: what recording costs before its first call now (the run recording nothing, over that
    baseline); ``first_fixed_ns``: the first plan's share of it (its modules) at that cost;
    ``measured_ns``: the first plan's median run over the baseline; ``scale``: what its functions cost
    over their prediction (:func:`calibration_scale`), the next plan's :attr:`CostModel.calibration`."""

    baseline_ns: float
    fixed_ns: float
    first_fixed_ns: float
    measured_ns: float
    scale: float
    first_predicted_ns: float          # the first plan's predicted cost: its fixed share and functions
    first_predicted_statement_events: float
    first_statement_events: float      # the median of what its runs stored
    runs: int

    @classmethod
    def of(cls, first: PlanResult, profile_fixed_ns: float, plain_ns: Sequence[float],
           fixed_now: Callable[[float], float], planned_ns: float, statement_events: float,
           runs: int) -> Calibration:
        """``first``: the plan made from the profile alone, with ``profile_fixed_ns`` as the fixed cost;
        ``plain_ns``: every plain run; ``fixed_now``: the fixed cost over a baseline (see
        :meth:`execscope.plan_runs.MeasuredRuns.fixed_ns_over`); ``planned_ns``: the runs under
        ``first`` (median), which stored ``statement_events`` (median)."""
        baseline = float(statistics.median(plain_ns))
        fixed = fixed_now(baseline)
        first_fixed = first.fixed_ns - profile_fixed_ns + fixed
        measured = planned_ns - baseline
        return cls(baseline_ns=baseline, fixed_ns=fixed, first_fixed_ns=first_fixed, measured_ns=measured,
                   scale=calibration_scale(measured, first_fixed, first.variable_ns),
                   first_predicted_ns=first_fixed + first.variable_ns,
                   first_predicted_statement_events=first.statement_events,
                   first_statement_events=statement_events, runs=runs)

    def summary(self) -> dict[str, float]:
        """``plan --format json``'s ``calibration_run``: overheads as ratios over the baseline."""
        return {"first_predicted_overhead": round(1.0 + self.first_predicted_ns / self.baseline_ns, 4),
                "first_measured_overhead": round(1.0 + self.measured_ns / self.baseline_ns, 4),
                "scale": round(self.scale, 4),
                "first_predicted_statement_events": round(self.first_predicted_statement_events),
                "first_statement_events": round(self.first_statement_events)}

    def note(self) -> str:
        """The plan file's comment line saying what the calibration measured and did."""
        s = self.summary()
        return (f"calibrated: the first plan, predicted at {s['first_predicted_overhead']}x, measured "
                f"{s['first_measured_overhead']}x (median of {self.runs} runs, each beside a plain run) and "
                f"stored {s['first_statement_events']} statement events (predicted "
                f"{s['first_predicted_statement_events']}): its functions cost {self.scale:.3f}x their predicted "
                f"cost, and this plan is made with the model's per-function costs scaled so")


def allowed_ns(budget: float, baseline_ns: float, fixed_ns: float = 0.0) -> float:
    """What the plan's recorded calls may cost, in nanoseconds: the budget's share of the baseline
    (``(budget - 1) * baseline``) less the fixed cost, which every plan pays first; never below 0."""
    return max(0.0, (budget - 1.0) * baseline_ns - fixed_ns)


def make_plan(store: Store, budget: float, model: CostModel | None = None,
              baseline_ns: float | None = None, fixed_ns: float = 0.0, headroom: float = 0.0,
              profile_ns: float | None = None, skipping_ns: float | None = None,
              rewritten_ahead: Collection[str] = ()) -> PlanResult:
    """The plan for the recording in ``store`` under overhead ratio ``budget`` (>= 1: 1.3 allows the
    program 30% more time). ``baseline_ns``: the program's plain run time (measured by ``plan --
    COMMAND``; else estimated from the recording). ``fixed_ns``: what recording costs the program
    before its first recorded call (measured likewise; else 0): it comes out of the budget first, and
    is part of the predicted overhead. ``headroom``: the fraction of what is left that stays unspent
    (0..1), for the run-to-run noise of the program's own time. ``profile_ns``: what the
    recording in the store cost the program over a run recording nothing (measured
    likewise): over its modelled cost, it scales what calls and events cost this program
    (:func:`profile_scale`: ``model.scale``).
    ``skipping_ns``: what passing every call through a plan's rate gate, recording each function's first
    call only, cost over recording nothing (likewise): beyond the gate's modelled cost it is what
    recording anything costs (a fixed cost, part of the prediction when the plan records anything),
    shared among the modules (:func:`module_costs`), except ``rewritten_ahead``: modules the caller
    rewrites into the rewrite cache for the plan before its first run, whose share is then not paid.
    Raises ValueError when the store holds no recorded function."""
    if budget < 1.0:
        raise ValueError(f"the budget is a ratio of run times, at least 1 (1.3: 30% more), got {budget}")
    model = model or CostModel()
    profiles = profile_functions(store)
    if not profiles:
        raise ValueError("the store holds no recorded function calls: record the program at --level functions "
                         "first (execscope run --include ... -- COMMAND)")
    notes = []
    recording_fixed_ns = 0.0  # what recording anything at all costs, beyond recording nothing
    module_ns: dict[str, float] = {}
    if skipping_ns is not None:
        calls = sum(p.calls for p in profiles)
        gated_ns = calls * model.skipped_call_ns
        recording_fixed_ns = max(0.0, skipping_ns - gated_ns)
        shares = module_costs(store, recording_fixed_ns)
        module_ns = {m: 0.0 if m in rewritten_ahead else ns for m, ns in shares.items()}
        costly = ", ".join(f"{m} {ns / 1e9:.3f}s" for m, ns in sorted(shares.items(), key=lambda kv: -kv[1])[:3])
        ahead = sum(1 for m in shares if m in rewritten_ahead)
        notes.append(f"passing its {calls} calls through a rate gate and recording each function's first call "
                     f"cost {skipping_ns / 1e9:.3f}s: {gated_ns / 1e9:.3f}s the gate at {model.skipped_call_ns:.0f} "
                     f"ns a call, the rest what recording anything costs ({recording_fixed_ns / 1e9:.3f}s: mostly "
                     f"rewriting the modules at import; paid per module recorded in, by its size: {costly}, ...; "
                     f"not paid for the {ahead} of {len(shares)} modules rewritten ahead of the plan's first run)")
    if profile_ns is not None:
        volume = profile_volume(profiles)
        modelled_ns, parts = profile_cost_ns(volume, model)
        measured = profile_scale(profile_ns, modelled_ns)  # measured with its rewrite cached: no module cost
        model = replace(model, scale=measured)
        split = ", ".join(f"{k.replace('_', ' ')} {v / 1e9:.3f}s" for k, v in parts.items())
        notes.append(f"the profile ({round(volume['spans'])} calls recorded with {round(volume['branch_events'])} "
                     f"branch and {round(volume['statement_events'])} statement events, "
                     f"{round(volume['counted_calls'])} calls counted) cost "
                     f"{profile_ns / 1e9:.3f}s over a run recording nothing, where the model's figures say "
                     f"{modelled_ns / 1e9:.3f}s ({split}): this program's costs are {measured:.3f}x the figures, "
                     f"{model.span_ns:.0f} ns per recorded call")
    if baseline_ns is None:
        roots = int(store.query(ROOTS_SQL).rows[0][0] or 0)
        own = sum(p.calls for p in profiles) * model.call_ns
        baseline_ns = max(roots - own, 0.1 * roots, 1.0)
        notes.append(f"baseline {baseline_ns / 1e9:.3f}s: recorded root calls {roots / 1e9:.3f}s less the "
                     f"recording's own predicted cost")
    if not 0.0 <= headroom < 1.0:
        raise ValueError(f"the headroom is a fraction of the allowance, 0 <= headroom < 1, got {headroom}")
    allowed = allowed_ns(budget, baseline_ns, fixed_ns) * (1.0 - headroom)
    if fixed_ns:
        notes.append(f"fixed cost {fixed_ns / 1e9:.3f}s (recorder and its store starting and stopping) before any "
                     f"recorded call")
    choices = choose(profiles, allowed, model, module_ns)
    opened = sorted({p.module for p in profiles if choices[p.node_id].setting.records})
    nothing = None
    if opened:
        fixed_ns += sum(module_ns.get(m, 0.0) for m in opened)  # paid once the plan records in them
    else:
        nothing = why_nothing_is_recorded(profiles, budget, baseline_ns, fixed_ns, headroom, model, module_ns)
        notes.append(nothing)
    predicted = fixed_ns + sum(c.cost_ns for c in choices.values())
    # modules where nothing is recorded are left as written (default off); in the others, a function
    # the profile never saw called is recorded at functions level
    rules = (*(Rule(p.node_id, choices[p.node_id].setting) for p in profiles),
             *(Rule(m, Setting(FUNCTIONS, 1.0)) for m in opened))
    plan = Plan(default=Setting(OFF, 1.0), rules=rules, include=tuple(sorted({p.module for p in profiles})))
    # the most statement events any plan records within the same allowance, by the model: the
    # knapsack maximising them alone (what a plan giving up debugging value for them could reach)
    most = choose(profiles, allowed, model, module_ns, worth=statement_events_worth(model))
    return PlanResult(plan, budget, baseline_ns, predicted, profiles, choices,
                      uniform_rate=uniform_statements_rate(profiles, max(0.0, allowed - sum(module_ns.values())),
                                                           model),
                      notes=notes, fixed_ns=fixed_ns, model=model,
                      most_statement_events=statement_events(profiles, _settings(most), model),
                      nothing_recorded=nothing)


def why_nothing_is_recorded(profiles: Sequence[FunctionProfile], budget: float, baseline_ns: float,
                            fixed_ns: float, headroom: float, model: CostModel,
                            module_ns: Mapping[str, float]) -> str:
    """Why a plan records nothing, and the budget at which it would record something (by the model):
    the fixed cost alone over the budget (a short program: starting and stopping the recorder and
    its store costs a fraction of a second, whatever is recorded), or the cheapest function with
    its module's cost over what the budget leaves."""
    def cheapest_ns(p: FunctionProfile) -> float:
        return module_ns.get(p.module, 0.0) + min((c.cost_ns for c in _hull(p, model)[1:]), default=0.0)

    least = min((cheapest_ns(p) for p in profiles), default=0.0)
    allowed = allowed_ns(budget, baseline_ns, fixed_ns) * (1.0 - headroom)
    needed = 1.0 + (fixed_ns + least / (1.0 - headroom)) / baseline_ns  # its allowance fits that function
    if allowed <= 0 < fixed_ns:
        return (f"nothing is recorded: the fixed cost alone, {fixed_ns / 1e9:.3f}s (the recorder and its store "
                f"starting and stopping), is {1.0 + fixed_ns / baseline_ns:.3f}x of the program's "
                f"{baseline_ns / 1e9:.3f}s, over the budget {budget}x; a budget of {needed:.3f}x records its "
                f"cheapest function")
    return (f"nothing is recorded: recording anything costs at least {least / 1e9:.3f}s (its module rewritten, one "
            f"function recorded), beyond the budget's {allowed / 1e9:.3f}s left; a budget of {needed:.3f}x "
            f"records it")


def uniform_statements_rate(profiles: Sequence[FunctionProfile], allowed_ns: float, model: CostModel) -> float:
    """The one rate at which recording every function at ``statements`` costs ``allowed_ns`` by the
    model (the uniform sampling a plan is compared with), within 0..1."""
    def cost(rate: float) -> float:
        return sum(cost_ns(p, Setting(STATEMENTS, rate), model) for p in profiles)

    if cost(1.0) <= allowed_ns:
        return 1.0
    low, high = 0.0, 1.0  # cost(rate) rises with the rate (each function's first call is always kept)
    if cost(1e-12) > allowed_ns:
        return 0.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cost(mid) <= allowed_ns else (low, mid)
    return low


STATEMENT_EVENTS_STORED_SQL = ("SELECT toUInt64(count()) FROM execscope_events "
                               "WHERE EventName IN ('execscope.line', 'execscope.assign')")


def stored_statement_events(store: Store) -> int:
    """Statement events (lines and assignments) in the store, every run's."""
    return int(store.query(STATEMENT_EVENTS_STORED_SQL).rows[0][0] or 0)


def statement_events_worth(model: CostModel) -> Worth:
    """A setting's statement events over the run: what a plan recording the most of them maximises."""
    def worth(p: FunctionProfile, setting: Setting) -> float:
        if not setting.records or setting.level < STATEMENTS:
            return 0.0
        return kept_calls(p.calls, setting.rate) * p.events_per_call(STATEMENTS, model)[1]
    return worth


def statement_events(profiles: Sequence[FunctionProfile], settings: Mapping[str, Setting], model: CostModel) -> float:
    """Statement events the settings (per node ID) are predicted to record over the run."""
    worth = statement_events_worth(model)
    return sum(worth(p, s) for p in profiles if (s := settings.get(p.node_id)) is not None)

"""Path prediction: an order-k Markov model over the branch arms each recorded call took.

A call's *path* is the sequence of ``execscope.branch`` events of its span, in ``Seq`` order (the
transitions :func:`.cfg_violations.call_events_sql` extracts; recorded at ``--level branches`` or
``statements``). A *decision* is a branch node of the CPG with two arms or more (``if`` true/false,
``match`` cases, ...): its arms are the ``arm`` nodes whose ``parent_id`` is the decision. A loop
reports its body arm at each iteration and nothing when it stops, so :class:`LoopExits` puts the
pseudo-arm ``<loop>.exit`` where it stopped: body or exit is a decision too. Every arm in the path
(handlers too) is context; each arm of a decision is predicted.

The model is per function (the span's node ID, so it spans code versions with stable node IDs):
``P(arm | previous k arms, decision)``, Witten-Bell interpolated down to order 0, which is the arm's
frequency at its decision with add-``alpha`` smoothing; probabilities are normalised over the arms
of the decision, so an arm never seen still has a small probability. The model predicts the most
probable arm at each decision; the order-0 model is the majority-arm / unigram baseline.

``unusual-paths`` scores each call by its negative log-likelihood per decision (nats) under a model
learned from *other* tests (the counts of the call's own test, every run of it, are taken out; a
trace that is not a test is held out by itself), optionally learned only from one service's calls,
and ranks the least probable first.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from execscope.queries.cfg_violations import call_events_sql
from execscope.storage.store import QueryResult, Store

START = "^"

PATHS_SQL = f"""
SELECT TraceId, SpanId, scope, any(service) AS service, any(call_seq) AS call_seq,
       arrayMap(x -> x.2, arraySort(groupArray((Seq, NodeId)))) AS path
FROM ({call_events_sql("'execscope.branch'")})
GROUP BY TraceId, SpanId, scope
ORDER BY TraceId, call_seq
"""

# The test each trace ran (`execscope run` of pytest makes one trace per test, under a span named
# ``test <nodeid>``): calls are held out by test, so a re-run of a test does not teach its own paths.
TESTS_SQL = """
SELECT TraceId, any(SpanName) FROM otel_traces WHERE startsWith(SpanName, 'test ')
  AND ({trace:String} = '' OR TraceId = {trace:String}) GROUP BY TraceId
"""

ARMS_SQL = """
SELECT DISTINCT parent_id, node_id FROM cpg_nodes WHERE kind = 'arm' AND parent_id != ''
"""

# Parent links of the nodes that can enclose an arm (not calls, targets or other expression parts).
PARENTS_SQL = """
SELECT DISTINCT node_id, parent_id, kind FROM cpg_nodes
WHERE kind NOT IN ('call', 'target', 'entry', 'exit', 'phi') AND parent_id != ''
"""

EXIT = "exit"  # the pseudo-arm a loop takes when it stops repeating: `<loop node>.exit`


@dataclass(frozen=True, slots=True)
class CallPath:
    """One recorded call: its trace, span, function, service, sequence number, arms taken and the
    group it is held out with (its test's name, else its trace id)."""
    trace_id: str
    span_id: str
    function: str
    service: str
    seq: int
    arms: tuple[str, ...]
    group: str = ""

    @property
    def held_out_with(self) -> str:
        return self.group or self.trace_id


def load_paths(store: Store, function: str = "", trace: str = "") -> list[CallPath]:
    """Every call's path (calls whose span dropped events are left out: their paths have holes),
    with the pseudo-arm ``<loop>.exit`` where a loop that ran its body stopped (:class:`LoopExits`)."""
    rows = store.query(PATHS_SQL, parameters={"trace": trace, "function": function}).rows
    tests = dict(store.query(TESTS_SQL, parameters={"trace": trace}).rows)
    exits = LoopExits(store.query(PARENTS_SQL).rows)
    return [CallPath(t, s, f, svc, int(seq), exits.add(p), tests.get(t, "")) for t, s, f, svc, seq, p in rows]


class LoopExits:
    """A loop reports its body arm at every iteration and nothing when it stops; this puts the
    pseudo-arm ``<loop>.exit`` where it stopped: before the first arm outside the loop that follows
    its body, or at the end of the call. A loop that never ran its body leaves no trace."""

    def __init__(self, parents: Iterable[tuple[str, str, str]]) -> None:
        rows = list(parents)
        self._parent = {node: parent for node, parent, _ in rows}
        self._loops = {node for node, _, kind in rows if kind in ("for", "while")}
        self._memo: dict[str, frozenset[str]] = {}

    def _enclosing(self, arm: str) -> frozenset[str]:
        """Loops whose body holds ``arm`` (a loop's own body arm counts as inside it, its ``else``
        arm does not)."""
        if arm not in self._memo:
            found: set[str] = set()
            node = self._parent.get(arm, "")
            if node in self._loops and not arm.endswith(".body"):
                node = self._parent.get(node, "")
            while node:
                if node in self._loops:
                    found.add(node)
                node = self._parent.get(node, "")
            self._memo[arm] = frozenset(found)
        return self._memo[arm]

    def add(self, arms: Sequence[str]) -> tuple[str, ...]:
        out: list[str] = []
        open_loops: list[str] = []
        for arm in arms:
            inside = self._enclosing(arm)
            while open_loops and open_loops[-1] not in inside:
                out.append(f"{open_loops.pop()}.{EXIT}")
            loop = self._parent.get(arm, "")
            if arm.endswith(".body") and loop in self._loops and (not open_loops or open_loops[-1] != loop):
                open_loops.append(loop)
            out.append(arm)
        out.extend(f"{loop}.{EXIT}" for loop in reversed(open_loops))
        return tuple(out)


def load_decisions(store: Store) -> dict[str, tuple[str, ...]]:
    """Arm node ID -> every arm of its decision (decisions with two arms or more: a loop's body
    arm and its pseudo-arm ``.exit`` make one)."""
    by_decision: dict[str, set[str]] = defaultdict(set)
    for parent, arm in store.query(ARMS_SQL).rows:
        by_decision[parent].add(arm)
    for node, _, kind in store.query(PARENTS_SQL).rows:
        if kind in ("for", "while") and node in by_decision:
            by_decision[node].add(f"{node}.{EXIT}")
    out: dict[str, tuple[str, ...]] = {}
    for arms in by_decision.values():
        if len(arms) >= 2:
            ordered = tuple(sorted(arms))
            out.update((a, ordered) for a in ordered)
    return out


@dataclass(slots=True)
class Decision:
    """One predicted decision of a path."""
    position: int
    arm: str
    predicted: str
    probability: float


@dataclass(slots=True)
class PathModel:
    """Counts of (function, context of up to ``order`` arms, arm); per test (or trace) too, so that
    the counts of a call's own test can be left out when scoring it. Not thread-safe; build once,
    then score."""
    decisions: Mapping[str, tuple[str, ...]]
    order: int = 2
    alpha: float = 0.5
    counts: Counter[tuple[str, tuple[str, ...], str]] = field(default_factory=Counter)
    by_group: dict[str, Counter[tuple[str, tuple[str, ...], str]]] = field(default_factory=dict)

    def fit(self, paths: Iterable[CallPath]) -> PathModel:
        for call in paths:
            mine = self.by_group.setdefault(call.held_out_with, Counter())
            for i, arm in enumerate(call.arms):
                if arm not in self.decisions:
                    continue
                ctx = self._context(call.arms, i)
                for k in range(self.order + 1):
                    key = (call.function, ctx[len(ctx) - k:] if k else (), arm)
                    self.counts[key] += 1
                    mine[key] += 1
        return self

    def _context(self, arms: Sequence[str], i: int) -> tuple[str, ...]:
        before = tuple(arms[max(0, i - self.order):i])
        return (START,) * (self.order - len(before)) + before

    def _count(self, key: tuple[str, tuple[str, ...], str], leave_out: Counter[Any] | None) -> int:
        n = self.counts.get(key, 0)
        return n - leave_out.get(key, 0) if leave_out else n

    def distribution(self, function: str, ctx: tuple[str, ...], arm: str,
                     leave_out: Counter[Any] | None = None) -> dict[str, float]:
        """P(each arm of ``arm``'s decision | context) for ``function``."""
        arms = self.decisions[arm]
        counts0 = [self._count((function, (), a), leave_out) for a in arms]
        total0 = sum(counts0)
        probs = [(c + self.alpha) / (total0 + self.alpha * len(arms)) for c in counts0]
        for k in range(1, self.order + 1):
            sub = ctx[len(ctx) - k:]
            if k > 1 and sub[1] == START:
                continue  # only padding added: the same counts as the shorter context
            counts = [self._count((function, sub, a), leave_out) for a in arms]
            n = sum(counts)
            if n == 0:
                break  # no longer context was seen either
            seen = sum(1 for c in counts if c)
            probs = [(c + seen * p) / (n + seen) for c, p in zip(counts, probs, strict=True)]
        return dict(zip(arms, probs, strict=True))

    def score(self, call: CallPath, leave_out_trace: bool = True) -> list[Decision]:
        """The decisions of ``call`` with the model's prediction and the probability of the arm
        taken; with ``leave_out_trace`` the counts of the call's own test (or trace) are left out."""
        leave = self.by_group.get(call.held_out_with) if leave_out_trace else None
        out = []
        for i, arm in enumerate(call.arms):
            if arm not in self.decisions:
                continue
            dist = self.distribution(call.function, self._context(call.arms, i), arm, leave)
            predicted = max(sorted(dist), key=dist.__getitem__)
            out.append(Decision(i, arm, predicted, dist[arm]))
        return out


def nll(decisions: Sequence[Decision]) -> float:
    """Total negative log-likelihood (nats) of the arms taken."""
    return -sum(math.log(d.probability) for d in decisions)


COLUMNS = ("trace_id", "span_id", "function", "seq", "decisions", "nll_per_decision", "nll", "max_surprise",
           "surprise")
RANKS = ("mean", "max")


def unusual_paths(store: Store, function: str = "", trace: str = "", order: int = 2, min_nll: float = 0.0,
                  limit: int = 20, train_service: str = "", service: str = "", rank: str = "mean") -> QueryResult:
    """Calls ranked by negative log-likelihood per decision (``rank=mean``, the default) or by the
    surprise of their least probable decision (``rank=max``: ``-log p`` of it), highest first, under
    the model of the other tests' (traces') calls (of ``train_service`` only when given); ``min_nll``
    applies to the ranked score. ``trace`` / ``service`` / ``function`` choose the calls scored.
    ``surprise`` names the least probable decision: ``arm (p=..., predicted ...)``. Calls with no
    decision are not ranked."""
    if order > 8:
        raise ValueError("order must be at most 8")
    if rank not in RANKS:
        raise ValueError(f"rank must be one of {', '.join(RANKS)}")
    decisions = load_decisions(store)
    paths = load_paths(store, function)
    model = PathModel(decisions, order).fit(p for p in paths if not train_service or p.service == train_service)
    rows: list[tuple[Any, ...]] = []
    for call in paths:
        if (trace and call.trace_id != trace) or (service and call.service != service):
            continue
        scored = model.score(call)
        if not scored:
            continue
        total = nll(scored)
        per = total / len(scored)
        worst = min(scored, key=lambda d: d.probability)
        peak = -math.log(worst.probability)
        if (per if rank == "mean" else peak) < min_nll:
            continue
        rows.append((call.trace_id, call.span_id, call.function, call.seq, len(scored), round(per, 4),
                     round(total, 4), round(peak, 4),
                     f"{worst.arm} (p={worst.probability:.3g}, predicted {worst.predicted})"))
    key = 5 if rank == "mean" else 7
    rows.sort(key=lambda r: (-r[key], -r[6], r[0], r[3]))
    return QueryResult(list(COLUMNS), rows[:limit])


@dataclass(frozen=True, slots=True)
class Evaluation:
    decisions: int
    accuracy: float
    nll_per_decision: float


def evaluate(model: PathModel, paths: Iterable[CallPath]) -> Evaluation:
    """Per-decision accuracy and NLL per decision of ``model`` on ``paths`` (which it was not fitted
    on: nothing is left out)."""
    n = correct = 0
    total = 0.0
    for call in paths:
        for d in model.score(call, leave_out_trace=False):
            n += 1
            correct += d.predicted == d.arm
            total -= math.log(d.probability)
    return Evaluation(n, correct / n if n else 0.0, total / n if n else 0.0)

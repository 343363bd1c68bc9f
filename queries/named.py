"""Named queries (``execscope query NAME``): each declares its parameters, which are checked and
converted here and then bound by the server (never formatted into SQL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from execscope.storage.store import QueryResult, Store


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: type
    default: Any
    help: str


@dataclass(frozen=True, slots=True)
class NamedQuery:
    name: str
    description: str
    run: Callable[..., QueryResult]
    params: tuple[Param, ...] = field(default_factory=tuple)

    def usage(self) -> str:
        if not self.params:
            return f"{self.name} takes no parameters"
        return f"{self.name} takes " + ", ".join(
            f"{p.name} ({p.type.__name__}, default {p.default!r}: {p.help})" for p in self.params)


class QueryParameterError(ValueError):
    """Unknown query, unknown parameter or a value of the wrong type; the message lists what is expected."""


def _cfg_violations(store: Store, trace: str) -> QueryResult:
    from execscope.queries.cfg_violations import cfg_violations

    return cfg_violations(store, trace)


def _breakpoint_hits(store: Store, **kwargs: Any) -> QueryResult:
    from execscope.queries.breakpoints import breakpoint_hits

    return breakpoint_hits(store, **kwargs)


def _insights(store: Store, **kwargs: Any) -> QueryResult:
    from execscope.queries.insights import insights

    return insights(store, **kwargs)


def _unusual_paths(store: Store, **kwargs: Any) -> QueryResult:
    from execscope.queries.paths import unusual_paths

    return unusual_paths(store, **kwargs)


def _clocks(name: str) -> Callable[..., QueryResult]:
    def run(store: Store, **kwargs: Any) -> QueryResult:
        from execscope.queries import clocks

        return getattr(clocks, name)(store, **kwargs)

    return run


def _bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(value)


_bool.__name__ = "bool"
_TRACE = Param("trace", str, "", "only this trace id (hex); all traces when empty")
_LIMIT = Param("limit", int, 20, "at most this many rows")


def _correlated(name: str) -> Callable[..., QueryResult]:
    def run(store: Store, **kwargs: Any) -> QueryResult:
        from execscope.queries import correlated

        return getattr(correlated, name)(store, **kwargs)

    return run


QUERIES: dict[str, NamedQuery] = {
    q.name: q for q in (
        NamedQuery("hot-nodes", "Functions by total time: executions, total/self/p95 time, joined to code "
                   "(statements=true: statements and arms by executions).", _correlated("hot_nodes"),
                   (_LIMIT, Param("service", str, "", "only this service.name"),
                    Param("statements", _bool, False, "rank statements and branch arms instead"))),  # type: ignore[arg-type]
        NamedQuery("slow-paths", "Paths through a function (arms taken per call) ranked by p95 latency.",
                   _correlated("slow_paths"),
                   (Param("function", str, "", "node ID (pkg.mod:f) or qualified name (pkg.mod.f)"), _LIMIT)),
        NamedQuery("exceptions", "Exceptions raised (out of functions, or at a statement whose own "
                   "frame caught them) and caught by handlers, per node, with example traces.",
                   _correlated("exceptions"), (_TRACE,)),
        NamedQuery("coverage", "Per function: CFG nodes and edges executed vs not.", _correlated("coverage"),
                   (Param("function", str, "", "one function's node ID"),
                    Param("module", str, "", "only functions of this module"),
                    Param("limit", int, 1000, "at most this many functions"))),
        NamedQuery("state-at", "Variables of every call alive at one position of a trace.",
                   _correlated("state_at"),
                   (Param("trace", str, "", "trace id (hex)"), Param("at", int, 0, "frame position (0-based)"))),
        NamedQuery("value-history", "Every value a variable took, in order, with where.",
                   _correlated("value_history"),
                   (Param("var", str, "", "variable name"), _TRACE,
                    Param("function", str, "", "only in this function (module.qualname)"),
                    Param("limit", int, 10000, "at most this many rows"))),
        NamedQuery("cfg-violations", "Observed transitions inside one call that the static CFG lacks "
                   "(empty: the CFG explains the recording).", _cfg_violations, (_TRACE,)),
        NamedQuery("breakpoint-hits", "Where a breakpoint stops in one trace (FILE:LINE, NAME, 'call NAME in KIND', "
                   "'raise in KIND', 'flow FUNC.VAR [-> LINE]', 'watch FUNC.VAR'), with the variables there.",
                   _breakpoint_hits,
                   (Param("trace", str, "", "trace id (hex)"), Param("spec", str, "", "the breakpoint"),
                    Param("condition", str, "", "a condition on recorded values"), Param("limit", int, 1000,
                                                                                          "at most this many hits"))),
        NamedQuery("call-graph", "Runtime call edges next to the static ones: both, static only, dynamic only.",
                   _correlated("call_graph"),
                   (Param("module", str, "", "only callers in this module"),
                    Param("limit", int, 1000, "at most this many edges"))),
        NamedQuery("insights", "Patterns on the CPG that recorded runs confirm (swallowed exceptions, blocking calls "
                   "in async def, calls repeated in loops, mutated defaults, deep recursion, code never executed, "
                   "complexity hot spots), each with a trace, seq and file:line.", _insights,
                   (Param("pattern", str, "", "only this pattern"),
                    Param("repeat", int, 10, "repeated-call: more than this many calls in one trace"),
                    Param("depth", int, 20, "deep-recursion: more than this many nested calls"),
                    Param("blocking_ms", float, 100.0, "blocking-in-async: held the loop longer than this"),
                    Param("complexity", int, 10, "complexity-hot-spot: cyclomatic at least this"),
                    Param("hot_ms", float, 50.0, "complexity-hot-spot: self time at least this"))),
        NamedQuery("unusual-paths", "Calls whose path through their function is improbable under an order-k Markov "
                   "model of the other tests/traces (negative log-likelihood per decision, highest first).",
                   _unusual_paths,
                   (Param("function", str, "", "only calls of this function (node ID)"), _TRACE,
                    Param("order", int, 2, "k: arms taken before a decision that predict it"),
                    Param("min_nll", float, 0.0, "only calls scoring at least this (nats)"),
                    Param("train_service", str, "", "learn only from calls of this service.name"),
                    Param("service", str, "", "score only calls of this service.name"),
                    Param("rank", str, "mean", "mean: NLL per decision; max: surprise of the least probable decision"),
                    _LIMIT)),
        NamedQuery("processes", "The processes and hosts a trace touched (all recorded ones without a trace): "
                   "service, host, pid, start, spans, clock offset estimate against the first process, HLC lead.",
                   _clocks("processes"), (_TRACE,)),
        NamedQuery("clock-skew", "Per pair of processes that talked: estimated clock skew (round trips, NTP-style) "
                   "or its bound (one-way messages), in ms, with the messages behind it.",
                   _clocks("clock_skew"), (_TRACE,)),
    )
}


def run_named(store: Store, name: str, params: dict[str, str] | None = None) -> QueryResult:
    query = QUERIES.get(name)
    if query is None:
        raise QueryParameterError(f"unknown query {name!r}; known: {', '.join(sorted(QUERIES))}")
    given = dict(params or {})
    values: dict[str, Any] = {}
    for p in query.params:
        raw = given.pop(p.name, None)
        if raw is None:
            values[p.name] = p.default
            continue
        try:
            values[p.name] = p.type(raw)
            if p.type in (int, float) and values[p.name] < 0:
                raise ValueError(raw)
        except (TypeError, ValueError):
            raise QueryParameterError(f"parameter {p.name!r} of {name}: {raw!r} is not a {p.type.__name__}; "
                                      f"{query.usage()}") from None
    if given:
        raise QueryParameterError(f"unknown parameter(s) {', '.join(sorted(given))} for {name}; {query.usage()}")
    try:
        return query.run(store, **values)
    except (ValueError, LookupError) as exc:  # a parameter the query itself rejects (e.g. a missing trace)
        raise QueryParameterError(f"{name}: {exc}; {query.usage()}") from None

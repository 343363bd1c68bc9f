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


QUERIES: dict[str, NamedQuery] = {
    q.name: q for q in (
        NamedQuery("cfg-violations", "Observed transitions inside one call that the static CFG lacks "
                   "(empty: the CFG explains the recording).", _cfg_violations,
                   (Param("trace", str, "", "only this trace id (hex); all traces when empty"),)),
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
        except (TypeError, ValueError):
            raise QueryParameterError(f"parameter {p.name!r} of {name}: {raw!r} is not a {p.type.__name__}; "
                                      f"{query.usage()}") from None
    if given:
        raise QueryParameterError(f"unknown parameter(s) {', '.join(sorted(given))} for {name}; {query.usage()}")
    return query.run(store, **values)

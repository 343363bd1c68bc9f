"""SQL written once for every front door: the store (CLI, HTML cinema) and Grafana dashboards.

A :class:`SqlTemplate` is ClickHouse SQL in the Grafana ClickHouse plugin's dialect, with two kinds
of holes:

* ``{name:Type}``: a value (a trace id, a position, a function). The store binds it server-side as a
  query parameter; a dashboard gets the Grafana variable ``${name:sqlstring}`` (quoted and escaped by
  Grafana), cast to ``Type`` when it is not a String (``toUInt64OrZero('42')``).
* The plugin's macros ``$__conditionalAll(condition, $name)`` (the condition, or ``1=1`` when
  ``name`` is empty or "All"), ``$__timeFilter(col)``, ``$__dateFilter(col)``, ``$__fromTime``,
  ``$__toTime``, ``$__timeInterval(col)`` and ``$__interval_s``. Grafana and the plugin expand them
  in a dashboard; :meth:`SqlTemplate.for_store` expands them here with the same meaning, over bound
  parameters (the time range defaults to everything).

So the CLI, the HTML cinema and the dashboards run the same statement text, and a test runs the
dashboards' rendering on the real engine after expanding the macros the way the plugin does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from execscope.storage.store import QueryResult, Store

PLACEHOLDER = re.compile(r"\{(\w+):([A-Za-z0-9_(), ]+)\}")
_MACRO = re.compile(r"\$__(conditionalAll|timeFilter|dateFilter|fromTime|toTime|timeInterval|interval_s)\b")
_VAR = re.compile(r"^\s*\$\{?(\w+)\}?\s*$")

ALL_TIME = (0, 4_102_444_800)
"""The time range of a query run without one: the epoch to 2100-01-01 (unix seconds)."""


class TemplateError(ValueError):
    """A template that does not parse (unbalanced macro arguments, an unknown variable)."""


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the macro whose ``(`` is at ``open_paren`` (split at top-level commas, quotes
    respected), and the index just past its ``)``."""
    depth = 0
    args: list[str] = []
    start = open_paren + 1
    i = open_paren
    quote = ""
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return [a.strip() for a in args], i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
        i += 1
    raise TemplateError(f"unbalanced macro arguments at {sql[open_paren - 20:open_paren + 40]!r}")


def _conditional_names(sql: str) -> set[str]:
    return set(re.findall(r"\$__conditionalAll\(.*?,\s*\$\{?(\w+)\}?\s*\)", sql, flags=re.S))


def _conditional_all(sql: str, keep: Callable[[str], bool | None]) -> str:
    """Resolve ``$__conditionalAll(condition, $name)`` as the plugin does (from the last occurrence
    back): the condition when ``keep(name)``, ``1=1`` when not, the macro untouched when None."""
    out = sql
    search_end = len(out)
    while (at := out.rfind("$__conditionalAll(", 0, search_end)) >= 0:
        args, end = _macro_args(out, at + len("$__conditionalAll"))
        var = _VAR.match(args[1]) if len(args) == 2 else None
        if var is None:
            raise TemplateError(f"$__conditionalAll needs (condition, $variable): {args}")
        decision = keep(var.group(1))
        if decision is not None:
            out = out[:at] + (args[0] if decision else "1=1") + out[end:]
        search_end = at
    return out


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _grafana_value(name: str, ch_type: str) -> str:
    value = f"${{{name}:sqlstring}}"
    if ch_type == "String":
        return value
    if re.fullmatch(r"U?Int\d+|Float\d+", ch_type):
        return f"to{ch_type}OrZero({value})"
    raise TemplateError(f"placeholder {{{name}:{ch_type}}}: only String and numeric types reach Grafana")


@dataclass(frozen=True, slots=True)
class SqlTemplate:
    """One statement for every front door (see the module docstring)."""

    sql: str
    defaults: dict[str, Any] = field(default_factory=dict)
    """Values of placeholders a caller may leave out (``""`` makes a ``$__conditionalAll`` pass)."""

    def params(self) -> dict[str, str]:
        """Placeholder name -> ClickHouse type."""
        return {m.group(1): m.group(2) for m in PLACEHOLDER.finditer(self.sql)}

    def for_grafana(self, constants: dict[str, Any] | None = None) -> str:
        """The statement as a dashboard target's ``rawSql``: placeholders become Grafana variables,
        except those given in ``constants`` (a value, written as a literal; ``""`` also makes a
        ``$__conditionalAll`` on that name pass); macros stay for Grafana and the plugin."""
        constants = constants or {}
        sql = _conditional_all(self.sql, lambda name: None if name not in constants else constants[name] != "")

        def value(m: re.Match[str]) -> str:
            name, ch_type = m.group(1), m.group(2)
            if name in constants:
                return _literal(constants[name])
            return _grafana_value(name, ch_type)

        return PLACEHOLDER.sub(value, sql).strip()

    def for_store(self, values: dict[str, Any] | None = None, time_range: tuple[int, int] = ALL_TIME,
                  interval_s: int = 60) -> tuple[str, dict[str, Any]]:
        """(SQL, parameters) for :meth:`Store.query`: the macros expanded over bound parameters.
        ``time_range`` is (from, to) in unix seconds, inclusive like the plugin's."""
        given = {**self.defaults, **(values or {})}
        params = self.params()
        missing = sorted(set(params) - set(given))
        if missing:
            raise TemplateError(f"no value for {', '.join(missing)}")
        sql = self.sql
        for name in _conditional_names(sql):
            if name not in given:
                raise TemplateError(f"$__conditionalAll on unknown variable {name!r}")
        sql = _conditional_all(sql, lambda name: given[name] not in ("", None))
        frm, to = "toDateTime({__from:Int64})", "toDateTime({__to:Int64})"

        def expand(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "fromTime":
                return frm
            if name == "toTime":
                return to
            if name == "interval_s":
                return "{__interval_s:UInt32}"
            return m.group(0)

        out = _MACRO.sub(expand, sql)
        for macro, template in (("$__timeFilter", "{c} >= " + frm + " AND {c} <= " + to),
                                ("$__dateFilter", "{c} >= toDate(" + frm + ") AND {c} <= toDate(" + to + ")"),
                                ("$__timeInterval",
                                 "toStartOfInterval(toDateTime({c}), toIntervalSecond({__interval_s:UInt32}))")):
            while (at := out.find(macro + "(")) >= 0:
                args, end = _macro_args(out, at + len(macro))
                if len(args) != 1:
                    raise TemplateError(f"{macro} takes one column: {args}")
                out = out[:at] + template.replace("{c}", args[0]) + out[end:]
        bound = {k: v for k, v in given.items() if k in params}
        bound.update({"__from": int(time_range[0]), "__to": int(time_range[1]), "__interval_s": max(1, interval_s)})
        return out, bound

    def run(self, store: Store, values: dict[str, Any] | None = None, time_range: tuple[int, int] = ALL_TIME,
            interval_s: int = 60) -> QueryResult:
        sql, params = self.for_store(values, time_range, interval_s)
        return store.query(sql, parameters=params)

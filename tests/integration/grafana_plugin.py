"""What Grafana and the ClickHouse datasource plugin (grafana-clickhouse-datasource 4.x) do to a
target's ``rawSql`` before ClickHouse sees it, in their order:

1. ``$__conditionalAll(condition, $var)`` (the plugin's frontend, ``CHDatasource.applyConditionalAll``):
   from the last occurrence back, arguments split at commas outside parentheses (quotes are not
   considered), ``1=1`` when the variable's current value is ``''`` or ``$__all``, else the condition;
   the macro text is rebuilt from its arguments and its first occurrence replaced.
2. Dashboard variables (Grafana's ``TemplateSrv.replace``): ``$var``, ``[[var]]``, ``${var}``,
   ``${var:format}``; an unknown name is left as it is. "All" is every option's value. Without a
   format the plugin's own formatter applies (a list becomes ``'a','b'``, a single value goes in raw).
3. The plugin's backend macros (``pkg/macros``): ``$__timeFilter(col)`` → ``col >= toDateTime(from)
   AND col <= toDateTime(to)`` (seconds), ``$__fromTime``/``$__toTime`` → ``toDateTime(s)``,
   ``$__fromTime_ms``/``$__toTime_ms`` → ``fromUnixTimestamp64Milli(ms)``, ``$__timeFilter_ms``,
   ``$__dateFilter(col)`` → ``toDate('YYYY-MM-DD')`` bounds, ``$__timeInterval(col)`` →
   ``toStartOfInterval(toDateTime(col), INTERVAL n second)``, ``$__interval_s`` → n (at least 1).

Written from the plugin's and Grafana's source; execscope's own renderer
(``execscope.queries.dialect``) is not used here, so the dashboards are checked against the plugin's
semantics, not against themselves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

ALL = "$__all"


@dataclass
class Var:
    value: str
    options: list[str] = field(default_factory=list)


def macro_args(query: str, args_index: int) -> list[str]:
    """The plugin's getMacroArgs: ``args_index`` is the index of the ``(``."""
    args: list[str] = []
    bracket = 0
    last = 1
    sub = query[args_index:]
    for m in re.finditer(r"\(|\)|,", sub):
        token, end = m.group(0), m.end()
        if token == "(":
            bracket += 1
        elif token == ")":
            bracket -= 1
        if token == "," and bracket == 1:
            args.append(sub[last:end - 1])
            last = end
        if bracket == 0:
            args.append(sub[last:end - 1])
            return args
    return []


def conditional_all(raw: str, variables: dict[str, Var]) -> str:
    macro = "$__conditionalAll("
    at = raw.rfind(macro)
    while at != -1:
        params = macro_args(raw, at + len(macro) - 1)
        if len(params) != 2:
            return raw
        found = re.search(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+", params[1].strip())
        phrase = params[0]
        if found:
            var = variables.get(found.group(0))
            if var is not None and var.value in ("", ALL):
                phrase = "1=1"
        raw = raw.replace(f"{macro}{params[0]},{params[1]})", phrase, 1)
        at = raw.rfind(macro)
    return raw


_TEMPLATE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _sqlstring(value: str | list[str]) -> str:
    def one(v: str) -> str:
        return "'" + re.sub(r"'|\"", lambda m: {"'": "''", '"': '\\"'}[m.group(0)], v) + "'"

    return ",".join(one(v) for v in value) if isinstance(value, list) else one(value)


FORMATS: dict[str, Callable[[str | list[str]], str]] = {
    "sqlstring": _sqlstring,
    "raw": lambda v: ",".join(v) if isinstance(v, list) else v,
    "singlequote": lambda v: ",".join(f"'{x}'" for x in v) if isinstance(v, list) else f"'{v}'",
}


def _plugin_format(value: str | list[str]) -> str:
    return "'" + "','".join(value) + "'" if isinstance(value, list) else value


def template_variables(raw: str, variables: dict[str, Var]) -> str:
    def replace(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        var = variables.get(name)
        if var is None:
            return m.group(0)
        value: str | list[str] = var.options if var.value == ALL else var.value
        if fmt is None:
            return _plugin_format(value)
        if fmt not in FORMATS:
            raise AssertionError(f"variable format {fmt!r} is not modelled by this test")
        return FORMATS[fmt](value)

    return _TEMPLATE.sub(replace, raw)


def backend_macros(sql: str, start: dt.datetime, end: dt.datetime, interval_s: float) -> str:
    frm, to = int(start.timestamp()), int(end.timestamp())
    frm_ms, to_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    seconds = int(max(interval_s, 1))

    def date(t: dt.datetime) -> str:
        return f"toDate('{t.astimezone(dt.timezone.utc):%Y-%m-%d}')"

    with_args: dict[str, Callable[[list[str]], str]] = {
        "timeFilter": lambda a: f"{a[0]} >= toDateTime({frm}) AND {a[0]} <= toDateTime({to})",
        "timeFilter_ms": lambda a: (f"{a[0]} >= fromUnixTimestamp64Milli({frm_ms}) AND "
                                    f"{a[0]} <= fromUnixTimestamp64Milli({to_ms})"),
        "dateFilter": lambda a: f"{a[0]} >= {date(start)} AND {a[0]} <= {date(end)}",
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {seconds} second)",
        "timeInterval_ms": lambda a: (f"toStartOfInterval(toDateTime64({a[0]}, 3), "
                                      f"INTERVAL {int(max(interval_s * 1000, 1))} millisecond)"),
    }
    plain = {"fromTime": f"toDateTime({frm})", "toTime": f"toDateTime({to})",
             "fromTime_ms": f"fromUnixTimestamp64Milli({frm_ms})", "toTime_ms": f"fromUnixTimestamp64Milli({to_ms})",
             "interval_s": str(seconds)}
    out = []
    i = 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < i:
            continue
        name = m.group(1)
        out.append(sql[i:m.start()])
        if name in with_args:
            args = macro_args(sql, m.end())
            assert args, f"${name} without arguments"
            out.append(with_args[name]([a.strip() for a in args]))
            depth, j = 0, m.end()
            while True:
                depth += {"(": 1, ")": -1}.get(sql[j], 0)
                j += 1
                if depth == 0:
                    break
            i = j
        elif name in plain:
            out.append(plain[name])
            i = m.end()
        else:
            raise AssertionError(f"macro $__{name} is not modelled by this test")
    out.append(sql[i:])
    return "".join(out)


def expand(raw: str, variables: dict[str, Var], start: dt.datetime, end: dt.datetime, interval_s: float = 60) -> str:
    """The SQL ClickHouse receives for ``raw`` on a dashboard with these variables and time range."""
    return backend_macros(template_variables(conditional_all(raw, variables), variables), start, end, interval_s)

"""The Grafana dashboards, as code: a small typed description of each dashboard (panels, the SQL
each reads from :mod:`execscope.queries.panels`, variables, data links), rendered to Grafana's JSON
model by one jinja2 template (``templates/grafana_dashboard.json.j2``).

Why jinja2 and not grafana-foundation-sdk: no published build of the SDK targets schemaVersion 42
(its newest, ``1769699241``, the "Grafana next" build, emits 41; the epoch-tagged builds stop at
Grafana 11.6), it has no types for the ClickHouse plugin's queries nor for the flame graph and trace
panels these dashboards are made of, and it needs Python 3.11 where execscope supports 3.10. The
typing that matters here (which SQL, which format, which links) is in the dataclasses below; the
template only lays out the model, every value through ``tojson``.

``python -m execscope.dashboards.grafana`` rewrites the checked-in copies (``dashboards/grafana/``,
``dashboards/provisioning/``; a test fails when they are stale); ``execscope dashboards export``
writes them for a Grafana.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from execscope.queries import panels as q
from execscope.queries.dialect import SqlTemplate

PLUGIN = "grafana-clickhouse-datasource"
HERE = Path(__file__).resolve().parent
GENERATED = HERE / "grafana"
TABLE, LOGS, TRACES = 1, 2, 3
"""The plugin's ``format`` values (sqlds: 1 table, 2 logs, 3 traces)."""
_QUERY_TYPE = {TABLE: "table", LOGS: "logs", TRACES: "traces"}

CINEMA, HEATMAP, CALLS, EXCEPTIONS, COVERAGE, PIPELINE = (
    "execscope-cinema", "execscope-heatmap", "execscope-call-graph", "execscope-exceptions",
    "execscope-coverage", "execscope-pipeline")


@dataclass(frozen=True, slots=True)
class Link:
    """A data link to a dashboard, setting its variables from the clicked row (Grafana's
    ``${__data.fields.NAME}``) or from this dashboard (``$name``), and keeping the time range and
    the datasource."""

    title: str
    dashboard: str
    params: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        parts = [f"var-{k}={v}" for k, v in self.params.items()]
        parts += ["${__url_time_range}", "${datasource:queryparam}"]
        return f"/d/{self.dashboard}/{slug(self.dashboard)}?" + "&".join(parts)


def row(name: str) -> str:
    """The clicked row's value of column ``name``, URL-encoded."""
    return "${__data.fields." + name + ":percentencode}"


@dataclass(frozen=True, slots=True)
class Query:
    view: SqlTemplate
    format: int = TABLE
    ref: str = "A"
    constants: dict[str, Any] = field(default_factory=dict)

    def sql(self) -> str:
        return self.view.for_grafana(self.constants)

    def query_type(self) -> str:
        return _QUERY_TYPE[self.format]


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    type: str
    queries: tuple[Query, ...]
    grid: tuple[int, int, int, int]
    """x, y, width, height (Grafana's 24-column grid)."""
    description: str = ""
    links: dict[str, tuple[Link, ...]] = field(default_factory=dict)
    """Column name -> data links on its cells."""
    options: dict[str, Any] = field(default_factory=dict)
    unit: str = ""
    overrides: tuple[dict[str, Any], ...] = ()
    transformations: tuple[dict[str, Any], ...] = ()

    def defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.unit:
            out["unit"] = self.unit
        return out

    def field_links(self) -> list[tuple[str, tuple[Link, ...]]]:
        return list(self.links.items())


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    kind: str = "query"
    """query (options from SQL), textbox, custom."""
    view: SqlTemplate | None = None
    constants: dict[str, Any] = field(default_factory=dict)
    include_all: bool = False
    default: str = ""
    options: tuple[str, ...] = ()
    description: str = ""
    hide: int = 0
    refresh: int = 2
    """1: on load; 2: when the time range changes."""

    def sql(self) -> str:
        assert self.view is not None
        return self.view.for_grafana(self.constants)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]
    time_from: str = "now-6h"
    tags: tuple[str, ...] = ("execscope",)

    @property
    def slug(self) -> str:
        return slug(self.uid)


def slug(uid: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", uid.lower()).strip("-")


# --- the dashboards ---------------------------------------------------------------------------

TRACE_VAR = Variable("trace", "trace", view=q.TRACE_OPTIONS, constants={"limit": 100},
                     description="A recorded trace: root span, duration, errors")
SEQ_VAR = Variable("seq", "position", kind="textbox", default="0",
                   description="Position in the trace (0-based frame number, as in `execscope cinema --at`)")
FUNCTION_VAR = Variable("function", "function", view=q.FUNCTION_OPTIONS, description="A function (node id)")
MODULE_VAR = Variable("module", "module", view=q.MODULE_OPTIONS, include_all=True, refresh=1)

TO_CINEMA = Link("Open in the cinema", CINEMA, {"trace": row("trace_id"), "seq": row("seq")})
TRACE_TO_CINEMA = Link("Open in the cinema", CINEMA, {"trace": row("trace_id"), "seq": "0"})


def to_heatmap(column: str) -> Link:
    return Link("Code heatmap of this function", HEATMAP, {"function": row(column), "trace": "$__all"})


def to_coverage(column: str) -> Link:
    return Link("Coverage of this function", COVERAGE, {"function": row(column), "module": "$__all"})


def to_seq(column: str) -> Link:
    return Link("Go to this position", CINEMA, {"trace": "${trace:percentencode}", "seq": row(column)})


_NAV_COLUMNS = ("back", "forward", "over", "over_back", "out", "out_back", "next_exception", "prev_exception")
_HIDE_FOR_TIMELINE = {"trace_id": True, "seq": True, "function": True, "line": True, "variable": True,
                      "node_id": True}
_CELL_GRADIENT = {"matcher": {"id": "byName", "options": "executions"},
                  "properties": [{"id": "custom.cellOptions",
                                  "value": {"type": "color-background", "mode": "gradient"}},
                                 {"id": "color", "value": {"mode": "continuous-YlRd"}}]}
_MARKER = {"matcher": {"id": "byName", "options": "here"},
           "properties": [{"id": "custom.width", "value": 40},
                          {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                          {"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}}]}


def _series(field_name: str) -> tuple[dict[str, Any], ...]:
    """Long rows (time, label, value) as one series per label."""
    return ({"id": "partitionByValues", "options": {"fields": [field_name], "keepFields": False}},)


EXECUTION_CINEMA = Dashboard(
    CINEMA, "execscope · Execution Cinema",
    "Step through one recorded trace: the frames around a position, the variables of every live call, the "
    "source with the current line, the call stack, one variable over time and the whole trace.",
    (TRACE_VAR, SEQ_VAR,
     Variable("var", "variable", view=q.VARIABLE_OPTIONS, description="A variable written in this trace")),
    (
        Panel("Recent traces", "table", (Query(q.RECENT_TRACES, constants={"limit": 50}),), (0, 0, 14, 7),
              "Traces in the time range, newest first: root span, spans, errors, duration. Click one to open it.",
              links={"trace_id": (TRACE_TO_CINEMA,)}),
        Panel("Step", "table", (Query(q.NAVIGATION),), (14, 0, 10, 7),
              "Where each of the terminal viewer's keys leads from this position: back/forward (←/→), "
              "over (o/O), out (u/U), exceptions (e/E). Click a number to go there.",
              links={c: (to_seq(c),) for c in (*_NAV_COLUMNS, "position", "last")}),
        Panel("Frames around the position", "table",
              (Query(q.FRAMES_AROUND, constants={"before": 10, "after": 20}),), (0, 7, 14, 12),
              "What the program did, in order (▶: this position): calls, statements, branch arms, values "
              "written, returns, exceptions.",
              links={"seq": (to_seq("seq"),), "function": (to_heatmap("function_node"),)},
              overrides=(_MARKER,)),
        Panel("Variables of every live call", "table", (Query(q.STATE_AT),), (14, 7, 10, 12),
              "Arguments, then the last value written up to this position, outermost call first."),
        Panel("Source", "table", (Query(q.SOURCE_AT),), (0, 19, 14, 12),
              "The running function's source, the current line marked ▶, with how often each line ran in "
              "this trace.", overrides=(_MARKER, _CELL_GRADIENT)),
        Panel("Call stack", "table", (Query(q.STACK_AT),), (14, 19, 10, 12),
              "Live calls, innermost first, with the line each is at; click seq to go to the call.",
              links={"seq": (to_seq("seq"),)}),
        Panel("Values of $var", "state-timeline",
              (Query(q.VALUE_TIMELINE, constants={"function": "", "limit": 10000}),), (0, 31, 24, 6),
              "Every value the chosen variable took in this trace.",
              options={"showValue": "auto", "mergeValues": True, "alignValue": "left", "rowHeight": 0.8},
              transformations=({"id": "organize", "options": {"excludeByName": _HIDE_FOR_TIMELINE}},)),
        Panel("Trace", "traces", (Query(q.TRACE_SPANS, format=TRACES, constants={"max_logs": 1000}),),
              (0, 37, 24, 14), "The trace's spans; statement, branch, assignment and exception events are "
              "each span's logs."),
    ),
    time_from="now-24h",
)

CODE_HEATMAP = Dashboard(
    HEATMAP, "execscope · Code Heatmap",
    "Where the time goes, joined to the code: hot functions and statements, the call tree as a flame graph, "
    "and per-line executions of one function.",
    (Variable("service", "service", view=q.SERVICE_OPTIONS, include_all=True),
     FUNCTION_VAR,
     Variable("trace", "trace", view=q.TRACE_OPTIONS, constants={"limit": 100}, include_all=True,
              description="The flame graph of one trace, or of all in the time range")),
    (
        Panel("Hot functions", "table", (Query(q.HOT_FUNCTIONS, constants={"limit": 50}),), (0, 0, 24, 9),
              "Executions, total, self (not in recorded callees) and p95 time per function, with its code.",
              links={"node_id": (to_heatmap("node_id"), to_coverage("node_id"),
                                 Link("Call graph of its module", CALLS, {"module": row("module")}))},
              overrides=({"matcher": {"id": "byRegexp", "options": "total_ms|self_ms|p95_ms"},
                          "properties": [{"id": "unit", "value": "ms"}]},)),
        Panel("Hot statements", "table", (Query(q.HOT_STATEMENTS, constants={"limit": 50}),), (0, 9, 12, 10),
              "Statements and branch arms by executions.",
              links={"node_id": (to_heatmap("function"),)}),
        Panel("Lines of $function", "table", (Query(q.LINE_HEAT),), (12, 9, 12, 10),
              "Every line of the function with how often it ran in the time range.",
              overrides=(_CELL_GRADIENT,)),
        Panel("Call tree", "flamegraph", (Query(q.FLAME_GRAPH),), (0, 19, 24, 14),
              "Calls by call path: width is total time, self is time not spent in callees.", unit="ns"),
    ),
)

CALL_GRAPH = Dashboard(
    CALLS, "execscope · Call Graph",
    "Runtime call edges beside the static ones of the code property graph: both, static only (never ran) "
    "and dynamic only (dispatch the syntax does not show).",
    (MODULE_VAR,
     Variable("status", "edges", kind="custom", include_all=True,
              options=("static and dynamic", "static only (never ran)", "dynamic only"))),
    (
        Panel("Call graph", "nodeGraph",
              (Query(q.CALL_GRAPH_NODES, ref="nodes", constants={"limit": 1000}),
               Query(q.CALL_GRAPH_EDGES, ref="edges", constants={"limit": 1000})), (0, 0, 24, 14),
              "Functions and who calls whom; an arc shows whether the function ran.",
              links={"id": (to_heatmap("id"),)}),
        Panel("Call edges", "table", (Query(q.CALL_EDGES, constants={"limit": 1000}),), (0, 14, 24, 10),
              "Every edge with its calls in the time range and whether the code shows it.",
              links={"caller": (to_heatmap("caller"),), "callee": (to_heatmap("callee"),)}),
    ),
)

EXCEPTIONS_DASHBOARD = Dashboard(
    EXCEPTIONS, "execscope · Exceptions",
    "Exceptions raised out of calls and handlers entered, per node over time; each row opens the cinema at "
    "its latest occurrence.",
    (Variable("trace", "trace", view=q.TRACE_OPTIONS, constants={"limit": 100}, include_all=True),),
    (
        Panel("Raised and caught over time", "timeseries", (Query(q.EXCEPTIONS_OVER_TIME),), (0, 0, 24, 8),
              "Per node: 'raised' (out of a call) and 'caught' (a handler ran).",
              options={"legend": {"displayMode": "table", "placement": "right", "showLegend": True}},
              transformations=_series("series")),
        Panel("Exceptions by node", "table", (Query(q.EXCEPTIONS),), (0, 8, 24, 12),
              "Click trace_id or seq to open the cinema at the latest occurrence.",
              links={"trace_id": (TO_CINEMA,), "seq": (TO_CINEMA,), "node_id": (to_heatmap("node_id"),)}),
    ),
)

COVERAGE_DASHBOARD = Dashboard(
    COVERAGE, "execscope · Coverage",
    "Per function, the control flow graph's nodes and edges that ran in the time range, and the branch arms "
    "that never did.",
    (MODULE_VAR, Variable("function", "function", view=q.FUNCTION_OPTIONS, include_all=True)),
    (
        Panel("CFG coverage per function", "table", (Query(q.COVERAGE, constants={"limit": 1000}),),
              (0, 0, 24, 10), "Nodes and edges of each function's CFG executed vs not (least covered first).",
              links={"function": (to_heatmap("function"),)},
              overrides=({"matcher": {"id": "byRegexp", "options": "node_pct|edge_pct"},
                          "properties": [{"id": "unit", "value": "percent"},
                                         {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}},
                                         {"id": "min", "value": 0}, {"id": "max", "value": 100}]},)),
        Panel("Arms never taken", "table", (Query(q.ARMS_NEVER_TAKEN),), (0, 10, 24, 10),
              "Branch arms and handlers of functions that ran, which never ran themselves, with their source.",
              links={"function": (to_heatmap("function"),)}),
    ),
)

PIPELINE_HEALTH = Dashboard(
    PIPELINE, "execscope · Pipeline Health",
    "What `execscope collect --stats` reports, over time (lag, rows/s, batch sizes, errors, dead letters), and "
    "what recording left out (dropped calls and events, calls counted by adaptive sampling).",
    (Variable("collector", "collector", view=q.COLLECTOR_OPTIONS, include_all=True),),
    (
        Panel("Collectors now", "table", (Query(q.COLLECTOR_LATEST),), (0, 0, 24, 6),
              "Each collector's latest figures (counters since it started)."),
        Panel("Lag", "timeseries", (Query(q.COLLECTOR_LAG),), (0, 6, 12, 8),
              "Records in Kafka not yet stored.", transformations=_series("collector")),
        Panel("Rows stored per second", "timeseries", (Query(q.COLLECTOR_THROUGHPUT),), (12, 6, 12, 8),
              "Spans inserted per second.", transformations=_series("collector")),
        Panel("Batch sizes", "timeseries", (Query(q.COLLECTOR_BATCHES),), (0, 14, 12, 8),
              "Spans per insert: smallest, mean, largest."),
        Panel("Errors and dead letters", "timeseries", (Query(q.COLLECTOR_ERRORS),), (0, 22, 24, 8),
              "Failed inserts retried, poison messages sent to the dead letter topic, batches replayed after a "
              "restart (counted since each collector started)."),
        Panel("Left out by recording", "timeseries", (Query(q.DROPS),), (12, 14, 12, 8),
              "Calls not kept (buffers full), statement events over the budget, calls counted by adaptive "
              "sampling instead of recorded."),
    ),
    time_from="now-1h",
)

DASHBOARDS: tuple[Dashboard, ...] = (EXECUTION_CINEMA, CODE_HEATMAP, CALL_GRAPH, EXCEPTIONS_DASHBOARD,
                                     COVERAGE_DASHBOARD, PIPELINE_HEALTH)


# --- rendering ----------------------------------------------------------------------------------

@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(dashboard: Dashboard, datasource_uid: str = "") -> dict[str, Any]:
    """The dashboard's JSON model. ``datasource_uid``: the ``datasource`` variable's initial value
    (the dashboards still reference it only through ``${datasource}``)."""
    current = {"text": datasource_uid, "value": datasource_uid} if datasource_uid else {}
    text = _environment().get_template("grafana_dashboard.json.j2").render(
        d=dashboard, others=[o for o in DASHBOARDS if o.uid != dashboard.uid], plugin=PLUGIN,
        datasource_current=current)
    model: dict[str, Any] = json.loads(text)
    return model


def dump(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def generated(datasource_uid: str = "") -> Iterator[tuple[str, str]]:
    """(file name, JSON text) of every dashboard."""
    for dashboard in DASHBOARDS:
        yield f"{dashboard.uid}.json", dump(render(dashboard, datasource_uid))


def write(directory: Path, datasource_uid: str = "") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated(datasource_uid):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


DEFAULT_DATASOURCE_UID = "execscope-clickhouse"
DEFAULT_DASHBOARDS_PATH = "/var/lib/grafana/dashboards/execscope"
PROVISIONING = HERE / "provisioning"


def provisioning(datasource_uid: str = DEFAULT_DATASOURCE_UID,
                 dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> dict[str, str]:
    """Grafana provisioning files (path under a provisioning folder -> YAML): the ClickHouse
    datasource (its address from Grafana's environment) and a provider loading the dashboards."""
    env = _environment()
    return {"datasources/execscope.yaml": env.get_template("datasource.yaml.j2").render(uid=datasource_uid),
            "dashboards/execscope.yaml": env.get_template("dashboards.yaml.j2").render(path=dashboards_path)}


def export(out: Path, datasource_uid: str = DEFAULT_DATASOURCE_UID) -> tuple[list[Path], list[Path]]:
    """``out/dashboards/*.json`` (the ``datasource`` variable preset to ``datasource_uid``) and
    ``out/provisioning/{datasources,dashboards}/execscope.yaml`` loading them."""
    dashboards = write(out / "dashboards", datasource_uid)
    files = []
    for rel, text in provisioning(datasource_uid, str((out / "dashboards").resolve())).items():
        path = out / "provisioning" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return dashboards, files


def regenerate() -> list[Path]:
    """Rewrite the checked-in copies (``dashboards/grafana/*.json``, ``dashboards/provisioning/``)."""
    written = write(GENERATED)
    for rel, text in provisioning().items():
        path = PROVISIONING / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in regenerate():
        print(p)

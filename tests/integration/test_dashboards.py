"""The Grafana dashboards: generated JSON is fresh and well formed, and every panel's and every
variable's SQL, expanded as Grafana and the ClickHouse plugin expand it (grafana_plugin.py), runs on
the real engine over a recorded program and gives each panel type the fields it needs. The cinema's
SQL views equal the in-memory cinema position by position."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from execscope.dashboards import grafana
from execscope.queries import cinema_views
from execscope.queries.cinema import open_cinema, public
from execscope.queries.named import run_named
from execscope.storage.store import QueryResult, Store, open_store
from tests.integration.grafana_plugin import ALL, Var, expand
from tests.integration.recorded_app import Recording
from tests.integration.test_run_cli import cli

pytestmark = pytest.mark.xdist_group("recording")

FIELDS = {
    "traces": {"traceID", "spanID", "parentSpanID", "serviceName", "operationName", "startTime", "duration"},
    "flamegraph": {"label", "level", "value", "self"},
}
# Panels that read only the OpenTelemetry Collector exporter's columns: they must work on rows the
# stock exporter wrote, without execscope's attributes.
COLLECTOR_ONLY = {(grafana.CINEMA, "Recent traces"), (grafana.CINEMA, "Trace"), (grafana.HEATMAP, "Call tree"),
                  (grafana.PIPELINE, "Left out by recording")}
MODELS = {name: json.loads(text) for name, text in grafana.generated()}


def _window() -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    return now - dt.timedelta(days=2), now + dt.timedelta(hours=1)


def run_expanded(store: Store, raw: str, variables: dict[str, Var]) -> QueryResult:
    start, end = _window()
    sql = expand(raw, variables, start, end)
    assert "$__" not in sql and not re.search(r"\{\w+:[\w()]+\}", sql), sql
    return store.query(sql)


def variable_values(store: Store, model: dict[str, Any], wanted: dict[str, str], strict: bool = True
                    ) -> dict[str, Var]:
    """Every variable of the dashboard, as Grafana would set it: query variables from their own SQL
    (which must list the wanted value; without ``strict`` a variable may have no options, and is
    then empty), textboxes and custom variables as given."""
    values: dict[str, Var] = {}
    for v in model["templating"]["list"]:
        name = v["name"]
        if v["type"] == "datasource":
            continue
        if v["type"] == "query":
            assert v["query"]["editorType"] == "sql" and v["definition"] == v["query"]["rawSql"]
            rows = run_expanded(store, v["query"]["rawSql"], values).rows
            if not rows and not strict:
                values[name] = Var("")
                continue
            assert rows, f"variable {name} has no options"
            options = [str(r[0]) for r in rows]
            value = wanted.get(name, options[0])
            if value != ALL:
                assert value in options, (name, value, options[:20])
            else:
                assert v["includeAll"], name
            values[name] = Var(value, options)
        elif v["type"] == "custom":
            options = v["query"].split(",")
            values[name] = Var(wanted.get(name, ALL), options)
        else:
            values[name] = Var(wanted.get(name, v["query"]))
    return values


def check_panel(panel: dict[str, Any], results: dict[str, QueryResult]) -> None:
    kind = panel["type"]
    title = panel["title"]
    for ref, result in results.items():
        assert result.rows, f"{title} ({ref}): no rows"
    columns = {c for r in results.values() for c in r.column_names}
    if kind in FIELDS:
        assert FIELDS[kind] <= columns, (title, FIELDS[kind] - columns)
    if kind == "flamegraph":
        levels = [row[1] for row in results["A"].rows]
        assert levels[0] == 0 and all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels  # depth first
    if kind == "nodeGraph":
        assert {"id"} <= set(results["nodes"].column_names)
        assert {"id", "source", "target"} <= set(results["edges"].column_names)
        ids = {r[0] for r in results["nodes"].rows}
        edges = results["edges"].dicts()
        assert all(e["source"] in ids and e["target"] in ids for e in edges)
    if kind in ("state-timeline", "timeseries"):
        result = results["A"]
        excluded = {k for t in panel["transformations"] if t["id"] == "organize"
                    for k, v in t["options"]["excludeByName"].items() if v}
        kept = [i for i, c in enumerate(result.column_names) if c not in excluded]
        assert any(isinstance(result.rows[0][i], dt.datetime) for i in kept), (title, result.column_names)
        if kind == "timeseries":
            assert any(isinstance(result.rows[0][i], (int, float)) for i in kept), title
    for override in panel["fieldConfig"]["overrides"]:  # links and field options name real fields
        if override["matcher"]["id"] == "byName":
            assert override["matcher"]["options"] in columns, (title, override["matcher"]["options"])
        for prop in override["properties"]:
            for link in prop["value"] if prop["id"] == "links" else []:
                for name in re.findall(r"\$\{__data\.fields\.(\w+)", link["url"]):
                    assert name in columns, (title, link["url"])


def run_dashboard(store: Store, model: dict[str, Any], wanted: dict[str, str],
                  only: set[str] | None = None) -> dict[str, dict[str, QueryResult]]:
    variables = variable_values(store, model, wanted, strict=only is None)
    out = {}
    for panel in model["panels"]:
        if only is not None and panel["title"] not in only:
            continue
        results = {t["refId"]: run_expanded(store, t["rawSql"], variables) for t in panel["targets"]}
        check_panel(panel, results)
        out[panel["title"]] = results
    return out


@pytest.fixture(scope="module")
def recording(recorded_app: Recording) -> Recording:
    """The recorded program, plus the stats a collector writes (through KafkaSource's own writer;
    the Kafka tests check it against a real broker)."""
    from execscope.collector.kafka_source import KafkaSource

    with open_store(recorded_app.store) as store:
        source = KafkaSource("127.0.0.1:9", store, topic="otlp_spans", instance_id="collector-a")
        for batch, lag in ((0, 40), (2048, 10), (2048, 0)):
            if batch:
                source.stats.record_batch(batch)
            source.stats.lag = {"otlp_spans:0": lag}
            source._store_stats()
        source._close()
    return recorded_app


def wanted_values(store: Store, trace: str) -> dict[str, str]:
    film = open_cinema(store, trace)
    return {"trace": trace, "seq": str(film.find(0, var="r")), "var": "r", "function": "dash_app:explode",
            "module": "dash_app", "service": ALL, "status": ALL, "collector": ALL}


def test_generated_json_is_checked_in_and_fresh() -> None:
    for name, text in grafana.generated():
        path = grafana.GENERATED / name
        assert path.is_file(), f"{path} missing: run python -m execscope.dashboards.grafana"
        assert path.read_text() == text, f"{path} is stale: run python -m execscope.dashboards.grafana"
    assert sorted(p.name for p in grafana.GENERATED.glob("*.json")) == sorted(MODELS)
    for rel, text in grafana.provisioning().items():
        assert (grafana.PROVISIONING / rel).read_text() == text, f"{rel} is stale"


def _datasources(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [d for x in node for d in _datasources(x)]
    if not isinstance(node, dict):
        return []
    own = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
    return own + [d for v in node.values() for d in _datasources(v)]


def test_structure_of_every_model() -> None:
    uids = {m["uid"] for m in MODELS.values()}
    assert len(uids) == len(MODELS) == 6
    for name, m in MODELS.items():
        assert m["schemaVersion"] == 42 and m["title"] and m["uid"] == name[:-5]
        ids = [p["id"] for p in m["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: dict[tuple[int, int], str] = {}
        for p in m["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (name, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]
            assert p["targets"], (name, p["title"])
            for t in p["targets"]:
                assert t["editorType"] == "sql" and t["rawSql"].strip() and t["format"] in (1, 2, 3)
                assert (t["format"] == 3) == (p["type"] == "traces"), (name, p["title"])
            for o in p["fieldConfig"]["overrides"]:  # schemaVersion 42: hidden from the viz is hidden from tooltips
                for prop in o["properties"]:
                    if prop["id"] == "custom.hideFrom" and prop["value"].get("viz"):
                        assert prop["value"].get("tooltip"), (name, p["title"])
        for ds in _datasources(m):
            assert ds == {"type": grafana.PLUGIN, "uid": "${datasource}"} or ds["uid"] == "-- Grafana --", ds
        variables = {v["name"]: v for v in m["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == grafana.PLUGIN
        links = [link["url"] for p in m["panels"] for o in p["fieldConfig"]["overrides"] for prop in o["properties"]
                 if prop["id"] == "links" for link in prop["value"]] + [link["url"] for link in m["links"]]
        assert links, name
        for url in links:
            target = re.match(r"^/d/([\w-]+)/[\w-]+(\?.*)?$", url)
            assert target and target.group(1) in uids, url
            other = next(o for o in MODELS.values() if o["uid"] == target.group(1))
            names = {v["name"] for v in other["templating"]["list"]}
            for var in re.findall(r"var-(\w+)=", url):
                assert var in names, (url, names)
            if "?" in url:
                assert "${__url_time_range}" in url and "${datasource:queryparam}" in url, url
    # every dashboard links to every other one
    for m in MODELS.values():
        assert {re.match(r"/d/([\w-]+)/", link["url"]).group(1) for link in m["links"]} == uids - {m["uid"]}


def test_every_panel_and_variable_on_a_recorded_program(recording: Recording) -> None:
    with open_store(recording.store) as store:
        wanted = wanted_values(store, recording.trace)
        specific = {**wanted, "service": "python", "status": "static and dynamic", "collector": "collector-a"}
        seen = 0
        for model in MODELS.values():
            for values in (wanted, specific):
                seen += len(run_dashboard(store, model, values))
        assert seen == 2 * sum(len(m["panels"]) for m in MODELS.values())
        # a few values, to know the panels show the program and not just rows
        cinema = run_dashboard(store, MODELS["execscope-cinema.json"], wanted)
        frames = cinema["Frames around the position"]["A"].dicts()
        here = next(f for f in frames if f["here"])
        assert here["kind"] == "assign" and here["what"] == "r = 2" and here["source"] == "    r = n * fact(n - 1)"
        state = cinema["Variables of every live call"]["A"].rows
        assert [(r[1], r[3], r[4]) for r in state if r[1] == "dash_app.fact"][-2:] == [
            ("dash_app.fact", "n", "2"), ("dash_app.fact", "r", "2")]
        source = cinema["Source"]["A"].dicts()
        assert [(s["line"], s["executions"]) for s in source if s["here"]] == [(7, 3)]
        nav = cinema["Step"]["A"].dicts()[0]
        assert nav["back"] == nav["position"] - 1 and nav["next_exception"] is not None
        heat = run_dashboard(store, MODELS["execscope-heatmap.json"], wanted)
        flame = {(r[0], r[1]) for r in heat["Call tree"]["A"].rows}
        assert ("dash_app.fact", 5) in flame and ("dash_app.worker", 2) in flame  # recursion, threads
        exceptions = run_dashboard(store, MODELS["execscope-exceptions.json"], wanted)
        rows = exceptions["Exceptions by node"]["A"].dicts()
        assert {(r["what"], r["node_id"]) for r in rows} >= {("raised", "dash_app:explode"),
                                                            ("caught", "dash_app:risky:except#0")}
        film = open_cinema(store, recording.trace)
        for r in rows:  # each row opens the cinema at its frame
            frame = film.frame(r["seq"])
            assert r["trace_id"] == recording.trace
            assert frame["kind"] == ("exception" if r["what"] == "raised" else "branch"), (r, public(frame))
            assert frame["node_id"] == r["node_id"]
        arms = run_dashboard(store, MODELS["execscope-coverage.json"], wanted)["Arms never taken"]["A"].dicts()
        assert ("dash_app:explode", "dash_app:explode:if#0.true") in {(a["function"], a["arm"]) for a in arms}


def _foreign_rows(store: Store) -> str:
    """Spans written as the stock OpenTelemetry Collector exporter writes them: a plain OTel SDK
    trace, OTLP-encoded, decoded into otel_traces, without any execscope attribute."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from execscope.collector.clickhouse_writer import ClickHouseWriter
    from execscope.collector.otlp_decode import decode_columns

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop")
    with tracer.start_as_current_span("GET /checkout") as root:
        with tracer.start_as_current_span("load cart"):
            with tracer.start_as_current_span("db.query") as q:
                q.add_event("rows", {"count": 3})
        try:
            with tracer.start_as_current_span("charge"):
                raise TimeoutError("gateway")
        except TimeoutError:
            pass
    provider.shutdown()
    payload = encode_spans(exporter.get_finished_spans()).SerializeToString()
    columns, _ = decode_columns(payload)
    ClickHouseWriter(store).write_spans(columns, dedup_token="foreign")
    return format(root.get_span_context().trace_id, "032x")


def test_collector_only_panels_on_rows_without_execscope_attributes(tmp_path: Path) -> None:
    with open_store(f"chdb://{tmp_path / 'stock'}") as store:
        trace = _foreign_rows(store)
        assert store.query("SELECT countIf(NodeId != '') FROM otel_traces").rows == [(0,)]
        for name, model in MODELS.items():
            titles = {t for uid, t in COLLECTOR_ONLY if f"{uid}.json" == name}
            if titles:
                results = run_dashboard(store, model, {"trace": trace}, only=titles)
                assert set(results) == titles
        trace_view = run_dashboard(store, MODELS["execscope-cinema.json"], {"trace": trace}, only={"Trace"})
        spans = trace_view["Trace"]["A"].dicts()
        assert {s["operationName"] for s in spans} == {"GET /checkout", "load cart", "db.query", "charge"}
        assert any(log["name"] == "exception" for s in spans for log in s["logs"])


def test_cinema_views_equal_the_cinema_at_every_position(recording: Recording) -> None:
    with open_store(recording.store) as store:
        film = open_cinema(store, recording.trace)
        frames = [public(f) for f in film.frames()]
        rows = cinema_views.FRAMES_AROUND.run(store, {"trace": recording.trace, "seq": 0, "before": 0,
                                                      "after": len(frames)}).dicts()
        keys = ("seq", "kind", "function", "line", "source", "depth", "node_id", "span_id")
        assert [tuple(r[k] for k in keys) for r in rows] == [tuple(f[k] for k in keys) for f in frames]
        for p in range(0, len(frames), 5):
            nav = cinema_views.NAVIGATION.run(store, {"trace": recording.trace, "seq": p}).dicts()[0]
            assert nav["over"] == film.step_over(p) and nav["over_back"] == film.step_over(p, False), p
            assert nav["out"] == film.step_out(p) and nav["out_back"] == film.step_out(p, False), p
            assert nav["next_exception"] == film.find(p, kind="exception"), p
            assert nav["prev_exception"] == film.find(p, False, kind="exception"), p
            state = run_named(store, "state-at", {"trace": recording.trace, "at": str(p)}).rows
            assert cinema_views.STATE_AT.run(store, {"trace": recording.trace, "seq": p}).rows == state, p


def test_export_cli_writes_dashboards_and_provisioning(tmp_path: Path) -> None:
    out = tmp_path / "grafana"
    proc = cli("dashboards", "export", "--out", str(out), "--datasource-uid", "ch-prod", cwd=tmp_path)
    assert "6 dashboards" in proc.stderr
    exported = {p.name: json.loads(p.read_text()) for p in (out / "dashboards").glob("*.json")}
    assert set(exported) == set(MODELS)
    for name, model in exported.items():
        ds = next(v for v in model["templating"]["list"] if v["name"] == "datasource")
        assert ds["current"] == {"text": "ch-prod", "value": "ch-prod"}
        assert {**model, "templating": None} == {**MODELS[name], "templating": None}
    datasource = (out / "provisioning" / "datasources" / "execscope.yaml").read_text()
    assert "uid: ch-prod" in datasource and "type: grafana-clickhouse-datasource" in datasource
    provider = (out / "provisioning" / "dashboards" / "execscope.yaml").read_text()
    assert f"path: {out / 'dashboards'}" in provider

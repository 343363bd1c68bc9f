"""`execscope query insights` on a fixture recorded for real (two `execscope run --level statements`
runs into one chDB store, the second of an edited file: another code version): exactly the planted
patterns are reported, none of their near misses, and each row's evidence (trace, seq, file:line)
points at what happened."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli, sql

pytestmark = pytest.mark.xdist_group("insights")  # one worker records the module's fixture once

APP = Path(__file__).parent / "insights_apps" / "insights_app.py"
M = "insights_app"

# (pattern, node) -> a fragment of the source line the row must name
EXPECTED = {
    ("swallowed-exception", f"{M}:parse_int:except#0"): "PATTERN swallowed",
    ("blocking-in-async", f"{M}:fetch_blocking:expr#0"): "time.sleep(0.15)  # PATTERN blocking",
    ("blocking-in-async", f"{M}:spawn_blocking:expr#0"): "subprocess.run([\"sleep\", \"0.12\"]",
    ("repeated-call", f"{M}:n_plus_one:expr#0"): "PATTERN repeated",
    ("mutable-default-changed", f"{M}:remember"): "def remember(",
    ("deep-recursion", f"{M}:deep"): "def deep(",
    ("never-executed", f"{M}:never_called"): "def never_called(",
    ("never-executed", f"{M}:mode:if#0.false"): "if flag:  # PATTERN never executed",
    ("never-executed", f"{M}:load:except#0"): "except:  # near miss: broad, never runs",
    ("complexity-hot-spot", f"{M}:crunch"): "def crunch(",
}


@dataclass(frozen=True)
class Recorded:
    root: Path
    store: str
    traces: dict[str, str]  # "first" / "second" -> trace id


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    root = tmp_path_factory.mktemp("insights")
    shutil.copy(APP, root / APP.name)
    store = f"chdb://{root / 'db'}"
    traces = {}
    for name, args in (("first", []), ("second", ["second"])):
        if name == "second":  # a second code version (same node IDs): "never executed" spans versions
            with (root / APP.name).open("a") as f:
                f.write("\n# edited after the first run\n")
        cli("run", "--include", M, "--level", "statements", "--store", store, "--", "python", APP.name, *args,
            cwd=root)
        known = {t["trace_id"] for t in json.loads(cli("traces", "--store", store, "--format", "json",
                                                      cwd=root).stdout)}
        traces[name] = next(iter(known - set(traces.values())))
    return Recorded(root, store, traces)


def _insights(rec: Recorded, *params: str) -> list[dict]:
    args = [a for p in params for a in ("-p", p)]
    return json.loads(cli("query", "insights", *args, "--store", rec.store, "--format", "json", cwd=rec.root).stdout)


def test_exactly_the_planted_patterns_are_reported_with_their_lines(recorded: Recorded) -> None:
    rows = _insights(recorded)
    found = {(r["pattern"], r["node_id"]): r for r in rows}
    assert len(found) == len(rows), rows  # one row per place, whatever the code versions
    versions = sql("SELECT DISTINCT CodeVersion FROM otel_traces", recorded.root, recorded.store)
    assert len(versions) == 2
    assert set(found) == set(EXPECTED), sorted(set(found) ^ set(EXPECTED))
    source = (recorded.root / APP.name).read_text().splitlines()
    for key, fragment in EXPECTED.items():
        row = found[key]
        assert row["file"] == str(recorded.root / APP.name)
        assert fragment in source[row["line"] - 1], (key, row["line"], source[row["line"] - 1])


def _event(rec: Recorded, trace: str, seq: int) -> dict:
    rows = sql(f"SELECT 'event' AS what, EventName AS name, NodeId AS node, map() AS attrs FROM execscope_events "
               f"WHERE TraceId = '{trace}' AND Seq = {seq} UNION ALL "
               f"SELECT 'span', SpanName, NodeId, SpanAttributes FROM otel_traces WHERE TraceId = '{trace}' "
               f"AND Seq = {seq}", rec.root, rec.store)
    assert len(rows) == 1, rows
    return rows[0]


def test_each_row_points_at_its_evidence(recorded: Recorded) -> None:
    found = {(r["pattern"], r["node_id"]): r for r in _insights(recorded)}
    first = recorded.traces["first"]
    for (pattern, node), row in found.items():
        if pattern == "never-executed":
            assert (row["trace_id"], row["seq"], row["count"]) == ("", 0, 0)
            continue
        assert row["trace_id"] == first, row  # everything but the near misses ran in the first run
        at = _event(recorded, row["trace_id"], row["seq"])
        if pattern in ("swallowed-exception",):
            assert (at["what"], at["name"], at["node"]) == ("event", "execscope.branch", node)
        elif pattern in ("blocking-in-async", "repeated-call"):
            assert (at["what"], at["name"], at["node"]) == ("event", "execscope.line", node)
        else:
            assert (at["what"], at["node"]) == ("span", node), at
    swallowed = found[("swallowed-exception", f"{M}:parse_int:except#0")]
    assert swallowed["count"] == 1 and "ValueError" in swallowed["detail"]
    assert found[("repeated-call", f"{M}:n_plus_one:expr#0")]["count"] == 11
    assert found[("deep-recursion", f"{M}:deep")]["count"] == 25
    deepest = _event(recorded, first, found[("deep-recursion", f"{M}:deep")]["seq"])
    assert deepest["attrs"]["execscope.arg.n"] == "1"  # the 25th call, deep(1)
    mutated = found[("mutable-default-changed", f"{M}:remember")]
    assert _event(recorded, first, mutated["seq"])["attrs"]["execscope.arg.seen"] == "[1]"
    assert mutated["count"] == 3  # three calls left the default alone
    blocking = {n: r for (p, n), r in found.items() if p == "blocking-in-async"}
    held_ms = {n: float(r["detail"].split("held the event loop ")[1].split(" ms")[0]) for n, r in blocking.items()}
    assert held_ms[f"{M}:fetch_blocking:expr#0"] >= 150 and held_ms[f"{M}:spawn_blocking:expr#0"] >= 120
    assert "cyclomatic 10" in found[("complexity-hot-spot", f"{M}:crunch")]["detail"]


def test_thresholds_are_parameters_and_strict(recorded: Recorded) -> None:
    assert not _insights(recorded, "pattern=repeated-call", "repeat=11")
    # main:expr#22 is complex_cold(x) for x in range(10)
    assert {(r["node_id"], r["count"]) for r in _insights(recorded, "pattern=repeated-call", "repeat=9")} == {
        (f"{M}:n_plus_one:expr#0", 11), (f"{M}:exactly_n:expr#0", 10), (f"{M}:main:expr#22", 10)}
    assert {r["node_id"] for r in _insights(recorded, "pattern=deep-recursion", "depth=19")} == {
        f"{M}:deep", f"{M}:shallow"}
    assert not _insights(recorded, "pattern=deep-recursion", "depth=25")
    assert not _insights(recorded, "pattern=blocking-in-async", "blocking_ms=200")
    assert {r["node_id"] for r in _insights(recorded, "pattern=blocking-in-async", "blocking_ms=5")} == {
        f"{M}:fetch_blocking:expr#0", f"{M}:spawn_blocking:expr#0", f"{M}:fetch_quick:expr#0"}
    assert {r["node_id"] for r in _insights(recorded, "pattern=complexity-hot-spot", "hot_ms=0")} == {
        f"{M}:crunch", f"{M}:complex_cold"}


def test_an_unknown_pattern_is_a_clear_error(recorded: Recorded) -> None:
    proc = cli("query", "insights", "-p", "pattern=typo", "--store", recorded.store, cwd=recorded.root, check=False)
    assert proc.returncode != 0 and "unknown pattern 'typo'" in proc.stderr and "swallowed-exception" in proc.stderr


@pytest.mark.parametrize(("header", "broad"), [
    ("except:", True), ("except Exception:", True), ("except Exception as exc:  # note", True),
    ("except BaseException:", True), ("except (ValueError, Exception):", True), ("except(Exception):", True),
    ("except ValueError:", False), ("except ExceptionGroup:", False), ("except (KeyError, IndexError):", False),
    ("except MyException:", False)])
def test_broad_handlers_are_told_from_narrow_ones(header: str, broad: bool) -> None:
    from execscope.queries.insights import _BROAD

    assert bool(_BROAD.match(header)) is broad


def test_a_call_passes_a_defaulted_parameter_or_not() -> None:
    from execscope.queries.insights import _mutable_params, _passes

    found = _mutable_params("def f(a, b=[], *, c={}, d=1):\n    pass\n"
                            "class K:\n    @staticmethod\n    def g(x=dict()):\n        pass\n")
    assert found[("f", 1)] == [(1, "b", False), (-1, "c", True)] and found[("g", 5)] == [(0, "x", False)]
    assert _passes("f(1)", 1, "b", False) is False and _passes("f(1, [2])", 1, "b", False) is True
    assert _passes("f(1, b=[])", 1, "b", False) is True and _passes("f(1, c={})", -1, "c", False) is True
    assert _passes("obj.m(1)", 1, "b", True) is True  # self comes from the object
    assert _passes("f(*args)", 1, "b", False) is None and _passes("f(**kw)", 1, "b", False) is None

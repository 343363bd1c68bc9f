"""The cinema on a real recording: frames, state-at and value-history equal what the program did,
value by value; lazy windows, navigation, the CLI outputs and the interactive viewer (through tmux)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from execscope.queries.cinema import open_cinema, public, transcript_line
from execscope.queries.named import QUERIES, QueryParameterError, run_named
from execscope.storage.store import open_store
from tests.integration.test_run_cli import EXECSCOPE, cli
from tests.interpreter import INT_DIV_ZERO

APP = """\
import threading


def fact(n):
    if n <= 1:
        return 1
    r = n * fact(n - 1)
    return r


def risky(x):
    try:
        if x < 0:
            raise ValueError("neg")
        y = x * 2
    except ValueError:
        y = -1
    return y


def countdown(n):
    while n > 0:
        yield n
        n -= 1


def boom(items):
    items.append("last")
    raise KeyError("k")


def worker(k, out):
    s = 0
    for i in range(k):
        s += i
    out.append(s)


def main():
    a = fact(3)
    b = risky(5)
    c = risky(-2)
    d = list(countdown(2))
    try:
        boom([])
    except KeyError:
        e = "caught"
    out = []
    t = threading.Thread(target=worker, args=(3, out))
    t.start()
    t.join()
    return a, b, c, d, e, out


if __name__ == "__main__":
    print(main())
"""

# What the program did from main() on (module prologue frames 0..10 are checked separately):
# kind, function, line, depth, variables of the running function at that frame.
EXPECTED = [
    ["call", "main", 39, 1, {}],
    ["line", "main", 40, 1, {}],
    ["call", "fact", 4, 2, {"n": "3"}],
    ["line", "fact", 5, 2, {"n": "3"}],
    ["branch", "fact", 5, 2, {"n": "3"}],
    ["line", "fact", 7, 2, {"n": "3"}],
    ["call", "fact", 4, 3, {"n": "2"}],
    ["line", "fact", 5, 3, {"n": "2"}],
    ["branch", "fact", 5, 3, {"n": "2"}],
    ["line", "fact", 7, 3, {"n": "2"}],
    ["call", "fact", 4, 4, {"n": "1"}],
    ["line", "fact", 5, 4, {"n": "1"}],
    ["branch", "fact", 6, 4, {"n": "1"}],
    ["line", "fact", 6, 4, {"n": "1"}],
    ["return", "fact", 6, 4, {"n": "1"}],
    ["assign", "fact", 7, 3, {"n": "2", "r": "2"}],
    ["line", "fact", 8, 3, {"n": "2", "r": "2"}],
    ["return", "fact", 8, 3, {"n": "2", "r": "2"}],
    ["assign", "fact", 7, 2, {"n": "3", "r": "6"}],
    ["line", "fact", 8, 2, {"n": "3", "r": "6"}],
    ["return", "fact", 8, 2, {"n": "3", "r": "6"}],
    ["assign", "main", 40, 1, {"a": "6"}],
    ["line", "main", 41, 1, {"a": "6"}],
    ["call", "risky", 11, 2, {"x": "5"}],
    ["line", "risky", 12, 2, {"x": "5"}],
    ["line", "risky", 13, 2, {"x": "5"}],
    ["branch", "risky", 13, 2, {"x": "5"}],
    ["line", "risky", 15, 2, {"x": "5"}],
    ["assign", "risky", 15, 2, {"x": "5", "y": "10"}],
    ["line", "risky", 18, 2, {"x": "5", "y": "10"}],
    ["return", "risky", 18, 2, {"x": "5", "y": "10"}],
    ["assign", "main", 41, 1, {"a": "6", "b": "10"}],
    ["line", "main", 42, 1, {"a": "6", "b": "10"}],
    ["call", "risky", 11, 2, {"x": "-2"}],
    ["line", "risky", 12, 2, {"x": "-2"}],
    ["line", "risky", 13, 2, {"x": "-2"}],
    ["branch", "risky", 14, 2, {"x": "-2"}],
    ["line", "risky", 14, 2, {"x": "-2"}],
    ["exception", "risky", 14, 2, {"x": "-2"}],  # raised and caught in risky: recorded before its handler
    ["branch", "risky", 16, 2, {"x": "-2"}],
    ["line", "risky", 17, 2, {"x": "-2"}],
    ["assign", "risky", 17, 2, {"x": "-2", "y": "-1"}],
    ["line", "risky", 18, 2, {"x": "-2", "y": "-1"}],
    ["return", "risky", 18, 2, {"x": "-2", "y": "-1"}],
    ["assign", "main", 42, 1, {"a": "6", "b": "10", "c": "-1"}],
    ["line", "main", 43, 1, {"a": "6", "b": "10", "c": "-1"}],
    ["call", "countdown", 21, 2, {"n": "2"}],
    ["line", "countdown", 22, 2, {"n": "2"}],
    ["branch", "countdown", 23, 2, {"n": "2"}],
    ["line", "countdown", 23, 2, {"n": "2"}],
    ["line", "countdown", 24, 2, {"n": "2"}],
    ["assign", "countdown", 24, 2, {"n": "1"}],
    ["branch", "countdown", 23, 2, {"n": "1"}],
    ["line", "countdown", 23, 2, {"n": "1"}],
    ["line", "countdown", 24, 2, {"n": "1"}],
    ["assign", "countdown", 24, 2, {"n": "0"}],
    ["return", "countdown", 24, 2, {"n": "0"}],
    ["assign", "main", 43, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]"}],
    ["line", "main", 44, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]"}],
    ["line", "main", 45, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]"}],
    ["call", "boom", 27, 2, {"items": "[]"}],
    ["line", "boom", 28, 2, {"items": "[]"}],
    ["line", "boom", 29, 2, {"items": "[]"}],
    ["exception", "boom", 29, 2, {"items": "[]"}],
    ["branch", "main", 46, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]"}],
    ["line", "main", 47, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]"}],
    ["assign", "main", 47, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'"}],
    ["line", "main", 48, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'"}],
    ["assign", "main", 48, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]"}],
    ["line", "main", 49, 1, {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]"}],
    ["assign", "main", 49, 1,
     {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]", "t": "<Thread>"}],
    ["line", "main", 50, 1,
     {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]", "t": "<Thread>"}],
    ["line", "main", 51, 1,
     {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]", "t": "<Thread>"}],
    ["line", "main", 52, 1,
     {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]", "t": "<Thread>"}],
    ["return", "main", 52, 1,
     {"a": "6", "b": "10", "c": "-1", "d": "[2, 1]", "e": "'caught'", "out": "[]", "t": "<Thread>"}],
    ["return", "cinema_app", 56, 0, {}],
]


@pytest.fixture(scope="module", params=["chdb", "http"])
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The program recorded by `execscope run` into an embedded store, and into a server store."""
    root = tmp_path_factory.mktemp("cinema")
    (root / "cinema_app.py").write_text(APP)
    if request.param == "chdb":
        store = f"chdb://{root / 'db'}"
    else:
        store = request.getfixturevalue("clickhouse_server").dsn(f"cinema_{uuid.uuid4().hex[:10]}")
    cli("run", "--include", "cinema_app", "--level", "statements", "--store", store, "--",
        "python", "cinema_app.py", cwd=root)
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=root).stdout)
    main_trace = next(t["trace_id"] for t in traces if t["root"] == "cinema_app")
    return root, store, main_trace


def _thread_object(value: str) -> str:
    return "<Thread>" if value.startswith("<threading.Thread object") else value


def test_frames_equal_what_the_program_did(recorded: tuple[Path, str, str]) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        film = open_cinema(s, trace)
        everything = list(film.frames())
    # the worker thread's frames belong to this trace too (see test_thread_work_...): set them aside
    frames = [f for f in everything if not f["function"].endswith(".worker")]
    assert [f["seq"] for f in everything] == list(range(len(everything)))
    assert len(frames) == 11 + len(EXPECTED)
    prologue = [(f["kind"], f["line"]) for f in frames[:11]]
    assert prologue == [("call", 1), ("line", 1), ("line", 4), ("line", 11), ("line", 21), ("line", 27),
                        ("line", 32), ("line", 39), ("line", 55), ("branch", 56), ("line", 56)]
    got = [[f["kind"], f["function"].split(".")[-1], f["line"], f["depth"],
            {k: _thread_object(v) for k, v in f["locals"].items()}] for f in frames[11:]]
    assert got == EXPECTED
    assert frames[16]["source"] == "    r = n * fact(n - 1)"
    assert frames[74]["exception"] == "KeyError: k"  # the recorder keeps KeyError's key, not its repr
    assert frames[49]["exception"] == "ValueError: neg" and frames[49]["node_id"] == "cinema_app:risky:raise#0"
    assert frames[49]["source"].strip() == 'raise ValueError("neg")'
    assert all(set(public(f)) >= {"seq", "timestamp", "node_id", "kind", "function", "file", "line", "source",
                                   "depth", "locals"} for f in frames)


def test_small_windows_give_the_same_frames_and_step_back_across_boundaries(recorded) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        whole = [public(f) for f in open_cinema(s, trace).frames()]
        film = open_cinema(s, trace, window=7)
        backwards = [public(film.frame(i)) for i in range(film.total - 1, -1, -1)]
    assert backwards[::-1] == whole


def test_indexed_reads_give_what_the_plain_queries_give(recorded) -> None:
    """The calls alive at a frame (blocked index), the stack replayed from a cached window, the state
    of old calls through their write index, details read in bulk or in blocks: all equal the plain
    per-frame answers (scan of every call, the state-before aggregate)."""
    _root, store, trace = recorded
    with open_store(store) as s:
        plain = open_cinema(s, trace, window=7)
        plain.BULK_CALLS = 0
        film = open_cinema(s, trace, window=7)
        film.RECENT = 3  # most live calls count as old: their state comes from the write index
        film.index_long_calls(frames=5)
        assert [public(film.frame(i)) for i in range(film.total)] == [public(plain.frame(i)) for i in range(film.total)]
        for i in range(film.total):
            key = film._index.keys[i]
            ts, seq, _ = film._parts(key)
            every = sorted((c for c in film.calls().values() if c.call_key <= key and (
                c.return_key >= key if c.return_key is not None else
                (c.h1 >= ts if film.multi else c.s1 >= seq))), key=lambda c: c.call_key)
            assert [c.span_id for c in film._alive(key, inclusive=True)] == [c.span_id for c in every]
            film.frame(i)
            local, last_line = film._state_before(every, (ts, seq + 1, 0))
            assert [(c.span_id, v, line) for c, v, line in film.call_stack(i)] == [
                (c.span_id, local[c.span_id], last_line.get(c.span_id, 0)) for c in every]


def test_conditions_decided_in_batches_are_the_conditions_on_the_frames(recorded) -> None:
    """A line breakpoint's condition, decided from the store in batches (arguments, last writes, names
    never written), is the condition evaluated on the frame's own variables at every hit."""
    from execscope.queries.breakpoints import Breakpoints

    root, store, trace = recorded
    with open_store(store) as s:
        film = open_cinema(s, trace)
        matcher = Breakpoints(film)
        cases = ((7, "n > 2"), (24, "n % 2 == 1"), (35, "s >= 1 or i == 0"), (35, "k == 3 and s > 0"), (15, "x > 1"))
        for line, condition in cases:
            bp = matcher.line(str(root / "cinema_app.py"), line, condition)
            assert bp.positions
            verdicts = [bp.test(film.frame(p)["locals"]) for p in bp.positions]
            assert True in verdicts and (False in verdicts or condition == "x > 1"), condition
            assert [matcher.condition_holds(bp, p) for p in bp.positions] == [
                bp.test(film.frame(p)["locals"]) for p in bp.positions]


def test_navigation(recorded) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        film = open_cinema(s, trace, window=10)
        assert film.find(0, kind="exception") == 49   # raised and caught in risky(-2)
        assert film.find(49, kind="exception") == 74  # raised in boom, caught by main
        assert film.find(80, False, kind="exception") == 74
        assert film.find(0, var="r") == 26 and film.find(27, var="r") == 29
        assert film.find(40, False, var="r") == 29
        assert film.find(0, line=24) == 61            # first execution of `n -= 1`
        assert film.find(0, text="caught") == 76
        assert film.step_over(16) == 29               # over the recursive call: fact(3) writes r = 6
        assert film.step_out(14) == 32                # out of fact(3): main's `a = 6`
        assert film.step_out(14, forward=False) == 12  # back out: the line that called fact(3)
        assert film.step_over(32, forward=False) == 12


def test_state_at_and_value_history(recorded) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        state = run_named(s, "state-at", {"trace": trace, "at": "24"}).rows
        assert [(d, fn, var, val) for d, fn, _span, var, val in state] == [
            (0, "cinema_app", "", ""), (1, "cinema_app.main", "", ""),
            (2, "cinema_app.fact", "n", "3"), (3, "cinema_app.fact", "n", "2"), (4, "cinema_app.fact", "n", "1")]
        history = run_named(s, "value-history", {"var": "r", "trace": trace}).dicts()
        assert [(h["value"], h["line"], h["function"]) for h in history] == [
            ("2", 7, "cinema_app.fact"), ("6", 7, "cinema_app.fact")]
        n_history = [h["value"] for h in run_named(s, "value-history", {"var": "n", "trace": trace}).dicts()]
        assert n_history == ["1", "0"]  # countdown's n -= 1 (arguments are not writes)
        with pytest.raises(QueryParameterError, match="outside the trace"):
            run_named(s, "state-at", {"trace": trace, "at": "100000"})


def test_thread_work_is_recorded_with_its_values_in_causal_order(recorded) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        traces = s.query("SELECT DISTINCT TraceId FROM otel_traces WHERE SpanName = 'cinema_app.worker'").rows
        assert traces == [(trace,)]  # the thread started inside main() records in main's trace
        frames = list(open_cinema(s, trace).frames())
    worker = [f for f in frames if f["function"] == "cinema_app.worker"]
    writes = [(f["var"], f["value"]) for f in worker if f["kind"] == "assign"]
    assert writes == [("s", "0"), ("i", "0"), ("s", "0"), ("i", "1"), ("s", "1"), ("i", "2"), ("s", "3")]
    assert worker[0]["kind"] == "call" and worker[0]["locals"] == {"k": "3", "out": "[]"}
    assert worker[0]["depth"] == 2  # a child of main()
    start = next(f["seq"] for f in frames if f["source"].strip() == "t.start()")
    after_join = next(f["seq"] for f in frames if f["source"].strip() == "return a, b, c, d, e, out")
    assert start < worker[0]["seq"] and worker[-1]["seq"] < after_join  # started after start(), done by join()


def test_cli_json_and_text(recorded) -> None:
    root, store, trace = recorded
    frames = json.loads(cli("cinema", trace, "--store", store, "--format", "json", "--at", "13", "--count", "3",
                            cwd=root).stdout)
    assert [(f["seq"], f["kind"], f["locals"]) for f in frames] == [
        (13, "call", {"n": "3"}), (14, "line", {"n": "3"}), (15, "branch", {"n": "3"})]
    text = cli("cinema", trace, "--store", store, "--format", "text", cwd=root).stdout.splitlines()
    assert len(text) == 11 + len(EXPECTED) + 18  # + the worker thread's frames
    assert "call      cinema_app.fact:4" in text[13] and "n=3" in text[13]
    missing = cli("cinema", "0" * 32, "--store", store, cwd=root, check=False)
    assert missing.returncode != 0 and "no recorded frames" in missing.stderr


def test_named_queries_on_the_recording(recorded) -> None:
    _root, store, trace = recorded
    with open_store(store) as s:
        exc = run_named(s, "exceptions", {"trace": trace}).dicts()
        raised = [e for e in exc if e["what"] == "raised"]
        assert [(e["node_id"], e["type"], e["line"]) for e in raised] == [
            ("cinema_app:boom", "KeyError", 29), ("cinema_app:risky:raise#0", "ValueError", 14)]
        caught = sorted(e["node_id"] for e in exc if e["what"] == "caught")
        assert caught == ["cinema_app:main:except#0", "cinema_app:risky:except#0"]
        hot = {r["node_id"]: r for r in run_named(s, "hot-nodes", {"limit": "50"}).dicts()}
        assert hot["cinema_app:fact"]["executions"] == 3
        assert hot["cinema_app:fact"]["self_ms"] <= hot["cinema_app:fact"]["total_ms"]
        assert hot["cinema_app:main"]["self_ms"] < hot["cinema_app:main"]["total_ms"]
        paths = run_named(s, "slow-paths", {"function": "cinema_app:fact"}).dicts()
        assert sorted((p["path"], p["calls"]) for p in paths) == [
            ("cinema_app:fact:if#0.false", 2), ("cinema_app:fact:if#0.true", 1)]
        cov = {r["function"]: r for r in run_named(s, "coverage", {"module": "cinema_app"}).dicts()}
        assert cov["cinema_app:fact"]["node_pct"] == 100.0
        assert cov["cinema_app:risky"]["nodes_hit"] == cov["cinema_app:risky"]["nodes"]
        graph = {(r["caller"], r["callee"]): r for r in run_named(s, "call-graph", {"module": "cinema_app"}).dicts()}
        assert graph[("cinema_app:main", "cinema_app:fact")]["status"] == "static and dynamic"
        assert graph[("cinema_app:fact", "cinema_app:fact")]["calls"] == 2
        assert graph[("cinema_app:main", "cinema_app:countdown")]["calls"] == 1
        with pytest.raises(QueryParameterError, match="unknown parameter"):
            run_named(s, "hot-nodes", {"nope": "1"})
        with pytest.raises(QueryParameterError, match="needs function"):
            run_named(s, "slow-paths", {})


def test_every_named_query_and_its_cli(recorded) -> None:
    """Every named query answers on the recording (on both kinds of store: see ``recorded``), and
    `execscope query` prints the same rows as the Python API."""
    root, store, trace = recorded
    params = {
        "hot-nodes": {"limit": "50", "statements": "true"}, "slow-paths": {"function": "cinema_app.fact"},
        "exceptions": {"trace": trace}, "coverage": {"function": "cinema_app:risky"},
        "state-at": {"trace": trace, "at": "24"}, "value-history": {"var": "s", "trace": trace},
        "cfg-violations": {"trace": trace}, "breakpoint-hits": {"trace": trace, "spec": "cinema_app.fact"},
        "call-graph": {"module": "cinema_app", "limit": "5"},
        "insights": {"pattern": "never-executed"}, "unusual-paths": {"function": "cinema_app:fact"},
        "processes": {"trace": trace}, "clock-skew": {"trace": trace},
    }
    assert set(params) == set(QUERIES)
    with open_store(store) as s:
        answers = {name: run_named(s, name, p).dicts() for name, p in params.items()}
    assert answers["cfg-violations"] == []  # the static CFG explains every transition recorded
    assert answers["clock-skew"] == []  # one process: no pair talked
    assert all(answers[name] for name in params if name not in ("cfg-violations", "clock-skew")), answers
    assert [(p["spans"] > 0, p["clock_offset_ms"]) for p in answers["processes"]] == [(True, 0.0)]
    assert [(r["pattern"], r["node_id"]) for r in answers["insights"]] == [
        ("never-executed", "cinema_app:<module>:if#0.false")]
    assert sorted(r["seq"] for r in answers["unusual-paths"]) == [13, 17, 21]  # fact(3), fact(2), fact(1)
    hits = [(h["position"], h["locals"]) for h in answers["breakpoint-hits"]]
    assert hits == [(13, '{"n": "3"}'), (17, '{"n": "2"}'), (21, '{"n": "1"}')]
    assert [(r["function"], r["value"]) for r in answers["value-history"]] == [("cinema_app.worker", "0")] * 2 + [
        ("cinema_app.worker", "1"), ("cinema_app.worker", "3")]
    args = [a for k, v in params["exceptions"].items() for a in ("-p", f"{k}={v}")]
    printed = json.loads(cli("query", "exceptions", *args, "--store", store, "--format", "json", cwd=root).stdout)
    assert printed == json.loads(json.dumps(answers["exceptions"], default=str))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_interactive_cinema_through_tmux(recorded) -> None:
    root, store, trace = recorded
    session = f"execscope-cinema-{time.monotonic_ns()}"
    command = " ".join([*EXECSCOPE, "cinema", trace, "--store", store, "--at", "13"])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "36", command], check=True,
                   cwd=root)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True,
                              check=True).stdout

    def wait_for(*texts: str, timeout: float = 30.0) -> str:
        """The screen once every text is on it: the header's frame number is drawn before the panes
        (CI once captured frame 28's header over the previous frame's source and variables)."""
        deadline = time.monotonic() + timeout
        shown = ""
        while time.monotonic() < deadline:
            shown = screen()
            if all(text in shown for text in texts):
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{[t for t in texts if t not in shown]!r} not on screen:\n{shown}")

    def keys(*k: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, *k], check=True)

    try:
        wait_for("frame 13/", "▶ def fact(n):", "n = 3")
        keys("Right", "Right", "Right")
        wait_for("frame 16/", "▶     r = n * fact(n - 1)")
        keys("o")                        # over the recursive call
        wait_for("frame 29/", "r = 6")
        keys("Left")                     # step back
        wait_for("frame 28/", "return 2", "n = 2", "r = 2")
        keys("e")                        # next exception: raised and caught in risky(-2)
        wait_for("frame 49/", "raised ValueError: neg", '▶             raise ValueError("neg")')
        keys("e")
        wait_for("frame 74/", "raised KeyError", "▶     raise KeyError")
        keys("U")                        # back out of boom: the line that called it
        wait_for("frame 70/")
        keys("w")
        wait_for("next write of variable")
        keys("e", "Enter")
        wait_for("frame 77/", "e = 'caught'")
        keys("q")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and subprocess.run(
                ["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
            time.sleep(0.2)  # the viewer quits and releases the store
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        time.sleep(0.5)


CAUGHT_APP = """\
def average(values):
    total = 0
    for v in values:
        total += v
    try:
        total = total // len(values)
    except ZeroDivisionError:
        total = -1
    return total


def strict(values):
    try:
        return 1 // len(values)
    except ZeroDivisionError:
        raise ValueError("empty") from None


if __name__ == "__main__":
    print(average([4, 2]), average([]))
    try:
        strict([])
    except ValueError:
        print("strict")
"""


@pytest.mark.parametrize("level", ["branches", "statements"])
def test_an_exception_caught_where_it_was_raised_is_a_frame_before_its_handler(tmp_path: Path, level: str) -> None:
    (tmp_path / "exc_app.py").write_text(CAUGHT_APP)
    store = f"chdb://{tmp_path / 'db'}"
    run = cli("run", "--include", "exc_app", "--level", level, "--store", store, "--", "python", "exc_app.py",
              cwd=tmp_path)
    assert run.stdout.split() == ["3", "-1", "strict"]
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    (trace,) = [t["trace_id"] for t in traces if t["root"] == "exc_app"]
    with open_store(store) as s:
        film = open_cinema(s, trace)
        frames = list(film.frames())
        calls = [f for f in frames if f["kind"] == "call" and f["function"] == "exc_app.average"]
        assert [c["locals"] for c in calls] == [{"values": "[4, 2]"}, {"values": "[]"}]
        at = film.find(0, kind="exception")  # the cinema's `e`: the first exception of the recording
        assert at is not None and frames[at]["seq"] == at and at > calls[1]["seq"]
        exc, handler = frames[at], frames[at + 1]
        assert (exc["kind"], exc["function"], exc["line"], exc["exception"]) == (
            "exception", "exc_app.average", 6, f"ZeroDivisionError: {INT_DIV_ZERO}")
        assert exc["node_id"] == "exc_app:average:assign#1" and exc["source"] == "        total = total // len(values)"
        assert exc["locals"] == ({"values": "[]", "total": "0"} if level == "statements" else {"values": "[]"})
        assert (handler["kind"], handler["node_id"], handler["line"]) == ("branch", "exc_app:average:except#0", 7)
        assert transcript_line(exc).endswith(f"raise ZeroDivisionError: {INT_DIV_ZERO}")
        if level == "statements":  # the raising line ran, then the exception, then the handler
            assert [(f["kind"], f["line"]) for f in frames[at - 1:at + 5]] == [
                ("line", 6), ("exception", 6), ("branch", 7), ("line", 8), ("assign", 8), ("line", 9)]
        assert film.step_out(calls[1]["seq"]) == calls[1]["seq"] + len(
            [f for f in frames[calls[1]["seq"]:] if f["span_id"] == calls[1]["span_id"]])  # past its return
        # strict(): caught (ZeroDivisionError), then another exception leaves the call (ValueError); the
        # module's handler catching that from a recorded call adds nothing: the call's span has it
        (strict,) = [f for f in frames if f["kind"] == "call" and f["function"] == "exc_app.strict"]
        caught, escaped = film.find(at, kind="exception"), film.find(film.find(at, kind="exception"), kind="exception")
        assert (frames[caught]["exception"], frames[caught]["line"], frames[caught]["span_id"]) == (
            f"ZeroDivisionError: {INT_DIV_ZERO}", 14, strict["span_id"])
        assert (frames[caught + 1]["kind"], frames[caught + 1]["node_id"]) == ("branch", "exc_app:strict:except#0")
        assert (frames[escaped]["exception"], frames[escaped]["line"], frames[escaped]["node_id"]) == (
            "ValueError: empty", 16, "exc_app:strict")
        assert film.find(escaped, kind="exception") is None
        assert film.find(len(frames) - 1, False, kind="exception") == escaped
        assert film.step_out(strict["seq"]) == escaped + 1  # out of the failed call: past its last exception
        assert frames[escaped + 1]["node_id"] == "exc_app:<module>:except#0"
        rows = run_named(s, "exceptions", {"trace": trace}).dicts()
    assert sorted((r["what"], r["node_id"], r["type"], r["line"], r["count"]) for r in rows) == [
        ("caught", "exc_app:<module>:except#0", "except ValueError:", 23, 1),
        ("caught", "exc_app:average:except#0", "except ZeroDivisionError:", 7, 1),
        ("caught", "exc_app:strict:except#0", "except ZeroDivisionError:", 15, 1),
        ("raised", "exc_app:average:assign#1", "ZeroDivisionError", 6, 1),
        ("raised", "exc_app:strict", "ValueError", 16, 1),
        ("raised", "exc_app:strict:return#0", "ZeroDivisionError", 14, 1)]
    raised = next(r for r in rows if r["node_id"] == "exc_app:average:assign#1")
    assert raised["example_message"] == INT_DIV_ZERO and raised["traces"] == [trace]


def test_query_builder_joins_cpg_facts_with_executions(recorded) -> None:
    from execscope.queries.builder import CpgQuery, QueryBuildError

    _root, store, _trace = recorded
    with open_store(store) as s:
        base = CpgQuery(s).functions().module("cinema_*").with_executions()
        rows = base.where("cyclomatic", ">=", 2).order_by("calls", descending=True).select(
            "qualname", "cyclomatic", "calls").rows()
        assert rows[0] == {"qualname": "fact", "cyclomatic": 2, "calls": 3}
        assert {r["qualname"] for r in rows} == {"fact", "risky", "countdown", "worker", "main"}
        assert all(r["cyclomatic"] >= 2 for r in rows)
        never = base.where("calls", "=", 0).select("qualname").rows()
        assert never == []  # every function of the app ran
        ifs = CpgQuery(s).nodes("if").module("cinema_app").with_executions().order_by("executions", True).rows()
        assert [(r["code"], r["executions"]) for r in ifs] == [
            ("if n <= 1:", 3), ("if x < 0:", 2), ('if __name__ == "__main__":', 1)]
        assert "{p0:String}" in base.sql() and base.params() == {"p0": "cinema\\_%"}
        with pytest.raises(QueryBuildError, match="available"):
            base.where("nope", "=", 1)
        with pytest.raises(QueryBuildError, match="operator"):
            base.where("calls", "~", 1)

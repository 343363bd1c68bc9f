"""`execscope run` end to end on real processes and the real embedded engine (and a server store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXECSCOPE = [sys.executable, "-m", "execscope"]


def cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 180
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*EXECSCOPE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def sql(query: str, cwd: Path, store: str) -> list[dict]:
    return json.loads(cli("sql", query, "--store", store, "--format", "json", cwd=cwd).stdout)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "mp_app").mkdir()
    (tmp_path / "mp_app" / "__init__.py").write_text("")
    (tmp_path / "mp_app" / "work.py").write_text(textwrap.dedent('''
        def square(x):
            return x * x

        def child_job(n):
            return sum(square(i) for i in range(n))
    '''))
    (tmp_path / "mp_app" / "__main__.py").write_text(textwrap.dedent('''
        import multiprocessing as mp
        import subprocess
        import sys

        from mp_app.work import child_job, square

        def run_pool(method):
            ctx = mp.get_context(method)
            with ctx.Pool(2) as pool:
                return pool.map(child_job, [3, 4])

        def main():
            print("square", square(7))
            print("fork", run_pool("fork"))
            print("spawn", run_pool("spawn"))
            p = mp.get_context("fork").Process(target=child_job, args=(5,))
            p.start(); p.join()
            out = subprocess.run([sys.executable, "-c", "from mp_app.work import child_job; print(child_job(6))"],
                                 capture_output=True, text=True)
            print("subprocess", out.stdout.strip())
            return 3

        if __name__ == "__main__":
            sys.exit(main())
    '''))
    return tmp_path


def test_multi_process_program_is_recorded_in_every_process(app: Path) -> None:
    store = f"chdb://{app / 'db'}"
    proc = cli("run", "--include", "mp_app*", "--store", store, "--", sys.executable, "-m", "mp_app",
               cwd=app, check=False, env={"PYTHONPATH": str(app)})
    assert proc.returncode == 3, proc.stderr  # the program's own exit code
    assert "square 49" in proc.stdout and "fork [5, 14]" in proc.stdout and "spawn [5, 14]" in proc.stdout
    assert "subprocess 55" in proc.stdout
    assert "execscope: stored" in proc.stderr
    counts = {r["SpanName"]: r["n"] for r in sql(
        "SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName", app, store)}
    # child_job: 2 fork pool + 2 spawn pool + 1 fork Process + 1 subprocess
    assert counts["mp_app.work.child_job"] == 6
    assert counts["mp_app.work.square"] == 1 + (3 + 4) * 2 + 5 + 6
    assert counts["mp_app.__main__.main"] == 1
    joined = sql("SELECT countIf(NodeId IN (SELECT node_id FROM cpg_nodes)) AS j, count() AS n "
                 "FROM otel_traces", app, store)[0]
    assert joined["j"] == joined["n"]
    stored = sql("SELECT count() AS spans, sum(length(Events.Name)) AS events FROM otel_traces", app, store)[0]
    # what the run reports (counted by the writers of the spool files) is what the store holds
    assert f"stored {stored['spans']} spans with {stored['events']} events" in proc.stderr


def test_traces_and_sql_json_contract(app: Path, new_store) -> None:
    store = new_store("db")  # embedded, and a server store
    cli("run", "--include", "mp_app.work", "--store", store, "--", sys.executable, "-c",
        "from mp_app.work import child_job; child_job(3); child_job(2)", cwd=app, env={"PYTHONPATH": str(app)})
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=app).stdout)
    assert len(traces) == 2
    for row in traces:
        assert {"trace_id", "root", "spans", "start", "duration_ms"} <= set(row)
        assert row["root"] == "mp_app.work.child_job" and len(row["trace_id"]) == 32
    assert sorted(r["spans"] for r in traces) == [3, 4]
    table = cli("traces", "--store", store, cwd=app).stdout
    assert "trace_id" in table and "(2 rows)" in table
    bound = cli("sql", "SELECT count() AS n FROM otel_traces WHERE SpanName = {name:String}",
                "-p", "name=mp_app.work.square", "--store", store, "--format", "json", cwd=app).stdout
    assert json.loads(bound) == [{"n": 5}]
    bad = cli("sql", "SELECT nope FROM nowhere", "--store", store, cwd=app, check=False)
    assert bad.returncode != 0 and "Error" in bad.stderr and bad.stdout == ""


def test_script_run_directly_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(textwrap.dedent('''
        import sys
        def greet(name):
            return "hi " + name
        if __name__ == "__main__":
            print(greet(sys.argv[1]), __name__, sys.argv[0].endswith("script.py"))
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    proc = cli("run", "--include", "script", "--level", "statements", "--store", store, "--",
               sys.executable, "script.py", "bob", cwd=tmp_path)
    assert proc.stdout.strip() == "hi bob __main__ True"
    rows = sql("SELECT SpanName, SpanAttributes['execscope.arg.name'] AS arg FROM otel_traces "
               "WHERE SpanName = 'script.greet'", tmp_path, store)
    assert rows == [{"SpanName": "script.greet", "arg": "'bob'"}]


def test_crash_loses_at_most_the_last_batch(tmp_path: Path) -> None:
    (tmp_path / "crashy.py").write_text(textwrap.dedent('''
        import os, signal, time
        def step(i):
            return i
        def main():
            for i in range(200):
                step(i)
            time.sleep(1.5)  # longer than the batch delay: these are flushed
            for i in range(50):
                step(i)
            os.kill(os.getpid(), signal.SIGKILL)
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    proc = cli("run", "--include", "crashy", "--store", store, "--", sys.executable, "-c",
               "import crashy; crashy.main()", cwd=tmp_path, check=False, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 128 + 9
    n = sql("SELECT count() AS n FROM otel_traces WHERE SpanName = 'crashy.step'", tmp_path, store)[0]["n"]
    assert 200 <= n <= 250


def test_pytest_with_xdist_workers_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "test_calc.py").write_text(textwrap.dedent('''
        import pytest
        from calc import add
        @pytest.mark.parametrize("i", range(8))
        def test_add(i):
            assert add(i, 1) == i + 1
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    proc = cli("run", "--include", "calc", "--store", store, "--", sys.executable, "-m", "pytest", "-q",
               "-n", "2", "-p", "no:cacheprovider", "test_calc.py", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert "8 passed" in proc.stdout
    rows = sql("SELECT count() AS n FROM otel_traces WHERE SpanName = 'calc.add'", tmp_path, store)
    assert rows[0]["n"] == 8
    # one trace per test: the execscope pytest plugin's test span parents what the test calls
    tests = sql("SELECT t.SpanName AS test, t.SpanAttributes['test.case.result.status'] AS status, "
                "count() AS calls FROM otel_traces AS c INNER JOIN otel_traces AS t "
                "ON t.SpanId = c.ParentSpanId AND t.TraceId = c.TraceId "
                "WHERE c.SpanName = 'calc.add' GROUP BY test, status ORDER BY test", tmp_path, store)
    assert [r["test"] for r in tests] == [f"test test_calc.py::test_add[{i}]" for i in range(8)]
    assert {r["status"] for r in tests} == {"pass"} and {r["calls"] for r in tests} == {1}


def test_usage_errors_are_clear(tmp_path: Path) -> None:
    no_include = cli("run", "--", sys.executable, "-c", "pass", cwd=tmp_path, check=False)
    assert no_include.returncode == 2 and "--include" in no_include.stderr
    missing = cli("run", "--include", "x", "--store", f"chdb://{tmp_path / 'db'}", "--",
                  "no-such-command-xyz", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "command not found: no-such-command-xyz" in missing.stderr
    help_text = cli("run", "--help", cwd=tmp_path).stdout
    for word in ("--include", "--exclude", "--level", "--store", "--service", "statements"):
        assert word in help_text


def test_fork_child_unwinding_through_recorded_frames_duplicates_nothing(tmp_path: Path) -> None:
    (tmp_path / "forker.py").write_text(textwrap.dedent('''
        import os, sys
        def leaf(who):
            return who
        def middle():
            pid = os.fork()
            if pid == 0:
                leaf("child")
                sys.exit(0)        # unwinds through middle() and outer() in the child
            os.waitpid(pid, 0)
            return leaf("parent")
        def outer():
            return middle()
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    cli("run", "--include", "forker", "--store", store, "--", sys.executable, "-c",
        "import forker; forker.outer()", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    rows = sql("SELECT SpanName, SpanAttributes['execscope.arg.who'] AS who, count() AS n, "
               "uniqExact(SpanId) AS ids FROM otel_traces GROUP BY SpanName, who ORDER BY SpanName, who",
               tmp_path, store)
    assert rows == [
        {"SpanName": "forker.leaf", "who": "'child'", "n": 1, "ids": 1},
        {"SpanName": "forker.leaf", "who": "'parent'", "n": 1, "ids": 1},
        {"SpanName": "forker.middle", "who": "", "n": 1, "ids": 1},
        {"SpanName": "forker.outer", "who": "", "n": 1, "ids": 1},
    ]
    child_leaf = sql("SELECT c.TraceId = p.TraceId AS same_trace, p.SpanName AS parent FROM otel_traces AS c "
                     "INNER JOIN otel_traces AS p ON p.SpanId = c.ParentSpanId "
                     "WHERE c.SpanAttributes['execscope.arg.who'] = \'\\\'child\\\'\'", tmp_path, store)
    assert child_leaf == [{"same_trace": 1, "parent": "forker.middle"}]


def test_sampled_out_program_runs_unchanged_and_records_nothing(tmp_path: Path) -> None:
    (tmp_path / "sampled.py").write_text("def f(n):\n    return n * 2\n\nprint(sum(f(i) for i in range(100)))\n")
    store = f"chdb://{tmp_path / 'db'}"
    out = cli("run", "--include", "sampled", "--sample", "0", "--store", store, "--", "python", "sampled.py",
              cwd=tmp_path)
    assert out.stdout.strip() == "9900"
    assert sql("SELECT count() AS n FROM otel_traces", tmp_path, store) == [{"n": 0}]
    kept = cli("run", "--include", "sampled", "--sample", "1", "--store", store, "--", "python", "sampled.py",
               cwd=tmp_path)
    assert kept.stdout.strip() == "9900"
    assert sql("SELECT count() AS n FROM otel_traces", tmp_path, store) == [{"n": 100}]  # the 100 calls
    bad = cli("run", "--include", "sampled", "--sample", "2", "--store", store, "--", "python", "sampled.py",
              cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--sample" in bad.stderr


def test_a_locked_store_is_refused_before_the_program_runs(tmp_path: Path) -> None:
    from execscope.storage import open_store

    marker = tmp_path / "ran"
    store = f"chdb://{tmp_path / 'db'}"
    with open_store(store):  # this process owns the store
        proc = cli("run", "--include", "nothing", "--store", store, "--", sys.executable, "-c",
                   f"open({str(marker)!r}, 'w').write('x')", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "locked" in proc.stderr and str(os.getpid()) in proc.stderr
    assert not marker.exists()
    ok = cli("run", "--include", "nothing", "--store", store, "--", sys.executable, "-c",
             f"open({str(marker)!r}, 'w').write('x')", cwd=tmp_path)  # and runs once the owner is gone
    assert marker.exists() and "stored 0 spans" in ok.stderr


def test_a_server_store_away_keeps_the_recording_for_the_next_run(tmp_path: Path, monkeypatch) -> None:
    """The program runs while its server store cannot be reached, and says so in one line; the
    recording waits in the run's own spool (another run on the address holds the first one) and a
    later run on the address stores it too."""
    import socket

    from execscope.recording import claim_spool, spool_path_for
    from execscope.storage import resolve_address
    from tests.integration.clickhouse_server import PASSWORD, USER, ClickHouseServer, start_server, stop_server

    (tmp_path / "greeter.py").write_text("def greet(name):\n    return 'hi ' + name\n\nprint(greet('ann'))\n")
    with socket.socket() as s:  # a port nothing listens on (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = ClickHouseServer(f"http://127.0.0.1:{port}", USER, PASSWORD).dsn("away")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where a server store's spools wait
    first, held = claim_spool(resolve_address(store))  # another run on this machine, still running
    assert first == spool_path_for(resolve_address(store)) and held is not None
    try:
        away = cli("run", "--include", "greeter", "--store", store, "--", sys.executable, "greeter.py", cwd=tmp_path,
                   check=False)
    finally:
        os.close(held)
    assert away.stdout == "hi ann\n" and away.returncode == 1  # the program ran; storing failed
    assert away.stderr == (f"Error: cannot reach store http://{USER}:***@127.0.0.1:{port}/away: Connection refused "
                           f"(the recording stays in {spool_path_for(resolve_address(store), 1)} for the next run)\n")
    proc, _ = start_server(tmp_path / "server", USER, PASSWORD, "--port", str(port))
    try:
        again = cli("run", "--include", "greeter", "--store", store, "--", sys.executable, "greeter.py", cwd=tmp_path)
        assert "stored 2 spans" in again.stderr  # its own, and the one the first run left in its spool
        assert sql("SELECT count() AS n FROM otel_traces WHERE SpanName = 'greeter.greet'", tmp_path, store) == [
            {"n": 2}]
    finally:
        stop_server(proc)


COUNTED_SQL = ("SELECT sum(toUInt64(v)) AS n FROM otel_traces "
               "ARRAY JOIN mapValues(mapFilter((k, v) -> k = 'execscope.unrecorded.hot:leaf', SpanAttributes)) AS v")


def test_hot_functions_are_sampled_per_test_by_default_and_every_call_is_counted(tmp_path: Path) -> None:
    (tmp_path / "hot.py").write_text("def leaf(i):\n    return i\n\n"
                                     "def loop(n):\n    return sum(leaf(i) for i in range(n))\n")
    (tmp_path / "test_hot.py").write_text(textwrap.dedent('''
        import threading
        import hot

        def test_direct():  # called by the (unrecorded) test itself: counted on a tally span
            assert sum(hot.leaf(i) for i in range(5000)) == sum(range(5000))

        def test_nested():  # below a recorded call: counted on it
            assert hot.loop(5000) == sum(range(5000))

        def test_thread():  # a thread started under the test's span belongs to its trace
            t = threading.Thread(target=lambda: [hot.leaf(i) for i in range(3000)])
            t.start(); t.join()
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    out = cli("run", "--include", "hot", "--store", store, "--", sys.executable, "-m", "pytest", "-q", "-p",
              "no:cacheprovider", "test_hot.py", cwd=tmp_path)
    assert "6000 more calls of hot functions were counted, not recorded" in out.stderr
    spans = sql("SELECT count() AS n FROM otel_traces WHERE SpanName = 'hot.leaf'", tmp_path, store)[0]["n"]
    counted = sql(COUNTED_SQL, tmp_path, store)[0]["n"]
    assert spans + counted == 13000  # every call: a span or a count
    # per test: the first 1000 calls of leaf, then one in 2 until 1000 more are kept, then one in 4
    assert spans == 2500 + 2500 + 2000
    per_test = sql("SELECT t.SpanName AS test, count() AS n FROM otel_traces AS s INNER JOIN otel_traces AS t "
                   "ON t.TraceId = s.TraceId AND t.ParentSpanId = '' WHERE s.SpanName = 'hot.leaf' "
                   "GROUP BY test ORDER BY test", tmp_path, store)
    assert [row["test"].split("::")[-1] for row in per_test] == ["test_direct", "test_nested", "test_thread"]
    assert all(row["n"] >= 1000 for row in per_test)  # the budget restarts with every test
    store_all = f"chdb://{tmp_path / 'db_all'}"
    cli("run", "--adaptive", "0", "--include", "hot", "--store", store_all, "--", sys.executable, "-m", "pytest",
        "-q", "-p", "no:cacheprovider", "test_hot.py", cwd=tmp_path)
    assert sql("SELECT count() AS n FROM otel_traces WHERE SpanName = 'hot.leaf'", tmp_path, store_all) == [
        {"n": 13000}]


def test_exit_with_a_thread_still_recording_is_bounded_and_keeps_what_was_flushed(tmp_path: Path) -> None:
    # The interpreter shuts down while a daemon thread calls recorded functions as fast as it can:
    # the final flush must not chase it forever (timeout = hang) and the exit code is the program's.
    (tmp_path / "busy.py").write_text(textwrap.dedent('''
        import sys, threading, time
        def work(i):
            return i * 2
        def spin():
            i = 0
            while True:
                work(i)
                i += 1
        def main():
            threading.Thread(target=spin, daemon=True).start()
            time.sleep(0.5)
            return 7
        sys.exit(main())
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    proc = cli("run", "--include", "busy", "--adaptive", "0", "--store", store, "--", sys.executable, "busy.py",
               cwd=tmp_path, check=False, timeout=60, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 7, proc.stderr
    rows = sql("SELECT SpanName, count() AS n FROM otel_traces GROUP BY SpanName ORDER BY SpanName", tmp_path, store)
    names = {r["SpanName"]: r["n"] for r in rows}
    assert names.get("busy.main") == 1 and names.get("busy.work", 0) > 100, rows


def test_a_backlog_left_when_the_program_ends_is_announced(tmp_path: Path, capsys) -> None:
    from execscope.instrumentation.export.spool import Spool
    from execscope.recording import BACKLOG_NOTICE_BATCHES, _say_backlog

    spool = Spool(tmp_path / "spool")
    for _ in range(BACKLOG_NOTICE_BATCHES - 1):
        spool.write_batch(b"", 2048, 10)
    _say_backlog(spool)
    assert capsys.readouterr().err == ""  # a few batches: stored at once, nothing to say
    spool.write_batch(b"", 100, 1)
    _say_backlog(spool)
    err = capsys.readouterr().err
    assert f"{BACKLOG_NOTICE_BATCHES} batches, {2048 * 7 + 100} spans, 71 events" in err


def test_a_full_spool_drops_whole_batches_and_stored_plus_dropped_is_every_call(tmp_path: Path) -> None:
    # Batches every 50 ms, stored every 0.5 s at best (and not before the store has opened): some
    # wait in the spool, beyond --max-spool-mb they are dropped, and the count reaches the store.
    (tmp_path / "flood.py").write_text(textwrap.dedent('''
        import time
        def f(i):
            return i
        for _ in range(30):
            for i in range(2000):
                f(i)
            time.sleep(0.1)
    '''))
    store = f"chdb://{tmp_path / 'db'}"
    proc = cli("run", "--include", "flood", "--adaptive", "0", "--max-spool-mb", "0.001", "--store", store, "--",
               sys.executable, "flood.py", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "EXECSCOPE_FLUSH_MS": "50"})
    rows = sql("SELECT count() AS spans, max(toUInt64OrZero(ResourceAttributes['execscope.dropped_spans'])) AS dropped "
               "FROM otel_traces", tmp_path, store)
    assert rows[0]["dropped"] > 0, proc.stderr
    assert rows[0]["spans"] + rows[0]["dropped"] == 60000
    assert f"{rows[0]['dropped']} calls were not kept" in proc.stderr

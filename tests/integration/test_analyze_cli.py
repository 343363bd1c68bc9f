"""`execscope analyze` and `execscope query cfg-violations` on the real embedded engine."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from execscope.collector.clickhouse_writer import ClickHouseWriter
from execscope.project_analysis import analyse_project
from execscope.queries.cfg_violations import cfg_violations
from execscope.queries.graph import load_function_graph
from execscope.storage.store import open_store
from tests.integration.test_run_cli import cli, sql

APP = textwrap.dedent('''
    def classify(xs):
        out = []
        for x in xs:
            if x < 0 or x > 100:
                out.append("bad")
                continue
            try:
                out.append(10 // x)
            except ZeroDivisionError:
                out.append("zero")
        return out

    if __name__ == "__main__":
        print(classify([5, 0, -1, 200, 3]))
''')


def make_project(root: Path) -> Path:
    pkg = root / "proj" / "shop"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cart.py").write_text(textwrap.dedent('''
        from .prices import price

        class Cart:
            def __init__(self):
                self.items = []

            def total(self):
                t = 0
                for item in self.items:
                    t += price(item) if item else 0
                return t
    '''))
    (pkg / "prices.py").write_text("def price(item):\n    return len(item)\n")
    (pkg / "broken.py").write_text("def f(:\n    pass\n")
    (pkg / "latin1.py").write_bytes(b"x = '\xe9'\n")
    (pkg / "deep.py").write_text("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n")
    (pkg / "generated.py").write_text("TABLE = [\n" + "    (1, 2, 3),\n" * 700_000 + "]\n")  # > 8 MB
    return root / "proj"


def test_analyze_project_incrementally_and_reports_bad_files(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    store = f"chdb://{tmp_path / 'db'}"
    first = cli("analyze", str(project), "--store", store, "--jobs", "2", "--format", "json", cwd=tmp_path)
    (report,) = json.loads(first.stdout)
    assert report["files"] == 7 and report["analysed"] == 3 and report["errors"] == 4
    reasons = {Path(f["file"]).name: f["reason"] for f in report["failed"]}
    assert set(reasons) == {"broken.py", "latin1.py", "deep.py", "generated.py"}
    assert "syntax" in reasons["broken.py"].lower()
    assert "too large" in reasons["generated.py"]
    assert "skipped" in first.stderr and "broken.py" in first.stderr
    # module names as Python imports them: node IDs join the recording's
    rows = sql("SELECT node_id FROM cpg_functions ORDER BY node_id", tmp_path, store)
    assert [r["node_id"] for r in rows] == ["shop.cart:Cart.__init__", "shop.cart:Cart.total", "shop.prices:price"]
    kinds = {r["kind"] for r in sql("SELECT DISTINCT kind FROM cpg_edges", tmp_path, store)}
    assert kinds == {"AST", "CFG", "CDG", "REACHING_DEF", "PHI", "CALL"}
    calls = sql("SELECT src, dst FROM cpg_edges WHERE kind = 'CALL'", tmp_path, store)
    assert {"src": "shop.cart:Cart.total:call#0", "dst": "shop.prices:price"} in calls
    # unchanged files are not analysed again; a changed one is
    (project / "shop" / "prices.py").write_text("def price(item):\n    return 2 * len(item)\n")
    (again,) = json.loads(cli("analyze", str(project), "--store", store, "--format", "json", cwd=tmp_path).stdout)
    assert again["analysed"] == 1 and again["unchanged"] == 2 and again["errors"] == 4


def test_dot_export_of_one_function(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        analyse_project([project / "shop" / "cart.py"], ClickHouseWriter(store), jobs=1)
        graph = load_function_graph(store, "shop.cart:Cart.total", kinds=("CFG", "CDG"))
        dot = graph.to_dot()
        flow = load_function_graph(store, "shop.cart:Cart.total", kinds=("REACHING_DEF", "PHI", "CALL")).edges
    assert ("shop.cart:Cart.total:call#0", "shop.prices:price", "CALL", "price") in flow
    assert any(kind == "REACHING_DEF" and label == "t" for _s, _d, kind, label in flow)
    assert dot.startswith('digraph "shop.cart:Cart.total" {')
    assert '"shop.cart:Cart.total:for#0" -> "shop.cart:Cart.total:for#0.body" [label="true"' in dot
    assert "style=dashed" in dot  # control dependences
    assert "for item in self.items:" in dot and "\\nL10: for item" in dot


def test_recorded_run_has_no_cfg_violations_until_the_cfg_is_broken(tmp_path: Path) -> None:
    (tmp_path / "classify_app.py").write_text(APP)
    store = f"chdb://{tmp_path / 'db'}"
    for level in ("branches", "statements"):
        cli("run", "--include", "classify_app", "--level", level, "--store", store, "--",
            "python", "classify_app.py", cwd=tmp_path)
    out = cli("query", "cfg-violations", "--store", store, "--format", "json", cwd=tmp_path)
    assert json.loads(out.stdout) == []
    with open_store(store) as s:
        observed = s.query("SELECT count() FROM execscope_events WHERE EventName = 'execscope.line'").rows[0][0]
        assert observed > 10
        s.command("ALTER TABLE cpg_edges DELETE WHERE kind = 'CFG' AND dst = 'classify_app:classify:except#0'",
                  settings={"mutations_sync": 2})
        rows = cfg_violations(s).dicts()
    assert rows and {r["dst"] for r in rows} == {"classify_app:classify:except#0"}
    assert {r["level"] for r in rows} == {"branches", "statements"}
    assert all(r["reason"] == "transition missing from the CFG" for r in rows)


def test_query_rejects_unknown_parameters_with_what_is_expected(tmp_path: Path) -> None:
    out = cli("query", "cfg-violations", "-p", "nope=1", "--store", f"chdb://{tmp_path / 'db'}", cwd=tmp_path,
              check=False)
    assert out.returncode != 0 and "nope" in out.stderr and "trace" in out.stderr

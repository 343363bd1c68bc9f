"""`execscope run --plan FILE` end to end: a fixture recorded under a plan, each function at its
planned level and rate (real processes, the real embedded engine)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli, sql

APP = '''
def hot(x):
    return x + 1

def parse_line(s):
    n = len(s)
    if n > 3:
        return s[:3]
    return s

def quiet(x):
    return x * 2

def branchy(x):
    if x % 2:
        return "odd"
    return "even"

def main():
    total = 0
    for i in range(200):
        total += hot(i) + quiet(i)
    for i in range(40):
        branchy(i)
    parse_line("abcdef")
    parse_line("ab")
    open("ran", "w").write(str(total))
'''

PLAN = '''
include = ["plan_app", "plan_app.*"]

[default]
level = "functions"

[[rule]]
match = "plan_app.core:hot"
rate = 0.25

[[rule]]
match = "plan_app.core.parse*"
level = "statements"

[[rule]]
match = "plan_app.core.quiet"
level = "off"

[[rule]]
match = "plan_app.core.branchy"
level = "branches"
rate = 0.5
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "plan_app").mkdir()
    (tmp_path / "plan_app" / "__init__.py").write_text("")
    (tmp_path / "plan_app" / "core.py").write_text(textwrap.dedent(APP))
    (tmp_path / "plan.toml").write_text(PLAN)
    return tmp_path


def test_each_function_is_recorded_at_its_planned_level_and_rate(app: Path) -> None:
    store = f"chdb://{app / 'db'}"
    cli("run", "--plan", "plan.toml", "--store", store, "--", sys.executable, "-c",
        "from plan_app.core import main; main()", cwd=app, env={"PYTHONPATH": str(app)})
    assert (app / "ran").read_text() == str(sum(i + 1 + 2 * i for i in range(200)))
    spans = {r["SpanName"]: r for r in sql(
        "SELECT SpanName, count() AS calls, "
        "  countIf(has(Events.Name, 'execscope.line')) AS with_lines, "
        "  countIf(has(Events.Name, 'execscope.branch')) AS with_branches "
        "FROM otel_traces GROUP BY SpanName", app, store)}
    assert spans["plan_app.core.main"]["calls"] == 1
    assert spans["plan_app.core.hot"]["calls"] == 50              # 200 calls at rate 0.25
    assert "plan_app.core.quiet" not in spans                       # off
    assert spans["plan_app.core.branchy"]["calls"] == 20          # 40 calls at rate 0.5
    assert spans["plan_app.core.parse_line"]["calls"] == 2
    # levels: statements and branches where planned, calls only elsewhere
    assert spans["plan_app.core.parse_line"]["with_lines"] == 2
    assert spans["plan_app.core.parse_line"]["with_branches"] == 2
    assert spans["plan_app.core.branchy"]["with_branches"] == 20
    assert spans["plan_app.core.branchy"]["with_lines"] == 0
    assert spans["plan_app.core.main"]["with_lines"] == spans["plan_app.core.main"]["with_branches"] == 0
    assert spans["plan_app.core.hot"]["with_lines"] == 0
    # the calls hot/branchy left out ran as written, and the recorded ones still join the CPG
    joined = sql("SELECT countIf(NodeId IN (SELECT node_id FROM cpg_nodes)) AS j, count() AS n "
                 "FROM otel_traces", app, store)[0]
    assert joined["j"] == joined["n"]


def test_a_bad_plan_is_refused_before_the_program_runs(app: Path) -> None:
    (app / "bad.toml").write_text('[default]\nlevel = "everything"\n')
    proc = cli("run", "--plan", "bad.toml", "--store", f"chdb://{app / 'db'}", "--", sys.executable, "-c",
               "open('ran', 'w').write('1')", cwd=app, check=False)
    assert proc.returncode != 0
    assert "bad.toml" in proc.stderr and "level must be one of off, functions, branches, statements" in proc.stderr
    assert proc.stderr.count("Error") == 1
    assert not (app / "ran").exists()

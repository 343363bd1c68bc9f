"""`execscope plan` on a recorded fixture (real processes, the real embedded engine): the plan keeps
the predicted overhead within the budget by the model, prefers the valuable functions, and runs."""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import pytest

from execscope.instrumentation.rewrite.plan import load_plan
from execscope.queries.planner import SCALE_BOUNDS, CostModel
from tests.integration.test_run_cli import cli, sql

APP = '''
def bump(x):
    return x + 1

def classify(row):
    kind = "none"
    if row < 0:
        raise ValueError(f"negative row {row}")
    elif row % 15 == 0:
        kind = "fizzbuzz"
    elif row % 5 == 0:
        kind = "buzz"
    elif row % 3 == 0:
        kind = "fizz"
    for d in range(2, 6):
        if row % d == 0 and row > d:
            kind += "!"
            break
    return kind

def main():
    total = 0
    for i in range(30000):
        total = bump(total)
    kinds = []
    for row in range(-20, 180):
        try:
            kinds.append(classify(row))
        except ValueError:
            kinds.append("bad")
    return total, len(kinds)

if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("planner")
    (app / "plan_fixture.py").write_text(textwrap.dedent(APP))
    store = f"chdb://{app / 'db'}"
    # at statements level, so every function's events are measured: the plan then depends on counts
    # and the cost model only, not on how loaded the machine was while the fixture ran (its self time)
    cli("run", "--include", "plan_fixture", "--level", "statements", "--adaptive", "0", "--store", store, "--",
        sys.executable, "-c", "import plan_fixture; plan_fixture.main()", cwd=app, env={"PYTHONPATH": str(app)})
    return app


def plan(app: Path, budget: str, out: str, *extra: str) -> dict:
    proc = cli("plan", "--budget", budget, "--from-store", f"chdb://{app / 'db'}", "--out", out,
               "--format", "json", *extra, cwd=app)
    return json.loads(proc.stdout)


def test_the_plan_respects_the_budget_and_prefers_the_valuable_functions(recorded: Path) -> None:
    result = plan(recorded, "1.3", "plan.toml", "--baseline-s", "0.05")
    rows = {r["function"]: r for r in result["functions"]}
    # by the model: what every function is predicted to cost fits 30% of the 50 ms baseline
    assert sum(r["overhead_ms"] for r in rows.values()) <= 0.3 * 50 + 1e-6
    assert 1.0 < result["predicted_overhead"] <= 1.3
    # classify (complex, raises) is recorded finely; bump (trivial, 30000 calls) is sampled hard
    assert rows["plan_fixture.classify"]["level"] == "statements" and rows["plan_fixture.classify"]["rate"] == 1.0
    assert rows["plan_fixture.bump"]["calls"] == 30000 and rows["plan_fixture.bump"]["rate"] <= 0.05
    assert rows["plan_fixture.classify"]["value"] > rows["plan_fixture.bump"]["value"]
    plan_file = load_plan(recorded / "plan.toml")  # what `run --plan` reads
    assert plan_file.include == ("plan_fixture",)
    settings = {r.match: r.setting for r in plan_file.rules}
    assert settings["plan_fixture:classify"].level_name == "statements"
    # the profile the planner read is what the store holds
    stored = sql("SELECT SpanName, count() AS n, countIf(StatusCode = 'STATUS_CODE_ERROR') AS e FROM otel_traces "
                 "GROUP BY SpanName", recorded, f"chdb://{recorded / 'db'}")
    counts = {r["SpanName"]: (r["n"], r["e"]) for r in stored}
    assert counts["plan_fixture.classify"] == (200, 20)


def test_budgets_order_what_is_recorded(recorded: Path) -> None:
    tight = plan(recorded, "1.0", "tight.toml", "--baseline-s", "0.05")
    assert tight["predicted_overhead"] == 1.0
    assert all(r["level"] == "off" for r in tight["functions"])
    assert tight["nothing_recorded"].startswith("nothing is recorded: recording anything costs at least")
    loose = plan(recorded, "1000", "loose.toml", "--baseline-s", "0.05")
    assert all(r["level"] == "statements" and r["rate"] == 1.0 for r in loose["functions"]
               if r["function"] != "plan_fixture.bump") and loose["statement_events"] > 0
    mid = plan(recorded, "1.3", "mid.toml", "--baseline-s", "0.05")
    assert tight["statement_events"] <= mid["statement_events"] <= loose["statement_events"]
    assert "nothing_recorded" not in mid and "nothing_recorded" not in loose
    # a module where nothing is recorded is left as written: the default is off, and no rule opens it
    assert load_plan(recorded / "tight.toml").default.level_name == "off"
    assert not load_plan(recorded / "tight.toml").may_record("plan_fixture")
    assert load_plan(recorded / "mid.toml").may_record("plan_fixture")


def test_headroom_leaves_part_of_the_budget_unspent(recorded: Path) -> None:
    # a 30 ms baseline: 9 ms to spend, more than classify alone costs at statements level
    full = plan(recorded, "1.3", "h0.toml", "--baseline-s", "0.03", "--headroom", "0")
    half = plan(recorded, "1.3", "h5.toml", "--baseline-s", "0.03", "--headroom", "0.5")
    spent = {name: sum(r["overhead_ms"] for r in result["functions"]) for name, result in
             (("full", full), ("half", half))}
    assert spent["half"] <= 0.5 * 0.3 * 30 + 1e-6 < spent["full"] <= 0.3 * 30 + 1e-6
    assert half["predicted_overhead"] < full["predicted_overhead"]
    refused = cli("plan", "--budget", "1.3", "--from-store", f"chdb://{recorded / 'db'}", "--headroom", "1",
                  cwd=recorded, check=False)
    assert refused.returncode != 0 and "--headroom" in refused.stderr


def test_the_plan_runs(recorded: Path) -> None:
    plan(recorded, "1.3", "run.toml", "--baseline-s", "0.05")
    store = f"chdb://{recorded / 'db2'}"
    cli("run", "--plan", "run.toml", "--store", store, "--", sys.executable, "-c",
        "import plan_fixture; plan_fixture.main()", cwd=recorded, env={"PYTHONPATH": str(recorded)})
    settings = {r.match: r.setting for r in load_plan(recorded / "run.toml").rules}
    rows = {r["SpanName"]: r for r in sql(
        "SELECT SpanName, count() AS n, countIf(has(Events.Name, 'execscope.line')) AS lines FROM otel_traces "
        "GROUP BY SpanName", recorded, store)}
    bump = settings["plan_fixture:bump"]
    expected_bump = 0 if bump.level_name == "off" else int(30000 * bump.rate)
    assert rows.get("plan_fixture.bump", {"n": 0})["n"] in (expected_bump, expected_bump + 1)
    classify = settings["plan_fixture:classify"]
    assert rows["plan_fixture.classify"]["n"] in (int(200 * classify.rate), int(200 * classify.rate) + 1)
    assert rows["plan_fixture.classify"]["lines"] == rows["plan_fixture.classify"]["n"]


def test_plan_without_a_recording_says_so(tmp_path: Path) -> None:
    proc = cli("plan", "--budget", "1.3", "--from-store", f"chdb://{tmp_path / 'empty'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "holds no recorded function calls" in proc.stderr
    assert not (tmp_path / "execscope-plan.toml").exists()


def test_plan_records_the_command_first(tmp_path: Path) -> None:
    (tmp_path / "cmd_app.py").write_text("def f(x):\n    if x % 3:\n        return 1\n    return 0\n\n"
                                         "def main():\n    return sum(f(i) for i in range(300))\n")
    proc = cli("plan", "--budget", "1.5", "--from-store", f"chdb://{tmp_path / 'db'}", "--include", "cmd_app",
               "--out", "p.toml", "--format", "json", "--no-calibrate", "--", sys.executable, "-c",
               "import cmd_app; cmd_app.main()", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    result = json.loads(proc.stdout)
    assert "calibration_run" not in result and result["calibration"] == 1.0
    assert "calibrated:" not in (tmp_path / "p.toml").read_text()
    assert {r["function"]: r["calls"] for r in result["functions"]} == {"cmd_app.f": 300, "cmd_app.main": 1}
    assert load_plan(tmp_path / "p.toml").include == ("cmd_app",)
    # the profile is recorded at statements level: its events per call are measured, not estimated
    written = (tmp_path / "p.toml").read_text()
    profile_note = next(line for line in written.splitlines() if "the profile (" in line)
    found = re.search(r"with (\d+) branch and (\d+) statement events", profile_note)
    assert found is not None, profile_note
    branches, statements = int(found.group(1)), int(found.group(2))
    assert branches > 0 and statements > 0, profile_note
    missing = cli("plan", "--budget", "1.5", "--", sys.executable, "-c", "pass", cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "--include" in missing.stderr


def test_plan_with_a_command_measures_its_baseline_and_fixed_cost(tmp_path: Path) -> None:
    """With COMMAND the baseline is the plain run's wall time (the program sleeps 0.4 s, so at least
    that), the fixed cost is that of a run recording nothing, both in the prediction; the command's
    output goes to stderr (stdout stays one JSON document) and --exclude keeps a module out."""
    (tmp_path / "slow_app.py").write_text("import time\nimport slow_helper\n\n"
                                          "def main():\n    time.sleep(0.4)\n    print('the app says hi')\n"
                                          "    return sum(slow_helper.h(i) for i in range(50))\n")
    (tmp_path / "slow_helper.py").write_text("def h(x):\n    return x * 2\n")
    proc = cli("plan", "--budget", "1.3", "--from-store", f"chdb://{tmp_path / 'db'}", "--include", "slow_*",
               "--exclude", "slow_helper", "--repeat", "2", "--out", "p.toml", "--format", "json", "--",
               sys.executable, "-c", "import slow_app; slow_app.main()", cwd=tmp_path,
               env={"PYTHONPATH": str(tmp_path)})
    result = json.loads(proc.stdout)
    assert "the app says hi" in proc.stderr
    assert [r["function"] for r in result["functions"]] == ["slow_app.main"]
    assert result["baseline_s"] >= 0.4
    assert result["fixed_s"] > 0  # starting the recorder and its store is never free
    # what a recorded call costs, measured from the profile, within bounds of the modelled cost
    model = CostModel()
    assert 0.5 * model.call_ns <= result["span_ns"] <= 50 * model.call_ns
    # the run gating every call prices what recording anything costs beyond the gate's modelled cost
    assert result["skipped_call_ns"] == model.skipped_call_ns and result["counted_call_ns"] == model.counted_call_ns
    assert result["predicted_overhead"] >= 1 + result["fixed_s"] / result["baseline_s"] - 1e-3
    written = (tmp_path / "p.toml").read_text()
    assert f"baseline_s = {result['baseline_s']}" in written and f"fixed_s = {result['fixed_s']}" in written
    assert "ns per recorded call" in written and "what recording anything costs" in written
    assert "where the model's figures say" in written  # the profile's measured cost over its modelled cost
    assert "paid per module recorded in, by its size: slow_app" in written
    ahead = 1 if load_plan(tmp_path / "p.toml").may_record("slow_app") else 0
    assert f"rewritten into the rewrite cache for the plan's first run: {ahead} of the modules" in written


def test_plan_with_a_command_is_calibrated_by_running_its_first_plan(tmp_path: Path) -> None:
    """On an embedded store the first plan runs --repeat times beside plain runs: what its functions
    cost over their prediction scales the model the plan is then made with, and what it stored is
    set beside what it was predicted to store."""
    (tmp_path / "cal_app.py").write_text(GROWING + "\nif __name__ == '__main__':\n    import time\n"
                                         "    time.sleep(0.3)\n    main()\n")
    proc = cli("plan", "--budget", "5", "--from-store", f"chdb://{tmp_path / 'db'}", "--include", "cal_app",
               "--repeat", "2", "--out", "p.toml", "--format", "json", "--", sys.executable, "-m", "cal_app",
               cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    result = json.loads(proc.stdout)
    calibration = result["calibration_run"]
    assert SCALE_BOUNDS[0] <= calibration["scale"] <= SCALE_BOUNDS[1] and result["calibration"] == calibration["scale"]
    assert calibration["first_measured_overhead"] > 1.0
    # the first plan records grow at statements level (a loose budget): its stored events were counted
    assert calibration["first_predicted_statement_events"] > 0 and calibration["first_statement_events"] > 0
    written = (tmp_path / "p.toml").read_text()
    assert f"calibration = {calibration['scale']}" in written and "calibrated: the first plan, predicted at" in written
    assert result["predicted_overhead"] <= 5


GROWING = '''
def grow(n):
    total = 0
    for i in range(n):
        total += i
    return total

def main():
    return [grow(n) for n in range(1, 120)]
'''


def test_events_per_call_count_the_calls_adaptive_sampling_left_out(tmp_path: Path) -> None:
    """Adaptive sampling spends a function's budget on its first calls (each event counting as a
    call): grow's later calls, the longer ones, are left out. Their statement events are counted, so
    the profile's events per call are those of every call, as a recording of every call says."""
    from execscope.queries.planner import profile_functions
    from execscope.storage import open_store

    (tmp_path / "growing.py").write_text(GROWING)
    per_call = {}
    for name, adaptive in (("all", "0"), ("sampled", "8")):
        store = f"chdb://{tmp_path / name}"
        cli("run", "--include", "growing", "--level", "statements", "--adaptive", adaptive, "--store", store, "--",
            sys.executable, "-c", "import growing; growing.main()", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
        with open_store(store) as s:
            (grow,) = [p for p in profile_functions(s) if p.node_id == "growing:grow"]
        assert grow.calls == 119
        per_call[name] = (grow.recorded_calls, grow.statement_events)
    assert per_call["all"][0] == 119 and per_call["sampled"][0] < 60  # most calls left out
    assert per_call["sampled"][1] == pytest.approx(per_call["all"][1])

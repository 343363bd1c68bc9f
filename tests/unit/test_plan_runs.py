"""What `execscope plan -- COMMAND` takes from its measured runs: medians, never a negative cost."""

from __future__ import annotations

import sys
from pathlib import Path

from execscope.instrumentation.rewrite.plan import parse_plan
from execscope.plan_runs import NOTHING_PLAN, SKIPPING_PLAN, MeasuredRuns


def test_baseline_fixed_cost_and_profile_cost_are_medians_and_never_negative() -> None:
    runs = MeasuredRuns(plain_ns=(10, 30, 11), recorded_ns=40, nothing_ns=(15, 14, 90), skipping_ns=(20, 21, 3),
                        plain_returncode=0, recorded_returncode=0)
    assert runs.baseline_ns == 11          # the slow outlier (30) does not move it
    assert runs.fixed_ns == 15 - 11        # nor does the nothing run's (90)
    assert runs.profile_ns == 40 - 15
    assert runs.skipping_extra_ns == 20 - 15
    quicker = MeasuredRuns(plain_ns=(20,), recorded_ns=10, nothing_ns=(18,), skipping_ns=(17,), plain_returncode=0,
                           recorded_returncode=0)
    assert quicker.fixed_ns == quicker.profile_ns == quicker.skipping_extra_ns == 0.0  # noise, not a negative cost
    server = MeasuredRuns(plain_ns=(20,), recorded_ns=10, nothing_ns=(18,), skipping_ns=(), plain_returncode=0,
                          recorded_returncode=0)
    assert server.skipping_extra_ns is None


def test_the_fixed_cost_is_the_time_outside_the_body_when_every_run_left_its_stamps() -> None:
    # Whole runs say 45 - 11 = 34; outside their bodies the runs recording nothing took 9 more than
    # plain (medians: 12 - 3), whatever the bodies did.
    runs = MeasuredRuns(plain_ns=(10, 30, 11), recorded_ns=60, nothing_ns=(45, 14, 90), skipping_ns=(),
                        plain_returncode=0, recorded_returncode=0, plain_outside_ns=(3, 2, 4),
                        nothing_outside_ns=(12, 11, 13))
    assert runs.timed_outside and runs.fixed_ns == 12 - 3
    assert runs.fixed_ns_over(1000) == 12 - 3  # a baseline of more plain runs does not move it
    one_short = MeasuredRuns(plain_ns=(10, 30, 11), recorded_ns=60, nothing_ns=(45, 14, 90), skipping_ns=(),
                             plain_returncode=0, recorded_returncode=0, plain_outside_ns=(3, 2),
                             nothing_outside_ns=(12, 11, 13))
    assert not one_short.timed_outside and one_short.fixed_ns == 45 - 11  # whole runs, as without stamps
    assert one_short.fixed_ns_over(40) == 5


def _stamped_runs(tmp_path: Path, command: list[str]) -> tuple[int, int, int | None]:
    from execscope.plan_runs import _Stamps

    return _Stamps(str(tmp_path)).timed(command)


def test_a_python_command_is_timed_outside_its_body_and_its_own_sitecustomize_still_runs(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('yes')\n")
    monkeypatch.setenv("PYTHONPATH", str(own))
    wall, returncode, outside = _stamped_runs(tmp_path, [sys.executable, "-c", "import time; time.sleep(0.4)"])
    assert returncode == 0 and outside is not None
    assert wall - outside >= 0.4e9 and outside > 0  # the sleep is the body; starting and ending are not
    assert (tmp_path / "ran").read_text() == "yes"  # chained to the program's own sitecustomize


def test_a_command_that_is_not_python_leaves_no_stamps(tmp_path: Path) -> None:
    wall, returncode, outside = _stamped_runs(tmp_path, ["sh", "-c", "exit 3"])
    assert returncode == 3 and wall > 0 and outside is None


def test_under_execscope_run_the_program_is_stamped_and_the_parent_is_not(
        tmp_path: Path, monkeypatch) -> None:
    # Three sitecustomize modules, each shadowing the next: execscope's bootstrap (recording), plan's
    # stamping one, the program's own. Each runs once, in that order.
    from execscope.plan_runs import _Stamps

    own = tmp_path / "own"
    own.mkdir()
    ran = tmp_path / "ran"
    (own / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"open({str(ran)!r}, 'a').write(str('execscope.instrumentation.process_bootstrap' in sys.modules) "
        f"+ ' ' + str(os.path.exists({str(tmp_path / 't' / 'stamps')!r})) + '\\n')\n")
    monkeypatch.setenv("PYTHONPATH", str(own))
    plan = tmp_path / "off.toml"
    plan.write_text(NOTHING_PLAN)
    stamps = _Stamps(str(tmp_path / "t"))
    command = [sys.executable, "-m", "execscope", "run", "--plan", str(plan), "--store",
               f"chdb://{tmp_path / 'db'}", "--include", "nothing_here", "--", sys.executable, "-c", "pass"]
    wall, returncode, outside = stamps.timed(command)
    assert returncode == 0 and outside is not None and 0 < outside < wall
    lines = Path(stamps.file).read_text().split()
    assert lines[0::2] == ["start", "end"]  # the program's one process; `python -m execscope` wrote none
    # in the parent: nothing recording, no stamps yet; in the program: after both
    assert ran.read_text().splitlines() == ["False False", "True True"]


def test_the_nothing_plan_records_nothing_and_rewrites_no_module() -> None:
    plan = parse_plan(NOTHING_PLAN)
    assert plan.default.level_name == "off"
    assert plan.setting_for("app.core", "f", "app.core:f").level_name == "off"
    assert not plan.may_record("app.core")  # left as written: no rewrite cache to miss


def test_each_skipping_plan_is_new_to_the_rewrite_cache() -> None:
    first, second = (parse_plan(SKIPPING_PLAN.format(nonce=n)) for n in ("a1", "b2"))
    assert first.may_record("app.core") and first.digest() != second.digest()


def test_the_skipping_plan_gates_every_call_and_records_almost_none() -> None:
    plan = parse_plan(SKIPPING_PLAN.format(nonce="c3"))
    setting = plan.setting_for("app.core", "f", "app.core:f")
    assert setting.level_name == "functions" and 0.0 < setting.rate <= 1e-6


def test_settle_merges_the_profiles_parts_in_an_embedded_store(tmp_path) -> None:
    # The timed runs after the profile copy its store: parts left unmerged would be merged in the
    # background of those runs. After _settle each settled table has one active part per partition.
    from execscope.plan_runs import SETTLED_TABLES, _settle
    from execscope.storage import open_store

    dsn = f"chdb://{tmp_path / 'db'}"
    parts_sql = ("SELECT table, partition, count() FROM system.parts WHERE active AND database = currentDatabase() "
                 "AND table IN {tables:Array(String)} GROUP BY table, partition")
    with open_store(dsn) as store:
        store.command("SYSTEM STOP MERGES")  # several inserts stay several parts until settled
        for i in range(4):
            store.command(f"INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, "
                          f"`Events.Timestamp`, `Events.Name`, `Events.Attributes`) VALUES "
                          f"(now64(9), '{i:032x}', '{i:016x}', 'f', [now64(9)], ['execscope.line'], [map()])")
        before = store.query(parts_sql, {"tables": list(SETTLED_TABLES)}).rows
        store.command("SYSTEM START MERGES")
    assert any(int(n) > 1 for _t, _p, n in before), before
    _settle(dsn)
    with open_store(dsn) as store:
        after = store.query(parts_sql, {"tables": list(SETTLED_TABLES)}).rows
    assert {t for t, _p, _n in after} == set(SETTLED_TABLES) and all(int(n) == 1 for _t, _p, n in after), after

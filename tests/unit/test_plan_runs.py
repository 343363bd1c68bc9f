"""What `execscope plan -- COMMAND` takes from its measured runs: medians, never a negative cost."""

from __future__ import annotations

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

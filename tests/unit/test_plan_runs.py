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

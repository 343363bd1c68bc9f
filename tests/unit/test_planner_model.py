"""The planner's model and knapsack on synthetic profiles: the budget holds by the model, the greedy
is within one increment of the exact optimum, and value goes where the debugging value is."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest

from execscope.instrumentation.rewrite.plan import BRANCHES, FUNCTIONS, OFF, STATEMENTS, Setting
from execscope.queries.planner import (
    ENOUGH_CALLS,
    LOOP_CAP,
    PLAIN_STATEMENT_NS,
    PROFILE_SCALE_BOUNDS,
    RATES,
    SCALE_BOUNDS,
    CostModel,
    FunctionProfile,
    _hull,
    allowed_ns,
    calibration_scale,
    choose,
    cost_ns,
    importance,
    kept_calls,
    profile_cost_ns,
    profile_scale,
    profile_volume,
    statement_events,
    statement_events_worth,
    uniform_statements_rate,
    value,
    why_nothing_is_recorded,
)

MODEL = CostModel()


def profile(name: str, calls: int, cyclomatic: int = 1, statements: int = 2, errors: int = 0,
            self_us: float = 2.0, **kw: object) -> FunctionProfile:
    return FunctionProfile(node_id=f"m:{name}", name=f"m.{name}", calls=calls, self_ns=int(calls * self_us * 1000),
                           errors=errors, cyclomatic=cyclomatic, statements=statements, **kw)  # type: ignore[arg-type]


def test_importance_rises_with_complexity_errors_entropy_and_change() -> None:
    base = profile("f", 100)
    assert importance(profile("f", 100, cyclomatic=8)) > importance(base)
    assert importance(profile("f", 100, errors=3)) > importance(base)
    assert importance(profile("f", 100, entropy=0.9)) > importance(base)
    assert importance(profile("f", 100, changed=True)) > importance(base)


def test_costs_grow_with_level_and_rate() -> None:
    p = profile("f", 1000, cyclomatic=4, statements=10)
    costs = [cost_ns(p, Setting(level, 1.0), MODEL) for level in (OFF, FUNCTIONS, BRANCHES, STATEMENTS)]
    assert costs == sorted(costs) and costs[0] == 0 and len(set(costs)) == 4
    assert cost_ns(p, Setting(STATEMENTS, 0.1), MODEL) < cost_ns(p, Setting(STATEMENTS, 1.0), MODEL)
    assert cost_ns(p, Setting(FUNCTIONS, 1.0), MODEL) == 1000 * MODEL.call_ns


def test_hull_is_concave_from_off() -> None:
    p = profile("f", 5000, cyclomatic=5, statements=12, errors=2)
    hull = _hull(p, MODEL)
    assert hull[0].setting.level == OFF
    slopes = [(b.value - a.value) / (b.cost_ns - a.cost_ns) for a, b in zip(hull, hull[1:])]
    assert all(s1 >= s2 for s1, s2 in zip(slopes, slopes[1:])) and all(s > 0 for s in slopes)


def _exact(profiles: list[FunctionProfile], allowed: float) -> float:
    options = [[(0.0, 0.0)] + [(cost_ns(p, Setting(lv, r), MODEL), value(p, Setting(lv, r)))
                               for lv in (FUNCTIONS, BRANCHES, STATEMENTS) for r in RATES] for p in profiles]
    best = 0.0
    for combo in itertools.product(*options):
        if sum(c for c, _ in combo) <= allowed:
            best = max(best, sum(v for _, v in combo))
    return best


def test_greedy_respects_the_budget_and_is_near_the_optimum() -> None:
    rng = random.Random(7)
    for _ in range(6):
        profiles = [profile(f"f{i}", rng.choice([5, 50, 500, 5000]), cyclomatic=rng.randint(1, 9),
                            statements=rng.randint(1, 20), errors=rng.choice([0, 0, 3]))
                    for i in range(3)]
        total = sum(cost_ns(p, Setting(STATEMENTS, 1.0), MODEL) for p in profiles)
        allowed = total * rng.uniform(0.05, 0.6)
        chosen = choose(profiles, allowed, MODEL)
        spent = sum(cost_ns(p, chosen[p.node_id].setting, MODEL) for p in profiles)
        assert spent <= allowed
        got = sum(value(p, chosen[p.node_id].setting) for p in profiles)
        best = _exact(profiles, allowed)
        biggest_step = max(max(b.value - a.value for a, b in zip(h, h[1:]))
                           for h in (_hull(p, MODEL) for p in profiles))
        assert got >= best - biggest_step - 1e-9


def test_value_goes_to_the_complex_failing_function_and_hot_trivial_ones_are_sampled() -> None:
    hot = profile("hot", 2_000_000, cyclomatic=1, statements=1, self_us=0.3)
    gnarly = profile("gnarly", 200, cyclomatic=9, statements=30, errors=20, self_us=20)
    plain = profile("plain", 2000, cyclomatic=2, statements=4)
    allowed = 0.3 * 0.5e9  # 30% of half a second
    chosen = choose([hot, gnarly, plain], allowed, MODEL)
    assert chosen["m:gnarly"].setting.level == STATEMENTS
    assert gnarly.calls * chosen["m:gnarly"].setting.rate >= ENOUGH_CALLS  # its full value
    assert chosen["m:plain"].setting.level >= BRANCHES
    hot_setting = chosen["m:hot"].setting  # a trivial function: a few calls seen are enough
    assert hot_setting.level == OFF or hot_setting.rate <= 0.01
    total_stmt_value = sum(value(p, chosen[p.node_id].setting) for p in (hot, gnarly, plain))
    rate = uniform_statements_rate([hot, gnarly, plain], allowed, MODEL)
    uniform = sum(value(p, Setting(STATEMENTS, rate)) for p in (hot, gnarly, plain))
    assert total_stmt_value > uniform


def test_no_budget_records_nothing_that_costs() -> None:
    chosen = choose([profile("a", 100), profile("b", 10)], 0.0, MODEL)
    assert all(c.setting.level == OFF and c.cost_ns == 0 for c in chosen.values())


def test_a_module_is_paid_for_once_by_the_first_function_recorded_in_it() -> None:
    a1, a2 = profile("a1", 100, cyclomatic=4), profile("a2", 100, cyclomatic=4)
    b = dataclasses.replace(profile("b", 100, cyclomatic=4), node_id="other:b")
    one_call = cost_ns(a1, Setting(FUNCTIONS, 1.0), MODEL)
    modules = {"m": 50 * one_call, "other": 1e12}  # "other" costs more than any budget here
    chosen = choose([a1, a2, b], 200 * one_call, MODEL, modules)
    spent = sum(c.cost_ns for c in chosen.values())
    assert chosen["m:a1"].setting.level != OFF and chosen["m:a2"].setting.level != OFF
    assert chosen["other:b"].setting.level == OFF  # its module alone is over the budget
    assert spent + modules["m"] <= 200 * one_call  # m charged once, within the budget
    # below one module's cost nothing is recorded at all, though one call would fit
    nothing = choose([a1, a2], 40 * one_call, MODEL, modules)
    assert all(c.setting.level == OFF for c in nothing.values())
    assert choose([a1, a2], 40 * one_call, MODEL)["m:a1"].setting.level != OFF  # without module costs


def test_a_module_is_opened_for_all_it_offers_not_for_its_best_function() -> None:
    # five plain functions in m, one better function in n; budget for opening one module only
    plain = [profile(f"p{i}", 100, cyclomatic=2) for i in range(5)]
    star = dataclasses.replace(profile("star", 100, cyclomatic=9, errors=3), node_id="n:star")
    first = _hull(plain[0], MODEL)[1]
    assert _hull(star, MODEL)[1].value > first.value  # the best function by itself is n's
    modules = {"m": 5 * first.cost_ns, "n": 5 * first.cost_ns}
    chosen = choose([*plain, star], 10.5 * first.cost_ns, MODEL, modules)
    assert all(chosen[p.node_id].setting.level != OFF for p in plain)
    assert chosen["n:star"].setting.level == OFF
    assert sum(c.cost_ns for c in chosen.values()) + modules["m"] <= 10.5 * first.cost_ns


def test_the_fixed_cost_comes_out_of_the_budget_first() -> None:
    assert allowed_ns(1.3, 10e9) == pytest.approx(3e9)
    assert allowed_ns(1.3, 10e9, fixed_ns=1e9) == pytest.approx(2e9)
    assert allowed_ns(1.3, 10e9, fixed_ns=4e9) == 0.0  # the fixed cost alone is over: nothing to spend
    assert allowed_ns(1.0, 10e9) == 0.0
    profiles = [profile("a", 1000, cyclomatic=4), profile("b", 10)]
    loose = choose(profiles, allowed_ns(1.3, 10e6), MODEL)
    tight = choose(profiles, allowed_ns(1.3, 10e6, fixed_ns=2.5e6), MODEL)
    assert sum(c.cost_ns for c in tight.values()) <= 0.5e6 < sum(c.cost_ns for c in loose.values())


def test_a_plan_recording_nothing_says_why_and_which_budget_would_record() -> None:
    """The fixed cost alone over the budget (a program of a second: the recorder starting and stopping
    is a third of it) or the cheapest function over what is left: said, with the budget that fits it."""
    profiles = [profile("a", 1000, cyclomatic=4), profile("b", 10)]
    cheapest = min(_hull(p, MODEL)[1].cost_ns for p in profiles)
    over = why_nothing_is_recorded(profiles, 1.3, 1e9, 0.35e9, 0.1, MODEL, {})
    assert "fixed cost alone, 0.350s" in over and "1.350x" in over and "over the budget 1.3x" in over
    needed = 1.0 + (0.35e9 + cheapest / 0.9) / 1e9
    assert f"a budget of {needed:.3f}x records its cheapest function" in over
    # that budget does record it: its allowance, less the headroom, fits the cheapest function
    assert choose(profiles, allowed_ns(needed + 1e-3, 1e9, 0.35e9) * 0.9, MODEL) != choose(profiles, 0.0, MODEL)
    # a module's cost over what is left, the fixed cost within the budget
    module = why_nothing_is_recorded(profiles, 1.3, 1e9, 0.1e9, 0.0, MODEL, {"m": 0.5e9})
    assert "at least 0.500s" in module and "beyond the budget's 0.200s left" in module
    assert f"a budget of {1.0 + (0.1e9 + 0.5e9 + cheapest) / 1e9:.3f}x records it" in module


def test_the_profiles_cost_over_its_modelled_cost_scales_calls_events_and_hooks_not_gates() -> None:
    """The profile's measured cost over the model's prediction for it (its recorded calls and events,
    its counted calls and their hooks) is the program's scale, within PROFILE_SCALE_BOUNDS: every part
    shares the difference in proportion. A rate's gate is measured apart and keeps its figure."""
    recorded = profile("f", 1000, cyclomatic=3, statements=5, branch_events=2.0, statement_events=5.0)
    counted = dataclasses.replace(profile("g", 100_000, statements=4, statement_events=4.0), recorded=100)
    modelled, parts = profile_cost_ns(profile_volume([recorded, counted]), MODEL)
    assert parts["spans"] == pytest.approx(1100 * MODEL.call_ns)
    assert parts["statement_events"] == pytest.approx((5 * 1000 + 4 * 100) * MODEL.statement_event_ns)
    assert parts["branch_events"] == pytest.approx(2 * 1000 * MODEL.branch_event_ns)
    assert parts["counted_calls"] == pytest.approx(99_900 * MODEL.counted_call_ns)
    assert parts["counted_hooks"] == pytest.approx(99_900 * 4 * MODEL.unrecorded_event_ns)
    assert modelled == pytest.approx(sum(parts.values()))
    assert profile_scale(3 * modelled, modelled) == pytest.approx(3.0)
    low, high = PROFILE_SCALE_BOUNDS
    assert profile_scale(0.0, modelled) == low and profile_scale(1e6 * modelled, modelled) == high
    assert profile_scale(1e9, 0.0) == 1.0
    scaled = dataclasses.replace(MODEL, scale=3.0)
    assert scaled.span_ns == 3 * MODEL.call_ns
    for level in (FUNCTIONS, BRANCHES, STATEMENTS):
        setting = Setting(level, 1.0)
        assert cost_ns(recorded, setting, scaled) == pytest.approx(3 * cost_ns(recorded, setting, MODEL))
    leaf = profile("leaf", 1000, statements=3, statement_events=3.0)
    gated = Setting(STATEMENTS, 0.001)
    kept = kept_calls(1000, 0.001)
    assert cost_ns(leaf, gated, scaled) - 3 * kept * (MODEL.call_ns + 3 * MODEL.statement_event_ns) == \
        pytest.approx((1000 - kept) * MODEL.skipped_call_ns)  # the gate unscaled


def test_storing_waited_for_costs_spans_and_events() -> None:
    f = profile("f", 1000, cyclomatic=3, statements=5, branch_events=2.0, statement_events=5.0)
    waited = CostModel(storing_share=1.0)
    for level in (FUNCTIONS, BRANCHES, STATEMENTS):
        extra = cost_ns(f, Setting(level, 1.0), waited) - cost_ns(f, Setting(level, 1.0), MODEL)
        branches, statements = f.events_per_call(level, MODEL)
        assert extra == pytest.approx(1000 * (MODEL.stored_span_ns + (branches + statements) * MODEL.stored_event_ns))


def test_unmeasured_statement_events_are_read_from_self_time_within_bounds() -> None:
    """A functions-level profile has no measured events: a call's statement events are its own CPU
    (self time less the recording's call cost) over a plain statement's time, at least its statements
    and at most LOOP_CAP times them; measured events win."""
    loop = profile("loop", 10, cyclomatic=2, statements=4, self_us=MODEL.call_ns / 1000 + 4.0)
    assert loop.events_per_call(STATEMENTS, MODEL)[1] == pytest.approx(4000 / PLAIN_STATEMENT_NS)
    assert loop.events_per_call(BRANCHES, MODEL) == (pytest.approx(4000 / PLAIN_STATEMENT_NS / 4), 0.0)
    assert loop.events_per_call(FUNCTIONS, MODEL) == (0.0, 0.0)
    assert profile("tiny", 10, statements=4, self_us=0.0).events_per_call(STATEMENTS, MODEL)[1] == 4.0
    assert profile("huge", 10, statements=4, self_us=1e6).events_per_call(STATEMENTS, MODEL)[1] == LOOP_CAP * 4
    measured = profile("m", 10, statements=4, self_us=1e6, statement_events=7.0, branch_events=2.0)
    assert measured.events_per_call(STATEMENTS, MODEL) == (2.0, 7.0)


@pytest.mark.parametrize("rate", [1.0, 0.5, 0.25, 0.1, 0.02, 0.001, 1e-9])
def test_kept_calls_is_what_plan_keep_records(rate: float) -> None:
    """The model's count of recorded calls is runtime.plan_keep's, first call included: a function
    called a few times at a low rate still records one call."""
    from execscope.instrumentation.capture import runtime

    for calls in (0, 1, 2, 3, 7, 10, 99, 1000, 12345):
        node = f"m:kept.{rate}.{calls}"
        assert kept_calls(calls, rate) == sum(runtime.plan_keep(node, rate) for _ in range(calls)), calls
    assert kept_calls(5, 0.0) == 0


def test_uniform_rate_counts_each_functions_first_call() -> None:
    """At a low uniform rate every function still records its first call whole: the rate that fits
    a budget accounts for it, and is 0 when those first calls alone do not fit."""
    profiles = [profile(f"f{i}", 1000, statements=10, statement_events=10.0) for i in range(50)]
    first_calls = sum(cost_ns(p, Setting(STATEMENTS, 1e-12), MODEL) for p in profiles)
    assert uniform_statements_rate(profiles, first_calls * 0.9, MODEL) == 0.0
    rate = uniform_statements_rate(profiles, first_calls * 3, MODEL)
    assert 0.0 < rate < 1.0
    assert sum(cost_ns(p, Setting(STATEMENTS, rate), MODEL) for p in profiles) <= first_calls * 3


def test_a_call_left_out_of_a_function_defining_others_still_runs_its_hooks() -> None:
    """A rate's gate runs a leaf function's original code; a function defining others runs its
    rewritten body, each hook recording nothing: its skipped calls cost that per event."""
    leaf = profile("leaf", 10_000, statements=5, branch_events=2.0, statement_events=8.0)
    outer = profile("outer", 10_000, statements=5, branch_events=2.0, statement_events=8.0, leaf=False)
    for level, events in ((FUNCTIONS, 0.0), (BRANCHES, 2.0), (STATEMENTS, 10.0)):
        setting = Setting(level, 0.1)
        skipped = 10_000 - kept_calls(10_000, 0.1)
        extra = cost_ns(outer, setting, MODEL) - cost_ns(leaf, setting, MODEL)
        assert extra == pytest.approx(skipped * events * MODEL.unrecorded_event_ns)
    assert cost_ns(outer, Setting(STATEMENTS, 1.0), MODEL) == cost_ns(leaf, Setting(STATEMENTS, 1.0), MODEL)


def test_a_calibrated_model_scales_every_functions_cost_and_the_plan_fits_what_was_measured() -> None:
    # The first plan cost twice its predicted per-function cost (its fixed part measured apart): the
    # scale is 2, every setting of every function costs twice as much, and a plan under the same
    # allowance spends about what the first plan did, by the measurement.
    profiles = [profile(f"f{i}", calls=1000 * (i + 1), cyclomatic=1 + i % 4, statements=3 + i) for i in range(12)]
    allowed = 2e7
    first = choose(profiles, allowed, MODEL)
    variable = sum(c.cost_ns for c in first.values())
    fixed = 3e6
    scale = calibration_scale(fixed + 2 * variable, fixed, variable)
    assert scale == pytest.approx(2.0)
    scaled = dataclasses.replace(MODEL, calibration=scale)
    for p in profiles[:3]:
        for setting in (Setting(FUNCTIONS, 1.0), Setting(STATEMENTS, 0.1), Setting(BRANCHES, 0.5)):
            assert cost_ns(p, setting, scaled) == pytest.approx(2 * cost_ns(p, setting, MODEL))
    second = choose(profiles, allowed, scaled)
    assert sum(c.cost_ns for c in second.values()) <= allowed  # by the scaled model: what the run says
    assert sum(cost_ns(p, second[p.node_id].setting, MODEL) for p in profiles) <= allowed / 2 + 1e-6
    # bounds: two wall times' difference is noisy; a plan recording nothing has nothing to scale
    assert calibration_scale(fixed + 100 * variable, fixed, variable) == SCALE_BOUNDS[1]
    assert calibration_scale(0.0, fixed, variable) == SCALE_BOUNDS[0]
    assert calibration_scale(5e6, fixed, 0.0) == 1.0


def test_a_plan_maximising_statement_events_bounds_what_any_plan_records() -> None:
    # Loops are cheap per event, many short calls are not: maximising events alone takes the loops,
    # and no plan under the same allowance records more events by the model.
    profiles = [profile("loop", 200, statements=4, statement_events=400.0),
                profile("short", 200_000, cyclomatic=6, statements=3, statement_events=3.0),
                profile("mid", 5_000, cyclomatic=2, statements=6, statement_events=20.0)]
    allowed = 6e7
    most = choose(profiles, allowed, MODEL, worth=statement_events_worth(MODEL))
    assert sum(c.cost_ns for c in most.values()) <= allowed
    bound = statement_events(profiles, {n: c.setting for n, c in most.items()}, MODEL)
    valued = choose(profiles, allowed, MODEL)
    assert statement_events(profiles, {n: c.setting for n, c in valued.items()}, MODEL) <= bound
    assert most["m:loop"].setting == Setting(STATEMENTS, 1.0)
    for rate in (0.001, 0.01, 0.1):
        uniform = {p.node_id: Setting(STATEMENTS, rate) for p in profiles}
        if sum(cost_ns(p, uniform[p.node_id], MODEL) for p in profiles) <= allowed:
            assert statement_events(profiles, uniform, MODEL) <= bound


def test_a_calibration_reads_the_first_plans_runs_against_the_fixed_cost_measured_now() -> None:
    # The profile measured a fixed cost of 4 ms, of which the first plan's modules pay 3 ms. Now the
    # plain runs' median is 100.5 ms and the run recording nothing takes 106 ms: the fixed cost is
    # 5.5 ms, the first plan's share 4.5 ms. Its runs took 125 ms: 24.5 ms over the baseline, 20 ms of
    # it its functions', predicted at 10 ms: a scale of 2.
    from execscope.instrumentation.rewrite.plan import Plan
    from execscope.queries.planner import Calibration, PlanResult

    first = PlanResult(plan=Plan(), budget=1.3, baseline_ns=90e6, predicted_ns=13e6, profiles=[], choices={},
                       fixed_ns=3e6)
    cal = Calibration.of(first, profile_fixed_ns=4e6, plain_ns=[99e6, 100e6, 101e6, 130e6],
                         fixed_now=lambda baseline: 106e6 - baseline,
                         planned_ns=125e6, statement_events=900.0, runs=3)
    assert (cal.baseline_ns, cal.fixed_ns, cal.first_fixed_ns, cal.measured_ns) == pytest.approx(
        (100.5e6, 5.5e6, 4.5e6, 24.5e6))
    assert cal.scale == pytest.approx(2.0)
    summary = cal.summary()
    assert summary["first_predicted_overhead"] == round(1 + 14.5e6 / 100.5e6, 4)
    assert summary["first_measured_overhead"] == round(1 + 24.5e6 / 100.5e6, 4)
    assert summary["first_statement_events"] == 900 and summary["first_predicted_statement_events"] == 0
    assert "median of 3 runs" in cal.note() and f"{cal.scale:.3f}x" in cal.note()

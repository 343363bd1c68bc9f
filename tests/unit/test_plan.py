"""Plan files: parsing, errors, lookup, round trip, and the rewrite they drive (golden-ish checks on
the rewritten text) plus the runtime's per-node rate accumulator."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from execscope.instrumentation.capture import runtime
from execscope.instrumentation.rewrite.plan import (
    BRANCHES,
    FUNCTIONS,
    OFF,
    STATEMENTS,
    Plan,
    PlanError,
    Rule,
    Setting,
    dump_plan,
    load_plan,
    parse_plan,
)
from execscope.instrumentation.rewrite.rewriter import rewrite_source

PLAN = textwrap.dedent('''
    include = ["app", "app.*"]

    [default]
    level = "functions"
    rate = 1.0

    [[rule]]
    match = "app.core:hot"
    level = "functions"
    rate = 0.25

    [[rule]]
    match = "app.core.parse*"
    level = "statements"

    [[rule]]
    match = "app.core.quiet"
    level = "off"

    [[rule]]
    match = "app.other"
    level = "branches"
    rate = 0.5
''')


def test_lookup_order_node_id_then_first_glob_then_default() -> None:
    plan = parse_plan(PLAN)
    assert plan.include == ("app", "app.*")
    assert plan.setting_for("app.core", "hot", "app.core:hot") == Setting(FUNCTIONS, 0.25)
    assert plan.setting_for("app.core", "parse_line", "app.core:parse_line") == Setting(STATEMENTS, 1.0)
    assert plan.setting_for("app.core", "quiet", "app.core:quiet").level == OFF
    assert plan.setting_for("app.other", "f", "app.other:f") == Setting(BRANCHES, 0.5)  # module glob
    assert plan.setting_for("app.core", "main", "app.core:main") == Setting(FUNCTIONS, 1.0)
    assert plan.setting_for("app.core") == Setting(FUNCTIONS, 1.0)  # the module body


SPARSE = textwrap.dedent('''
    [default]
    level = "off"

    [[rule]]
    match = "app.core:hot"
    level = "functions"

    [[rule]]
    match = "app.util:helper"
    level = "off"

    [[rule]]
    match = "app.pa*.parse"
    level = "statements"

    [[rule]]
    match = "app.zero"
    level = "branches"
    rate = 0.0

    [[rule]]
    match = "lib.exact.fn"
    level = "functions"
''')


def test_may_record_names_the_modules_a_plan_can_record_in() -> None:
    plan = parse_plan(SPARSE)
    assert plan.may_record("app.core")  # a node ID of it
    assert not plan.may_record("app.util")  # only an off rule names it
    assert plan.may_record("app.parser") and plan.may_record("app.pa")  # the glob can match in both
    assert not plan.may_record("app.zero")  # rate 0 records nothing
    assert plan.may_record("lib.exact") and plan.may_record("lib")  # lib.exact.fn: class exact of lib too
    assert not plan.may_record("lib.exactly") and not plan.may_record("other")
    assert parse_plan(PLAN).may_record("anything")  # a default that records
    # never wrong the other way: a module where some function is recorded may record
    modules = ["app", "app.core", "app.util", "app.parser", "app.pa", "app.zero", "lib", "lib.exact",
               "lib.exactly", "other", "app.pa.x"]
    qualnames = ["", "hot", "helper", "parse", "exact.fn", "fn", "x.parse", "C.parse"]
    for module in modules:
        for qualname in qualnames:
            setting = plan.setting_for(module, qualname, f"{module}:{qualname}" if qualname else "")
            if setting.level != OFF and setting.rate > 0.0:
                assert plan.may_record(module), (module, qualname)


def test_round_trip_and_digest() -> None:
    plan = parse_plan(PLAN)
    again = parse_plan(dump_plan(plan, comments=["made by a test"], predicted={"overhead": 0.2}))
    assert again == plan and again.digest() == plan.digest()
    other = Plan(default=plan.default, rules=(*plan.rules, Rule("x", Setting(OFF, 1.0))))
    assert other.digest() != plan.digest()


@pytest.mark.parametrize("text, says", [
    ('[default]\nlevel = "lines"\n', "level must be one of off, functions, branches, statements"),
    ('[default]\nrate = 1.5\n', "rate must be a number within 0..1"),
    ('[default]\nrate = "half"\n', "rate must be a number within 0..1"),
    ('[[rule]]\nlevel = "off"\n', "rule 1: needs match"),
    ('[[rule]]\nmatch = "a"\nlvl = "off"\n', "rule 1: unknown key(s) ['lvl']"),
    ('levels = 1\n', "unknown key(s) ['levels']"),
    ('include = "app"\n', "include must be a list of module globs"),
    ('[default\n', "not valid TOML"),
])
def test_bad_plans_say_where_and_why(text: str, says: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "plan file p.toml")
    assert str(info.value).startswith("plan file p.toml") and says in str(info.value)


def test_unreadable_plan_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot be read"):
        load_plan(tmp_path / "missing.toml")


SOURCE = textwrap.dedent('''
    def hot(x):
        return x + 1

    def parse_line(s):
        n = len(s)
        if n > 3:
            return s[:3]
        return s

    def quiet(x):
        return x

    def main():
        if hot(1):
            return parse_line("abcdef")
''')


def test_the_rewrite_follows_the_plan() -> None:
    tree, _nodes, stats = rewrite_source(SOURCE, "app.core", "/virtual/app/core.py", plan=parse_plan(PLAN))
    import ast

    text = ast.unparse(tree)
    functions = {f.name: ast.unparse(f) for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert "plan_keep('app.core:hot', 0.25)" in functions["hot"]
    assert "plan_keep" not in functions["parse_line"] and "_execscope_rt.line(" in functions["parse_line"]
    assert "_execscope_rt.arm(" in functions["parse_line"] or "_execscope_rt.branch(" in functions["parse_line"]
    assert functions["quiet"] == "def quiet(x):\n    return x"  # off: as written
    assert "enter" in functions["main"]
    assert "_execscope_rt.branch(" not in functions["main"] and "_execscope_rt.line(" not in functions["main"]
    assert stats.functions == 3 and not stats.unmatched
    assert "enter_module" not in text  # the module body at functions level has no frame


def test_plan_keep_records_exactly_the_planned_fraction() -> None:
    node = "test_plan:accumulator"
    kept = [runtime.plan_keep(node, 0.3) for _ in range(1000)]
    assert kept[0] and sum(kept) in (300, 301)
    gaps = [i for i, k in enumerate(kept) if k]
    assert max(b - a for a, b in zip(gaps, gaps[1:])) <= 4  # spread evenly, not in bursts

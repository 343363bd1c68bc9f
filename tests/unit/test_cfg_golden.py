"""Golden CFGs: the exact edge list of one construct per test (node IDs shortened to kind#n).

Each expected list was checked by hand against Python's semantics; the soundness tests
(test_cfg_soundness.py) check the same builder against what recorded programs actually did."""

from __future__ import annotations

import ast
import sys
import textwrap

import pytest

from execscope.instrumentation.analysis.cfg import build_cfgs
from execscope.instrumentation.nodes.node_ids import assign_node_ids


def short(node_id: str) -> str:
    return node_id.split(":", 2)[-1] if node_id.count(":") >= 2 else node_id.split(":", 1)[-1]


def edges(source: str, scope: str = "m:f") -> list[str]:
    source = textwrap.dedent(source)
    nodes = assign_node_ids(source, "m")
    for cfg in build_cfgs(ast.parse(source), nodes, source):
        if cfg.scope == scope:
            return sorted(f"{short(s)} -> {short(d)}" + (f" [{lab}]" if lab else "") for s, d, lab in cfg.edges)
    raise AssertionError(f"no CFG for {scope}")


CASES = {
"return_through_two_finally": '''
def f():
    try:
        try:
            return 1
        finally:
            a()
    finally:
        b()
''',
"continue_in_finally": '''
def f(xs):
    for x in xs:
        try:
            g()
        finally:
            continue
''',
"reraise_in_handler_goes_to_finally": '''
def f():
    try:
        g()
    except E:
        raise
    finally:
        h()
''',
"try_star": '''
def f():
    try:
        g()
    except* A:
        a()
    except* B:
        b()
''',
"async_for_with_await": '''
async def f(xs):
    async with lock:
        async for x in xs:
            await x
''',
"assert_and_yield_from": '''
def f(it):
    assert it, "empty"
    yield from it
''',
"nested_bool_in_if": '''
def f(a, b, c):
    if a or (b and c):
        pass
''',
"while_true_break": '''
def f():
    while True:
        if g():
            break
    h()
''',
"if_elif_else": '''
def f(x):
    if x:
        a()
    elif y:
        pass
    else:
        b()
''',
"for_else_break_continue": '''
def f(xs):
    for x in xs:
        if x:
            continue
        break
    else:
        pass
''',
"while_test_arms": '''
def f(x):
    while x and y:
        pass
''',
"try_except_else_finally": '''
def f():
    try:
        a()
    except E as e:
        pass
    else:
        pass
    finally:
        pass
''',
"break_in_finally": '''
def f():
    for x in y:
        try:
            return 1
        finally:
            break
''',
"with_suppression": '''
def f():
    with c():
        a()
    pass
''',
"raise_and_bare_except": '''
def f():
    try:
        raise E
    except:
        raise
''',
"match_guard_nomatch": '''
def f(v):
    match v:
        case [a] if a:
            pass
        case 1:
            pass
''',
"generator_return": '''
def f():
    yield 1
    return 2
''',
"if_exp_and_walrus_del_global": '''
def f():
    global g
    x = (y := 1) if c else 2
    del x
''',
"class_inline": '''
class K:
    a = 1
    def m(self): pass
''',
"compare_chain_stops_at_the_first_false": '''
def f(a, b, c, d):
    x = a < b < (c or d)
''',
"assert_message_only_when_failing": '''
def f(a, b, c):
    assert a, b or c
    g()
''',
"except_type_is_evaluated_when_an_exception_arrives": '''
def f(a):
    try:
        g()
    except (E if a else F):
        h()
    except G:
        k()
''',
"for_target_stored_before_each_iteration": '''
def f(d, xs, a, b):
    for d[a or b] in xs:
        g()
''',
"lambda_default_and_first_iterable_run_here": '''
def f(a, b, xs):
    h = lambda v=(a or b): v
    return [x for x in (xs or [])]
''',
}

EXPECTED = {
    "return_through_two_finally": [
        "expr#0 -> try#0.finally [exception]",
        "expr#0 -> try#0.finally [return]",
        "expr#1 -> f.exit [exception]",
        "expr#1 -> f.exit [return]",
        "f.entry -> try#0",
        "return#0 -> try#1.finally [exception]",
        "return#0 -> try#1.finally [return]",
        "try#0 -> try#1",
        "try#0.finally -> expr#1",
        "try#1 -> return#0",
        "try#1.finally -> expr#0",
    ],
    "continue_in_finally": [
        "continue#0 -> f.exit [exception]",
        "continue#0 -> f.exit [false]",
        "continue#0 -> for#0.body [true]",
        "expr#0 -> try#0.finally",
        "expr#0 -> try#0.finally [exception]",
        "f.entry -> for#0",
        "for#0 -> f.exit [exception]",
        "for#0 -> f.exit [false]",
        "for#0 -> for#0.body [true]",
        "for#0.body -> try#0",
        "try#0 -> expr#0",
        "try#0.finally -> continue#0",
    ],
    "reraise_in_handler_goes_to_finally": [
        "except#0 -> raise#0",
        "expr#0 -> except#0 [exception]",
        "expr#0 -> try#0.finally",
        "expr#0 -> try#0.finally [exception]",
        "expr#1 -> f.exit",
        "expr#1 -> f.exit [exception]",
        "f.entry -> try#0",
        "raise#0 -> try#0.finally [exception]",
        "try#0 -> expr#0",
        "try#0.finally -> expr#1",
    ],
    "try_star": [
        "except#0 -> expr#1",
        "except#1 -> expr#2",
        "expr#0 -> except#0 [exception]",
        "expr#0 -> except#1 [exception]",
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",
        "expr#1 -> except#1",
        "expr#1 -> f.exit",
        "expr#1 -> f.exit [exception]",
        "expr#2 -> f.exit",
        "expr#2 -> f.exit [exception]",
        "f.entry -> try#0",
        "try#0 -> expr#0",
    ],
    "async_for_with_await": [
        "expr#0 -> f.exit [exception]",
        "expr#0 -> f.exit [false]",
        "expr#0 -> for#0.body [true]",
        "f.entry -> with#0",
        "for#0 -> f.exit [exception]",
        "for#0 -> f.exit [false]",
        "for#0 -> for#0.body [true]",
        "for#0.body -> expr#0",
        "with#0 -> f.exit [exception]",
        "with#0 -> for#0",
    ],
    "assert_and_yield_from": [
        "assert#0 -> expr#0",
        "assert#0 -> f.exit [exception]",
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",
        "f.entry -> assert#0",
    ],
    "nested_bool_in_if": [
        "bool_op#0.op0 -> bool_op#1.op0 [false]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op0 -> if#0.false [true]",
        "bool_op#0.op0 -> if#0.true [true]",
        "bool_op#0.op1 -> f.exit [exception]",
        "bool_op#0.op1 -> if#0.false [false]",
        "bool_op#0.op1 -> if#0.true [true]",
        "bool_op#1.op0 -> bool_op#0.op1 [false]",
        "bool_op#1.op0 -> bool_op#1.op1 [true]",
        "bool_op#1.op0 -> f.exit [exception]",
        "bool_op#1.op1 -> bool_op#0.op1",
        "bool_op#1.op1 -> f.exit [exception]",
        "f.entry -> if#0",
        "if#0 -> bool_op#0.op0",
        "if#0 -> f.exit [exception]",
        "if#0.false -> f.exit",
        "if#0.true -> pass#0",
        "pass#0 -> f.exit",
    ],
    "while_true_break": [
        "break#0 -> expr#0 [break]",
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",
        "f.entry -> while#0",
        "if#0 -> f.exit [exception]",
        "if#0 -> if#0.false [false]",
        "if#0 -> if#0.true [true]",
        "if#0.false -> expr#0 [false]",
        "if#0.false -> f.exit [exception]",
        "if#0.false -> while#0.body [true]",
        "if#0.true -> break#0",
        "while#0 -> expr#0 [false]",
        "while#0 -> f.exit [exception]",
        "while#0 -> while#0.body [true]",
        "while#0.body -> if#0",
    ],
    "if_elif_else": [
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",
        "expr#1 -> f.exit",
        "expr#1 -> f.exit [exception]",
        "f.entry -> if#0",
        "if#0 -> f.exit [exception]",
        "if#0 -> if#0.false [false]",
        "if#0 -> if#0.true [true]",
        "if#0.false -> if#1",
        "if#0.true -> expr#0",
        "if#1 -> f.exit [exception]",
        "if#1 -> if#1.false [false]",
        "if#1 -> if#1.true [true]",
        "if#1.false -> expr#1",
        "if#1.true -> pass#0",
        "pass#0 -> f.exit",
    ],
    "for_else_break_continue": [
        "break#0 -> f.exit [break]",
        "continue#0 -> f.exit [exception]",
        "continue#0 -> for#0.body [true]",
        "continue#0 -> for#0.else [false]",
        "f.entry -> for#0",
        "for#0 -> f.exit [exception]",
        "for#0 -> for#0.body [true]",
        "for#0 -> for#0.else [false]",
        "for#0.body -> if#0",
        "for#0.else -> pass#0",
        "if#0 -> f.exit [exception]",
        "if#0 -> if#0.false [false]",
        "if#0 -> if#0.true [true]",
        "if#0.false -> break#0",
        "if#0.true -> continue#0",
        "pass#0 -> f.exit",
    ],
    "while_test_arms": [
        "bool_op#0.op0 -> bool_op#0.op1 [true]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op0 -> f.exit [false]",
        "bool_op#0.op0 -> while#0.body [false]",
        "bool_op#0.op1 -> f.exit [exception]",
        "bool_op#0.op1 -> f.exit [false]",
        "bool_op#0.op1 -> while#0.body [true]",
        "f.entry -> while#0",
        "pass#0 -> bool_op#0.op0",
        "pass#0 -> f.exit [exception]",
        "while#0 -> bool_op#0.op0",
        "while#0 -> f.exit [exception]",
        "while#0.body -> pass#0",
    ],
    "try_except_else_finally": [
        "except#0 -> pass#0",
        "expr#0 -> except#0 [exception]",
        "expr#0 -> try#0.else",
        "expr#0 -> try#0.finally [exception]",
        "f.entry -> try#0",
        "pass#0 -> try#0.finally",
        "pass#1 -> try#0.finally",
        "pass#2 -> f.exit",
        "pass#2 -> f.exit [exception]",
        "try#0 -> expr#0",
        "try#0.else -> pass#1",
        "try#0.finally -> pass#2",
    ],
    "break_in_finally": [
        "break#0 -> f.exit [break]",
        "f.entry -> for#0",
        "for#0 -> f.exit [exception]",
        "for#0 -> f.exit [false]",
        "for#0 -> for#0.body [true]",
        "for#0.body -> try#0",
        "return#0 -> try#0.finally [exception]",
        "return#0 -> try#0.finally [return]",
        "try#0 -> return#0",
        "try#0.finally -> break#0",
    ],
    "with_suppression": [
        "expr#0 -> f.exit [exception]",
        "expr#0 -> pass#0",
        "expr#0 -> pass#0 [exception]",
        "f.entry -> with#0",
        "pass#0 -> f.exit",
        "with#0 -> expr#0",
        "with#0 -> f.exit [exception]",
    ],
    "raise_and_bare_except": [
        "except#0 -> raise#1",
        "f.entry -> try#0",
        "raise#0 -> except#0 [exception]",
        "raise#1 -> f.exit [exception]",
        "try#0 -> raise#0",
    ],
    "match_guard_nomatch": [
        "f.entry -> match#0",
        "match#0 -> f.exit [exception]",
        "match#0 -> f.exit [false]",
        "match#0 -> match#0.case0 [case 0]",
        "match#0 -> match#0.case1 [case 1]",
        "match#0.case0 -> pass#0",
        "match#0.case1 -> pass#1",
        "pass#0 -> f.exit",
        "pass#1 -> f.exit",
    ],
    "generator_return": [
        "expr#0 -> f.exit [exception]",
        "expr#0 -> return#0",
        "f.entry -> expr#0",
        "return#0 -> f.exit [exception]",
        "return#0 -> f.exit [return]",
    ],
    "if_exp_and_walrus_del_global": [
        "assign#0 -> f.exit [exception]",
        "assign#0 -> if_exp#0.false [false]",
        "assign#0 -> if_exp#0.true [true]",
        "del#0 -> f.exit",
        "del#0 -> f.exit [exception]",
        "f.entry -> global#0",
        "global#0 -> assign#0",
        "if_exp#0.false -> del#0",
        "if_exp#0.false -> f.exit [exception]",
        "if_exp#0.true -> del#0",
        "if_exp#0.true -> f.exit [exception]",
    ],
    "class_inline": [
        "<module>.entry -> K",
        "K -> <module>.exit [exception]",
        "K -> assign#0",
        "K.m -> <module>.exit",
        "K.m -> <module>.exit [exception]",
        "assign#0 -> <module>.exit [exception]",
        "assign#0 -> K.m",
    ],
    "compare_chain_stops_at_the_first_false": [
        "assign#0 -> bool_op#0.op0",
        "assign#0 -> f.exit",  # a < b was false: (c or d) never runs
        "assign#0 -> f.exit [exception]",
        "bool_op#0.op0 -> bool_op#0.op1 [false]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op0 -> f.exit [true]",
        "bool_op#0.op1 -> f.exit",
        "bool_op#0.op1 -> f.exit [exception]",
        "f.entry -> assign#0",
    ],
    "assert_message_only_when_failing": [
        "assert#0 -> bool_op#0.op0",  # a was false: the message, then AssertionError
        "assert#0 -> expr#0",  # a was true (or python -O dropped the assert)
        "assert#0 -> f.exit [exception]",
        "bool_op#0.op0 -> bool_op#0.op1 [false]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op1 -> f.exit [exception]",
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",
        "f.entry -> assert#0",
    ],
    "except_type_is_evaluated_when_an_exception_arrives": [
        "except#0 -> expr#1",
        "except#1 -> expr#2",
        "expr#0 -> f.exit",
        "expr#0 -> f.exit [exception]",  # (also: evaluating the type raised before its arm)
        "expr#0 -> if_exp#0.false [exception]",  # the type is evaluated before the handler is chosen
        "expr#0 -> if_exp#0.true [exception]",
        "expr#1 -> f.exit",
        "expr#1 -> f.exit [exception]",
        "expr#2 -> f.exit",
        "expr#2 -> f.exit [exception]",
        "f.entry -> try#0",
        "if_exp#0.false -> except#0 [exception]",
        "if_exp#0.false -> except#1 [exception]",  # did not match: the next handler
        "if_exp#0.false -> f.exit [exception]",
        "if_exp#0.true -> except#0 [exception]",
        "if_exp#0.true -> except#1 [exception]",
        "if_exp#0.true -> f.exit [exception]",
        "try#0 -> expr#0",
    ],
    "for_target_stored_before_each_iteration": [
        "bool_op#0.op0 -> bool_op#0.op1 [false]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op0 -> for#0.body [true]",
        "bool_op#0.op1 -> f.exit [exception]",
        "bool_op#0.op1 -> for#0.body",
        "expr#0 -> bool_op#0.op0 [true]",  # the next item is stored into d[a or b] before the body
        "expr#0 -> f.exit [exception]",
        "expr#0 -> f.exit [false]",
        "f.entry -> for#0",
        "for#0 -> bool_op#0.op0 [true]",
        "for#0 -> f.exit [exception]",
        "for#0 -> f.exit [false]",
        "for#0.body -> expr#0",
    ],
    "lambda_default_and_first_iterable_run_here": [
        "assign#0 -> bool_op#0.op0",  # the default runs here, in f's frame
        "assign#0 -> f.exit [exception]",
        "bool_op#0.op0 -> bool_op#0.op1 [false]",
        "bool_op#0.op0 -> f.exit [exception]",
        "bool_op#0.op0 -> return#0 [true]",
        "bool_op#0.op1 -> f.exit [exception]",
        "bool_op#0.op1 -> return#0",
        "bool_op#1.op0 -> bool_op#1.op1 [false]",
        "bool_op#1.op0 -> f.exit [exception]",
        "bool_op#1.op0 -> f.exit [return]",
        "bool_op#1.op1 -> f.exit [exception]",
        "bool_op#1.op1 -> f.exit [return]",
        "f.entry -> assign#0",
        "return#0 -> bool_op#1.op0",  # the first iterable runs here too
        "return#0 -> f.exit [exception]",
    ],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_construct(name: str) -> None:
    if name == "try_star" and sys.version_info < (3, 11):
        pytest.skip("except* needs Python 3.11")
    scope = "m:<module>" if name == "class_inline" else "m:f"
    assert edges(CASES[name], scope) == EXPECTED[name]


def test_lambda_is_its_own_scope_with_short_circuit_arms() -> None:
    assert edges("f = lambda a: a or b\n", "m:<module>:lambda#0") == [
        "bool_op#0.op0 -> bool_op#0.op1 [false]",
        "bool_op#0.op0 -> lambda#0.exit [exception]",
        "bool_op#0.op0 -> lambda#0.exit [true]",
        "bool_op#0.op1 -> lambda#0.exit",
        "bool_op#0.op1 -> lambda#0.exit [exception]",
        "lambda#0.entry -> bool_op#0.op0",
    ]


def test_comprehension_is_its_own_scope() -> None:
    got = edges("r = [x for x in y if x or z]\n", "m:<module>:comprehension#0")
    assert "comprehension#0.entry -> bool_op#0.op0" in got  # the condition runs inside the comprehension
    assert "bool_op#0.op1 -> bool_op#0.op0" in got          # ... again for the next element
    assert all("<module>.exit" not in e for e in got)

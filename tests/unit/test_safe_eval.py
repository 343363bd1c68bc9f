"""The debugger's expression evaluator: recorded representations are data, user code never runs."""

from __future__ import annotations

import pytest

from execscope.queries.safe_eval import EvalError, Opaque, evaluate, interpolate, parse_value, render

NAMES = {"n": "3", "xs": "[1, 2, 3]", "cfg": "{'name': 'shop', 'sizes': [1, 2]}", "obj": "<Cart object at 0x1>",
         "self.prices": "[10, 20]", "s": "'abc'", "big": "[1, 2, …3 more]"}


@pytest.mark.parametrize(("expr", "expected"), [
    ("n + 1", 4), ("n * 2 == 6", True), ("xs[1:]", [2, 3]), ("len(xs)", 3), ("2 in xs", True),
    ("cfg['sizes'][-1]", 2), ("cfg.name", "shop"), ("self.prices[0] + 1", 11), ("n > 2 and s == 'abc'", True),
    ("not xs", False), ("n if n > 5 else -n", -3), ("max(xs) - min(xs)", 2), ("s.upper" if False else "s[0]", "a"),
    ("1 < n < 5", True), ("{'a': n}['a']", 3), ("obj == '<Cart object at 0x1>'", True), ("n ** 2", 9),
])
def test_supported_expressions(expr: str, expected: object) -> None:
    assert evaluate(expr, NAMES) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ("__import__('os')", "only calls of"), ("open('x')", "only calls of"), ("s.upper()", "only calls of"),
    ("[x for x in xs]", "not supported"), ("lambda: 1", "not supported"), ("xs.__class__", "not supported"),
    ("missing", "not recorded"), ("obj[0]", "does not parse"), ("big[0]", "does not parse"),
    ("n / 0", "ZeroDivisionError"), ("2 ** 100000", "exponent"), ("'a' * 10**7", "longer than"),
    ("xs[10]", "IndexError"), ("n +", "syntax error"), ("cfg.missing", "no recorded attribute"),
])
def test_unsupported_or_failing_expressions_are_clear_errors(expr: str, message: str) -> None:
    with pytest.raises(EvalError, match=message.replace("(", r"\(").replace("*", r"\*")):
        evaluate(expr, NAMES)


def test_values_and_log_messages() -> None:
    assert isinstance(parse_value("<Cart object>"), Opaque)
    assert render(parse_value("<Cart object>")) == "<Cart object>"
    assert interpolate("n={n} len={len(xs)} {{literal}} bad={nope}", NAMES) == (
        "n=3 len=3 {literal} bad=<error: name 'nope' is not recorded at this point>")

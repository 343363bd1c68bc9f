"""The fixture's own tests: each parameter is one test, so one trace when recorded."""

import random

import pytest

from pathsapp.core import (
    bisect_left,
    calc,
    clamp,
    count_positive,
    first_success,
    gcd,
    grade,
    insertion_sort,
    normalize,
    parse_age,
    safe_div,
)

R = random.Random(7)
LISTS = [[R.randint(-5, 9) for _ in range(R.randint(0, 9))] for _ in range(12)]
EXPRS = ["1+2", "2*3+4", "10-3*2", "7", "2*2*2-1", "5+5+5", "9-1-1", "3*4-2*2", "12+0*7", "6-6"]


@pytest.mark.parametrize("x", range(-3, 14))
def test_clamp(x):
    assert clamp(x, 0, 10) == min(max(x, 0), 10)


@pytest.mark.parametrize("score", range(55, 101, 3))
def test_grade(score):
    assert grade(score) == ("A" if score >= 90 else "B" if score >= 80 else "C" if score >= 70 else "F")


@pytest.mark.parametrize("xs", LISTS)
def test_count_positive(xs):
    assert count_positive(xs) == sum(1 for x in xs if x > 0)


@pytest.mark.parametrize("xs", LISTS)
def test_sort_and_search(xs):
    ordered = insertion_sort(xs)
    assert ordered == sorted(xs)
    for target in (-1, 3, 8):
        assert bisect_left(ordered, target) == sum(1 for x in ordered if x < target)


@pytest.mark.parametrize("a,b", [(12, 18), (7, 5), (100, 75), (9, 0), (21, 14), (17, 17), (40, 64), (3, 9)])
def test_gcd(a, b):
    import math
    assert gcd(a, b) == math.gcd(a, b)


@pytest.mark.parametrize("text", EXPRS)
def test_calc(text):
    assert calc(text) == eval(text)


# Guards as real code has them: the ordinary case in most tests, the edge case in a few.
@pytest.mark.parametrize("a,b", [(R.randint(1, 50), R.randint(1, 9)) for _ in range(14)] + [(3, 0)])
def test_safe_div(a, b):
    assert safe_div(a, b) == (None if b == 0 else a / b)


@pytest.mark.parametrize("text", [str(R.randint(1, 99)) for _ in range(12)] + ["abc", "200"])
def test_parse_age(text):
    expected = int(text) if text.isdigit() and int(text) <= 150 else -1
    assert parse_age(text) == expected


@pytest.mark.parametrize("xs", [[R.randint(1, 9) for _ in range(R.randint(1, 5))] for _ in range(12)] + [[], [-1, -2]])
def test_normalize(xs):
    top = max(xs, default=0)
    assert normalize(xs) == ([] if not xs else [0.0] * len(xs) if top <= 0 else [x / top for x in xs])


@pytest.mark.parametrize("attempts", [[True], [False, True], [True, False]] * 4 + [[False, False, False]])
def test_first_success(attempts):
    expected = next((i + 1 for i, ok in enumerate(attempts[:3]) if ok), -1)
    assert first_success(attempts) == expected

"""The fixture's own tests: each parameter is one test, so one trace when recorded."""

import random

import pytest

from pathsapp.core import bisect_left, calc, clamp, count_positive, gcd, grade, insertion_sort

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

"""Captured values are bounded, safe, and never change what the program does."""

from __future__ import annotations

import collections
import datetime
import decimal
import sys
import time

from execscope.instrumentation.capture.values import (
    REDACTED,
    ReprLimits,
    capture,
    exception_message,
    python_repr,
    safe_repr,
)


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class SlowRepr:
    calls = 0

    def __repr__(self) -> str:
        SlowRepr.calls += 1
        time.sleep(5)
        return "slow"


class CountingRepr:
    calls = 0

    def __repr__(self) -> str:
        CountingRepr.calls += 1
        return "counted"


def test_user_reprs_are_not_called_by_default() -> None:
    assert safe_repr(RaisingRepr()).startswith("<tests.unit.test_values.RaisingRepr object at 0x")
    t0 = time.perf_counter()
    assert "SlowRepr object" in safe_repr([SlowRepr(), {"k": SlowRepr()}])
    assert time.perf_counter() - t0 < 1 and SlowRepr.calls == 0
    safe_repr((CountingRepr(), [CountingRepr()]))
    assert CountingRepr.calls == 0


def test_user_reprs_allowed_are_guarded() -> None:
    limits = ReprLimits(user_repr=True)
    assert safe_repr(RaisingRepr(), limits) == "<tests.unit.test_values.RaisingRepr: repr raised RuntimeError>"
    assert safe_repr(CountingRepr(), limits) == "counted"


def test_bounded_sizes() -> None:
    limits = ReprLimits(max_chars=50, max_items=3)
    assert len(safe_repr("x" * 10_000, limits)) <= 50
    assert safe_repr(list(range(100)), limits) == "[0, 1, 2, …97 more]"
    assert len(safe_repr({i: "v" * 100 for i in range(100)}, limits)) <= 50
    assert safe_repr(10 ** 5000) == "<int of 16610 bits>"  # never str() a huge int (slow / ValueError)
    assert safe_repr(b"\x00" * 1000, limits).endswith("…")


def test_recursive_and_deep_structures() -> None:
    loop: list = [1]
    loop.append(loop)
    assert safe_repr(loop) == "[1, [...]]"
    deep: list = []
    cur = deep
    for _ in range(1000):
        cur.append([])
        cur = cur[0]
    assert safe_repr(deep) == "[[[<list of 1>]]]"


def test_builtin_and_c_types_render_naturally() -> None:
    point = collections.namedtuple("Point", "x y")
    assert safe_repr(point(1, "a")) == "Point(x=1, y='a')"
    assert safe_repr(collections.OrderedDict(a=1)) == "OrderedDict({'a': 1})"
    assert safe_repr(collections.deque([1, 2])) == "deque([1, 2])"
    assert safe_repr(datetime.date(2024, 1, 2)) == "datetime.date(2024, 1, 2)"
    assert safe_repr(decimal.Decimal("1.5")) == "Decimal('1.5')"
    assert safe_repr((1,)) == "(1,)" and safe_repr(set()) == "set()"
    assert safe_repr(len) == "<built-in function len>"


def test_secrets_are_redacted_by_name() -> None:
    for name in ("password", "db_passwd", "API_KEY", "auth_token", "client_secret", "session_id", "cookie"):
        assert capture(name, "s3cr3t") == REDACTED
    assert capture("username", "bob") == "'bob'"


def test_exception_messages_do_not_run_user_str() -> None:
    class Custom(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert exception_message(ValueError("plain")) == "plain"
    assert "RaisingRepr object" in exception_message(KeyError(RaisingRepr()))
    assert exception_message(Custom("a")) == "('a',)"


class _Touched:
    count = 0


class HookedProxy:
    """A tracing proxy: every attribute read (``__class__`` included) runs program code."""

    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        _Touched.count += 1
        return object.__getattribute__(self, name)


class HookedDict(dict):
    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        _Touched.count += 1
        return dict.__getattribute__(self, name)


class HookedError(Exception):
    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        _Touched.count += 1
        return Exception.__getattribute__(self, name)


def test_rendering_never_reads_the_values_own_attributes() -> None:
    # isinstance() asks an object of another type for its __class__, and exc.args goes through the
    # object's __getattribute__: both would run the program's hooks (boltons' wrap_trace recursed)
    import types

    from execscope.instrumentation.capture.runtime import _not_an_error, exception_entries

    class HookedModule(types.ModuleType):
        def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
            _Touched.count += 1
            return types.ModuleType.__getattribute__(self, name)

    _Touched.count = 0
    values = [HookedProxy(), HookedDict(a=1), HookedError("boom", 2), HookedModule("hooked"),
              [HookedProxy(), (HookedDict(),)], {"k": HookedError()}]
    texts = [safe_repr(v) for v in values]
    assert [python_repr(v) for v in values] == texts  # the Python renderer (C renders builtins)
    try:
        raise HookedError("raised")
    except HookedError as exc:
        message = exception_message(exc)
        assert _not_an_error(exc) is False
        line, entries = exception_entries(exc, sys._getframe())
    assert _Touched.count == 0
    assert texts[1] == "HookedDict({'a': 1})"
    assert texts[2] == "tests.unit.test_values.HookedError('boom', 2)"
    assert texts[3] == "<module 'hooked'>" and "HookedProxy object at 0x" in texts[0]
    assert message == "raised" and entries and line > 0


def test_opaque_snapshots_are_learnt_by_type_and_equal_the_renderers() -> None:
    from execscope.instrumentation.capture import fast_capture, values

    class Node:  # a user class with a Python __repr__: rendered opaque, never calling it
        def __repr__(self) -> str:
            raise AssertionError("user code must not run")

    class Table(dict):  # a C repr (dict's): rendered through the renderers every time
        pass

    values._opaque_names.clear()
    a, b = Node(), Node()
    assert values.opaque_snapshot(a) is None  # not learnt yet
    first = fast_capture.snapshot(a)
    assert first == values.safe_repr(a) == f"<{values._type_name(Node)} object at {id(a):#x}>"
    assert values.opaque_snapshot(b) == fast_capture.snapshot(b) == values.safe_repr(b)  # learnt: its own id
    t = Table(k=1)
    assert fast_capture.snapshot(t) == values.safe_repr(t) == "Table({'k': 1})"
    assert Table not in values._opaque_names and values.opaque_snapshot(t) is None
    for value in ([1], {"a": 1}, {1}, object(), ValueError("x"), print, Node, range(3)):
        assert fast_capture.snapshot(value) == fast_capture.snapshot(value) == values.safe_repr(value)
    assert {Node, object} <= set(values._opaque_names) and Table not in values._opaque_names

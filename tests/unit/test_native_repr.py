"""The C renderer of builtin values gives exactly the Python renderer's text, or declines."""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest

from execscope.instrumentation.capture import fast_capture, values
from execscope.instrumentation.capture.values import ReprLimits, python_repr

native = pytest.importorskip("execscope.instrumentation.capture._capture") if fast_capture.CORE == "native" else None
pytestmark = pytest.mark.skipif(native is None, reason="the native core is turned off in this run")

LIMITS = (values.DEFAULT_LIMITS, ReprLimits(max_chars=40, max_items=3, max_depth=2),
          ReprLimits(max_chars=1, max_items=0, max_depth=0), ReprLimits(max_chars=5000, max_items=50, max_depth=6))


def c_repr(value: object, limits: ReprLimits = values.DEFAULT_LIMITS) -> Any:
    assert native is not None
    return native.bounded_repr(value, limits.max_chars, limits.max_items, limits.max_depth)


def random_value(rnd: random.Random, depth: int = 0) -> object:
    if depth > 3 or rnd.random() < 0.4:
        return rnd.choice([
            None, True, False, rnd.randrange(-10**6, 10**6), rnd.choice([1, -1]) * 2 ** rnd.randrange(200, 2000),
            rnd.random() * 1e10, complex(1.5, -2), float("nan"), "x'\"\n\\\u00e9\U0001f600" * rnd.randrange(0, 90),
            "plain ascii" * rnd.randrange(0, 40), bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 400))),
            bytearray(b"ab\x00'" * rnd.randrange(0, 90)), 0, -1, 2 ** 256 - 1, 2 ** 256,
        ])
    kind = rnd.randrange(6)
    n = rnd.choice([0, 1, 2, 3, 8, 9, 12])
    if kind == 0:
        return [random_value(rnd, depth + 1) for _ in range(n)]
    if kind == 1:
        return tuple(random_value(rnd, depth + 1) for _ in range(n))
    if kind == 2:
        keys = [rnd.choice([rnd.randrange(100), f"k{rnd.randrange(100)}", (1, "two"), None]) for _ in range(n)]
        return {key: random_value(rnd, depth + 1) for key in keys}
    if kind == 3:
        return {rnd.randrange(1000) for _ in range(n)}
    if kind == 4:
        return frozenset(f"s{rnd.randrange(1000)}" for _ in range(n))
    return collections.deque(random_value(rnd, depth + 1) for _ in range(n))


def test_same_text_as_the_python_renderer_on_random_builtin_values() -> None:
    rnd = random.Random(20261125)
    for _ in range(3000):
        value = random_value(rnd)
        for limits in LIMITS:
            text = c_repr(value, limits)
            assert text is not None, value  # builtin types only: never declined
            assert text == python_repr(value, limits), (limits, value)
            assert len(text) <= limits.max_chars


@pytest.mark.parametrize("value", [
    "", "'", '"', "'\"", "\\", "\x00\x7f\u0085", "é" * 300, b"", b"'\"", bytearray(), 10 ** 77, -(2 ** 300),
    [], (), {}, set(), frozenset(), (1,), ((),), [[[[[1]]]]], {"k": {"k": {"k": {"k": 1}}}},
    collections.deque(), collections.deque([[1, 2], (3,)], maxlen=5), list(range(100)), {i: str(i) for i in range(20)},
])
def test_edge_values(value: object) -> None:
    for limits in LIMITS:
        assert c_repr(value, limits) == python_repr(value, limits)


class _Holder:
    def method(self) -> None:
        pass


class _Meta(type):
    pass


@pytest.mark.parametrize("value", [
    print, len, [].append, "x".join, _Holder, _Holder().method, _Holder.method, lambda x: x, int,
    collections.OrderedDict, type("NoModule", (), {"__module__": None}), type("Empty", (), {"__module__": ""}),
    [print, _Holder, _Holder.method], {"k": _Holder, "password": print}, (_Holder().method, [len]),
])
def test_functions_methods_and_classes_render_like_python(value: object) -> None:
    assert c_repr(value) is not None, value
    for limits in LIMITS:  # a builtin's repr longer than max_chars is left to Python (which cuts it)
        text = c_repr(value, limits)
        assert text is None or text == python_repr(value, limits), (limits, value)


def test_classes_of_other_metaclasses_and_odd_modules_are_left_to_python() -> None:
    odd = type("Odd", (), {"__module__": 5})
    for value in (_Meta("WithMeta", (), {}), odd, [odd]):
        assert c_repr(value) is None
        assert values.safe_repr(value) == python_repr(value)


def test_cycles_render_like_python() -> None:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    t = ([a], {"d": d})
    for value in (a, d, t):
        assert c_repr(value) == python_repr(value)
    q: collections.deque[Any] = collections.deque([1])
    q.append(q)  # unbounded by max_depth in the Python renderer: left to it
    assert c_repr(q) is None
    assert values.safe_repr(q) == python_repr(q)


class Loud:
    calls = 0

    def __repr__(self) -> str:
        Loud.calls += 1
        raise RuntimeError("must not run")


class Named(collections.namedtuple("Named", "a b")):
    pass


class _ExcMeta(type):
    pass


class _OddException(Exception, metaclass=_ExcMeta):
    pass


@pytest.mark.parametrize("value", [
    ValueError(), ValueError("no"), KeyError("k", 1), OSError(2, "missing"), StopIteration((1,)),
    ValueError("x" * 500), ValueError(ValueError(ValueError("deep"))), [ValueError("in a list"), TypeError()],
    {"password": ValueError("hidden by name"), "e": RuntimeError({"token": "t"})}, Exception([1, [2, [3, [4]]]]),
    Exception("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"), type("Local", (Exception,), {})("local"),
    type("NoModule", (Exception,), {"__module__": None})(), SystemExit(0), ...,
    range(3), range(-5, 10**30, 7), slice(1), slice(None, -2, 3), [slice(2**70), Ellipsis], (range(0),),
])
def test_exceptions_ranges_and_slices_render_like_python(value: object) -> None:
    # a parser's exceptions are the argument of many of its calls: rendered in C, not by Python
    assert c_repr(value) is not None, value
    for limits in LIMITS:
        assert c_repr(value, limits) == python_repr(value, limits), (limits, value)


def test_exceptions_of_other_metaclasses_or_odd_classes_are_left_to_python() -> None:
    for value in (_OddException("x"), type("Odd", (Exception,), {"__module__": 5})()):
        assert c_repr(value) is None
        assert values.safe_repr(value) == python_repr(value)


def test_other_types_are_declined_without_running_user_code() -> None:
    for value in ([1, Loud()], {"k": Loud()}, (Loud(),), Named(1, 2), collections.OrderedDict(a=1),
                  collections.Counter("aab"), object(), ValueError(Loud()), [KeyError(1, Loud())]):
        values._opaque_names.clear()  # none learnt opaque yet (see the end)
        assert c_repr(value) is None
        assert values.safe_repr(value) == python_repr(value)
    assert c_repr(slice(Loud())) is None  # (the Python renderer's repr of a slice is its members')
    assert Loud.calls == 0
    # once the Python renderer has shown a Loud opaque (fast_capture.snapshot learns it), C renders it too
    from execscope.instrumentation.capture import fast_capture

    loud = Loud()
    assert fast_capture.snapshot(loud) == python_repr(loud)
    expected = f"[1, <{Loud.__module__}.{Loud.__qualname__} object at {id(loud):#x}>]"
    assert c_repr([1, loud]) == python_repr([1, loud]) == expected
    assert Loud.calls == 0
    # past max_depth the inner value is only counted, so a Loud object there is never reached
    assert c_repr([[[[Loud()]]]]) == "[[[<list of 1>]]]"


def test_safe_repr_goes_through_the_c_renderer() -> None:
    assert values._native_repr is native.bounded_repr  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        native.bounded_repr([], 0, 8, 3)  # type: ignore[union-attr]


def test_abc_classes_are_learnt_opaque_but_not_classes_whose_metaclass_compares() -> None:
    import abc

    from execscope.instrumentation.capture import fast_capture

    class Base(abc.ABC):  # a parser's node class (pyparsing's ParserElement is an ABC)
        @abc.abstractmethod
        def parse(self) -> None: ...

    class Node(Base):
        def parse(self) -> None:
            pass

    class Odd(type):
        def __eq__(cls, other: object) -> bool:
            raise AssertionError("user code must not run")

        __hash__ = type.__hash__

    class Strange(metaclass=Odd):
        pass

    values._opaque_names.clear()
    node, strange = Node(), Strange()
    assert fast_capture.snapshot(node) == python_repr(node)
    assert c_repr((node, 1)) == python_repr((node, 1))  # learnt: rendered in C inside a tuple
    assert fast_capture.snapshot(strange) == python_repr(strange)
    assert Strange not in values._opaque_names and c_repr([strange]) is None

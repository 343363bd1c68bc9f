"""Behaviour equivalence: the same code, plain and rewritten at every level, does the same things.

Each case's ``main()`` returns a value (or prints); the plain and instrumented results must be equal,
with recording active (spans are produced) so the runtime's side of every probe runs too.
"""

from __future__ import annotations

import asyncio
import traceback

import pytest

from execscope.instrumentation.capture import fast_capture, runtime
from tests.conftest import captured_stdout, load_plain, load_rewritten

CASES: dict[str, str] = {
    "future_and_docstrings": '''
        """Module docstring."""
        from __future__ import annotations

        def f(x: int) -> list[int]:
            """Function docstring."""
            return [x]

        class K:
            """Class docstring."""

        def main():
            return (__doc__, f.__doc__, K.__doc__, f(1), f.__annotations__)
    ''',
    "decorators_closures_nonlocal": '''
        import functools

        def counter(fn):
            count = 0
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                nonlocal count
                count += 1
                return fn(*args, **kwargs), count
            return wrapper

        @counter
        def add(a, b=2, *rest, key=None, **extra):
            return a + b + sum(rest) + len(extra)

        G = 0
        def bump():
            global G
            G += 1
            return G

        def main():
            return [add(1), add(1, 2, 3, 4, z=1), add.__name__, bump(), bump(), add.__wrapped__.__qualname__]
    ''',
    "generators_send_throw_close": '''
        def gen(n):
            total = 0
            try:
                for i in range(n):
                    got = yield i
                    if got:
                        total += got
            except KeyError:
                yield "caught"
            finally:
                print("closing", total)
            return total

        def delegate():
            result = yield from gen(3)
            yield ("result", result)

        def main():
            g = gen(5)
            out = [next(g), g.send(10), g.send(5), g.throw(KeyError("k"))]
            g.close()
            out.append(list(delegate()))
            h = gen(2); next(h); h.close()
            return out
    ''',
    "async_functions_and_generators": '''
        import asyncio

        async def agen(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i * 2

        async def work(x):
            await asyncio.sleep(0)
            if x > 2:
                raise ValueError(x)
            return x + 1

        async def amain():
            results = await asyncio.gather(work(1), work(2), work(3), return_exceptions=True)
            items = [i async for i in agen(3)]
            async with asyncio.timeout(5):
                pass
            return [repr(r) for r in results], items

        def main():
            return asyncio.run(amain())
    ''',
    "classes_super_properties_slots": '''
        import dataclasses, enum

        class Base:
            def __init__(self, v):
                self.v = v
            def describe(self):
                return f"base {self.v}"

        class Child(Base):
            __slots__ = ("extra",)
            def __init__(self, v):
                super().__init__(v)
                self.extra = v * 2
            def describe(self):
                return "child " + super().describe()
            @property
            def double(self):
                return self.extra
            @double.setter
            def double(self, value):
                self.extra = value
            @classmethod
            def make(cls):
                return cls(7)
            @staticmethod
            def static(a):
                return a

        class Color(enum.Enum):
            RED = 1
            GREEN = 2

        @dataclasses.dataclass
        class Point:
            x: int
            y: int = 0
            def norm(self):
                return abs(self.x) + abs(self.y)

        def main():
            c = Child.make()
            c.double = 5
            return [c.describe(), c.double, Child.static(3), list(Color), Color.RED.value,
                    Point(3, -4).norm(), dataclasses.fields(Point)[1].name, Child.__mro__[1].__name__]
    ''',
    "control_flow_everything": '''
        def classify(v):
            match v:
                case 0:
                    return "zero"
                case [a, *rest] if a > 0:
                    return f"list {a} {rest}"
                case {"k": value}:
                    return f"map {value}"
                case str() as s:
                    return "str " + s
                case _:
                    return "other"

        def loops(n):
            out = []
            i = 0
            while i < n:
                i += 1
                if i == 2:
                    continue
                if i == 5:
                    break
                out.append(i)
            else:
                out.append("no-break")
            for j in range(3):
                pass
            else:
                out.append(j)
            return out

        def tricky_finally():
            for i in range(3):
                try:
                    if i == 1:
                        return i
                finally:
                    if i == 1:
                        print("finally", i)
            return -1

        def shortcircuit(a, b):
            return (a and b) or (not a and "na") or None, (a if b else b), [x for x in (a, b) if x]

        def unpack():
            a, (b, *c), d = 1, (2, 3, 4), 5
            first, *_ = "xyz"
            (y := 10)
            s = {}
            s["k"] = s.get("k", 0) + 1
            del a
            return b, c, d, first, y, s

        def main():
            return [classify(0), classify([1, 2]), classify({"k": 3}), classify("x"), classify(2.5),
                    loops(3), loops(10), tricky_finally(), shortcircuit(1, 0), shortcircuit(0, 1), unpack()]
    ''',
    "exceptions_and_with": '''
        import contextlib

        class Boom(Exception):
            pass

        @contextlib.contextmanager
        def managed(log):
            log.append("enter")
            try:
                yield "res"
            except Boom:
                log.append("handled")
            finally:
                log.append("exit")

        def risky(n):
            if n:
                raise Boom(n)
            return "fine"

        def main():
            log = []
            with managed(log) as r:
                log.append(r)
                risky(1)
            try:
                risky(2)
            except Boom as e:
                log.append(("caught", e.args))
            try:
                try:
                    {}["missing"]
                except KeyError as e:
                    raise ValueError("wrapped") from e
            except ValueError as e:
                log.append((type(e.__cause__).__name__, str(e)))
            return log
    ''',
    "seeded_random_is_untouched": '''
        import random

        def pick(xs):
            return random.choice(xs)

        def main():
            random.seed(1234)
            return [pick(list(range(1000))) for _ in range(5)], random.random(), random.getrandbits(64)
    ''',
    "lambdas_comprehensions_walrus": '''
        def main():
            f = lambda x, y=2: x * y if x else -1
            data = [f(i) for i in range(4) if (k := i) or True]
            pairs = {i: [j for j in range(i)] for i in range(3)}
            gen = sum(x for x in range(5) if x % 2)
            return data, pairs, gen, k, sorted({1, 3, 2}, key=lambda v: -v)
    ''',
}


@pytest.mark.parametrize("core", ["sdk", "fast"])
@pytest.mark.parametrize("level", ["functions", "branches", "statements"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_behaviour_plain_and_rewritten(case: str, level: str, core: str, recorder) -> None:
    source = CASES[case]
    with captured_stdout() as out_plain:
        plain = load_plain(source, name=f"eq_{case}").main()
    runtime.stats.errors = 0
    if core == "fast":
        fast_capture.take_pending()
        fast_capture.activate()
    try:
        with captured_stdout() as out_inst:
            inst = load_rewritten(source, level, name=f"eq_{case}").main()
    finally:
        frames, _ = fast_capture.take_pending()
        runtime.activate(runtime.Recorder(recorder.provider), 3)
    assert repr(inst) == repr(plain)
    assert out_inst.getvalue() == out_plain.getvalue()
    recorded = frames if core == "fast" else recorder.get_finished_spans()
    assert recorded, "recording produced no spans"
    assert runtime.stats.errors == 0, runtime.stats.last_error


TRACEBACK_CASE = '''
def inner(x):
    y = x + 1
    return 1 / (y - y)

def outer():
    return inner(
        41,
    )
'''


@pytest.mark.parametrize("level", ["functions", "branches", "statements"])
def test_tracebacks_keep_lines_and_names(level: str, recorder) -> None:
    def frames(module):
        try:
            module.outer()
        except ZeroDivisionError as exc:
            return [(f.name, f.lineno, f.line) for f in traceback.extract_tb(exc.__traceback__)][1:]
        raise AssertionError("no exception")

    plain = frames(load_plain(TRACEBACK_CASE, name="tb_case"))
    inst = frames(load_rewritten(TRACEBACK_CASE, level, name="tb_case"))
    assert inst == plain
    assert [f[1] for f in inst] == [7, 4]


def test_asyncio_tasks_are_their_own_chains(recorder) -> None:
    mod = load_rewritten('''
        import asyncio
        async def leaf(i):
            await asyncio.sleep(0)
            return i
        async def branch(i):
            return await leaf(i)
        async def root():
            return await asyncio.gather(*(asyncio.create_task(branch(i)) for i in range(3)))
    ''', "functions", name="tasks")
    assert asyncio.run(mod.root()) == [0, 1, 2]
    spans = recorder.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    leaves = [s for s in spans if s.name == "tasks.leaf"]
    assert len(leaves) == 3
    for leaf in leaves:
        parent = by_id[leaf.parent.span_id]
        assert parent.name == "tasks.branch"
        assert by_id[parent.parent.span_id].name == "tasks.root"
    assert len({s.context.trace_id for s in spans}) == 1

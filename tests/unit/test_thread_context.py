"""Threads and pool tasks started inside a recorded call are recorded as its children, same trace."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from execscope.instrumentation.capture import fast_capture, runtime, thread_context
from tests.conftest import load_rewritten
from tests.unit.test_fast_capture import fast  # noqa: F401  (fixture)

SOURCE = '''
    import threading
    from concurrent.futures import ThreadPoolExecutor

    def work(k):
        return k * 2

    def spawn():
        t = threading.Thread(target=work, args=(1,))
        t.start(); t.join()
        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(work, [2, 3])) + [pool.submit(work, 4).result()]

    def later():
        return work(5)
'''


def test_thread_and_pool_work_joins_the_spawning_call(fast) -> None:  # noqa: F811
    module = load_rewritten(SOURCE, "functions", name="threads_app", file="/src/threads_app.py")
    _, dropped_before = fast_capture.take_pending()
    assert module.spawn() == [4, 6, 8]
    module.later()
    frames, dropped = fast_capture.take_pending()
    assert dropped == dropped_before  # the drop count is cumulative: nothing of this test was dropped
    spawn = next(f for f in frames if f.info[1] == "threads_app.spawn")
    later = next(f for f in frames if f.info[1] == "threads_app.later")
    work = [f for f in frames if f.info[1] == "threads_app.work"]
    assert len(work) == 5
    in_spawn = [f for f in work if f.trace_id == spawn.trace_id]
    assert len(in_spawn) == 4 and all(f.parent_id == spawn.span_id for f in in_spawn)
    (from_later,) = [f for f in work if f.trace_id == later.trace_id]
    assert from_later.parent_id == later.span_id
    assert len({f.seq0 for f in frames}) == len(frames)  # one sequence orders every thread


def test_threads_started_outside_recorded_calls_are_untouched(fast) -> None:  # noqa: F811
    seen = []
    t = threading.Thread(target=lambda: seen.append(runtime._current.get()))
    t.start()
    t.join()
    assert seen == [None] and "run" not in t.__dict__
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(lambda: 7).result() == 7


def test_install_is_idempotent_and_uninstall_restores() -> None:
    original = threading.Thread.start
    thread_context.uninstall()
    plain = threading.Thread.start
    thread_context.install()
    thread_context.install()
    assert threading.Thread.start is not plain
    thread_context.uninstall()
    assert threading.Thread.start is plain
    if original is not plain:
        thread_context.install()


def test_asyncio_tasks_each_keep_their_own_causal_chain(fast) -> None:  # noqa: F811
    module = load_rewritten('''
        import asyncio

        async def step(k):
            await asyncio.sleep(0)
            return k

        async def task(k):
            a = await step(k)
            await asyncio.sleep(0)
            b = await step(k + 10)
            return a + b

        async def main():
            return await asyncio.gather(task(1), task(2), task(3))

        def run():
            return asyncio.run(main())
    ''', "functions", name="async_app", file="/src/async_app.py")
    fast_capture.take_pending()
    assert module.run() == [12, 14, 16]
    frames, _ = fast_capture.take_pending()
    by_id = {f.span_id: f for f in frames}
    main = next(f for f in frames if f.info[1] == "async_app.main")
    tasks = [f for f in frames if f.info[1] == "async_app.task"]
    steps = [f for f in frames if f.info[1] == "async_app.step"]
    assert len(tasks) == 3 and len(steps) == 6
    assert all(t.parent_id == main.span_id and t.trace_id == main.trace_id for t in tasks)
    for t in tasks:  # each task's steps are its own children, however the tasks interleave
        mine = [s for s in steps if s.parent_id == t.span_id]
        assert sorted(s.args[0] for s in mine) == sorted([t.args[0], t.args[0] + 10])
    assert all(by_id[s.parent_id].info[1] == "async_app.task" for s in steps)


def test_a_generator_driven_from_two_tasks_hands_each_its_chain_back(fast) -> None:  # noqa: F811
    module = load_rewritten('''
        import asyncio

        def leaf(i):
            return i

        def gen():
            for i in range(4):
                yield leaf(i)

        async def step(g):
            await asyncio.sleep(0)
            return next(g)

        async def task(g):
            a = await step(g)
            b = await step(g)
            return a + b

        async def main():
            g = gen()
            return await asyncio.gather(task(g), task(g))

        def run():
            return asyncio.run(main())
    ''', "functions", name="shared_gen_app", file="/src/shared_gen_app.py")
    fast_capture.take_pending()
    assert sorted(module.run()) == [0 + 2, 1 + 3]
    frames, _ = fast_capture.take_pending()
    by_id = {f.span_id: f for f in frames}
    name = {f.span_id: f.info[1].rsplit(".", 1)[1] for f in frames}
    runs = [f for f in frames if name[f.span_id] == "run"]
    for f in frames:  # every call has its recorded caller as parent, in the caller's trace
        if name[f.span_id] != "run":
            assert f.parent_id in by_id and by_id[f.parent_id].trace_id == f.trace_id
    for f in frames:
        parent = name.get(f.parent_id)
        if name[f.span_id] == "leaf":
            assert parent == "gen"  # the generator's own frame while it runs
        elif name[f.span_id] in ("task", "step"):
            assert parent in ("main", "task")  # never the suspended generator's
        elif name[f.span_id] == "gen":
            assert parent == "step"  # started by whichever task pulled first
    assert len(runs) == 1 and sum(name[f.span_id] == "leaf" for f in frames) == 4

# ruff: noqa: B006, E722
"""A program with each pattern `execscope query insights` reports and a near miss of each.

Recorded twice by tests/integration/test_insights.py (``--level statements``): once plain and once
with the argument ``second``, which runs only what the first run leaves out (a function and an arm
that are executed in one run only, so they are near misses of "never executed").
"""

import asyncio
import subprocess
import sys
import time


def parse_int(text):
    try:
        return int(text)
    except Exception:  # PATTERN swallowed: broad, no re-raise, runs
        return 0


def load(path):
    try:
        with open(path) as f:
            return f.read()
    except:  # near miss: broad, never runs (and an arm never executed)
        return ""


def strict(text):
    try:
        return int(text)
    except BaseException:  # near miss: broad and runs, but re-raises
        raise


def narrow(text):
    try:
        return int(text)
    except ValueError:  # near miss: runs, but narrow
        return -1


async def fetch_blocking():
    time.sleep(0.15)  # PATTERN blocking: holds the loop 150 ms
    return 1


async def spawn_blocking():
    subprocess.run(["sleep", "0.12"], check=True)  # PATTERN blocking: holds the loop 120 ms
    return 2


async def fetch_polite():
    await asyncio.sleep(0.15)  # near miss: awaits, the loop is free
    return 3


async def fetch_quick():
    time.sleep(0.01)  # near miss: blocking, but 10 ms
    return 4


def sync_sleeper():
    time.sleep(0.15)  # near miss: blocking, but not in async def (and simple, though hot)
    return 5


async def gather_all():
    return [await fetch_blocking(), await spawn_blocking(), await fetch_polite(), await fetch_quick()]


def lookup(key):
    return key * 2


def n_plus_one(keys):
    out = []
    for k in keys:
        out.append(lookup(k))  # PATTERN repeated: 11 calls in one trace
    return out


def exactly_n(keys):
    out = []
    for k in keys:
        out.append(lookup(k))  # near miss: 10 calls, exactly N
    return out


def remember(item, seen=[]):  # PATTERN mutable default: the list grows between calls
    seen.append(item)
    return len(seen)


def options(key, opts={}):  # near miss: mutable default, never changed
    return opts.get(key)


def total(xs=[]):  # near miss: mutable default, callers pass their own lists
    return sum(xs)


def deep(n):  # PATTERN recursion: 25 nested calls
    if n <= 1:
        return 1
    return deep(n - 1) + 1


def shallow(n):  # near miss: 20 nested calls, exactly N
    if n <= 1:
        return 1
    return shallow(n - 1) + 1


def never_called():  # PATTERN never executed
    return 0


def second_run_only():  # near miss: runs in the second run only
    return 1


def classify(x):
    if x > 0:  # near miss: false arm taken in the second run only
        return "positive"
    return "not positive"


def mode(flag):
    if flag:  # PATTERN never executed: the false arm
        return "on"
    return "off"


def crunch(rounds):  # PATTERN hot spot: cyclomatic 10, most of the self time
    acc = 0
    for i in range(rounds):
        r = i % 9
        if r == 0:
            acc += sum(range(60000))
        elif r == 1:
            acc += sum(range(60000))
        elif r == 2:
            acc += sum(range(60000))
        elif r == 3:
            acc += sum(range(60000))
        elif r == 4:
            acc += sum(range(60000))
        elif r == 5:
            acc += sum(range(60000))
        elif r == 6:
            acc += sum(range(60000))
        elif r == 7:
            acc -= sum(range(60000))
        else:
            acc -= 1
    return acc


def complex_cold(x):  # near miss: cyclomatic 10, cheap
    if x == 0:
        return "a"
    elif x == 1:
        return "b"
    elif x == 2:
        return "c"
    elif x == 3:
        return "d"
    elif x == 4:
        return "e"
    elif x == 5:
        return "f"
    elif x == 6:
        return "g"
    elif x == 7:
        return "h"
    elif x == 8:
        return "i"
    return "j"


def main():
    parse_int("x")
    parse_int("7")
    load(__file__)
    try:
        strict("x")
    except ValueError:
        pass
    narrow("x")
    asyncio.run(gather_all())
    sync_sleeper()
    n_plus_one(list(range(11)))
    exactly_n(list(range(10)))
    remember(1)
    remember(2)
    remember(3)
    options("a")
    options("b")
    total([1])
    total([2, 3])
    total()
    deep(25)
    shallow(20)
    classify(1)
    mode(True)
    crunch(360)
    for x in range(10):
        complex_cold(x)


def second():
    second_run_only()
    classify(-1)


if sys.argv[1:] == ["second"]:
    second()
else:
    main()

"""The program the DAP test records (`execscope run --level statements`): loops, recursion, a caught
and an uncaught exception, a generator, two threads and a child process, with known values."""

import os
import subprocess
import sys
import threading


class Cart:
    def __init__(self, prices):
        self.prices = prices

    def total(self):
        t = 0
        for p in self.prices:
            t = t + p
        return t


def fact(n):
    if n <= 1:
        return 1
    r = n * fact(n - 1)
    return r


def countdown(n):
    while n > 0:
        yield n
        n -= 1


def risky(x):
    try:
        if x < 0:
            raise ValueError("negative")
        y = x * 2
    except ValueError:
        y = -1
    return y


READY = threading.Event()


def worker(k, out):
    READY.wait()
    s = 0
    for i in range(k):
        s = s + i
    out.append(s)


def checkout(carts):
    totals = []
    for c in carts:
        totals.append(c.total())
    return totals


def main():
    acc = 0
    for i in range(5):
        acc = acc + i * i
    f = fact(4)
    gen = list(countdown(3))
    caught = risky(-1)
    fine = risky(3)
    config = {"name": "shop", "sizes": [1, 2, 3]}
    totals = checkout([Cart([1, 2]), Cart([10, 20, 30])])
    out = []
    threads = [threading.Thread(target=worker, args=(k, out)) for k in (3, 4)]
    for t in threads:
        t.start()
    READY.set()
    for t in threads:
        t.join()
    if len(sys.argv) < 2:
        code = "import sys; sys.path.insert(0, sys.argv[1]); import shopfx; shopfx.main()"
        child = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), "child"],
                               check=False).returncode
    else:
        return fact(2)
    summary = (acc, f, gen, caught, fine, config["name"], totals, sorted(out), child)
    print(summary)
    return summary


if __name__ == "__main__":
    result = main()
    if len(sys.argv) < 2:
        raise RuntimeError("uncaught at the end")

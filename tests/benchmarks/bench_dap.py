"""DAP request latency on a large recording in the embedded store. Prints one JSON object.

Records a real program with `execscope run --level statements --adaptive 0` sized to about FRAMES cinema
frames (default 1M), then drives an in-process `DapSession` through real DAP frames over pipes (the
server's own read loop and framing) and measures, per request kind, the time from sending a request to
receiving its response and, for moves, the `stopped` event. Positions are spread over the whole trace
(`goto` to a random one of the goto targets of the loop body first: gotoTargets offers at most 1000
executions of a line, spread from its first to its last). Goal: every step and continue under 50 ms.

usage: python tests/benchmarks/bench_dap.py [--frames N] [--samples N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from execscope.dap.session import DapSession

PROGRAM = textwrap.dedent('''
    def step(state, i):
        if i % 3 == 0:
            state = state + i
        else:
            state = state - 1
        return state

    def main(n):
        state = 0
        for i in range(n):
            state = step(state, i)
        return state

    if __name__ == "__main__":
        import sys
        print(main(int(sys.argv[1])))
''')
FRAMES_PER_ITERATION = 7.5  # cinema frames per loop iteration, as measured (the recorder folds some events into frames)


class Client:
    """A DAP client over a pipe pair to a session served on a thread of this process."""

    def __init__(self, store_dsn: str) -> None:
        c2s_r, c2s_w = os.pipe()
        s2c_r, s2c_w = os.pipe()
        self.out = os.fdopen(c2s_w, "wb")
        self.inp = os.fdopen(s2c_r, "rb")
        session = DapSession(os.fdopen(c2s_r, "rb"), os.fdopen(s2c_w, "wb"), store_dsn)
        self.thread = threading.Thread(target=session.serve, daemon=True)
        self.thread.start()
        self.seq = 0

    def _read(self) -> dict[str, Any]:
        length = 0
        while True:
            line = self.inp.readline().strip()
            if not line:
                break
            length = int(line.split(b":")[1])
        return json.loads(self.inp.read(length))

    def request(self, command: str, args: dict[str, Any] | None = None, stop: bool = False
                ) -> tuple[dict[str, Any], dict[str, Any] | None, float]:
        """(response, stopped event or None, seconds) of one request."""
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command, "arguments": args or {}}).encode()
        t0 = time.perf_counter()
        self.out.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.out.flush()
        response = event = None
        while response is None or (stop and event is None):
            message = self._read()
            if message["type"] == "response":
                response = message
                if not message["success"]:
                    raise RuntimeError(f"{command}: {message.get('message')}")
            elif message.get("event") == "stopped":
                event = message
        return response, event, time.perf_counter() - t0


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--keep", default=None, help="build (or reuse) the store in this directory")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="execscope-bench-dap-"))
    work.mkdir(parents=True, exist_ok=True)
    store_dsn = f"chdb://{work / 'db'}"
    build_s = 0.0
    if not (work / "built").exists():
        start = time.perf_counter()
        (work / "bench_app.py").write_text(PROGRAM)
        subprocess.run([sys.executable, "-m", "execscope", "run", "--include", "bench_app", "--level", "statements",
                        "--adaptive", "0", "--store", store_dsn, "--", sys.executable, "bench_app.py",
                        str(int(args.frames / FRAMES_PER_ITERATION))], cwd=work, check=True, capture_output=True)
        (work / "built").write_text("ok")
        build_s = time.perf_counter() - start
    app = str(work / "bench_app.py")
    client = Client(store_dsn)
    times: dict[str, list[float]] = {}

    def timed(kind: str, command: str, a: dict[str, Any] | None = None, stop: bool = False
              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        response, event, seconds = client.request(command, a, stop)
        times.setdefault(kind, []).append(seconds)
        return response, event

    timed("initialize", "initialize", {"adapterID": "execscope"})
    timed("launch", "launch", {"trace": "latest"})
    timed("configurationDone", "configurationDone", {}, stop=True)
    targets = timed("gotoTargets", "gotoTargets", {"source": {"path": app}, "line": 3})[0]["body"]["targets"]
    rng = random.Random(7)
    for n in range(args.samples):
        target = rng.choice(targets)
        timed("goto", "goto", {"threadId": 1, "targetId": target["id"]}, stop=True)
        stack = timed("stackTrace", "stackTrace", {"threadId": 1})[0]["body"]["stackFrames"]
        scope = timed("scopes", "scopes", {"frameId": stack[0]["id"]})[0]["body"]["scopes"][0]
        timed("variables", "variables", {"variablesReference": scope["variablesReference"]})
        timed("evaluate", "evaluate", {"expression": "state + i * 2", "frameId": stack[0]["id"]})
        kind = ("next", "stepIn", "stepOut", "stepBack")[n % 4]
        timed(kind, kind, {"threadId": 1}, stop=True)
    timed("threads", "threads")
    timed("setBreakpoints", "setBreakpoints", {"source": {"path": app}, "breakpoints": [{"line": 4}]})
    for n in range(args.samples):
        timed("goto", "goto", {"threadId": 1, "targetId": rng.choice(targets)["id"]}, stop=True)
        timed("continue" if n % 2 == 0 else "reverseContinue", "continue" if n % 2 == 0 else "reverseContinue",
              {"threadId": 1}, stop=True)
    timed("setBreakpoints (condition)", "setBreakpoints",
          {"source": {"path": app}, "breakpoints": [{"line": 4, "condition": "i % 300 == 0"}]})
    for n in range(max(20, args.samples // 5)):
        timed("goto", "goto", {"threadId": 1, "targetId": rng.choice(targets)["id"]}, stop=True)
        timed("continue (condition)" if n % 2 == 0 else "reverseContinue (condition)",
              "continue" if n % 2 == 0 else "reverseContinue", {"threadId": 1}, stop=True)
    client.request("setBreakpoints", {"source": {"path": app}, "breakpoints": []})
    client.request("disconnect")
    client.thread.join(timeout=60)
    from execscope.queries.cinema import open_cinema
    from execscope.queries.traces import latest_trace
    from execscope.storage.store import open_store

    with open_store(store_dsn) as store:
        trace_frames = open_cinema(store, latest_trace(store) or "").total
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "cores": os.cpu_count(), "frames_requested": args.frames, "trace_frames": trace_frames,
        "loop_executions": len(targets),
        "build_seconds": round(build_s, 1), "samples": args.samples,
        "latency_ms": {kind: {"p50": percentile(s, 0.5), "p99": percentile(s, 0.99), "n": len(s)}
                       for kind, s in times.items()},
        "goal_ms": {"step_and_continue": 50},
    }, indent=1))


if __name__ == "__main__":
    main()

"""The HTML cinema on a long trace: records a program of about FRAMES frames (`execscope run --level
statements --adaptive 0`), then measures, as the user meets them: `execscope cinema TRACE --html FILE
--at MIDDLE` (a whole CLI process: store opened, index read, page written), the page's size, the time
headless Chromium takes to open it and show the first frame, and a step (a key press) in it.
Prints one JSON object.

usage: python tests/benchmarks/bench_html_cinema.py [--frames N] [--max-frames N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROGRAM = textwrap.dedent('''
    import sys

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
        print(main(int(sys.argv[1])))
''')
FRAMES_PER_ITERATION = 8  # measured: ~5.8 statement events per iteration plus a call and a return


def execscope(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execscope", *args], cwd=cwd, capture_output=True, text=True,
                          check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--max-frames", type=int, default=5000)
    parser.add_argument("--keep", default=None, help="Directory to keep (reused when it holds a recording).")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-html-"))
    root.mkdir(parents=True, exist_ok=True)
    store = f"chdb://{root / 'db'}"
    out: dict[str, object] = {}
    try:
        if not (root / "db").exists():
            (root / "long_app.py").write_text(PROGRAM)
            t = time.perf_counter()
            execscope("run", "--include", "long_app", "--level", "statements", "--adaptive", "0", "--store", store,
                      "--", sys.executable, "long_app.py", str(args.frames // FRAMES_PER_ITERATION), cwd=root)
            out["record_s"] = round(time.perf_counter() - t, 1)
        traces = json.loads(execscope("traces", "--store", store, "--format", "json", cwd=root).stdout)
        trace = next(t["trace_id"] for t in traces if t["root"] == "long_app")
        from execscope.queries.cinema import open_cinema
        from execscope.storage.store import open_store

        with open_store(store) as s:
            total = open_cinema(s, trace).total
        out["frames"] = total
        html = root / "long.html"
        t = time.perf_counter()
        execscope("cinema", trace, "--store", store, "--html", str(html), "--at", str(total // 2),
                  "--max-frames", str(args.max_frames), cwd=root)
        out["cli_html_s"] = round(time.perf_counter() - t, 2)
        out["page_kb"] = round(html.stat().st_size / 1024)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            t = time.perf_counter()
            page.goto(html.as_uri())
            page.wait_for_function("document.getElementById('where').textContent.startsWith('frame')")
            out["browser_open_s"] = round(time.perf_counter() - t, 3)
            before = page.inner_text("#where")
            t = time.perf_counter()
            page.keyboard.press("o")
            page.wait_for_function(f"document.getElementById('where').textContent !== {json.dumps(before)}")
            out["browser_step_over_ms"] = round((time.perf_counter() - t) * 1000, 1)
            browser.close()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""`execscope demo` on a fresh directory: records the shop and walks to its bug."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def test_demo_finds_the_bug_in_under_a_minute(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "execscope", "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60
    out = proc.stdout
    assert "order 4 failed: refusing to charge dev 0.23" in out
    assert "shopdemo.checkout.CheckoutError" in out
    assert "discount += 0.40" in out and "0.55" in out        # the faulty write, with its value
    assert "if customer.get(\"vip\") and discount:" in out     # the second discount's condition
    assert "execscope: stored" in proc.stderr and "imported unmodified" not in proc.stderr
    assert (tmp_path / ".execscope" / "db").is_dir()  # the default store: the README's next steps read it

    # The newcomer's next steps, as the demo prints them, show the demo's recording.
    trace_id = out.split("execscope cinema ", 1)[1].split()[0]
    traces = subprocess.run([sys.executable, "-m", "execscope", "traces", "--format", "json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert traces.returncode == 0, traces.stderr
    listed = json.loads(traces.stdout)
    assert trace_id in {row["trace_id"] for row in listed}, listed
    cinema = subprocess.run([sys.executable, "-m", "execscope", "cinema", trace_id, "--format", "text"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cinema.returncode == 0, cinema.stderr
    assert "discount += 0.40" in cinema.stdout
    assert f"execscope explain {trace_id}" in out
    explain = subprocess.run([sys.executable, "-m", "execscope", "explain", trace_id], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert explain.returncode == 0, explain.stderr
    assert "`discount` became 0.55 at pricing.py:23 by `discount += 0.40` (it was 0.15)" in explain.stdout

"""`execscope demo` on a fresh directory: records the shop and walks to its bug."""

from __future__ import annotations

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
    assert (tmp_path / ".execscope" / "demo-db").is_dir()

"""``execscope explain`` on real recordings (``execscope run --level statements``): the planted cause
of the demo and of three fixture programs, each chain checked line by line; ``--at``/``--var``;
JSON with cinema positions; and the LLM providers end to end against loopback servers speaking each
vendor's wire format (the chain always prints; a refused key or an unreachable host is one line)."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from tests.integration.test_run_cli import cli
from tests.interpreter import INT_DIV_ZERO
from tests.llm_loopback import ANSWER, Vendor

APPS = Path(__file__).resolve().parent / "explain_apps"
KEY = "sk-loopback-key-42"

DEMO = """\
Why trace TRACE failed: CheckoutError: refusing to charge dev 0.23: below the minimum
 1. CheckoutError raised at checkout.py:10 in charge: `raise CheckoutError(f"refusing to charge {customer['name']} {amount:.2f}: below the minim…`
 2.   reached because `if amount < 1.0:` at checkout.py:9 was true
 3.     `amount` = 0.23 was passed to charge by checkout at checkout.py:16: `return charge(order["customer"], amount)`
 4.       `amount` became 0.23 at checkout.py:15 from `price_order(order)`
 5.         price_order returned 0.23 at pricing.py:35: `return total`
 6.           `total` became 0.23 at pricing.py:34 from `apply_loyalty(total, order["customer"])`
 7.             apply_loyalty returned 0.23 at pricing.py:28: `return round(total, 2)`
 8.               `total` was cut twice in apply_loyalty: 1.12 → 0.504 at pricing.py:25, → 0.2268 at pricing.py:27, each by `total = total - total * discount`
 9.                 `discount` became 0.55 at pricing.py:23 by `discount += 0.40` (it was 0.15)
10.                   `discount` became 0.15 at pricing.py:21: `discount = 0.15` (a constant in the code)
11.                 `total` = 1.12 was passed to apply_loyalty by price_order at pricing.py:34: `total = apply_loyalty(total, order["customer"])`
12.                   `total` became 1.12 at pricing.py:33 from `apply_coupon(total, order.get("coupon"))`
13.                     apply_coupon returned 1.12 at pricing.py:15: `return round(total * (1 - rate), 2)`
14.                       `rate` became 0.5 at pricing.py:14: `rate = COUPONS.get(coupon, 0.0)`
15.                         `coupon` = 'HALF' was passed to apply_coupon by price_order at pricing.py:33 as `order.get("coupon")`: `total = apply_coupon(total, order.get("coupon"))`
16.                           `order` = {'id': 4, 'customer': {'name': 'dev', 'vip': True, 'years': 9}, 'lines': [('bread', 1)], 'coupon': 'HALF'} was passed to price_order by checkout at checkout.py:15: `amount = price_order(order)`
Not followed (3):
  - (depth 14) `order` = {'id': 4, 'customer': {'name': 'dev', 'vip': True, 'years': 9}, 'lines': [('bread', 1)], 'coupon': 'HALF'} was passed to checkout…
  - (depth 12) `COUPONS` became {'SAVE10': 0.1, 'HALF': 0.5} at pricing.py:3, when module shopdemo.pricing was imported: `COUPONS = {"SAVE10": 0.10, "HALF…
  - (depth 11) `total` = 2.25 was passed to apply_coupon by price_order at pricing.py:33: `total = apply_coupon(total, order.get("coupon"))`
"""

TAX = """\
Why trace TRACE failed: ValueError: total 262.5 is over the card limit
 1. ValueError raised at tax_app.py:23 in check: `raise ValueError(f"total {total} is over the card limit")`
 2.   reached because `if total > 100:` at tax_app.py:22 was true
 3.     `total` = 262.5 was passed to check by main at tax_app.py:30: `return check(total)`
 4.       `total` became 262.5 at tax_app.py:29 from `price_line(12.5, rate)`
 5.         price_line returned 262.5 at tax_app.py:18: `return add_tax(amount, rate)`
 6.           add_tax returned 262.5 at tax_app.py:14: `return amount + tax`
 7.             `tax` became 250.0 at tax_app.py:13: `tax = amount * rate`
 8.               `amount` = 12.5 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
 9.                 `amount` = 12.5 was passed to price_line by main at tax_app.py:29 as the constant `12.5`: `total = price_line(12.5, rate)`
10.               `rate` = 20 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
11.                 `rate` = 20 was passed to price_line by main at tax_app.py:29: `total = price_line(12.5, rate)`
12.                   `rate` became 20 at tax_app.py:28 from `tax_rate("toys")`
13.                     tax_rate returned 20 at tax_app.py:9: `return int(percent)`
14.                       `percent` became '20' at tax_app.py:8: `percent = TAX_TABLE.get(category, TAX_TABLE["default"])`
15.                         `category` = 'toys' was passed to tax_rate by main at tax_app.py:28 as the constant `"toys"`: `rate = tax_rate("toys")`
16.                         `TAX_TABLE` became {'food': '7', 'books': '7', 'default': '20'} at tax_app.py:4, when module tax_app was imported: `TAX_TABLE = {"food": "7", "books": "7", "default": "20"}` (a constant in the code)
"""

# the interpreter's own float sum (3.12 made sum() of floats compensated: 0.8000000000000002 before)
MEAN = repr(sum([80 / 100, 90 / 100, 70 / 100]) / 3)
SCORES = """\
Why trace TRACE failed: ValueError: mean 0.80 is not a percentage
1. ValueError raised at scores_app.py:25 in main: `raise ValueError(f"mean {mean:.2f} is not a percentage")`
2.   reached because `if mean < 1:` at scores_app.py:24 was true
3.     `mean` became MEAN at scores_app.py:23 from `average(scores)`
4.       average returned MEAN at scores_app.py:17: `return sum(scores) / len(scores)`
5.         `scores` = [0.8, 0.9, 0.7] was passed to average by main at scores_app.py:23: `mean = average(scores)`
6.           `scores` was [80, 90, 70] at scores_app.py:21 but [0.8, 0.9, 0.7] when passed to average at scores_app.py:23: changed in place by normalise (handed `scores` by summary at scores_app.py:12) with `values[i] = value / 100` at scores_app.py:7 (3 writes, the last 0.7)
7.           `scores` became [80, 90, 70] at scores_app.py:21: `scores = [80, 90, 70]` (a constant in the code)
""".replace("MEAN", MEAN)

BATCH = """\
Why trace TRACE failed: ZeroDivisionError: INT_DIV_ZERO
1. ZeroDivisionError raised at batch_app.py:21 in batches: `count = len(items) // settings.batch_size`
2.   `settings.batch_size` became 0 at batch_app.py:17, in another thread started by main at batch_app.py:27 (`worker.start()`): `settings.batch_size = size`
3.     `size` became 0 at batch_app.py:16: `size = config.get("batch_size", 0)`
4.       `config` = {'batch': 5} was passed to reload_settings when main started it at batch_app.py:27 (`worker.start()`, another thread)
5.   `items` = [0, 1, 2, 3, 4, 5, 6, 7, …32 more] was passed to batches by main at batch_app.py:29 as `list(range(40))`: `return batches(list(range(40)))`
""".replace("INT_DIV_ZERO", INT_DIV_ZERO)

# The same program recorded at the default level (calls only) and with branches: the values between
# calls are read from the code and its data flow, and the chain still reaches the planted cause.
TAX_FUNCTIONS = """\
Why trace TRACE failed: ValueError: total 262.5 is over the card limit
 1. ValueError raised at tax_app.py:23 in check: `raise ValueError(f"total {total} is over the card limit")`
 2.   `total` = 262.5 was passed to check by main at tax_app.py:30: `return check(total)`
 3.     `total` was set at tax_app.py:29 from `price_line(12.5, rate)` (price_line returned 262.5)
 4.       price_line returned 262.5 at tax_app.py:18: `return add_tax(amount, rate)`
 5.         add_tax returned 262.5 at tax_app.py:14: `return amount + tax`
 6.           `amount` = 12.5 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
 7.             `amount` = 12.5 was passed to price_line by main at tax_app.py:29 as the constant `12.5`: `total = price_line(12.5, rate)`
 8.           `tax` was set at tax_app.py:13: `tax = amount * rate` (value not recorded)
 9.             `rate` = 20 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
10.               `rate` = 20 was passed to price_line by main at tax_app.py:29: `total = price_line(12.5, rate)`
11.                 `rate` was set at tax_app.py:28 from `tax_rate("toys")` (tax_rate returned 20)
12.                   tax_rate returned 20 at tax_app.py:9: `return int(percent)`
13.                     `percent` was set at tax_app.py:8: `percent = TAX_TABLE.get(category, TAX_TABLE["default"])` (value not recorded)
14.                       `category` = 'toys' was passed to tax_rate by main at tax_app.py:28 as the constant `"toys"`: `rate = tax_rate("toys")`
15.                       `TAX_TABLE` was not written in the recording before this point (writes were not recorded: `execscope run --level statements` records them)
Note: parts of this trace were recorded without statements: values between calls are read from the code (`execscope run --level statements` records every write)
"""

TAX_BRANCHES = """\
Why trace TRACE failed: ValueError: total 262.5 is over the card limit
 1. ValueError raised at tax_app.py:23 in check: `raise ValueError(f"total {total} is over the card limit")`
 2.   reached because `if total > 100:` at tax_app.py:22 was true
 3.     `total` = 262.5 was passed to check by main at tax_app.py:30: `return check(total)`
 4.       `total` was set at tax_app.py:29 from `price_line(12.5, rate)` (price_line returned 262.5)
 5.         price_line returned 262.5 at tax_app.py:18: `return add_tax(amount, rate)`
 6.           add_tax returned 262.5 at tax_app.py:14: `return amount + tax`
 7.             `amount` = 12.5 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
 8.               `amount` = 12.5 was passed to price_line by main at tax_app.py:29 as the constant `12.5`: `total = price_line(12.5, rate)`
 9.             `tax` was set at tax_app.py:13: `tax = amount * rate` (value not recorded)
10.               `rate` = 20 was passed to add_tax by price_line at tax_app.py:18: `return add_tax(amount, rate)`
11.                 `rate` = 20 was passed to price_line by main at tax_app.py:29: `total = price_line(12.5, rate)`
12.                   `rate` was set at tax_app.py:28 from `tax_rate("toys")` (tax_rate returned 20)
13.                     tax_rate returned 20 at tax_app.py:9: `return int(percent)`
14.                       `percent` was set at tax_app.py:8: `percent = TAX_TABLE.get(category, TAX_TABLE["default"])` (value not recorded)
15.                         `category` = 'toys' was passed to tax_rate by main at tax_app.py:28 as the constant `"toys"`: `rate = tax_rate("toys")`
16.                         `TAX_TABLE` was not written in the recording before this point (writes were not recorded: `execscope run --level statements` records them)
Note: parts of this trace were recorded without statements: values between calls are read from the code (`execscope run --level statements` records every write)
"""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """The demo and the three fixture programs, recorded as a user would."""
    root = tmp_path_factory.mktemp("explain")
    store = f"chdb://{root / 'db'}"
    cli("demo", "--store", store, cwd=root)
    for app in ("tax_app", "scores_app", "batch_app"):
        shutil.copy(APPS / f"{app}.py", root / f"{app}.py")
        run = cli("run", "--include", app, "--level", "statements", "--store", store, "--", "python", f"{app}.py",
                  cwd=root, check=False)
        assert run.returncode == 1, run.stderr  # each fails with its planted cause
    traces = json.loads(cli("traces", "--store", store, "--format", "json", cwd=root).stdout)
    ids = {t["root"]: t["trace_id"] for t in traces}
    return root, store, {"demo": ids["shopdemo.__main__"], "tax": ids["tax_app"], "scores": ids["scores_app"],
                         "batch": ids["batch_app"]}


@pytest.mark.parametrize(("name", "expected"), [("demo", DEMO), ("tax", TAX), ("scores", SCORES), ("batch", BATCH)])
def test_the_chain_finds_the_planted_cause(recorded: tuple[Path, str, dict[str, str]], name: str,
                                           expected: str) -> None:
    root, store, ids = recorded
    out = cli("explain", ids[name], "--store", store, cwd=root)
    assert out.stdout.splitlines() == expected.replace("TRACE", ids[name]).splitlines()
    assert out.stderr == ""
    # --exception is the default, and the chain is deterministic
    again = cli("explain", ids[name], "--exception", "--store", store, cwd=root)
    assert again.stdout == out.stdout


def test_the_planted_causes_in_words(recorded: tuple[Path, str, dict[str, str]]) -> None:
    """The sentence naming each planted cause, as a person would look for it."""
    root, store, ids = recorded
    causes = {"demo": "`discount` became 0.55 at pricing.py:23 by `discount += 0.40` (it was 0.15)",
              "tax": "tax_rate returned 20 at tax_app.py:9: `return int(percent)`",
              "scores": "changed in place by normalise (handed `scores` by summary at scores_app.py:12) with "
                        "`values[i] = value / 100` at scores_app.py:7",
              "batch": "`settings.batch_size` became 0 at batch_app.py:17, in another thread started by main at "
                       "batch_app.py:27 (`worker.start()`)"}
    for name, cause in causes.items():
        assert cause in cli("explain", ids[name], "--store", store, cwd=root).stdout, name


def test_json_steps_name_cinema_frames(recorded: tuple[Path, str, dict[str, str]]) -> None:
    root, store, ids = recorded
    doc = json.loads(cli("explain", ids["demo"], "--format", "json", "--store", store, cwd=root).stdout)
    assert doc["trace_id"] == ids["demo"] and doc["subject"].startswith("Why trace ")
    assert [s["kind"] for s in doc["steps"][:10]] == ["exception", "condition", "argument", "write", "return",
                                                      "write", "return", "updates", "write", "write"]
    step = doc["steps"][8]
    assert (step["var"], step["value"], step["line"], step["code"]) == ("discount", "0.55", 23, "discount += 0.40")
    assert step["function"] == "shopdemo.pricing.apply_loyalty" and step["scope"] == "shopdemo.pricing:apply_loyalty"
    frame = json.loads(cli("cinema", ids["demo"], "--format", "json", "--at", str(step["frame"]), "--count", "1",
                           "--store", store, cwd=root).stdout)[0]
    assert (frame["kind"], frame["var"], frame["value"], frame["line"]) == ("assign", "discount", "0.55", 23)
    assert len(doc["left_out"]) == 3


def test_explain_a_chosen_value(recorded: tuple[Path, str, dict[str, str]]) -> None:
    root, store, ids = recorded
    doc = json.loads(cli("explain", ids["demo"], "--format", "json", "--store", store, cwd=root).stdout)
    at = doc["steps"][8]["frame"]  # the write discount = 0.55
    out = cli("explain", ids["demo"], "--at", str(at), "--max-steps", "2", "--store", store, cwd=root).stdout
    assert out.splitlines() == [
        f"Why `discount` became 0.55 at frame {at} (pricing.py:23)",
        "1. `discount` became 0.55 at pricing.py:23 by `discount += 0.40` (it was 0.15)",
        "2.   `discount` became 0.15 at pricing.py:21: `discount = 0.15` (a constant in the code)"]
    # a variable as seen at a later frame: total, at the write of its second cut
    out = cli("explain", ids["demo"], "--at", str(at + 10), "--var", "total", "--max-steps", "3", "--store", store,
              cwd=root).stdout.splitlines()
    assert out[0] == f"Why `total` was 0.2268 at frame {at + 10} (pricing.py:27 in apply_loyalty)"
    assert out[1] == ("1. `total` was cut twice in apply_loyalty: 1.12 → 0.504 at pricing.py:25, → 0.2268 at "
                      "pricing.py:27, each by `total = total - total * discount`")
    bad = cli("explain", ids["demo"], "--at", str(at), "--var", "nope", "--store", store, cwd=root, check=False)
    assert bad.returncode == 1 and "no variable 'nope' in apply_loyalty" in bad.stderr
    bad = cli("explain", ids["demo"], "--var", "total", "--store", store, cwd=root, check=False)
    assert bad.returncode == 2 and "--var needs --at FRAME" in bad.stderr
    bad = cli("explain", "0" * 32, "--store", store, cwd=root, check=False)
    assert bad.returncode == 1 and "no recorded calls for trace" in bad.stderr


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "gemini", "ollama"])
def test_a_model_streams_its_explanation_after_the_chain(recorded: tuple[Path, str, dict[str, str]],
                                                         vendor: str) -> None:
    root, store, ids = recorded
    env = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY, "EXECSCOPE_LLM_PROVIDER": vendor,
           "EXECSCOPE_LLM_MODEL": "loop-model"}
    with Vendor(vendor) as server:
        base = server.url + ("/v1" if vendor == "openai" else "")
        out = cli("explain", ids["tax"], "--base-url", base, "--store", store, cwd=root, env=env)
    chain = TAX.replace("TRACE", ids["tax"])
    assert out.stdout == f"{chain}\n{vendor} (loop-model):\n{ANSWER}\n"
    assert KEY not in out.stdout + out.stderr
    (request,) = server.requests
    body = json.dumps(request["body"])
    prompt = {"openai": lambda b: b["messages"][1]["content"], "ollama": lambda b: b["messages"][1]["content"],
              "anthropic": lambda b: b["messages"][0]["content"],
              "gemini": lambda b: b["contents"][0]["parts"][0]["text"]}[vendor](request["body"])
    assert "tax_rate returned 20 at tax_app.py:9: `return int(percent)`" in prompt  # the chain
    assert "   9      return int(percent)" in prompt  # the source slice, as recorded
    assert "`percent` defined at line 8 reaches line 9" in prompt  # the data flow around it
    assert 'def tax_rate(category, token=<redacted>):' in prompt  # redacted on the way out
    assert "tok-live-9f8e7d6c" not in body


@pytest.mark.parametrize("vendor", ["openai", "anthropic", "gemini"])
def test_a_refused_key_is_one_line_and_the_chain_still_prints(recorded: tuple[Path, str, dict[str, str]],
                                                              vendor: str) -> None:
    root, store, ids = recorded
    env = {"OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": KEY, "GEMINI_API_KEY": KEY}
    with Vendor(vendor, status=401) as server:
        base = server.url + ("/v1" if vendor == "openai" else "")
        out = cli("explain", ids["scores"], "--provider", vendor, "--model", "m", "--base-url", base,
                  "--store", store, cwd=root, env=env, check=False)
    assert out.returncode == 1
    assert out.stdout == SCORES.replace("TRACE", ids["scores"]) + f"\n{vendor} (m):\n"
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"execscope: {vendor}: the API key was refused by 127.0.0.1:")
    assert line.endswith("(the chain above needs no model)") and KEY not in line


def test_an_unreachable_model_or_a_missing_key_is_one_line(recorded: tuple[Path, str, dict[str, str]]) -> None:
    root, store, ids = recorded
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = cli("explain", ids["batch"], "--provider", "ollama", "--model", "m", "--base-url",
              f"http://127.0.0.1:{port}", "--store", store, cwd=root, check=False)
    assert out.returncode == 1 and out.stdout.startswith(BATCH.replace("TRACE", ids["batch"]))
    assert out.stderr.splitlines() == [f"execscope: ollama: cannot reach 127.0.0.1:{port}: [Errno 111] Connection "
                                       "refused (the chain above needs no model)"]
    out = cli("explain", ids["batch"], "--provider", "anthropic", "--model", "m", "--store", store, cwd=root,
              env={"ANTHROPIC_API_KEY": "", "EXECSCOPE_LLM_API_KEY": ""}, check=False)
    assert out.returncode == 1 and out.stdout.startswith(BATCH.replace("TRACE", ids["batch"]))
    assert out.stderr.splitlines() == ["execscope: anthropic: no API key: set ANTHROPIC_API_KEY (or "
                                       "EXECSCOPE_LLM_API_KEY) (the chain above needs no model)"]


@pytest.mark.parametrize(("level", "expected"), [("functions", TAX_FUNCTIONS), ("branches", TAX_BRANCHES)])
def test_a_recording_without_statements_still_leads_to_the_cause(tmp_path: Path, level: str, expected: str) -> None:
    shutil.copy(APPS / "tax_app.py", tmp_path / "tax_app.py")
    store = f"chdb://{tmp_path / 'db'}"
    run = cli("run", "--include", "tax_app", "--level", level, "--store", store, "--", "python", "tax_app.py",
              cwd=tmp_path, check=False)
    assert run.returncode == 1, run.stderr
    (trace,) = json.loads(cli("traces", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    out = cli("explain", trace["trace_id"], "--store", store, cwd=tmp_path).stdout
    assert out.splitlines() == expected.replace("TRACE", trace["trace_id"]).splitlines()


LOOP_APP = """\
def accumulate(n):
    total = 0
    for i in range(n):
        total += i % 7 - 3
    return total


def main():
    total = accumulate(25000)
    if total != 0:
        raise ValueError(f"unbalanced: {total}")


if __name__ == "__main__":
    main()
"""


def test_a_long_loop_is_one_step_and_a_call_over_the_event_limit_says_so(tmp_path: Path) -> None:
    (tmp_path / "loop_app.py").write_text(LOOP_APP)
    store = f"chdb://{tmp_path / 'db'}"
    run = cli("run", "--include", "loop_app", "--level", "statements", "--store", store, "--", "python",
              "loop_app.py", cwd=tmp_path, check=False)
    assert run.returncode == 1, run.stderr
    (trace,) = json.loads(cli("traces", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    out = cli("explain", trace["trace_id"], "--store", store, cwd=tmp_path).stdout.splitlines()
    assert out[1:5] == [
        "1. ValueError raised at loop_app.py:11 in main: `raise ValueError(f\"unbalanced: {total}\")`",
        "2.   reached because `if total != 0:` at loop_app.py:10 was true",
        "3.     `total` became -6 at loop_app.py:9 from `accumulate(25000)`",  # 7 * 3571 + (-3 - 2 - 1)
        "4.       accumulate returned -6 at loop_app.py:5: `return total`"]
    assert re.fullmatch(r"5\.         `total` was updated \d+ times in accumulate: 0 → -3 at loop_app\.py:4, → -5 at "
                        r"loop_app\.py:4, … \d+ more …, → -?\d+ at loop_app\.py:4, → -?\d+ at loop_app\.py:4, each by "
                        r"`total \+= i % 7 - 3`", out[5]), out[5]
    assert out[-1].startswith("Note: accumulate ran ") and out[-1].endswith(
        "more statements/writes than were recorded (the recorder's per-call limit or events budget): steps in it "
        "are the latest recorded ones, not necessarily the last it made")
    assert len(out) < 14


CAUGHT_APP = """\
def parse(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    return value


def main():
    return parse("12") + parse("x")


if __name__ == "__main__":
    main()
"""


def test_an_exception_caught_where_it_was_raised(tmp_path: Path) -> None:
    """A trace that did not fail: the exception its own frame caught is the one explained."""
    (tmp_path / "caught_app.py").write_text(CAUGHT_APP)
    store = f"chdb://{tmp_path / 'db'}"
    cli("run", "--include", "caught_app", "--level", "statements", "--store", store, "--", "python", "caught_app.py",
        cwd=tmp_path)
    (trace,) = json.loads(cli("traces", "--store", store, "--format", "json", cwd=tmp_path).stdout)
    out = cli("explain", trace["trace_id"], "--store", store, cwd=tmp_path).stdout
    assert out.splitlines() == [
        f"Why trace {trace['trace_id']} raised ValueError (caught in parse): invalid literal for int() with base 10: 'x'",
        "1. ValueError raised at caught_app.py:3 in parse (and caught there): `value = int(text)`",
        "2.   `text` = 'x' was passed to parse by main at caught_app.py:10 as the constant `\"x\"`: "
        "`return parse(\"12\") + parse(\"x\")`"]

"""``execscope demo``: record the bundled shop example and walk to its bug with the recorded data.

The example (``shopdemo``) is copied to ``.execscope/demo/`` and run exactly as a user would run
their own program (``execscope run --include 'shopdemo*' --level statements -- python -m
shopdemo``); the summary is made only of queries anyone can run afterwards with ``execscope sql``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import click

from execscope.output import print_rows
from execscope.recording import RunOptions, describe, run_recorded
from execscope.storage.store import StoreError, open_store

DEMO_SOURCE = Path(__file__).resolve().parent / "shopdemo"

CALLS_SQL = """
SELECT SpanName AS function, count() AS calls, countIf(StatusCode = 'STATUS_CODE_ERROR') AS errors,
       round(avg(Duration) / 1000, 1) AS avg_us
FROM otel_traces WHERE ServiceName = {service:String} AND SpanName LIKE 'shopdemo.%'
GROUP BY SpanName ORDER BY calls DESC, function
"""

FAILURES_SQL = """
SELECT failed.TraceId AS trace_id, caller.SpanAttributes['execscope.arg.order'] AS order_arg,
       failed.StatusMessage AS error,
       toUInt64(caller.SpanAttributes['execscope.seq']) AS from_seq,
       toUInt64(caller.SpanAttributes['execscope.seq.end']) AS to_seq
FROM otel_traces AS failed
INNER JOIN otel_traces AS caller ON caller.TraceId = failed.TraceId AND caller.SpanId = failed.ParentSpanId
WHERE failed.ServiceName = {service:String} AND failed.StatusCode = 'STATUS_CODE_ERROR'
  AND failed.SpanName = 'shopdemo.checkout.charge'
ORDER BY failed.Timestamp
"""

NODES = """(SELECT t.node_id AS node_id, any(t.line) AS line, any(s.code) AS code FROM cpg_nodes AS t
             LEFT JOIN cpg_nodes AS s ON s.node_id = t.parent_id GROUP BY t.node_id)"""

HISTORY_SQL = f"""
SELECT e.Seq AS seq, e.SpanName AS function, n.line AS line, e.VarName AS variable, e.VarValue AS value,
       n.code AS statement
FROM execscope_events AS e
LEFT JOIN {NODES} AS n ON n.node_id = e.NodeId
WHERE e.TraceId = {{trace:String}} AND e.Seq BETWEEN {{from_seq:UInt64}} AND {{to_seq:UInt64}}
  AND e.EventName = 'execscope.assign' AND startsWith(e.SpanName, 'shopdemo.pricing.')
ORDER BY e.Seq
"""

BRANCH_SQL = """
SELECT e.Seq AS seq, n.line AS line, n.code AS branch_taken
FROM execscope_events AS e
LEFT JOIN (SELECT node_id, any(line) AS line, any(code) AS code FROM cpg_nodes GROUP BY node_id) AS n
    ON n.node_id = replaceRegexpOne(e.NodeId, '\\\\.(true|false)$', '')
WHERE e.TraceId = {trace:String} AND e.Seq BETWEEN {from_seq:UInt64} AND {to_seq:UInt64}
  AND e.EventName = 'execscope.branch' AND e.SpanName = 'shopdemo.pricing.apply_loyalty'
  AND endsWith(e.NodeId, '.true')
ORDER BY e.Seq
"""


def run_demo(store_dsn: str | None, level: str = "statements") -> int:
    started = time.monotonic()
    workdir = Path(".execscope") / "demo"
    target = workdir / "shopdemo"
    if target.exists():
        shutil.rmtree(target)
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__"))
    try:  # the store every other command reads by default, so a newcomer's next step shows the demo
        store = open_store(store_dsn)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    service = f"shopdemo-{int(time.time())}"
    store_flag = f" --store {store.address}" if store_dsn else ""
    try:
        click.secho("$ execscope run --include 'shopdemo*' --level statements -- python -m shopdemo",
                    bold=True, err=True)
        command = [sys.executable, "-m", "shopdemo"]
        import os

        old_path = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(workdir.resolve()), old_path) if p)
        try:
            returncode, report = run_recorded(command, RunOptions(include=("shopdemo", "shopdemo.*"),
                                                                  level=level, service=service), store)
        finally:
            if old_path is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_path
        click.echo(describe(report, store), err=True)
        click.echo(f"(the program exited with {returncode}: some orders failed)\n")

        click.secho("Every call, from the recording:", bold=True)
        calls = store.query(CALLS_SQL, {"service": service})
        print_rows(calls.column_names, calls.rows, "table")

        failures = store.query(FAILURES_SQL, {"service": service})
        click.secho("\nWhich checkouts failed, and why:", bold=True)
        print_rows(failures.column_names, failures.rows, "table")
        if failures.rows:
            trace_id, _order, _error, from_seq, to_seq = failures.rows[0]
            window = {"trace": trace_id, "from_seq": from_seq, "to_seq": to_seq}
            click.secho(f"\nEvery value the pricing code wrote for that order (trace {trace_id}, "
                        f"seq {from_seq}..{to_seq}), in order:", bold=True)
            history = store.query(HISTORY_SQL, window)
            print_rows(history.column_names, history.rows, "table")
            click.secho("\nThe conditions apply_loyalty found true for that order:", bold=True)
            branches = store.query(BRANCH_SQL, window)
            print_rows(branches.column_names, branches.rows, "table")
            click.echo(
                "\nThe bug: apply_loyalty adds 0.40 (not 0.04) for long-standing customers and applies the"
                "\ndiscount a second time for VIPs, so a VIP of 9 years pays 23 cents. The recording shows"
                "\n`discount` going 0.15 -> 0.55 and `total` being cut twice, with the line of each write.")
            click.echo(f"\nStep through that order forwards and backwards, with every variable:"
                       f"\n  execscope cinema {trace_id}{store_flag}"
                       f"\nOr have the chain of values that led to the failure traced for you:"
                       f"\n  execscope explain {trace_id}{store_flag}")
        click.echo(f"\nNext: every recorded trace:  execscope traces{store_flag}"
                   f"\n      the hottest functions:   execscope query hot-nodes{store_flag}"
                   f"\n      any question in SQL:     execscope sql \"SELECT ... FROM otel_traces\"{store_flag}")
        click.echo(f"(demo finished in {time.monotonic() - started:.1f}s)")
    finally:
        store.close()
    return 0


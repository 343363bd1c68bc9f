"""What `execscope run` costs before (and after) the program's first recorded call: plain vs
recorded-nothing wall time of one program, side by side in one run, and where the difference goes.
Prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_fixed_cost.py [--runs 7] [--fresh-store]
    .venv/bin/python tests/benchmarks/bench_fixed_cost.py --cwd SRC --include 'toolz' --include 'toolz.*' \\
        -- python -m pytest -q -p no:cacheprovider -W ignore::pytest.PytestAssertRewriteWarning toolz/tests

(toolz turns warnings into errors; the ``-W`` is needed with ``--against`` only, where execscope's
pytest plugin comes from ``PYTHONPATH`` and pytest warns that it was imported before it could be
rewritten.) With ``PYTHONDONTWRITEBYTECODE`` set, compile each tree first (``python -m compileall``):
else every process compiles execscope from source, and that is what gets measured.

The program (default ``python -c pass``) runs under a plan that records nothing (``[default] level =
"off"``), so every second above plain is fixed cost; with ``--plan FILE`` under that plan instead
(its rewrites cached after the first run), so the phases say where a plan's own cost goes. Three
variants run interleaved, ``--runs`` times each, and the median of each figure is printed:

* ``plain``: the program alone;
* ``recorded``: ``python -m execscope run --plan OFF.toml --store chdb://... -- PROGRAM`` (a warm store: opened
  once before the first run; with ``--fresh-store`` a new store each run, the first-run path);
* ``child``: the program alone with the environment ``execscope run`` gives it (the bootstrap records
  into a spool nobody drains): what the child costs by itself.

``--against DIR`` (a source tree of another execscope version with its extensions built, e.g. main's:
``git archive main | tar -x -C DIR`` plus the ``.so`` files) runs ``recorded`` and ``child`` once more
with DIR first on ``PYTHONPATH``, interleaved with the others, and prints its phases too: a
before/after from one run on the same load.

Timestamps come from ``execscope plan``'s stamping ``sitecustomize``
(:func:`execscope.plan_runs.stamping_folder`, which chains to the program's own), put on
``PYTHONPATH`` behind the bootstrap's (which chains to it): ``start`` when the interpreter hands over
to the program (after execscope's bootstrap), ``end`` at the program's exit (an ``atexit`` handler registered before the
program's own, after execscope's, so it runs before execscope's final flush). With ``t0`` just before
the benchmark starts a process and ``t1`` once it has exited:

* ``parent_to_spawn``: recorded (start - t0) - child (start - t0): `execscope run`'s start until the
  child is spawned;
* ``child_start_extra``: child (start - t0) - plain (start - t0): the bootstrap;
* ``child_exit_extra``: child (t1 - end) - plain (t1 - end): the final flush, and the interpreter
  finalizing the modules recording loaded;
* ``child_exit_to_parent_exit``: recorded (t1 - end) - child (t1 - end): final drain, report, store
  close, interpreter and engine teardown;
* ``fixed``: recorded - plain outside the program's body (before its start and after its end): the
  four phases above, without the body's run-to-run noise;
* ``overhead``: recorded total - plain total (``fixed`` plus what the body costs more: rewritten
  modules, and the noise of a loaded machine); ``ratio``: recorded total / plain total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OFF_PLAN = '[default]\nlevel = "off"\n'


def timed(cmd: list[str], env: dict[str, str], cwd: str, stamp_file: Path) -> dict[str, float]:
    from execscope.plan_runs import ENV_STAMPS, read_stamps

    env = {**env, ENV_STAMPS: str(stamp_file)}
    t0 = time.time_ns()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t1 = time.time_ns()
    if proc.returncode != 0 and "pytest" not in " ".join(cmd):
        raise SystemExit(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    body = read_stamps(str(stamp_file))
    stamp_file.unlink(missing_ok=True)
    if body is None:
        raise SystemExit(f"{cmd} left no start and end stamps: not a Python program?")
    start, end = body
    return {k: v / 1e9 for k, v in {"total": t1 - t0, "to_start": start - t0, "body": end - start,
                                    "after_end": t1 - end}.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cwd", default=None, help="where the program runs (default: a temporary directory)")
    parser.add_argument("--include", action="append", default=None, help="globs given to execscope run")
    parser.add_argument("--fresh-store", action="store_true", help="a new store for every recorded run")
    parser.add_argument("--plan", default=None, metavar="FILE",
                        help="run recorded under this plan instead of one recording nothing (rewrites cached "
                             "after the first run): where a plan's own cost goes")
    parser.add_argument("--against", default=None, metavar="DIR", help="another execscope source tree to compare")
    parser.add_argument("command", nargs="*", help="the program (default: python -c pass)")
    args = parser.parse_args()

    from execscope.instrumentation.export.spool import Spool
    from execscope.plan_runs import stamping_folder
    from execscope.recording import BOOTSTRAP_DIR, RunOptions, child_environment

    python = sys.executable
    command = args.command or ["python", "-c", "pass"]
    command = [python if c in ("python", "python3") else c for c in command]
    include = args.include or ["bench_nothing_here"]
    execscope = [python, "-m", "execscope"]  # the same in every tree (the console script is this tree's)
    with tempfile.TemporaryDirectory(prefix="bench-fixed-") as tmp:
        work = Path(tmp)
        stamp_dir = stamping_folder(str(work))
        plan = work / "off.toml"
        plan.write_text(Path(args.plan).read_text(encoding="utf-8") if args.plan else OFF_PLAN)
        cwd = args.cwd or str(work)
        stamp_file = work / "t"
        base_env = dict(os.environ)
        base_env.pop("EXECSCOPE_SPOOL", None)
        base_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(stamp_dir), base_env.get("PYTHONPATH", "")) if p)
        store = work / "db"
        if not args.fresh_store:  # warm: created and migrated once
            subprocess.run([*execscope, "run", "--plan", str(plan), "--store", f"chdb://{store}",
                            *[f"--include={g}" for g in include], "--", python, "-c", "pass"],
                           env=base_env, check=True, capture_output=True)
        child_spool = work / "child.spool"
        options = RunOptions(include=include, plan=str(plan), adaptive=0)
        child_env = child_environment(options, Spool(child_spool), command)
        child_env["PYTHONPATH"] = os.pathsep.join((BOOTSTRAP_DIR, base_env["PYTHONPATH"]))  # bootstrap first
        trees = {"": (base_env, child_env)}
        if args.against:
            other = str(Path(args.against).resolve())
            other_env = {**base_env, "PYTHONPATH": os.pathsep.join((other, base_env["PYTHONPATH"]))}
            other_child = {**child_env, "PYTHONPATH": os.pathsep.join(
                (str(Path(other) / "execscope" / "bootstrap"), other_env["PYTHONPATH"]))}
            trees["_against"] = (other_env, other_child)
        results: dict[str, list[dict[str, float]]] = {"plain": []}
        for i in range(args.runs):
            results["plain"].append(timed(command, base_env, cwd, stamp_file))
            for suffix, (env, c_env) in trees.items():
                dsn = f"chdb://{work / f'db{i}{suffix}'}" if args.fresh_store else f"chdb://{store}"
                results.setdefault("recorded" + suffix, []).append(timed(
                    [*execscope, "run", "--plan", str(plan), "--store", dsn, *[f"--include={g}" for g in include],
                     "--", *command], env, cwd, stamp_file))
                results.setdefault("child" + suffix, []).append(timed(command, c_env, cwd, stamp_file))
                shutil.rmtree(child_spool, ignore_errors=True)
                if args.fresh_store:
                    shutil.rmtree(work / f"db{i}{suffix}", ignore_errors=True)
                    shutil.rmtree(work / f"db{i}{suffix}.spool", ignore_errors=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in results[variant])

    med = {v: {k: round(median(v, k), 4) for k in ("total", "to_start", "body", "after_end")} for v in results}
    def phases(suffix: str) -> dict[str, float]:
        rec, child, plain = med["recorded" + suffix], med["child" + suffix], med["plain"]
        return {k: round(v, 4) for k, v in {
            "parent_to_spawn": rec["to_start"] - child["to_start"],
            "child_start_extra": child["to_start"] - plain["to_start"],
            "child_exit_extra": child["after_end"] - plain["after_end"],
            "child_exit_to_parent_exit": rec["after_end"] - child["after_end"],
            "fixed": rec["to_start"] - plain["to_start"] + rec["after_end"] - plain["after_end"],
            "overhead": rec["total"] - plain["total"],
            "ratio": rec["total"] / plain["total"],
        }.items()}

    report = {"command": command, "runs": args.runs, "fresh_store": args.fresh_store, "median_s": med,
              "phases_s": phases("")}
    if args.against:
        report["against"] = args.against
        report["phases_s_against"] = phases("_against")
    print(json.dumps(report, indent=1))

if __name__ == "__main__":
    main()

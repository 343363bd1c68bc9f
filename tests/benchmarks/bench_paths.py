"""Path prediction measured: held-out accuracy and NLL, and mutants flagged by unusual-paths.

usage: python tests/benchmarks/bench_paths.py [--store chdb:///path/db] [--order 2] [--workdir DIR]
       [--max-thresholds 2,1.5,2.5,3] [--mean-thresholds 1,1.5,2,2.5] [--narrow]

1. Held-out prediction, split by test. Without ``--store`` the fixture's own pytest suite
   (tests/integration/paths_apps) is recorded at ``--level branches`` (one trace per test); with
   ``--store`` an existing recording is used (e.g. toolz's suite, kept by
   ``tests/realworld/realworld.sh toolz --level branches --keep``). Tests are split by a hash of their
   name (test spans ``test <nodeid>``; every trace when there are none) into 2/3 training, 1/3
   held out; the order-k model learned on the training tests predicts the arm taken at each decision of
   the held-out tests. Printed: per-decision accuracy against the majority-arm baseline and NLL per
   decision (nats) against the unigram baseline (both the order-0 model of the same training runs).
2. Mutants (fixture only): every single-comparison flip of the fixture's core.py (``<`` to ``<=``
   and to ``>``, ``==`` to ``!=``, ...) has its suite recorded under its own service; unusual-paths
   learns from the original runs and flags the traces holding a call whose score reaches a
   threshold (``rank=max``: the surprise, -log p, of its least probable decision; ``rank=mean``: its
   NLL per decision); every trace is scored without the original run of its own test. Printed per
   threshold: recall (mutants with a flagged trace among those whose paths differ from the
   original's on some test) and precision (flagged changed mutant traces / those plus flagged
   original traces).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from execscope.queries.paths import CallPath, PathModel, evaluate, load_decisions, load_paths  # noqa: E402
from execscope.storage.store import open_store  # noqa: E402
from tests.integration.paths_mutants import CORE, detect, mutants, record_suite  # noqa: E402

TESTS_SQL = "SELECT DISTINCT TraceId, SpanName FROM otel_traces WHERE startsWith(SpanName, 'test ')"


def held_out(store_dsn: str, order: int, service: str = "") -> None:
    with open_store(store_dsn) as store:
        decisions = load_decisions(store)
        paths = [p for p in load_paths(store) if not service or p.service == service]
        test_of = dict(store.query(TESTS_SQL).rows)
    def part(p: CallPath) -> int:
        name = test_of.get(p.trace_id, p.trace_id)
        return int(hashlib.sha1(name.encode()).hexdigest(), 16) % 3
    train = [p for p in paths if part(p) != 0]
    test = [p for p in paths if part(p) == 0]
    n_tests = len({p.trace_id for p in paths})
    print(f"calls {len(paths)} in {n_tests} traces; {len(decisions)} arms of decisions; "
          f"train {len(train)} calls, held out {len(test)} calls")
    t0 = time.perf_counter()
    model = PathModel(decisions, order).fit(train)
    base = PathModel(decisions, 0).fit(train)
    ours, baseline = evaluate(model, test), evaluate(base, test)
    print(f"held-out decisions {ours.decisions} (fit + evaluate {time.perf_counter() - t0:.2f} s)")
    print(f"  accuracy       order-{order} {ours.accuracy:.4f}   majority-arm baseline {baseline.accuracy:.4f}")
    print(f"  NLL/decision   order-{order} {ours.nll_per_decision:.4f}   unigram baseline      "
          f"{baseline.nll_per_decision:.4f}")


def mutant_detection(root: Path, thresholds: dict[str, list[float]], order: int, wide: bool) -> None:
    store_dsn = f"chdb://{root / 'db'}"
    found = mutants(CORE.read_text(), wide=wide)
    t0 = time.perf_counter()
    for i, m in enumerate(found):
        if not (root / f"m{i}").exists():  # kept from an earlier run with the same --workdir
            record_suite(root, store_dsn, f"m{i}", m.source)
    print(f"mutants {len(found)} recorded in {time.perf_counter() - t0:.1f} s")
    services = [f"m{i}" for i in range(len(found))]
    with open_store(store_dsn) as store:
        for rank, values in thresholds.items():
            label = "NLL per decision" if rank == "mean" else "max surprise"
            for threshold in values:
                d = detect(store, services, threshold, order, rank)
                print(f"  {label} >= {threshold:4.2f} nats: recall {d.recall:.3f} ({d.detected} of the "
                      f"{d.changed} mutants that changed a path; {d.mutants} mutants)   precision {d.precision:.3f} "
                      f"({d.flagged_mutant_traces} of {d.mutant_traces} changed mutant traces, "
                      f"{d.flagged_original_traces} of {d.original_traces} original traces flagged)")
        rank, values = next(iter(thresholds.items()))
        print(f"  per mutant, rank={rank} at {values[0]:.2f}:")
        for i, m in enumerate(found):
            one = detect(store, [f"m{i}"], values[0], order, rank)
            state = "flagged" if one.detected else "missed " if one.changed else "no path changed"
            print(f"    {state:15} {m.name}  ({one.flagged_mutant_traces} of {one.mutant_traces} changed traces)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="an existing recording (held-out prediction only)")
    ap.add_argument("--order", type=int, default=2)
    ap.add_argument("--max-thresholds", default="2,1.5,2.5,3", help="rank=max: surprise of the least probable decision")
    ap.add_argument("--mean-thresholds", default="1,1.5,2,2.5", help="rank=mean: NLL per decision")
    ap.add_argument("--workdir", help="keep recordings here (reused when present) instead of a temporary directory")
    ap.add_argument("--narrow", action="store_true", help="one flip per comparison (default: two)")
    args = ap.parse_args()
    if args.store:
        held_out(args.store, args.order)
        return 0
    thresholds = {"max": [float(t) for t in args.max_thresholds.split(",")],
                  "mean": [float(t) for t in args.mean_thresholds.split(",")]}
    with tempfile.TemporaryDirectory(prefix="bench_paths_") as tmp:
        root = Path(args.workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        store_dsn = f"chdb://{root / 'db'}"
        t0 = time.perf_counter()
        if not (root / "orig").exists():
            record_suite(root, store_dsn, "orig")
        print(f"fixture suite recorded in {time.perf_counter() - t0:.1f} s")
        held_out(store_dsn, args.order, "orig")
        mutant_detection(root, thresholds, args.order, not args.narrow)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Static analysis speed: lines analysed per second per core, next to the parsers alone, on the
same files in one run; plus memory across a large project (streamed per file). Prints one JSON object.

usage: python tests/benchmarks/bench_analyze.py [DIR ...]   (default: toolz + more-itertools if
       unpacked under /tmp/execscope-eval/src, else the standard library's top-level modules)
"""

from __future__ import annotations

import ast
import glob
import json
import os
import resource
import sys
import time
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from execscope.instrumentation.analysis.cpg import build_module_cpg
from execscope.instrumentation.nodes.node_ids import assign_node_ids, name_nodes
from execscope.project_analysis import analyse_file, module_name

EVAL = ["/tmp/execscope-eval/src/toolz-1.2.0/toolz", "/tmp/execscope-eval/src/more_itertools-11.2.1/more_itertools"]


def corpus(dirs: list[str]) -> list[tuple[str, str]]:
    files: list[tuple[str, str]] = []
    for d in dirs:
        for path in sorted(glob.glob(d + "/**/*.py", recursive=True)):
            try:
                source = Path(path).read_text(encoding="utf-8")
                ast.parse(source)
                cst.parse_module(source)
            except Exception:
                continue
            files.append((path, source))
    return files


def timed(fn, files) -> float:
    start = time.process_time()  # CPU time of this one process: per core
    for path, source in files:
        fn(path, source)
    return time.process_time() - start


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    dirs = sys.argv[1:] or [d for d in EVAL if os.path.isdir(d)] or [os.path.dirname(ast.__file__)]
    files = corpus(dirs)
    lines = sum(s.count("\n") + 1 for _, s in files)
    stages = {
        "ast_parse": lambda p, s: ast.parse(s),
        "libcst_parse": lambda p, s: cst.parse_module(s),
        "libcst_parse_positions": lambda p, s: MetadataWrapper(cst.parse_module(s)).resolve(PositionProvider),
        "node_ids_libcst_reference": lambda p, s: assign_node_ids(s, module_name(Path(p)), p),
        "node_ids": lambda p, s: name_nodes(s, module_name(Path(p)), p),
        "full_cpg": lambda p, s: build_module_cpg(s, module_name(Path(p)), p),
    }
    seconds = {name: timed(fn, files) for name, fn in stages.items()}
    per_s = {name: round(lines / t) for name, t in seconds.items()}
    # memory: stream a large project file by file (the stdlib), RSS sampled as it goes
    stdlib = sorted(glob.glob(os.path.dirname(ast.__file__) + "/**/*.py", recursive=True))
    big, big_lines, samples = [], 0, []
    for path in stdlib:
        if "/test" in path or "site-packages" in path:
            continue
        big.append(path)
        big_lines += Path(path).read_bytes().count(b"\n")
        if big_lines > 100_000:
            break
    start_rss = rss_mb()
    for i, path in enumerate(big):
        analyse_file(path, module_name(Path(path)))
        if i % max(1, len(big) // 4) == 0:
            samples.append(round(rss_mb(), 1))
    print(json.dumps({
        "cores": os.cpu_count(), "files": len(files), "lines": lines, "dirs": dirs,
        "lines_per_second_per_core": per_s,
        "ratios": {"full_cpg_vs_ast_parse": round(seconds["ast_parse"] / seconds["full_cpg"], 3),
                   "full_cpg_vs_libcst_parse": round(seconds["libcst_parse"] / seconds["full_cpg"], 3),
                   "full_cpg_vs_libcst_parse_positions": round(
                       seconds["libcst_parse_positions"] / seconds["full_cpg"], 3)},
        "memory": {"project_lines": big_lines, "project_files": len(big), "rss_mb_start": round(start_rss, 1),
                   "rss_mb_samples": samples, "rss_mb_end": round(rss_mb(), 1)},
    }))


if __name__ == "__main__":
    main()

"""Started in every Python process under ``execscope run`` (this folder is put on PYTHONPATH).

Turns recording on from the environment, then runs the ``sitecustomize`` this one shadows, if any.
Never lets an execscope failure stop the program: it says so on stderr and the program runs plain.
"""

import os
import sys


def _start() -> None:
    try:
        from execscope.instrumentation.process_bootstrap import start_from_environment

        start_from_environment()
    except Exception as exc:  # e.g. an interpreter without execscope installed
        sys.stderr.write(f"execscope: not recording in process {os.getpid()}: {type(exc).__name__}: {exc}\n")


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        import importlib.machinery
        import importlib.util

        others = [p for p in sys.path if os.path.abspath(p or ".") != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.stderr.write(f"execscope: the program's own sitecustomize failed: {exc}\n")


if os.environ.get("EXECSCOPE_SPOOL") or os.environ.get("EXECSCOPE_KAFKA"):
    _start()
_chain()

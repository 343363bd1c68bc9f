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


if os.environ.get("EXECSCOPE_SPOOL") or os.environ.get("EXECSCOPE_KAFKA"):
    _start()
from _execscope_chain import run_shadowed_sitecustomize  # noqa: E402  (this folder's: no execscope needed)

run_shadowed_sitecustomize(os.path.dirname(os.path.abspath(__file__)))

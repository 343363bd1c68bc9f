"""Runs the ``sitecustomize`` that one of execscope's shadows.

execscope puts folders holding a ``sitecustomize`` of its own first on ``PYTHONPATH``: the recording
bootstrap (this folder, see ``sitecustomize.py`` here) and ``execscope plan``'s stamping one
(:mod:`execscope.plan_runs`, which copies this file beside it). Each then runs the one it shadows,
through this module, imported from its folder: it needs no installed execscope (a program may start
an interpreter that has none), and the program's own ``sitecustomize`` runs as without execscope.
"""

import os
import sys


def run_shadowed_sitecustomize(here: str) -> None:
    """Run the first ``sitecustomize`` on ``sys.path`` after the folder ``here`` (anywhere but ``here``
    when ``here`` is not on it), if there is one. Its failure is said on stderr, never raised: the
    program runs on, as it would have without it, and the reason is said."""
    try:
        import importlib.machinery
        import importlib.util

        here = os.path.abspath(here)
        paths = [os.path.abspath(p or ".") for p in sys.path]
        if here in paths:
            after = sys.path[paths.index(here) + 1:]  # not the ones before it: they ran this one
        else:
            after = [p for p, a in zip(sys.path, paths) if a != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", after)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    except Exception as exc:
        sys.stderr.write(f"execscope: the program's own sitecustomize failed: {exc}\n")

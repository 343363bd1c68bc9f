"""Run a script as ``__main__`` with its own code rewritten: ``python -m ... main_script app.py args``.

A script given to ``python app.py`` is compiled by the interpreter directly, never imported, so the
import hook cannot see it. ``execscope run`` starts such commands through this module instead, which
does what the interpreter would (``sys.argv``, ``sys.path[0]``, a fresh ``__main__``) with the
rewritten code. Node IDs use the script's stem as module name (``app:main``), the name the same file
has when imported. If recording is off or the script is not included, it runs unmodified.
"""

from __future__ import annotations

import builtins
import os
import sys
import types


def run_script(path: str, argv: list[str]) -> None:
    from execscope.instrumentation.rewrite import import_hook

    with open(path, "rb") as f:
        source_bytes = f.read()
    stem = os.path.splitext(os.path.basename(path))[0]
    code = None
    finder = import_hook.installed()
    if finder is not None and (finder.wants(stem) or finder.wants("__main__")):
        try:
            code = finder._code_for(stem, os.path.abspath(path), source_bytes)
        except Exception as exc:
            import_hook.warn_unmodified("__main__", path, f"{type(exc).__name__}: {exc}")
    if code is None:
        code = compile(source_bytes, path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    main.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    sys.argv = [path, *argv]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    exec(code, main.__dict__)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m execscope.instrumentation.rewrite.main_script SCRIPT [ARGS...]")
    run_script(sys.argv[1], sys.argv[2:])

"""The import hook: which modules it takes, the cache, and bad input that must not break imports."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from execscope.instrumentation import instrument, uninstrument
from execscope.instrumentation.rewrite import rewriter
from execscope.instrumentation.rewrite.import_hook import ExecscopeWarning, HookConfig, InstrumentingFinder


@pytest.fixture
def pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "src"
    (root / "hookpkg").mkdir(parents=True)
    (root / "hookpkg" / "__init__.py").write_text("from .core import double\n")
    (root / "hookpkg" / "core.py").write_text(textwrap.dedent('''
        """Core."""
        def double(x):
            return x * 2

        def where():
            return __file__
    '''))
    (root / "hookpkg" / "broken.py").write_text("def f(:\n    pass\n")
    (root / "hookpkg" / "skipped.py").write_text("def g():\n    return 1\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    uninstrument()
    for name in [m for m in sys.modules if m.startswith("hookpkg")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_rewrites_included_modules_and_records(pkg: Path, recorder) -> None:
    nodes = []
    finder = instrument(["hookpkg", "hookpkg.*"], exclude=["hookpkg.skipped"], level="statements",
                        tracer_provider=recorder.provider, node_sink=nodes.append)
    import hookpkg
    import hookpkg.core
    import hookpkg.skipped

    assert hookpkg.double(21) == 42
    assert hookpkg.core.where() == str(pkg / "hookpkg" / "core.py") == hookpkg.core.__file__
    assert hookpkg.core.__doc__ == "Core."
    assert set(finder.state.instrumented) == {"hookpkg", "hookpkg.core"}
    assert "_execscope_rt" not in vars(hookpkg.skipped)
    assert {n.module for n in nodes} == {"hookpkg", "hookpkg.core"}
    spans = [s.name for s in recorder.get_finished_spans()]
    assert "hookpkg.core.double" in spans


def test_a_plan_recording_nothing_in_a_module_leaves_it_unparsed(pkg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from execscope.instrumentation.rewrite.plan import parse_plan

    parsed: list[str] = []
    real = rewriter.rewrite_source
    monkeypatch.setattr(rewriter, "rewrite_source", lambda source, module, *a, **k: (
        parsed.append(module), real(source, module, *a, **k))[1])
    plan = parse_plan('[default]\nlevel = "off"\n[[rule]]\nmatch = "hookpkg.core:double"\nlevel = "functions"\n')
    finder = InstrumentingFinder(HookConfig(include=["hookpkg", "hookpkg.*"], exclude=[], level=1, plan=plan,
                                            cache=False))
    where = [str(pkg / "hookpkg")]
    assert finder.find_spec("hookpkg.skipped", where) is None  # every function off: the stock loader's
    unplanned = InstrumentingFinder(HookConfig(include=["hookpkg", "hookpkg.*"], exclude=[], level=1, cache=False))
    assert unplanned.find_spec("hookpkg.skipped", where) is not None  # without the plan it is taken
    spec = finder.find_spec("hookpkg.core", where)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert parsed == ["hookpkg.core"] and module.double(4) == 8 and "_execscope_rt" in vars(module)


def test_a_rewritten_module_runs_no_import_of_ours(pkg: Path, recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    # click's own suite checks what importing click imports by replacing builtins.__import__
    import builtins

    seen: list[str] = []
    real_import = builtins.__import__

    def tracking_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        if globals and str(globals.get("__name__", "")).startswith("hookpkg"):
            seen.append(name)
        return real_import(name, globals, locals, fromlist, level)

    instrument(["hookpkg", "hookpkg.*"], level="statements", tracer_provider=recorder.provider, cache=False)
    monkeypatch.setattr(builtins, "__import__", tracking_import)
    import hookpkg.core

    monkeypatch.setattr(builtins, "__import__", real_import)
    assert hookpkg.core.double(4) == 8 and vars(hookpkg.core)["_execscope_rt"].__name__.endswith("capture.runtime")
    assert "hookpkg.core.double" in [s.name for s in recorder.get_finished_spans()]
    assert not [name for name in seen if "execscope" in name], seen


def test_cache_is_written_and_reused(pkg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # PYTHONDONTWRITEBYTECODE is honoured
    finder = instrument(["hookpkg.core"], level="branches")
    import hookpkg.core  # noqa: F401

    cache = list((pkg / "hookpkg" / "__pycache__").glob("core.*-execscope-*-L2.pyc"))
    assert len(cache) == 1
    assert finder.state.cache_hits == 0
    del sys.modules["hookpkg.core"]
    importlib.import_module("hookpkg.core")
    assert finder.state.cache_hits == 1
    # a changed source misses the cache
    del sys.modules["hookpkg.core"]
    (pkg / "hookpkg" / "core.py").write_text("def double(x):\n    return x + x\n")
    importlib.invalidate_caches()
    mod = importlib.import_module("hookpkg.core")
    assert finder.state.cache_hits == 1 and mod.double(2) == 4


def test_a_plan_rewritten_ahead_is_served_from_the_cache(pkg: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from execscope.instrumentation.nodes.node_ids import code_version_of
    from execscope.instrumentation.rewrite.import_hook import unchanged, warm_cache
    from execscope.instrumentation.rewrite.plan import parse_plan

    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    plan = parse_plan('[default]\nlevel = "off"\n[[rule]]\nmatch = "hookpkg.core:double"\nlevel = "functions"\n')
    core, skipped = str(pkg / "hookpkg" / "core.py"), str(pkg / "hookpkg" / "skipped.py")
    version = code_version_of((pkg / "hookpkg" / "core.py").read_bytes())
    assert unchanged(core, version) and not unchanged(core, "0" * 16) and not unchanged(str(pkg / "gone.py"), version)
    assert not warm_cache("hookpkg.core", core, plan, "0" * 16)  # another version than the recorded one
    assert not warm_cache("hookpkg.skipped", skipped, plan)  # nothing recorded in it: left as written
    assert not warm_cache("hookpkg.broken", str(pkg / "hookpkg" / "broken.py"), parse_plan(""))  # not Python
    assert warm_cache("hookpkg.core", core, plan, version)
    finder = InstrumentingFinder(HookConfig(include=["hookpkg", "hookpkg.*"], plan=plan))
    spec = finder.find_spec("hookpkg.core", [str(pkg / "hookpkg")])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert finder.state.cache_hits == 1 and module.double(5) == 10 and "_execscope_rt" in vars(module)


def test_without_bytecode_writing_the_cache_is_in_the_user_cache(pkg: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # PYTHONDONTWRITEBYTECODE: source trees untouched
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    finder = instrument(["hookpkg.core"], level="branches")
    import hookpkg.core  # noqa: F401

    assert not (pkg / "hookpkg" / "__pycache__").exists()
    assert len(list((tmp_path / "user-cache" / "execscope" / "rewrite").glob("*-core.*-execscope-*-L2.pyc"))) == 1
    del sys.modules["hookpkg.core"]
    importlib.import_module("hookpkg.core")
    assert finder.state.cache_hits == 1


def test_never_execscope_dependencies_or_stdlib(tmp_path: Path) -> None:
    finder = InstrumentingFinder(HookConfig(include=["*"]))
    assert not finder.wants("execscope.instrumentation.capture.runtime")
    assert not finder.wants("opentelemetry.trace")
    # what only execscope's own commands use is a package like any other (click's and jinja2's suites)
    assert finder.wants("click.core") and finder.wants("jinja2.environment") and finder.wants("markupsafe")
    import json

    assert finder.find_spec("json.decoder", json.__path__) is None  # stdlib
    with_stdlib = InstrumentingFinder(HookConfig(include=["json*"], stdlib=True))
    assert with_stdlib.find_spec("json.decoder", json.__path__) is not None


def test_failed_rewrite_imports_unmodified_with_one_warning(pkg: Path, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise RuntimeError("rewrite failed")

    monkeypatch.setattr(rewriter, "rewrite_source", explode)
    instrument(["hookpkg.core"], cache=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import hookpkg.core
    assert hookpkg.core.double(2) == 4
    messages = [str(w.message) for w in caught if issubclass(w.category, ExecscopeWarning)]
    assert len(messages) == 1 and "hookpkg.core" in messages[0] and "rewrite failed" in messages[0]


def test_warning_never_raises_even_when_warnings_are_errors(pkg: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(rewriter, "rewrite_source", lambda *a, **k: 1 / 0)
    instrument(["hookpkg.core"], cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        import hookpkg.core
    assert hookpkg.core.double(3) == 6
    assert "imported unmodified" in capsys.readouterr().err


def test_syntax_errors_raise_exactly_as_without_execscope(pkg: Path) -> None:
    with pytest.raises(SyntaxError) as plain:
        importlib.import_module("hookpkg.broken")
    sys.modules.pop("hookpkg.broken", None)
    instrument(["hookpkg.*"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no execscope warning either
        with pytest.raises(SyntaxError) as rewritten:
            importlib.import_module("hookpkg.broken")
    assert (rewritten.value.lineno, rewritten.value.msg) == (plain.value.lineno, plain.value.msg)


def test_file_vanishing_between_find_and_load_behaves_as_plain(pkg: Path) -> None:
    finder = InstrumentingFinder(HookConfig(include=["hookpkg.skipped"]))
    spec = finder.find_spec("hookpkg.skipped", [str(pkg / "hookpkg")])
    assert spec is not None
    os.unlink(pkg / "hookpkg" / "skipped.py")
    with pytest.raises(FileNotFoundError):
        spec.loader.get_code("hookpkg.skipped")


def test_uninstrument_is_idempotent(pkg: Path) -> None:
    instrument(["hookpkg"])
    uninstrument()
    uninstrument()
    assert not any(isinstance(f, InstrumentingFinder) for f in sys.meta_path)


def test_one_file_under_two_names_gets_ids_under_each(pkg: Path, monkeypatch: pytest.MonkeyPatch,
                                                      recorder) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.syspath_prepend(str(pkg / "hookpkg"))  # hookpkg/core.py is also top-level "core"
    nodes = []
    instrument(["hookpkg.core", "core"], tracer_provider=recorder.provider, node_sink=nodes.append)
    import hookpkg.core

    sys.modules.pop("core", None)
    import core  # type: ignore[import-not-found]

    try:
        assert core.double(2) == hookpkg.core.double(2) == 4
        assert {n.module for n in nodes} == {"hookpkg.core", "core"}
        node_ids = {s.attributes["execscope.node_id"] for s in recorder.get_finished_spans()}
        assert node_ids == {"hookpkg.core:double", "core:double"}
    finally:
        sys.modules.pop("core", None)


FORMS = '''
import asyncio

def leaf(a, b=1):
    if a:
        return a or b
    raise ValueError(a)

def outer(xs):
    def inner(x):
        return x
    return [inner(x) for x in xs]

def gen(n):
    got = yield n
    yield from range(got or 0)

async def coro(x):
    await asyncio.sleep(0)
    return x

def safe(x):
    try:
        return 1 // x
    except ZeroDivisionError:
        return 0

def scopes(xs, k: int | None = None) -> bool or None:
    z: xs or k = 1
    return [x for x in (xs or [k])], (lambda v=(k or 0): v)
'''


def test_the_cache_magic_names_the_rewritten_form() -> None:
    # Cached rewrites are trusted by their magic: a rewritten form that changes while the magic does
    # not makes old caches call hooks the runtime no longer pairs (seen: an interim form's cache left
    # every frame open and lost the calls). Changing the form means bumping _CACHE_MAGIC and this.
    import ast
    import hashlib

    from execscope.instrumentation.rewrite import import_hook

    text = "\n".join(ast.unparse(rewriter.rewrite_source(FORMS, "m", "m.py", level, code_version="v")[0])
                     for level in (1, 2, 3))
    assert (import_hook._CACHE_MAGIC, hashlib.sha256(text.encode()).hexdigest()[:16]) == (
        b"ESCOPE10\n", "465778d945a71b81")

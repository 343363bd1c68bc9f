"""Post-import hooks: patches of modules a program may never import wait for their import, and apply
whether the module is imported before recording starts or after."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap

import pytest

from execscope.instrumentation import post_import
from execscope.instrumentation.rewrite import import_hook
from execscope.instrumentation.rewrite.import_hook import HookConfig


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A folder on sys.path to write modules into; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()

    yield write
    for name in set(sys.modules) - before:
        if name.startswith("es_pi_"):
            del sys.modules[name]


def test_a_hook_waits_for_the_import_and_patches_before_the_import_returns(modules) -> None:
    modules("es_pi_later", "VALUE = 1\n")
    seen = []

    def hook(module) -> None:
        seen.append(module.VALUE)
        module.VALUE = 2

    post_import.when_imported("es_pi_later", hook)
    assert seen == [] and "es_pi_later" in post_import.waiting()
    from es_pi_later import VALUE  # type: ignore[import-not-found]

    assert seen == [1] and VALUE == 2  # ran after the module's code, before the import returned
    module = sys.modules["es_pi_later"]
    assert type(module.__loader__) is importlib.machinery.SourceFileLoader  # the module's own loader
    assert module.__spec__.loader is module.__loader__
    assert "es_pi_later" not in post_import.waiting()
    importlib.reload(module)
    assert seen == [1]  # once


def test_a_module_imported_before_gets_its_hook_at_once(modules) -> None:
    modules("es_pi_before", "VALUE = 1\n")
    import es_pi_before  # type: ignore[import-not-found]

    post_import.when_imported("es_pi_before", lambda m: setattr(m, "VALUE", 3))
    assert es_pi_before.VALUE == 3 and "es_pi_before" not in post_import.waiting()


def test_a_failing_hook_or_module_never_breaks_the_program(modules) -> None:
    modules("es_pi_hookfails", "VALUE = 1\n")
    post_import.when_imported("es_pi_hookfails", lambda m: 1 / 0)
    import es_pi_hookfails  # type: ignore[import-not-found]  # the hook's error is swallowed

    assert es_pi_hookfails.VALUE == 1
    modules("es_pi_broken", "raise ImportError('broken on purpose')\n")
    post_import.when_imported("es_pi_broken", lambda m: setattr(m, "PATCHED", True))
    with pytest.raises(ImportError, match="broken on purpose"):
        import es_pi_broken  # type: ignore[import-not-found]  # noqa: F401
    assert "es_pi_broken" in post_import.waiting()  # still waiting: the next import that works
    modules("es_pi_broken", "VALUE = 1\n")
    import es_pi_broken  # type: ignore[import-not-found]  # noqa: F811

    assert es_pi_broken.PATCHED is True
    post_import.when_imported("es_pi_missing", lambda m: None)
    with pytest.raises(ModuleNotFoundError):  # a module that does not exist fails as before
        import es_pi_missing  # type: ignore[import-not-found]  # noqa: F401


def test_the_rewriting_hook_put_in_front_later_still_rewrites_the_module(modules) -> None:
    modules("es_pi_rewritten", "def f(x):\n    return x + 1\n")
    seen = []
    post_import.when_imported("es_pi_rewritten", lambda m: seen.append(m.f(1)))
    finder = import_hook.install(HookConfig(include=("es_pi_rewritten",)))
    try:
        assert sys.meta_path[0] is finder  # in front of the post-import finder
        import es_pi_rewritten  # type: ignore[import-not-found]  # noqa: F401
    finally:
        import_hook.uninstall()
    assert "es_pi_rewritten" in finder.state.instrumented and seen == [2]


CHILD = """
import json, sys
BEFORE = sys.argv[1] == "before"
DEFERRED = ("http.client", "opentelemetry.instrumentation.utils", "tracemalloc")
if BEFORE:
    import asyncio, http.client, tracemalloc
    import opentelemetry.instrumentation.utils
from execscope.instrumentation.process_bootstrap import start_from_environment
assert start_from_environment()
loaded_at_start = sorted(m for m in (*DEFERRED, "asyncio", "wrapt") if m in sys.modules)
import asyncio, concurrent.futures, http.client, tracemalloc
from opentelemetry.instrumentation.utils import _start_internal_or_server_span
from execscope.instrumentation.capture import thread_context
print(json.dumps({
    "loaded_at_start": loaded_at_start,
    "asyncio": asyncio.base_events.BaseEventLoop.create_task is thread_context._create_task,
    "thread_pool": concurrent.futures.ThreadPoolExecutor.submit is thread_context._submit,
    "http_client": getattr(http.client.HTTPConnection.getresponse, "_execscope", False),
    "server_spans": getattr(_start_internal_or_server_span, "__execscope__", False),
    "tracemalloc": getattr(tracemalloc.start, "__execscope__", False),
}))
"""


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_recording_process_patches_the_modules_it_imports_after_or_before_it_starts(tmp_path, when) -> None:
    env = {**os.environ, "EXECSCOPE_SPOOL": str(tmp_path / "spool"), "EXECSCOPE_INCLUDE": "es_pi_nothing"}
    out = subprocess.run([sys.executable, "-c", CHILD, when], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    loaded = result.pop("loaded_at_start")
    if when == "after":
        assert loaded == []  # recording started without them (nor asyncio, wrapt)
    else:
        assert {"http.client", "opentelemetry.instrumentation.utils", "tracemalloc", "asyncio"} <= set(loaded)
    assert result == {"http_client": True, "server_spans": True, "tracemalloc": True, "asyncio": True,
                      "thread_pool": True}


def test_recording_still_pauses_for_tracemalloc_started_before_it(tmp_path) -> None:
    script = ("from execscope.instrumentation.process_bootstrap import start_from_environment\n"
              "from execscope.instrumentation.capture import fast_capture\n"
              "assert start_from_environment()\n"
              "print(fast_capture._state.paused)\n")
    env = {**os.environ, "EXECSCOPE_SPOOL": str(tmp_path / "spool"), "EXECSCOPE_INCLUDE": "es_pi_nothing"}
    out = subprocess.run([sys.executable, "-X", "tracemalloc", "-c", script], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]



def test_a_hook_still_waiting_after_uninstall_patches_nothing() -> None:
    script = ("import sys\n"
              "from execscope.instrumentation.capture import thread_context\n"
              "thread_context.install()\n"
              "thread_context.uninstall()\n"
              "assert 'asyncio' not in sys.modules\n"
              "import asyncio\n"
              "print(asyncio.base_events.BaseEventLoop.create_task is thread_context._create_task)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]

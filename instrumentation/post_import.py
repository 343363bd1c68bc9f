"""Run a function once a module is imported: now if it already is, else right after its import.

Recording patches a few modules a program may never use (``http.client`` for the clock carried on
responses, ``opentelemetry.instrumentation.utils`` for server spans, ``tracemalloc``, thread pools
and asyncio for causal chains); importing them at start cost every process ~30 ms before its first
line. :func:`when_imported` defers such a patch
to the module's own import.

How: a finder first on ``sys.meta_path`` answers only for the names waited for. It asks every other
finder for the spec (every one, not only those after it, so that a finder put in front of it later,
such as the rewriting import hook, still serves the module: see :meth:`_Finder.find_spec`), and
wraps the spec's loader so that the waiting functions run once the module has executed, before the
``import`` statement returns: code importing from the module later sees the patched names. The
module's ``__loader__`` and ``__spec__.loader`` stay the original loader.

Hand-written rather than wrapt's ``register_post_import_hook``: importing wrapt loads asyncio, which
is part of what this defers. Never raises into the program: a failing hook is logged (debug) and
the module is imported as usual.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

Hook = Callable[[ModuleType], None]

_log = logging.getLogger("execscope")
_lock = threading.Lock()
_waiting: dict[str, list[Hook]] = {}
_finder: _Finder | None = None


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` once module ``name`` is imported: at once when it is in ``sys.modules``
    already, else on the thread importing it, right after the module's code has run (a hook
    already waiting for ``name`` is not added twice). Thread-safe; never raises (a hook's exception
    is logged and swallowed)."""
    global _finder
    module = sys.modules.get(name)
    if module is None:
        with _lock:
            module = sys.modules.get(name)  # imported meanwhile?
            if module is None:
                hooks = _waiting.setdefault(name, [])
                if hook not in hooks:  # installed twice before the import: applied once
                    hooks.append(hook)
                if _finder is None:
                    _finder = _Finder()
                if _finder not in sys.meta_path:
                    sys.meta_path.insert(0, _finder)
                return
    _call(hook, module)


def waiting() -> list[str]:
    """The modules whose hooks have not run yet (for tests and reports)."""
    with _lock:
        return sorted(_waiting)


def _call(hook: Hook, module: ModuleType) -> None:
    try:
        hook(module)
    except Exception:
        _log.debug("execscope: post-import hook %r of %s failed", hook, module.__name__, exc_info=True)


def _take(name: str) -> list[Hook]:
    with _lock:
        return _waiting.pop(name, [])


def spec_from_other_finders(finder: object, local: threading.local, fullname: str,
                             path: Sequence[str] | None, target: ModuleType | None) -> Any:
    """The spec the finders on ``sys.meta_path`` other than ``finder`` give ``fullname`` (None: none
    does, or one raised), asked with ``local.busy`` set so that ``finder``, asked again by one of
    them, declines: how a meta-path finder that only wraps a loader finds the module."""
    local.busy = True
    try:
        for other in list(sys.meta_path):
            if other is finder or not hasattr(other, "find_spec"):
                continue
            spec = other.find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None
    except Exception:
        return None
    finally:
        local.busy = False


class _Finder:
    """The ``sys.meta_path`` finder of :func:`when_imported` (duck-typed: ``importlib.abc`` costs
    an import of its own)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> Any:
        if fullname not in _waiting or getattr(self._local, "busy", False):
            return None
        # Every other finder is asked, the ones in front of this one too: a finder put first later
        # (the rewriting import hook) asks the others itself, this one included, and refuses a
        # loader it does not know; it then answers here with its own spec, which is wrapped.
        spec = spec_from_other_finders(self, self._local, fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # not found (the import fails as usual), or a legacy loader: left alone
        spec.loader = _ChainedLoader(spec.loader, fullname)  # duck-typed Loader
        return spec


class _ChainedLoader:
    """The module's own loader, then the hooks waiting for it; everything else is the original's."""

    def __init__(self, loader: Any, name: str) -> None:
        self.loader = loader
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.loader, attr)

    def create_module(self, spec: Any) -> Any:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.loader is self:
            spec.loader = self.loader
        self.loader.exec_module(module)
        for hook in _take(self.name):
            _call(hook, module)

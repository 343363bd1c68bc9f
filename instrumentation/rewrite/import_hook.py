"""The ``sys.meta_path`` finder and loader that serve rewritten modules.

A module is rewritten when its name matches an ``include`` glob and no ``exclude`` glob, it is plain
Python source found by the other finders on ``sys.meta_path``, it is not execscope or one of the
libraries execscope itself runs on, and it is outside the standard library (unless
``stdlib=True``), and, under a plan, something in it may be recorded (:meth:`.Plan.may_record`: a
module whose every function is ``off`` is not parsed at all). Everything else is left to the normal
import system, untouched.

The rewritten code object is cached next to the normal bytecode, like pytest's assertion rewriting:
``__pycache__/<name>.<tag>-execscope-<version>-<level>.pyc``, keyed by the source hash. When
``PYTHONDONTWRITEBYTECODE`` asks for source trees to stay untouched, the cache lives in the user
cache instead (``$XDG_CACHE_HOME/execscope/rewrite/``): rewriting costs several times a compile,
paid again by every process otherwise.

Errors: a module that cannot be parsed or rewritten is imported unmodified with
one warning naming it. A module Python itself cannot compile raises exactly what it raised before.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import sysconfig
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType

from execscope import __version__
from execscope.instrumentation.capture import runtime as _runtime  # noqa: F401  (publishes _execscope_rt)
from execscope.instrumentation.export.spool import write_atomic
from execscope.instrumentation.nodes.node_ids import ModuleNodes, NodeInfo, code_version_of
from execscope.instrumentation.post_import import spec_from_other_finders
from execscope.instrumentation.rewrite.globs import matches
from execscope.instrumentation.rewrite.plan import Plan

NEVER_INSTRUMENT = (
    "execscope", "opentelemetry", "libcst", "clickhouse_connect", "chdb", "kafka", "google.protobuf",
    "typing_extensions", "importlib_metadata", "zipp", "wrapt", "deprecated",
    "_pytest", "pytest", "pluggy", "execnet", "xdist",
)
"""What a recording process itself runs (execscope, the OTel SDK and exporters, the store clients, the
pytest plugin's host): never rewritten, whatever ``--include`` says. Libraries only execscope's own
commands use (click for the CLI, jinja2 and markupsafe for the HTML cinema) are not here: they never
run in a recorded process on execscope's behalf, and their users record them like any package."""
_CACHE_MAGIC = b"ESCOPE10\n"  # bumped whenever the rewritten form changes


class ExecscopeWarning(UserWarning):
    """A module could not be instrumented and was imported unmodified."""


@dataclass(frozen=True)
class HookConfig:
    include: Sequence[str]
    exclude: Sequence[str] = ()
    level: int = 1
    stdlib: bool = False
    cache: bool = True
    plan: Plan | None = None
    """Per-function levels and rates (``level`` is then unused); see :mod:`.plan`."""


@dataclass
class HookState:
    """What the hook did in this process (read by reports and tests)."""

    instrumented: dict[str, str] = field(default_factory=dict)   # module -> code_version
    skipped: dict[str, str] = field(default_factory=dict)        # module -> reason
    cache_hits: int = 0


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.normcase(os.path.realpath(paths[k])) + os.sep for k in ("stdlib", "platstdlib")
                 if paths.get(k))


def _site_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(os.path.normcase(os.path.realpath(paths[k])) + os.sep for k in ("purelib", "platlib")
                 if paths.get(k))


def _never(name: str) -> bool:
    return any(name == n or name.startswith(n + ".") for n in NEVER_INSTRUMENT)


def warn_unmodified(fullname: str, path: str, reason: str) -> None:
    """One warning naming the module; never raises, even under ``-W error``."""
    message = f"execscope: module {fullname} ({path}) imported unmodified: {reason}"
    try:
        warnings.warn(message, ExecscopeWarning, stacklevel=2)
    except Exception:
        try:
            sys.stderr.write(f"warning: {message}\n")
        except Exception:
            pass


NodeSink = Callable[[ModuleNodes], object]


class InstrumentingLoader(importlib.machinery.SourceFileLoader):
    """A ``SourceFileLoader`` whose code is the rewritten module; everything else is inherited."""

    def __init__(self, fullname: str, path: str, finder: InstrumentingFinder) -> None:
        super().__init__(fullname, path)
        self._finder = finder

    def get_code(self, fullname: str) -> CodeType | None:
        try:
            source_bytes = self.get_data(self.path)
        except OSError:
            return super().get_code(fullname)
        try:
            return self._finder._code_for(fullname, self.path, source_bytes)
        except Exception as exc:
            try:
                code = super().get_code(fullname)
            except Exception:
                raise  # Python cannot compile it either: behave exactly as without execscope
            self._finder.state.skipped[fullname] = f"{type(exc).__name__}: {exc}"
            warn_unmodified(fullname, self.path, f"{type(exc).__name__}: {exc}")
            return code


class InstrumentingFinder:  # a sys.meta_path finder (importlib.abc costs ~3 ms at every start)
    """Put first on ``sys.meta_path`` by :func:`install`; see the module docstring."""

    def __init__(self, config: HookConfig, node_sink: NodeSink | None = None) -> None:
        self.config = config
        self.node_sink = node_sink
        self.state = HookState()
        self._local = threading.local()
        self._stdlib = _stdlib_dirs()
        self._site = _site_dirs()

    def wants(self, fullname: str) -> bool:
        return (matches(fullname, self.config.include) and not matches(fullname, self.config.exclude)
                and not _never(fullname))

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if not self.wants(fullname) or getattr(self._local, "busy", False):
            return None
        if self.config.plan is not None and not self.config.plan.may_record(fullname):
            return None  # nothing in it is recorded: loaded as written, by the stock loader and its cache
        spec = spec_from_other_finders(self, self._local, fullname, path, target)
        # Exactly the stock loader: a subclass may transform the source itself (another import hook).
        if (spec is None or not spec.origin or not spec.origin.endswith(".py")
                or type(spec.loader) is not importlib.machinery.SourceFileLoader):
            return None
        if not self.config.stdlib and self._in_stdlib(spec.origin):
            return None
        spec.loader = InstrumentingLoader(fullname, spec.origin, self)
        return spec

    def _in_stdlib(self, origin: str) -> bool:
        real = os.path.normcase(os.path.realpath(origin))
        return real.startswith(self._stdlib) and not real.startswith(self._site)

    # --- code --------------------------------------------------------------------------------
    def _code_for(self, fullname: str, path: str, source_bytes: bytes) -> CodeType:
        code, nodes, hit = code_for(fullname, path, source_bytes, self.config.level, self.config.plan,
                                    self.config.cache)
        self.state.cache_hits += hit
        self.state.instrumented[fullname] = nodes.code_version
        if self.node_sink is not None:
            try:
                self.node_sink(nodes)
            except Exception as exc:  # a failing sink must not fail the import
                warn_unmodified(fullname, path, f"node rows not published ({exc})")
        return code


def code_for(fullname: str, path: str, source_bytes: bytes, level: int, plan: Plan | None,
             cache: bool = True) -> tuple[CodeType, ModuleNodes, bool]:
    """(rewritten code, node rows, whether the cache had them) of module ``fullname`` at ``path``;
    rewritten, and cached when ``cache``, unless the cache has them. Raises what parsing or rewriting
    raises (the caller imports the module unmodified)."""
    version = code_version_of(source_bytes)
    cache_path = _cache_path(path, f"P{plan.digest()}" if plan is not None else level)
    key = _cache_key(version, fullname, path)
    cached = _read_cache(cache_path, key) if cache else None
    if cached is not None:
        code, rows = cached
        return code, ModuleNodes(module=fullname, file=path, code_version=version,
                                 nodes=[NodeInfo(*row) for row in rows]), True
    from execscope.instrumentation.rewrite import rewriter  # not needed on cache hits

    source = importlib.util.decode_source(source_bytes)
    tree, nodes, _stats = rewriter.rewrite_source(source, fullname, path, level, version, plan)
    code = _compile(tree, path)
    if cache:
        _write_cache(cache_path, key, code, nodes)
    return code, nodes, False


def unchanged(path: str, code_version: str) -> bool:
    """Does the file at ``path`` hold that version of its module (as recorded in a CPG)?"""
    try:
        with open(path, "rb") as f:
            return code_version_of(f.read()) == code_version
    except OSError:
        return False


def warm_cache(fullname: str, path: str, plan: Plan, code_version: str | None = None) -> bool:
    """Rewrite module ``fullname`` (the file at ``path``) under ``plan`` into the rewrite cache ahead of
    a run, so that the run's import finds it there (for an interpreter with this one's cache tag and
    bytecode setting). ``code_version``: only if the file still holds that version of the module.
    False, with nothing written, when the file cannot be read, holds another version, is not Python
    this interpreter parses, or the plan records nothing in it."""
    if not plan.may_record(fullname):
        return False
    try:
        with open(path, "rb") as f:
            source_bytes = f.read()
        if code_version is not None and code_version_of(source_bytes) != code_version:
            return False
        code_for(fullname, path, source_bytes, 1, plan)
    except Exception:  # a module it cannot rewrite is imported unmodified by the run, as always
        return False
    return True


def _compile(tree: ast.Module, path: str) -> CodeType:
    return compile(tree, path, "exec", dont_inherit=True)


def _cache_path(source_path: str, level: int | str) -> str:
    directory, filename = os.path.split(source_path)
    stem = filename.rsplit(".", 1)[0]
    name = f"{stem}.{sys.implementation.cache_tag}-execscope-{__version__}-L{level}.pyc"
    if not sys.dont_write_bytecode:
        return os.path.join(directory, "__pycache__", name)
    where = hashlib.sha1(os.fsencode(directory)).hexdigest()[:16]
    user_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(user_cache, "execscope", "rewrite", f"{where}-{name}")


def _cache_key(version: str, fullname: str, path: str) -> bytes:
    """Source hash, module name and path: node IDs embed the name, INFO constants the path, so a
    file imported under another name or moved is rewritten again."""
    return _CACHE_MAGIC + importlib.util.MAGIC_NUMBER + f"{version}\0{fullname}\0{path}\0".encode(
        "utf-8", "surrogateescape")


def _read_cache(cache_path: str, header: bytes) -> tuple[CodeType, tuple] | None:
    try:
        with open(cache_path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data.startswith(header):
        return None
    try:
        code, rows = marshal.loads(data[len(header):])
    except Exception:
        return None
    return code, rows


def _write_cache(cache_path: str, header: bytes, code: CodeType, nodes: ModuleNodes) -> None:
    rows = tuple(tuple(getattr(n, f) for f in NodeInfo.__slots__) for n in nodes.nodes)
    directory, name = os.path.split(cache_path)
    write_atomic(Path(directory), name, header + marshal.dumps((code, rows)))


_installed: InstrumentingFinder | None = None
_lock = threading.Lock()


def install(config: HookConfig, node_sink: NodeSink | None = None) -> InstrumentingFinder:
    """Put an instrumenting finder first on ``sys.meta_path`` (replacing a previous one)."""
    global _installed
    with _lock:
        uninstall()
        finder = InstrumentingFinder(config, node_sink)
        sys.meta_path.insert(0, finder)
        _installed = finder
        return finder


def uninstall() -> None:
    """Remove the finder. Modules already imported stay as they are (rewritten or not)."""
    global _installed
    finder, _installed = _installed, None
    if finder is not None:
        try:
            sys.meta_path.remove(finder)
        except ValueError:
            pass


def installed() -> InstrumentingFinder | None:
    return _installed

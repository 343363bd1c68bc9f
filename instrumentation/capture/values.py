"""Safe, bounded representations of captured values.

Contract: :func:`safe_repr` never raises, never runs user code by default, and returns at most
``limits.max_chars`` characters. Builtin scalars and containers are rendered by execscope itself (so
an element's ``__repr__`` is never reached through ``list.__repr__``); objects of other types are
shown as ``<module.Type object at 0x...>`` unless their type's ``__repr__`` is implemented in C
(datetime, Decimal, ...), or unless user reprs are explicitly allowed (``EXECSCOPE_USER_REPR=1``),
in which case a raising ``__repr__`` is caught and shown as ``<Type: repr raised ValueError>``.

Secrets (see :mod:`.redaction`, the policy): a value whose name looks like a secret is
``<redacted>`` (:func:`capture`), and so is, at every depth the renderer walks, a dict value under
such a key, a namedtuple or namespace field of such a name and the value of a ``(name, value)``
pair; text holding a known secret format (keys, tokens, URL passwords, card numbers, ...) has that
part replaced by ``<redacted:KIND>``: str and bytes leaves, large ints, reprs of other types,
exception messages. The C renderer applies the same policy (:func:`use_policy` hands it over).
"""

from __future__ import annotations

import builtins
import collections
import os
import re
import types
from dataclasses import dataclass
from typing import Any

from execscope.instrumentation.capture import redaction
from execscope.instrumentation.capture.redaction import REDACTED, SCAN_SLACK, Policy

SECRET_NAME = re.compile(f"(?i)({redaction.DEFAULT_NAMES})")  # the built-in names (the policy may add more)
_policy: Policy = redaction.POLICY


@dataclass(frozen=True, slots=True)
class ReprLimits:
    max_chars: int = 256
    max_items: int = 8
    max_depth: int = 3
    user_repr: bool = False


DEFAULT_LIMITS = ReprLimits(
    max_chars=int(os.environ.get("EXECSCOPE_MAX_VALUE_CHARS", "256") or 256),
    user_repr=os.environ.get("EXECSCOPE_USER_REPR", "") in ("1", "true", "yes"),
)

_CONTAINERS = (list, tuple, dict, set, frozenset)
_SCALARS = (type(None), bool, float, complex, type(Ellipsis), range, slice)
_C_REPR_TYPES = (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodWrapperType,
                 types.MethodDescriptorType, types.SlotWrapperType if hasattr(types, "SlotWrapperType")
                 else types.WrapperDescriptorType)


# Values are examined through their type only: ``isinstance`` falls back to ``value.__class__`` and
# ``value.args`` runs the object's own ``__getattribute__``, which a program may have hooked (tracing
# proxies, lazy objects): rendering a value must never run the program's code. These read through
# the builtin descriptors themselves (the runtime uses them for exceptions too).
EXC_ARGS: Any = vars(BaseException)["args"].__get__
EXC_TRACEBACK: Any = vars(BaseException)["__traceback__"].__get__
EXIT_CODE: Any = vars(SystemExit)["code"].__get__
EXC_GROUP: Any = getattr(builtins, "BaseExceptionGroup", None)  # 3.11+
EXC_GROUP_MESSAGE: Any = vars(EXC_GROUP)["message"].__get__ if EXC_GROUP is not None else None
EXC_GROUP_EXCEPTIONS: Any = vars(EXC_GROUP)["exceptions"].__get__ if EXC_GROUP is not None else None
_MODULE_GETATTR = types.ModuleType.__getattribute__
_NS_DICT: Any = lambda ns: object.__getattribute__(ns, "__dict__")  # noqa: E731  (the type's own slot)


def _type_name(t: type) -> str:
    module = getattr(t, "__module__", "") or ""
    qualname = getattr(t, "__qualname__", t.__name__)
    return qualname if module in ("builtins", "") else f"{module}.{qualname}"


def _opaque(value: object, name: str | None = None) -> str:
    """``<module.Class object at 0x...>``; ``name``: the class's, when already known."""
    return f"<{_type_name(type(value)) if name is None else name} object at {id(value):#x}>"


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _render_text(value: Any, limits: ReprLimits) -> str:
    """A str / bytes / bytearray leaf: its first ``max_chars + SCAN_SLACK`` characters through the
    policy when its scan finds a trigger (see redaction), then cut to ``max_chars``."""
    cap = limits.max_chars
    n = len(value)
    policy = _policy
    if policy.active and n >= policy.min_len:
        bound = cap + SCAN_SLACK
        head = value[:bound]
        if type(value) is str:
            red: Any = policy.redact_text(head) if policy.scan(head) else head
        else:
            red = policy.redact_bytes(head) if policy.scan(head.decode("latin-1")) else head
            if type(value) is bytearray:
                red = bytearray(red)
        if red is not head:
            if n > bound or len(red) > cap:
                return repr(red[:cap]) + "…"
            return repr(red)
    if n > cap:
        return repr(value[:cap]) + "…"
    return repr(value)


def _field(name: Any, value: Any, limits: ReprLimits, depth: int, budget: _Budget, seen: set[int]) -> str:
    """The value of a dict key / field ``name`` one level down: ``<redacted>`` when the name is a secret's."""
    if type(name) is str and _policy.is_secret_name(name):
        return REDACTED
    return _render(value, limits, depth + 1, budget, seen)


def _render(value: Any, limits: ReprLimits, depth: int, budget: _Budget, seen: set[int]) -> str:
    t = type(value)
    if t is str:
        return _render_text(value, limits)
    if t is int:
        bits = value.bit_length()
        if bits > 256:
            return f"<int of {bits} bits>"
        if bits >= 40 and _policy.active:  # 13 digits or more: a card number?
            return _policy.redact_text(repr(value))
        return repr(value)
    if t in _SCALARS:
        return repr(value)
    if t is bytes or t is bytearray:
        return _render_text(value, limits)
    if t in (list, tuple, set, frozenset, dict):
        if id(value) in seen:
            return "[...]" if t is list else "{...}" if t in (dict, set) else "(...)"
        if depth >= limits.max_depth:
            return f"<{t.__name__} of {len(value)}>"
        seen.add(id(value))
        try:
            return _render_container(value, t, limits, depth, budget, seen)
        finally:
            seen.discard(id(value))
    if issubclass(t, _CONTAINERS):  # subclasses: namedtuple, OrderedDict, Counter, user types
        base: Any = next(b for b in _CONTAINERS if issubclass(t, b))
        if depth >= limits.max_depth or id(value) in seen:
            return f"<{_type_name(t)} of {base.__len__(value)}>"
        seen.add(id(value))
        try:
            fields = getattr(t, "_fields", None)
            as_tuple: Any = tuple
            if base is tuple and isinstance(fields, tuple) and len(fields) == as_tuple.__len__(value):
                inner = ", ".join(f"{f}={_field(f, v, limits, depth, budget, seen)}"
                                  for f, v in zip(fields[: limits.max_items], as_tuple.__iter__(value)))
                return f"{t.__name__}({inner})"
            return f"{t.__name__}({_render_container(value, base, limits, depth, budget, seen)})"
        finally:
            seen.discard(id(value))
    if t is types.SimpleNamespace:  # rendered by type: its fields, names redacted like dict keys
        if depth >= limits.max_depth or id(value) in seen:
            return "namespace(...)"
        seen.add(id(value))
        try:
            fields = dict.items(_NS_DICT(value))
            inner = ", ".join(f"{k}={_field(k, v, limits, depth, budget, seen)}"
                              for k, v in list(fields)[: limits.max_items])
            return f"namespace({inner})"
        finally:
            seen.discard(id(value))
    if t is collections.deque:
        return f"deque({_render_container(list(value), list, limits, depth, budget, seen)})"
    if issubclass(t, type):
        return f"<class '{_type_name(value)}'>"
    if issubclass(t, (types.FunctionType, types.MethodType)):
        return f"<function {getattr(value, '__qualname__', '?')}>"
    if issubclass(t, types.ModuleType):
        return f"<module '{_MODULE_GETATTR(value, '__name__')}'>"
    if issubclass(t, BaseException):
        return f"{_type_name(t)}({_render(EXC_ARGS(value), limits, depth + 1, budget, seen)[1:-1].rstrip(',')})"
    r = getattr(t, "__repr__", None)
    if limits.user_repr or (isinstance(r, _C_REPR_TYPES) and r is not object.__repr__
                            and not hasattr(t, "__iter__")):
        try:
            text = repr(value)
        except Exception as exc:  # a user __repr__ may raise anything
            return f"<{_type_name(t)}: repr raised {type(exc).__name__}>"
        if not isinstance(text, str):
            return _opaque(value)
        if _policy.active:  # text we did not make: scanned whole (what is stored is cut anyway)
            text = _policy.redact_text(str.__str__(text)[: limits.max_chars + SCAN_SLACK])
        return text
    return _opaque_by_type(value, t)


def _opaque_by_type(value: object, t: type) -> str:
    """_render's last line: the type alone made ``value`` opaque; remembered (see :data:`_opaque_names`).
    Reassigning ``__repr__`` of such a class later is not seen."""
    name = _type_name(t)
    meta = type(t)
    if _LEARN_OPAQUE and (meta is type or (meta.__hash__ is type.__hash__ and meta.__eq__ is type.__eq__)):
        if len(_opaque_names) >= _OPAQUE_MAX:  # abc.ABCMeta hashes as type does: learnt too
            _opaque_names.clear()
        _opaque_names[t] = name
    return _opaque(value, name)


_OPAQUE_MAX = 4096
# classes (hashed as type hashes them) whose values _render gave opaque, with their names: rendered by
# type from then on, here (opaque_snapshot) and in C (a container holding them stays in C). Never
# where user reprs are allowed (EXECSCOPE_USER_REPR): there the renderers call them instead.
_LEARN_OPAQUE = not DEFAULT_LIMITS.user_repr
_opaque_names: dict[type, str] = {}


def opaque_snapshot(value: object) -> str | None:
    """``safe_repr(value)`` when ``type(value)`` is known to render opaque (a class with no safe
    repr, a parser's node, ``self`` of most methods), else None: without the renderers' checks,
    which cost a recorded call several times its own capture. Types are learnt by :func:`_render`
    when it renders one opaque by its type alone (its last line)."""
    name = _opaque_names.get(type(value))
    return None if name is None else _opaque(value, name)


def _render_container(value: Any, t: Any, limits: ReprLimits, depth: int, budget: _Budget,
                      seen: set[int]) -> str:
    parts: list[str] = []
    n = t.__len__(value)
    secret = _policy.is_secret_name
    if t is dict:
        items = iter(dict.items(value))
        for _ in range(min(n, limits.max_items)):
            k, v = next(items)
            key = _render(k, limits, depth + 1, budget, seen)
            parts.append(f"{key}: {_field(k, v, limits, depth, budget, seen)}")
            budget.left -= len(parts[-1])
            if budget.left <= 0:
                break
    else:
        it = t.__iter__(value)
        # a (name, value) pair whose name looks like a secret: headers as a list of tuples
        pair = t is tuple and n == 2 and type(tuple.__getitem__(value, 0)) is str
        for i in range(min(n, limits.max_items)):
            item = next(it)
            if pair and i == 1 and secret(tuple.__getitem__(value, 0)):
                parts.append(REDACTED)
            else:
                parts.append(_render(item, limits, depth + 1, budget, seen))
            budget.left -= len(parts[-1])
            if budget.left <= 0:
                break
    if len(parts) < n:
        parts.append(f"…{n - len(parts)} more")
    body = ", ".join(parts)
    if t is list:
        return f"[{body}]"
    if t is tuple:
        return f"({body},)" if n == 1 else f"({body})"
    if t is dict:
        return f"{{{body}}}"
    if n == 0:
        return "set()" if t is set else "frozenset()"
    return f"{{{body}}}" if t is set else f"frozenset({{{body}}})"


def _load_native_repr() -> Any:
    """The C renderer of builtin values (same text, see ``_repr.c``), unless EXECSCOPE_NATIVE is off."""
    if os.environ.get("EXECSCOPE_NATIVE", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        from execscope.instrumentation.capture._capture import bounded_repr
    except ImportError:
        return None
    return bounded_repr


_native_repr = _load_native_repr()
if _native_repr is not None:  # the C renderer renders the classes learnt opaque too (_opaque_by_type)
    from execscope.instrumentation.capture._capture import set_opaque_names

    set_opaque_names(_opaque_names)


def use_policy(policy: Policy) -> Policy:
    """Make ``policy`` the one every value is rendered with (both renderers); returns the previous one.
    The process starts with :data:`redaction.POLICY` (from its environment)."""
    global _policy
    previous = _policy
    previous.scan = previous._python_scan  # the C scan holds the new policy's data from now on
    _policy = redaction.POLICY = policy
    native = _native_module()
    if native is not None:
        data = policy.scanner_data()
        native.set_redaction(policy.is_secret_name, policy.redact_text, policy.redact_bytes, data["enabled"],
                             data["triggers"], data["needs"], data["card"], data["b64run"], data["always"],
                             data["min_len"], SCAN_SLACK)
        policy.scan = native.may_hold_secret  # the same scan, in C
    return previous


def _native_module() -> Any:
    if _native_repr is None:
        return None
    from execscope.instrumentation.capture import _capture

    return _capture


def policy() -> Policy:
    """The policy values are rendered with (see :func:`use_policy`)."""
    return _policy


use_policy(_policy)


def safe_repr(value: object, limits: ReprLimits = DEFAULT_LIMITS) -> str:
    """A bounded representation of ``value`` that never raises; see the module docstring."""
    if _native_repr is not None and not limits.user_repr:
        try:
            text = _native_repr(value, limits.max_chars, limits.max_items, limits.max_depth)
        except Exception:  # out of memory: the Python renderer says so its own way
            text = None
        if text is not None:
            return text
    return python_repr(value, limits)


def python_repr(value: object, limits: ReprLimits = DEFAULT_LIMITS) -> str:
    """:func:`safe_repr` by the Python renderer alone (the reference of the C one)."""
    try:
        text = _render(value, limits, 0, _Budget(limits.max_chars), set())
    except Exception as exc:  # a C-level repr or len() may still fail on exotic objects
        try:
            return f"<{_type_name(type(value))}: unrepresentable ({type(exc).__name__})>"
        except Exception:
            return "<unrepresentable>"
    if len(text) > limits.max_chars:
        return text[: limits.max_chars - 1] + "…"
    return text


def capture(name: str, value: object, limits: ReprLimits = DEFAULT_LIMITS) -> str:
    """``safe_repr`` of a named value, redacted when the name looks like a secret."""
    if name and _policy.is_secret_name(name):
        return REDACTED
    return safe_repr(value, limits)


def redact_text(text: str, limit: int | None = None) -> str:
    """Free text (a message, a stack trace, a status) through the value patterns; the first ``limit``
    characters (+ the scan slack) are kept when given."""
    if limit is not None and len(text) > limit + SCAN_SLACK:
        text = text[: limit + SCAN_SLACK]
    return _policy.redact_text(text)


def exception_message(exc: BaseException, limits: ReprLimits = DEFAULT_LIMITS) -> str:
    """The message of an exception without running user ``__str__`` code unless allowed."""
    try:
        if EXC_GROUP is not None and issubclass(type(exc), EXC_GROUP) and type(exc).__str__ is EXC_GROUP.__str__:
            # what str() of a group says, "message (2 sub-exceptions)", read without running it
            n = len(EXC_GROUP_EXCEPTIONS(exc))
            msg = f"{EXC_GROUP_MESSAGE(exc)} ({n} sub-exception{'' if n == 1 else 's'})"
        elif limits.user_repr or type(exc).__str__ is BaseException.__str__ or type(exc).__module__ == "builtins":
            args = EXC_ARGS(exc)
            if len(args) == 1 and type(args[0]) is str:
                msg = args[0]
            elif not args:
                msg = ""
            elif limits.user_repr:
                msg = str(exc)
            else:
                msg = safe_repr(args[0] if len(args) == 1 else args, limits)
        else:
            msg = safe_repr(EXC_ARGS(exc), limits)
        cap = limits.max_chars * 4
        long = len(msg) > cap + SCAN_SLACK
        msg = redact_text(msg, cap)  # a URL or key in the message (str() of a user exception included)
        return msg if len(msg) <= cap and not long else msg[:cap] + "…"
    except Exception:
        return "<message unavailable>"

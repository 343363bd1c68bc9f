"""A small evaluator for debugger expressions over recorded values: user code never runs.

Breakpoint conditions, log messages and the DAP ``evaluate`` request read what the recorder stored,
which is a bounded, redacted *representation* of each value (a string). This module evaluates an
expression against those strings:

* names are looked up among the recorded variables of the frame (``self.prices`` also matches a
  variable recorded under that dotted name);
* a representation that parses as a Python literal (``[1, 2]``, ``{'a': 1}``, ``'x'``, ``3.5``,
  ``None``) becomes that value; any other one (``<Cart object>``, a truncated list) stays an
  :class:`Opaque` value that only compares equal to its own text and can be printed;
* allowed: literals, names, attribute access (a dict's key, or a recorded dotted name), subscripts and
  slices, comparisons (``in`` included), ``and``/``or``/``not``, arithmetic, ``x if c else y``, and
  calls of ``len``, ``abs``, ``min``, ``max``, ``sum``, ``sorted``, ``str``, ``int``, ``float``,
  ``bool``, ``repr``. Everything else (lambdas, comprehensions, other calls, dunder attributes) is an
  :class:`EvalError` naming what is not supported.

Results are bounded: no sequence longer than ``MAX_ITEMS``, no integer wider than ``MAX_INT_BITS``.
Threading: pure functions; safe from any thread.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_ITEMS = 100_000
MAX_INT_BITS = 4096
MAX_EXPRESSION = 2000


class EvalError(ValueError):
    """The expression is malformed, unsupported, or names something not recorded."""


class Opaque:
    """A recorded representation that is not a Python literal: shown as is, equal only to itself."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Opaque):
            return self.text == other.text
        return isinstance(other, str) and other == self.text

    def __hash__(self) -> int:
        return hash(self.text)


_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,99})")


def parse_value(text: str) -> Any:
    """The value a recorded representation stands for: a literal when it parses as one, else Opaque."""
    if len(text) > 1_000_000:
        return Opaque(text)
    if _INT.fullmatch(text):  # the common case, as literal_eval reads it, without parsing
        return int(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return Opaque(text)


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise EvalError(f"integer result wider than {MAX_INT_BITS} bits")
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_ITEMS:
        raise EvalError(f"result longer than {MAX_ITEMS} items")
    return value


def _pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > 1000:
        raise EvalError("exponent larger than 1000")
    return a ** b


def _mul(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_ITEMS:
            raise EvalError(f"result longer than {MAX_ITEMS} items")
    return a * b


def _shift(a: Any, b: Any) -> Any:
    if isinstance(b, int) and b > MAX_INT_BITS:
        raise EvalError(f"shift wider than {MAX_INT_BITS} bits")
    return a << b


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow, ast.LShift: _shift,
    ast.RShift: operator.rshift, ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "abs": abs, "min": min, "max": max, "sum": sum, "sorted": sorted, "str": str, "int": int,
    "float": float, "bool": bool, "repr": repr,
}


def compile_expression(expr: str) -> ast.Expression:
    """Parse ``expr`` and check that it uses only what the evaluator supports (raises EvalError)."""
    if len(expr) > MAX_EXPRESSION:
        raise EvalError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise EvalError(f"syntax error in {expr!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.Load, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Set,
                             ast.Dict, ast.Subscript, ast.Slice, ast.Compare, ast.BoolOp, ast.And, ast.Or,
                             ast.BinOp, ast.UnaryOp, ast.IfExp, ast.operator, ast.unaryop, ast.cmpop)):
            continue
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("__"):
                raise EvalError(f"attribute {node.attr!r} is not supported")
            continue
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
                raise EvalError("only calls of " + ", ".join(sorted(_FUNCTIONS)) + " are supported "
                                "(recorded values are data: no user code runs)")
            continue
        raise EvalError(f"{type(node).__name__} is not supported in debugger expressions")
    return tree


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


class _Evaluator:
    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def name(self, ident: str) -> Any:
        if ident in self.names:
            return parse_value(self.names[ident])
        if ident in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[ident]
        if ident in _FUNCTIONS:
            return _FUNCTIONS[ident]
        raise EvalError(f"name {ident!r} is not recorded at this point")

    def eval(self, node: ast.AST) -> Any:  # noqa: C901 - one branch per supported node type
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return self.name(node.id)
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None and dotted in self.names:
                return parse_value(self.names[dotted])
            base = self.eval(node.value)
            if isinstance(base, dict) and node.attr in base:
                return base[node.attr]
            raise EvalError(f"no recorded attribute {node.attr!r} on {_short(base)}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.eval(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items) if isinstance(node, ast.Tuple) else set(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise EvalError("dict unpacking is not supported")
            return {self.eval(k): self.eval(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
        if isinstance(node, ast.Subscript):
            base = self.eval(node.value)
            index = self.slice(node.slice)
            if isinstance(base, Opaque):
                raise EvalError(f"{base.text!r} was recorded as a representation that does not parse; "
                                "it cannot be indexed")
            try:
                return base[index]
            except (KeyError, IndexError, TypeError) as exc:
                raise EvalError(f"{_short(base)}[{index!r}]: {type(exc).__name__}: {exc}") from None
        if isinstance(node, ast.BoolOp):
            value: Any = None
            for operand in node.values:
                value = self.eval(operand)
                if isinstance(node.op, ast.And) and not value:
                    return value
                if isinstance(node.op, ast.Or) and value:
                    return value
            return value
        if isinstance(node, ast.UnaryOp):
            return self.apply(_UNARY[type(node.op)], self.eval(node.operand))
        if isinstance(node, ast.BinOp):
            return _bounded(self.apply(_BINARY[type(node.op)], self.eval(node.left), self.eval(node.right)))
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, comparator in zip(node.ops, node.comparators):
                right = self.eval(comparator)
                if not self.apply(_COMPARE[type(op)], left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)
        if isinstance(node, ast.Call):
            func = _FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
            args = [self.eval(a) for a in node.args]
            return _bounded(self.apply(func, *args))
        raise EvalError(f"{type(node).__name__} is not supported")

    def slice(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.eval(p) for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        return self.eval(node)

    @staticmethod
    def apply(func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except EvalError:
            raise
        except Exception as exc:  # arithmetic on data: ZeroDivisionError, TypeError, ...
            raise EvalError(f"{type(exc).__name__}: {exc}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def evaluate(expr: str | ast.Expression, names: Mapping[str, str]) -> Any:
    """The value of ``expr`` with ``names`` (variable -> recorded representation). Raises EvalError."""
    tree = compile_expression(expr) if isinstance(expr, str) else expr
    try:
        return _Evaluator(names).eval(tree)
    except RecursionError:
        raise EvalError("expression nested too deeply") from None


def render(value: Any) -> str:
    """A result as a debugger shows it (representations stay as recorded)."""
    return value.text if isinstance(value, Opaque) else repr(value)


def interpolate(message: str, names: Mapping[str, str]) -> str:
    """A DAP log message: every ``{expr}`` replaced by its value (``{{``/``}}`` are literal braces);
    an expression that fails shows as ``<error: ...>``."""
    out: list[str] = []
    i = 0
    while i < len(message):
        ch = message[i]
        if ch in "{}" and message[i:i + 2] in ("{{", "}}"):
            out.append(ch)
            i += 2
            continue
        if ch == "{":
            end = message.find("}", i + 1)
            if end < 0:
                out.append(message[i:])
                break
            try:
                value = evaluate(message[i + 1:end], names)
                out.append(value if isinstance(value, str) else render(value))
            except EvalError as exc:
                out.append(f"<error: {exc}>")
            i = end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)

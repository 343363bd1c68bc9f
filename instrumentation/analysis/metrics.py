"""Per-function facts for ``cpg_functions``: cyclomatic complexity, nesting depth, statements, parameters.

Cyclomatic complexity follows McCabe as radon counts it, so numbers agree with the tool people
already use: 1 + one per ``if``/``elif``/conditional expression, per loop (+1 for its ``else``), per
``except`` handler (+1 for a try ``else``), per extra ``and``/``or`` operand, per comprehension
``for`` and ``if``, per non-wildcard ``case``, per ``assert``. Nested functions and classes are their
own units and do not add to the enclosing function; lambdas and comprehensions do (they are part of
the function's expression code).

One deliberate difference from radon 6: handlers of ``try``/``except*`` count like those of ``try``
(radon does not recognise the ``TryStar`` node and counts them as 0).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_TRY_NODES: tuple[type, ...] = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)
_COMPOUND = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Match, *_TRY_NODES)


@dataclass(frozen=True, slots=True)
class FunctionFacts:
    cyclomatic: int
    nesting_depth: int
    """Deepest nesting of compound statements (if/for/while/try/with/match) in the body; 0 if none."""
    statements: int
    """Statements in the body, nested blocks included, nested definitions' bodies excluded."""
    parameters: int
    is_generator: bool = False


def _decisions(node: ast.AST, yields: list[bool] | None = None) -> int:
    """Decision points in ``node`` and below, not entering nested definitions (``yields`` gets True
    appended when a yield is met)."""
    total = 0
    stack = [node]
    while stack:
        n = stack.pop()
        t = type(n)
        if yields is not None and (t is ast.Yield or t is ast.YieldFrom):
            yields.append(True)
        if t is ast.Assert:
            total += 1
            if yields is not None and any(isinstance(x, (ast.Yield, ast.YieldFrom)) for x in ast.walk(n)):
                yields.append(True)
            continue  # radon does not look inside an assert
        if t in (ast.If, ast.IfExp):
            total += 1
        elif t in (ast.For, ast.AsyncFor, ast.While):
            total += 1 + bool(n.orelse)  # type: ignore[attr-defined]
        elif t in _TRY_NODES:
            total += len(n.handlers) + bool(n.orelse)  # type: ignore[attr-defined]
        elif t is ast.BoolOp:
            total += len(n.values) - 1  # type: ignore[attr-defined]
        elif t is ast.comprehension:
            total += 1 + len(n.ifs)  # type: ignore[attr-defined]
        elif t is ast.Match:
            cases = n.cases  # type: ignore[attr-defined]
            wildcard = any(getattr(c.pattern, "pattern", False) is None for c in cases)
            total += max(0, len(cases) - wildcard)
        for child in ast.iter_child_nodes(n):
            if not isinstance(child, _DEFS):
                stack.append(child)
    return total


def cyclomatic(func: ast.FunctionDef | ast.AsyncFunctionDef, yields: list[bool] | None = None) -> int:
    return 1 + sum(_decisions(stmt, yields) for stmt in func.body if not isinstance(stmt, _DEFS))


def _blocks(stmt: ast.stmt) -> list[list[ast.stmt]]:
    blocks: list[list[ast.stmt]] = []
    for name in ("body", "orelse", "finalbody"):
        value = getattr(stmt, name, None)
        if value:
            blocks.append(value)
    for handler in getattr(stmt, "handlers", ()):
        blocks.append(handler.body)
    for case in getattr(stmt, "cases", ()):
        blocks.append(case.body)
    return blocks


def _walk_statements(body: list[ast.stmt], depth: int) -> tuple[int, int]:
    """(statements, deepest nesting) of a block at nesting ``depth``."""
    count, deepest = 0, depth
    for stmt in body:
        count += 1
        if isinstance(stmt, _DEFS):
            continue
        if isinstance(stmt, _COMPOUND):
            for block in _blocks(stmt):
                c, d = _walk_statements(block, depth + 1)
                count += c
                deepest = max(deepest, d)
    return count, deepest


def parameter_count(args: ast.arguments) -> int:
    return (len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
            + (args.vararg is not None) + (args.kwarg is not None))


def function_facts(func: ast.FunctionDef | ast.AsyncFunctionDef) -> FunctionFacts:
    statements, depth = _walk_statements(func.body, 0)
    yields: list[bool] = []
    complexity = cyclomatic(func, yields)
    return FunctionFacts(complexity, depth, statements, parameter_count(func.args), bool(yields))

"""Node IDs from the stdlib :mod:`ast` tree: the rows of :func:`.node_ids.assign_node_ids`, ~20x faster.

:func:`assign_node_ids_ast` returns a :class:`~.node_ids.ModuleNodes` equal, row for row, to the libcst
version (same IDs, kinds, qualnames, names, character positions, parents, code, order and ``lookup``
index). About 50k lines/s including ``ast.parse`` (160k lines/s when the caller passes its ``tree``)
against ~2k lines/s for libcst. It re-creates what libcst sees from the :mod:`ast` tree plus the text:

* visit order is libcst's: source order, with decorators, parameter annotations/defaults, returns and
  class bases/keywords numbered in the enclosing scope before the definition; call arguments and
  keywords merged by position, dict keys and values interleaved, ``if_exp`` visits body, test, orelse;
  :mod:`ast` already flattens an unparenthesised same-operator ``bool_op`` chain exactly as libcst does;
* ranges exclude parentheses like libcst's: :mod:`ast` includes them for a ``GeneratorExp`` (the call's,
  for a sole argument) and a parenthesised ``Tuple`` (an arm), so they are stripped with the whitespace
  and comments inside them; columns are converted from UTF-8 bytes to characters;
* a compound statement ends with its last statement: :mod:`ast` also counts a trailing ``;`` there;
* arms: a block is first statement start .. last statement end; ``else`` / ``finally`` / ``case`` arms
  start at their keyword, found by scanning the text after the preceding node (skipping whitespace,
  comments, ``;``, ``:``, ``)`` and ``,``); an ``elif`` is the nested ``If``; a missing ``else`` is the
  ``if`` itself;
* names are the source text: :mod:`ast` NFKC-normalises identifiers (``𝔣`` becomes ``f``);
* a form feed in the indentation of a line that starts a statement, clause or decorator: libcst counts
  that line's columns as if it were indented like its block's first line; the same shift is applied.

Known differences: none on the corpora of ``tests/unit/test_node_ids_ast.py`` (toolz, more-itertools,
the stdlib a-m modules), the whole 3.11 stdlib (789k lines) and 1.1M lines of installed third-party
packages (checked once, outside the tests). Only sources both parsers accept compare: this one
raises :class:`SyntaxError` where :func:`ast.parse` does (libcst accepts some grammar newer than the
running interpreter), while libcst rejects a few valid sources (``class C(metaclass=M, *bases)``, most
form feeds inside nested indentation), for which this version still returns rows.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

from execscope.instrumentation.nodes.node_ids import (
    CODE_LIMIT,
    ModuleNodes,
    NodeInfo,
    code_version_of,
    module_id,
    split_lines,
)

__all__ = ["assign_node_ids_ast"]

_SIMPLE: dict[type, str] = {
    ast.Assign: "assign", ast.AnnAssign: "ann_assign", ast.AugAssign: "aug_assign", ast.Expr: "expr",
    ast.Return: "return", ast.Raise: "raise", ast.Assert: "assert", ast.Pass: "pass",
    ast.Break: "break", ast.Continue: "continue", ast.Delete: "del", ast.Global: "global",
    ast.Nonlocal: "nonlocal", ast.Import: "import", ast.ImportFrom: "import_from",
}
for _name in ("TypeAlias",):  # Python 3.12+
    if hasattr(ast, _name):
        _SIMPLE[getattr(ast, _name)] = "type_alias"
_TRY_TYPES: tuple[type, ...] = tuple(getattr(ast, n) for n in ("Try", "TryStar") if hasattr(ast, n))
_BLOCK_STATEMENTS: tuple[type, ...] = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.With,
                                       ast.AsyncWith, ast.For, ast.AsyncFor, ast.While, *_TRY_TYPES)

_DEF_NAME = re.compile(r"(?:async[ \t\f]+)?(?:def|class)[ \t\f]+(\w+)")
_SKIP = " \t\f\\;:),"  # what may separate a node's end from the next arm keyword (besides comments)

_Name = ast.Name
_Attribute = ast.Attribute
_Subscript = ast.Subscript
_Tuple = ast.Tuple
_List = ast.List
_Starred = ast.Starred
_GeneratorExp = ast.GeneratorExp
_If = ast.If

# Nodes that never contain a counted construct (a Name target is handled by its owner).
_LEAVES: frozenset[type] = frozenset({ast.Name, ast.Constant, ast.Pass, ast.Break, ast.Continue, ast.Global,
                                      ast.Nonlocal, ast.Import, ast.ImportFrom})

# AST-valued children, in source order, of the node types visited generically: (field, is_list).
_CHILDREN: dict[type, tuple[tuple[str, bool], ...]] = {
    ast.Attribute: (("value", False),), ast.Subscript: (("value", False), ("slice", False)),
ast.UnaryOp: (("operand", False),),
    ast.Compare: (("left", False), ("comparators", True)), ast.Starred: (("value", False),),
    ast.Tuple: (("elts", True),), ast.List: (("elts", True),), ast.Set: (("elts", True),),
    ast.Slice: (("lower", False), ("upper", False), ("step", False)), ast.keyword: (("value", False),),
    ast.JoinedStr: (("values", True),), ast.FormattedValue: (("value", False), ("format_spec", False)),
    ast.Expr: (("value", False),), ast.Return: (("value", False),),
    ast.Raise: (("exc", False), ("cause", False)), ast.Assert: (("test", False), ("msg", False)),
    ast.Delete: (("targets", True),),
}
for _t in _LEAVES:
    _CHILDREN[_t] = ()


def _generic_children(node: ast.AST) -> list[ast.AST]:
    """Children of a node type not listed above (future grammar), in field order."""
    children: list[ast.AST] = []
    for _name, value in ast.iter_fields(node):
        if isinstance(value, ast.AST) and not isinstance(value, (ast.expr_context, ast.operator, ast.boolop,
                                                                  ast.unaryop, ast.cmpop)):
            children.append(value)
        elif isinstance(value, list):
            children.extend(v for v in value if isinstance(v, ast.AST))
    return children


class _Walker:
    __slots__ = ("module", "lines", "ascii", "byte_maps", "nodes", "by_position", "scopes", "parents",
                 "seen", "dispatch", "shifts", "code_lines")

    def __init__(self, module: str, lines: list[str], out: ModuleNodes, code_lines: list[str]) -> None:
        self.module = module
        self.lines = lines  # positions and scanning
        self.code_lines = code_lines  # ``code`` text: differs from ``lines`` only by a leading BOM
        self.ascii = [line.isascii() for line in lines]
        self.byte_maps: dict[int, list[int]] = {}
        self.nodes = out.nodes
        self.by_position = out._by_position
        # scope: [qualname, locals_prefix, counters]
        self.scopes: list[tuple[str, str, dict[str, int]]] = [("<module>", "", {})]
        self.parents: list[str] = [module_id(module)]
        self.seen: dict[str, int] = {}
        self.shifts: dict[int, int] = {}  # line -> libcst column offset (form feeds in indentation only)
        d: dict[type, object] = {}
        for t in _SIMPLE:
            d[t] = self._simple
        d.update({
            ast.Assign: self._assign, ast.AnnAssign: self._target_first, ast.AugAssign: self._target_first,
            ast.If: self._if, ast.For: self._loop, ast.AsyncFor: self._loop, ast.While: self._loop,
            ast.Try: self._try, ast.With: self._with, ast.AsyncWith: self._with, ast.Match: self._match,
            ast.FunctionDef: self._function, ast.AsyncFunctionDef: self._function, ast.ClassDef: self._class,
            ast.Call: self._call, ast.Lambda: self._lambda, ast.Yield: self._counted_generic,
            ast.YieldFrom: self._counted_generic, ast.Await: self._counted_generic, ast.IfExp: self._if_exp,
            ast.NamedExpr: self._target_first, ast.BoolOp: self._bool_op, ast.ExceptHandler: self._except,
            ast.ListComp: self._comprehension, ast.SetComp: self._comprehension,
            ast.GeneratorExp: self._comprehension, ast.DictComp: self._comprehension,
            ast.Dict: self._dict, ast.BinOp: self._bin_op,
        })
        for t in _TRY_TYPES:
            d[t] = self._try
        self.dispatch = d

    # --- positions ---------------------------------------------------------------------------------
    def _col(self, line: int, byte_col: int) -> int:
        if line > len(self.ascii) or self.ascii[line - 1]:
            return byte_col
        table = self.byte_maps.get(line)
        if table is None:
            table = []
            for i, ch in enumerate(self.lines[line - 1]):
                table.extend([i] * len(ch.encode("utf-8", "surrogatepass")))
            table.append(len(self.lines[line - 1]))
            self.byte_maps[line] = table
        return table[byte_col] if byte_col < len(table) else byte_col - len(table) + table[-1] + 1

    def _range(self, node: ast.AST) -> tuple[int, int, int, int]:
        line = node.lineno  # type: ignore[attr-defined]
        end_line = node.end_lineno  # type: ignore[attr-defined]
        ascii_ = self.ascii
        col = node.col_offset  # type: ignore[attr-defined]
        end_col = node.end_col_offset  # type: ignore[attr-defined]
        if not ascii_[line - 1]:
            col = self._col(line, col)
        if not ascii_[end_line - 1]:
            end_col = self._col(end_line, end_col)
        return line, col, end_line, end_col

    def _stmt_range(self, node: ast.AST) -> tuple[int, int, int, int]:
        """libcst's range of a statement: a compound one ends with its last statement, without the ``;``
        that :mod:`ast` counts when the last line is ``x = 1;``."""
        line, col, end_line, end_col = self._range(node)
        if end_col and self.lines[end_line - 1][end_col - 1] == ";":
            last = _last_statement(node)
            if last is not node:
                end_line, end_col = self._stmt_range(last)[2:]
        return line, col, end_line, end_col

    def _expr_range(self, node: ast.AST) -> tuple[int, int, int, int]:
        """libcst's range of an expression: without its own parentheses."""
        rng = self._range(node)
        if isinstance(node, ast.GeneratorExp):
            return self._strip_parens(rng, node.elt, _last_child(node))
        if isinstance(node, ast.Tuple) and self._char(rng[0], rng[1]) == "(":
            elts = node.elts
            if not elts or self._tuple_parenthesised(rng, elts[0]):
                return self._strip_parens(rng, elts[0] if elts else None, elts[-1] if elts else None)
        return rng

    def _char(self, line: int, col: int) -> str:
        if 0 < line <= len(self.lines):
            text = self.lines[line - 1]
            if 0 <= col < len(text):
                return text[col]
        return ""

    def _tuple_parenthesised(self, rng: tuple[int, int, int, int], first: ast.AST) -> bool:
        # "(a), b" starts with the first element's parenthesis; "((a), b)" with the tuple's own.
        fl, fc, fel, fec = self._range(first)
        opens = self._count_between(rng[0], rng[1], fl, fc, "(")
        closes = self._count_after(fel, fec, ")")
        return opens > closes

    def _count_between(self, line: int, col: int, end_line: int, end_col: int, char: str) -> int:
        count = 0
        lines = self.lines
        while (line, col) < (end_line, end_col):
            text = lines[line - 1]
            if col >= len(text):
                line, col = line + 1, 0
                continue
            ch = text[col]
            if ch == "#":
                line, col = line + 1, 0
                continue
            if ch == char:
                count += 1
            col += 1
        return count

    def _count_after(self, line: int, col: int, char: str) -> int:
        count = 0
        lines = self.lines
        while line <= len(lines):
            text = lines[line - 1]
            if col >= len(text):
                line, col = line + 1, 0
                continue
            ch = text[col]
            if ch == "#":
                line, col = line + 1, 0
                continue
            if ch == char:
                count += 1
            elif ch not in " \t\f\\":
                return count
            col += 1
        return count

    def _strip_parens(self, rng: tuple[int, int, int, int], first: ast.AST | None, last: ast.AST | None
                      ) -> tuple[int, int, int, int]:
        line, col, end_line, end_col = rng
        if self._char(line, col) != "(" or self._char(end_line, end_col - 1) != ")":
            return rng
        # start: the first token after "(" (whitespace, comments and line breaks belong to the paren)
        start = self._next_token(line, col + 1, " \t\f\\")
        # end: just after the last token before ")": scan forward from the last child's end
        if last is None:
            return (*start, *start)
        ll, lc = self._range(last)[2:]
        end = (ll, lc)
        lines = self.lines
        while (ll, lc) < (end_line, end_col - 1):
            text = lines[ll - 1]
            if lc >= len(text):
                ll, lc = ll + 1, 0
                continue
            ch = text[lc]
            if ch == "#":
                ll, lc = ll + 1, 0
                continue
            lc += 1
            if ch not in " \t\f\\":
                end = (ll, lc)
        return (*start, *end)

    def _next_token(self, line: int, col: int, skip: str = _SKIP) -> tuple[int, int]:
        lines = self.lines
        n = len(lines)
        while line <= n:
            text = lines[line - 1]
            length = len(text)
            while col < length:
                ch = text[col]
                if ch in skip:
                    col += 1
                elif ch == "#":
                    col = length
                else:
                    return line, col
            line += 1
            col = 0
        return line, col

    # --- rows --------------------------------------------------------------------------------------
    def _add(self, node_id: str, kind: str, rng: tuple[int, int, int, int], qualname: str, name: str,
             index: bool = True) -> None:
        line, col, end_line, end_col = rng
        if self.shifts:
            col += self.shifts.get(line, 0)
            end_col += self.shifts.get(end_line, 0)
        lines = self.code_lines
        first = lines[line - 1] if line - 1 < len(lines) else ""
        text = first[col:end_col] if line == end_line else first[col:]
        if len(text) > CODE_LIMIT:
            text = text[: CODE_LIMIT - 1] + "…"
        self.nodes.append(NodeInfo(node_id, kind, qualname, name, line, col, end_line, end_col,
                                   self.parents[-1], text))
        if index:
            self.by_position.setdefault((kind, line, col, end_line, end_col), node_id)

    def _count(self, kind: str, rng: tuple[int, int, int, int], name: str = "") -> str:
        qualname, _prefix, counters = self.scopes[-1]
        n = counters.get(kind, 0)
        counters[kind] = n + 1
        node_id = f"{self.module}:{qualname}:{kind}#{n}"
        self._add(node_id, kind, rng, qualname, name)
        return node_id

    def _count_node(self, kind: str, node: ast.AST) -> str:
        """:meth:`_count` with :meth:`_range` and :meth:`_add` inlined: the hot path."""
        line = node.lineno  # type: ignore[attr-defined]
        end_line = node.end_lineno  # type: ignore[attr-defined]
        col = node.col_offset  # type: ignore[attr-defined]
        end_col = node.end_col_offset  # type: ignore[attr-defined]
        ascii_ = self.ascii
        if not ascii_[line - 1]:
            col = self._col(line, col)
        if not ascii_[end_line - 1]:
            end_col = self._col(end_line, end_col)
        if self.shifts:
            col += self.shifts.get(line, 0)
            end_col += self.shifts.get(end_line, 0)
        qualname, _prefix, counters = self.scopes[-1]
        n = counters.get(kind, 0)
        counters[kind] = n + 1
        node_id = f"{self.module}:{qualname}:{kind}#{n}"
        first = self.code_lines[line - 1]
        text = first[col:end_col] if line == end_line else first[col:]
        if len(text) > CODE_LIMIT:
            text = text[: CODE_LIMIT - 1] + "…"
        self.nodes.append(NodeInfo(node_id, kind, qualname, "", line, col, end_line, end_col,
                                   self.parents[-1], text))
        self.by_position.setdefault((kind, line, col, end_line, end_col), node_id)
        return node_id

    def _arm(self, owner: str, label: str, rng: tuple[int, int, int, int]) -> None:
        self._add(f"{owner}.{label}", "arm", rng, self.scopes[-1][0], label, index=False)

    def _block(self, body: list[ast.stmt]) -> tuple[int, int, int, int]:
        end = self._stmt_range(body[-1])
        start = end if len(body) == 1 else self._range(body[0])
        return start[0], start[1], end[2], end[3]

    def _keyword_block(self, after: ast.AST, body: list[ast.stmt]) -> tuple[int, int, int, int]:
        """``else:`` / ``finally:`` block: from the keyword following ``after`` to the end of ``body``."""
        rng = self._range(after)
        line, col = self._next_token(rng[2], rng[3])
        end = self._stmt_range(body[-1])
        return line, col, end[2], end[3]

    # --- form feeds ------------------------------------------------------------------------------
    # libcst does not count a line's own indentation when it starts a statement, a clause or a
    # decorator: it emits the indentation of the enclosing block (as the block's first line spells it)
    # instead. The two differ only when a form feed sits in the indentation.
    def plan_form_feeds(self, body: Sequence[Any], indent: str) -> None:
        for stmt in body:
            for decorator in getattr(stmt, "decorator_list", ()):
                self._shift(decorator.lineno, indent)
            self._shift(stmt.lineno, indent)
            t = type(stmt)
            if t is _If:
                self._plan_block(stmt.body, indent)
                orelse = stmt.orelse
                if len(orelse) == 1 and type(orelse[0]) is _If and self._is_elif(orelse[0]):
                    self.plan_form_feeds(orelse, indent)
                elif orelse:
                    self._plan_clause(stmt.body[-1], orelse, indent)
            elif t is ast.Match:
                after: ast.AST = stmt.subject
                case_indent = None
                for case in stmt.cases:
                    line = self._keyword_block(after, case.body)[0]
                    if case_indent is None:
                        case_indent = self._indent_of(line)
                    self._shift(line, case_indent)
                    self._plan_block(case.body, case_indent)
                    after = case.body[-1]
            elif t in _BLOCK_STATEMENTS:
                self._plan_block(stmt.body, indent)
                last = stmt.body[-1]
                for handler in getattr(stmt, "handlers", ()):
                    self._shift(handler.lineno, indent)
                    self._plan_block(handler.body, indent)
                    last = handler
                orelse = getattr(stmt, "orelse", None)
                if orelse:
                    self._plan_clause(last, orelse, indent)
                    last = orelse[-1]
                finalbody = getattr(stmt, "finalbody", None)
                if finalbody:
                    self._plan_clause(last, finalbody, indent)

    def _plan_clause(self, after: ast.AST, body: list[ast.stmt], indent: str) -> None:
        self._shift(self._keyword_block(after, body)[0], indent)
        self._plan_block(body, indent)

    def _plan_block(self, body: list[ast.stmt], indent: str) -> None:
        line = body[0].lineno
        own = self._indent_of(line)
        if self._col(line, body[0].col_offset) == len(own):  # an indented block, not "if x: pass"
            self.plan_form_feeds(body, own)

    def _indent_of(self, line: int) -> str:
        text = self.lines[line - 1]
        return text[: len(text) - len(text.lstrip(" \t\f"))]

    def _shift(self, line: int, indent: str) -> None:
        delta = len(indent) - len(self._indent_of(line))
        if delta:
            self.shifts[line] = delta

    # --- traversal ---------------------------------------------------------------------------------
    def visit(self, node: ast.AST) -> None:
        t = type(node)
        handler = self.dispatch.get(t)
        if handler is not None:
            handler(node)  # type: ignore[operator]
            return
        fields = _CHILDREN.get(t)
        if fields is None:
            for child in _generic_children(node):
                self.visit(child)
            return
        self._children(node, fields)

    def _children(self, node: ast.AST, fields: tuple[tuple[str, bool], ...]) -> None:
        visit = self.visit
        leaves = _LEAVES
        for name, is_list in fields:
            value = getattr(node, name)
            if is_list:
                for child in value:
                    if child is not None and type(child) not in leaves:
                        visit(child)
            elif value is not None and type(value) not in leaves:
                visit(value)

    def visit_list(self, nodes: Sequence[ast.AST]) -> None:
        visit = self.visit
        for node in nodes:
            visit(node)

    def _target(self, node: ast.AST) -> None:
        t = type(node)
        if t is _Name:
            rng = self._range(node)
            name = node.id  # type: ignore[attr-defined]
            if not self.ascii[rng[0] - 1]:  # ast NFKC-normalises identifiers, libcst keeps the source text
                name = self.lines[rng[0] - 1][rng[1]:rng[3]]
            self._count("target", rng, name)
        elif t is _Tuple or t is _List:
            for element in node.elts:  # type: ignore[attr-defined]
                self._target(element)
        elif t is _Starred:
            self._target(node.value)  # type: ignore[attr-defined]
        elif t is _Attribute or t is _Subscript:
            self.parents.append(self._count_node("target", node))
            self.visit(node.value)  # type: ignore[attr-defined]
            if t is _Subscript:
                self.visit(node.slice)  # type: ignore[attr-defined]
            self.parents.pop()
        else:
            self.visit(node)

    # statements
    def _simple(self, node: ast.AST) -> None:
        t = type(node)
        self.parents.append(self._count_node(_SIMPLE[t], node))
        fields = _CHILDREN.get(t)
        if fields is None:
            for child in _generic_children(node):
                self.visit(child)
        else:
            self._children(node, fields)
        self.parents.pop()

    def _assign(self, node: ast.Assign) -> None:
        self.parents.append(self._count_node("assign", node))
        for target in node.targets:
            self._target(target)
        self.visit(node.value)
        self.parents.pop()

    def _target_first(self, node: ast.AnnAssign | ast.AugAssign | ast.NamedExpr) -> None:
        t = type(node)
        kind = "walrus" if t is ast.NamedExpr else _SIMPLE[t]
        self.parents.append(self._count_node(kind, node))
        self._target(node.target)
        if t is ast.AnnAssign:
            self.visit(node.annotation)  # type: ignore[union-attr]
        if node.value is not None:
            self.visit(node.value)
        self.parents.pop()

    def _if(self, node: ast.If) -> None:
        rng = self._stmt_range(node)
        node_id = self._count("if", rng)
        self.parents.append(node_id)
        self._arm(node_id, "true", self._block(node.body))
        orelse = node.orelse
        if not orelse:
            self._arm(node_id, "false", rng)
        elif len(orelse) == 1 and type(orelse[0]) is _If and self._is_elif(orelse[0]):
            self._arm(node_id, "false", self._stmt_range(orelse[0]))
        else:
            self._arm(node_id, "false", self._keyword_block(node.body[-1], orelse))
        self.visit(node.test)
        self.visit_list(node.body)
        self.visit_list(orelse)
        self.parents.pop()

    def _is_elif(self, node: ast.If) -> bool:
        line, col = node.lineno, node.col_offset
        return self.lines[line - 1].encode("utf-8")[col:col + 4] == b"elif" if not self.ascii[line - 1] \
            else self.lines[line - 1].startswith("elif", col)

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While) -> None:
        is_for = not isinstance(node, ast.While)
        node_id = self._count("for" if is_for else "while", self._stmt_range(node))
        self.parents.append(node_id)
        self._arm(node_id, "body", self._block(node.body))
        if node.orelse:
            self._arm(node_id, "else", self._keyword_block(node.body[-1], node.orelse))
        if isinstance(node, ast.While):
            self.visit(node.test)
        else:
            self._target(node.target)
            self.visit(node.iter)
        self.visit_list(node.body)
        self.visit_list(node.orelse)
        self.parents.pop()

    def _try(self, node: ast.Try) -> None:
        node_id = self._count("try", self._stmt_range(node))
        self.parents.append(node_id)
        last: ast.AST = node.handlers[-1] if node.handlers else node.body[-1]
        if node.orelse:
            self._arm(node_id, "else", self._keyword_block(last, node.orelse))
            last = node.orelse[-1]
        if node.finalbody:
            self._arm(node_id, "finally", self._keyword_block(last, node.finalbody))
        self.visit_list(node.body)
        self.visit_list(node.handlers)
        self.visit_list(node.orelse)
        self.visit_list(node.finalbody)
        self.parents.pop()

    def _except(self, node: ast.ExceptHandler) -> None:
        self.parents.append(self._count("except", self._stmt_range(node)))
        if node.type is not None:
            self.visit(node.type)
        self.visit_list(node.body)
        self.parents.pop()

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        self.parents.append(self._count("with", self._stmt_range(node)))
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._target(item.optional_vars)
        self.visit_list(node.body)
        self.parents.pop()

    def _match(self, node: ast.Match) -> None:
        node_id = self._count("match", self._stmt_range(node))
        self.parents.append(node_id)
        after: ast.AST = node.subject
        for i, case in enumerate(node.cases):
            self._arm(node_id, f"case{i}", self._keyword_block(after, case.body))
            after = case.body[-1]
        self.visit(node.subject)
        for case in node.cases:
            if case.guard is not None:
                self.visit(case.guard)
            self.visit_list(case.body)
        self.parents.pop()

    # definitions
    def _arguments(self, args: ast.arguments, annotations: bool) -> None:
        visit = self.visit
        positional = [*args.posonlyargs, *args.args]
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
        defaults.extend(args.defaults)
        for arg, default in zip(positional, defaults):
            if annotations and arg.annotation is not None:
                visit(arg.annotation)
            if default is not None:
                visit(default)
        if annotations and args.vararg is not None and args.vararg.annotation is not None:
            visit(args.vararg.annotation)
        for arg, default in zip(args.kwonlyargs, args.kw_defaults):
            if annotations and arg.annotation is not None:
                visit(arg.annotation)
            if default is not None:
                visit(default)
        if annotations and args.kwarg is not None and args.kwarg.annotation is not None:
            visit(args.kwarg.annotation)

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, kind: str) -> None:
        _qualname, prefix, _counters = self.scopes[-1]
        rng = self._stmt_range(node)
        name = node.name
        if not self.ascii[rng[0] - 1]:  # ast NFKC-normalises identifiers, libcst keeps the source text
            match = _DEF_NAME.match(self.lines[rng[0] - 1], rng[1])
            if match is not None:
                name = match.group(1)
        base = f"{prefix}{name}"
        count = self.seen.get(base, 0) + 1
        self.seen[base] = count
        qualname = base if count == 1 else f"{base}@{count}"
        node_id = f"{self.module}:{qualname}"
        self._add(node_id, kind, rng, qualname, name)
        self.scopes.append((qualname, f"{qualname}.<locals>." if kind == "function" else f"{qualname}.", {}))
        self.parents.append(node_id)
        self.visit_list(node.body)
        self.scopes.pop()
        self.parents.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.visit_list(node.decorator_list)
        self._arguments(node.args, True)
        if node.returns is not None:
            self.visit(node.returns)
        self._definition(node, "function")

    def _class(self, node: ast.ClassDef) -> None:
        self.visit_list(node.decorator_list)
        self.visit_list(node.bases)
        self.visit_list(node.keywords)
        self._definition(node, "class")

    # expressions
    def _counted_generic(self, node: ast.Yield | ast.YieldFrom | ast.Await) -> None:
        self.parents.append(self._count_node("yield" if type(node) is not ast.Await else "await", node))
        if node.value is not None:
            self.visit(node.value)
        self.parents.pop()

    def _call(self, node: ast.Call) -> None:
        self.parents.append(self._count_node("call", node))
        visit = self.visit
        visit(node.func)
        args, keywords = node.args, node.keywords
        if args and keywords and _position(args[-1]) > _position(keywords[0]):
            for child in sorted([*args, *keywords], key=_position):
                visit(child)
        else:
            for child in args:
                visit(child)
            for child in keywords:
                visit(child)
        self.parents.pop()

    def _lambda(self, node: ast.Lambda) -> None:
        self.parents.append(self._count_node("lambda", node))
        self._arguments(node.args, False)
        self.visit(node.body)
        self.parents.pop()

    def _if_exp(self, node: ast.IfExp) -> None:
        node_id = self._count_node("if_exp", node)
        self.parents.append(node_id)
        self._arm(node_id, "true", self._expr_range(node.body))
        self._arm(node_id, "false", self._expr_range(node.orelse))
        self.visit(node.body)
        self.visit(node.test)
        self.visit(node.orelse)
        self.parents.pop()

    def _bool_op(self, node: ast.BoolOp) -> None:
        node_id = self._count_node("bool_op", node)
        self.parents.append(node_id)
        for i, operand in enumerate(node.values):
            self._arm(node_id, f"op{i}", self._expr_range(operand))
        self.visit_list(node.values)
        self.parents.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        self.parents.append(self._count("comprehension", self._expr_range(node)))
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        for generator in node.generators:
            self._target(generator.target)
            self.visit(generator.iter)
            self.visit_list(generator.ifs)
        self.parents.pop()

    def _bin_op(self, node: ast.BinOp) -> None:
        # Iterative along the left spine: "a + b + ... + z" nests as deep as it is long.
        rights = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp):
            rights.append(left.right)
            left = left.left
        if type(left) not in _LEAVES:
            self.visit(left)
        for right in reversed(rights):
            if type(right) not in _LEAVES:
                self.visit(right)

    def _dict(self, node: ast.Dict) -> None:
        visit = self.visit
        for key, value in zip(node.keys, node.values):
            if key is not None:
                visit(key)
            visit(value)


def _last_statement(node: ast.AST) -> ast.AST:
    """The statement a compound statement ends with (itself for a simple statement)."""
    if isinstance(node, ast.Match):
        return node.cases[-1].body[-1]
    for name in ("finalbody", "orelse", "handlers", "body"):
        block = getattr(node, name, None)
        if block:
            return block[-1]
    return node


def _position(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset  # type: ignore[attr-defined]


def _last_child(node: ast.GeneratorExp) -> ast.AST:
    last = node.generators[-1]
    return last.ifs[-1] if last.ifs else last.iter


def assign_node_ids_ast(source: str, module: str, file: str = "", code_version: str | None = None,
                        tree: ast.Module | None = None) -> ModuleNodes:
    """Name every instrumentable construct of ``source`` exactly like :func:`.node_ids.assign_node_ids`.

    ``tree`` is ``ast.parse(source)`` if the caller already has it (it is not modified). Raises
    :class:`SyntaxError` for source :mod:`ast` cannot parse. ``code_version`` defaults to the hash of
    ``source``.
    """
    # libcst drops a leading BOM and counts line 1 without it, but the code text keeps it.
    text = source[1:] if source.startswith("\ufeff") else source
    if tree is None:
        tree = ast.parse(text)
    out = ModuleNodes(module=module, file=file, code_version=code_version or code_version_of(source))
    lines = split_lines(source)
    end_line = max(1, len(lines))
    out.nodes.append(NodeInfo(module_id(module), "module", "<module>", module, 1, 0, end_line,
                              len(lines[-1]) if lines else 0, "", (lines[0] if lines else "")[:CODE_LIMIT]))
    walker = _Walker(module, lines if text is source else split_lines(text), out, lines)
    if "\f" in text:
        walker.plan_form_feeds(tree.body, "")
    walker.visit_list(tree.body)
    return out

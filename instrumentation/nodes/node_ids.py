"""Node IDs: one libcst parse per module gives every instrumentable construct a stable ID.

Contract (DESIGN.md "Node IDs"):

* ``<module>:<qualname>`` names a definition (function, class) and ``<module>:<module>`` the module.
* ``<module>:<scope>:<kind>#<n>`` names the n-th construct of ``kind`` inside the definition
  ``scope`` (``<module>`` at module level), counted in source order *within that definition only*.
  Adding or removing code outside a function therefore leaves every ID inside it unchanged.
* Branch arms hang off the construct they belong to: ``<if id>.true`` / ``.false``, ``<loop id>.body`` /
  ``.else``, ``<try id>.else`` / ``.finally``, ``<match id>.case<i>``, ``<bool_op id>.op<i>``,
  ``<if_exp id>.true`` / ``.false``.
* Line numbers are node properties, never part of an ID. ``code_version`` is a hash of the source.

:func:`assign_node_ids` computes the IDs from the libcst tree: it is the reference definition.
:func:`name_nodes` is what the import hook and the analysis call: it gives the same rows from the
:mod:`ast` tree they parse anyway (:mod:`.node_ids_ast`, ~20x faster, checked row for row against
the reference on real code by the tests) and falls back to the reference if that ever fails. The
rewriter (which works on :mod:`ast` so that every original line and column survives compilation)
finds IDs again by ``(kind, start, end)`` through :meth:`ModuleNodes.lookup`. Both trees exclude
parentheses from node ranges; libcst columns count characters, :mod:`ast` columns count UTF-8 bytes,
and :class:`AstPositions` converts.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field

CODE_LIMIT = 240
"""Maximum number of characters of source kept per node (``cpg_nodes.code``)."""

# The same kinds, named from the ast side (used by the rewriter to find IDs again).
AST_KINDS: dict[type, str] = {
    ast.Assign: "assign", ast.AnnAssign: "ann_assign", ast.AugAssign: "aug_assign", ast.Expr: "expr",
    ast.Return: "return", ast.Raise: "raise", ast.Assert: "assert", ast.Pass: "pass",
    ast.Break: "break", ast.Continue: "continue", ast.Delete: "del", ast.Global: "global",
    ast.Nonlocal: "nonlocal", ast.Import: "import", ast.ImportFrom: "import_from",
    ast.If: "if", ast.For: "for", ast.AsyncFor: "for", ast.While: "while", ast.Try: "try",
    ast.With: "with", ast.AsyncWith: "with", ast.Match: "match",
    ast.FunctionDef: "function", ast.AsyncFunctionDef: "function", ast.ClassDef: "class",
    ast.Call: "call", ast.Lambda: "lambda", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Await: "await",
    ast.IfExp: "if_exp", ast.NamedExpr: "walrus", ast.BoolOp: "bool_op", ast.ExceptHandler: "except",
    ast.ListComp: "comprehension", ast.SetComp: "comprehension", ast.DictComp: "comprehension",
    ast.GeneratorExp: "comprehension",
}
for _name, _kind in (("TryStar", "try"), ("TypeAlias", "type_alias")):
    if hasattr(ast, _name):
        AST_KINDS[getattr(ast, _name)] = _kind

_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One instrumentable construct. Positions are 1-based lines and 0-based character columns."""

    node_id: str
    kind: str
    qualname: str
    """Qualified name of the enclosing definition (the definition itself for functions/classes)."""
    name: str
    """Defined or assigned name (functions, classes, targets), arm label for arms, else empty."""
    line: int
    col: int
    end_line: int
    end_col: int
    parent_id: str
    code: str


@dataclass(slots=True)
class ModuleNodes:
    """All nodes of one module version, in source order, plus the position index for the rewriter."""

    module: str
    file: str
    code_version: str
    nodes: list[NodeInfo] = field(default_factory=list)
    _by_position: dict[tuple[str, int, int, int, int], str] = field(default_factory=dict)

    def lookup(self, kind: str, line: int, col: int, end_line: int, end_col: int) -> str | None:
        """The ID of the ``kind`` node spanning exactly this range (character columns), if any."""
        return self._by_position.get((kind, line, col, end_line, end_col))


def code_version_of(source: bytes | str) -> str:
    """Hash of a module's source: 16 hex digits, the same on every machine."""
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def module_id(module: str) -> str:
    return f"{module}:<module>"


def split_lines(source: str) -> list[str]:
    """Source lines as Python's tokenizer counts them (only \\r\\n, \\r and \\n end a line)."""
    return _LINE_SPLIT.split(source)


def assign_node_ids(source: str, module: str, file: str = "", code_version: str | None = None) -> ModuleNodes:
    """The reference naming from a libcst parse (:mod:`.node_ids_cst`; libcst is imported only when
    this is called). Raises ``libcst.ParserSyntaxError`` for source libcst cannot parse."""
    from execscope.instrumentation.nodes.node_ids_cst import assign_node_ids as reference

    return reference(source, module, file, code_version)


def name_nodes(source: str, module: str, file: str = "", code_version: str | None = None,
               tree: ast.Module | None = None) -> ModuleNodes:
    """Node rows of one module from its :mod:`ast` ``tree`` (parsed here if not given); equal to
    :func:`assign_node_ids`. Raises SyntaxError for source Python cannot parse."""
    from execscope.instrumentation.nodes.node_ids_ast import assign_node_ids_ast

    if tree is None:
        tree = ast.parse(source, filename=file or "<unknown>")
    try:
        return assign_node_ids_ast(source, module, file, code_version, tree=tree)
    except SyntaxError:
        raise
    except Exception:  # a construct the fast path does not know: the reference names it
        return assign_node_ids(source, module, file, code_version)


class AstPositions:
    """Converts :mod:`ast` byte columns to the character columns node IDs are indexed by."""

    def __init__(self, source: str) -> None:
        self._lines = split_lines(source)
        self._ascii = [line.isascii() for line in self._lines]

    def column(self, line: int, byte_col: int) -> int:
        if line - 1 >= len(self._lines) or self._ascii[line - 1]:
            return byte_col
        return len(self._lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", "replace"))

    def key(self, node: ast.AST) -> tuple[int, int, int, int]:
        line = node.lineno  # type: ignore[attr-defined]
        end_line = node.end_lineno  # type: ignore[attr-defined]
        start = (line, self.column(line, node.col_offset))  # type: ignore[attr-defined]
        end = (end_line, self.column(end_line, node.end_col_offset))  # type: ignore[attr-defined]
        if isinstance(node, ast.GeneratorExp):
            # ast counts the enclosing parentheses (the call's, for a sole argument); libcst does not
            start, end = self._inside_parens(start, end)
        return (*start, *end)

    def _inside_parens(self, start: tuple[int, int], end: tuple[int, int]
                       ) -> tuple[tuple[int, int], tuple[int, int]]:
        line, col = start
        if self._char(line, col) == "(":
            col += 1
            while True:
                text = self._lines[line - 1] if line - 1 < len(self._lines) else ""
                while col < len(text) and text[col] in " \t\f\\":
                    col += 1
                if col < len(text) or line >= len(self._lines):
                    break
                line, col = line + 1, 0
        end_line, end_col = end
        if self._char(end_line, end_col - 1) == ")":
            end_col -= 1
            while True:
                text = self._lines[end_line - 1]
                while end_col > 0 and text[end_col - 1] in " \t\f\\":
                    end_col -= 1
                if end_col > 0 or end_line <= 1:
                    break
                end_line -= 1
                end_col = len(self._lines[end_line - 1])
        return (line, col), (end_line, end_col)

    def _char(self, line: int, col: int) -> str:
        if 0 < line <= len(self._lines) and 0 <= col < len(self._lines[line - 1]):
            return self._lines[line - 1][col]
        return ""


class IdResolver:
    """Finds the node ID of an :mod:`ast` node again (by kind and character range); what it cannot
    find is listed in ``unmatched`` (``kind@line:col``), which should stay empty."""

    def __init__(self, nodes: ModuleNodes, source: str) -> None:
        self.nodes = nodes
        self.positions = AstPositions(source)
        self.unmatched: list[str] = []

    def __call__(self, node: ast.AST, kind: str | None = None) -> str | None:
        kind = kind or AST_KINDS.get(type(node))
        if kind is None:
            return None
        found = self.nodes.lookup(kind, *self.positions.key(node))
        if found is None:
            self.unmatched.append(f"{kind}@{node.lineno}:{node.col_offset}")  # type: ignore[attr-defined]
        return found

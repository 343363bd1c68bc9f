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
from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

CODE_LIMIT = 240
"""Maximum number of characters of source kept per node (``cpg_nodes.code``)."""

_SMALL_STATEMENTS: dict[type, str] = {
    cst.Assign: "assign",
    cst.AnnAssign: "ann_assign",
    cst.AugAssign: "aug_assign",
    cst.Expr: "expr",
    cst.Return: "return",
    cst.Raise: "raise",
    cst.Assert: "assert",
    cst.Pass: "pass",
    cst.Break: "break",
    cst.Continue: "continue",
    cst.Del: "del",
    cst.Global: "global",
    cst.Nonlocal: "nonlocal",
    cst.Import: "import",
    cst.ImportFrom: "import_from",
}
_COMPOUND: dict[type, str] = {
    cst.If: "if",
    cst.For: "for",
    cst.While: "while",
    cst.Try: "try",
    cst.With: "with",
    cst.Match: "match",
}
_EXPRESSIONS: dict[type, str] = {
    cst.Call: "call",
    cst.Lambda: "lambda",
    cst.Yield: "yield",
    cst.Await: "await",
    cst.IfExp: "if_exp",
    cst.NamedExpr: "walrus",
    cst.ListComp: "comprehension",
    cst.SetComp: "comprehension",
    cst.DictComp: "comprehension",
    cst.GeneratorExp: "comprehension",
}
for _name, _kind in (("TryStar", "try"), ("TypeAlias", "type_alias")):
    if hasattr(cst, _name):
        (_COMPOUND if _kind == "try" else _SMALL_STATEMENTS)[getattr(cst, _name)] = _kind

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


class _Scope:
    __slots__ = ("qualname", "locals_prefix", "counters")

    def __init__(self, qualname: str, locals_prefix: str) -> None:
        self.qualname = qualname
        self.locals_prefix = locals_prefix  # prefix for nested definitions' qualnames
        self.counters: dict[str, int] = {}


class _NodeCollector(cst.CSTVisitor):
    """Walks one module, numbering nodes per (definition, kind). One concern: naming."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, out: ModuleNodes, lines: Sequence[str]) -> None:
        super().__init__()
        self.out = out
        self.lines = lines
        self.scopes: list[_Scope] = [_Scope("<module>", "")]
        self.parents: list[str] = [module_id(out.module)]
        self.seen_qualnames: dict[str, int] = {}
        self.target_nodes: set[int] = set()

    # --- helpers -------------------------------------------------------------------------------
    def _code(self, rng: CodeRange) -> str:
        first = self.lines[rng.start.line - 1] if rng.start.line - 1 < len(self.lines) else ""
        if rng.start.line == rng.end.line:
            text = first[rng.start.column : rng.end.column]
        else:
            text = first[rng.start.column :]
        return text if len(text) <= CODE_LIMIT else text[: CODE_LIMIT - 1] + "…"

    def _add(self, node_id: str, kind: str, rng: CodeRange, *, qualname: str | None = None,
             name: str = "", index: bool = True) -> str:
        info = NodeInfo(
            node_id=node_id, kind=kind, qualname=qualname or self.scopes[-1].qualname, name=name,
            line=rng.start.line, col=rng.start.column, end_line=rng.end.line, end_col=rng.end.column,
            parent_id=self.parents[-1], code=self._code(rng),
        )
        self.out.nodes.append(info)
        if index:
            self.out._by_position.setdefault(
                (kind, rng.start.line, rng.start.column, rng.end.line, rng.end.column), node_id)
        return node_id

    def _counted(self, kind: str, node: cst.CSTNode, *, name: str = "") -> str:
        scope = self.scopes[-1]
        n = scope.counters.get(kind, 0)
        scope.counters[kind] = n + 1
        node_id = f"{self.out.module}:{scope.qualname}:{kind}#{n}"
        return self._add(node_id, kind, self.get_metadata(PositionProvider, node), name=name)

    def _arm(self, owner_id: str, label: str, node: cst.CSTNode) -> None:
        self._add(f"{owner_id}.{label}", "arm", self.get_metadata(PositionProvider, node),
                  name=label, index=False)

    def _push(self, node_id: str) -> None:
        self.parents.append(node_id)

    # --- definitions ---------------------------------------------------------------------------
    def _definition(self, node: cst.FunctionDef | cst.ClassDef, kind: str) -> bool:
        # Decorators, defaults, annotations and bases run in the enclosing scope: number them there.
        for decorator in node.decorators:
            decorator.visit(self)
        if isinstance(node, cst.FunctionDef):
            node.params.visit(self)
            if node.returns is not None:
                node.returns.visit(self)
        else:
            for arg in (*node.bases, *node.keywords):
                arg.visit(self)
        scope = self.scopes[-1]
        base = f"{scope.locals_prefix}{node.name.value}"
        count = self.seen_qualnames.get(base, 0) + 1
        self.seen_qualnames[base] = count
        qualname = base if count == 1 else f"{base}@{count}"
        node_id = f"{self.out.module}:{qualname}"
        self._add(node_id, kind, self.get_metadata(PositionProvider, node), qualname=qualname,
                  name=node.name.value)
        prefix = f"{qualname}.<locals>." if kind == "function" else f"{qualname}."
        self.scopes.append(_Scope(qualname, prefix))
        self._push(node_id)
        node.body.visit(self)
        self.scopes.pop()
        self.parents.pop()
        return False  # children handled above

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return self._definition(node, "function")

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return self._definition(node, "class")

    # --- statements, expressions and arms ------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        t = type(node)
        kind = _SMALL_STATEMENTS.get(t) or _COMPOUND.get(t) or _EXPRESSIONS.get(t)
        if kind is not None:
            node_id = self._counted(kind, node)
            self._push(node_id)
            if t in _COMPOUND or t is cst.IfExp:
                self._arms(node, node_id)
            self._collect_targets(node)
        elif isinstance(node, cst.BooleanOperation):
            if id(node) in self.target_nodes:  # flattened into its parent chain
                self._push(self.parents[-1])
            else:
                node_id = self._counted("bool_op", node)
                self._push(node_id)
                for i, operand in enumerate(self._bool_operands(node)):
                    self._arm(node_id, f"op{i}", operand)
        elif isinstance(node, (cst.ExceptHandler, getattr(cst, "ExceptStarHandler", cst.ExceptHandler))):
            self._push(self._counted("except", node))
        elif id(node) in self.target_nodes:
            name = node.value if isinstance(node, cst.Name) else ""
            self._push(self._counted("target", node, name=name))
        else:
            return super().on_visit(node)
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        t = type(original_node)
        if (t in _SMALL_STATEMENTS or t in _COMPOUND or t in _EXPRESSIONS
                or isinstance(original_node, cst.BooleanOperation)
                or isinstance(original_node, (cst.ExceptHandler,
                                              getattr(cst, "ExceptStarHandler", cst.ExceptHandler)))
                or id(original_node) in self.target_nodes):
            self.parents.pop()
        super().on_leave(original_node)

    def _bool_operands(self, node: cst.BooleanOperation) -> list[cst.BaseExpression]:
        # libcst nests left-associatively; ast flattens an unparenthesised chain of one operator.
        operands: list[cst.BaseExpression] = []
        current: cst.BaseExpression = node
        while (isinstance(current, cst.BooleanOperation) and type(current.operator) is type(node.operator)
               and (current is node or not current.lpar)):
            operands.append(current.right)
            if current is not node:
                self.target_nodes.add(id(current))
            current = current.left
        operands.append(current)
        operands.reverse()
        return operands

    def _arms(self, node: cst.CSTNode, node_id: str) -> None:
        if isinstance(node, cst.If):
            self._arm(node_id, "true", node.body)
            self._arm(node_id, "false", node.orelse if node.orelse is not None else node)
        elif isinstance(node, (cst.For, cst.While)):
            self._arm(node_id, "body", node.body)
            if node.orelse is not None:
                self._arm(node_id, "else", node.orelse)
        elif isinstance(node, cst.IfExp):
            self._arm(node_id, "true", node.body)
            self._arm(node_id, "false", node.orelse)
        elif isinstance(node, cst.Match):
            for i, case in enumerate(node.cases):
                self._arm(node_id, f"case{i}", case)
        elif hasattr(node, "handlers"):  # Try / TryStar
            orelse = getattr(node, "orelse", None)
            final = getattr(node, "finalbody", None)
            if orelse is not None:
                self._arm(node_id, "else", orelse)
            if final is not None:
                self._arm(node_id, "finally", final)

    def _collect_targets(self, node: cst.CSTNode) -> None:
        targets: list[cst.BaseExpression] = []
        if isinstance(node, cst.Assign):
            targets = [t.target for t in node.targets]
        elif isinstance(node, (cst.AnnAssign, cst.AugAssign, cst.For, cst.NamedExpr)):
            targets = [node.target]
        elif isinstance(node, cst.With):
            targets = [item.asname.name for item in node.items if item.asname is not None]
        elif isinstance(node, (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)):
            comp: cst.CompFor | None = node.for_in
            while comp is not None:
                targets.append(comp.target)
                comp = comp.inner_for_in
        for target in targets:
            self._mark_target(target)

    def _mark_target(self, target: cst.BaseExpression) -> None:
        if isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._mark_target(element.value)
        elif isinstance(target, cst.StarredElement):
            self._mark_target(target.value)
        elif isinstance(target, (cst.Name, cst.Attribute, cst.Subscript)):
            self.target_nodes.add(id(target))


def split_lines(source: str) -> list[str]:
    """Source lines as Python's tokenizer counts them (only \\r\\n, \\r and \\n end a line)."""
    return _LINE_SPLIT.split(source)


def assign_node_ids(source: str, module: str, file: str = "", code_version: str | None = None) -> ModuleNodes:
    """Parse ``source`` once with libcst and name every instrumentable construct.

    Raises ``libcst.ParserSyntaxError`` for source libcst cannot parse; callers decide what to do.
    ``code_version`` defaults to the hash of ``source``; the import hook passes the hash of the bytes
    on disk. Pure and deterministic: the same (source, module) gives the same IDs on every machine.
    """
    out = ModuleNodes(module=module, file=file, code_version=code_version or code_version_of(source))
    tree = cst.parse_module(source)
    wrapper = MetadataWrapper(tree, unsafe_skip_copy=True)
    lines = split_lines(source)
    end_line = max(1, len(lines))
    out.nodes.append(NodeInfo(module_id(module), "module", "<module>", module, 1, 0, end_line,
                              len(lines[-1]) if lines else 0, "", (lines[0] if lines else "")[:CODE_LIMIT]))
    wrapper.visit(_NodeCollector(out, lines))
    return out


def name_nodes(source: str, module: str, file: str = "", code_version: str | None = None,
               tree: ast.Module | None = None) -> ModuleNodes:
    """Node rows of one module from its :mod:`ast` ``tree`` (parsed here if not given); equal to
    :func:`assign_node_ids`. Raises SyntaxError for source Python cannot parse."""
    from execscope.instrumentation.node_ids_ast import assign_node_ids_ast

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

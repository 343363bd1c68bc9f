"""The reference definition of node IDs: one libcst parse per module (see :mod:`.node_ids`).

Kept apart so that importing :mod:`.node_ids` (every recorded process does, through the import
hook) does not import libcst; :func:`.node_ids.name_nodes` falls back to this module only when its
:mod:`ast` fast path cannot name a construct, and the tests check the fast path against it.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from execscope.instrumentation.nodes.node_ids import (
    CODE_LIMIT,
    ModuleNodes,
    NodeInfo,
    code_version_of,
    module_id,
    split_lines,
)

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

"""Node IDs: deterministic, unique, readable, and stable under edits elsewhere in the file."""

from __future__ import annotations

import ast
import sysconfig
import textwrap
from pathlib import Path

import pytest

from execscope.instrumentation.nodes.node_ids import AST_KINDS, AstPositions, assign_node_ids, code_version_of
from execscope.instrumentation.rewrite.rewriter import rewrite_source

SAMPLE = textwrap.dedent('''
    """Module doc."""
    import os

    @decorate(1)
    def first(a, b=compute()):
        if a and b or c:
            x, *rest = a
        elif b:
            pass
        else:
            x = [i for i in a if i]
        for i in range(3):
            total = yield i
        while x:
            break
        else:
            pass
        try:
            y = call(x)
        except (KeyError, ValueError) as err:
            raise RuntimeError() from err
        finally:
            cleanup()
        with open(p) as fh, lock:
            fh.read()
        return (lambda q: q)(a) if a else None

    class Klass(Base):
        attr = 1

        def method(self):
            match self.attr:
                case 1 if self:
                    return super().method()
                case _:
                    return None

    async def coro():
        async with ctx() as c:
            await c
        async for item in stream():
            (n := item)
''')


def ids(source: str, module: str = "pkg.mod") -> list[str]:
    return [n.node_id for n in assign_node_ids(source, module, "mod.py").nodes]


def test_deterministic() -> None:
    assert ids(SAMPLE) == ids(SAMPLE)
    assert code_version_of(SAMPLE) == code_version_of(SAMPLE.encode())


def test_unique() -> None:
    all_ids = ids(SAMPLE)
    assert len(all_ids) == len(set(all_ids))


def test_every_listed_construct_has_a_kind() -> None:
    kinds = {n.kind for n in assign_node_ids(SAMPLE, "pkg.mod").nodes}
    for kind in ("module", "class", "function", "lambda", "if", "for", "while", "try", "with", "match",
                 "call", "target", "return", "raise", "yield", "await", "except", "arm", "bool_op",
                 "if_exp", "comprehension", "walrus", "assign", "expr", "import", "pass", "break"):
        assert kind in kinds, kind


def test_readable_prefix_and_arms() -> None:
    nodes = {n.node_id: n for n in assign_node_ids(SAMPLE, "pkg.mod").nodes}
    assert "pkg.mod:<module>" in nodes
    assert nodes["pkg.mod:first"].kind == "function"
    assert nodes["pkg.mod:Klass.method"].qualname == "Klass.method"
    assert nodes["pkg.mod:first:if#0.true"].kind == "arm"
    assert nodes["pkg.mod:first:if#0.false"].parent_id == "pkg.mod:first:if#0"
    assert nodes["pkg.mod:Klass.method:match#0.case1"].name == "case1"
    assert nodes["pkg.mod:first:try#0.finally"].kind == "arm"
    # decorators and defaults run in the enclosing scope and are numbered there
    assert nodes["pkg.mod:<module>:call#0"].code == "decorate(1)"
    assert nodes["pkg.mod:<module>:call#1"].code == "compute()"


def _function_ids(source: str, qualname: str) -> list[tuple[str, str]]:
    return [(n.node_id, n.code) for n in assign_node_ids(source, "pkg.mod").nodes
            if n.qualname == qualname or n.qualname.startswith(qualname + ".")]


def test_ids_inside_a_function_survive_edits_elsewhere() -> None:
    before = _function_ids(SAMPLE, "Klass.method")
    edited = SAMPLE.replace("import os\n", "import os\nimport sys\n\n\ndef added():\n    if 1:\n        return 2\n")
    edited = edited.replace("        with open(p) as fh, lock:\n            fh.read()\n", "")
    edited = edited.replace("async def coro", "# a comment\n\nasync def coro")
    after = _function_ids(edited, "Klass.method")
    assert before == after
    lines_before = {n.node_id: n.line for n in assign_node_ids(SAMPLE, "pkg.mod").nodes}
    lines_after = {n.node_id: n.line for n in assign_node_ids(edited, "pkg.mod").nodes}
    assert lines_before["pkg.mod:Klass.method"] != lines_after["pkg.mod:Klass.method"]  # lines moved


def test_duplicate_definitions_are_disambiguated() -> None:
    src = "if X:\n    def f(): pass\nelse:\n    def f(): return 1\n"
    all_ids = ids(src, "m")
    assert "m:f" in all_ids and "m:f@2" in all_ids and "m:f@2:return#0" in all_ids


def test_non_ascii_columns_match_ast() -> None:
    src = "def f():\n    é = 'ü'; x = call(é)\n    return x\n"
    tree, _nodes, stats = rewrite_source(src, "m", "m.py", 3)
    assert stats.unmatched == []


def _stdlib_sample() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    names = ["argparse.py", "json/decoder.py", "asyncio/tasks.py", "dataclasses.py", "functools.py",
             "collections/__init__.py", "contextlib.py", "email/message.py", "typing.py", "enum.py",
             "pathlib.py", "inspect.py", "ast.py", "re/_parser.py", "unittest/case.py"]
    return [root / n for n in names if (root / n).exists()]


@pytest.mark.parametrize("path", _stdlib_sample(), ids=lambda p: p.name)
def test_every_construct_the_rewriter_needs_is_found_again(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    nodes = assign_node_ids(source, "std", str(path))
    positions = AstPositions(source)
    missing = []
    for node in ast.walk(ast.parse(source)):
        kind = AST_KINDS.get(type(node))
        if kind is not None and nodes.lookup(kind, *positions.key(node)) is None:
            missing.append(f"{kind}@{node.lineno}")  # type: ignore[attr-defined]
    assert missing == []
    _tree, _n, stats = rewrite_source(source, "std", str(path), 3)
    assert stats.unmatched == []

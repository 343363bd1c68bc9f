"""The layout's import rules (DESIGN.md "Layout"), checked on the source: a wing that imports what it
must not fails here, not in a reviewer's head."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTRUMENTATION = REPO / "instrumentation"
P = "execscope.instrumentation"

FORBIDDEN = {
    "nodes": (f"{P}.rewrite", f"{P}.capture", f"{P}.export", f"{P}.analysis"),
    "analysis": (f"{P}.capture", f"{P}.export", f"{P}.rewrite"),
    "capture": (f"{P}.analysis", f"{P}.export", f"{P}.rewrite"),
    "export": (f"{P}.analysis", f"{P}.rewrite"),
}
NEVER_FROM_INSTRUMENTATION = ("execscope.queries", "execscope.collector", "execscope.dashboards", "execscope.storage")


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against ``package``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def wing_files(wing: str) -> list[Path]:
    return sorted((INSTRUMENTATION / wing).glob("*.py"))


@pytest.mark.parametrize("wing", sorted(FORBIDDEN))
def test_each_wing_imports_only_what_it_may(wing: str) -> None:
    files = wing_files(wing)
    assert files, f"no modules in instrumentation/{wing}"
    breaches = [f"{path.relative_to(REPO)} imports {module}"
                for path in files for module in sorted(imported_modules(path, f"{P}.{wing}"))
                if module.startswith(FORBIDDEN[wing])]
    assert not breaches, "\n".join(breaches)


def test_instrumentation_never_imports_the_reading_side() -> None:
    breaches = [f"{path.relative_to(REPO)} imports {module}"
                for path in sorted(INSTRUMENTATION.rglob("*.py"))
                for module in sorted(imported_modules(path, P)) if module.startswith(NEVER_FROM_INSTRUMENTATION)]
    assert not breaches, "\n".join(breaches)


def test_every_wing_says_what_it_owns_and_may_import() -> None:
    for wing in FORBIDDEN:
        doc = ast.get_docstring(ast.parse((INSTRUMENTATION / wing / "__init__.py").read_text())) or ""
        assert "Owns:" in doc and "May import:" in doc, wing


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from ..export import otlp_encode\nimport execscope.instrumentation.analysis.cfg\n")
    found = imported_modules(module, f"{P}.capture")
    assert f"{P}.export.otlp_encode" in found and f"{P}.analysis.cfg" in found

"""The package's layout reads as the pipeline: imports point one way, down the stages, with no cycle,
and no module grows past 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "kabuild"
# The stages in pipeline order; a module may import its own stage and the ones before it.
STAGES = ("config", "inputs", "build", "compare", "report", "reproduce", "publish", "install", "cli")
FOUNDATION = {"__init__", "errors", "files", "process", "timestamps", "tools"}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(("kabuild", *parts)).removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every kabuild module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def _stage(name: str) -> int:
    parts = name.split(".")
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return -1
    if parts[1] == "__main__":
        return len(STAGES)
    return STAGES.index(parts[1])


def test_every_module_belongs_to_a_stage_or_the_foundation():
    for name in MODULES:
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in FOUNDATION | set(STAGES) | {"__main__"}, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down_the_pipeline(name):
    upward = sorted(t for t in _imports(name, MODULES[name]) if _stage(t) > _stage(name))
    assert not upward, f"{name} ({_stage(name)}) imports a later stage: {upward}"


def test_there_is_no_import_cycle():
    graph = {n: _imports(n, p) for n, p in MODULES.items()}
    # a package imports its own modules (re-exports); that is not a cycle through the package
    graph = {n: {t for t in ts if not t.startswith(n + ".")} for n, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for t in sorted(graph[n]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_500_lines(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def test_the_checks_can_fail():
    """The graph reader sees a lazy import inside a function (the kind a cycle hides in)."""
    assert "kabuild.report.runs" in _imports("kabuild.report.status", MODULES["kabuild.report.status"])
    assert _stage("kabuild.cli.app") > _stage("kabuild.config.manifest") > _stage("kabuild.errors")

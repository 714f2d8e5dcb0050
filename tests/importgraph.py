"""The package's import graph, read from the source (AST, imports inside functions included)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vrlic"

# Layer ranks: a module may import from a lower rank, or from its own subpackage; peers of one rank
# (training / measure; study / draw) stay independent. pipeline reads training's defaults.
RANKS = {"infra": 0, "codec": 1, "data": 2, "training": 3, "measure": 3, "pipeline": 4, "study": 5, "draw": 5,
         "report": 6, "scaling": 7, "cli": 8, "verify": 8, "testing": 8, "__init__": 0}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The vrlic modules ``path`` imports (``from vrlic.x import y`` counts y when y is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "vrlic":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (use absolute vrlic.* imports)")
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "vrlic")
    return {m for m in out if m in known and m != "vrlic"}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(p, known) for m, p in mods.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def closure(start: set[str], g: dict[str, set[str]] | None = None) -> set[str]:
    """Every vrlic module reachable from ``start`` (parent packages' __init__ included)."""
    g = graph() if g is None else g
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen or m not in g:
            continue
        seen.add(m)
        todo.extend(g[m])
        parent = m.rsplit(".", 1)[0]
        if parent != m:
            todo.append(parent)
    return seen


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def notebook_imports(path: Path) -> set[str]:
    """The vrlic modules a jupytext notebook imports."""
    known = set(modules())
    return imports_of(path, known)

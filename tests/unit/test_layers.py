"""Imports point one way (docs/architecture.md, "Layout"): a domain's models and services
import only the domains below it, and no module of a domain imports another domain inside a
function (the way a cycle is dodged). Read from the source with `ast`, so it holds for every
module, imported by a test or not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "stillmotion"
# From the bottom (the engine is a library under everything); a domain may import those before it.
LAYERS = [
    "engine",
    "services",
    "accounts",
    "credits",
    "uploads",
    "webhooks",
    "generations",
    "providers",
    "jobs",
]
# Transports and presenters sit on top of every domain (they may read any).
TOP = {"rest.py", "gql.py", "views.py"}


def _imports(tree: ast.AST):
    """(module imported, whether inside a function) for every `stillmotion.…` import."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module:
                names = [child.module] + [f"{child.module}.{a.name}" for a in child.names]
                out.extend((n, inner) for n in names if n.startswith("stillmotion."))
            elif isinstance(child, ast.Import):
                out.extend(
                    (a.name, inner) for a in child.names if a.name.startswith("stillmotion.")
                )
            visit(child, inner)

    visit(tree, False)
    return out


def _domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def _modules():
    for layer in LAYERS:
        for path in sorted((SRC / layer).rglob("*.py")):
            yield layer, path


@pytest.mark.parametrize(("layer", "path"), list(_modules()), ids=lambda v: str(v)[-40:])
def test_a_domain_imports_only_below_it_and_never_inside_a_function(layer, path):
    tree = ast.parse(path.read_text(), filename=str(path))
    below = set(LAYERS[: LAYERS.index(layer)])
    for module, in_function in _imports(tree):
        other = _domain(module)
        if other is None or other == layer:
            continue
        assert not in_function, f"{path.name} imports {module} inside a function"
        if path.name not in TOP:
            assert other in below, f"{path.name} ({layer}) imports {module}, above it"

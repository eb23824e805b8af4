"""The package's layering: no module imports one above it, so there is no import circle.

Read from the source (every ``import``/``from`` statement, lazy ones inside functions too), so
a new upward import fails here, not at run time in some other order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import auditor

PACKAGE = Path(auditor.__file__).parent

#: Bottom to top; a module may import its own layer or lower ones only.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "extras", "jsonsafe", "indented_json", "map_methods"}),
    frozenset({"config", "runtime", "store", "data", "models"}),
    frozenset({"cams", "metrics", "distributed", "summary", "class_image_sums", "first_thumbs"}),
    frozenset({"detect", "pipeline"}),
    frozenset({"run", "report", "compare", "sanity", "explain"}),
    frozenset({"analysis", "probe"}),
    frozenset({"audit"}),
    frozenset({"demo"}),
    frozenset({"cli", "cli_options", "__main__"}),
)


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imported_tops(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "auditor" and len(parts) > 1:
                tops.add(parts[1])
    return tops


def _top(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _top(p) != "__init__")


def test_every_module_has_a_layer() -> None:
    for path in MODULES:
        _layer(_top(path))  # StopIteration names a module missing from LAYERS


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_layer(path: Path) -> None:
    own = _layer(_top(path))
    upward = sorted(top for top in _imported_tops(path) if _layer(top) > own)
    assert not upward, f"{path.relative_to(PACKAGE)} imports higher layer(s) {upward}"

"""What a source file imports, read with ast (no import runs): for the tests of the layout."""

from __future__ import annotations

import ast
from pathlib import Path


def imported_modules(path: Path, root: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules ``path`` imports, relative imports resolved against its
    package under ``root``. ``from a import b`` gives both ``a`` and ``a.b`` (b may be a
    module)."""
    package = list(path.relative_to(root).parent.parts)
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names

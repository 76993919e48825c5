"""streaming is a library: it must never import the HTTP layer (SPEC §1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STREAMING = Path(__file__).parents[2] / "streaming"
FORBIDDEN = ("aiohttp", "proxy")


@pytest.mark.parametrize("path", sorted(STREAMING.rglob("*.py")), ids=lambda p: p.name)
def test_streaming_does_not_import_the_service(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & set(FORBIDDEN), f"{path.name} imports {imported & set(FORBIDDEN)}"

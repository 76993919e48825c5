"""Runtime dependencies are exactly what proxy/ and streaming/ import; the rest is `test`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[1]
FIRST_PARTY = {"proxy", "streaming", "tests"}


def imported_modules(folder: Path) -> set[str]:
    """Top-level names of the absolute imports in every module under ``folder``."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - FIRST_PARTY - set(sys.stdlib_module_names)


def distributions(modules: set[str]) -> set[str]:
    """The installed distributions providing ``modules``, by normalized name."""
    by_module = packages_distributions()
    found = set()
    for module in modules:
        dists = {normalize(dist) for dist in by_module[module]}
        # A package split into parts (pystac: pystac-core and pystac-ext-*, all filling the
        # `pystac` package) is declared by the distribution named after it.
        own = normalize(module)
        found |= {own} if own in dists else dists
    return found


def normalize(requirement: str) -> str:
    """``Foo_Bar>=1.0`` -> ``foo-bar``."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": data["dependencies"], **data["optional-dependencies"]}


def test_runtime_dependencies_are_what_the_product_imports():
    imported = distributions(
        imported_modules(ROOT / "proxy") | imported_modules(ROOT / "streaming")
    )
    assert {normalize(r) for r in project()["runtime"]} == imported


def test_what_only_tests_import_is_in_the_test_extra():
    deps = project()
    declared = {normalize(r) for r in deps["runtime"] + deps["test"]}
    used = distributions(imported_modules(ROOT / "tests") | imported_modules(ROOT / "benchmarks"))
    assert used <= declared, f"undeclared: {used - declared}"

"""Mutation testing of the code that places pixels (issue 15): plant one fault, run the tests.

Each mutant is one small change to one function of a target module (an operator swapped,
a constant moved by one, a comparison flipped, two arguments or two coordinates swapped,
a ``max``/``min``/``round``/``floor`` removed or swapped). The targets, their tests and
the operators are in ``scripts/mutation_targets.py``. The mutated code is swapped into a
fork of a process that imported the tests, or written into a private copy of the tree
(the working tree is never touched), and the module's own test selection runs against it
with ``-x``: a failing or timed-out run kills the mutant, a passing run lets it survive.
Survivors are printed with file, line, function and the change.

    nice -n 10 python scripts/mutation.py              # every target, 2 workers
    python scripts/mutation.py --list                  # print the mutants, run nothing
    python scripts/mutation.py --target streaming/grid.py --jobs 1 --json /tmp/m.json

Why not mutmut: mutmut 3 mutates whole files (auth, XML parsing...), collects stats by
running the whole suite, and cannot give each module its own test selection; the
mutants that matter here are the arithmetic of a few functions, and its operators lack
the coordinate swaps (x/y, left/right, width/height) that move pixels.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

import pytest
from mutation_targets import (
    BINOPS,
    CALL_SWAPS,
    COMPARES,
    MUTANT_TESTS,
    NUMERIC,
    SWAPS,
    TARGETS,
    Target,
)

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("proxy", "streaming", "tests", "pyproject.toml")


@dataclass
class Mutant:
    """One planted fault: where, what, and (after a run) its fate."""

    path: str
    index: int  # position in this target's list, identifies the mutant in a run
    line: int
    scope: str
    original: str
    mutated: str
    source: str = field(repr=False)
    status: str = "pending"  # killed, survived, timeout
    seconds: float = 0.0


def _scoped_nodes(tree: ast.Module, scopes: tuple[str, ...]) -> Iterator[tuple[str, ast.AST]]:
    """(scope, node) for every node of the wanted functions, and top-level assignments."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and "<module>" in scopes:
            yield from (("<module>", node) for node in ast.walk(stmt))
        defs = [(stmt.name, stmt)] if isinstance(stmt, ast.FunctionDef) else []
        if isinstance(stmt, ast.ClassDef):
            defs = [
                (f"{stmt.name}.{f.name}", f)
                for f in stmt.body
                if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
        for name, func in defs:
            if name in scopes:
                body = ast.Module(body=func.body, type_ignores=[])
                yield from ((name, node) for node in ast.walk(body))


def _variants(node: ast.AST, names: set[str]) -> Iterator[ast.AST]:
    """Mutated copies of ``node`` (each to replace it in the tree)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        yield from _constants(node.value)
    elif isinstance(node, ast.Call):
        yield from _calls(node)
    else:
        yield from _operators(node)
        yield from _swaps(node, names)


def _operators(node: ast.AST) -> Iterator[ast.AST]:
    """Arithmetic, comparison and boolean operators swapped; a minus or a ``not`` dropped."""
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        for op in BINOPS[type(node.op)]:
            yield ast.BinOp(node.left, op(), node.right)
    elif isinstance(node, ast.Compare):
        for k, op in enumerate(node.ops):
            if type(op) in COMPARES:
                new = copy.copy(node)
                new.ops = [*node.ops[:k], COMPARES[type(op)](), *node.ops[k + 1 :]]
                yield new
    elif isinstance(node, ast.BoolOp):
        yield ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
        yield node.operand


def _swaps(node: ast.AST, names: set[str]) -> Iterator[ast.AST]:
    """Branches, pairs and paired names (x/y, left/right, width/height...) swapped."""
    if isinstance(node, ast.IfExp):
        yield ast.IfExp(node.test, node.orelse, node.body)
    elif isinstance(node, ast.If | ast.While) and not isinstance(node.test, ast.Compare):
        new = copy.copy(node)
        new.test = ast.UnaryOp(ast.Not(), node.test)
        yield new
    elif isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.ctx, ast.Load):
        yield ast.Tuple([node.elts[1], node.elts[0]], ast.Load())
    elif isinstance(node, ast.Attribute) and node.attr in SWAPS:
        for other in sorted(SWAPS[node.attr]):
            yield ast.Attribute(node.value, other, node.ctx)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in SWAPS:
        for other in sorted(SWAPS[node.id] & names):
            yield ast.Name(other, ast.Load())


def _constants(value: float) -> Iterator[ast.AST]:
    if isinstance(value, int):
        yield ast.Constant(value + 1)
    elif value == 0:
        yield ast.Constant(1.0)
    else:  # a scale or a tolerance: off by a factor, not by one unit
        yield ast.Constant(value * 2)
        yield ast.Constant(value / 2)


def _calls(node: ast.Call) -> Iterator[ast.AST]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    if name in CALL_SWAPS:
        if name in ("max", "min") or isinstance(func, ast.Name):
            new_func: ast.expr = ast.Name(CALL_SWAPS[name], ast.Load())
        else:
            new_func = ast.Attribute(func.value, CALL_SWAPS[name], ast.Load())  # type: ignore[attr-defined]
        yield ast.Call(new_func, node.args, node.keywords)
        if name in ("max", "min", "round"):  # the clamp or the rounding removed
            yield from (arg for arg in node.args[:2] if not isinstance(arg, ast.Starred))
    for k in range(len(node.args) - 1):  # swapped arguments, when both look like numbers
        if all(isinstance(a, NUMERIC) for a in node.args[k : k + 2]):
            args = list(node.args)
            args[k], args[k + 1] = args[k + 1], args[k]
            yield ast.Call(node.func, args, node.keywords)


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, new: ast.AST) -> None:
        self.target, self.new = target, new

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.new
        return super().visit(node)


def mutants_of(target: Target) -> list[Mutant]:
    """Every distinct mutant of a target, in source order."""
    text = (ROOT / target.path).read_text()
    seen = {ast.unparse(ast.parse(text))}
    found: list[Mutant] = []
    tree = ast.parse(text)
    nodes = list(_scoped_nodes(tree, target.scopes))
    # Not in f-strings (messages) nor keyword constants (densify_pts=21, num_threads=2).
    skip = {id(n) for s in ast.walk(tree) if isinstance(s, ast.JoinedStr) for n in ast.walk(s)}
    skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.keyword)}
    for k, (scope, node) in enumerate(nodes):
        if id(node) in skip:
            continue
        names = {n.id for _, n in _scoped_nodes(tree, (scope,)) if isinstance(n, ast.Name)}
        for v in range(len(list(_variants(node, names)))):
            fresh = ast.parse(text)  # a fresh tree per mutant: replacing edits it in place
            _, twin = list(_scoped_nodes(fresh, target.scopes))[k]
            new = list(_variants(twin, names))[v]
            source = ast.unparse(ast.fix_missing_locations(_Replace(twin, new).visit(fresh)))
            if source in seen:
                continue
            seen.add(source)
            line = getattr(node, "lineno", 0)
            before, after = ast.unparse(node), ast.unparse(new)
            found.append(Mutant(target.path, len(found), line, scope, before, after, source))
    return found


def _pytest(copy_root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """Run ``tests`` in a fresh interpreter on a copy of the tree (the slow, clean path)."""
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=copy_root, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    return _verdict(done.returncode), time.monotonic() - start


def _verdict(returncode: int) -> str:
    # 5: no test ran, a broken selection rather than a verdict; any other failure kills
    # (a mutant that breaks an import makes pytest exit with 2, 3 or 4).
    return {0: "survived", 5: "error"}.get(returncode, "killed")


def _make_copy(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="mutation-", dir=base))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            shutil.copy2(src, root / name)
    return root


def _functions(code: CodeType) -> dict[str, CodeType]:
    """Code objects of every function compiled in ``code``, by qualified name."""
    found: dict[str, CodeType] = {}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found[const.co_qualname] = const
            found.update(_functions(const))
    return found


def _live_functions(module: ModuleType) -> Iterator[FunctionType]:
    """Functions of a module and of its classes, unwrapped (cache, property)."""
    values = list(vars(module).values())
    for value in list(values):
        if isinstance(value, type) and value.__module__ == module.__name__:
            values += list(vars(value).values())
    for value in values:
        if isinstance(value, property):
            value = value.fget
        while hasattr(value, "__wrapped__"):
            if hasattr(value, "cache_clear"):
                value.cache_clear()
            value = value.__wrapped__
        if isinstance(value, FunctionType) and value.__module__ == module.__name__:
            yield value


def _patch(mutant: Mutant) -> None:
    """Swap the mutated functions' code into the imported module (in a forked child)."""
    name = mutant.path.removesuffix(".py").replace("/", ".")
    module = importlib.import_module(name)
    mutated = _functions(compile(mutant.source, str(ROOT / mutant.path), "exec"))
    for func in _live_functions(module):
        # Unchanged functions get their own code back, only with other line numbers.
        new = mutated.get(func.__code__.co_qualname)
        if new is not None:
            func.__code__ = new


def _forked(mutant: Mutant, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """Run ``tests`` in a fork of this process with the mutant patched in (the fast path)."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _patch(mutant)
            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests]))
        finally:
            os._exit(code)
    while time.monotonic() - start < timeout:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _verdict(os.waitstatus_to_exitcode(status)), time.monotonic() - start
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "timeout", time.monotonic() - start


def _preload(target: Target, tests: tuple[str, ...], base: Path) -> None:
    """Import the product and the tests, and render the ground truth, once before forking."""
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    conftest = importlib.import_module("tests.conftest")
    importlib.import_module(target.path.removesuffix(".py").replace("/", "."))
    for test in tests:
        importlib.import_module(test.removesuffix(".py").replace("/", "."))
    # The ground truth uses no product code; every fork reads the same file.
    rendered = conftest.write_ground_truth(base / "ground_truth.tif")
    conftest.write_ground_truth = lambda path: rendered


def run_target(target: Target, mutants: list[Mutant], jobs: int, base: Path) -> float:
    """Run every mutant of a target, ``jobs`` at a time; returns the unmutated tests' time.

    Mutants inside functions run in forks of a process that imported the product once,
    with the mutated code swapped in (no file is written); top-level constants, which
    other modules copy at import, run on a private copy of the tree in a fresh
    interpreter. Every survivor is run again the clean way, to confirm it.
    """
    # The focused arithmetic tests first: they kill most mutants in a second.
    tests = tuple(t for t in (*MUTANT_TESTS, *target.tests) if (ROOT / t).exists())
    copies = [_make_copy(base) for _ in range(jobs)]
    status, baseline = _pytest(copies[0], tests, timeout=600)
    if status != "survived":
        raise SystemExit(f"{target.path}: the unmutated tests fail ({status}); fix them first")
    timeout = baseline * 3 + 15
    _preload(target, tests, base)
    _pool([m for m in mutants if m.scope != "<module>"], jobs, _forked, tests, timeout)
    clean = [m for m in mutants if m.scope == "<module>" or m.status == "survived"]
    for group in (clean[k : k + jobs] for k in range(0, len(clean), jobs)):
        threads = [
            threading.Thread(target=_in_copy, args=(m, copy_root, tests, timeout))
            for m, copy_root in zip(group, copies, strict=False)
        ]
        _run_all(threads)
    for root in copies:
        shutil.rmtree(root, ignore_errors=True)
    return baseline


def _run_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _pool(mutants: list[Mutant], jobs: int, how: Any, *args: Any) -> None:
    """Settle ``mutants`` with ``jobs`` threads, each waiting on one run at a time."""
    todo = iter(list(mutants))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                mutant = next(todo, None)
            if mutant is None:
                return
            _settle(mutant, how, *args)

    _run_all([threading.Thread(target=work) for _ in range(jobs)])


def _settle(mutant: Mutant, how: Any, *args: Any) -> None:
    mutant.status, mutant.seconds = how(mutant, *args)
    if mutant.status != "survived":
        print(f"  {mutant.status:8} {_label(mutant)}", flush=True)


def _in_copy(mutant: Mutant, copy_root: Path, tests: tuple[str, ...], timeout: float) -> None:
    module = copy_root / mutant.path
    pristine = module.read_text()
    module.write_text(mutant.source)
    confirming = mutant.status == "survived"
    try:
        mutant.status, mutant.seconds = _pytest(copy_root, tests, timeout)
    finally:
        module.write_text(pristine)
    if confirming and mutant.status == "timeout":  # a slow machine, not a kill
        mutant.status = "survived"
    mark = "SURVIVED" if mutant.status == "survived" else mutant.status
    print(f"  {mark:8} {_label(mutant)}", flush=True)


def _label(m: Mutant) -> str:
    return f"{m.path}:{m.line} {m.scope}: {m.original}  ->  {m.mutated}"


def main() -> None:
    """Parse the options, list or run the mutants, print the score and the survivors."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", action="append", help="a module path (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel pytest runs")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--json", type=Path, help="write every mutant's fate here")
    parser.add_argument(
        "--rerun", type=Path, help="run only the survivors (and timeouts) of this --json file"
    )
    opts = parser.parse_args()
    targets = [t for t in TARGETS if not opts.target or t.path in opts.target]
    start = time.monotonic()
    everything: list[Mutant] = []
    base = Path(tempfile.mkdtemp(prefix="mutation-run-"))
    try:
        planned = sorted(((t, mutants_of(t)) for t in targets), key=lambda tm: len(tm[1]))
        for target, mutants in planned:  # the smallest first: partial runs still say much
            if opts.rerun:
                mutants = [m for m in mutants if _label(m) in _survivors(opts.rerun)]
            everything += mutants
            print(f"{target.path}: {len(mutants)} mutants", flush=True)
            if not mutants:
                continue
            if opts.list:
                for mutant in mutants:
                    print(f"  {_label(mutant)}")
                continue
            baseline = run_target(target, mutants, opts.jobs, base)
            killed = sum(m.status in ("killed", "timeout") for m in mutants)
            print(f"{target.path}: killed {killed}/{len(mutants)} (tests {baseline:.1f} s)")
            if opts.json:  # after each module, so an interrupted run keeps what it did
                _write_json(everything, time.monotonic() - start, opts.json)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if opts.list:
        return
    _report(everything, time.monotonic() - start, opts.json)


def _survivors(path: Path) -> set[str]:
    """Labels of the survivors of a run, and of its timeouts: on a loaded machine a slow
    passing run times out too, so a timeout settles nothing until it is run again."""
    rows = json.loads(path.read_text())["mutants"]
    unsettled = ("survived", "timeout")
    return {_label(Mutant(**r, source="")) for r in rows if r["status"] in unsettled}


def _report(mutants: list[Mutant], seconds: float, out: Path | None) -> None:
    killed = sum(m.status in ("killed", "timeout") for m in mutants)
    errors = [m for m in mutants if m.status == "error"]
    survivors = [m for m in mutants if m.status == "survived"]
    print(f"\nscore: {killed}/{len(mutants)} killed, wall time {seconds / 60:.1f} min")
    if errors:
        print(f"{len(errors)} mutants gave no verdict (pytest error):")
        for m in errors:
            print(f"  {_label(m)}")
    print(f"{len(survivors)} survivors:")
    for m in survivors:
        print(f"  {_label(m)}")
    if out is not None:
        _write_json(mutants, seconds, out)


def _write_json(mutants: list[Mutant], seconds: float, out: Path) -> None:
    rows = [{k: v for k, v in asdict(m).items() if k != "source"} for m in mutants]
    out.write_text(json.dumps({"seconds": seconds, "mutants": rows}, indent=1))


if __name__ == "__main__":
    main()

"""The house rules (docs/architecture.md): small modules and short functions in every package (calibrate
included), layers that import only downwards with no cycle (function-local imports counted), a library that
imports without torch or click, a CLI without logic."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "moesim"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every moesim module ``path`` imports, at the top or inside a function (``from a import b`` counts as
    ``a.b`` when that is a module, else as ``a``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path, root)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                up = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                base = ".".join([*up, base] if base else up)
            out |= {f"{base}.{a.name}" for a in n.names} | {base}
    return {m for m in out if m.split(".")[0] == "moesim"}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the moesim modules and packages it imports (function-local imports included)."""
    modules = {_module_name(p, root): p for p in (root / "moesim").rglob("*.py")}
    return {m: {d for d in _imports(p, root) if d in modules and d != m} for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (depth-first search), or None. A module importing the package that holds it is the
    package's ``__init__`` loading it, not a cycle."""
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1 and not m.startswith(d + "."):
                return [*stack, m, d]
            if d not in state and (cycle := visit(d, [*stack, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m, [])):
            return cycle
    return None


def test_no_module_over_400_lines_and_no_function_over_60():
    long_modules, long_functions = [], []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(f"{path.relative_to(PKG)}: {len(text.splitlines())} lines")
        for fn in _functions(ast.parse(text)):
            n = fn.end_lineno - fn.lineno + 1
            if n > MAX_FUNCTION_LINES:
                long_functions.append(f"{path.relative_to(PKG)}:{fn.lineno} {fn.name}: {n} lines")
    assert not long_modules and not long_functions, long_modules + long_functions


def test_the_top_of_the_package_holds_only_the_facade():
    loose = sorted(p.name for p in PKG.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "api.py"], loose


def test_import_graph_has_no_cycle_counting_function_local_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_search_finds_a_planted_cycle(tmp_path):
    """Two modules that import each other only inside functions make a cycle the search reports."""
    (tmp_path / "moesim").mkdir()
    (tmp_path / "moesim" / "__init__.py").write_text("")
    (tmp_path / "moesim" / "a.py").write_text("def f():\n    from moesim import b\n")
    (tmp_path / "moesim" / "b.py").write_text("def g():\n    import moesim.a\n")
    assert find_cycle(import_graph(tmp_path)) in (["moesim.a", "moesim.b", "moesim.a"],
                                                   ["moesim.b", "moesim.a", "moesim.b"])


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter missing: pip install -e '.[test]'")
def test_import_linter_contracts_are_kept():
    """The layers contract in pyproject.toml (cli > api > calibrate > present > studies > plan > serve > offload >
    iteration > engine > ir > comm > placement > routing > hw > model > config > exec > util)."""
    res = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_library_and_cli_import_without_torch():
    code = "import sys, moesim.api, moesim.cli, moesim.serve, moesim.plan; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_and_api_start_without_the_simulator():
    """``moesim --help`` (issue 32: <= 0.2 s) loads click and the command tree only: the simulator's packages
    and its heavy dependencies load when a command runs. ``moesim run`` still loads them."""
    heavy = ("numba", "networkx", "pydantic", "numpy", "scipy", "simpy", "matplotlib", "yaml", "moesim.iteration",
             "moesim.config", "moesim.placement", "moesim.exec")
    code = ("import sys, moesim.api, moesim.cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(moesim.cli.main, ['--help']); assert r.exit_code == 0, r.output; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    from moesim.api import Result, Scenario  # the lazy re-exports still resolve
    assert Result.__name__ == "Result" and Scenario.__name__ == "Scenario"


def test_engine_imports_neither_build_nor_plotting_nor_io():
    for path in (PKG / "engine").glob("*.py"):
        names = _imports(path) | {m for m in _external(path)}
        bad = {m for m in names if m.split(".")[0] in ("matplotlib", "click", "torch", "yaml")
               or m.startswith(("moesim.iteration", "moesim.api", "moesim.present", "moesim.config"))}
        assert not bad, f"{path.name} imports {bad}"


def _external(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}


def test_cli_functions_only_call_the_library():
    """Every command body is short: argument handling, one library call, echo."""
    for path in (PKG / "cli").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in _functions(tree):
            body = fn.body[1:] if ast.get_docstring(fn) else fn.body
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            assert lines <= 22, f"cli/{path.name}: {fn.name} has {lines} lines of body: move the logic into the library"

"""The house rules STYLE.md sets for the package: small modules and short functions, a CLI without logic."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "moesim"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


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


def test_engine_imports_neither_build_nor_plotting_nor_io():
    for path in (PKG / "engine").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        bad = {m for m in names if m.split(".")[0] in ("matplotlib", "click", "torch", "yaml")
               or m in ("moesim.build", "moesim.api", "moesim.output", "moesim.metrics", "moesim.programs")}
        assert not bad, f"{path.name} imports {bad}"


def test_cli_functions_only_call_the_library():
    """Every command body is short: argument handling, one library call, echo."""
    tree = ast.parse((PKG / "cli.py").read_text(encoding="utf-8"))
    for fn in _functions(tree):
        body = fn.body[1:] if ast.get_docstring(fn) else fn.body
        lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
        assert lines <= 22, f"cli.{fn.name} has {lines} lines of body: move the logic into the library"

"""The package's layers point one way: the library core (jaxfit minus its command line) never imports
torchref, torch or the benchmarks; the command line stands above them. The one allowed arrow is
`SweepResult.to_torch`, which hands a trained config to PyTorch and imports torchref when called."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABOVE = ("torchref", "torch", "benchmarks")
ALLOWED = {("jaxfit/results.py", "to_torch")}  # (file, function) that may import from ABOVE when called


def _imports(path):
    """(top-level module imported, enclosing function name or None) for every import in a file."""
    tree = ast.parse(open(path).read(), path)
    out = []

    def visit(node, fn):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], fn) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child.module.split(".")[0], fn))
            visit(child, name)

    visit(tree, None)
    return out


def test_no_core_module_imports_torchref_torch_or_benchmarks():
    bad = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "jaxfit")):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/")
            if rel == "jaxfit/cli.py":
                continue
            for mod, fn in _imports(os.path.join(ROOT, rel)):
                if mod in ABOVE and (rel, fn) not in ALLOWED:
                    bad.append(f"{rel}: imports {mod} (in {fn or 'the module'})")
    assert not bad, bad


def test_the_check_catches_a_planted_import(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import torchref.parity\nfrom benchmarks import common\n")
    assert ("torchref", "f") in _imports(p) and ("benchmarks", None) in _imports(p)


def test_importing_every_core_module_loads_no_torch_or_torchref():
    code = ("import pkgutil, sys, importlib, jaxfit\n"
            "for m in pkgutil.walk_packages(jaxfit.__path__, 'jaxfit.'):\n"
            "    if m.name != 'jaxfit.cli':\n"
            "        importlib.import_module(m.name)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {ABOVE!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout

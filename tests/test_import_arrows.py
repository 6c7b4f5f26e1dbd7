"""The package's layers point one way. Every import in jaxfit/ (lazy ones inside functions included)
goes to a layer at or below its own, names something that exists, and imports no private name from
another module; the library core never imports torchref, torch or the benchmarks (one named exception:
`SweepResult.to_torch`, which hands a trained config to PyTorch when called)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lowest first. A module's layer is that of the longest prefix listed; the package root `jaxfit`
# (lazy re-exports of the public names) stands with the api.
LAYERS = [
    ("jaxfit.errors", "jaxfit.version", "jaxfit.lazy", "jaxfit.io"),
    ("jaxfit.config", "jaxfit.datasets"),
    ("jaxfit.nn",),
    ("jaxfit.program",),
    ("jaxfit.flax",),
    ("jaxfit.engine",),
    ("jaxfit.results",),
    ("jaxfit.diagnostics",),
    ("jaxfit.report",),
    ("jaxfit.api", "jaxfit.study", "jaxfit.spec", "jaxfit"),
    ("jaxfit.cli",),
]
ABOVE = ("torchref", "torch", "benchmarks")
ALLOWED_ABOVE = {("jaxfit.results.result", "to_torch")}  # (module, function) that may import from ABOVE


def layer_of(module: str) -> int:
    best, level = -1, None
    for k, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best:
                best, level = len(n), k
    assert level is not None, f"{module} is in no layer: add it to LAYERS"
    return level


def module_name(path: str, root: str = ROOT) -> str:
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def imports(path: str, module: str):
    """(imported module, names taken from it, enclosing function or None) for every import in a file;
    relative imports resolved against `module`."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = []

    def visit(node, fn):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            if isinstance(child, ast.Import):
                out.extend((a.name, (), fn) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module != "__future__":
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module
                out.append((target, tuple(a.name for a in child.names), fn))
            visit(child, name)

    visit(tree, None)
    return out


def _module_file(module: str, root: str):
    base = os.path.join(root, *module.split("."))
    for f in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(f):
            return f
    return None


def _defined_names(path: str) -> set[str]:
    """Top-level names a module defines or imports, and its lazy `_LAZY` / `SUBMODULES` names."""
    tree = ast.parse(open(path).read(), path)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id in ("_LAZY", "SUBMODULES") for t in targets):
                names |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def violations(root: str = ROOT, package: str = "jaxfit") -> list[str]:
    bad = []
    for dirpath, _, files in os.walk(os.path.join(root, package)):
        for f in sorted(files):
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            mod = module_name(path, root)
            own = layer_of(mod)
            for target, names, fn in imports(path, mod):
                where = f"{mod} ({'in ' + fn if fn else 'at import'})"
                top = target.split(".")[0]
                if top in ABOVE and mod.split(".")[0] == package and not mod.startswith(f"{package}.cli") \
                        and (mod, fn) not in ALLOWED_ABOVE:
                    bad.append(f"{where}: imports {target}, which stands above the library")
                if top != package:
                    continue
                tfile = _module_file(target, root)
                if tfile is None:
                    bad.append(f"{where}: imports {target}, which does not exist")
                    continue
                defined = None
                for n in names:
                    full = f"{target}.{n}"
                    sub = _module_file(full, root)
                    if sub is None:
                        defined = _defined_names(tfile) if defined is None else defined
                        if n not in defined:
                            bad.append(f"{where}: imports {n!r} from {target}, which has no such name")
                    dest = full if sub is not None else target
                    if layer_of(dest) > own:
                        bad.append(f"{where}: imports {dest} (layer {layer_of(dest)}) from layer {own}: upward")
                    if n.startswith("_") and not n.startswith("__") and dest != mod:
                        bad.append(f"{where}: imports the private name {n} from {target}")
                if not names and layer_of(target) > own:
                    bad.append(f"{where}: imports {target} (layer {layer_of(target)}) from layer {own}: upward")
    return bad


def test_every_import_points_down_exists_and_is_public():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_the_check_catches_planted_violations(tmp_path):
    pkg = tmp_path / "jaxfit"
    for sub in ("nn", "engine", "program"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "run.py").write_text("def _helper():\n    pass\n")
    (pkg / "program" / "train.py").write_text("X = 1\n")
    (pkg / "nn" / "layers.py").write_text(
        "def f():\n    from ..engine.run import _helper\n"   # lazy, upward and private
        "from ..program.train import Y\n"                    # upward, and no such name
        "from jaxfit import plan\n"                          # no such module
        "import torchref\n")                                 # above the library
    bad = violations(str(tmp_path))
    text = "\n".join(bad)
    assert "jaxfit.nn.layers (in f): imports jaxfit.engine.run (layer 5) from layer 2: upward" in text
    assert "imports the private name _helper" in text
    assert "imports 'Y' from jaxfit.program.train, which has no such name" in text
    assert "imports 'plan' from jaxfit, which has no such name" in text
    assert "imports torchref, which stands above the library" in text
    (pkg / "nn" / "layers.py").write_text("from ..program.train import X\n")  # fine below... but upward
    assert any("upward" in b for b in violations(str(tmp_path)))
    (pkg / "program" / "train.py").write_text("from ..nn.layers import g\n")
    (pkg / "nn" / "layers.py").write_text("def g():\n    pass\n")
    assert violations(str(tmp_path)) == []


def test_importing_every_core_module_loads_no_torch_or_torchref():
    code = ("import pkgutil, sys, importlib, jaxfit\n"
            "for m in pkgutil.walk_packages(jaxfit.__path__, 'jaxfit.'):\n"
            "    if not m.name.startswith('jaxfit.cli'):\n"
            "        importlib.import_module(m.name)\n"
            f"print(sorted(k for k in sys.modules if k.split('.')[0] in {ABOVE!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout


def test_reading_a_table_computes_nothing(monkeypatch):
    """SweepResult.table is the metrics (and diagnostics handed to it): no dataset is rebuilt and no
    forward pass runs when it is read."""
    import numpy as np

    import jaxfit
    from jaxfit import datasets, diagnostics
    from jaxfit.program.train import METRICS

    def boom(*a, **k):
        raise AssertionError("reading the table ran the diagnostics")

    monkeypatch.setattr(datasets, "regenerate", boom)
    monkeypatch.setattr(diagnostics, "diagnose", boom)
    cs = [jaxfit.Config(hidden=(4,), epochs=2)]
    curves = {m: np.zeros((1, 2)) for m in METRICS}
    r = jaxfit.SweepResult(cs, curves, [{"dense": [{"w": np.zeros((1, 2)), "b": np.zeros(1)}]}], [{}],
                           {"dataset": {"name": "sum_bin", "num_classes": 2, "n_val": 5}})
    assert "diagnosis" not in r.table.columns and len(r.table) == 1

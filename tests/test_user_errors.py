"""What a hostile user tries: every input mistake is a one-line UserError (exit 2 on the command line)
before anything compiles, legal-but-odd input gets a JaxfitWarning, and nothing is silently wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings

import numpy as np
import pytest

import jaxfit
from jaxfit import spec as specmod
from jaxfit.cli import main
from jaxfit.errors import ConfigIndexError, JaxfitWarning, UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")
DATA = '[[data]]\nname = "sum_bin"\nn = 64\n'


def spec_of(text: str, **options):
    return specmod.build_spec(tomllib.loads(text), text=text, path="s.toml", **options)


@pytest.fixture(scope="module")
def tiny():
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    configs = jaxfit.grid(hidden=[(4,)], lr=[1e-2, 1e-1], epochs=2)
    return data, jaxfit.sweep(data, configs)


# ----------------------------------------------------------------------------- [sample]
def test_sample_spec_draws_every_distribution():
    s = spec_of(DATA + """[sample]
count = 12
seed = 3
lr = { log_uniform = [1e-3, 1e-1] }
dropout = { uniform = [0.0, 0.5] }
epochs = { int_uniform = [2, 4] }
activation = { choice = ["relu", "tanh"] }
hidden = { choice = [[8], [16, 16]] }
batch_size = 32
""")
    cs = s.configs
    assert 1 < len(cs) <= 12
    assert all(1e-3 <= c.lr <= 1e-1 and 0 <= c.dropout <= 0.5 and c.epochs in (2, 3, 4) for c in cs)
    assert {c.activation for c in cs} <= {"relu", "tanh"} and {c.hidden for c in cs} <= {(8,), (16, 16)}
    assert len({c.lr for c in cs}) == len(cs) and all(c.batch_size == 32 for c in cs)
    again = spec_of(DATA + "[sample]\ncount = 12\nseed = 3\nlr = { log_uniform = [1e-3, 1e-1] }\n").configs
    assert [c.lr for c in again] == [c.lr for c in spec_of(DATA + "[sample]\ncount = 12\nseed = 3\n"
                                                           "lr = { log_uniform = [1e-3, 1e-1] }\n").configs]


def test_sample_spec_limits_seeds_and_smoke():
    text = DATA + "[sample]\ncount = 50\nlr = { log_uniform = [1e-3, 1e-1] }\n"
    with pytest.raises(UserError, match=r"s.toml:\d+: count=50 is over the limit of 10"):
        spec_of(text, max_configs=10)
    assert len(spec_of(text, max_configs=None).configs) == 50
    assert len(spec_of(text, seeds=2).configs) == 100  # each draw on seeds 0 and 1
    smoke = spec_of(text, smoke=True).configs
    assert len(smoke) == specmod.SMOKE["configs"] and all(c.epochs == specmod.SMOKE["epochs"] for c in smoke)
    for bad, match in (('lr = { normal = [0, 1] }', "a distribution is one of"),
                       ('lr = [0.1, 0.01]', "choice = "), ('lr = { log_uniform = [1] }', r"needs \[low, high\]"),
                       ('lr = { log_uniform = [-1, 1] }', "0 < low")):
        with pytest.raises(UserError, match=match):
            spec_of(DATA + f"[sample]\ncount = 4\n{bad}\n")


def test_sample_spec_with_dry_run_and_smoke_on_the_command_line(tmp_path, capsys):
    example = os.path.join(ROOT, "examples", "random_search.toml")
    assert "[sample]" in open(example).read()
    assert main(["sweep", example, "--dry-run"]) == 0
    assert "dry run: nothing compiled or trained" in capsys.readouterr().out
    path = tmp_path / "s.toml"
    path.write_text(DATA + "[sample]\ncount = 3\nlr = { log_uniform = [1e-3, 1e-1] }\nepochs = 2\n")
    assert main(["sweep", str(path), "--smoke", "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]) == 0
    assert len(jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")) == 3


# ----------------------------------------------------------------------------- user errors vs bugs
def test_only_user_errors_are_one_line_other_errors_keep_their_traceback(monkeypatch, capsys):
    assert issubclass(UserError, ValueError) and issubclass(ConfigIndexError, IndexError)
    assert main(["sweep", "--quick", "--top", "0"]) == 2
    assert capsys.readouterr().err.startswith("jaxfit: error: --top=0")

    def bug(*a, **k):
        raise ValueError("operands could not be broadcast together")  # as NumPy raises it

    monkeypatch.setattr(specmod, "builtin_spec", bug)
    with pytest.raises(ValueError, match="broadcast"):  # not swallowed into "jaxfit: error:" and exit 2
        main(["sweep", "--quick", "--dry-run"])
    p = subprocess.run([sys.executable, "-c", "import jaxfit.cli, jaxfit.spec as s\n"
                        "def bug(*a, **k): raise ValueError('inside numpy')\n"
                        "s.builtin_spec = bug\nraise SystemExit(jaxfit.cli.main(['sweep', '--quick', '--dry-run']))"],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" in p.stderr and "inside numpy" in p.stderr


@pytest.mark.parametrize("kw, match", [
    (dict(chunk_size=-1), r"chunk_size=-1 is invalid: need a positive integer"),
    (dict(chunk_size=0), r"chunk_size=0 is invalid"),
    (dict(chunk_size=2.5), r"chunk_size=2.5 is invalid"),
    (dict(memory_budget="1GB"), r"memory_budget='1GB' is invalid: need a positive integer number of bytes"),
    (dict(memory_budget=0), r"memory_budget=0 is invalid"),
    (dict(segment=0), r"segment=0 is invalid"),
])
def test_bad_sweep_options_are_refused_before_compiling(kw, match):
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    before = jaxfit.compile_count()
    with pytest.raises(UserError, match=match):
        jaxfit.sweep(data, [jaxfit.Config(hidden=(4,), epochs=1)], **kw)
    assert jaxfit.compile_count() == before


def test_a_module_with_the_wrong_input_width_names_itself_and_x():
    from flax import nnx

    data = jaxfit.datasets.sum_bin(n=64, seed=0)  # 2 features

    class Wrong(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(5, 3, rngs=rngs)

        def __call__(self, x, train=False):
            return self.lin(x)

    before = jaxfit.compile_count()
    with pytest.raises(UserError, match=r"config 0's module Wrong fails on x of shape \[B, 2\].*num_features") as e:
        jaxfit.sweep(data, [jaxfit.Config(hidden=(4,), epochs=1)], model=lambda c, f, k, rngs: Wrong(rngs))
    assert "\n" not in str(e.value) and jaxfit.compile_count() == before


def test_a_config_index_out_of_range_names_the_range(tiny):
    _, r = tiny
    for call in (lambda: r.to_flax(99), lambda: r.params(2), lambda: r.outputs(-3, np.zeros((1, 2))),
                 lambda: r.predict(5, np.zeros((1, 2))), lambda: r.model_state(2, best=True)):
        with pytest.raises(ConfigIndexError, match=r"this result holds 2 config\(s\), indices 0\.\.1"):
            call()
    with pytest.raises(ConfigIndexError, match="need an integer"):
        r.params("0")
    np.testing.assert_array_equal(r.outputs(-1, np.ones((2, 2))), r.outputs(1, np.ones((2, 2))))


def test_to_torch_takes_the_natural_first_input(tiny):
    torch = pytest.importorskip("torch")
    data, r = tiny
    model = r.to_torch(0)
    want = r.outputs(0, data.x_val)
    for x in (torch.tensor(data.x_val), data.x_val, torch.tensor(data.x_val, dtype=torch.float32)):
        with torch.no_grad():
            got = model(x)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- labels
def test_labels_that_are_not_0_to_k_minus_1_are_refused_or_remapped(tmp_path):
    x = np.arange(8.0).reshape(4, 2)
    with pytest.raises(UserError, match=r"y holds 2 distinct labels \(0, 1000000\), not 0\.\.1: .*1000001 output "
                                        r"units.*remap_labels=True"):
        jaxfit.datasets.from_arrays(x, np.array([0, 1e6, 0, 1e6]))
    with pytest.raises(UserError, match=r"\(0, 2, 5\), not 0\.\.2: .*6 output units, 3 of them"):
        jaxfit.datasets.from_arrays(x, np.array([0, 2, 5, 2]))
    d = jaxfit.datasets.from_arrays(x, np.array([0, 2, 5, 2]), remap_labels=True)
    assert d.num_classes == 3 and d.y_train.tolist() == [0, 1, 2, 1] and d.meta["label_values"] == [0, 2, 5]
    assert jaxfit.datasets.from_arrays(x, np.array([0, 2, 5, 2]), num_classes=6).num_classes == 6  # said so
    csv = tmp_path / "p.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{7 if i % 2 else 3}\n" for i in range(10)))
    text = f'[[data]]\nfile = "{csv}"\nlabel = "y"\n[grid]\nlr = 0.1\n'
    with pytest.raises(UserError, match=r"\(3, 7\), not 0\.\.1"):
        spec_of(text)
    s = spec_of(text.replace('label = "y"', 'label = "y"\nremap_labels = true'))
    assert s.data[0].load().num_classes == 2


def test_no_validation_split_ranks_by_the_training_metric_and_says_so(capsys, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2))
    data = jaxfit.datasets.from_arrays(x, (x[:, 0] > 0).astype(int))
    assert data.n_val == 0
    r = jaxfit.sweep(data, jaxfit.grid(hidden=[(4,)], lr=[1e-3, 1e-1], epochs=3))
    with pytest.warns(JaxfitWarning, match="no validation split: ranked by final_train_acc instead of final_val_acc"):
        best = r.best("val_acc")
    assert "final_train_acc_mean" in best.columns
    assert best["final_train_acc_mean"].is_monotonic_decreasing
    np.savez(tmp_path / "d.npz", x=x, y=(x[:, 0] > 0).astype(int))
    (tmp_path / "s.toml").write_text(f'[[data]]\nfile = "{tmp_path / "d.npz"}"\n[grid]\nlr = 0.1\nepochs = 1\n')
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "note: dataset 'd' has no validation split: ranked by final_train_acc" in out
    assert "top 10 by seed-averaged final train_acc" in out


# ----------------------------------------------------------------------------- budgets and plans
def test_a_memory_budget_below_one_config_warns():
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    with pytest.warns(JaxfitWarning, match=r"memory budget 1,000 bytes .* is smaller than one config.*chunks of 1"):
        r = jaxfit.sweep(data, [jaxfit.Config(hidden=(4,), epochs=1)] * 1, memory_budget=1000)
    assert r.meta["plans"][0]["chunk_size"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", JaxfitWarning)
        jaxfit.sweep(data, [jaxfit.Config(hidden=(4,), epochs=1)], memory_budget=1 << 30)


def test_dry_run_says_when_the_real_run_would_be_refused(monkeypatch, capsys, tmp_path):
    import jaxfit.engine

    monkeypatch.setattr(jaxfit.engine, "memory_budget", lambda: 10_000)
    args = ["sweep", "--quick", "--datasets", "sum_bin", "--n", "64", "--out", str(tmp_path / "o")]
    assert main(args + ["--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "per chunk" in out and "dry run: the real run would be refused: sum_bin: program 1 needs about" in out
    assert main(args) == 2 and "over the memory budget" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    assert main(args + ["--dry-run", "--no-limits"]) == 0


def test_a_fully_resumed_rerun_reports_nothing_trained(tmp_path, capsys):
    args = ["sweep", "--quick", "--datasets", "sum_bin", "--n", "64", "--epochs", "1", "--out", str(tmp_path / "r"),
            "--no-progress", "--no-cache"]
    assert main(args) == 0
    assert "model-steps/s" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nothing trained (every chunk resumed)" in out and "model-steps/s" not in out


# ----------------------------------------------------------------------------- report
def test_report_exits_1_when_a_dataset_cannot_be_loaded(tiny, tmp_path, capsys):
    _, r = tiny
    r.save(tmp_path / "a")
    r.save(tmp_path / "b")
    with open(tmp_path / "b" / "curves.npz", "ab") as f:
        f.write(b"junk")  # no longer matches its manifest
    assert main(["report", str(tmp_path)]) == 1
    io = capsys.readouterr()
    assert io.out.strip().endswith("report.html") and "could not load" in io.err and "curves.npz" in io.err
    assert main(["report", str(tmp_path / "a")]) == 0


def test_report_on_a_full_disk_names_the_file_and_leaves_no_temporary(tiny, tmp_path):
    from jaxfit import report
    from jaxfit.io import files as fsio

    _, r = tiny
    r.save(tmp_path / "a")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, timeout=10)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({m.stderr.decode().strip()})")
    try:
        with pytest.raises(fsio.OutputError, match=r"report\.html: no space left on device") as e:
            report.build(tmp_path / "a", out=mnt / "report.html")
        assert "\n" not in str(e.value) and os.listdir(mnt) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def test_report_and_command_line_rank_by_the_one_ranking(tmp_path):
    """A diverged config with the highest validation accuracy: SweepResult.best, the report's best row,
    its ranked table and its boundaries all put it last."""
    from jaxfit import report
    import jaxfit.report.figures
    from jaxfit.program.train import METRICS

    cs = [jaxfit.Config(hidden=(4,), lr=lr, epochs=2) for lr in (0.1, 0.01, 0.001)]
    curves = {m: np.zeros((3, 2)) for m in METRICS}
    curves["val_acc"][:, -1] = [0.9, 0.6, 0.7]
    curves["val_loss"][:, -1] = [0.1, 0.5, 0.4]
    curves["full_train_loss"][:] = 0.5
    curves["train_loss"][:] = 0.5
    params = [{"dense": [{"w": np.full((1, 2), v), "b": np.zeros(1)}]} for v in (1e7, 0.1, 0.1)]  # 0 blows up
    meta = {"dataset": {"name": "sum_bin", "num_classes": 2, "num_features": 2, "n_train": 10, "n_val": 10}}
    r = jaxfit.SweepResult(cs, curves, params, [{}] * 3, meta)
    assert r.diverged.tolist() == [True, False, False]
    best = r.best("val_acc")
    assert best["lr"].tolist() == [0.001, 0.01, 0.1]
    groups, col, note = report.figures.ranked_groups(r)
    assert [g.members for g in groups] == [[2], [1], [0]] and col == "final_val_acc" and not note
    assert report.figures.ranked_order(r, groups, col) == [2, 1, 0]
    # ties in accuracy are broken by the loss, as the report did before and the table now does too
    curves["val_acc"][:, -1] = [0.5, 0.7, 0.7]
    tie = jaxfit.SweepResult(cs, curves, [{"dense": [{"w": np.zeros((1, 2)), "b": np.zeros(1)}]}] * 3, [{}] * 3, meta)
    assert tie.best("val_acc")["lr"].tolist() == [0.001, 0.01, 0.1]


# ----------------------------------------------------------------------------- a light command line
@pytest.mark.parametrize("args", [["--version"], ["--help"], ["datasets"], ["sweep", "--help"]])
def test_version_help_and_datasets_do_not_start_jax(args):
    code = ("import sys, time\nt = time.perf_counter()\nimport jaxfit.cli\ntry:\n"
            f"    jaxfit.cli.main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted(m for m in ('jax', 'pandas', 'torch', 'matplotlib', 'scipy', 'sklearn') "
            "if m in sys.modules))\nprint('took', time.perf_counter() - t)")
    p = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "heavy: []" in p.stdout, p.stdout


OPTIONAL = {"optuna": ("search", "jaxfit/study.py"), "ray": ("ray", "jaxfit/engine/remote.py")}  # extra, its one importer


def test_declared_dependencies_are_the_imported_ones():
    """pyproject's dependencies = the third-party packages jaxfit/ and torchref/ import (torch optional;
    Optuna and Ray optional extras, each imported by one module only)."""
    import ast
    import re

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    declared = {re.split(r"[<>=!~ \[]", d)[0].lower() for d in project["dependencies"]}
    module_of = {"scikit-learn": "sklearn", "pyarrow": "pyarrow", "pillow": "PIL"}
    declared_modules = {module_of.get(d, d.replace("-", "_")) for d in declared}
    imported, where = set(), {}
    for pkg in ("jaxfit", "torchref"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, pkg)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.relpath(os.path.join(dirpath, name), ROOT)
                    tree = ast.parse(open(os.path.join(dirpath, name)).read())
                    for node in ast.walk(tree):
                        mods = set()
                        if isinstance(node, ast.Import):
                            mods = {a.name.split(".")[0] for a in node.names}
                        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                            mods = {node.module.split(".")[0]}
                        imported |= mods
                        for m in mods:
                            where.setdefault(m, set()).add(path)
    for mod, (extra, importer) in OPTIONAL.items():
        assert mod in {re.split(r"[<>=!~ \[]", d)[0] for d in project["optional-dependencies"][extra]}
        assert where.get(mod) == {importer}, f"{mod} imported by {where.get(mod)}, only {importer} may"
    third = {m for m in imported if m not in sys.stdlib_module_names
             and m not in ("jaxfit", "torchref", "torch", *OPTIONAL)}
    assert third <= declared_modules, f"imported but not declared: {sorted(third - declared_modules)}"
    assert declared_modules - {"pyarrow"} <= third, f"declared but never imported: {sorted(declared_modules - third)}"
    assert "torch" in {re.split(r"[<>=!~ \[]", d)[0] for d in project["optional-dependencies"]["torch"]}

"""`jaxfit parity`: both frameworks side by side, a verdict, an overlay plot."""

import numpy as np

from jaxfit import Config, datasets
from torchref import parity
from jaxfit.cli import main


def test_parity_task_passes_and_plots(tmp_path, capsys):
    png = tmp_path / "overlay.png"
    assert main(["parity", "doc2_heart_standardized", "--dtype", "float64", "--epochs", "5", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "PASS: measured deviation" in out and out.count("\n") >= 7
    line = next(x for x in out.splitlines() if x.startswith("PASS"))
    measured, tol = float(line.split()[3]), float(line.split("within the tolerance ")[1].split()[0])
    assert 0 <= measured <= tol == 1e-10 and "docs/parity.md" in line  # the bound quoted is the one applied
    assert png.stat().st_size > 10_000


def test_parity_config_text(capsys):
    assert main(["parity", "hidden=8,8 optimizer=rmsprop lr=0.01 momentum=0.5 epochs=2 batch_size=10", "--data",
                 "sum_mod", "--n", "50", "--dtype", "float64"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_verdict_fails_and_names_the_first_epoch():
    data = datasets.sum_bin(n=20, seed=0)
    cfg = Config(hidden=(2,), epochs=3, dtype="float64")
    j = {m: np.zeros(3) for m in ("train_loss", "last_batch_loss", "full_train_loss", "val_loss", "val_acc")}
    t = {m: v.copy() for m, v in j.items()}
    t["train_loss"][1:] = [1e-12, 1e-3]
    r = parity.Replay(cfg, data, j, t, steps=30, tol=1e-10, why="test")
    assert not r.ok and r.first_violation == 2
    assert r.verdict().startswith("FAIL: measured deviation 0.001 exceeds the tolerance 1e-10 first at epoch 3")


def test_bad_target_exits_2(capsys):
    assert main(["parity", "no_such_task"]) == 2
    assert "neither a task" in capsys.readouterr().err


def test_steps_over_the_limit_exits_2(capsys):
    # 120 points one at a time for 200 epochs: 24,000 steps, refused before anything trains
    assert main(["parity", "hidden=8 batch_size=1 epochs=200", "--n", "120", "--steps"]) == 2
    err = capsys.readouterr().err
    assert "limit of 20,000" in err and "24,000 steps" in err
    assert main(["parity", "hidden=8 epochs=1", "--steps", "--rows", "1"]) == 2
    assert "--rows=1 is invalid" in capsys.readouterr().err

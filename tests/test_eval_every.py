"""sweep(eval_every=k, eval_rows=n): fewer or smaller evaluations, training untouched. The evaluated
epochs equal those of an every-epoch run, a config's last epoch is always evaluated in full, the best
epoch is the best evaluated one, divergence and resumption know about it."""

from __future__ import annotations

import numpy as np
import pytest

import jaxfit
from jaxfit.errors import UserError
from jaxfit.results.divergence import evaluated_epochs

TOL = 1e-12  # float64: another program (a branch around the evaluation) may round the last bit differently


@pytest.fixture(scope="module")
def runs():
    data = jaxfit.datasets.sum_bin(n=240, seed=0)
    configs = jaxfit.grid(hidden=[(8,), (16, 16)], lr=[1e-2, 0.1], epochs=[7, 10], dtype="float64")
    configs.append(jaxfit.Config(hidden=(4,), loss="mse", optimizer="sgd", lr=1e6, epochs=7, dtype="float64"))
    every = jaxfit.sweep(data, configs)
    third = jaxfit.sweep(data, configs, eval_every=3)
    sub = jaxfit.sweep(data, configs, eval_every=2, eval_rows=20)
    return data, configs, every, third, sub


def test_evaluated_epochs_equal_an_every_epoch_run_and_training_is_untouched(runs):
    _, configs, every, third, _ = runs
    np.testing.assert_allclose(third.curves["train_loss"], every.curves["train_loss"], rtol=0, atol=TOL)
    np.testing.assert_allclose(third.curves["last_batch_loss"], every.curves["last_batch_loss"], rtol=0, atol=TOL)
    for i, c in enumerate(configs):
        got = third.curves["val_acc"][i, : c.epochs]
        must = evaluated_epochs(c.epochs, 3)  # every third epoch and the last
        assert np.isfinite(got[must]).all() and np.isnan(third.curves["val_acc"][i, c.epochs:]).all()
        assert np.isnan(got[~must]).sum() >= (~must).sum() - 1  # another config's last epoch may add one
        for m in ("full_train_loss", "train_acc", "val_loss", "val_acc"):
            a, b = every.curves[m][i, : c.epochs], third.curves[m][i, : c.epochs]
            ok = np.isfinite(b)
            np.testing.assert_allclose(b[ok], a[ok], rtol=0, atol=TOL)
        np.testing.assert_allclose(third.params(i)["dense"][0]["w"], every.params(i)["dense"][0]["w"], rtol=0,
                                   atol=1e-10)


def test_table_metrics_read_the_evaluated_epochs(runs):
    _, configs, _, third, _ = runs
    for i, c in enumerate(configs[:-1]):  # the last one diverged
        full = third.curves["full_train_loss"][i, : c.epochs]
        assert third.table["auc_full_train_loss"].iloc[i] == pytest.approx(np.nanmean(full), rel=1e-15)
        assert third.table["final_val_acc"].iloc[i] == third.curves["val_acc"][i, c.epochs - 1]


def test_best_epoch_is_the_best_evaluated_one(runs):
    _, configs, _, third, _ = runs
    for i, c in enumerate(configs):
        va = third.curves["val_acc"][i, : c.epochs]
        be = int(third.table["best_epoch"].iloc[i])
        assert np.isfinite(va[be]) and be == int(np.nanargmax(va))


def test_divergence_reads_the_evaluated_epochs(runs):
    _, configs, every, third, sub = runs
    assert every.diverged.tolist() == [False] * (len(configs) - 1) + [True]
    assert third.diverged.tolist() == every.diverged.tolist() == sub.diverged.tolist()
    assert third.table["diagnosis"].iloc[-1].startswith("diverged (")
    assert third.table["diverged_rule"].iloc[-1] == every.table["diverged_rule"].iloc[-1]


def test_a_subsample_between_and_every_row_at_the_last_epoch(runs):
    data, configs, every, _, sub = runs
    for i, c in enumerate(configs[:-1]):
        last = c.epochs - 1
        for m in ("val_acc", "val_loss", "train_acc", "full_train_loss"):
            assert abs(sub.curves[m][i, last] - every.curves[m][i, last]) <= TOL
        mid = sub.curves["val_acc"][i, 1]  # epoch 2: due, and no config's last: on 20 rows
        assert np.isfinite(mid) and abs(mid * 20 - round(mid * 20)) < 1e-9
    assert data.n_val > 20


def test_bad_values_and_a_resumed_sweep_keeps_the_settings_apart(tmp_path):
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    cfg = [jaxfit.Config(hidden=(4,), epochs=3)]
    for kw in (dict(eval_every=0), dict(eval_every="2"), dict(eval_rows=0)):
        with pytest.raises(UserError, match="is invalid: need a positive integer"):
            jaxfit.sweep(data, cfg, **kw)
    first = jaxfit.sweep(data, cfg, eval_every=2, checkpoint_dir=tmp_path)
    other = jaxfit.sweep(data, cfg, checkpoint_dir=tmp_path)  # every epoch: not the saved chunk
    assert [p["resumed"] for p in other.meta["plans"]] == [0]
    assert np.isfinite(other.curves["val_acc"]).all() and np.isnan(first.curves["val_acc"][0, 0])
    again = jaxfit.sweep(data, cfg, eval_every=2, checkpoint_dir=tmp_path)
    assert [p["resumed"] for p in again.meta["plans"]] == [1]
    np.testing.assert_array_equal(again.curves["val_acc"], first.curves["val_acc"])


def test_command_line_eval_every(tmp_path, capsys):
    from jaxfit.cli import main

    args = ["sweep", "--quick", "--datasets", "sum_bin", "--n", "64", "--epochs", "4", "--no-progress", "--no-cache"]
    assert main(args + ["--eval-every", "0"]) == 2
    assert "--eval-every=0 is invalid" in capsys.readouterr().err
    assert main(args + ["--eval-every", "2", "--out", str(tmp_path / "a")]) == 0
    r = jaxfit.SweepResult.load(tmp_path / "a" / "sum_bin")
    assert r.meta["eval_every"] == 2 and np.isnan(r.curves["val_acc"][:, 0]).all()
    assert np.isfinite(r.curves["val_acc"][:, 3]).all()
    spec = (tmp_path / "s.toml")
    spec.write_text('[sweep]\neval_every = 2\n[[data]]\nname = "sum_bin"\nn = 64\n[grid]\nepochs = 2\n')
    from jaxfit import spec as specmod

    plain = specmod.load_spec(str(spec)).digest
    spec.write_text('[[data]]\nname = "sum_bin"\nn = 64\n[grid]\nepochs = 2\n')
    assert specmod.load_spec(str(spec)).digest != plain  # another evaluation: another output directory

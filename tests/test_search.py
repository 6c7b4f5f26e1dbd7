"""jaxfit.search: Optuna's ask-and-tell in batches, each batch trained by jaxfit.sweep."""

from __future__ import annotations

import numpy as np
import pytest

import jaxfit
from jaxfit import datasets
from jaxfit.errors import UserError
from jaxfit.results import SweepResult

optuna = pytest.importorskip("optuna")

SPACE = {"hidden": [(4,), (8,), (8, 8)], "activation": ["relu", "tanh"], "lr": jaxfit.log_uniform(1e-3, 1e-1),
         "optimizer": ["adam", "sgd"], "epochs": 4, "dtype": "float64"}


@pytest.fixture(scope="module")
def data():
    return datasets.sum_mod(n=200, seed=0)


@pytest.fixture(scope="module")
def searched(data, tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    return d, jaxfit.search(data, SPACE, trials=12, batch=4, seeds=2, directory=str(d))


def test_each_trial_is_told_the_seed_mean_of_its_configs_trained_as_a_plain_sweep(data, searched):
    _, found = searched
    t = found.trials
    assert len(t) == 12 and sorted(t["number"]) == list(range(12)) and set(t["round"]) == {0, 1, 2}
    assert (t["state"] == "COMPLETE").all()
    # The same configs trained by a plain sweep give the same numbers (float64).
    alone = jaxfit.sweep(data, found.result.configs)
    np.testing.assert_allclose(found.result.table["final_val_acc"], alone.table["final_val_acc"], rtol=0, atol=1e-12)
    for _, row in t.iterrows():
        cfgs = [found.result.configs[r] for r in row["rows"]]
        assert [c.seed for c in cfgs] == [0, 1]
        assert cfgs[0].replace(seed=0) == cfgs[1].replace(seed=0)
        assert cfgs[0].lr == pytest.approx(row["param_lr"]) and cfgs[0].hidden == eval(row["param_hidden"])
        assert row["value"] == pytest.approx(alone.table.loc[row["rows"], "final_val_acc"].mean(), abs=1e-12)
    # Optuna holds the same values, and the best trial is the table's best.
    told = {tr.number: tr.value for tr in found.study.trials}
    assert all(told[n] == pytest.approx(v) for n, v in zip(t["number"], t["value"]))
    assert found.best(1)["value"].iloc[0] == pytest.approx(found.study.best_value)
    curve = found.best_so_far()
    assert np.all(np.diff(curve[np.isfinite(curve)]) >= 0) and curve[-1] == pytest.approx(found.study.best_value)


def test_a_rerun_loads_every_round_and_a_different_search_is_refused(data, searched):
    d, found = searched
    c0 = jaxfit.compile_count()
    again = jaxfit.search(data, SPACE, trials=12, batch=4, seeds=2, directory=str(d))
    assert jaxfit.compile_count() == c0  # nothing trained
    assert again.trials[["number", "value"]].equals(found.trials[["number", "value"]])
    with pytest.raises(UserError, match="holds another search .*batch"):
        jaxfit.search(data, SPACE, trials=12, batch=6, seeds=2, directory=str(d))


def test_a_search_interrupted_mid_round_resumes_to_the_uninterrupted_trials(data, searched, tmp_path, monkeypatch):
    _, full = searched
    from jaxfit import study as study_mod

    real = study_mod._train_round
    calls = {"n": 0}

    def crash_in_round_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # a kill after the round's trials were asked and written, before any tell
        return real(*a, **k)

    monkeypatch.setattr(study_mod, "_train_round", crash_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        jaxfit.search(data, SPACE, trials=12, batch=4, seeds=2, directory=str(tmp_path))
    monkeypatch.setattr(study_mod, "_train_round", real)
    resumed = jaxfit.search(data, SPACE, trials=12, batch=4, seeds=2, directory=str(tmp_path))
    # The 4 trials asked and never told were marked FAIL and asked again with the same parameters.
    states = [t.state.name for t in resumed.study.trials]
    assert states.count("FAIL") == 4 and states.count("COMPLETE") == 12
    cols = ["round", "state", "value", "param_hidden", "param_activation", "param_lr", "param_optimizer"]
    assert resumed.trials[cols].equals(full.trials[cols])


def test_repeated_configs_are_told_without_training_again(data):
    space = {"hidden": [(4,), (8,)], "activation": ["relu", "tanh"], "epochs": 2}
    found = jaxfit.search(data, space, trials=12, batch=4, sampler="random", seed=3)
    keys = {(c.hidden, c.activation) for c in found.result.configs}
    assert len(found.result) == len(keys) <= 4
    assert sum(r["configs_trained"] for r in found.meta["rounds"]) == len(found.result)
    for _, row in found.trials.iterrows():
        c = found.result.configs[row["rows"][0]]
        assert (repr(c.hidden), c.activation) == (row["param_hidden"], row["param_activation"])
        assert row["value"] == pytest.approx(found.result.table.loc[row["rows"][0], "final_val_acc"])


def test_halving_inside_each_round_reports_rungs_and_tells_pruned(data):
    space = {**SPACE, "epochs": 8}
    found = jaxfit.search(data, space, trials=8, batch=8, seeds=2, metric="val_loss",
                          prune=jaxfit.Halving(metric="val_loss", min_epochs=2, eta=2))
    assert found.study.direction == optuna.study.StudyDirection.MINIMIZE
    t = found.trials
    pruned = t[t["state"] == "PRUNED"]
    assert len(pruned) >= 4 and (pruned["stopped_epoch"] < 8).all()
    assert (t.loc[t["state"] == "COMPLETE", "stopped_epoch"] == 8).all()
    by_number = {tr.number: tr for tr in found.study.trials}
    for _, row in t.iterrows():
        tr = by_number[row["number"]]
        assert tr.state.name == row["state"]
        assert 2 in tr.intermediate_values  # every trial reached the first rung
        stop = row["stopped_epoch"]
        mean = found.result.curves["val_loss"][row["rows"], stop - 1].mean()
        assert tr.intermediate_values[stop] == pytest.approx(mean)
    # Seeds of a trial live and die together.
    for _, row in t.iterrows():
        assert len(set(found.result.stopped_epoch[row["rows"]])) == 1


@pytest.mark.parametrize("kwargs, match", [
    ({"space": {"activaton": ["relu"]}}, "activaton.*did you mean 'activation'"),
    ({"space": {"activation": ["relu", "rleu"]}}, "activation='rleu'"),
    ({"space": {"lr": jaxfit.log_uniform(1e-3, 1e-1), "seed": [0, 1]}}, "seeds=N"),
    ({"space": {"hidden": [4, 8]}}, "ambiguous"),
    ({"sampler": "tpee"}, "sampler='tpee'.*tpe, random, qmc"),
    ({"metric": "val_accuracy"}, "metric='val_accuracy'"),
    ({"trials": 0}, "trials"),
    ({"batch": 2.5}, "batch"),
    ({"prune": "halving"}, "Halving"),
    ({"checkpoint_dir": "x"}, "checkpoint_dir cannot be passed"),
    ({"chunksize": 4}, "unknown option.*chunksize"),
])
def test_bad_input_is_one_line_before_anything_compiles(data, kwargs, match):
    args = {"space": {"lr": jaxfit.log_uniform(1e-3, 1e-1), "epochs": 2}, "trials": 4, **kwargs}
    c0 = jaxfit.compile_count()
    with pytest.raises(UserError, match=match):
        jaxfit.search(data, **args)
    assert jaxfit.compile_count() == c0


def test_concat_keeps_every_part_and_round_trips_through_save(data, tmp_path):
    a = jaxfit.sweep(data, jaxfit.grid(hidden=[(4,)], lr=[0.01, 0.1], epochs=3, dtype="float64"))
    b = jaxfit.sweep(data, jaxfit.grid(hidden=[(8,)], lr=[0.01], epochs=5, dtype="float64"),
                     prune=jaxfit.Halving(min_epochs=2))
    j = SweepResult.concat([a, b])
    assert j.configs == a.configs + b.configs and j.curves["val_loss"].shape == (3, 5)
    assert np.isnan(j.curves["val_loss"][:2, 3:]).all()
    np.testing.assert_array_equal(j.table["final_val_acc"], list(a.table["final_val_acc"]) + list(b.table["final_val_acc"]))
    assert list(j.table["diagnosis"]) == list(a.table["diagnosis"]) + list(b.table["diagnosis"])
    assert list(j.stopped_epoch) == [3, 3, 5] and "pruned" in j.table.columns
    np.testing.assert_array_equal(j.params(2)["dense"][0]["w"], b.params(0)["dense"][0]["w"])
    np.testing.assert_array_equal(j.params(1, best=True)["dense"][0]["w"], a.params(1, best=True)["dense"][0]["w"])
    back = SweepResult.load(j.save(tmp_path / "joined"))
    assert back.configs == j.configs
    np.testing.assert_array_equal(back.table["final_val_loss"], j.table["final_val_loss"])
    with pytest.raises(UserError, match="different datasets"):
        SweepResult.concat([a, jaxfit.sweep(datasets.sum_mod(n=100, seed=1), a.configs[:1])])


# ----------------------------------------------------------------------------- the [search] table

SPEC = """
[[data]]
name = "sum_mod"
n = 200

[search]
trials = 8
batch = 4
seeds = 2
hidden = { choice = [[4], [8, 8]] }
lr = { log_uniform = [1e-3, 1e-1] }
epochs = 3
"""


def _spec(text):
    import tomllib

    from jaxfit.spec import build_spec

    return build_spec(tomllib.loads(text), text=text, path="s.toml")


def test_search_table_gives_the_settings_the_space_and_one_round_of_configs():
    spec = _spec(SPEC)
    se = spec.search
    assert {k: se[k] for k in ("trials", "batch", "seeds", "sampler", "metric")} == \
        {"trials": 8, "batch": 4, "seeds": 2, "sampler": "tpe", "metric": "val_acc"}
    assert se["space"]["hidden"] == [(4,), (8, 8)] and se["space"]["epochs"] == 3
    assert len(spec.configs) == 8 and {c.seed for c in spec.configs} == {0, 1}
    assert all(c.hidden in ((4,), (8, 8)) and 1e-3 <= c.lr <= 1e-1 for c in spec.configs)


@pytest.mark.parametrize("change, match", [
    (("trials = 8\n", ""), r"s.toml.*\[search\] needs trials"),
    (("epochs = 3", "epoch = 3"), r"s.toml:\d+: .*unknown Config field 'epoch'.*'epochs'"),
    (("batch = 4", "batch = 0"), r"s.toml:\d+: .*batch"),
    (("batch = 4", 'sampler = "tpee"'), r"s.toml:\d+: .*sampler='tpee'"),
    (("epochs = 3", 'activation = { choice = ["relu", "rleu"] }'), r"s.toml:\d+: .*activation='rleu'"),
    (("[search]", "[grid]\nlr = [0.1]\n\n[search]"), r"one of \[grid\], \[sample\] or \[search\]"),
])
def test_bad_search_tables_are_named_at_their_line(change, match):
    with pytest.raises(UserError, match=match):
        _spec(SPEC.replace(*change))


def test_the_command_line_dry_run_shows_a_round_and_compiles_nothing(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "s.toml"
    path.write_text(SPEC)
    run = subprocess.run([sys.executable, "-m", "jaxfit.cli", "sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "search: 8 trials in rounds of 4 (tpe sampler, seed 0), each at 2 seed(s)" in run.stdout
    assert "plan: 8 configs" in run.stdout and "nothing compiled" in run.stdout


@pytest.mark.parametrize("damage, said", [
    (lambda raw: raw[:len(raw) // 2], "last record was cut short"),  # a write killed midway: dropped
    (lambda raw: raw[:300] + b"\x00garbage\n" + raw[300:], "rebuilt from the saved rounds"),  # a bad record inside
])
def test_a_damaged_journal_is_repaired_or_rebuilt_from_the_saved_rounds(data, searched, tmp_path, damage, said):
    import shutil

    d, found = searched
    copy = tmp_path / "copy"
    shutil.copytree(d, copy, ignore=shutil.ignore_patterns(".jaxfit.lock*"))
    journal = copy / "study.journal"
    journal.write_bytes(damage(journal.read_bytes()))
    lines = []
    c0 = jaxfit.compile_count()
    again = jaxfit.search(data, SPACE, trials=12, batch=4, seeds=2, directory=str(copy), progress=lines.append)
    assert jaxfit.compile_count() == c0  # nothing trained: every round's result was saved
    assert any(said in line for line in lines), lines
    assert bool(list(copy.glob("study.journal.damaged-*"))) == ("rebuilt" in said)
    cols = ["round", "state", "value", "param_hidden", "param_lr"]
    assert again.trials[cols].equals(found.trials[cols])
    assert sorted(t.value for t in again.study.trials if t.state.name == "COMPLETE") == sorted(found.trials["value"])
    assert "RUNNING" not in {t.state.name for t in again.study.trials}  # no liar left for TPE


def test_a_smaller_first_round_then_full_batches(data, tmp_path):
    space = {"hidden": [(4,), (8,)], "lr": jaxfit.log_uniform(1e-3, 1e-1), "epochs": 2}
    found = jaxfit.search(data, space, trials=10, batch=4, startup=2, directory=str(tmp_path))
    assert [r["trials"] for r in found.meta["rounds"]] == [2, 4, 4] and found.meta["startup"] == 2
    again = jaxfit.search(data, space, trials=10, batch=4, startup=2, directory=str(tmp_path))
    assert again.trials[["number", "value"]].equals(found.trials[["number", "value"]])
    with pytest.raises(UserError, match="holds another search .*startup"):
        jaxfit.search(data, space, trials=10, batch=4, startup=3, directory=str(tmp_path))
    with pytest.raises(UserError, match="startup"):
        jaxfit.search(data, space, trials=10, batch=4, startup=0)

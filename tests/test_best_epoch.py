"""The parameters at each config's best epoch are kept beside the final ones (what an early-stopping
user keeps): they equal the params of the same config trained for exactly best_epoch + 1 epochs, the
epoch is the table's best_epoch, and they survive checkpoints, save and load."""

import numpy as np
import pytest

import jaxfit


def leaves(tree):
    return [np.asarray(v) for v in __import__("jax").tree_util.tree_leaves(tree)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = jaxfit.datasets.sum_bin(n=120, seed=1, n_val=60)
    # a wide net on few points with a large rate: validation accuracy peaks, then wanders
    cfgs = jaxfit.grid(hidden=[(64, 64)], lr=[0.05], batch_size=8, epochs=12, seed=[0, 1, 2], dtype="float64")
    ck = tmp_path_factory.mktemp("ck")
    r = jaxfit.sweep(data, cfgs, checkpoint_dir=str(ck))
    return data, cfgs, r, ck


def test_best_params_are_those_of_the_run_stopped_at_the_best_epoch(runs):
    data, cfgs, r, _ = runs
    be = r.table["best_epoch"].to_numpy()
    va = r.curves["val_acc"]
    for i, c in enumerate(cfgs):
        assert be[i] == int(np.argmax(va[i, : c.epochs]))
    assert (be < 11).any(), be  # at least one run's best is not its last epoch: the test can tell them apart
    short = [c.replace(epochs=int(be[i]) + 1) for i, c in enumerate(cfgs)]
    s = jaxfit.sweep(data, short)
    for i in range(len(cfgs)):
        for a, b in zip(leaves(r.params(i, best=True)), leaves(s.params(i))):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        if be[i] < cfgs[i].epochs - 1:
            assert any(not np.array_equal(a, b) for a, b in zip(leaves(r.params(i, best=True)), leaves(r.params(i))))


def test_best_params_survive_checkpoints_and_save_load(runs, tmp_path):
    data, cfgs, r, ck = runs
    again = jaxfit.sweep(data, cfgs, checkpoint_dir=str(ck))  # every chunk from the checkpoint
    assert sum(p["resumed"] for p in again.meta["plans"]) == len(again.meta["plans"])
    back = jaxfit.SweepResult.load(r.save(tmp_path / "r"))
    for i in range(len(cfgs)):
        for other in (again, back):
            for a, b in zip(leaves(r.params(i, best=True)), leaves(other.params(i, best=True))):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(leaves(r.model_state(i, best=True)), leaves(other.model_state(i, best=True))):
                np.testing.assert_array_equal(a, b)

"""jaxfit.sweep(data, configs, model=factory): a user's own flax.nnx module trained exactly as the
built-in network is (losses, optimisers, schedules, seeds, vmapped numbers, results)."""

import jax
import numpy as np
import pytest
from flax import nnx

import jaxfit
import jaxfit.flax as jf
from jaxfit import Config


@pytest.fixture(scope="module")
def data():
    return jaxfit.datasets.sum_bin(n=96, seed=3, n_val=32)


def builtin_factory(data):
    return lambda c, F, K, rngs: jf.MLP.from_config(c, F, K, x_train=data.x_train)


def close(a, b, tol):
    for k in a.curves:
        np.testing.assert_allclose(a.curves[k], b.curves[k], rtol=0, atol=tol, err_msg=k)


def test_the_built_in_network_as_a_user_module_trains_the_same_numbers(data):
    """jaxfit.flax.MLP passed as the model gives the built-in network's trajectories (float64): the
    module path is the same training, not an approximation of it."""
    cfgs = [Config(hidden=(8, 6), batchnorm=True, dropout=0.2, optimizer="sgd", momentum=0.9, lr=0.05, epochs=3,
                   batch_size=16, seed=1, dtype="float64"),
            Config(hidden=(8,), input_norm="standardize", encoding="fourier", fourier_features=4, epochs=3,
                   batch_size=20, seed=2, dtype="float64", schedule="step", step_size=1, gamma=0.5),
            Config(hidden=(6,), input_norm="batchnorm", activation="tanh", optimizer="adamw", epochs=3,
                   batch_size=0, seed=3, dtype="float64")]
    ref = jaxfit.sweep(data, cfgs, fuse="none")
    got = jaxfit.sweep(data, cfgs, model=builtin_factory(data))
    assert got.meta["model"].endswith("<lambda>")
    close(got, ref, 1e-12)
    for i in range(len(cfgs)):
        np.testing.assert_allclose(got.outputs(i, data.x_val), ref.outputs(i, data.x_val), rtol=0, atol=1e-12)


class ResMLP(nnx.Module):
    """A residual MLP from jaxfit.flax layers; its Dropout takes the config's rate from the program."""

    def __init__(self, F, K, width, rngs):
        self.inp = jf.Linear(F, width, rngs=rngs)
        self.b0 = jf.Linear(width, width, rngs=rngs)
        self.b1 = jf.Linear(width, width, rngs=rngs)
        self.drop = jf.Dropout()
        self.out = jf.Linear(width, K, rngs=rngs)

    def __call__(self, x, *, train):
        h = nnx.relu(self.inp(x))
        h = h + nnx.relu(self.b0(h))
        h = self.drop(h)
        h = h + nnx.relu(self.b1(h))
        return self.out(h)


class BNNet(nnx.Module):
    """A small module with its own BatchNorm (running statistics are state, updated in training).
    BatchNorm follows the activation: a bias right before BatchNorm has a zero true gradient, whose
    rounding noise Adam amplifies (runs of different chunk sizes then part at 1e-11: not a bug)."""

    def __init__(self, F, K, rngs):
        self.a = jf.Linear(F, 12, rngs=rngs)
        self.bn = jf.BatchNorm1d(12)
        self.b = jf.Linear(12, K, rngs=rngs)

    def __call__(self, x):
        return self.b(self.bn(nnx.tanh(self.a(x))))


@pytest.mark.parametrize("factory", [lambda c, F, K, rngs: ResMLP(F, K, 16, rngs),
                                     lambda c, F, K, rngs: BNNet(F, K, rngs)], ids=["residual", "batchnorm"])
def test_a_users_module_fused_over_numbers_equals_each_config_trained_alone(data, factory):
    cfgs = jaxfit.grid(lr=[0.01, 0.03], optimizer=["sgd", "adam"], momentum=0.9, dropout=0.1, epochs=3,
                       batch_size=16, seed=[0, 1], dtype="float64")
    r = jaxfit.sweep(data, cfgs, model=factory)
    by_opt = {c.optimizer for c in cfgs}
    assert r.meta["programs"] == len(by_opt)  # one program per graph and optimiser structure
    assert np.isfinite(r.curves["train_loss"]).all()
    assert (r.curves["full_train_loss"][:, -1] < r.curves["full_train_loss"][:, 0]).all()  # it learns
    for i in (0, 3, len(cfgs) - 1):
        alone = jaxfit.sweep(data, [cfgs[i]], model=factory)
        for k in r.curves:
            np.testing.assert_allclose(r.curves[k][i], alone.curves[k][0], rtol=0, atol=1e-12)
        m = r.to_flax(i)
        assert isinstance(m, nnx.Module)
        with jax.enable_x64(True):  # a float64 config's module computes in float64
            y = m(np.asarray(data.x_val), train=False) if isinstance(m, ResMLP) else m(np.asarray(data.x_val))
            np.testing.assert_array_equal(np.asarray(y), r.outputs(i, data.x_val))
    # the seeds differ: so do their initial weights, and their curves
    assert not np.array_equal(r.curves["train_loss"][0], r.curves["train_loss"][len(cfgs) // 2])


def test_a_bad_factory_is_refused_before_compiling(data):
    c0 = jaxfit.compile_count()
    with pytest.raises(ValueError, match=r"maps x \[B, 2\] to \(2, 5\), but its loss 'cross_entropy' on 3 classes"):
        jaxfit.sweep(data, [Config(epochs=1)], model=lambda c, F, K, rngs: jf.Linear(F, 5, rngs=rngs))
    with pytest.raises(ValueError, match="not a flax.nnx.Module"):
        jaxfit.sweep(data, [Config(epochs=1)], model=lambda c, F, K, rngs: object())
    with pytest.raises(ValueError, match="cannot be combined with checkpoint_dir"):
        jaxfit.sweep(data, [Config(epochs=1)], model=builtin_factory(data), checkpoint_dir="x")
    assert jaxfit.compile_count() == c0


def test_a_linen_module_sweeps_through_the_adapter(data):
    import flax.linen as lnn

    class LinenMLP(lnn.Module):
        width: int

        @lnn.compact
        def __call__(self, x, train: bool = False):
            return lnn.Dense(3, param_dtype=x.dtype)(lnn.tanh(lnn.Dense(self.width, param_dtype=x.dtype)(x)))

    factory = jf.from_linen(lambda c, F, K: LinenMLP(width=12))
    cfgs = jaxfit.grid(lr=[0.01, 0.03], optimizer="adam", epochs=3, batch_size=16, seed=[0, 1], dtype="float64")
    r = jaxfit.sweep(data, cfgs, model=factory)
    assert r.meta["programs"] == 1 and "from_linen" in r.meta["model"]
    assert (r.curves["full_train_loss"][:, -1] < r.curves["full_train_loss"][:, 0]).all()
    alone = jaxfit.sweep(data, [cfgs[3]], model=factory)
    np.testing.assert_allclose(r.curves["train_loss"][3], alone.curves["train_loss"][0], rtol=0, atol=1e-12)
    assert not np.array_equal(r.curves["train_loss"][0], r.curves["train_loss"][1])  # the seeds' inits differ

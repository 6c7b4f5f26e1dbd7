"""Saturation parity: where a sigmoid output saturates, BCELoss's backward clamp decides the gradient.

PyTorch's CPU kernel (aten/src/ATen/native/Loss.cpp) declares `constexpr float EPSILON = 1e-12` and
its backward, in every dtype, is

    grad * (p - t) / max((1 - p) * p, scalar_t(EPSILON))

so a float64 run clamps at float32(1e-12) = 9.999999960041972e-13, not at the double 1e-12. Wherever
p (1 - p) < 1e-12 (an output pre-activation |z| above about 27.6) that constant alone scales the
gradient; the double 1e-12 makes it smaller by a relative 4.0e-9. jaxfit reads the constant from
`jaxfit.nn.losses.BCE_GRAD_EPS`.

The cases, all float64 on CPU:

* one sample, x = 1, t = 0, weight 33, bias 0, no hidden layer (z = 33, p (1 - p) = 4.7e-15), one
  full-batch SGD step: jaxfit's update is PyTorch's to one rounding (measured: the bias's 2.3e-16
  relative, the weight's, as far as w - 33 resolves it, bitwise);
* document 2's set-up on the raw heart-rate stand-in (readings near 92, not standardised): a (16,)
  hidden layer, sigmoid output, BCELoss, SGD 0.01, full batch, 60 epochs (60 steps) from PyTorch's
  seed-2 weights. The raw inputs make the steps overshoot: the output's pre-activation, 10..17 at the
  start, swings past -30 and then past +30 (asserted below from the run's own parameters) with most
  points saturated on the wrong side, where the clamp alone sets the gradient, before the run
  recovers (loss 0.67 at the end). Per-epoch metrics and final parameters are compared at the
  float64 tolerances of test_trajectory.py (docs/parity.md). The hidden units are ReLU: with
  the document's sigmoid hidden units every unit is saturated by inputs near 92, the output is the
  same for every point and no learning rate that keeps float64 rounding below the tolerances drives
  it past 30;
* planted: both cases rerun with the old constant (the double 1e-12) patched in, and the comparison
  must then FAIL (one sample: the update parts by 4.0e-9 relative; heart rate: the losses by 1.5e-7,
  1,500 times the loss tolerance, against 2.0e-13 with the right constant; the parameters by 9.1e-11,
  under their tolerance), so these tests do see the constant;
* edge inputs: the activations and losses of jaxfit/nn/layers.py and losses.py against PyTorch's
  modules in float64 where their constants show (clamps, thresholds, slopes, eps): equal to rounding
  (1e-13), far below what a float32-valued constant would give (1e-8 relative).

jaxfit keeps its compiled programs for the process; the planted runs clear them
(`jaxfit.engine.clear_cache()`) before and after patching, so neither they nor later tests run a
program traced with the other constant.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxfit
from jaxfit.io import tree
import torchref
from jaxfit import Config
from jaxfit.nn import layers, losses

# Most tests here evaluate jaxfit's layers and losses on float64 JAX arrays of their own: x64 for this module.
pytestmark = pytest.mark.usefixtures("x64")

# test_trajectory.py's float64 bounds (docs/parity.md: identical runs agree to 4.4e-16 over 100
# steps and 5.4e-13 over 1,000; the smallest real mismatch it lists is 1e-8).
LOSS_ATOL_F64 = 1e-10
PARAM_ATOL_F64 = 1e-9
LOSS_METRICS = ("train_loss", "last_batch_loss", "full_train_loss", "val_loss")
ACC_METRICS = ("train_acc", "val_acc")

TORCH_EPS = float(np.float32(1e-12))  # the kernel's scalar_t(EPSILON) in float64
OLD_EPS = 1e-12  # what jaxfit used before: the double

ONE = Config(hidden=(), output="sigmoid", loss="bce", optimizer="sgd", lr=0.1, batch_size=0, epochs=1,
             dtype="float64")
HEART = Config(hidden=(16,), activation="relu", output="sigmoid", loss="bce", optimizer="sgd", lr=0.01,
               batch_size=0, epochs=60, shuffle=True, dtype="float64", seed=2)
SATURATED_Z = 30.0  # p (1 - p) = 9.4e-14 there, under the clamp


@contextlib.contextmanager
def bce_grad_eps(value: float):
    """jaxfit with `value` as BCELoss's backward clamp; compiled programs cleared on the way in and out."""
    saved = losses.BCE_GRAD_EPS
    jaxfit.engine.clear_cache()
    losses.BCE_GRAD_EPS = value
    try:
        yield
    finally:
        losses.BCE_GRAD_EPS = saved
        jaxfit.engine.clear_cache()


def flatten(params) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in tree.flatten(params).items()}


def deviations(tr, jr) -> dict[str, float]:
    """Largest |torch - jaxfit| over the per-epoch loss curves, the accuracy curves and the final params."""
    def curve(names):
        return max(float(np.max(np.abs(np.asarray(jr.curves[m][0], np.float64) - np.asarray(tr.curves[m]))))
                   for m in names)
    ft, fj = flatten(tr.params()), flatten(jr.params(0))
    assert ft.keys() == fj.keys()
    return {"loss": curve(LOSS_METRICS), "acc": curve(ACC_METRICS),
            "params": max(float(np.max(np.abs(ft[k] - fj[k]))) for k in ft)}


def within_f64_tolerances(d: dict[str, float]) -> bool:
    return d["loss"] <= LOSS_ATOL_F64 and d["acc"] <= 1e-12 and d["params"] <= PARAM_ATOL_F64


def output_preactivation(params, x) -> np.ndarray:
    """z of the output unit on x (ReLU hidden layers), from parameters in jaxfit's layout."""
    h = np.asarray(x, np.float64)
    for layer in params["dense"][:-1]:
        h = np.maximum(h @ np.asarray(layer["w"]).T + np.asarray(layer["b"]), 0.0)
    out = params["dense"][-1]
    return (h @ np.asarray(out["w"]).T + np.asarray(out["b"]))[:, 0]


# ----------------------------------------------------------------------------- one sample


@pytest.fixture(scope="module")
def one_sample():
    data = jaxfit.datasets.from_arrays(np.array([[1.0]]), np.array([0]), num_classes=2)
    params = {"dense": [{"w": np.array([[33.0]]), "b": np.array([0.0])}]}
    order = np.zeros((1, 1, 1), np.int32)
    tr = torchref.train(data, ONE, params=params, model_state={}, batch_order=order)
    return data, params, order, tr


def one_step_updates(result_params) -> tuple[float, float]:
    """(weight update, bias update) of the one step from w = 33, b = 0."""
    d = result_params["dense"][0]
    return float(np.asarray(d["w"])[0, 0]) - 33.0, float(np.asarray(d["b"])[0])


def test_one_sample_update_is_pytorchs(one_sample):
    data, params, order, tr = one_sample
    tw, tb = one_step_updates(tr.params())
    # PyTorch's step from its kernels: dL/dp = p / max((1 - p) p, float32(1e-12)), sigmoid backward
    # dL/dz = dL/dp (1 - p) p, SGD b <- b - lr dL/dz (x = 1, so the weight's gradient is the same).
    p = 1.0 / (1.0 + np.exp(-33.0))
    dz = (p / max((1.0 - p) * p, TORCH_EPS)) * (1.0 - p) * p
    assert tb == -ONE.lr * dz, "PyTorch's own step is not the kernel formula with float32(1e-12): torch changed?"
    assert tw == pytest.approx(-4.6629367220e-4, rel=1e-10)

    jr = jaxfit.train(data, ONE, params=params, model_state={}, batch_order=order)
    jw, jb = one_step_updates(jr.params(0))
    # The bias starts at 0, so its update carries full float64 precision: equal to 1e-15 relative.
    # The weight's update is read off w - 33, which resolves only ulp(33) = 7.1e-15 (1.5e-11 of it).
    assert abs(jb - tb) <= 1e-15 * abs(tb), f"bias update: jaxfit {jb!r}, PyTorch {tb!r}"
    assert abs(jw - tw) <= 2 * np.spacing(33.0), f"weight update: jaxfit {jw!r}, PyTorch {tw!r}"


def test_one_sample_planted_old_constant_fails(one_sample):
    """With the double 1e-12 the same step parts from PyTorch's by 4.0e-9 relative: the check above sees it."""
    data, params, order, tr = one_sample
    tw, tb = one_step_updates(tr.params())
    with bce_grad_eps(OLD_EPS):
        jr = jaxfit.train(data, ONE, params=params, model_state={}, batch_order=order)
    jw, jb = one_step_updates(jr.params(0))
    rel_b, rel_w = abs(jb - tb) / abs(tb), abs(jw - tw) / abs(tw)
    assert rel_b > 1e-12 and rel_w > 1e-12, (
        f"the old constant went unnoticed: relative {rel_b:.3g} (bias), {rel_w:.3g} (weight)")
    assert rel_b == pytest.approx(OLD_EPS / TORCH_EPS - 1, rel=1e-3)  # 3.996e-9, from the constants' ratio
    assert abs(jw - tw) > 2 * np.spacing(33.0)


# ----------------------------------------------------------------------------- raw heart rate


@pytest.fixture(scope="module")
def heart(parity_data):
    data = parity_data["heart_rate"]
    torch.manual_seed(HEART.seed)
    model = torchref.build_model(HEART, data.num_features, data.num_classes)
    params, state = torchref.to_params(model.state_dict(), HEART)
    rng = np.random.default_rng(1)  # full batch: the order only sets the summation order
    order = np.stack([rng.permutation(data.n_train) for _ in range(HEART.epochs)]).astype(np.int32)[:, None, :]
    tr = torchref.train(data, HEART, params=params, model_state=state, batch_order=order)
    return data, params, state, order, tr


def test_heart_rate_run_saturates(heart):
    """The case is what it claims: it starts unsaturated and training drives some output pre-activation
    past +30 (and every point past |z| = 20), read off the run's own parameters after each epoch."""
    data, params, state, order, tr = heart
    x = np.asarray(data.x_train)
    z0 = output_preactivation(params, x)
    assert z0.max() < 20, f"starts saturated already (max z {z0.max():.1f}): not the case described"
    for k in range(1, HEART.epochs + 1):  # the run's first k epochs (same weights and batch order)
        zk = output_preactivation(
            torchref.train(data, HEART.replace(epochs=k), params=params, model_state=state,
                           batch_order=order[:k]).params(), x)
        if zk.max() > SATURATED_Z:
            break
    else:
        pytest.fail(f"no output pre-activation passes {SATURATED_Z} in {HEART.epochs} epochs: fix the case")
    assert k < HEART.epochs, "saturated only at the very end: the comparison would not cover the clamp"
    y = np.asarray(data.y_train)
    wrong = (zk > 27.7) & (y == 0)  # p (1 - p) < 1e-12 on the wrong side: the clamp alone sets the gradient
    assert wrong.sum() >= 10, f"after epoch {k}: only {wrong.sum()} points saturated on the wrong side"
    assert tr.curves["full_train_loss"][-1] < 1.0, "the run never recovers: the comparison would sit in one state"


def test_heart_rate_trajectory_is_pytorchs(heart):
    data, params, state, order, tr = heart
    assert np.isfinite(tr.curves["train_loss"]).all() and np.isfinite(tr.curves["full_train_loss"]).all()
    jr = jaxfit.train(data, HEART, params=params, model_state=state, batch_order=order)
    d = deviations(tr, jr)
    assert within_f64_tolerances(d), (
        f"raw heart rate, saturated BCELoss: max |diff| losses {d['loss']:.3g} (atol {LOSS_ATOL_F64:g}), "
        f"accuracies {d['acc']:.3g}, params {d['params']:.3g} (atol {PARAM_ATOL_F64:g})")


def test_heart_rate_planted_old_constant_fails(heart):
    """With the double 1e-12 the same comparison fails (losses part by about 1.5e-7)."""
    data, params, state, order, tr = heart
    with bce_grad_eps(OLD_EPS):
        jr = jaxfit.train(data, HEART, params=params, model_state=state, batch_order=order)
    d = deviations(tr, jr)
    assert not within_f64_tolerances(d), f"the old constant went unnoticed: {d}"
    assert d["loss"] > 100 * LOSS_ATOL_F64, f"the planted deviation is too close to the tolerance: {d}"


# ----------------------------------------------------------------------------- edge inputs

# Inputs where each constant shows: both signs of saturation, around Softplus's threshold 20 (the
# float64 neighbours of 20 and 20 itself), tiny and large negatives (ELU/SELU's alpha * scale,
# LeakyReLU's slope), and a spread in between. Differences of rounding are up to about 1.3e-15 here; a
# constant rounded to float32 would be off by 1e-8 relative (LeakyReLU: 2.2e-10 absolute at -1).
EDGE_X = np.concatenate([
    [-1000.0, -40.0, -30.0, -1.0, -1e-10, 0.0, 1e-10, 1.0, 30.0, 40.0],
    [np.nextafter(20.0, 0.0), 20.0, np.nextafter(20.0, 40.0), 19.0, 21.0],
    np.linspace(-25.0, 25.0, 101),
])
EDGE_ATOL = 1e-13

TORCH_ACTIVATIONS = {  # torchref.convert's modules
    "relu": torch.nn.ReLU, "leaky_relu": lambda: torch.nn.LeakyReLU(0.01), "elu": torch.nn.ELU,
    "selu": torch.nn.SELU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
    "softplus": torch.nn.Softplus,
}


def _torch_value_and_grad(fn, x):
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    y.sum().backward()
    return y.detach().numpy(), t.grad.numpy()


def _jax_value_and_grad(fn, x):
    x = jnp.asarray(x, jnp.float64)
    return np.asarray(fn(x)), np.asarray(jax.grad(lambda v: jnp.sum(fn(v)))(x))


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
def test_activation_edges_match_torch_float64(name):
    yt, gt = _torch_value_and_grad(TORCH_ACTIVATIONS[name](), EDGE_X)
    yj, gj = _jax_value_and_grad(layers.ACTIVATIONS[name], EDGE_X)
    np.testing.assert_allclose(yj, yt, rtol=0, atol=EDGE_ATOL, err_msg=f"{name} forward")
    np.testing.assert_allclose(gj, gt, rtol=0, atol=EDGE_ATOL, err_msg=f"{name} gradient")


def test_exact_constants_at_edges():
    """Where the constant is the whole answer, the values are equal, not just close."""
    def both(name, x):
        return (_torch_value_and_grad(TORCH_ACTIVATIONS[name](), np.array([x])),
                _jax_value_and_grad(layers.ACTIVATIONS[name], np.array([x])))
    # LeakyReLU: the slope is the double 0.01 (a Scalar from Python), forward and backward.
    (yt, gt), (yj, gj) = both("leaky_relu", -1.0)
    assert yt[0] == yj[0] == -0.01 and gt[0] == gj[0] == 0.01
    # ELU / SELU far below 0: -alpha * scale, and the slope above 0: scale (double constants).
    (yt, _), (yj, _) = both("selu", -1000.0)
    assert yt[0] == yj[0] == -(1.6732632423543772848170429916717 * 1.0507009873554804934193349852946)
    (yt, gt), (yj, gj) = both("selu", 1.0)
    assert yt[0] == yj[0] and gt[0] == gj[0] == 1.0507009873554804934193349852946
    (yt, _), (yj, _) = both("elu", -1000.0)
    assert yt[0] == yj[0] == -1.0
    # Softplus at its threshold 20 exactly: PyTorch takes log1p(exp(x)) and its full derivative
    # (x * beta > threshold is false); jnp.minimum's tie-split gradient gave half of it.
    (yt, gt), (yj, gj) = both("softplus", 20.0)
    assert yt[0] == yj[0] and gt[0] == pytest.approx(gj[0], rel=1e-15, abs=0)
    assert gj[0] > 0.99


def test_batchnorm_eps_and_momentum_are_doubles():
    """nn.BatchNorm1d: eps 1e-5 and momentum 0.1 reach the CPU kernel as doubles. With a batch whose
    statistics are exact (mean 0, biased variance d^2 = 2^-24) the normalised value is d / sqrt(d^2 + 1e-5)
    exactly (float32 eps would move it by 1.3e-8 relative) and the running variance 0.9 + 0.1 * 2 d^2."""
    d = 2.0 ** -12
    x = np.array([[-d], [d]])
    bn = torch.nn.BatchNorm1d(1).double()
    bn.train()
    yt = bn(torch.tensor(x)).detach().numpy()
    p = {"weight": jnp.ones(1, jnp.float64), "bias": jnp.zeros(1, jnp.float64)}
    s = {"mean": jnp.zeros(1, jnp.float64), "var": jnp.ones(1, jnp.float64)}
    yj, sj = layers.batchnorm(jnp.asarray(x), p, s, jnp.ones(2, bool), True)
    assert yt[1, 0] == float(np.asarray(yj)[1, 0]) == d / np.sqrt(d * d + 1e-5)
    assert bn.running_var.item() == float(np.asarray(sj["var"])[0]) == 0.9 + 0.1 * (2 * d * d)
    bn.eval()
    ye = bn(torch.tensor(x)).detach().numpy()
    yje, _ = layers.batchnorm(jnp.asarray(x), p, sj, jnp.ones(2, bool), False)
    np.testing.assert_allclose(np.asarray(yje), ye, rtol=1e-15, atol=0)


def _loss_and_grad_torch(crit, o, target):
    ot = torch.tensor(o, dtype=torch.float64, requires_grad=True)
    loss = crit(ot, target)
    loss.backward()
    return loss.item(), ot.grad.numpy()


def _loss_and_grad_jax(fn, o, y):
    f = lambda v: losses.masked_mean(fn(v, jnp.asarray(y)), jnp.ones(len(y), bool))
    o = jnp.asarray(o, jnp.float64)
    return float(f(o)), np.asarray(jax.grad(f)(o))


def test_loss_edges_match_torch_float64():
    rng = np.random.default_rng(0)
    z = np.concatenate([[-40.0, -30.0, -1e-9, 0.0, 1e-9, 30.0, 40.0, 700.0, -700.0], rng.normal(0.0, 5.0, 23)])
    t = np.concatenate([[1, 0, 1, 0, 1, 0, 1, 1, 0], rng.integers(0, 2, 23)])
    tt = torch.tensor(t, dtype=torch.float64)
    # BCELoss on the sigmoid: both clamps (log at -100 for p = 0 or 1, the gradient's float32(1e-12)).
    p = np.concatenate([[0.0, 1.0, 1e-300, 1.0 - 2.0 ** -53], 1.0 / (1.0 + np.exp(-z))])
    tp = np.concatenate([[1, 0, 1, 0], t])
    lt, gt = _loss_and_grad_torch(torch.nn.BCELoss(), p, torch.tensor(tp, dtype=torch.float64))
    lj, gj = _loss_and_grad_jax(losses.bce, p[:, None], tp)
    assert lj == pytest.approx(lt, rel=1e-15, abs=0)
    np.testing.assert_allclose(gj[:, 0], gt, rtol=1e-15, atol=0, err_msg="BCELoss gradient")
    lt, gt = _loss_and_grad_torch(torch.nn.BCEWithLogitsLoss(), z, tt)
    lj, gj = _loss_and_grad_jax(losses.bce_with_logits, z[:, None], t)
    assert abs(lj - lt) <= EDGE_ATOL
    np.testing.assert_allclose(gj[:, 0], gt, rtol=0, atol=EDGE_ATOL, err_msg="BCEWithLogitsLoss gradient")
    o = rng.normal(0.0, 4.0, (9, 3))
    y = rng.integers(0, 3, 9)
    lt, gt = _loss_and_grad_torch(torch.nn.CrossEntropyLoss(), o, torch.tensor(y))
    lj, gj = _loss_and_grad_jax(losses.cross_entropy, o, y)
    assert abs(lj - lt) <= EDGE_ATOL
    np.testing.assert_allclose(gj, gt, rtol=0, atol=EDGE_ATOL, err_msg="CrossEntropyLoss gradient")
    lt, gt = _loss_and_grad_torch(torch.nn.MSELoss(), o, torch.nn.functional.one_hot(torch.tensor(y), 3).double())
    lj, gj = _loss_and_grad_jax(losses.mse, o, y)
    assert abs(lj - lt) <= EDGE_ATOL
    np.testing.assert_allclose(gj, gt, rtol=0, atol=EDGE_ATOL, err_msg="MSELoss gradient")

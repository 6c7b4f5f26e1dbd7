"""Training behaviour checked against independent hand computations (NumPy, float64)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfit
from jaxfit import Config
from jaxfit.datasets import from_arrays
from jaxfit.nn import layers

# The suite runs as users do, x64 off: jaxfit scopes x64 to its float64 buckets itself, so the
# float64 configs below need nothing; a test that builds float64 JAX arrays itself asks for `x64`.


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def tiny_data(n=6, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = np.arange(n) % classes
    return from_arrays(x, y, num_classes=classes, name="tiny")


def full_batch_order(n, epochs=1):
    return np.tile(np.arange(n, dtype=np.int32), (epochs, 1, 1))


def linear_params(seed=1, classes=3, features=2):
    rng = np.random.default_rng(seed)
    return {"dense": [{"w": rng.normal(size=(classes, features)), "b": rng.normal(size=classes)}]}


def ce_grad_linear(p, x, y):
    """dL/dW, dL/db of mean cross-entropy for z = x W^T + b."""
    z = x @ p["w"].T + p["b"]
    s = softmax(z)
    s[np.arange(len(y)), y] -= 1
    s /= len(y)
    return s.T @ x, s.sum(0), -np.mean(np.log(softmax(z)[np.arange(len(y)), y]))


def run_linear(cfg, data, params, epochs=1):
    cfg = cfg.replace(hidden=(), batch_size=0, epochs=epochs, dtype="float64", shuffle=False)
    r = jaxfit.train(data, cfg, params=params, model_state={}, batch_order=full_batch_order(data.n_train, epochs))
    return r


def test_one_sgd_step_matches_hand_computation():
    d = tiny_data()
    p = linear_params()
    r = run_linear(Config(optimizer="sgd", lr=0.1), d, p)
    gw, gb, loss = ce_grad_linear(p["dense"][0], d.x_train, d.y_train)
    got = r.params(0)["dense"][0]
    np.testing.assert_allclose(got["w"], p["dense"][0]["w"] - 0.1 * gw, rtol=0, atol=1e-14)
    np.testing.assert_allclose(got["b"], p["dense"][0]["b"] - 0.1 * gb, rtol=0, atol=1e-14)
    assert r.curves["train_loss"][0, 0] == pytest.approx(loss, abs=1e-14)


def test_sgd_momentum_nesterov_weight_decay_two_steps():
    d = tiny_data()
    p0 = linear_params()["dense"][0]
    lr, mu, wd = 0.1, 0.9, 0.01
    r = run_linear(Config(optimizer="sgd", lr=lr, momentum=mu, nesterov=True, weight_decay=wd), d,
                   {"dense": [p0]}, epochs=2)
    p = {k: v.copy() for k, v in p0.items()}
    buf = None
    for _ in range(2):
        gw, gb, _ = ce_grad_linear(p, d.x_train, d.y_train)
        g = {"w": gw + wd * p["w"], "b": gb + wd * p["b"]}
        buf = g if buf is None else {k: mu * buf[k] + g[k] for k in g}
        p = {k: p[k] - lr * (g[k] + mu * buf[k]) for k in p}
    got = r.params(0)["dense"][0]
    np.testing.assert_allclose(got["w"], p["w"], atol=1e-13)
    np.testing.assert_allclose(got["b"], p["b"], atol=1e-13)


@pytest.mark.parametrize("opt", ["adam", "adamw", "rmsprop"])
def test_first_step_of_adaptive_optimizers(opt):
    d = tiny_data()
    p0 = linear_params()["dense"][0]
    lr, wd, eps = 0.01, 0.05, 1e-8
    r = run_linear(Config(optimizer=opt, lr=lr, weight_decay=wd, eps=eps), d, {"dense": [p0]})
    gw, gb, _ = ce_grad_linear(p0, d.x_train, d.y_train)
    want = {}
    for k, g in (("w", gw), ("b", gb)):
        p = p0[k]
        if opt == "adam":  # coupled L2, bias-corrected first step: m_hat = g, v_hat = g^2
            g = g + wd * p
            want[k] = p - lr * g / (np.abs(g) + eps)
        elif opt == "adamw":  # decoupled decay first
            want[k] = p * (1 - lr * wd) - lr * g / (np.abs(g) + eps)
        else:  # rmsprop: v = (1 - 0.99) g^2
            g = g + wd * p
            want[k] = p - lr * g / (np.sqrt(0.01 * g * g) + eps)
    got = r.params(0)["dense"][0]
    np.testing.assert_allclose(got["w"], want["w"], atol=1e-13)
    np.testing.assert_allclose(got["b"], want["b"], atol=1e-13)


def test_hidden_layer_backprop_matches_numpy():
    """One SGD step of a 2-4-3 tanh net with softmax cross-entropy, backpropagated by hand."""
    d = tiny_data(n=8)
    rng = np.random.default_rng(3)
    p = {"dense": [{"w": rng.normal(size=(4, 2)), "b": rng.normal(size=4)},
                   {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}]}
    cfg = Config(hidden=(4,), activation="tanh", optimizer="sgd", lr=0.5, batch_size=0, epochs=1,
                 dtype="float64", shuffle=False)
    r = jaxfit.train(d, cfg, params=p, model_state={}, batch_order=full_batch_order(8))
    x, y = d.x_train, d.y_train
    l1, l2 = p["dense"]
    h = np.tanh(x @ l1["w"].T + l1["b"])
    dz = softmax(h @ l2["w"].T + l2["b"])
    dz[np.arange(8), y] -= 1
    dz /= 8
    dh = dz @ l2["w"] * (1 - h ** 2)
    want = [{"w": l1["w"] - 0.5 * dh.T @ x, "b": l1["b"] - 0.5 * dh.sum(0)},
            {"w": l2["w"] - 0.5 * dz.T @ h, "b": l2["b"] - 0.5 * dz.sum(0)}]
    for got, w in zip(r.params(0)["dense"], want):
        np.testing.assert_allclose(got["w"], w["w"], atol=1e-13)
        np.testing.assert_allclose(got["b"], w["b"], atol=1e-13)


def test_double_softmax_floor(sum_bin_small):
    """Cross-entropy on softmax outputs cannot go below log(1 + (K-1)/e) (document 1)."""
    from jaxfit.nn import losses as jloss
    floor = math.log(1 + 2 / math.e)
    # the best a softmax output can be is one-hot, and jaxfit's cross-entropy of that is the floor
    ce = jloss.cross_entropy(np.eye(3, dtype=np.float32)[:1], np.array([0]))
    assert float(ce[0]) == pytest.approx(floor, rel=1e-6)
    cfg = Config(hidden=(32,), output="softmax", optimizer="adam", lr=0.05, batch_size=16, epochs=15)
    r = jaxfit.train(sum_bin_small, cfg)
    losses = r.curves["train_loss"][0]
    assert np.all(losses >= floor)
    assert losses[-1] < losses[0]  # it still learns ...
    assert r.curves["train_acc"][0, -1] > 0.8  # ... and separates the classes,
    assert losses[-1] - floor < 0.15  # approaching the floor, not zero


def test_masked_partial_batch_divides_by_true_count():
    """n = 7, batch 3: the last batch holds one real row; its loss is that row's loss."""
    d = tiny_data(n=7)
    p = linear_params()
    order = np.array([[[0, 1, 2], [3, 4, 5], [6, -1, -1]]], np.int32)
    cfg = Config(hidden=(), batch_size=3, epochs=1, dtype="float64", optimizer="sgd", lr=1e-12, shuffle=False)
    r = jaxfit.train(d, cfg, params=p, model_state={}, batch_order=order)
    _, _, l6 = ce_grad_linear(p["dense"][0], d.x_train[6:7], d.y_train[6:7])
    assert r.curves["last_batch_loss"][0, 0] == pytest.approx(l6, abs=1e-9)
    _, _, all_loss = ce_grad_linear(p["dense"][0], d.x_train, d.y_train)
    assert r.curves["train_loss"][0, 0] == pytest.approx(all_loss, abs=1e-9)  # sample-weighted mean


def test_standardize_uses_population_std(sum_bin_small):
    r = jaxfit.train(sum_bin_small, Config(hidden=(4,), input_norm="standardize", epochs=1))
    st = r.model_state(0)
    np.testing.assert_allclose(st["norm_mean"], sum_bin_small.x_train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(st["norm_std"], sum_bin_small.x_train.std(0, ddof=0), rtol=1e-6)


def test_batchnorm_running_stats_use_unbiased_variance():
    d = tiny_data(n=6)
    cfg = Config(hidden=(), input_norm="batchnorm", batch_size=0, epochs=1, dtype="float64",
                 optimizer="sgd", lr=1e-3, shuffle=False)
    r = jaxfit.train(d, cfg)
    st = r.model_state(0)["in_bn"]
    x = d.x_train
    np.testing.assert_allclose(st["mean"], 0.1 * x.mean(0), atol=1e-14)
    np.testing.assert_allclose(st["var"], 0.9 + 0.1 * x.var(0, ddof=1), atol=1e-14)


def test_fourier_matrix_is_drawn_from_seed_with_scale(sum_bin_small):
    cfgs = [Config(hidden=(4,), encoding="fourier", fourier_features=256, fourier_scale=s, seed=7, epochs=1)
            for s in (1.0, 3.0)]
    r = jaxfit.sweep(sum_bin_small, cfgs)
    b1, b3 = r.model_state(0)["fourier"], r.model_state(1)["fourier"]
    assert b1.shape == (256, 2)
    np.testing.assert_allclose(b3, 3 * b1, rtol=1e-6)  # same draw, scaled
    assert 0.9 < b1.std() < 1.1


ACTIVATIONS = ["relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity"]


def test_activations_match_formulas(x64):
    x = np.linspace(-30, 30, 601)
    from scipy.special import erf
    want = {
        "relu": np.maximum(x, 0), "leaky_relu": np.where(x > 0, x, 0.01 * x),
        "elu": np.where(x > 0, x, np.expm1(x)),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
        "gelu": 0.5 * x * (1 + erf(x / np.sqrt(2))), "tanh": np.tanh(x), "sigmoid": 1 / (1 + np.exp(-x)),
        "softplus": np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))), "sin": np.sin(x), "identity": x,
    }
    for name in ACTIVATIONS:
        np.testing.assert_allclose(np.asarray(layers.ACTIVATIONS[name](x)), want[name], rtol=1e-12, atol=1e-12,
                                   err_msg=name)
    # PyTorch's LeakyReLU has gradient `slope` at exactly 0; ReLU has 0.
    assert float(jax.grad(layers.ACTIVATIONS["leaky_relu"])(0.0)) == 0.01
    assert float(jax.grad(layers.ACTIVATIONS["relu"])(0.0)) == 0.0


OUTPUT_LOSSES = [("logits", "cross_entropy"), ("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"),
                 ("logits", "mse"), ("softmax", "mse"), ("sigmoid", "bce"), ("logits", "bce_with_logits"),
                 ("sigmoid", "bce_with_logits")]


def test_each_activation_output_and_loss_learns(sum_bin_small, heart_small):
    """Every activation, and every (output, loss) pair, lowers its training loss: one sweep per data
    set (the planner fuses each into one or two programs), not one program per case."""
    cases = {f"activation={a}": (sum_bin_small, Config(hidden=(16,), activation=a, lr=0.02, epochs=8, batch_size=32))
             for a in ACTIVATIONS}
    for output, loss in OUTPUT_LOSSES:
        data = heart_small if loss.startswith("bce") else sum_bin_small
        cases[f"{output}+{loss}"] = (data, Config(hidden=(8,), output=output, loss=loss, input_norm="standardize",
                                                  lr=0.02, epochs=8, batch_size=16))
    for data in (sum_bin_small, heart_small):
        names = [n for n, (d, _) in cases.items() if d is data]
        r = jaxfit.sweep(data, [cases[n][1] for n in names])
        assert r.meta["compiles"] <= 2, (data.name, r.meta["compiles"])
        for n, curve in zip(names, r.curves["train_loss"]):
            assert np.isfinite(curve).all() and curve[-1] < curve[0], (n, curve)


def test_bce_gradient_is_finite_when_saturated(x64):
    """PyTorch's BCELoss backward, (p - t) / max(p (1 - p), float32(1e-12)), stays finite at p = 0 or 1
    (its kernel's EPSILON is a float constant, so in float64 the clamp is 9.999999960041972e-13)."""
    from jaxfit.nn import losses
    import jax.numpy as jnp
    p = jnp.array([[0.0], [1.0], [0.5]])
    y = jnp.array([1, 0, 1])
    val = losses.bce(p, y)
    np.testing.assert_allclose(val, [100.0, 100.0, math.log(2)], rtol=1e-12)
    g = jax.grad(lambda q: losses.bce(q, y).sum())(p)
    eps = float(np.float32(1e-12))
    np.testing.assert_allclose(np.asarray(g)[:, 0], [-1 / eps, 1 / eps, -2.0], rtol=1e-12)


def test_bce_matches_bce_with_logits_where_finite(x64):
    from jaxfit.nn import losses
    z = np.linspace(-8, 8, 33)[:, None]
    y = (np.arange(33) % 2).astype(np.int32)
    a = losses.bce(jax.nn.sigmoid(z), y)
    b = losses.bce_with_logits(z, y)
    np.testing.assert_allclose(a, b, rtol=1e-9)


# lr_table against torch's schedulers: parity_tests/test_trajectory.py::test_lr_table_matches_torch_schedulers.


def test_schedule_changes_lr_per_epoch():
    """With a step schedule, the epoch-e updates use lr * gamma ** (e // step_size)."""
    d = tiny_data()
    p = linear_params()
    cfg = Config(optimizer="sgd", lr=0.1, schedule="step", step_size=1, gamma=0.5)
    r = run_linear(cfg, d, p, epochs=2)
    q = p["dense"][0]
    for e in range(2):
        gw, gb, _ = ce_grad_linear(q, d.x_train, d.y_train)
        q = {"w": q["w"] - 0.1 * 0.5 ** e * gw, "b": q["b"] - 0.1 * 0.5 ** e * gb}
    np.testing.assert_allclose(r.params(0)["dense"][0]["w"], q["w"], atol=1e-14)


def test_dropout_masks_depend_on_seed_and_step(sum_bin_small):
    cfgs = [Config(hidden=(16, 16), dropout=0.3, epochs=3, seed=s) for s in (0, 0, 1)]
    r = jaxfit.sweep(sum_bin_small, cfgs)
    c = r.curves["train_loss"]
    np.testing.assert_array_equal(c[0], c[1])
    assert not np.array_equal(c[0], c[2])


def test_eval_mode_is_the_identity_on_dropout(sum_bin_small):
    """Eval-mode outputs of a net trained with dropout 0.5 are, bitwise, those of the same weights in
    the same net with dropout 0; in training mode the dropout net's outputs differ (the check can fail)."""
    cfg = Config(hidden=(16, 16), dropout=0.5, epochs=1, seed=3)
    r = jaxfit.train(sum_bin_small, cfg)
    # as JAX arrays, as outputs() computes (NumPy arrays would round some steps differently)
    p, st, x = jax.tree_util.tree_map(jnp.asarray, (r.params(0), r.model_state(0),
                                                    sum_bin_small.x_val.astype(np.float32)))
    plain = layers.arch_of(cfg.replace(dropout=0.0), sum_bin_small.num_features, 3)
    want, _ = layers.apply(plain, p, st, x, train=False)
    drop = layers.arch_of(cfg, sum_bin_small.num_features, 3)
    assert drop.use_dropout and not plain.use_dropout
    np.testing.assert_array_equal(r.outputs(0, x), np.asarray(want))  # jaxfit's own eval path
    got, _ = layers.apply(drop, p, st, x, train=False)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    trained, _ = layers.apply(drop, p, st, x, train=True, dropout_rate=0.5, dropout_key=jax.random.PRNGKey(0))
    assert not np.array_equal(np.asarray(trained), np.asarray(want))

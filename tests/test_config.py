"""Tests for jaxfit.config: validation, normalisation, grids, samples, static keys, hparams.

Host-side only (NumPy); `jaxfit.engine` is imported for `check_config_for_data`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings

import numpy as np
import pytest

from jaxfit import datasets as D
from jaxfit import engine
from jaxfit.config import (
    FIELD_NAMES,
    Config,
    HParams,
    grid,
    hparams,
    int_uniform,
    log_uniform,
    sample,
    uniform,
)
from jaxfit.program.train import static_key

NAN = float("nan")
INF = float("inf")


def _id(v) -> str:
    """A short readable pytest id for a value."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, np.ndarray):
        return f"ndarray{v.tolist()}"
    if isinstance(v, np.generic):
        return f"np.{type(v).__name__}({v.item()!r})"
    return repr(v)


# ----------------------------------------------------------------------------- 1. every field


# Allowed-value texts the error message must contain (regex-escaped below).
CHOICES = {
    "activation": "relu, leaky_relu, elu, selu, gelu, tanh, sigmoid, softplus, sin, identity",
    "output": "logits, softmax, sigmoid",
    "init": "torch, lecun_normal, he_normal, glorot_uniform",
    "input_norm": "none, standardize, batchnorm",
    "encoding": "identity, fourier",
    "loss": "cross_entropy, bce, bce_with_logits, mse",
    "optimizer": "sgd, adam, adamw, rmsprop",
    "schedule": "constant, step, exponential, cosine",
    "dtype": "float32, float64",
}
FINITE = "must be a finite number"
HIDDEN = "must be a tuple of positive integer widths"
BOOL = "must be True or False"
BETAS = "must be a pair (beta1, beta2) with 0 <= beta < 1"
SEED = "must be an integer in [0, 2**32)"


def _int(lo: int) -> str:
    return f"must be an integer >= {lo}"


def _range(text: str) -> str:
    return f"must lie in {text}"


BAD_VALUES: list[tuple[str, object, str]] = [
    # --- architecture
    ("hidden", (0,), HIDDEN),
    ("hidden", (-4,), HIDDEN),
    ("hidden", (16.5,), HIDDEN),
    ("hidden", (16.0,), HIDDEN),
    ("hidden", 16.0, HIDDEN),
    ("hidden", "64", HIDDEN),
    ("hidden", None, HIDDEN),
    ("hidden", True, HIDDEN),
    ("hidden", (16, True), HIDDEN),
    ("hidden", ("16",), HIDDEN),
    ("hidden", np.array([16.0, 8.0]), HIDDEN),
    ("activation", "swish", CHOICES["activation"]),
    ("activation", "ReLU", CHOICES["activation"]),
    ("activation", None, CHOICES["activation"]),
    ("output", "probs", CHOICES["output"]),
    ("init", "xavier", CHOICES["init"]),
    ("input_norm", "layernorm", CHOICES["input_norm"]),
    ("input_norm", None, CHOICES["input_norm"]),
    ("batchnorm", 1, BOOL),
    ("batchnorm", "yes", BOOL),
    ("batchnorm", None, BOOL),
    ("dropout", -0.1, _range("[0.0, 1.0)")),
    ("dropout", 1.0, _range("[0.0, 1.0)")),
    ("dropout", "0.5", FINITE),
    ("dropout", NAN, FINITE),
    ("dropout", INF, FINITE),
    ("dropout", True, FINITE),
    ("encoding", "rff", CHOICES["encoding"]),
    ("fourier_features", 0, _int(1)),
    ("fourier_features", 16.0, _int(1)),
    ("fourier_features", True, _int(1)),
    ("fourier_features", "16", _int(1)),
    ("fourier_scale", 0, _range("(0.0, inf)")),
    ("fourier_scale", -1.0, _range("(0.0, inf)")),
    ("fourier_scale", NAN, FINITE),
    ("fourier_scale", INF, FINITE),
    ("fourier_scale", "1", FINITE),
    # --- training
    ("loss", "nll", CHOICES["loss"]),
    ("optimizer", "lbfgs", CHOICES["optimizer"]),
    ("optimizer", "Adam", CHOICES["optimizer"]),
    ("lr", 0, _range("(0.0, inf)")),
    ("lr", -1e-3, _range("(0.0, inf)")),
    ("lr", "1e-3", FINITE),
    ("lr", NAN, FINITE),
    ("lr", INF, FINITE),
    ("lr", True, FINITE),
    ("lr", None, FINITE),
    ("momentum", 1.0, _range("[0.0, 1.0)")),
    ("momentum", -0.1, _range("[0.0, 1.0)")),
    ("momentum", NAN, FINITE),
    ("momentum", "0.9", FINITE),
    ("nesterov", 0, BOOL),
    ("nesterov", "False", BOOL),
    ("weight_decay", -1e-4, _range("[0.0, inf)")),
    ("weight_decay", NAN, FINITE),
    ("weight_decay", INF, FINITE),
    ("weight_decay", "0.01", FINITE),
    ("betas", (0.9,), BETAS),
    ("betas", (0.9, 0.99, 0.999), BETAS),
    ("betas", (0.9, 1.0), BETAS),
    ("betas", (-0.1, 0.999), BETAS),
    ("betas", (0.9, NAN), BETAS),
    ("betas", (0.9, INF), BETAS),
    ("betas", (True, 0.999), BETAS),
    ("betas", ("0.9", "0.999"), BETAS),
    ("betas", 0.9, BETAS),
    ("betas", None, BETAS),
    ("eps", -1e-8, _range("[0.0, inf)")),
    ("eps", NAN, FINITE),
    ("eps", INF, FINITE),
    ("eps", "1e-8", FINITE),
    ("schedule", "linear", CHOICES["schedule"]),
    ("step_size", 0, _int(1)),
    ("step_size", 10.0, _int(1)),
    ("step_size", True, _int(1)),
    ("gamma", 0, _range("(0.0, inf)")),
    ("gamma", -0.5, _range("(0.0, inf)")),
    ("gamma", NAN, FINITE),
    ("gamma", INF, FINITE),
    ("t_max", 0, _int(1)),
    ("t_max", 10.0, _int(1)),
    ("t_max", True, _int(1)),
    ("t_max", "10", _int(1)),
    ("eta_min", -1e-6, _range("[0.0, inf)")),
    ("eta_min", NAN, FINITE),
    ("batch_size", -1, _int(0)),
    ("batch_size", 32.0, _int(0)),
    ("batch_size", np.float64(32.0), _int(0)),
    ("batch_size", True, _int(0)),
    ("batch_size", "32", _int(0)),
    ("epochs", 0, _int(1)),
    ("epochs", 20.5, _int(1)),
    ("epochs", False, _int(1)),
    ("epochs", INF, _int(1)),
    ("shuffle", 1, BOOL),
    ("shuffle", "True", BOOL),
    ("seed", -1, SEED),
    ("seed", 2**32, SEED),
    ("seed", 1.0, SEED),
    ("seed", True, SEED),
    ("seed", "0", SEED),
    ("seed", NAN, SEED),
    ("dtype", "float16", CHOICES["dtype"]),
    ("dtype", np.float32, CHOICES["dtype"]),
]


def test_bad_value_table_covers_every_field():
    # against the dataclass itself, not FIELD_NAMES (which is built from it)
    fields = {f.name for f in dataclasses.fields(Config)}
    assert {name for name, _, _ in BAD_VALUES} == fields
    assert FIELD_NAMES == fields  # and the public name set is every field, no more


@pytest.mark.parametrize(
    "name, value, allowed", BAD_VALUES, ids=[f"{n}={_id(v)}" for n, v, _ in BAD_VALUES]
)
def test_bad_value_raises_naming_field_and_allowed(name, value, allowed):
    with pytest.raises(ValueError, match=rf"Config\.{name}=.* is invalid: .*{re.escape(allowed)}"):
        Config(**{name: value})


def test_unknown_activation_lists_every_activation():
    with pytest.raises(ValueError) as e:
        Config(activation="swish")
    msg = str(e.value)
    assert msg.startswith("Config.activation='swish'")
    for a in ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity"):
        assert a in msg


def test_replace_validates():
    with pytest.raises(ValueError, match=r"Config\.lr="):
        Config().replace(lr=-1.0)


GOOD_EDGES = [
    ("dropout", 0.0), ("dropout", 0.99), ("momentum", 0.0), ("weight_decay", 0.0), ("weight_decay", None),
    ("betas", (0.0, 0.0)), ("eps", 0.0), ("eta_min", 0.0), ("batch_size", 0), ("batch_size", 1),
    ("t_max", 1), ("t_max", None), ("seed", 0), ("seed", 2**32 - 1), ("hidden", ()), ("epochs", 1),
    ("step_size", 1), ("fourier_features", 1), ("lr", 1e-12),
]


@pytest.mark.parametrize("name, value", GOOD_EDGES, ids=[f"{n}={_id(v)}" for n, v in GOOD_EDGES])
def test_edge_values_accepted(name, value):
    assert getattr(Config(**{name: value}), name) == value


# ----------------------------------------------------------------------------- 2. combinations


BAD_COMBOS = [
    ("bce-logits", dict(loss="bce", output="logits"), "output", "output='sigmoid'"),
    ("bce-softmax", dict(loss="bce", output="softmax"), "output", "output='sigmoid'"),
    ("bce_with_logits-softmax", dict(loss="bce_with_logits", output="softmax"), "output", "one output unit"),
    ("nesterov-adam", dict(optimizer="adam", nesterov=True), "nesterov", "optimizer='sgd' and momentum > 0"),
    ("nesterov-rmsprop", dict(optimizer="rmsprop", momentum=0.9, nesterov=True), "nesterov",
     "optimizer='sgd' and momentum > 0"),
    ("nesterov-sgd-momentum0", dict(optimizer="sgd", momentum=0.0, nesterov=True), "nesterov",
     "optimizer='sgd' and momentum > 0"),
    ("bs1-batchnorm", dict(batch_size=1, batchnorm=True), "batch_size", "more than 1 value per channel"),
    ("bs1-input_norm_batchnorm", dict(batch_size=1, input_norm="batchnorm"), "batch_size",
     "more than 1 value per channel"),
    ("dropout-linear", dict(hidden=(), dropout=0.1), "dropout", "hidden=()"),
    ("batchnorm-linear", dict(hidden=(), batchnorm=True), "batchnorm", "hidden=()"),
]


@pytest.mark.parametrize("kw, name, text", [c[1:] for c in BAD_COMBOS], ids=[c[0] for c in BAD_COMBOS])
def test_refused_combination(kw, name, text):
    with pytest.raises(ValueError, match=rf"Config\.{name}=.*{re.escape(text)}"):
        Config(**kw)


GOOD_COMBOS = [
    ("bce-sigmoid", dict(loss="bce", output="sigmoid")),
    ("bce_with_logits-logits", dict(loss="bce_with_logits", output="logits")),
    ("bce_with_logits-sigmoid", dict(loss="bce_with_logits", output="sigmoid")),
    ("cross_entropy-softmax", dict(loss="cross_entropy", output="softmax")),
    ("nesterov-sgd", dict(optimizer="sgd", momentum=0.9, nesterov=True)),
    ("bs1-no-bn", dict(batch_size=1)),
    ("bs0-batchnorm", dict(batch_size=0, batchnorm=True)),
    ("bs2-batchnorm", dict(batch_size=2, batchnorm=True, input_norm="batchnorm")),
    ("linear-input-batchnorm", dict(hidden=(), input_norm="batchnorm")),
    ("linear-plain", dict(hidden=(), dropout=0.0, batchnorm=False)),
]


@pytest.mark.parametrize("kw", [c[1] for c in GOOD_COMBOS], ids=[c[0] for c in GOOD_COMBOS])
def test_allowed_combination(kw):
    Config(**kw)


@pytest.fixture(scope="module")
def three_class():
    return D.sum_bin(n=100, seed=0)


@pytest.mark.parametrize("loss, output", [("bce", "sigmoid"), ("bce_with_logits", "logits")])
def test_data_check_one_unit_loss_needs_two_classes(three_class, loss, output):
    assert three_class.num_classes == 3
    c = Config(loss=loss, output=output)
    with pytest.raises(ValueError, match=rf"Config\.loss='{loss}' needs 2 classes.*has 3"):
        engine.check_config_for_data(c, three_class)
    with pytest.raises(ValueError, match=r"^config 4: Config\.loss="):
        engine.check_config_for_data(c, three_class, index=4)


def test_data_check_one_unit_loss_on_two_classes_passes():
    x = np.random.default_rng(0).random((20, 2))
    two = D.from_arrays(x, (x[:, 0] > 0.5).astype(int), num_classes=2)
    engine.check_config_for_data(Config(loss="bce", output="sigmoid"), two)
    engine.check_config_for_data(Config(loss="bce_with_logits"), two)


@pytest.mark.parametrize("bn", [dict(batchnorm=True), dict(input_norm="batchnorm")], ids=["batchnorm", "input_norm"])
@pytest.mark.parametrize("n, batch_size, bad", [
    (101, 10, True),    # 101 % 10 == 1: last batch of one row
    (101, 100, True),   # 101 % 100 == 1
    (101, 200, False),  # batch clipped to n: one full batch
    (101, 0, False),    # full batch
    (100, 10, False),
    (102, 10, False),   # last batch of 2 rows
])
def test_data_check_batchnorm_last_batch_of_one(bn, n, batch_size, bad):
    data = D.sum_bin(n=n, seed=0)
    assert data.n_train == n
    c = Config(batch_size=batch_size, **bn)
    if bad:
        with pytest.raises(ValueError, match=rf"Config\.batch_size={batch_size} leaves a training batch of 1 row"):
            engine.check_config_for_data(c, data)
    else:
        engine.check_config_for_data(c, data)


def test_data_check_without_batchnorm_ignores_last_batch():
    engine.check_config_for_data(Config(batch_size=99), D.sum_bin(n=100, seed=0))


# ----------------------------------------------------------------------------- 3. normalisation


def test_hidden_list_becomes_tuple():
    c = Config(hidden=[64, 64])
    assert c.hidden == (64, 64) and type(c.hidden) is tuple
    assert c == Config(hidden=(64, 64)) and hash(c) == hash(Config(hidden=(64, 64)))


@pytest.mark.parametrize("h", [16, np.int64(16), [16], np.array([16])], ids=_id)
def test_hidden_scalar_or_sequence_becomes_one_tuple(h):
    c = Config(hidden=h)
    assert c.hidden == (16,) and type(c.hidden) is tuple and type(c.hidden[0]) is int


def test_hidden_numpy_elements_become_int():
    c = Config(hidden=(np.int64(8), np.int32(4)))
    assert c.hidden == (8, 4) and all(type(h) is int for h in c.hidden)
    c = Config(hidden=np.arange(1, 4))
    assert c.hidden == (1, 2, 3) and all(type(h) is int for h in c.hidden)


@pytest.mark.parametrize("name, value, want, typ", [
    ("lr", np.float32(0.5), 0.5, float),
    ("lr", np.float64(1e-3), 1e-3, float),
    ("momentum", np.float64(0.9), 0.9, float),
    ("batch_size", np.int64(64), 64, int),
    ("epochs", np.int32(5), 5, int),
    ("seed", np.uint32(2**32 - 1), 2**32 - 1, int),
    ("t_max", np.int16(7), 7, int),
    ("batchnorm", np.bool_(True), True, bool),
    ("shuffle", np.bool_(False), False, bool),
    ("activation", np.str_("tanh"), "tanh", str),
], ids=lambda v: _id(v) if not isinstance(v, type) else v.__name__)
def test_numpy_scalars_become_python(name, value, want, typ):
    got = getattr(Config(**{name: value}), name)
    assert got == want and type(got) is typ


@pytest.mark.parametrize("b", [[0.8, 0.9], np.array([0.8, 0.9]), (np.float32(0.5), 0.9), (0, 0)], ids=_id)
def test_betas_normalised_to_tuple_of_floats(b):
    c = Config(betas=b)
    assert type(c.betas) is tuple and len(c.betas) == 2 and all(type(x) is float for x in c.betas)
    assert c.betas == tuple(float(x) for x in b)


def test_config_hashable_and_frozen():
    a, b = Config(lr=0.1, hidden=[8]), Config(lr=0.1, hidden=(8,))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, Config()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.lr = 0.2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hidden = (4,)  # type: ignore[misc]
    assert a.lr == 0.1


@pytest.mark.parametrize("c", [
    Config(),
    Config(hidden=(), optimizer="adamw", weight_decay=0.05, betas=(0.8, 0.95), dtype="float64"),
    Config(hidden=(64, 32, 16), optimizer="sgd", momentum=0.9, nesterov=True, schedule="cosine", t_max=7,
           eta_min=1e-5, batch_size=0, encoding="fourier", fourier_features=4, fourier_scale=3.0, seed=2**32 - 1),
], ids=["default", "adamw-linear", "sgd-cosine-fourier"])
def test_to_dict_from_dict_round_trip(c):
    d = c.to_dict()
    assert set(d) == FIELD_NAMES
    assert d["hidden"] == list(c.hidden) and d["betas"] == list(c.betas)
    assert Config.from_dict(d) == c
    assert Config.from_dict(json.loads(json.dumps(d))) == c  # survives JSON (lists, not tuples)


def test_from_dict_partial_and_hidden_int():
    c = Config.from_dict({"lr": 0.1, "hidden": 16})
    assert c == Config(lr=0.1, hidden=(16,))


def test_from_dict_unknown_key_raises_naming_it():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['learning_rate'\]"):
        Config.from_dict({"learning_rate": 0.1, "lr": 0.1})


def test_from_dict_validates():
    with pytest.raises(ValueError, match=r"Config\.activation='swish'"):
        Config.from_dict({"activation": "swish"})


@pytest.mark.parametrize("d", [{"betas": None}, {"betas": 0.9}, {"hidden": 16.0}], ids=_id)
def test_from_dict_bad_sequence_raises_value_error(d):
    name = next(iter(d))
    with pytest.raises(ValueError, match=rf"Config\.{name}="):
        Config.from_dict(d)


# ----------------------------------------------------------------------------- canonical


def test_canonical_resets_unread_fields():
    c = Config(optimizer="adam", momentum=0.9, step_size=3, gamma=0.5, fourier_scale=2.0).canonical()
    assert (c.momentum, c.step_size, c.gamma, c.fourier_scale) == (0.0, 10, 0.1, 1.0)
    assert Config(optimizer="adamw", weight_decay=1e-2).canonical().weight_decay is None
    assert Config(optimizer="sgd", weight_decay=0.0).canonical().weight_decay is None
    assert Config(schedule="cosine", t_max=20, epochs=20).canonical().t_max is None
    kept = Config(optimizer="sgd", momentum=0.9, nesterov=True, schedule="step", step_size=3, gamma=0.5)
    assert kept.canonical() == kept


# ----------------------------------------------------------------------------- 4. derived values


@pytest.mark.parametrize("optimizer, wd, want", [
    ("adamw", None, 1e-2), ("adam", None, 0.0), ("sgd", None, 0.0), ("rmsprop", None, 0.0),
    ("adamw", 0.0, 0.0), ("adamw", 5e-4, 5e-4), ("sgd", 1e-3, 1e-3), ("adam", 1, 1.0),
])
def test_effective_weight_decay(optimizer, wd, want):
    got = Config(optimizer=optimizer, weight_decay=wd).effective_weight_decay
    assert got == want and type(got) is float


def test_effective_t_max():
    assert Config(epochs=13).effective_t_max == 13
    assert Config(epochs=13, t_max=None, schedule="cosine").effective_t_max == 13
    assert Config(epochs=13, t_max=5, schedule="cosine").effective_t_max == 5
    assert type(Config(t_max=np.int64(5)).effective_t_max) is int


# ----------------------------------------------------------------------------- 5. grid


def test_grid_optimizer_by_momentum_gives_three():
    g = grid(optimizer=["sgd", "adam"], momentum=[0, 0.9])
    assert [(c.optimizer, c.momentum) for c in g] == [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)]


def test_grid_no_axes_is_default():
    assert grid() == [Config()]


def test_grid_scalar_fixes_field():
    g = grid(lr=0.1, activation="tanh", seed=[0, 1])
    assert len(g) == 2 and all(c.lr == 0.1 and c.activation == "tanh" for c in g)


def test_grid_numeric_tuple_is_value_list_is_axis():
    assert grid(hidden=(64, 64)) == [Config(hidden=(64, 64))]
    assert grid(betas=(0.8, 0.9)) == [Config(betas=(0.8, 0.9))]
    g = grid(hidden=[(16,), (64, 64)])
    assert [c.hidden for c in g] == [(16,), (64, 64)]
    # A tuple of non-numbers is an axis.
    assert [c.activation for c in grid(activation=("relu", "tanh"))] == ["relu", "tanh"]


def test_grid_range_is_axis():
    g = grid(seed=range(4))
    assert [c.seed for c in g] == [0, 1, 2, 3]


def test_grid_order_is_deterministic_first_key_slowest():
    g = grid(lr=[0.1, 0.01], seed=[0, 1])
    assert [(c.lr, c.seed) for c in g] == [(0.1, 0), (0.1, 1), (0.01, 0), (0.01, 1)]
    assert grid(lr=[0.1, 0.01], seed=[0, 1]) == g


def test_grid_sub_grids_share_keyword_axes():
    g = grid([{"optimizer": "sgd", "lr": [0.1, 0.01], "momentum": 0.9},
              {"optimizer": "adam", "lr": [1e-3]}], seed=range(2))
    # Sub-grids in order; inside one, the keyword axes come first (slowest), then the sub-grid's keys.
    assert [(c.optimizer, c.lr, c.momentum, c.seed) for c in g] == [
        ("sgd", 0.1, 0.9, 0), ("sgd", 0.01, 0.9, 0), ("sgd", 0.1, 0.9, 1), ("sgd", 0.01, 0.9, 1),
        ("adam", 1e-3, 0.0, 0), ("adam", 1e-3, 0.0, 1),
    ]
    # A sub-grid's own key overrides the shared keyword.
    g = grid([{"lr": 0.5}, {}], lr=[0.1, 0.2])
    assert [c.lr for c in g] == [0.5, 0.1, 0.2]
    # A single dict works like keywords.
    assert grid({"lr": [0.1, 0.2]}) == grid(lr=[0.1, 0.2])


def test_grid_drops_duplicates_across_sub_grids():
    g = grid([{"lr": 0.1}, {"lr": 0.1}])
    assert g == [Config(lr=0.1)]


def test_grid_drops_unused_nesterov_for_adam():
    g = grid(optimizer=["sgd", "adam"], nesterov=[False, True], momentum=[0.9])
    assert [(c.optimizer, c.momentum, c.nesterov) for c in g] == [
        ("sgd", 0.9, False), ("sgd", 0.9, True), ("adam", 0.0, False)]


def test_grid_optimizer_nesterov_momentum_gives_four():
    g = grid(optimizer=["sgd", "adam"], nesterov=[False, True], momentum=[0, 0.9])
    assert [(c.optimizer, c.momentum, c.nesterov) for c in g] == [
        ("sgd", 0.0, False), ("sgd", 0.9, False), ("sgd", 0.9, True), ("adam", 0.0, False)]


def test_grid_unknown_field_raises_naming_it():
    with pytest.raises(ValueError, match=r"grid: unknown field\(s\) \['learning_rate'\]"):
        grid(learning_rate=[0.1])
    with pytest.raises(ValueError, match=r"grid: unknown field\(s\) \['widths'\]"):
        grid([{"widths": (8,)}])


@pytest.mark.parametrize("empty", [[], range(0)], ids=["list", "range"])
def test_grid_empty_axis_raises(empty):
    with pytest.raises(ValueError, match=r"grid: axis 'lr' is empty"):
        grid(lr=empty, seed=[0, 1])


@pytest.mark.parametrize("spec", [[], [1], [{"lr": 0.1}, "x"]], ids=_id)
def test_grid_bad_positional_raises(spec):
    with pytest.raises(ValueError, match=r"grid: the positional argument"):
        grid(spec)


def test_grid_invalid_value_raises_naming_field():
    with pytest.raises(ValueError, match=r"Config\.lr=-1\.0"):
        grid(lr=[0.1, -1.0])


# ----------------------------------------------------------------------------- 6. sample


def test_sample_deterministic_and_seed_dependent():
    kw = dict(lr=log_uniform(1e-4, 1e-1), dropout=uniform(0.0, 0.5), activation=["relu", "tanh"])
    a = sample(10, seed=3, **kw)
    assert a == sample(10, seed=3, **kw)
    b = sample(10, seed=4, **kw)
    assert [c.lr for c in a] != [c.lr for c in b]


def test_sample_log_uniform_range_and_spread():
    cs = sample(200, seed=0, lr=log_uniform(1e-4, 1e-1))
    assert len(cs) == 200
    lrs = np.array([c.lr for c in cs])
    assert np.all((lrs >= 1e-4) & (lrs <= 1e-1))
    assert (lrs < 1e-3).any() and (lrs > 1e-2).any()
    # Logs spread over the whole decade range: each of the three decades gets a fair share.
    counts = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert counts.min() >= 40


def test_sample_uniform_choices_int_uniform_fixed():
    cs = sample(200, seed=1, lr=log_uniform(1e-3, 1e-1), dropout=uniform(0.1, 0.3),
                activation=["relu", "tanh", "gelu"], epochs=int_uniform(1, 3), batch_size=64,
                hidden=[(8,), (16, 16)])
    assert len(cs) == 200
    assert all(0.1 <= c.dropout <= 0.3 for c in cs)
    assert {c.activation for c in cs} == {"relu", "tanh", "gelu"}
    assert {c.epochs for c in cs} == {1, 2, 3}  # inclusive on both ends
    assert all(type(c.epochs) is int for c in cs)
    assert {c.batch_size for c in cs} == {64}
    assert {c.hidden for c in cs} == {(8,), (16, 16)}


def test_sample_int_uniform_single_value():
    assert {c.epochs for c in sample(5, epochs=int_uniform(7, 7), seed=0)} == {7}


def test_sample_drops_duplicates():
    cs = sample(50, seed=0, optimizer=["sgd", "adam"])
    assert sorted(c.optimizer for c in cs) == ["adam", "sgd"]


@pytest.mark.parametrize("n", [0, -1, 2.0, True, "5", None], ids=_id)
def test_sample_bad_n_raises(n):
    with pytest.raises(ValueError, match=r"sample: n=.* must be a positive integer"):
        sample(n, lr=log_uniform(1e-3, 1e-1))


def test_sample_unknown_field_raises():
    with pytest.raises(ValueError, match=r"sample: unknown field\(s\) \['learning_rate'\]"):
        sample(3, learning_rate=log_uniform(1e-3, 1e-1))


@pytest.mark.parametrize("make, args, pat", [
    (log_uniform, (0, 1), "log_uniform: need 0 < low <= high"),
    (log_uniform, (-1, 1), "log_uniform: need 0 < low <= high"),
    (log_uniform, (1, 0.1), "log_uniform: need 0 < low <= high"),
    (log_uniform, (NAN, 1), "log_uniform: need 0 < low <= high"),
    (uniform, (1, 0), "uniform: need low <= high"),
    (uniform, (NAN, 1), "uniform: need low <= high"),
    (int_uniform, (3, 1), "int_uniform: need low <= high"),
], ids=lambda v: v.__name__ if callable(v) else _id(v))
def test_distribution_bad_bounds(make, args, pat):
    with pytest.raises(ValueError, match=re.escape(pat)):
        make(*args)


# ----------------------------------------------------------------------------- 7. static_key


STATIC_BASE = Config(hidden=(16, 16), optimizer="sgd", momentum=0.5, dropout=0.1, encoding="fourier",
                     schedule="step")

SAME_KEY = {
    "lr": dict(lr=0.5),
    "momentum": dict(momentum=0.9),
    "betas": dict(betas=(0.5, 0.9)),
    "eps": dict(eps=1e-6),
    "weight_decay": dict(weight_decay=1e-3),
    "gamma": dict(gamma=0.5),
    "step_size": dict(step_size=3),
    "dropout-rate": dict(dropout=0.4),
    "fourier_scale": dict(fourier_scale=10.0),
    "seed": dict(seed=123),
    "schedule": dict(schedule="cosine", t_max=5, eta_min=1e-4),
    "schedule-constant": dict(schedule="constant"),
    "nesterov": dict(nesterov=True),  # a per-config selector of the SGD update, not program structure
}

DIFFERENT_KEY = {
    "hidden": dict(hidden=(32, 16)),
    "depth": dict(hidden=(16,)),
    "activation": dict(activation="tanh"),
    "optimizer": dict(optimizer="adam", momentum=0.0),
    "optimizer-rmsprop": dict(optimizer="rmsprop"),
    "batch_size": dict(batch_size=64),
    "epochs": dict(epochs=21),
    "dtype": dict(dtype="float64"),
    "dropout-0": dict(dropout=0.0),
    "output": dict(output="softmax"),
    "init": dict(init="he_normal"),
    "input_norm": dict(input_norm="standardize"),
    "batchnorm": dict(batchnorm=True),
    "encoding": dict(encoding="identity"),
    "fourier_features": dict(fourier_features=8),
    "loss": dict(loss="mse"),
    "shuffle": dict(shuffle=False),
}


@pytest.mark.parametrize("change", SAME_KEY.values(), ids=SAME_KEY.keys())
def test_static_key_ignores_numbers(change):
    other = STATIC_BASE.replace(**change)
    assert other != STATIC_BASE
    assert static_key(other) == static_key(STATIC_BASE)
    assert hash(static_key(other)) == hash(static_key(STATIC_BASE))


@pytest.mark.parametrize("change", DIFFERENT_KEY.values(), ids=DIFFERENT_KEY.keys())
def test_static_key_tracks_program_shape(change):
    assert static_key(STATIC_BASE.replace(**change)) != static_key(STATIC_BASE)


def test_static_key_ignores_fourier_features_without_fourier_encoding():
    assert static_key(Config(fourier_features=4)) == static_key(Config(fourier_features=64))


def test_static_key_groups_a_grid_into_buckets():
    g = grid(lr=[0.1, 0.01], seed=range(3), batch_size=[16, 32])
    assert len(g) == 12 and len({static_key(c) for c in g}) == 2


# ----------------------------------------------------------------------------- 8. hparams


HP_CONFIGS = [
    Config(optimizer="sgd", momentum=0.9, seed=7, dropout=0.25),
    Config(optimizer="adamw", seed=2**32 - 1, encoding="fourier", fourier_scale=3.0, eps=1e-6),
    Config(optimizer="adam", betas=(0.0, 0.99), weight_decay=5e-4, seed=0),
]


@pytest.mark.parametrize("dtype", [None, "float32", "float64"])
def test_hparams_shapes_dtypes_values(dtype):
    hp = hparams(HP_CONFIGS, dtype)
    assert isinstance(hp, HParams)
    want = np.dtype(dtype or "float32")
    for name, arr in hp._asdict().items():
        assert isinstance(arr, np.ndarray) and arr.shape == (3,), name
        assert arr.dtype == (np.uint32 if name == "seed" else want), name
    np.testing.assert_array_equal(hp.seed, np.array([7, 2**32 - 1, 0], np.uint32))
    np.testing.assert_array_equal(hp.momentum, np.array([0.9, 0.0, 0.0], want))
    np.testing.assert_array_equal(hp.weight_decay, np.array([0.0, 1e-2, 5e-4], want))  # adamw default resolved
    np.testing.assert_array_equal(hp.beta1, np.array([0.9, 0.9, 0.0], want))
    np.testing.assert_array_equal(hp.beta2, np.array([0.999, 0.999, 0.99], want))
    np.testing.assert_array_equal(hp.eps, np.array([1e-8, 1e-6, 1e-8], want))
    np.testing.assert_array_equal(hp.dropout, np.array([0.25, 0.0, 0.0], want))
    np.testing.assert_array_equal(hp.fourier_scale, np.array([1.0, 3.0, 1.0], want))


def test_hparams_dtype_defaults_to_first_config():
    hp = hparams([Config(dtype="float64"), Config(dtype="float64", lr=0.1)])
    assert hp.momentum.dtype == np.float64 and hp.log_beta1.dtype == np.float64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hparams_log_beta(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(0) must not warn
        hp = hparams(HP_CONFIGS, dtype)
    # computed in float64, then cast
    np.testing.assert_array_equal(hp.log_beta1[:2], np.log(np.array([0.9, 0.9])).astype(dtype))
    np.testing.assert_array_equal(hp.log_beta2, np.log(np.array([0.999, 0.999, 0.99])).astype(dtype))
    assert hp.log_beta1[2] == -np.inf
    hp0 = hparams([Config(betas=(0.0, 0.0))], dtype)
    assert np.all(np.isneginf(hp0.log_beta1)) and np.all(np.isneginf(hp0.log_beta2))

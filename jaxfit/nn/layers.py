"""The MLP: parameters, batch statistics and a forward pass with PyTorch's semantics.

Parameters follow PyTorch's layout so the converters to and from a `state_dict` are transposes of
nothing: a linear layer is {"w": [out, in], "b": [out]} and `y = x @ w.T + b`.

    params = {"dense":  [{"w", "b"}, ...]            # hidden layers, then the output layer
              "bn":     [{"weight", "bias"}, ...]    # when Config.batchnorm: one per hidden layer
              "in_bn":  {"weight", "bias"}}          # when input_norm == "batchnorm"
    state  = {"bn": [{"mean", "var"}, ...], "in_bn": {"mean", "var"},   # BatchNorm running stats
              "fourier": [fourier_features, num_features],             # B, drawn once, not trained
              "norm_mean", "norm_std": [num_features]}                 # input standardisation

The forward pass maps a batch x [B, F] to outputs [B, K]; `jax.vmap` adds the config axis.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import init as _init

BN_EPS = 1e-5  # nn.BatchNorm1d defaults
BN_MOMENTUM = 0.1
LEAKY_SLOPE = 0.01  # nn.LeakyReLU default
SOFTPLUS_THRESHOLD = 20.0  # nn.Softplus default (beta 1)


def _softplus(x):
    # PyTorch returns x itself above the threshold; the where keeps the gradient finite too.
    safe = jnp.minimum(x, SOFTPLUS_THRESHOLD)
    return jnp.where(x > SOFTPLUS_THRESHOLD, x, jnp.log1p(jnp.exp(safe)))


ACTIVATIONS = {
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jnp.where(x > 0, x, LEAKY_SLOPE * x),  # slope (not 1) at exactly 0
    "elu": jax.nn.elu,
    "selu": jax.nn.selu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # nn.GELU is the exact erf form
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softplus": _softplus,
    "sin": jnp.sin,
    "identity": lambda x: x,
}

OUTPUTS = {
    "logits": lambda x: x,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "sigmoid": jax.nn.sigmoid,
}


class Arch(NamedTuple):
    """The static structure of one network (a slice of config.Static plus the data's shape)."""

    num_features: int
    num_outputs: int
    hidden: tuple[int, ...]
    activation: str
    output: str
    init: str
    input_norm: str
    batchnorm: bool
    use_dropout: bool
    encoding: str
    fourier_features: int

    @property
    def encoded_features(self) -> int:
        return 2 * self.fourier_features if self.encoding == "fourier" else self.num_features

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.encoded_features, *self.hidden, self.num_outputs)


def init(arch: Arch, key: jax.Array, dtype, *, fourier_scale=1.0, x_train=None) -> tuple[dict, dict]:
    """Fresh (params, state) for one network. `key` is the config's init key: the linear layers draw
    from it directly (one draw for the whole network, `init.dense_layers`), the Fourier matrix from
    `fold_in(key, 1)`."""
    params: dict = {"dense": _init.dense_layers(key, arch.widths, arch.init, dtype)}
    state: dict = {}
    if arch.batchnorm:
        params["bn"] = [_bn_params(h, dtype) for h in arch.hidden]
        state["bn"] = [_bn_state(h, dtype) for h in arch.hidden]
    if arch.input_norm == "batchnorm":
        params["in_bn"] = _bn_params(arch.num_features, dtype)
        state["in_bn"] = _bn_state(arch.num_features, dtype)
    if arch.input_norm == "standardize":
        # Per feature, population std (ddof 0) of the training split; a constant feature keeps scale 1.
        mean = jnp.mean(x_train, axis=0)
        std = jnp.sqrt(jnp.mean((x_train - mean) ** 2, axis=0))
        state["norm_mean"] = mean
        state["norm_std"] = jnp.where(std > 0, std, jnp.ones_like(std))
    if arch.encoding == "fourier":
        b = jax.random.normal(jax.random.fold_in(key, 1), (arch.fourier_features, arch.num_features), dtype)
        state["fourier"] = b * jnp.asarray(fourier_scale, dtype)
    return params, state


def _bn_params(n, dtype):
    return {"weight": jnp.ones((n,), dtype), "bias": jnp.zeros((n,), dtype)}


def _bn_state(n, dtype):
    return {"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)}


def batchnorm(x, p, s, mask, train: bool):
    """nn.BatchNorm1d: normalise with the batch's biased variance in training and update the running
    statistics with momentum 0.1 and the UNBIASED variance; use the running statistics in eval.
    `mask` [B] marks real rows: padded rows take no part in the statistics."""
    if not train:
        inv = jax.lax.rsqrt(s["var"] + BN_EPS)
        return (x - s["mean"]) * inv * p["weight"] + p["bias"], s
    m = mask[:, None].astype(x.dtype)
    n = jnp.sum(m)
    mean = jnp.sum(x * m, axis=0) / n
    var = jnp.sum(((x - mean) * m) ** 2, axis=0) / n
    unbiased = var * n / jnp.maximum(n - 1, 1)
    new_s = {"mean": (1 - BN_MOMENTUM) * s["mean"] + BN_MOMENTUM * mean,
             "var": (1 - BN_MOMENTUM) * s["var"] + BN_MOMENTUM * unbiased}
    y = (x - mean) * jax.lax.rsqrt(var + BN_EPS) * p["weight"] + p["bias"]
    return y, new_s


def apply(arch: Arch, params: dict, state: dict, x, *, train: bool, mask=None,
          dropout_rate=None, dropout_key=None):
    """Forward pass of one network on a batch x [B, F] -> (outputs [B, K], new state).

    In training, `mask` [B] marks the real rows of a padded batch (BatchNorm statistics use only
    those) and dropout draws a Bernoulli(1 - p) mask per hidden layer from `dropout_key`, scaled by
    1 / (1 - p), as nn.Dropout does. In eval, dropout is off and BatchNorm uses running statistics.
    """
    if mask is None:
        mask = jnp.ones(x.shape[:1], bool)
    new_state = dict(state)
    if arch.input_norm == "standardize":
        x = (x - state["norm_mean"]) / state["norm_std"]
    elif arch.input_norm == "batchnorm":
        x, new_state["in_bn"] = batchnorm(x, params["in_bn"], state["in_bn"], mask, train)
    if arch.encoding == "fourier":
        z = (2 * math.pi) * (x @ state["fourier"].T)
        x = jnp.concatenate([jnp.sin(z), jnp.cos(z)], axis=-1)
    act = ACTIVATIONS[arch.activation]
    dense = params["dense"]
    bn_states = []
    for i in range(len(arch.hidden)):
        x = x @ dense[i]["w"].T + dense[i]["b"]
        if arch.batchnorm:
            x, bs = batchnorm(x, params["bn"][i], state["bn"][i], mask, train)
            bn_states.append(bs)
        x = act(x)
        if arch.use_dropout and train:
            keep = 1 - dropout_rate
            k = jax.random.fold_in(dropout_key, i)
            m = jax.random.bernoulli(k, keep, x.shape)
            # nn.Dropout: x * (mask / (1 - p)); rate 0 keeps everything and scales by 1.
            x = x * (m.astype(x.dtype) / keep)
    if arch.batchnorm:
        new_state["bn"] = bn_states
    x = x @ dense[-1]["w"].T + dense[-1]["b"]
    return OUTPUTS[arch.output](x), new_state

"""`MLP`: the network a `jaxfit.Config` describes, as a `flax.nnx` module of this package's layers.

Its parts carry torchref's names (`torchref.MLP`), so `state_dict(mlp)` has the keys of the PyTorch
twin's `state_dict()`: norm (Standardize or BatchNorm1d), fourier, linear{i}, bn{i}, drop{i}, out.
Its forward pass is `jaxfit.nn.layers.apply` on the config's own (unfused) network, computed by the
same functions: equal to it bitwise, in eval and in training mode (same dropout key or masks).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..nn import layers as _layers
from ..program.train import init_key
from .modules import BatchNorm1d, Dropout, Fourier, Linear, Standardize, key_from


class MLP(nnx.Module):
    """The network of `config` for data of `num_features` features and `num_outputs` outputs.

    Without `params`, its weights, Fourier matrix and input statistics are drawn as a sweep draws
    them (`layers.init`): from `rngs.params()` when `rngs` is given, else from the key of `seed`
    (default `config.seed`), the sweep's own; `x_train` fits input standardisation (without it: mean
    0, std 1). With `params` (and `model_state`) in jaxfit's layout (`SweepResult.params`), those are
    loaded. `rngs`, when given, also seeds the Dropout layers for calls without a key.

    Call: `mlp(x, train=None, mask=None, key=None, rngs=None, rate=None, dropout_masks=None)`.
    `train=None` keeps each layer's mode (`mlp.train()` / `mlp.eval()`); `key`: the dropout key of the
    step (layer i draws from fold_in(key, i), as the sweep does); `rate` overrides config.dropout (an
    array: vmappable); `mask` [B]: real rows for BatchNorm; `dropout_masks` [hidden, B, width] (0/1)
    replace the draws."""

    def __init__(self, config, num_features: int, num_outputs: int, *, params: dict | None = None,
                 model_state: dict | None = None, rngs: nnx.Rngs | None = None, seed: int | None = None,
                 x_train=None):
        c = config
        arch = _layers.arch_of(c, num_features, num_outputs)
        dtype = jnp.dtype(c.dtype)
        if params is None:
            key = rngs.params() if rngs is not None else init_key(c.seed if seed is None else seed)
            if c.input_norm == "standardize":
                x_train = jnp.zeros((1, num_features), dtype) if x_train is None else jnp.asarray(x_train, dtype)
            params, model_state = _layers.init(arch, key, dtype, fourier_scale=c.fourier_scale, x_train=x_train)
        state = model_state or {}
        self.num_features, self.num_outputs = num_features, num_outputs
        self.activation, self.output = c.activation, c.output
        self.depth = len(c.hidden)
        self.dropout = c.dropout > 0
        self.batchnorm = bool(c.batchnorm)
        if c.input_norm == "standardize":
            self.norm = Standardize(num_features, dtype=dtype, mean=state["norm_mean"], std=state["norm_std"])
        elif c.input_norm == "batchnorm":
            self.norm = _batchnorm(num_features, dtype, params["in_bn"], state.get("in_bn"))
        if c.encoding == "fourier":
            self.fourier = Fourier(num_features, c.fourier_features, c.fourier_scale, dtype=dtype,
                                   B=state["fourier"])
        w = arch.widths
        for i in range(self.depth):
            d = params["dense"][i]
            setattr(self, f"linear{i}", Linear(w[i], w[i + 1], init=c.init, dtype=dtype, weight=d["w"], bias=d["b"]))
            if self.batchnorm:
                bs = state["bn"][i] if "bn" in state else None
                setattr(self, f"bn{i}", _batchnorm(w[i + 1], dtype, params["bn"][i], bs))
            if self.dropout:
                setattr(self, f"drop{i}", Dropout(c.dropout, rngs=rngs))
        d = params["dense"][self.depth]
        self.out = Linear(w[-2], w[-1], init=c.init, dtype=dtype, weight=d["w"], bias=d["b"])

    @classmethod
    def from_config(cls, config, num_features: int, num_outputs: int, *, rngs: nnx.Rngs | None = None,
                    seed: int | None = None, x_train=None) -> "MLP":
        """A fresh network, drawn as a sweep of `config` draws it (see the class docstring)."""
        return cls(config, num_features, num_outputs, rngs=rngs, seed=seed, x_train=x_train)

    @classmethod
    def from_params(cls, config, params: dict, model_state: dict | None = None, *, num_features: int | None = None,
                    num_outputs: int | None = None) -> "MLP":
        """The network holding `params` / `model_state` in jaxfit's layout (`SweepResult.params(i)`,
        `model_state(i)`); the data's shape is read from them unless given."""
        state = model_state or {}
        if num_features is None:
            if "fourier" in state:
                num_features = np.shape(state["fourier"])[1]
            elif "norm_mean" in state:
                num_features = np.shape(state["norm_mean"])[0]
            elif "in_bn" in params:
                num_features = np.shape(params["in_bn"]["weight"])[0]
            else:
                num_features = np.shape(params["dense"][0]["w"])[1]
        if num_outputs is None:
            num_outputs = np.shape(params["dense"][-1]["w"])[0]
        return cls(config, num_features, num_outputs, params=params, model_state=model_state)

    def to_params(self) -> tuple[dict, dict]:
        """(params, model_state) in jaxfit's layout (NumPy), what `from_params` takes."""
        a = lambda v: np.asarray(v[...])  # noqa: E731
        bn_p = lambda m: {"weight": a(m.weight), "bias": a(m.bias)}  # noqa: E731
        bn_s = lambda m: {"mean": a(m.running_mean), "var": a(m.running_var)}  # noqa: E731
        lin = lambda m: {"w": a(m.weight), "b": a(m.bias)}  # noqa: E731
        params: dict[str, Any] = {"dense": [lin(getattr(self, f"linear{i}")) for i in range(self.depth)]
                                  + [lin(self.out)]}
        state: dict[str, Any] = {}
        if self.batchnorm:
            params["bn"] = [bn_p(getattr(self, f"bn{i}")) for i in range(self.depth)]
            state["bn"] = [bn_s(getattr(self, f"bn{i}")) for i in range(self.depth)]
        norm = getattr(self, "norm", None)
        if isinstance(norm, BatchNorm1d):
            params["in_bn"], state["in_bn"] = bn_p(norm), bn_s(norm)
        elif isinstance(norm, Standardize):
            state["norm_mean"], state["norm_std"] = a(norm.mean), a(norm.std)
        if hasattr(self, "fourier"):
            state["fourier"] = a(self.fourier.B)
        return params, state

    def __call__(self, x, *, train: bool | None = None, mask=None, key=None, rngs=None, rate=None,
                 dropout_masks=None):
        ura = None if train is None else not train
        norm = getattr(self, "norm", None)
        if isinstance(norm, BatchNorm1d):
            x = norm(x, use_running_average=ura, mask=mask)
        elif norm is not None:
            x = norm(x)
        if hasattr(self, "fourier"):
            x = self.fourier(x)
        if self.dropout and key is None and rngs is not None and self.drop0.active(ura):
            key = key_from(rngs)
        act = _layers.ACTIVATIONS[self.activation]
        for i in range(self.depth):
            x = getattr(self, f"linear{i}")(x)
            if self.batchnorm:
                x = getattr(self, f"bn{i}")(x, use_running_average=ura, mask=mask)
            x = act(x)
            if self.dropout:
                km = None if dropout_masks is None else dropout_masks[i][:, :x.shape[-1]]
                x = getattr(self, f"drop{i}")(x, deterministic=ura, rate=rate, keep_mask=km,
                                              key=None if key is None else jax.random.fold_in(key, i))
        return _layers.OUTPUTS[self.output](self.out(x))


def _batchnorm(n: int, dtype, p: dict, s: dict | None) -> BatchNorm1d:
    bn = BatchNorm1d(n, dtype=dtype)
    bn.weight[...] = jnp.asarray(p["weight"], dtype)
    bn.bias[...] = jnp.asarray(p["bias"], dtype)
    if s is not None:
        bn.running_mean[...] = jnp.asarray(s["mean"], dtype)
        bn.running_var[...] = jnp.asarray(s["var"], dtype)
    return bn

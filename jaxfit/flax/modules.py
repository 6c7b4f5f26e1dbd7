"""PyTorch-semantics layers as `flax.nnx` modules, computed by jaxfit's own functions (jaxfit.nn).

Every number here comes from the functions the compiled training program uses (`jaxfit.nn.init`,
`jaxfit.nn.layers`): one implementation of the semantics, two ways to call it.

Modes follow nnx: `module.train()` / `module.eval()` set `deterministic` (Dropout) and
`use_running_average` (BatchNorm1d); a call argument overrides the attribute, and inside
`jaxfit.program.graph.program_inputs(...)` (what `apply_graph` opens) the program's `train`, dropout key, rate
and row mask fill in whatever a call leaves out. New modules are in training mode, as in PyTorch.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

from ..errors import UserError
from ..nn import init as _init
from ..nn import layers as _layers
from ..program.graph import current_inputs

SCHEMES = ("torch", "lecun_normal", "he_normal", "glorot_uniform")


class Buffer(nnx.Variable):
    """A fixed, non-trainable array (PyTorch's `register_buffer`): model state, never a parameter."""


class FourierMatrix(Buffer):
    """The Fourier encoding's matrix B [fourier_features, num_features], drawn once, not trained."""


class InputStat(Buffer):
    """Input standardisation's per-feature mean or std of the training split."""


class Hyper(nnx.Variable):
    """A number of the run, not of the model (Dropout's rate): state, so that a program vmaps it
    over configs with one graph; no part of a state_dict."""


def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None


def key_from(rngs, stream: str = "dropout"):
    if isinstance(rngs, nnx.Rngs):
        return rngs[stream]()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    return rngs  # a key, or None


# ----------------------------------------------------------------------------- layers


class Linear(nnx.Module):
    """torch.nn.Linear: weight [out, in], bias [out], y = x @ weight.T + bias (`layers.linear`).

    `init` is one of Config.init's schemes, drawn by `jaxfit.nn.init.dense` from `key` or from
    `rngs.params()` (torch: W, b ~ U(+-1/sqrt(in)); the others a zero bias). `weight` / `bias`
    arrays, when given, are taken as they are instead."""

    def __init__(self, in_features: int, out_features: int, *, init: str = "torch", dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None, key=None, weight=None, bias=None):
        if init not in SCHEMES:
            raise UserError(f"Linear: unknown init {init!r}; choose among {SCHEMES}")
        self.in_features, self.out_features = in_features, out_features
        if weight is None:
            key = _first(key, key_from(rngs, "params"))
            if key is None:
                raise UserError("Linear: give rngs or key (or weight and bias)")
            p = _init.dense(key, in_features, out_features, init, dtype)
            weight, bias = p["w"], p["b"]
        weight, bias = jnp.asarray(weight, dtype), jnp.asarray(bias, dtype)
        if weight.shape != (out_features, in_features) or bias.shape != (out_features,):
            raise UserError(f"Linear({in_features}, {out_features}): weight {weight.shape}, bias {bias.shape}; "
                             f"want ({out_features}, {in_features}) and ({out_features},)")
        self.weight = nnx.Param(weight)
        self.bias = nnx.Param(bias)

    def __call__(self, x):
        return _layers.linear(x, self.weight[...], self.bias[...])


class BatchNorm1d(nnx.Module):
    """torch.nn.BatchNorm1d (`layers.batchnorm`): in training, normalise with the batch's biased
    variance and update running_mean / running_var with `momentum` (PyTorch's sense: 0.1 takes 10% of
    the batch) and the UNBIASED variance; in eval (`use_running_average`), use the running statistics.
    `mask` [B] (call argument) marks the real rows of a padded batch. num_batches_tracked counts
    training calls, as torch's buffer does (int32)."""

    def __init__(self, num_features: int, momentum: float = _layers.BN_MOMENTUM, eps: float = _layers.BN_EPS, *,
                 dtype=jnp.float32, use_running_average: bool = False):
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.use_running_average = use_running_average
        self.weight = nnx.Param(jnp.ones((num_features,), dtype))
        self.bias = nnx.Param(jnp.zeros((num_features,), dtype))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), dtype))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), dtype))
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x, *, use_running_average: bool | None = None, mask=None):
        ctx = current_inputs()
        ura = _first(use_running_average, None if ctx.train is None else not ctx.train, self.use_running_average)
        p = {"weight": self.weight[...], "bias": self.bias[...]}
        s = {"mean": self.running_mean[...], "var": self.running_var[...]}
        if ura:
            return _layers.batchnorm(x, p, s, None, False, momentum=self.momentum, eps=self.eps)[0]
        mask = _first(mask, ctx.mask)
        if mask is None:
            mask = jnp.ones(x.shape[:1], bool)
        y, new = _layers.batchnorm(x, p, s, mask, True, momentum=self.momentum, eps=self.eps)
        self.running_mean[...] = new["mean"]
        self.running_var[...] = new["var"]
        self.num_batches_tracked[...] = self.num_batches_tracked[...] + 1
        return y


class Dropout(nnx.Module):
    """torch.nn.Dropout (`layers.dropout`): zero each unit with probability `rate` and scale the rest
    by 1 / (1 - rate); identity when `deterministic` (eval). `rate` may be an array, traced under
    jax.vmap (no Python branch on it), given at the call or here (kept as a `Hyper` variable: state,
    not graph); rate=None takes the program's (`program_inputs`). The key: the call's `key` or `rngs`, else the `rngs` given here (its
    "dropout" stream), else the program's; `keep_mask` (0/1 [B, width]) replaces the draw."""

    def __init__(self, rate=None, *, deterministic: bool = False, rngs: nnx.Rngs | None = None):
        self.rate = None if rate is None else Hyper(jnp.asarray(rate))
        self.deterministic = deterministic
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs["dropout"].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        else:
            self.rngs = nnx.data(None)

    def active(self, deterministic: bool | None = None) -> bool:
        """Whether a call with this `deterministic` argument drops units."""
        ctx = current_inputs()
        return not _first(deterministic, None if ctx.train is None else not ctx.train, self.deterministic)

    def __call__(self, x, *, deterministic: bool | None = None, rate=None, key=None, rngs=None, keep_mask=None):
        if not self.active(deterministic):
            return x
        ctx = current_inputs()
        rate = _first(rate, None if self.rate is None else self.rate[...], ctx.rate)
        if rate is None:
            raise UserError("Dropout: no rate (give one here, at construction, or through program_inputs)")
        if keep_mask is None:
            key = _first(key, key_from(rngs), key_from(self.rngs))
            if key is None and ctx.key is not None:
                key = jax.random.fold_in(ctx.key, ctx.drawn[0])
                ctx.drawn[0] += 1
            if key is None:
                raise UserError("Dropout in training needs a key: pass key= or rngs=, or build it with rngs")
        return _layers.dropout(x, jnp.asarray(rate, x.dtype), key, keep_mask=keep_mask)


class Standardize(nnx.Module):
    """x -> (x - mean) / std with fixed per-feature statistics (`layers.standardize`): mean 0, std 1
    until `fit(x_train)` (`layers.input_stats`: population std, a constant feature keeps scale 1)."""

    def __init__(self, num_features: int, *, dtype=jnp.float32, mean=None, std=None):
        self.mean = InputStat(jnp.zeros((num_features,), dtype) if mean is None else jnp.asarray(mean, dtype))
        self.std = InputStat(jnp.ones((num_features,), dtype) if std is None else jnp.asarray(std, dtype))

    def fit(self, x_train) -> "Standardize":
        mean, std = _layers.input_stats(jnp.asarray(x_train, self.mean[...].dtype))
        self.mean[...], self.std[...] = mean, std
        return self

    def __call__(self, x):
        return _layers.standardize(x, self.mean[...], self.std[...])


class Fourier(nnx.Module):
    """Random Fourier features x -> [sin(2 pi x B^T), cos(2 pi x B^T)] (`layers.fourier_encode`), B
    [fourier_features, num_features] ~ N(0, scale^2) (`layers.fourier_matrix`) from `key` or
    `rngs.params()`, or given as `B`; a FourierMatrix variable, not trained."""

    def __init__(self, num_features: int, fourier_features: int, scale: float = 1.0, *, dtype=jnp.float32,
                 rngs: nnx.Rngs | None = None, key=None, B=None):
        if B is None:
            key = _first(key, key_from(rngs, "params"))
            if key is None:
                raise UserError("Fourier: give rngs or key (or B)")
            B = _layers.fourier_matrix(key, fourier_features, num_features, dtype, scale)
        B = jnp.asarray(B, dtype)
        if B.shape != (fourier_features, num_features):
            raise UserError(f"Fourier: B {B.shape}, want ({fourier_features}, {num_features})")
        self.B = FourierMatrix(B)

    def __call__(self, x):
        return _layers.fourier_encode(x, self.B[...])

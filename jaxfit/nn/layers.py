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

Fused networks. One `Arch` may describe several networks at once (a fused bucket of the engine):
its `hidden` widths are the largest of the bucket's, and every choice field (`activations`,
`outputs`, `inits`, `input_norms`, `encodings`) lists the values present. Each network then
carries a `Struct` of per-config arrays (its own depth and widths, the index of each choice, its
init scales) that `vmap` batches. A narrower network lives in the top-left corner of the padded
arrays: its padded units have exactly zero weights, their activations are masked to exact zeros
(so they contribute nothing and receive zero gradients) and the engine masks their updates too. A
shallower network passes its input through the padded layers unchanged (all hidden layers then have
one common width) and keeps its output layer in the last slot. Where a choice has several values
the branches present are all computed and the config's own is selected (what `lax.switch` does
under `vmap`), unless the configs of a block share the choice (`jaxfit.nn.choice`: then one branch
is computed); with a single value the choice is static and costs nothing, so an `Arch` of one
network (`arch_of`) is the plain network. `pad_tree` / `unpad_tree` move one network's parameters
between its own layout and the padded one; `init` draws a fused network's weights so that each
config's real units get bitwise the numbers it gets alone (jax.random's draws are prefixes of
longer draws of the same key, `tests/test_fused.py` checks it).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import choice
from . import init as _init

BN_EPS = 1e-5  # nn.BatchNorm1d defaults
BN_MOMENTUM = 0.1
LEAKY_SLOPE = 0.01  # nn.LeakyReLU default
SOFTPLUS_THRESHOLD = 20.0  # nn.Softplus default (beta 1)


def _softplus(x):
    # PyTorch returns x itself above the threshold; the where keeps the gradient finite too. A where,
    # not jnp.minimum: at x == 20 exactly PyTorch takes the log1p branch with its full derivative,
    # while minimum's gradient splits a tie in half (it gave 0.5 there).
    safe = jnp.where(x > SOFTPLUS_THRESHOLD, SOFTPLUS_THRESHOLD, x)
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
    """The static structure of one network, or of a fused bucket of networks (see the module
    docstring): the data's shape, the (largest) hidden widths and the values present of each choice."""

    num_features: int
    num_outputs: int
    hidden: tuple[int, ...]
    activations: tuple[str, ...]
    outputs: tuple[str, ...]
    inits: tuple[str, ...]
    input_norms: tuple[str, ...]
    batchnorm: bool  # some network has BatchNorm after its hidden layers
    use_dropout: bool  # some network has dropout
    encodings: tuple[str, ...]
    fourier_features: int  # the largest (0: no Fourier encoding)
    depths: tuple[int, ...] = ()  # the depths present (empty: len(hidden) only)
    padded: bool = False  # some network is narrower than `hidden` somewhere

    @property
    def depth(self) -> int:
        return len(self.hidden)

    @property
    def encoded_features(self) -> int:
        """Width of the first layer's input: the largest encoding present."""
        return max((2 * self.fourier_features if e == "fourier" else self.num_features) for e in self.encodings)

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.encoded_features, *self.hidden, self.num_outputs)

    @property
    def fused(self) -> bool:
        """Whether networks need per-config `Struct` arrays (else everything is static)."""
        return (self.padded or len(self.depths) > 1 or len(self.encodings) > 1
                or any(len(t) > 1 for t in (self.activations, self.outputs, self.inits, self.input_norms)))


def arch_of(c, num_features: int, num_outputs: int) -> Arch:
    """The Arch of one config's own (unfused) network."""
    ff = c.fourier_features if c.encoding == "fourier" else 0
    return Arch(num_features, num_outputs, tuple(c.hidden), (c.activation,), (c.output,), (c.init,),
                (c.input_norm,), bool(c.batchnorm), c.dropout > 0, (c.encoding,), ff, (len(c.hidden),), False)


def union_of(items, name: str) -> tuple:
    """The sorted values present in the tuple field `name` of any of `items` (an Arch's or
    ProgramSpec's choices present in a fused bucket)."""
    return tuple(sorted({v for item in items for v in getattr(item, name)}))


def fuse_archs(archs: Sequence[Arch]) -> Arch:
    """The smallest Arch that holds every one of `archs` (one config's each, same data shape)."""
    a0 = archs[0]
    depths = sorted({d for a in archs for d in (a.depths or (a.depth,))})
    if len(depths) > 1:
        if depths[0] == 0:
            raise ValueError("a linear model (hidden=()) cannot share a program with deeper networks")
        w = max(max(a.hidden) for a in archs)
        hidden = (w,) * depths[-1]  # pass-through layers need one common width
    else:
        hidden = tuple(max(a.hidden[i] for a in archs) for i in range(depths[0]))

    union = lambda name: union_of(archs, name)  # noqa: E731
    encodings = union("encodings")
    ff = max(a.fourier_features for a in archs)
    padded = any(a.padded or a.hidden != hidden for a in archs) or (
        "fourier" in encodings and any(a.fourier_features != ff for a in archs if "fourier" in a.encodings))
    out = Arch(a0.num_features, a0.num_outputs, hidden, union("activations"), union("outputs"), union("inits"),
               union("input_norms"), any(a.batchnorm for a in archs), any(a.use_dropout for a in archs),
               encodings, ff, tuple(depths), bool(padded))
    if out.encoded_features != max(a.encoded_features for a in archs):  # pragma: no cover - by construction
        raise AssertionError("encoded width")
    return out


class Struct(NamedTuple):
    """One network's place in a fused Arch, as arrays `vmap` batches (built on the host by `struct_of`)."""

    depth: Any  # [] int32: hidden layers
    widths: Any  # [depth(Arch)] int32: own width of each hidden slot (0 past depth)
    fan_in: Any  # [depth + 1] int32: own fan-in of each dense slot (the output layer is the last)
    fan_out: Any  # [depth + 1] int32
    scale: Any  # [depth + 1] float: init scale of each dense slot (bound or std), from float64
    col0: Any  # [encoded_features] int32: own input column of each padded input column (-1: padding)
    activation: Any  # [] int32 index into Arch.activations
    output: Any
    init: Any
    input_norm: Any
    encoding: Any
    batchnorm: Any  # [] bool
    fourier_features: Any  # [] int32


def init_scale(scheme: str, fan_in: int, fan_out: int) -> float:
    """The bound (uniform schemes) or standard deviation (normal schemes) of a layer's weights."""
    if scheme == "torch":
        return 1.0 / math.sqrt(fan_in)
    if scheme == "glorot_uniform":
        return math.sqrt(6.0 / (fan_in + fan_out))
    return math.sqrt((1.0 if scheme == "lecun_normal" else 2.0) / fan_in)


def own_widths(c, num_features: int, num_outputs: int) -> tuple[int, ...]:
    enc = 2 * c.fourier_features if c.encoding == "fourier" else num_features
    return (enc, *c.hidden, num_outputs)


def _col_map(arch: Arch, c, num_features: int) -> np.ndarray:
    """[own encoded width] -> padded input column: identity features keep their place; the Fourier
    encoding's [sin(z_0..ff), cos(z_0..ff)] goes to [0..ff) and [FF..FF+ff) of the padded [sin, cos]."""
    if c.encoding == "fourier":
        ff, FF = c.fourier_features, arch.fourier_features
        return np.concatenate([np.arange(ff), FF + np.arange(ff)])
    return np.arange(num_features)


def struct_of(arch: Arch, c, dtype) -> Struct:
    """The host arrays of config `c`'s Struct in `arch` (numpy)."""
    D = arch.depth
    own = own_widths(c, arch.num_features, arch.num_outputs)
    d = len(c.hidden)
    fan_in = np.zeros(D + 1, np.int32)
    fan_out = np.zeros(D + 1, np.int32)
    scale = np.zeros(D + 1, np.float64)
    for layer in range(d + 1):
        slot = layer if layer < d else D
        fan_in[slot], fan_out[slot] = own[layer], own[layer + 1]
        scale[slot] = init_scale(c.init, own[layer], own[layer + 1])
    col0 = np.full(arch.encoded_features, -1, np.int32)
    col0[_col_map(arch, c, arch.num_features)] = np.arange(own[0])
    widths = np.zeros(D, np.int32)
    widths[:d] = c.hidden
    return Struct(np.int32(d), widths, fan_in, fan_out, scale.astype(dtype), col0,
                  np.int32(arch.activations.index(c.activation)), np.int32(arch.outputs.index(c.output)),
                  np.int32(arch.inits.index(c.init)), np.int32(arch.input_norms.index(c.input_norm)),
                  np.int32(arch.encodings.index(c.encoding)), np.bool_(c.batchnorm),
                  np.int32(c.fourier_features if c.encoding == "fourier" else 0))


# ----------------------------------------------------------------------------- choices


def choose(index, choices: Sequence[str], table: dict, *args, name: str | None = None):
    """table[choices[index]](*args): static when there is one choice; else the one branch of the
    block's hint for choice `name` (`jaxfit.nn.choice`), or every branch present computed and the
    config's own selected (exact: a select, no arithmetic)."""
    if len(choices) == 1:
        return table[choices[0]](*args)
    return choice.pick(index, name, [table[k] for k in choices], *args)


def select(flag, a, b):
    """Tree-wise `a if flag else b` for a scalar (per-config) flag."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(flag, x, y), a, b)


# ----------------------------------------------------------------------------- parameters


def init(arch: Arch, key: jax.Array, dtype, *, fourier_scale=1.0, x_train=None, struct: Struct | None = None
         ) -> tuple[dict, dict]:
    """Fresh (params, state) for one network (in a fused Arch: its padded arrays, `struct` its place).
    `key` is the config's init key: the linear layers draw from it directly (one draw for the whole
    network, `init.dense_layers`), the Fourier matrix from `fold_in(key, 1)`."""
    if struct is None:
        if arch.fused:
            raise ValueError("a fused Arch needs each network's Struct")
        params: dict = {"dense": _init.dense_layers(key, arch.widths, arch.inits[0], dtype)}
    else:
        params = {"dense": _fused_dense(arch, key, dtype, struct)}
    state: dict = {}
    if arch.batchnorm:
        params["bn"] = [_bn_params(h, dtype) for h in arch.hidden]
        state["bn"] = [_bn_state(h, dtype) for h in arch.hidden]
    if "batchnorm" in arch.input_norms:
        params["in_bn"] = _bn_params(arch.num_features, dtype)
        state["in_bn"] = _bn_state(arch.num_features, dtype)
    if "standardize" in arch.input_norms:
        state["norm_mean"], state["norm_std"] = input_stats(x_train)
    if "fourier" in arch.encodings:
        b = fourier_matrix(jax.random.fold_in(key, 1), arch.fourier_features, arch.num_features, dtype,
                           fourier_scale)
        if struct is not None and arch.padded:  # rows past the config's own count are padding
            b = jnp.where(jnp.arange(arch.fourier_features, dtype=jnp.int32)[:, None] < struct.fourier_features, b, 0)
        state["fourier"] = b
    return params, state


def input_stats(x_train) -> tuple[jax.Array, jax.Array]:
    """(mean, std) of input standardisation: per feature, the population std (ddof 0) of the
    training split; a constant feature keeps scale 1."""
    mean = jnp.mean(x_train, axis=0)
    std = jnp.sqrt(jnp.mean((x_train - mean) ** 2, axis=0))
    return mean, jnp.where(std > 0, std, jnp.ones_like(std))


def fourier_matrix(key, fourier_features: int, num_features: int, dtype, scale=1.0) -> jax.Array:
    """The fixed Fourier matrix B [fourier_features, num_features] ~ N(0, scale^2)."""
    b = jax.random.normal(key, (fourier_features, num_features), dtype)
    return b * jnp.asarray(scale, dtype)


def n_weights(arch: Arch) -> int:
    """Weights and biases of the (padded) dense layers, the unit of the cost and memory models."""
    w = arch.widths
    return sum(i * o + o for i, o in zip(w[:-1], w[1:]))


def slot_shapes(arch: Arch) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each dense slot of the padded network: the hidden layers, then the output
    layer in slot `depth`."""
    return list(zip(arch.widths[:-1], arch.widths[1:]))


def _fused_dense(arch: Arch, key, dtype, s: Struct) -> list[dict]:
    """The dense layers of one network in a fused Arch. The config alone draws its `total` numbers
    in one draw and cuts them layer by layer (w then b); here one draw of the Arch's largest total
    is made (its first `total` numbers are the config's own draw) and each weight gathered from the
    config's own flat position, so real units get bitwise the values they get alone."""
    D = arch.depth
    pads = slot_shapes(arch)
    total_max = sum(o * i + o for i, o in pads)
    families = sorted({"uniform" if k in ("torch", "glorot_uniform") else "normal" for k in arch.inits})
    draws = {}
    if "uniform" in families:
        draws["uniform"] = jax.random.uniform(key, (total_max,), dtype, -1.0, 1.0)
    if "normal" in families:
        draws["normal"] = jax.random.normal(key, (total_max,), dtype)
    with_bias = choose(s.init, arch.inits, {k: (lambda k=k: jnp.asarray(k == "torch")) for k in arch.inits})
    if len(draws) == 1:
        z = next(iter(draws.values()))
    else:
        z = choose(s.init, arch.inits, {k: (lambda k=k: draws["uniform" if k in ("torch", "glorot_uniform")
                                                              else "normal"]) for k in arch.inits})
    active = jnp.concatenate([jnp.arange(D, dtype=jnp.int32) < s.depth, jnp.ones((1,), bool)])
    sizes = jnp.where(active, s.fan_out * s.fan_in + jnp.where(with_bias, s.fan_out, 0), 0)
    offsets = jnp.cumsum(sizes) - sizes
    out = []
    for slot, (wi, wo) in enumerate(pads):
        fi, fo = s.fan_in[slot], s.fan_out[slot]
        rows = jnp.arange(wo, dtype=jnp.int32)[:, None]
        if slot == 0:
            cols = s.col0[None, :]
        else:
            cols = jnp.arange(wi, dtype=jnp.int32)[None, :]
            cols = jnp.where(cols < fi, cols, -1)
        ok = active[slot] & (rows < fo) & (cols >= 0)
        idx = jnp.where(ok, offsets[slot] + rows * fi + cols, 0)
        w = jnp.where(ok, z[idx] * s.scale[slot], 0)
        bok = active[slot] & (jnp.arange(wo, dtype=jnp.int32) < fo) & with_bias
        bidx = jnp.where(bok, offsets[slot] + fo * fi + jnp.arange(wo, dtype=jnp.int32), 0)
        b = jnp.where(bok, z[bidx] * s.scale[slot], 0)
        out.append({"w": w.astype(dtype), "b": b.astype(dtype)})
    return out


def dense_masks(arch: Arch, s: Struct) -> list[dict]:
    """1 where a dense slot's weight or bias belongs to the config's own network, else 0 (bool)."""
    D = arch.depth
    pads = slot_shapes(arch)
    active = jnp.concatenate([jnp.arange(D, dtype=jnp.int32) < s.depth, jnp.ones((1,), bool)])
    out = []
    for slot, (wi, wo) in enumerate(pads):
        fo = s.fan_out[slot]
        rows = jnp.arange(wo, dtype=jnp.int32) < fo
        if slot == 0:
            cols = s.col0 >= 0
        else:
            cols = jnp.arange(wi, dtype=jnp.int32) < s.fan_in[slot]
        out.append({"w": active[slot] & rows[:, None] & cols[None, :], "b": active[slot] & rows})
    return out


def _bn_params(n, dtype):
    return {"weight": jnp.ones((n,), dtype), "bias": jnp.zeros((n,), dtype)}


def _bn_state(n, dtype):
    return {"mean": jnp.zeros((n,), dtype), "var": jnp.ones((n,), dtype)}


# ----------------------------------------------------------------------------- own <-> padded layout


def _slots(c, arch: Arch) -> list[int]:
    d = len(c.hidden)
    return list(range(d)) + [arch.depth]


def pad_tree(arch: Arch, c, params: dict, state: dict, dtype) -> tuple[dict, dict]:
    """Config `c`'s own (params, state) placed into `arch`'s padded layout (numpy; slots it does not
    use, and state it does not give, hold the values a fresh network of the Arch would: zeros,
    BatchNorm ones and zeros)."""
    state = state or {}
    pads = slot_shapes(arch)
    dense = [{"w": np.zeros((wo, wi), dtype), "b": np.zeros((wo,), dtype)} for wi, wo in pads]
    cols0 = _col_map(arch, c, arch.num_features)
    for layer, slot in enumerate(_slots(c, arch)):
        w = np.asarray(params["dense"][layer]["w"], dtype)
        b = np.asarray(params["dense"][layer]["b"], dtype)
        cols = cols0 if layer == 0 else np.arange(w.shape[1])
        dense[slot]["w"][np.ix_(np.arange(w.shape[0]), cols)] = w
        dense[slot]["b"][: b.shape[0]] = b
    p: dict = {"dense": dense}
    s: dict = {}
    if arch.batchnorm:
        p["bn"] = [{"weight": np.ones(h, dtype), "bias": np.zeros(h, dtype)} for h in arch.hidden]
        s["bn"] = [{"mean": np.zeros(h, dtype), "var": np.ones(h, dtype)} for h in arch.hidden]
        if c.batchnorm:
            for i, h in enumerate(c.hidden):
                for k in ("weight", "bias"):
                    p["bn"][i][k][:h] = np.asarray(params["bn"][i][k], dtype)
                if "bn" in state:
                    for k in ("mean", "var"):
                        s["bn"][i][k][:h] = np.asarray(state["bn"][i][k], dtype)
    F = arch.num_features
    if "batchnorm" in arch.input_norms:
        p["in_bn"] = {k: np.asarray(params["in_bn"][k], dtype) for k in ("weight", "bias")} \
            if c.input_norm == "batchnorm" else {"weight": np.ones(F, dtype), "bias": np.zeros(F, dtype)}
        s["in_bn"] = {k: np.asarray(state["in_bn"][k], dtype) for k in ("mean", "var")} \
            if c.input_norm == "batchnorm" and "in_bn" in state else {"mean": np.zeros(F, dtype), "var": np.ones(F, dtype)}
    if "standardize" in arch.input_norms:
        if c.input_norm == "standardize" and "norm_mean" in state:
            s["norm_mean"] = np.asarray(state["norm_mean"], dtype)
            s["norm_std"] = np.asarray(state["norm_std"], dtype)
        else:
            s["norm_mean"], s["norm_std"] = np.zeros(F, dtype), np.ones(F, dtype)
    if "fourier" in arch.encodings:
        s["fourier"] = np.zeros((arch.fourier_features, F), dtype)
        if c.encoding == "fourier" and "fourier" in state:
            b = np.asarray(state["fourier"], dtype)
            s["fourier"][: b.shape[0]] = b
    return p, s


def unpad_tree(arch: Arch, c, params: dict, state: dict) -> tuple[dict, dict]:
    """Config `c`'s own (params, state) cut out of `arch`'s padded layout (numpy)."""
    own = own_widths(c, arch.num_features, arch.num_outputs)
    cols0 = _col_map(arch, c, arch.num_features)
    dense = []
    for layer, slot in enumerate(_slots(c, arch)):
        w = np.asarray(params["dense"][slot]["w"])
        b = np.asarray(params["dense"][slot]["b"])
        cols = cols0 if layer == 0 else np.arange(own[layer])
        dense.append({"w": w[: own[layer + 1]][:, cols], "b": b[: own[layer + 1]]})
    p: dict = {"dense": dense}
    s: dict = {}
    if c.batchnorm:
        p["bn"] = [{k: np.asarray(params["bn"][i][k])[:h] for k in ("weight", "bias")} for i, h in enumerate(c.hidden)]
        s["bn"] = [{k: np.asarray(state["bn"][i][k])[:h] for k in ("mean", "var")} for i, h in enumerate(c.hidden)]
    if c.input_norm == "batchnorm":
        p["in_bn"] = {k: np.asarray(params["in_bn"][k]) for k in ("weight", "bias")}
        s["in_bn"] = {k: np.asarray(state["in_bn"][k]) for k in ("mean", "var")}
    if c.input_norm == "standardize":
        s["norm_mean"], s["norm_std"] = np.asarray(state["norm_mean"]), np.asarray(state["norm_std"])
    if c.encoding == "fourier":
        s["fourier"] = np.asarray(state["fourier"])[: c.fourier_features]
    return p, s


# ----------------------------------------------------------------------------- forward


def linear(x, w, b):
    """nn.Linear: x [B, in] -> x @ w.T + b, w [out, in]."""
    return x @ w.T + b


def standardize(x, mean, std):
    """Input standardisation with fixed statistics (`input_stats`)."""
    return (x - mean) / std


def fourier_encode(x, b):
    """Random Fourier features: x -> [sin(2 pi x B^T), cos(2 pi x B^T)]."""
    z = (2 * math.pi) * (x @ b.T)
    return jnp.concatenate([jnp.sin(z), jnp.cos(z)], axis=-1)


def batchnorm(x, p, s, mask, train: bool, *, momentum: float = BN_MOMENTUM, eps: float = BN_EPS):
    """nn.BatchNorm1d: normalise with the batch's biased variance in training and update the running
    statistics with momentum 0.1 and the UNBIASED variance; use the running statistics in eval.
    `mask` [B] marks real rows: padded rows take no part in the statistics."""
    if not train:
        inv = jax.lax.rsqrt(s["var"] + eps)
        return (x - s["mean"]) * inv * p["weight"] + p["bias"], s
    m = mask[:, None].astype(x.dtype)
    n = jnp.sum(m)
    mean = jnp.sum(x * m, axis=0) / n
    var = jnp.sum(((x - mean) * m) ** 2, axis=0) / n
    unbiased = var * n / jnp.maximum(n - 1, 1)
    new_s = {"mean": (1 - momentum) * s["mean"] + momentum * mean,
             "var": (1 - momentum) * s["var"] + momentum * unbiased}
    y = (x - mean) * jax.lax.rsqrt(var + eps) * p["weight"] + p["bias"]
    return y, new_s


def dropout_keep(key, keep, batch: int, own_width, width: int):
    """nn.Dropout's Bernoulli(keep) mask [batch, width] of one hidden layer: a standard uniform draw of
    [batch, own_width] compared with `keep` (`jax.random.bernoulli`'s own rule). In a padded layer the
    config's own width is a traced number: the draw is made flat at the padded size and each unit
    gathered from its own row-major position, giving the same mask as the unpadded draw."""
    if isinstance(own_width, int) and own_width == width:
        return jax.random.uniform(key, (batch, width), jnp.result_type(keep)) < keep
    u = jax.random.uniform(key, (batch * width,), jnp.result_type(keep))
    cols = jnp.arange(width, dtype=jnp.int32)[None, :]
    idx = jnp.where(cols < own_width, jnp.arange(batch, dtype=jnp.int32)[:, None] * own_width + cols, 0)
    return u[idx] < keep


def dropout(h, rate, key=None, *, keep_mask=None, own_width=None):
    """nn.Dropout in training: h * (mask / (1 - rate)), the Bernoulli(1 - rate) mask [B, width]
    drawn from `key` (`dropout_keep`; `own_width`: a padded layer's own width) unless `keep_mask`
    (0/1) is given. `rate` may be a traced array (no Python branch on it); rate 0 keeps everything."""
    keep = 1 - rate
    if keep_mask is None:
        width = h.shape[-1]
        keep_mask = dropout_keep(key, keep, h.shape[0], width if own_width is None else own_width, width)
    return h * (keep_mask.astype(h.dtype) / keep)


def apply(arch: Arch, params: dict, state: dict, x, *, train: bool, mask=None,
          dropout_rate=None, dropout_key=None, struct: Struct | None = None, dropout_masks=None,
          trace: dict | None = None):
    """Forward pass of one network on a batch x [B, F] -> (outputs [B, K], new state).

    `trace`, a dict, receives the intermediates (the one forward pass the diagnostics read too):
    "pre" (each hidden layer's z after its BatchNorm, before the activation), "hidden" (each
    activation) and "logits" (the output layer's pre-activation).

    In training, `mask` [B] marks the real rows of a padded batch (BatchNorm statistics use only
    those) and dropout draws a Bernoulli(1 - p) mask per hidden layer from `dropout_key`, scaled by
    1 / (1 - p), as nn.Dropout does; `dropout_masks` [n_hidden, B, width] (0/1), when given, replaces
    the draw (a replay of PyTorch's own masks). In eval, dropout is off and BatchNorm uses running
    statistics. `struct`: the network's place in a fused Arch (None for a plain one).
    """
    s = struct
    if arch.fused and s is None:
        raise ValueError("a fused Arch needs each network's Struct")
    if mask is None:
        mask = jnp.ones(x.shape[:1], bool)
    new_state = dict(state)

    norms = {
        "none": lambda x: (x, state.get("in_bn")),
        "standardize": lambda x: (standardize(x, state["norm_mean"], state["norm_std"]), state.get("in_bn")),
        "batchnorm": lambda x: batchnorm(x, params["in_bn"], state["in_bn"], mask, train),
    }
    x, in_bn = choose(None if s is None else s.input_norm, arch.input_norms, norms, x, name="input_norm")
    if "batchnorm" in arch.input_norms:
        new_state["in_bn"] = in_bn

    def fourier(x):
        e = fourier_encode(x, state["fourier"])
        return e if e.shape[-1] == fin else jnp.pad(e, ((0, 0), (0, fin - e.shape[-1])))

    fin = arch.encoded_features
    encs = {"fourier": fourier,
            "identity": lambda x: x if x.shape[-1] == fin else jnp.pad(x, ((0, 0), (0, fin - x.shape[-1])))}
    x = choose(None if s is None else s.encoding, arch.encodings, encs, x, name="encoding")
    if s is not None and "fourier" in arch.encodings and (arch.padded or len(arch.encodings) > 1):
        x = jnp.where(s.col0 >= 0, x, 0)  # padded sin/cos features (cos 0 = 1) are exact zeros

    acts = {k: ACTIVATIONS[k] for k in arch.activations}
    dense = params["dense"]
    bn_states = []
    for i, width in enumerate(arch.hidden):
        h = linear(x, dense[i]["w"], dense[i]["b"])
        if arch.batchnorm:
            hb, bs = batchnorm(h, params["bn"][i], state["bn"][i], mask, train)
            if s is None:
                h = hb
            else:
                h, bs = jnp.where(s.batchnorm, hb, h), select(s.batchnorm, bs, state["bn"][i])
            bn_states.append(bs)
        if trace is not None:
            trace.setdefault("pre", []).append(h)
        h = choose(None if s is None else s.activation, arch.activations, acts, h, name="activation")
        if trace is not None:
            trace.setdefault("hidden", []).append(h)
        if arch.use_dropout and train:
            if dropout_masks is not None:  # given masks are padded to the widest layer
                h = dropout(h, dropout_rate, keep_mask=dropout_masks[i][:, :width])
            else:
                own = width if s is None or not arch.padded else s.widths[i]
                h = dropout(h, dropout_rate, jax.random.fold_in(dropout_key, i), own_width=own)
        if s is not None and arch.padded:
            h = jnp.where(jnp.arange(width, dtype=jnp.int32) < s.widths[i], h, 0)  # padded units: exact zeros
        # a shallower network passes its input through this layer unchanged
        x = h if s is None or i < min(arch.depths or (arch.depth,)) else jnp.where(i < s.depth, h, x)
    if arch.batchnorm:
        new_state["bn"] = bn_states
    x = linear(x, dense[-1]["w"], dense[-1]["b"])
    if trace is not None:
        trace["logits"] = x
        trace.setdefault("pre", [])
        trace.setdefault("hidden", [])
    return choose(None if s is None else s.output, arch.outputs, OUTPUTS, x, name="output"), new_state

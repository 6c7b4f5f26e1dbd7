"""Configurations: one frozen, validated dataclass per trained network.

A `Config` is plain data. It splits in two:

* `jaxfit.program.train.static_key(config)` -> its `jaxfit.program.train.ProgramSpec`: what fixes the shapes and the traced
  program (widths, activation, loss, optimiser kind, batch size, epochs, dtype...). Configs with
  equal keys share one compiled program; the planner (jaxfit.engine.plan) may fuse different ones.
* `hparams(configs)` -> `HParams`: a NamedTuple of arrays, one entry per config, for every number
  `vmap` batches (learning rate, momentum, betas, eps, weight decay, dropout rate, Fourier scale,
  seed...). Changing these never recompiles.

The learning-rate schedule is not part of the program at all: it is a per-epoch table computed on
the host in float64 the way `torch.optim.lr_scheduler` computes it (`jaxfit.nn.optim.lr_table`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
from .errors import UserError

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "sigmoid", "softplus", "sin", "identity")
OUTPUTS = ("logits", "softmax", "sigmoid")
INITS = ("torch", "lecun_normal", "he_normal", "glorot_uniform")
INPUT_NORMS = ("none", "standardize", "batchnorm")
ENCODINGS = ("identity", "fourier")
LOSSES = ("cross_entropy", "bce", "bce_with_logits", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "exponential", "cosine")
DTYPES = ("float32", "float64")

# Which numeric fields each choice reads. A field a config does not read is reset to its default
# by `Config.canonical()`, so grids do not produce duplicates that differ only in ignored values.
OPTIMIZER_FIELDS = {
    "sgd": ("momentum", "nesterov", "weight_decay"),
    "adam": ("betas", "eps", "weight_decay"),
    "adamw": ("betas", "eps", "weight_decay"),
    "rmsprop": ("momentum", "eps", "weight_decay"),
}
SCHEDULE_FIELDS = {
    "constant": (),
    "step": ("step_size", "gamma"),
    "exponential": ("gamma",),
    "cosine": ("t_max", "eta_min"),
}
# PyTorch's default weight decay per optimiser (used when weight_decay is None).
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2, "rmsprop": 0.0}
ONE_UNIT_LOSSES = ("bce", "bce_with_logits")


@dataclass(frozen=True)
class Config:
    """One network and how to train it. Field names follow PyTorch where PyTorch has one."""

    # --- architecture
    hidden: tuple[int, ...] = (32, 32)  # hidden widths; () is a linear model
    activation: str = "relu"  # after each hidden linear layer; one of ACTIVATIONS
    output: str = "logits"  # applied after the last layer: logits (none), softmax, sigmoid
    init: str = "torch"  # torch = nn.Linear's default U(+-1/sqrt(fan_in)) for W and b
    input_norm: str = "none"  # none | standardize (train-split stats, ddof 0) | batchnorm (BatchNorm1d)
    batchnorm: bool = False  # BatchNorm1d after each hidden linear layer (before the activation)
    dropout: float = 0.0  # dropout rate after each hidden activation
    encoding: str = "identity"  # identity | fourier: x -> [sin(2 pi B x), cos(2 pi B x)]
    fourier_features: int = 16  # rows of B (the encoding has 2 * fourier_features outputs)
    fourier_scale: float = 1.0  # B ~ N(0, fourier_scale^2), drawn once from the seed, not trained
    # --- training
    loss: str = "cross_entropy"  # cross_entropy | bce | bce_with_logits | mse (on one-hot targets)
    optimizer: str = "adam"  # sgd | adam | adamw | rmsprop
    lr: float = 1e-3
    momentum: float = 0.0  # sgd, rmsprop
    nesterov: bool = False  # sgd
    weight_decay: float | None = None  # None = PyTorch's default (1e-2 for adamw, else 0)
    betas: tuple[float, float] = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8  # adam, adamw, rmsprop (PyTorch's RMSprop alpha is fixed at 0.99)
    schedule: str = "constant"  # per-epoch, as torch.optim.lr_scheduler: constant|step|exponential|cosine
    step_size: int = 10  # step: lr * gamma ** (epoch // step_size)
    gamma: float = 0.1  # step, exponential
    t_max: int | None = None  # cosine: period; None = epochs
    eta_min: float = 0.0  # cosine: floor
    batch_size: int = 32  # 0 = full batch
    epochs: int = 20
    shuffle: bool = True  # reshuffle the training set every epoch (from the seed)
    seed: int = 0  # every random stream of this config (init, shuffle, dropout, Fourier) derives from it
    dtype: str = "float32"  # float32 | float64

    def __post_init__(self):
        # Normalise convenient spellings before validating: lists -> tuples, numpy scalars -> Python.
        if isinstance(self.hidden, (list, np.ndarray)):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if isinstance(self.hidden, numbers.Integral) and not isinstance(self.hidden, bool):
            object.__setattr__(self, "hidden", (int(self.hidden),))
        if isinstance(self.hidden, tuple):
            object.__setattr__(self, "hidden", tuple(int(h) if _is_int(h) else h for h in self.hidden))
        if isinstance(self.betas, (list, np.ndarray)):
            object.__setattr__(self, "betas", tuple(self.betas))
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.generic):
                object.__setattr__(self, f.name, v.item())
        if isinstance(self.betas, tuple):
            object.__setattr__(self, "betas", tuple(float(b) if _is_real(b) else b for b in self.betas))
        _validate(self)

    # -- derived values (never written back)
    @property
    def effective_weight_decay(self) -> float:
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else float(self.weight_decay)

    @property
    def effective_t_max(self) -> int:
        return self.epochs if self.t_max is None else int(self.t_max)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def canonical(self) -> "Config":
        """The same training run with every field it does not read reset to the default."""
        defaults = Config()
        changes: dict[str, Any] = {}
        used = set(OPTIMIZER_FIELDS[self.optimizer]) | set(SCHEDULE_FIELDS[self.schedule])
        for name in ("momentum", "nesterov", "betas", "eps", "step_size", "gamma", "t_max", "eta_min"):
            if name not in used:
                changes[name] = getattr(defaults, name)
        if self.weight_decay is not None and self.weight_decay == DEFAULT_WEIGHT_DECAY[self.optimizer]:
            changes["weight_decay"] = None
        if self.encoding != "fourier":
            changes["fourier_features"] = defaults.fourier_features
            changes["fourier_scale"] = defaults.fourier_scale
        if self.schedule == "cosine" and self.t_max == self.epochs:
            changes["t_max"] = None
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        unknown = set(d) - FIELD_NAMES
        if unknown:
            raise UserError(f"Config: unknown field(s) {sorted(unknown)}; the fields are {sorted(FIELD_NAMES)}")
        d = dict(d)
        for name in ("hidden", "betas"):  # JSON gives lists; anything else is left for validation
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        return cls(**d)

    def short(self) -> str:
        """A one-line label for tables and plots."""
        h = "x".join(map(str, self.hidden)) or "linear"
        parts = [h, self.activation, self.optimizer, f"lr={self.lr:g}"]
        if self.optimizer in ("sgd", "rmsprop") and self.momentum:
            parts.append(f"mom={self.momentum:g}")
        if self.batch_size != 32:
            parts.append(f"bs={self.batch_size}")
        if self.input_norm != "none":
            parts.append(self.input_norm)
        if self.dropout:
            parts.append(f"drop={self.dropout:g}")
        parts.append(f"seed={self.seed}")
        return " ".join(parts)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _fail(name: str, value: Any, allowed: str) -> None:
    raise UserError(f"Config.{name}={value!r} is invalid: {allowed}")


def _choice(cfg: Config, name: str, options: Sequence[str]) -> None:
    v = getattr(cfg, name)
    if not isinstance(v, str) or v not in options:
        _fail(name, v, f"allowed values are {', '.join(options)}")


def _real(cfg: Config, name: str, lo: float | None = None, hi: float | None = None, *,
          lo_open: bool = False, hi_open: bool = False) -> None:
    v = getattr(cfg, name)
    if not _is_real(v) or not math.isfinite(float(v)):
        _fail(name, v, "must be a finite number")
    v = float(v)
    bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
        hi is not None and (v > hi or (hi_open and v == hi)))
    if bad:
        lb = "(" if lo_open or lo is None else "["
        rb = ")" if hi_open or hi is None else "]"
        _fail(name, v, f"must lie in {lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}")


def _integer(cfg: Config, name: str, lo: int) -> None:
    v = getattr(cfg, name)
    if not _is_int(v) or v < lo:
        _fail(name, v, f"must be an integer >= {lo}")


def _boolean(cfg: Config, name: str) -> None:
    v = getattr(cfg, name)
    if not isinstance(v, (bool, np.bool_)):
        _fail(name, v, "must be True or False")


def _validate(c: Config) -> None:
    # architecture
    if not isinstance(c.hidden, tuple) or not all(_is_int(h) and h >= 1 for h in c.hidden):
        _fail("hidden", c.hidden, "must be a tuple of positive integer widths (() for a linear model)")
    _choice(c, "activation", ACTIVATIONS)
    _choice(c, "output", OUTPUTS)
    _choice(c, "init", INITS)
    _choice(c, "input_norm", INPUT_NORMS)
    _boolean(c, "batchnorm")
    _real(c, "dropout", 0.0, 1.0, hi_open=True)
    _choice(c, "encoding", ENCODINGS)
    _integer(c, "fourier_features", 1)
    _real(c, "fourier_scale", 0.0, lo_open=True)
    # training
    _choice(c, "loss", LOSSES)
    _choice(c, "optimizer", OPTIMIZERS)
    _real(c, "lr", 0.0, lo_open=True)
    _real(c, "momentum", 0.0, 1.0, hi_open=True)
    _boolean(c, "nesterov")
    if c.weight_decay is not None:
        _real(c, "weight_decay", 0.0)
    if not (isinstance(c.betas, tuple) and len(c.betas) == 2 and all(_is_real(b) for b in c.betas)
            and all(0.0 <= b < 1.0 for b in c.betas)):
        _fail("betas", c.betas, "must be a pair (beta1, beta2) with 0 <= beta < 1")
    _real(c, "eps", 0.0)
    _choice(c, "schedule", SCHEDULES)
    _integer(c, "step_size", 1)
    _real(c, "gamma", 0.0, lo_open=True)
    if c.t_max is not None:
        _integer(c, "t_max", 1)
    _real(c, "eta_min", 0.0)
    _integer(c, "batch_size", 0)
    _integer(c, "epochs", 1)
    _boolean(c, "shuffle")
    if not _is_int(c.seed) or not (0 <= c.seed < 2**32):
        _fail("seed", c.seed, "must be an integer in [0, 2**32)")
    _choice(c, "dtype", DTYPES)

    # combinations that cannot work
    if c.loss == "bce" and c.output != "sigmoid":
        _fail("output", c.output, "loss='bce' (PyTorch's BCELoss) needs probabilities: use output='sigmoid', "
              "or loss='bce_with_logits' with output='logits'")
    if c.loss in ONE_UNIT_LOSSES and c.output == "softmax":
        _fail("output", c.output, f"loss={c.loss!r} uses one output unit, and a softmax over one unit is "
              "always 1: use output='logits' or 'sigmoid'")
    if c.nesterov and not (c.optimizer == "sgd" and c.momentum > 0):
        _fail("nesterov", c.nesterov, "Nesterov momentum needs optimizer='sgd' and momentum > 0 (as torch.optim.SGD)")
    if c.batch_size == 1 and (c.batchnorm or c.input_norm == "batchnorm"):
        _fail("batch_size", c.batch_size, "batch norm in training needs more than 1 value per channel "
              "(PyTorch raises): use batch_size >= 2 or 0 (full batch), or batchnorm=False / input_norm!='batchnorm'")
    if c.dropout > 0 and not c.hidden:
        _fail("dropout", c.dropout, "dropout acts after hidden activations and a linear model (hidden=()) has none")
    if c.batchnorm and not c.hidden:
        _fail("batchnorm", c.batchnorm, "batchnorm acts after hidden layers and a linear model (hidden=()) has none")


# ----------------------------------------------------------------------------- static / dynamic


class HParams(NamedTuple):
    """The numbers vmap batches: each field an array with a leading config axis [n_configs]."""

    momentum: Any  # [n] float
    weight_decay: Any  # [n] float, PyTorch default resolved
    beta1: Any  # [n] float
    beta2: Any  # [n] float
    one_minus_beta1: Any  # [n] float, 1 - beta1 computed in float64 then rounded once, as torch does
    one_minus_beta2: Any  # [n] float
    log_beta1: Any  # [n] float, log(beta1) computed in float64 (Adam bias correction via expm1)
    log_beta2: Any  # [n] float
    eps: Any  # [n] float
    dropout: Any  # [n] float
    fourier_scale: Any  # [n] float
    seed: Any  # [n] uint32


def hparams(configs: Sequence[Config], dtype: str | None = None) -> HParams:
    """Stack the numeric fields of `configs` into arrays (NumPy, host side)."""
    dtype = dtype or configs[0].dtype
    f = lambda vals: np.asarray(vals, dtype=np.float64).astype(dtype)
    b1 = np.array([c.betas[0] for c in configs], np.float64)
    b2 = np.array([c.betas[1] for c in configs], np.float64)
    with np.errstate(divide="ignore"):
        lb1, lb2 = np.log(b1), np.log(b2)  # beta = 0 -> -inf -> bias correction 1, as torch
    return HParams(
        momentum=f([c.momentum for c in configs]),
        weight_decay=f([c.effective_weight_decay for c in configs]),
        beta1=b1.astype(dtype), beta2=b2.astype(dtype),
        one_minus_beta1=(1 - b1).astype(dtype), one_minus_beta2=(1 - b2).astype(dtype),
        log_beta1=lb1.astype(dtype), log_beta2=lb2.astype(dtype),
        eps=f([c.eps for c in configs]),
        dropout=f([c.dropout for c in configs]),
        fourier_scale=f([c.fourier_scale for c in configs]),
        seed=np.array([c.seed for c in configs], dtype=np.uint32),
    )


# ----------------------------------------------------------------------------- grids and samples


def _is_axis(v: Any) -> bool:
    return isinstance(v, (list, range)) or (isinstance(v, tuple) and not _tuple_is_value(v))


def _tuple_is_value(v: tuple) -> bool:
    # A tuple of numbers is a value (hidden=(64, 64), betas=(0.9, 0.999)), not an axis. To sweep
    # over widths pass a list of tuples: hidden=[(16,), (64, 64)].
    return all(_is_real(x) for x in v)


def _check_fields(names: Iterable[str], where: str) -> None:
    import difflib

    unknown = sorted(set(names) - FIELD_NAMES)
    if unknown:
        near = {u: difflib.get_close_matches(u, sorted(FIELD_NAMES), n=1) for u in unknown}
        hint = "; ".join(f"{u!r}: did you mean {m[0]!r}?" for u, m in near.items() if m)
        raise UserError(f"{where}: unknown field(s) {unknown}{' (' + hint + ')' if hint else ''}; "
                         f"the fields are {sorted(FIELD_NAMES)}")


def _check_hidden_axis(v: Any, where: str) -> Any:
    """An axis of `hidden` must list whole width tuples: a flat list of ints is ambiguous (one net of
    several layers, or several one-layer nets?) and is refused. Lists inside (from TOML) become tuples."""
    if isinstance(v, range) or (isinstance(v, list) and any(_is_int(x) for x in v)):
        shown = list(v)
        raise UserError(
            f"{where}: hidden={shown} is ambiguous: a flat list of integers is refused. For ONE network with "
            f"these layers write hidden={tuple(shown)} in Python (TOML: hidden = [{shown}]); for one "
            f"one-layer network per width write hidden={[(x,) for x in shown]} (TOML: hidden = "
            f"{[[x] for x in shown]})")
    if isinstance(v, list):
        return [tuple(x) if isinstance(x, list) else x for x in v]
    return v


def _drop_unused(d: dict[str, Any]) -> dict[str, Any]:
    """Drop the fields the chosen optimiser, schedule and encoding do not read, so a grid over
    optimizer x momentum does not trip the checks that only concern SGD (nesterov, say)."""
    opt = d.get("optimizer", Config.optimizer)
    sched = d.get("schedule", Config.schedule)
    if opt not in OPTIMIZER_FIELDS or sched not in SCHEDULE_FIELDS:
        return d  # let Config name the bad value
    used = set(OPTIMIZER_FIELDS[opt]) | set(SCHEDULE_FIELDS[sched])
    optional = {"momentum", "nesterov", "betas", "eps", "step_size", "gamma", "t_max", "eta_min"}
    if d.get("encoding", Config.encoding) != "fourier":
        optional |= {"fourier_features", "fourier_scale"}
    if opt == "sgd" and d.get("momentum", Config.momentum) == 0:
        used.discard("nesterov")  # plain SGD: Nesterov has no momentum to look ahead with
    return {k: v for k, v in d.items() if k in used or k not in optional}


def _dedupe(configs: Iterable[Config]) -> list[Config]:
    seen: set[Config] = set()
    out = []
    for c in configs:
        c = c.canonical()
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def grid(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None, /, **axes: Any) -> list[Config]:
    """The cartesian product of the given axes as a list of Configs.

    A scalar (or a tuple of numbers such as ``hidden=(64, 64)``) fixes a field; a list, range or
    tuple of non-numbers is an axis. Fields a config does not read (momentum for adam, step_size for
    a constant schedule) stay at their default, and the duplicates this makes are dropped, so
    ``grid(optimizer=["sgd", "adam"], momentum=[0, 0.9])`` gives three configs. Pass a list of dicts
    for conditional sub-grids: ``grid([{"optimizer": "sgd", "lr": [0.1, 0.01]},
    {"optimizer": "adam", "lr": [1e-3]}], seed=range(4))``; keyword axes apply to every sub-grid.
    """
    if spec is None:
        subgrids: list[Mapping[str, Any]] = [{}]
    elif isinstance(spec, Mapping):
        subgrids = [spec]
    else:
        subgrids = list(spec)
        if not subgrids or not all(isinstance(s, Mapping) for s in subgrids):
            raise UserError("grid: the positional argument must be a dict or a non-empty list of dicts")
    out: list[Config] = []
    for sub in subgrids:
        merged = {**axes, **sub}
        _check_fields(merged, "grid")
        if "hidden" in merged:
            merged["hidden"] = _check_hidden_axis(merged["hidden"], "grid")
        names = list(merged)
        values = [list(merged[n]) if _is_axis(merged[n]) else [merged[n]] for n in names]
        for n, v in zip(names, values):
            if not v:
                raise UserError(f"grid: axis {n!r} is empty")
        for combo in itertools.product(*values):
            out.append(Config(**_drop_unused(dict(zip(names, combo)))))
    return _dedupe(out)


class LogUniform(NamedTuple):
    low: float
    high: float


class Uniform(NamedTuple):
    low: float
    high: float


class IntUniform(NamedTuple):
    low: int
    high: int  # inclusive


def log_uniform(low: float, high: float) -> LogUniform:
    if not (0 < low <= high):
        raise UserError(f"log_uniform: need 0 < low <= high, got {low}, {high}")
    return LogUniform(float(low), float(high))


def uniform(low: float, high: float) -> Uniform:
    if not low <= high:
        raise UserError(f"uniform: need low <= high, got {low}, {high}")
    return Uniform(float(low), float(high))


def int_uniform(low: int, high: int) -> IntUniform:
    if not low <= high:
        raise UserError(f"int_uniform: need low <= high, got {low}, {high}")
    return IntUniform(int(low), int(high))


def sample(n: int, *, seed: int = 0, **distributions: Any) -> list[Config]:
    """A random search: `n` configs with each field drawn from its distribution.

    A distribution is `log_uniform(a, b)`, `uniform(a, b)`, `int_uniform(a, b)`, a list of choices
    (drawn uniformly), or a fixed value (a tuple of numbers, such as hidden=(64, 64), is a value, as
    in `grid`). Draws use `numpy.random.default_rng(seed)`, so the
    same call gives the same configs. Duplicates (after resetting unused fields) are dropped, so
    fewer than `n` configs can come back when the space is small.
    """
    if not _is_int(n) or n < 1:
        raise UserError(f"sample: n={n!r} must be a positive integer")
    distributions = check_space(distributions, "sample")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = {}
        for name, dist in distributions.items():
            if isinstance(dist, LogUniform):
                d[name] = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
            elif isinstance(dist, Uniform):
                d[name] = float(rng.uniform(dist.low, dist.high))
            elif isinstance(dist, IntUniform):
                d[name] = int(rng.integers(dist.low, dist.high + 1))
            elif _is_axis(dist):
                choices = list(dist)
                d[name] = choices[int(rng.integers(len(choices)))]
            else:
                d[name] = dist
        out.append(config_of(d))
    return _dedupe(out)


def check_space(distributions: Mapping[str, Any], where: str) -> dict[str, Any]:
    """`distributions` (field -> distribution, list of choices or value) with every name checked
    to be a Config field and a `hidden` axis checked (lists of widths become tuples)."""
    _check_fields(distributions, where)
    out = dict(distributions)
    if "hidden" in out and is_choices(out["hidden"]):
        out["hidden"] = _check_hidden_axis(out["hidden"], where)
    return out


def is_choices(v: Any) -> bool:
    """True where `v` lists choices (a list, a range or a tuple of values), not one value (as `grid`)."""
    return _is_axis(v)


def config_of(values: Mapping[str, Any]) -> Config:
    """A Config of these field values, the fields their optimiser, schedule and encoding do not read
    reset to the defaults (so configs differing only there are equal)."""
    return Config(**_drop_unused(dict(values)))


def configs_sha256(configs: Sequence[Config]) -> str:
    """sha256 of the configs' to_dict JSON, in order."""
    blob = json.dumps([c.to_dict() for c in configs], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()

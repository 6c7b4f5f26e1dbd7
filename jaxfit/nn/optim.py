"""Optimisers and learning-rate schedules whose numbers follow torch.optim.

An optimiser here is a pair of pure functions, `init(params) -> state` and
`step(grads, state, params, lr) -> (params, state)`, built inside the vmapped training function
so each config carries its own (traced) hyperparameters. The learning rate of the current epoch is
passed in: schedules are per-epoch tables computed on the host (`lr_table`), in float64, by the
same recursions `torch.optim.lr_scheduler` uses.

Every kind shares one state layout (`OptState`) so configs of different kinds can share one
compiled program (`step` selects each config's own). All are written out in PyTorch's operation order, with Adam's bias corrections as -expm1(t log beta) (log beta from
float64) so float32 runs do not gain the error of a float32 `1 - beta ** t`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import choice

tmap = jax.tree_util.tree_map


class Optimizer(NamedTuple):
    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any, Any], tuple[Any, Any]]  # (grads, state, params, lr) -> (params, state)


class OptState(NamedTuple):
    """One state for every optimiser kind, so configs of different kinds share a program:
    SGD's momentum buffer, Adam's first moment and RMSprop's momentum buffer are `slot1`; Adam's second
    moment and RMSprop's square average `slot2` (absent when only SGD is present)."""

    count: jax.Array  # [] int32: steps taken
    slot1: Any  # like params
    slot2: Any  # like params, or None


RMSPROP_ALPHA = 0.99  # torch.optim.RMSprop's default smoothing constant
KINDS = ("sgd", "adam", "adamw", "rmsprop")


def slot_count(kinds: Sequence[str]) -> int:
    """Parameter-shaped optimiser slots a program keeps: 1 (SGD's momentum buffer), 2 with any of
    Adam / AdamW / RMSprop (first and second moments; RMSprop's square average and momentum)."""
    return 2 if any(k != "sgd" for k in kinds) else 1


def init_state(kinds: Sequence[str], params) -> OptState:
    z = tmap(jnp.zeros_like, params)
    two = slot_count(kinds) == 2
    return OptState(jnp.zeros([], jnp.int32), z, tmap(jnp.zeros_like, params) if two else None)


def _sgd(hp, nesterov, grads, st: OptState, params, lr):
    """torch.optim.SGD (dampening 0): g += wd * p; buf = mu * buf + g (buf = g at the first step,
    which is what a zero-initialised buffer gives); d = g + mu * buf if nesterov else buf; p -= lr * d.
    The direction is optax's `add_decayed_weights` then `trace` written out, because `nesterov` is a
    per-config flag here (optax.trace takes it as a Python bool)."""
    mu, wd = hp.momentum, hp.weight_decay
    g = tmap(lambda g, p: g + wd * p, grads, params)
    buf = tmap(lambda b, g: g + mu * b, st.slot1, g)
    d = tmap(lambda g, b: jnp.where(nesterov, g + mu * b, b), g, buf)
    return tmap(lambda p, u: p + (-lr) * u, params, d), OptState(st.count + 1, buf, st.slot2)


def _adam(decoupled: bool):
    """torch.optim.Adam (coupled L2: g += wd * p) or AdamW (decoupled: p *= 1 - lr * wd), amsgrad off.

    `1 - beta` comes from the host in float64, rounded once to the run's dtype, as PyTorch's kernels
    receive it: a float32 `1 - float32(0.999)` is 1.3e-5 off (relative) and made float32 runs drift
    11x more than PyTorch's own float32 run (parity_tests/test_trajectory.py). Bias corrections as
    -expm1(t log beta) with log beta from float64."""

    def step(hp, nesterov, grads, st: OptState, params, lr):
        t = st.count + 1
        if decoupled:
            params = tmap(lambda p: p * (1 - lr * hp.weight_decay), params)
        else:
            grads = tmap(lambda g, p: g + hp.weight_decay * p, grads, params)
        mu = tmap(lambda m, g: m + hp.one_minus_beta1 * (g - m), st.slot1, grads)  # torch: lerp_(g, 1 - beta1)
        nu = tmap(lambda v, g: hp.beta2 * v + hp.one_minus_beta2 * (g * g), st.slot2, grads)
        tf = t.astype(hp.log_beta1.dtype)
        bc1 = -jnp.expm1(tf * hp.log_beta1)  # 1 - beta1 ** t
        bc2 = -jnp.expm1(tf * hp.log_beta2)
        step_size = lr / bc1
        bc2_sqrt = jnp.sqrt(bc2)
        new = tmap(lambda p, m, v: p + (-step_size) * (m / (jnp.sqrt(v) / bc2_sqrt + hp.eps)), params, mu, nu)
        return new, OptState(t, mu, nu)

    return step


def _rmsprop(hp, nesterov, grads, st: OptState, params, lr):
    """torch.optim.RMSprop (not centred): g += wd * p; v = alpha v + (1 - alpha) g^2;
    avg = sqrt(v) + eps; buf = mu * buf + g / avg; p -= lr * buf (momentum 0 gives p -= lr g / avg)."""
    grads = tmap(lambda g, p: g + hp.weight_decay * p, grads, params)
    sq = tmap(lambda v, g: RMSPROP_ALPHA * v + (1 - RMSPROP_ALPHA) * (g * g), st.slot2, grads)
    buf = tmap(lambda b, g, v: hp.momentum * b + g / (jnp.sqrt(v) + hp.eps), st.slot1, grads, sq)
    new = tmap(lambda p, b: p + (-lr) * b, params, buf)
    return new, OptState(st.count + 1, buf, sq)


STEPS = {"sgd": _sgd, "adam": _adam(False), "adamw": _adam(True), "rmsprop": _rmsprop}


def step(kinds: Sequence[str], kind, hp, nesterov, grads, state: OptState, params, lr):
    """One optimiser step of the config's own kind (`kind`: index into `kinds`; static when `kinds`
    has one entry, else the block's hint's kind alone, or every kind present computed and the config's own
    selected: `jaxfit.nn.choice`)."""
    if len(kinds) == 1:
        return STEPS[kinds[0]](hp, nesterov, grads, state, params, lr)
    return choice.pick(kind, "optimizer", [STEPS[k] for k in kinds], hp, nesterov, grads, state, params, lr)


def make(kind: str, hp, nesterov: bool = False) -> Optimizer:
    """The optimiser `kind` from one config's (traced) hyperparameters `hp` (config.HParams fields)."""
    if kind not in STEPS:
        raise ValueError(f"unknown optimizer {kind!r}")  # pragma: no cover - Config refuses it first
    return Optimizer(lambda params: init_state((kind,), params),
                     lambda grads, state, params, lr: step((kind,), 0, hp, nesterov, grads, state, params, lr))


# ----------------------------------------------------------------------------- schedules


def lr_table(configs: Sequence, epochs: int | None = None) -> np.ndarray:
    """[n_configs, epochs] float64: the learning rate each epoch's updates use, computed with the
    same recursions as torch.optim.lr_scheduler (StepLR, ExponentialLR, CosineAnnealingLR) stepped
    once per epoch, so the numbers (not only the formula) match PyTorch's."""
    epochs = epochs or max(c.epochs for c in configs)
    out = np.empty((len(configs), epochs), np.float64)
    for i, c in enumerate(configs):
        out[i] = schedule_lrs(c.schedule, float(c.lr), epochs, step_size=c.step_size, gamma=float(c.gamma),
                              t_max=c.effective_t_max, eta_min=float(c.eta_min))
    return out


def schedule_lrs(kind: str, base_lr: float, epochs: int, *, step_size: int = 1, gamma: float = 0.1,
                 t_max: int = 1, eta_min: float = 0.0) -> list[float]:
    lrs = [base_lr]
    lr = base_lr
    for e in range(1, epochs):  # e = scheduler.last_epoch after the e-th scheduler.step()
        if kind == "constant":
            pass
        elif kind == "step":
            if e % step_size == 0:
                lr = lr * gamma
        elif kind == "exponential":
            lr = lr * gamma
        elif kind == "cosine":
            if (e - 1 - t_max) % (2 * t_max) == 0:
                lr = lr + (base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
            else:
                lr = ((1 + math.cos(math.pi * e / t_max)) / (1 + math.cos(math.pi * (e - 1) / t_max))
                      * (lr - eta_min) + eta_min)
        else:  # pragma: no cover
            raise ValueError(f"unknown schedule {kind!r}")
        lrs.append(lr)
    return lrs

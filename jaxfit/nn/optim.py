"""Optimisers and learning-rate schedules whose numbers follow torch.optim.

An optimiser here is a pair of pure functions, `init(params) -> state` and
`step(grads, state, params, lr) -> (params, state)`, built inside the vmapped training function
so each config carries its own (traced) hyperparameters. The learning rate of the current epoch is
passed in: schedules are per-epoch tables computed on the host (`lr_table`), in float64, by the
same recursions `torch.optim.lr_scheduler` uses.

Where Optax's transforms compute exactly what PyTorch does they are used (SGD's coupled weight
decay and momentum trace: `add_decayed_weights` then `trace`); Adam and RMSprop are written out in
PyTorch's operation order, with Adam's bias corrections as -expm1(t log beta) (log beta from
float64) so float32 runs do not gain the error of a float32 `1 - beta ** t`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

tmap = jax.tree_util.tree_map


class Optimizer(NamedTuple):
    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any, Any], tuple[Any, Any]]  # (grads, state, params, lr) -> (params, state)


class AdamState(NamedTuple):
    count: jax.Array  # [] int32: steps taken
    mu: Any  # first moment, like params
    nu: Any  # second moment, like params


class RMSpropState(NamedTuple):
    square_avg: Any  # like params
    momentum_buffer: Any  # like params


def sgd(momentum, weight_decay, nesterov: bool) -> Optimizer:
    """torch.optim.SGD (dampening 0): g += wd * p; buf = mu * buf + g (buf = g at the first step,
    which is what a zero-initialised trace gives); d = g + mu * buf if nesterov else buf; p -= lr * d."""
    direction = optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(momentum, nesterov))

    def step(grads, state, params, lr):
        d, state = direction.update(grads, state, params)
        return tmap(lambda p, u: p + (-lr) * u, params, d), state

    return Optimizer(direction.init, step)


def adam(beta1, beta2, one_minus_beta1, one_minus_beta2, log_beta1, log_beta2, eps, weight_decay,
         decoupled: bool) -> Optimizer:
    """torch.optim.Adam (coupled L2: g += wd * p) or AdamW (decoupled: p *= 1 - lr * wd), amsgrad off.

    `1 - beta` comes from the host in float64, rounded once to the run's dtype, as PyTorch's kernels
    receive it: a float32 `1 - float32(0.999)` is 1.3e-5 off (relative) and made float32 runs drift
    11x more than PyTorch's own float32 run (parity_tests/test_trajectory.py)."""

    def init(params):
        z = tmap(jnp.zeros_like, params)
        return AdamState(jnp.zeros([], jnp.int32), z, tmap(jnp.zeros_like, params))

    def step(grads, state, params, lr):
        t = state.count + 1
        if decoupled:
            params = tmap(lambda p: p * (1 - lr * weight_decay), params)
        else:
            grads = tmap(lambda g, p: g + weight_decay * p, grads, params)
        mu = tmap(lambda m, g: m + one_minus_beta1 * (g - m), state.mu, grads)  # torch: lerp_(g, 1 - beta1)
        nu = tmap(lambda v, g: beta2 * v + one_minus_beta2 * (g * g), state.nu, grads)
        tf = t.astype(log_beta1.dtype)
        bc1 = -jnp.expm1(tf * log_beta1)  # 1 - beta1 ** t
        bc2 = -jnp.expm1(tf * log_beta2)
        step_size = lr / bc1
        bc2_sqrt = jnp.sqrt(bc2)
        new = tmap(lambda p, m, v: p + (-step_size) * (m / (jnp.sqrt(v) / bc2_sqrt + eps)), params, mu, nu)
        return new, AdamState(t, mu, nu)

    return Optimizer(init, step)


RMSPROP_ALPHA = 0.99  # torch.optim.RMSprop's default smoothing constant


def rmsprop(momentum, eps, weight_decay) -> Optimizer:
    """torch.optim.RMSprop (not centred): g += wd * p; v = alpha v + (1 - alpha) g^2;
    avg = sqrt(v) + eps; buf = mu * buf + g / avg; p -= lr * buf (momentum 0 gives p -= lr g / avg)."""

    def init(params):
        return RMSpropState(tmap(jnp.zeros_like, params), tmap(jnp.zeros_like, params))

    def step(grads, state, params, lr):
        grads = tmap(lambda g, p: g + weight_decay * p, grads, params)
        sq = tmap(lambda v, g: RMSPROP_ALPHA * v + (1 - RMSPROP_ALPHA) * (g * g), state.square_avg, grads)
        buf = tmap(lambda b, g, v: momentum * b + g / (jnp.sqrt(v) + eps), state.momentum_buffer, grads, sq)
        new = tmap(lambda p, b: p + (-lr) * b, params, buf)
        return new, RMSpropState(sq, buf)

    return Optimizer(init, step)


def make(kind: str, hp, nesterov: bool = False) -> Optimizer:
    """The optimiser `kind` from one config's (traced) hyperparameters `hp` (config.HParams fields)."""
    if kind == "sgd":
        return sgd(hp.momentum, hp.weight_decay, nesterov)
    if kind in ("adam", "adamw"):
        return adam(hp.beta1, hp.beta2, hp.one_minus_beta1, hp.one_minus_beta2, hp.log_beta1, hp.log_beta2,
                    hp.eps, hp.weight_decay,
                    decoupled=kind == "adamw")
    if kind == "rmsprop":
        return rmsprop(hp.momentum, hp.eps, hp.weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}")  # pragma: no cover - Config refuses it first


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

"""Per-example losses with PyTorch's semantics, and masked means for padded batches.

Each function maps the network's output `o` [B, K] and integer labels `y` [B] to a per-example
loss [B]; `masked_mean` divides by the true number of examples, so a padded last batch gives the
mean PyTorch computes over the real ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# nn.BCELoss's CPU kernels (aten/src/ATen/native/Loss.cpp, binary_cross_entropy_out_cpu and
# binary_cross_entropy_backward_out_cpu) in every dtype:
#   forward   (t - 1) * max(log1p(-p), scalar_t(-100)) - t * max(log(p), scalar_t(-100))
#   backward  g * (p - t) / max((1 - p) * p, scalar_t(EPSILON)),  with  `constexpr float EPSILON = 1e-12;`
# EPSILON is a float, so even a float64 kernel clamps at the float32 value of 1e-12,
# 9.999999960041972e-13, not at the double 1e-12 (where the clamp bites, the double would make the
# gradient 4.0e-9 smaller, relatively). -100 is exact in every dtype. Module level and read at
# trace time, so a test can patch it (and clear jaxfit.engine's compiled programs).
BCE_GRAD_EPS = float(np.float32(1e-12))
BCE_LOG_CLAMP = -100.0


def cross_entropy(o, y):
    """nn.CrossEntropyLoss on whatever the network outputs (logits, or softmax: the double softmax)."""
    logp = jax.nn.log_softmax(o, axis=-1)
    return -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]


@jax.custom_vjp
def _bce_prob(p, t):
    # nn.BCELoss clamps each log at -100 ...
    logp = jnp.maximum(jnp.log(p), BCE_LOG_CLAMP)
    log1mp = jnp.maximum(jnp.log1p(-p), BCE_LOG_CLAMP)
    return -(t * logp + (1 - t) * log1mp)


def _bce_fwd(p, t):
    return _bce_prob(p, t), (p, t)


def _bce_bwd(res, g):
    # ... and its backward is (p - t) / max(p (1 - p), BCE_GRAD_EPS): not the derivative of the
    # clamped forward (which would be 0 or NaN where the clamp bites). This is what makes a saturated
    # sigmoid net trainable with BCELoss. BCE_GRAD_EPS is float32(1e-12), cast to p's dtype, as the
    # kernel's scalar_t(EPSILON) (see above).
    p, t = res
    eps = jnp.asarray(BCE_GRAD_EPS, p.dtype)
    return g * (p - t) / jnp.maximum(p * (1 - p), eps), None


_bce_prob.defvjp(_bce_fwd, _bce_bwd)


def bce(o, y):
    """nn.BCELoss on a one-unit probability output o [B, 1]."""
    p = o[:, 0]
    return _bce_prob(p, y.astype(p.dtype))


def bce_with_logits(o, y):
    """nn.BCEWithLogitsLoss on a one-unit output o [B, 1]."""
    z = o[:, 0]
    t = y.astype(z.dtype)
    return -(t * jax.nn.log_sigmoid(z) + (1 - t) * jax.nn.log_sigmoid(-z))


def mse(o, y):
    """nn.MSELoss against one-hot targets: per example, the mean over the K outputs."""
    t = jax.nn.one_hot(y, o.shape[-1], dtype=o.dtype)
    return jnp.mean((o - t) ** 2, axis=-1)


LOSSES = {"cross_entropy": cross_entropy, "bce": bce, "bce_with_logits": bce_with_logits, "mse": mse}


def correct(o, y, output: str):
    """1.0 where the prediction is right: argmax over K outputs; for one unit, p > 0.5 (sigmoid
    output) or z > 0 (logits)."""
    if o.shape[-1] == 1:
        thr = 0.5 if output == "sigmoid" else 0.0
        pred = (o[:, 0] > thr).astype(jnp.int32)
    else:
        pred = jnp.argmax(o, axis=-1).astype(jnp.int32)
    return (pred == y).astype(o.dtype)


def masked_mean(v, mask):
    """sum(v * mask) / sum(mask), with masked entries contributing an exact 0 (even if v is NaN)."""
    return jnp.sum(jnp.where(mask, v, 0)) / jnp.sum(mask).astype(v.dtype)

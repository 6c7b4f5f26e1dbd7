"""When a run counts as diverged: the rules, their thresholds and the chance loss they scale by."""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from ..io.tree import flatten
from ..nn.losses import BCE_LOG_CLAMP as _BCE_LOG_CLAMP

# A run is diverged when one of these rules fires (checked in this order; `SweepResult.diverged_rule`
# names the first that fired, "" for none):
#   "nonfinite"     a training loss (batch mean or full split) or a final parameter is NaN or inf;
#   "bce_clamp"     BCELoss (probability output) whose final full training loss is at least
#                   BCE_CLAMP_FRACTION of its per-example clamp (-log clamped at 100 nats): at least that
#                   fraction of the training points sit at probability exactly 0 for their true class,
#                   a pinned, saturated net (lr=1e6 runs read 50.6 here, finite and never moving);
#   "loss_blowup"   the final full training loss above LOSS_BLOWUP_FACTOR times the chance loss (the
#                   loss of predicting uniform class probabilities: ln C for cross-entropy, ln 2 for the
#                   BCE losses, (C - 1) / C^2 for MSE on one-hot targets). A run that blows up and
#                   comes back below it is not diverged;
#   "param_blowup"  a final parameter with |value| > PARAM_BLOWUP (initial weights are below 1 and a
#                   healthy run moves them by far less than this).
# Measured at lr=1e6 (sum_bin, each loss x SGD/Adam x float32/float64): cross-entropy 1e5..1e6
# (threshold 110 for C = 3), MSE 4e12 and up (threshold 22), BCE 50.6 (clamp rule), BCE-with-logits
# 1e4..3e5 (threshold 69), weights 1.7e3..1e16.
LOSS_BLOWUP_FACTOR = 100.0
PARAM_BLOWUP = 1e6
BCE_CLAMP = -_BCE_LOG_CLAMP
BCE_CLAMP_FRACTION = 0.25
DIVERGENCE_RULES = ("nonfinite", "bce_clamp", "loss_blowup", "param_blowup")


def chance_loss(loss: str, num_classes: int) -> float:
    """The loss of a network that outputs uniform class probabilities (the divergence scale)."""
    if loss == "cross_entropy":
        return math.log(num_classes)
    if loss in ("bce", "bce_with_logits"):
        return math.log(2.0)
    if loss == "mse":
        return (num_classes - 1) / num_classes ** 2
    raise UserError(f"chance_loss: unknown loss {loss!r}")


def _param_max_abs(params) -> float:
    leaves = [np.abs(np.asarray(v, dtype=np.float64)) for v in flatten(params).values()]
    leaves = [a for a in leaves if a.size]
    return float(max(a.max() for a in leaves)) if leaves else 0.0


def evaluated_epochs(n: int, eval_every: int = 1) -> np.ndarray:
    """[n] bool: the epochs a config of `n` epochs is always evaluated at (jaxfit.sweep's eval_every:
    every eval_every-th epoch and the last; other configs' last epochs may add more)."""
    e = np.arange(n)
    return ((e + 1) % max(int(eval_every), 1) == 0) | (e == n - 1)


def counted(curve: np.ndarray, eval_every: int = 1) -> np.ndarray:
    """[epochs] bool: the epochs of an evaluation curve that hold a value: those always evaluated
    (`evaluated_epochs`) and any other that is not NaN (NaN there means "not evaluated")."""
    curve = np.asarray(curve, np.float64)
    return evaluated_epochs(len(curve), eval_every) | ~np.isnan(curve)


def divergence(metrics: dict[str, np.ndarray], params, loss: str | None = None,
               num_classes: int | None = None, eval_every: int = 1) -> tuple[int, str]:
    """(first diverged epoch, 0-based, or -1; the rule that fired, or ""), see DIVERGENCE_RULES.
    Without `loss` and `num_classes` only the "nonfinite" and "param_blowup" rules apply. With
    `eval_every` > 1 a NaN evaluation counts only at the epochs always evaluated (NaN elsewhere
    means "not evaluated"); an infinite one counts wherever it is."""
    n = len(metrics["train_loss"])
    full_eval = np.asarray(metrics["full_train_loss"], dtype=np.float64)
    bad = ~np.isfinite(metrics["train_loss"]) | (~np.isfinite(full_eval) & counted(full_eval, eval_every))
    if bad.any():
        return int(np.argmax(bad)), "nonfinite"
    leaves = [np.asarray(v) for v in flatten(params).values()]
    if any(not np.isfinite(a).all() for a in leaves):
        return n - 1, "nonfinite"
    full = np.asarray(metrics["full_train_loss"], dtype=np.float64)
    if n and loss is not None and num_classes is not None:
        for rule, threshold in (("bce_clamp", BCE_CLAMP_FRACTION * BCE_CLAMP if loss == "bce" else math.inf),
                                ("loss_blowup", LOSS_BLOWUP_FACTOR * chance_loss(loss, num_classes))):
            if full[-1] >= threshold:
                below = np.nonzero(full < threshold)[0]  # diverged from the epoch after its last good one
                return (int(below[-1]) + 1 if below.size else 0), rule
    if _param_max_abs(params) > PARAM_BLOWUP:
        return n - 1, "param_blowup"
    return -1, ""

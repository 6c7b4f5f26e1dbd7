"""Diagnostics of a sweep: what went wrong with each config, and what to do about it.

    flags = jaxfit.diagnose(result)          # or diagnose(result, data) for a dataset of your own
    flags[flags.prior_plateau]               # one row per config, indexed like result.table

`diagnose(result, data=None)` returns one row per config with a boolean column per flag (FLAGS), the
rule that made a run diverged (`diverged_rule`, see jaxfit.results), `best_epoch` (0-based epoch of
the best validation accuracy, ties to the earliest; -1 when there is none) and `diagnosis`: one line
per raised flag, each with its remedy, joined with "; ". Every flag is computed from the run's own
curves, final parameters and training data:

    prior_plateau         final full training loss within PRIOR_PLATEAU_TOL (relative) of the loss of
                          predicting the class priors of the training labels (their entropy, about
                          ln C when balanced; for MSE (1 - sum p_k^2) / C): the net predicts the
                          priors and has learnt nothing about x (document 1's sum_mod).
    double_softmax_floor  output "softmax" with loss "cross_entropy": CrossEntropyLoss applies its own
                          log-softmax to probabilities in [0, 1], so the loss cannot go below
                          -log(e / (e + C - 1)) (0.5514 for C = 3) (document 1's model).
    unnormalised_inputs   input_norm "none", some training feature has |mean| > INPUT_OFFSET_RATIO x
                          its standard deviation, AND the net is saturated: at least
                          SATURATED_UNITS_FRAC of its sigmoid/tanh hidden units are within
                          SATURATION_EPS of their bounds (of their range) on at least
                          SATURATED_ROWS_FRAC of the training rows, or the output pre-activations have
                          |z| > OUTPUT_Z_BOUND on that fraction of rows (document 2's heart rate).
    dead_relu             more than DEAD_RELU_FRAC of the hidden relu units are never active (pre-
                          activation <= 0) on any training row.
    diverged              SweepResult.diverged: non-finite, or a finite blow-up (jaxfit.results).
    oscillation           over the last OSC_WINDOW epochs, at least OSC_MIN_RISES epochs where the full
                          training loss rose by more than OSC_RISE_REL of its previous value.
    too_slow              over the last TOO_SLOW_WINDOW epochs the full training loss fell at every
                          epoch but at most one, by a geometric mean of more than TOO_SLOW_RATE per
                          epoch, is still above TOO_SLOW_MIN_LOSS x the prior loss and the training
                          accuracy below TOO_SLOW_MAX_ACC: still learning, far from fitted.
    overfitting           final training accuracy - final validation accuracy > OVERFIT_GAP.

The curve flags (oscillation, too_slow, overfitting, prior_plateau) are not raised on a diverged run:
its diagnosis is the divergence. The flags that need the training data (prior_plateau,
unnormalised_inputs, dead_relu) use `data` when given, else the dataset regenerated from the
result's meta (jaxfit's built-in generators, fingerprint checked, as the report does); when neither is
available they are <NA> (pandas "boolean" dtype) and the diagnosis says so.

The hidden activations come from `forward`, a float64 numpy forward pass that reads the parameter
layout (PyTorch's, see jaxfit.nn.layers) and the model state (input standardisation, BatchNorm running
statistics in eval mode, Fourier encoding); tests/test_diagnose.py checks it against
`SweepResult.outputs`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import math
import os
from typing import Any

import numpy as np
import pandas as pd
from .errors import UserError
from .results.divergence import counted

__all__ = ["diagnose", "forward", "FLAGS", "prior_loss", "double_softmax_floor"]

# ----------------------------------------------------------------------------- thresholds
PRIOR_PLATEAU_TOL = 0.02
"""prior_plateau: |final full training loss - prior loss| <= this x prior loss (2%: document 1's
sum_mod sat at 1.089-1.092 against ln 3 = 1.0986, 0.6-0.9% away)."""
INPUT_OFFSET_RATIO = 3.0
"""unnormalised_inputs: a feature whose |mean| exceeds this many standard deviations (heart rate:
92 / 10 = 9.2; uniform [0, 1): 0.5 / 0.29 = 1.7)."""
SATURATION_EPS = 0.02
"""A sigmoid unit is saturated on a row when its value is within this of 0 or 1 (|z| > 3.9), a tanh
unit when within 2x this of -1 or 1 (|z| > 2.3): its derivative is under 8% of its maximum."""
SATURATED_ROWS_FRAC = 0.95
"""A unit (or the output) counts as saturated when it is saturated on at least this fraction of the
training rows."""
SATURATED_UNITS_FRAC = 0.5
"""unnormalised_inputs: at least this fraction of the sigmoid/tanh hidden units saturated."""
OUTPUT_Z_BOUND = 15.0
"""unnormalised_inputs: or output pre-activations (logits) with |z| above this on
SATURATED_ROWS_FRAC of the rows (a sigmoid there is within 3e-7 of its bound)."""
DEAD_RELU_FRAC = 0.3
# The activation flags (saturated units, dead ReLUs) run each config's network on at most this many
# training rows, a seeded uniform subsample of larger splits (2 s a config at 200,000 rows otherwise);
# a unit active only on rows left out can then read "dead": a bounded approximation, the same for
# every config.
ACTIVATION_ROWS = 20_000
"""dead_relu: more than this fraction of the hidden relu units never active on the training data."""
OSC_WINDOW = 10
"""oscillation: the last this-many epochs (all epochs when fewer)."""
OSC_RISE_REL = 0.02
"""oscillation: a rise counts when the full training loss grows by more than this fraction of its
previous value."""
OSC_MIN_RISES = 3
"""oscillation: this many rises within the window."""
TOO_SLOW_WINDOW = 5
"""too_slow: the last this-many epoch-to-epoch changes (fewer epochs: not judged)."""
TOO_SLOW_RATE = 0.003
"""too_slow: geometric-mean relative decrease per epoch above this (0.3%; document 1's sum_bin fell
0.4% per epoch from epoch 25 to 50, still far from fitted)."""
TOO_SLOW_MIN_LOSS = 0.05
"""too_slow: not raised once the loss is below this fraction of the prior loss (already fitted)."""
TOO_SLOW_MAX_ACC = 0.99
"""too_slow: not raised once the final training accuracy reaches this (only the margins still grow)."""
OVERFIT_GAP = 0.15
"""overfitting: final training accuracy minus final validation accuracy above this."""

FLAGS = ("prior_plateau", "double_softmax_floor", "unnormalised_inputs", "dead_relu", "diverged",
         "oscillation", "too_slow", "overfitting")
DATA_FLAGS = ("prior_plateau", "unnormalised_inputs", "dead_relu")
SATURATING = ("sigmoid", "tanh")


# ----------------------------------------------------------------------------- numbers


def prior_loss(loss: str, y: np.ndarray, num_classes: int) -> float:
    """The loss of a net that outputs the class priors of labels `y` for every x: their entropy for the
    cross-entropy and BCE losses, (1 - sum_k p_k^2) / C for MSE on one-hot targets."""
    p = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    p = p / max(p.sum(), 1.0)
    if loss == "mse":
        return float((1.0 - np.sum(p ** 2)) / num_classes)
    nz = p[p > 0]
    return float(-np.sum(nz * np.log(nz)))


def double_softmax_floor(num_classes: int) -> float:
    """The lowest cross-entropy of a softmax output: -log(e / (e + C - 1)) (0.5514 for C = 3)."""
    return float(-math.log(math.e / (math.e + num_classes - 1)))


# ----------------------------------------------------------------------------- forward


def forward(config, params: dict, state: dict, x) -> dict[str, Any]:
    """Eval-mode forward pass of one config's network, in float64: the network's own forward pass
    (`jaxfit.nn.layers.apply`, the one the program trains and `SweepResult.outputs` evaluates),
    with its intermediates traced.

    Returns {"pre": [z of each hidden layer, after its BatchNorm, before the activation],
             "hidden": [activation of each hidden layer], "logits": the output layer's
             pre-activation [B, K], "out": what the network returns (its `output` applied)},
    all float64 NumPy arrays."""
    import jax
    import jax.numpy as jnp

    from .nn import layers

    x = np.asarray(x, np.float64)
    arch = layers.arch_of(config, x.shape[1], np.shape(params["dense"][-1]["b"])[0])  # output width

    with jax.enable_x64(True):
        p, s, xj = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, np.float64)),
                                          (params, state or {}, x))
        trace: dict = {}
        out, _ = layers.apply(arch, p, s, xj, train=False, trace=trace)
        return {"pre": [np.asarray(z) for z in trace["pre"]], "hidden": [np.asarray(h) for h in trace["hidden"]],
                "logits": np.asarray(trace["logits"]), "out": np.asarray(out)}


def unit_stats(trace: dict, xnp=np) -> dict[str, Any]:
    """What the activation flags read of a forward pass (`forward`'s dict, or its traced arrays
    inside a compiled pass with `xnp=jax.numpy`): per hidden unit the fraction of rows on which it is
    pinned by the sigmoid rule and by the tanh rule (SATURATION_EPS) and whether it is ever active
    (z > 0); the fraction of rows with an output pre-activation beyond OUTPUT_Z_BOUND."""
    z = trace["logits"]
    frac = lambda b, axis=None: xnp.mean(b.astype("float64"), axis=axis)  # noqa: E731  (float64, not the default float)
    return {"pinned_sigmoid": [frac((h <= SATURATION_EPS) | (h >= 1.0 - SATURATION_EPS), 0) for h in trace["hidden"]],
            "pinned_tanh": [frac(xnp.abs(h) >= 1.0 - 2 * SATURATION_EPS, 0) for h in trace["hidden"]],
            "active": [xnp.any(p > 0, axis=0) for p in trace["pre"]],
            "out_saturated": frac(xnp.any(xnp.abs(z) > OUTPUT_Z_BOUND, axis=-1)) if z.shape[0] else xnp.zeros([]),
            "rows": z.shape[0]}


def unit_stats_many(configs, params: list, states: list, x) -> list[dict[str, Any]]:
    """`unit_stats(forward(...))` of many configs on the same x: the configs of one parameter shape go
    through one compiled, vmapped pass that reduces over the rows inside it (where their activations
    or other choices differ, as one fused network with each config's Struct), the passes compiled in
    parallel threads. Measured on the 2-core CPU, 1,080-config large sweep (36 structures, 12 shapes):
    one pass per structure 10.2 s in a fresh process (its compiles), this 3.7 s; one padded pass per
    depth 15.6 s (every activation and the padding computed for every config)."""
    import jax
    import jax.numpy as jnp

    from .nn import layers

    x = np.asarray(x, np.float64)
    groups: dict[Any, list[int]] = {}
    archs = []
    for i, (c, p, s) in enumerate(zip(configs, params, states)):
        archs.append(layers.arch_of(c, x.shape[1], np.shape(p["dense"][-1]["b"])[0]))  # output width
        shapes = jax.tree_util.tree_map(np.shape, (p, s or {}))
        groups.setdefault((jax.tree_util.tree_structure(shapes), str(shapes)), []).append(i)
    out: list[dict[str, Any]] = [{} for _ in configs]
    jobs = []
    for members in groups.values():
        # Configs of the same parameter shapes share one pass: where their activations (or other
        # choices) differ, as one fused network with each config's Struct (select, not padding).
        arch = layers.fuse_archs([archs[i] for i in members])
        trees = [(params[i], states[i] or {}) for i in members]
        if arch.fused:
            trees = [(*layers.pad_tree(arch, configs[i], p, s, "float64"),
                      layers.struct_of(arch, configs[i], np.float64)) for i, (p, s) in zip(members, trees)]
        stacked = jax.tree_util.tree_map(lambda *a: _f64(np.stack([np.asarray(v) for v in a])), *trees)
        jobs.append((members, arch, stacked))

    def run(job):
        _, arch, stacked = job
        with jax.enable_x64(True):  # (a thread's own setting)
            return jax.tree_util.tree_map(np.asarray, _stats_fn(arch)(stacked, jnp.asarray(x)))

    # One compile per structure dominates (a 1,080-config sweep has 12): XLA compiles in parallel threads.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        results = list(pool.map(run, jobs))
    for (members, _, _), got in zip(jobs, results):
        for k, i in enumerate(members):
            out[i] = {key: [v[k] for v in got[key]] for key in ("pinned_sigmoid", "pinned_tanh", "active")}
            out[i].update(out_saturated=float(got["out_saturated"][k]), rows=x.shape[0])
    return out


def _f64(a: np.ndarray) -> np.ndarray:
    """Floating arrays as float64 (the passes run in float64); integer ones (a Struct's) kept."""
    return a.astype(np.float64) if a.dtype.kind == "f" else a


@functools.lru_cache(maxsize=256)
def _stats_fn(arch):
    """The compiled eval-mode pass of one Arch over stacked configs, reduced to `unit_stats`."""
    import jax
    import jax.numpy as jnp

    from .nn import layers

    def one(tree, x):
        trace: dict = {}
        layers.apply(arch, tree[0], tree[1], x, train=False, trace=trace, struct=tree[2] if arch.fused else None)
        stats = unit_stats(trace, jnp)
        del stats["rows"]
        return stats

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


# ----------------------------------------------------------------------------- per-config checks


def _saturated_units(config, st) -> tuple[int, int]:
    """(saturated, total) sigmoid/tanh hidden units (see SATURATION_EPS, SATURATED_ROWS_FRAC), from
    `unit_stats`."""
    if config.activation not in SATURATING or not st["pinned_tanh"]:
        return 0, 0
    fracs = st["pinned_sigmoid"] if config.activation == "sigmoid" else st["pinned_tanh"]
    sat = sum(int(np.sum(np.asarray(f) >= SATURATED_ROWS_FRAC)) for f in fracs)
    return sat, sum(len(f) for f in fracs)


def _output_saturated(st) -> bool:
    return bool(st["rows"]) and float(st["out_saturated"]) >= SATURATED_ROWS_FRAC


def _dead_relu(config, st) -> tuple[int, int]:
    if config.activation != "relu":
        return 0, 0
    dead = sum(int(np.sum(~np.asarray(a))) for a in st["active"])
    return dead, sum(len(a) for a in st["active"])


def _rises(curve: np.ndarray) -> int:
    w = curve[-(OSC_WINDOW + 1):] if curve.size > OSC_WINDOW else curve
    prev, nxt = w[:-1], w[1:]
    return int(np.sum(nxt > prev * (1.0 + OSC_RISE_REL)))


def _too_slow(curve: np.ndarray, scale: float) -> tuple[bool, float]:
    """(flag, geometric-mean relative decrease per epoch over the last window)."""
    if curve.size < TOO_SLOW_WINDOW + 1 or not np.all(np.isfinite(curve[-(TOO_SLOW_WINDOW + 1):])):
        return False, math.nan
    w = curve[-(TOO_SLOW_WINDOW + 1):]
    if w[0] <= 0 or w[-1] <= 0:
        return False, math.nan
    rate = 1.0 - (w[-1] / w[0]) ** (1.0 / TOO_SLOW_WINDOW)
    falling = int(np.sum(np.diff(w) < 0))
    flag = rate > TOO_SLOW_RATE and falling >= TOO_SLOW_WINDOW - 1 and w[-1] > TOO_SLOW_MIN_LOSS * scale
    return bool(flag), float(rate)


def _best_epoch(va: np.ndarray) -> int:
    ok = np.isfinite(va)
    if not ok.any():
        return -1
    return int(np.argmax(np.where(ok, va, -np.inf)))  # argmax: the first of ties


def _data_for(result, data):
    """(Dataset or None, note): `data` checked against the result's fingerprint, else regenerated."""
    ds = result.meta.get("dataset") or {}
    if data is not None:
        want = ds.get("fingerprint")
        if want is not None and data.fingerprint() != want:
            raise UserError(f"diagnose: data has fingerprint {data.fingerprint()}, the result was trained on "
                             f"{want}")
        return data, ""
    from .datasets import regenerate

    got, note = regenerate(ds)
    return got, ("" if got is not None else note)


# ----------------------------------------------------------------------------- diagnose


def diagnose(result, data=None) -> pd.DataFrame:
    """One row per config of `result` (a SweepResult), indexed by config like `result.table`: a
    boolean column per flag of FLAGS (<NA> where the data is unavailable), `diverged_rule`,
    `best_epoch` and `diagnosis` (see the module docstring for every rule and threshold)."""
    data, _ = _data_for(result, data)
    ds = result.meta.get("dataset") or {}
    n_val = ds.get("n_val", 1)  # without a validation split the best epoch is the best training accuracy
    C = int(data.num_classes if data is not None else ds.get("num_classes", 2))
    x_tr = y_tr = None
    offset_ratio = math.nan
    if data is not None:
        x_tr, y_tr = np.asarray(data.x_train, np.float64), np.asarray(data.y_train)
        if x_tr.shape[0]:
            mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
            ratio = np.where(std > 0, np.abs(mean) / np.where(std > 0, std, 1.0), np.where(mean != 0, np.inf, 0.0))
            offset_ratio = float(ratio.max()) if ratio.size else 0.0
    x_act = x_tr
    if x_tr is not None and x_tr.shape[0] > ACTIVATION_ROWS:
        x_act = x_tr[np.sort(np.random.default_rng(0).choice(x_tr.shape[0], ACTIVATION_ROWS, replace=False))]
    fws = _unit_stats(result, x_act) if data is not None else {}
    rows = []
    for i, c in enumerate(result.configs):
        stop = int(result.stopped_epoch[i]) if hasattr(result, "stopped_epoch") else c.epochs  # pruned: its last epoch
        cur = {m: np.asarray(result.curves[m][i, :stop], np.float64) for m in result.curves}
        every = int(result.meta.get("eval_every") or 1)
        full = cur["full_train_loss"]
        full = full[counted(full, every)]  # sweep(eval_every=k): the epochs evaluated; the windows count them
        final = float(full[-1]) if full.size else math.nan
        diverged = bool(result.diverged[i])
        rule = result.diverged_rule[i] if hasattr(result, "diverged_rule") else ("nonfinite" if diverged else "")
        row: dict[str, Any] = {"config": i}
        why: list[str] = []
        if diverged:
            ep = int(result.diverged_epoch[i])
            why.append(f"diverged ({rule or 'nonfinite'}) at epoch {ep + 1}: lower the learning rate"
                       + (", or clip gradients / use a schedule with warm-up" if c.optimizer == "sgd" else
                          " (Adam-type steps are about lr each) or add a warm-up schedule"))
        # -- double softmax: structural
        ds_floor = c.output == "softmax" and c.loss == "cross_entropy"
        row["double_softmax_floor"] = ds_floor
        if ds_floor:
            why.append(f"softmax output fed to cross_entropy (which applies its own log-softmax): the loss cannot go "
                       f"below {double_softmax_floor(C):.4f} for {C} classes; use output='logits'")
        # -- data flags
        if data is None:
            row.update({k: pd.NA for k in DATA_FLAGS})
        else:
            ploss = prior_loss(c.loss, y_tr, C)
            plateau = (not diverged and math.isfinite(final) and ploss > 0
                       and abs(final - ploss) <= PRIOR_PLATEAU_TOL * ploss)
            row["prior_plateau"] = bool(plateau)
            if plateau:
                why.append(f"final training loss {final:.4f} sits at the class-prior loss {ploss:.4f}: the net predicts "
                           "the class frequencies and has learnt nothing about x; increase capacity (wider/deeper), "
                           "tune the learning rate, or check that the labels are learnable")
            fw = fws.get(i)
            if fw is None:
                row["unnormalised_inputs"] = False if diverged else pd.NA
                row["dead_relu"] = False if diverged else pd.NA
            else:
                sat, tot = _saturated_units(c, fw)
                out_sat = _output_saturated(fw)
                offset = c.input_norm == "none" and offset_ratio > INPUT_OFFSET_RATIO
                saturated = (tot > 0 and sat >= SATURATED_UNITS_FRAC * tot) or out_sat
                row["unnormalised_inputs"] = bool(offset and saturated)
                if offset and saturated:
                    what = (f"{sat} of {tot} {c.activation} units pinned at their bounds" if tot and
                            sat >= SATURATED_UNITS_FRAC * tot else f"output pre-activations beyond ±{OUTPUT_Z_BOUND:g}")
                    why.append(f"inputs not normalised (a feature's mean is {offset_ratio:.1f} standard deviations from "
                               f"0) and the net is saturated ({what}); standardise the inputs "
                               "(input_norm='standardize') or put BatchNorm on them (input_norm='batchnorm')")
                dead, units = _dead_relu(c, fw)
                row["dead_relu"] = bool(units and dead > DEAD_RELU_FRAC * units)
                if row["dead_relu"]:
                    why.append(f"{dead} of {units} relu units are dead (never active on the training data); lower the "
                               "learning rate, use leaky_relu/elu, or he_normal init / BatchNorm")
        row["diverged"] = diverged
        row["diverged_rule"] = rule
        # -- curve flags (not on a diverged run)
        healthy = not diverged and full.size > 0 and np.all(np.isfinite(full))
        n_rises = _rises(full) if healthy else 0
        row["oscillation"] = bool(healthy and n_rises >= OSC_MIN_RISES)
        if row["oscillation"]:
            why.append(f"the training loss rose in {n_rises} of the last {min(OSC_WINDOW, full.size - 1)} epochs: "
                       "the learning rate is too high for this batch size; lower it or decay it (schedule)")
        scale = prior_loss(c.loss, y_tr, C) if y_tr is not None else _chance(c.loss, C)
        slow, rate = _too_slow(full, scale) if healthy else (False, math.nan)
        ta = cur["train_acc"]
        slow = slow and not (ta.size and np.isfinite(ta[-1]) and ta[-1] >= TOO_SLOW_MAX_ACC)
        row["too_slow"] = slow
        if slow:
            why.append(f"still learning: the training loss fell {100 * rate:.1f}% per epoch over the last "
                       f"{TOO_SLOW_WINDOW} epochs; train more epochs, raise the learning rate, or use a schedule")
        ta, va = cur["train_acc"], cur["val_acc"]
        gap = float(ta[-1] - va[-1]) if ta.size and va.size else math.nan
        row["overfitting"] = bool(not diverged and math.isfinite(gap) and gap > OVERFIT_GAP)
        if row["overfitting"]:
            why.append(f"overfitting: training accuracy {ta[-1]:.3f} vs validation {va[-1]:.3f}; add data, "
                       "regularise (weight_decay, dropout), use a smaller net, or stop at the best epoch "
                       f"(epoch {_best_epoch(va) + 1}: result.params(i, best=True))")
        row["best_epoch"] = _best_epoch(cur["val_acc"] if n_val else cur["train_acc"])  # as train.best_score
        row["diagnosis"] = "; ".join(why)
        rows.append(row)
    df = pd.DataFrame(rows).set_index("config")
    for k in FLAGS:
        df[k] = df[k].astype("boolean")
    df["best_epoch"] = df["best_epoch"].astype(np.int64)
    return df[[*FLAGS, "diverged_rule", "best_epoch", "diagnosis"]]


def _unit_stats(result, x) -> dict[int, dict]:
    """{config: unit_stats on x} of every config that did not diverge; a config whose layout this
    forward does not know (a user's module) is left out, and its activation flags stay unset."""
    live = [i for i in range(len(result.configs)) if not bool(result.diverged[i])]
    try:
        got = unit_stats_many([result.configs[i] for i in live], [result.params(i) for i in live],
                              [result.model_state(i) for i in live], x)
        return dict(zip(live, got))
    except Exception:  # an unknown layout among them: one pass per config, as many as work
        out = {}
        for i in live:
            with contextlib.suppress(Exception):
                out[i] = unit_stats(forward(result.configs[i], result.params(i), result.model_state(i), x))
        return out


def _chance(loss: str, C: int) -> float:
    from .results.divergence import chance_loss

    return chance_loss(loss, C)

"""The source documents' claims (docs/documents.md), each reproduced in PyTorch and in jaxfit.

PyTorch side: `torchref.documents`, the documents' own code (DataLoader, nn.Module, torch.optim),
seeded with `torch.manual_seed(seed)`. jaxfit side: `jaxfit.sweep` over `Config(..., seed=s)`, every
seed of a claim in one compiled program. Each framework uses its own random numbers and its own
initialisation; nothing is shared but the data.

How a claim is checked
  * The claim itself, on each framework's seed mean: e.g. "the last-sample loss rises then falls"
    is `mean over seeds of (peak - first) > 0` and `mean of (peak - last) > 0`.
  * Parity: the PyTorch seeds' mean of each statistic must fall inside a band computed from a large
    pool of jaxfit seeds: the alpha/2 and 1 - alpha/2 quantiles of the mean of n seeds drawn from the pool
    (a bootstrap, so bimodal statistics such as document 1's dead networks are handled exactly),
    widened by 1.3 sqrt(1 + n / pool) for the pool's own sampling error (BAND_WIDEN). The k bands of one test share a
    0.5% false-alarm budget (each a two-sided test at 0.005 / k), so with no true difference a test
    fails by chance in under 0.5% + its claims' share (stated next to each threshold, at most 0.3%).
  * Seeds are fixed, so each run is deterministic; the margins quoted next to each threshold
    (measured on pools of 256-1024 jaxfit seeds) say how unlikely a failure would be for another
    seed set, which is what the one-in-a-hundred rule is about.

Tiers
  * default (CI): shortened horizons (document 1: 6 epochs of sum_bin, 3 epochs of 500 sum_mod
    points; heart rate: 1,000 epochs), 8 PyTorch seeds per claim, pools of 512 (document 1) and 128
    (document 2) jaxfit seeds. The PyTorch runs go to worker processes while jaxfit runs.
  * `-m slow`: the documents' full lengths (document 1: 50 epochs x 2000 batch-1 steps per PyTorch
    seed; document 2: 10,000 epochs of heart rate), 32 PyTorch seeds (JAXFIT_DOC_SEEDS=n to run
    fewer), pools of 512 (document 1) and 128 (document 2) jaxfit seeds; results written to
    parity_tests/results/documents_*.json.

Measured numbers and the circles setting found: parity_tests/results/DOCUMENTS.md.
"""

from __future__ import annotations

from jaxfit.results import provenance
import json
import math
import os

import numpy as np
import pytest
import torch

import jaxfit
from jaxfit import Config
from torchref import documents as D

RESULTS = os.path.join(os.path.dirname(__file__), "results")

PARITY_BUDGET = 0.005  # chance that a test's parity bands reject a correct jaxfit (shared, Bonferroni)
# A pool of 64-128 seeds often misses the tail of a skewed statistic, and its bootstrap band is then
# too narrow: simulated from 512-seed jaxfit samples (pool and "PyTorch" seeds both drawn from them),
# the false-alarm rate of a nominal 1% band on BatchNorm's loss at epoch 1,000 was 2.6% (pool 64) and
# 1.6% (pool 128). Widening every band 1.3x about its centre brought nominal 0.2% to 0.08% (pool
# 128; 0.47% at pool 64) and nominal 1% to 0.3%; symmetric statistics stay below nominal.
BAND_WIDEN = 1.3
BOOTSTRAP = 100_000  # bootstrap means per band: >= 25 in each tail at the smallest level used (5e-4)

CI_TORCH_SEEDS = tuple(range(8))
CI_DOC1_JAX_SEEDS = tuple(range(512))  # batch-1 runs: 512 seeds cost jaxfit 1 s more than 128
CI_DOC2_JAX_SEEDS = tuple(range(128))  # 1,000 full-batch epochs x 6 variants: ~0.3 CPU s a seed
SLOW_TORCH_SEEDS = tuple(range(int(os.environ.get("JAXFIT_DOC_SEEDS", "32"))))
SLOW_DOC1_JAX_SEEDS = tuple(range(512))
SLOW_DOC2_JAX_SEEDS = tuple(range(128))  # 10,000 full-batch epochs x 4 remedies: 128 is ~5 min of CPU

# ---------------------------------------------------------------------------- document 1
LN3 = math.log(3.0)
# CrossEntropyLoss on softmax outputs p in [0, 1]: the loss is smallest when p is one-hot,
# -log(e / (e + 2)) = log(1 + 2/e) for three classes.
DOUBLE_SOFTMAX_FLOOR = math.log(1.0 + 2.0 / math.e)  # 0.5514
FLOOR_TOL = 1e-6  # float32 rounding of a loss near 0.55 (ulp 6e-8)
# The data set: the document's points are unseeded; the last point decides the printed loss. Only a
# class-1 (middle) last point gives the printed rise then fall (a class-0 or class-2 point's loss falls
# from the start). Among data seeds 0-40, seed 3's last point is class 1 (s = 0.845) and its median
# jaxfit curve is within 0.066 RMS of the printed one over the 50 epochs (the closest, seed 2, 0.065,
# has all 256 seeds' epoch-50 losses in [0.70, 0.88], which excludes the printed 0.691; seed 3's
# [0.61, 0.94] contains it).
DOC1_DATA_SEED = 3
DOC1_N = 2000
DOC1_EPOCHS = 50
# CI horizon: the peak is at epochs 2-4 and by epoch 6 the seed mean has fallen below it. Per seed
# (jaxfit, 1,024 seeds) the rise is 0.060 +- 0.055 and the fall from the peak to epoch 6 is noisier
# (dead networks, 19% of seeds, neither rise nor fall); in bootstrap draws of 8 seeds the mean rise
# or the mean fall is <= 0 in 0.3% (rise alone 0.08%). Epoch 5 would leave 0.8%, too close to 1%.
CI_SUM_BIN_EPOCHS = 6
# sum_mod in CI: the flat loss shows from the second epoch; the first 500 of the points x 3 epochs.
CI_SUM_MOD_N = 500
CI_SUM_MOD_EPOCHS = 3
DOC1_PRINTED_SUM_BIN_50 = 0.691
# "Near 0.69": the epoch-50 loss of a learned run depends on how close the last point lies to a class
# edge; over the class-1 data seeds 0-40 the jaxfit median ranges 0.56-0.75. A learned run here is
# one whose final training accuracy exceeds LEARNED_ACC (the dead ones, 15-25% of seeds in both
# frameworks, predict one class: 0.34).
NEAR_069 = 0.1
LEARNED_ACC = 0.9
# Chance accuracy on three near-equal classes: the largest class holds 34-36% of the points; the
# best of 1,024 jaxfit seeds reached 0.382 (500 points, 3 epochs), the best of 256 0.362 (2,000
# points, 50 epochs).
CHANCE_ACC_MAX = 0.40
# "Stuck near ln 3": the seed mean of sum_mod's epoch-mean loss after the first epoch is 1.0984-1.1006
# (jaxfit, 1,024 seeds at 500 points, 256 at 2,000 points x 50 epochs); the document's own printed
# loss sat 0.007-0.010 below ln 3. An 8-seed mean leaves 0.01 in 8e-5 of bootstrap draws. The
# last-sample loss is one point's loss: seed means 1.05-1.14, single seeds within 0.07.
MEAN_LOSS_NEAR_LN3 = 0.01
LAST_LOSS_NEAR_LN3 = 0.12


def doc1_config(epochs: int, seed: int) -> Config:
    return Config(hidden=(2,), activation="relu", output="softmax", loss="cross_entropy", optimizer="sgd",
                  lr=1e-3, momentum=0.9, batch_size=1, shuffle=False, epochs=epochs, seed=seed)


# ---------------------------------------------------------------------------- document 2
CIRCLES_EPOCHS = 1000
CIRCLES_REPORTED = 0.0016
# "About 0.0016": the seed geometric mean within a factor 2 of it (jaxfit, 32 seeds: 0.00128; the
# per-seed range 0.0008-0.0034); the question's own seed (2) gives 0.0016057 here.
CIRCLES_FACTOR = 2.0
HEART_EPOCHS = 10_000
CI_HEART_EPOCHS = 1000
# "Stalls": raw heart rate with Adam 1e-3 (jaxfit, 512 seeds) is at 0.676 +- 0.021 a seed at epoch
# 1,000 (an 8-seed mean never fell to 0.6 in 200,000 bootstrap draws) and at 0.386 +- 0.25 at epoch
# 10,000: bimodal, 38% of seeds stuck at ln 2 for good, the rest creeping down to 0.09-0.4 (the
# question's real data: 0.4296). A 32-seed mean falls to 0.25 in 0.06% of draws (to 0.3 in 2.4%:
# too often for a test, so not 0.3). And the document's contrast, per seed: every raw
# run at epoch 10,000 (lowest of 512: 0.092) is still above every standardised run at epoch 1,000
# (highest of 512: 0.046).
RAW_STALL_CI = 0.6
RAW_STALL_FULL = 0.25
# "Converges within about 1,000": at epoch 1,000 standardised inputs give 0.0359 +- 0.0018 (highest
# of 512 seeds 0.046) and BatchNorm 0.0130 +- 0.0009 (highest 0.019): the seed mean below 0.05 and
# every seed below 0.1.
CONVERGED = 0.05
CONVERGED_ANY = 0.1
# The stepped rate's gain over constant Adam 1e-3 (raw - stepped loss, paired by seed): 0.111 +- 0.105
# at epoch 1,000 (StepLR every 200), 0.102 +- 0.130 at 10,000 (every 2,000); an 8-seed mean <= 0 in
# 0.04% of draws at 1,000, a 32-seed mean never at 10,000 (1.3% at 8 seeds).

# BCELoss vs BCEWithLogitsLoss, same seed, same everything, circles: a seed's largest relative
# difference between the two per-epoch loss curves over 1,000 float32 epochs is typically 3e-6 (jaxfit,
# median of 512 seeds) or 1.6e-5 (PyTorch, median of 16), but float32 rounding differences are
# occasionally amplified for a while: the worst of 512 jaxfit seeds reached 1.2e-3 (99th percentile
# 7e-5), the worst of 16 PyTorch seeds 1e-4. Bounds: the median seed below 2e-4 (more than 10x the
# measured medians), every seed below 1e-2 (8x the worst of 512).
LOGITS_RTOL_MEDIAN = 2e-4
LOGITS_RTOL_ANY = 1e-2
# Float32 sigmoid rounds to exactly 1 from z = 16.7 on: there BCELoss clamps log(0) at -100.
SATURATED_Z = 17.0


def doc2_config(hidden: int, epochs: int, seed: int, optimizer: str, lr: float, *, loss: str = "bce",
                input_norm: str = "none", step_lr=None) -> Config:
    sched = {} if step_lr is None else {"schedule": "step", "step_size": step_lr[0], "gamma": step_lr[1]}
    return Config(hidden=(hidden,), activation="sigmoid", output="sigmoid" if loss == "bce" else "logits",
                  loss=loss, optimizer=optimizer, lr=lr, batch_size=0, shuffle=False, epochs=epochs, seed=seed,
                  input_norm=input_norm, **sched)


def heart_config(remedy: str, epochs: int, seed: int, loss: str = "bce") -> Config:
    s = D.heart_settings(remedy, epochs)
    # jaxfit's "standardize" divides by the per-feature std with ddof 0 (train-split statistics); the
    # answer's formula divides by the whole tensor's unbiased std. With one feature they differ only by
    # the factor sqrt(n / (n - 1)) = 1.0005 at n = 1000.
    norm = {"standardize": "standardize", "batchnorm": "batchnorm"}.get(remedy, "none")
    return doc2_config(D.HEART_H1, epochs, seed, s["optimizer"], s["lr"], loss=loss, input_norm=norm,
                       step_lr=s["step_lr"])


# ---------------------------------------------------------------------------- statistics


def band(pool: np.ndarray, n: int, alpha: float, seed: int = 0) -> tuple[float, float]:
    """Where the mean of n seeds should fall, from a pool of per-seed values (bootstrap quantiles)."""
    pool = np.asarray(pool, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = pool[rng.integers(0, len(pool), size=(BOOTSTRAP, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    c = pool.mean()
    widen = BAND_WIDEN * math.sqrt(1.0 + n / len(pool))  # the pool's tails (BAND_WIDEN) and its mean's error
    return float(c + (lo - c) * widen), float(c + (hi - c) * widen)


def summary(x) -> dict:
    x = np.asarray(x, dtype=np.float64)
    return {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())}


class Claims:
    """Collects each check's numbers (for the report and the slow tier's JSON) and its failures.

    The parity bands of one test share a false-alarm budget of PARITY_BUDGET (Bonferroni): with k
    bands each is a two-sided test at PARITY_BUDGET / k."""

    def __init__(self, name: str):
        self.name = name
        self._rows: list[dict] = []
        self._failures: list[str] = []
        self._parity: list[tuple] = []
        self._evaluated = False

    def parity(self, what: str, torch_values, jax_pool):
        t, pool = np.asarray(torch_values, np.float64), np.asarray(jax_pool, np.float64)
        self._parity.append((len(self._rows), what, t, pool))
        self._rows.append({})  # filled in by _evaluate, in this place

    def claim(self, what: str, framework: str, value: float, ok: bool, detail: str = ""):
        self._rows.append({"check": f"claim: {what}", "framework": framework, "value": float(value), "ok": bool(ok),
                           "detail": detail})
        if not ok:
            self._failures.append(f"{what} [{framework}]: {value:.5g} {detail}")

    def _evaluate(self):
        if self._evaluated:
            return
        self._evaluated = True
        alpha = PARITY_BUDGET / max(1, len(self._parity))
        for i, what, t, pool in self._parity:
            lo, hi = band(pool, t.size, alpha)
            ok = lo <= t.mean() <= hi
            self._rows[i] = {"check": f"parity: {what}", "torch": summary(t), "jaxfit": summary(pool),
                             "band_for_torch_mean": [lo, hi], "band_alpha": alpha, "ok": bool(ok)}
            if not ok:
                self._failures.append(f"{what}: PyTorch mean {t.mean():.5g} (n={t.size}) outside the band "
                                      f"[{lo:.5g}, {hi:.5g}] from {len(pool)} jaxfit seeds (mean {pool.mean():.5g})")

    @property
    def rows(self) -> list[dict]:
        self._evaluate()
        return self._rows

    @property
    def failures(self) -> list[str]:
        self._evaluate()
        return self._failures

    def report(self) -> str:
        lines = [f"== {self.name}"]
        for r in self.rows:
            mark = "ok  " if r["ok"] else "FAIL"
            if "torch" in r:
                t, j = r["torch"], r["jaxfit"]
                lines.append(f"{mark} {r['check']}: torch {t['mean']:.5g} +- {t['sd']:.2g} (n={t['n']}), "
                             f"jaxfit {j['mean']:.5g} +- {j['sd']:.2g} (n={j['n']}), band "
                             f"[{r['band_for_torch_mean'][0]:.5g}, {r['band_for_torch_mean'][1]:.5g}]")
            else:
                lines.append(f"{mark} {r['check']} [{r['framework']}]: {r['value']:.5g} {r['detail']}")
        return "\n".join(lines)

    def check(self):
        print(self.report())
        assert not self.failures, "\n".join([f"{self.name}:"] + self.failures)




def write_results(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    import jax

    meta = provenance()
    meta["machine"]["jax_devices"] = [str(d) for d in jax.devices()]
    suffix = "" if len(SLOW_TORCH_SEEDS) == 32 else f"_seeds{len(SLOW_TORCH_SEEDS)}"
    path = os.path.join(RESULTS, f"documents_{name}{suffix}.json")
    with open(path, "w") as f:
        json.dump({**meta, **payload}, f, indent=1, default=float)
    return path


# ---------------------------------------------------------------------------- runs


def doc1_jobs(torch_seeds, sum_bin_epochs, sum_mod_n, sum_mod_epochs) -> list:
    jobs = [("doc1_run", dict(labels="sum_bin", seed=s, epochs=sum_bin_epochs, n=DOC1_N, data_seed=DOC1_DATA_SEED))
            for s in torch_seeds]
    return jobs + [("doc1_run", dict(labels="sum_mod", seed=s, epochs=sum_mod_epochs, n=sum_mod_n,
                                     data_seed=DOC1_DATA_SEED)) for s in torch_seeds]


def doc1_jax(jax_seeds, sum_bin_epochs, sum_mod_n, sum_mod_epochs) -> dict:
    out = {}
    for labels, n, epochs in (("sum_bin", DOC1_N, sum_bin_epochs), ("sum_mod", sum_mod_n, sum_mod_epochs)):
        data = D.doc1_data(labels, n, DOC1_DATA_SEED)
        out[labels] = jaxfit.sweep(data, [doc1_config(epochs, s) for s in jax_seeds]).curves
    return out


def doc1_assemble(torch_results: list, jax: dict) -> dict:
    """labels -> {"torch": [FititResult per seed], "jax": {metric: [seeds, epochs]}}."""
    k = len(torch_results) // 2
    return {"sum_bin": {"torch": torch_results[:k], "jax": jax["sum_bin"]},
            "sum_mod": {"torch": torch_results[k:], "jax": jax["sum_mod"]}}


def sum_bin_claims(c: Claims, runs: dict, full: bool):
    """Document 1, sum_bin: the printed last-sample loss rises over the first epochs, then falls."""
    t = np.stack([r.last_sample_loss for r in runs["torch"]])  # [seeds, epochs]
    j = runs["jax"]["last_batch_loss"]
    for name, L in (("torch", t), ("jaxfit", j)):
        peak = L[:, 1:4].max(axis=1)  # epochs 2-4 (the document's peak: epoch 4)
        rise, fall = peak - L[:, 0], peak - L[:, -1]
        c.claim("sum_bin last-sample loss rises from epoch 1 to its peak at epochs 2-4 (seed mean)", name,
                rise.mean(), rise.mean() > 0, f"(sd {rise.std(ddof=1):.3f})")
        c.claim(f"sum_bin last-sample loss then falls below the peak by epoch {L.shape[1]} (seed mean)", name,
                fall.mean(), fall.mean() > 0, f"(sd {fall.std(ddof=1):.3f})")
    c.parity("sum_bin rise (peak at epochs 2-4 minus epoch 1)", t[:, 1:4].max(1) - t[:, 0], j[:, 1:4].max(1) - j[:, 0])
    c.parity(f"sum_bin fall (peak minus epoch {t.shape[1]})", t[:, 1:4].max(1) - t[:, -1], j[:, 1:4].max(1) - j[:, -1])
    c.parity(f"sum_bin last-sample loss at epoch {t.shape[1]}", t[:, -1], j[:, -1])
    c.parity(f"sum_bin epoch-mean loss at epoch {t.shape[1]}", [r.mean_loss[-1] for r in runs["torch"]],
             runs["jax"]["train_loss"][:, -1])
    if full:
        acc_t = np.array([r.accuracy for r in runs["torch"]])
        acc_j = runs["jax"]["train_acc"][:, -1]
        c.parity("sum_bin share of learned runs (final accuracy > 0.9)", acc_t > LEARNED_ACC, acc_j > LEARNED_ACC)
        for name, L, acc in (("torch", t, acc_t), ("jaxfit", j, acc_j)):
            learned = L[acc > LEARNED_ACC, -1]
            if not learned.size:  # possible only with a handful of seeds (JAXFIT_DOC_SEEDS)
                c.claim("sum_bin: at least one run learns", name, 0.0, False)
                continue
            med = float(np.median(learned))
            c.claim("sum_bin learned runs: median last-sample loss at epoch 50 near the printed 0.691", name, med,
                    abs(med - DOC1_PRINTED_SUM_BIN_50) < NEAR_069,
                    f"(+-{NEAR_069}; {learned.size} learned runs, range {learned.min():.3f}-{learned.max():.3f})")
            acc_med = float(np.median(acc[acc > LEARNED_ACC]))
            c.claim("sum_bin learned runs: 'close to 100% accuracy' (median final accuracy)", name, acc_med,
                    acc_med > 0.97)
        if (acc_t > LEARNED_ACC).sum() >= 2:
            c.parity("sum_bin learned runs' last-sample loss at epoch 50", t[acc_t > LEARNED_ACC, -1],
                     j[acc_j > LEARNED_ACC, -1])


def sum_mod_claims(c: Claims, runs: dict):
    """Document 1, sum_mod: stuck near ln 3 with chance accuracy."""
    t_mean = np.stack([r.mean_loss for r in runs["torch"]])
    t_last = np.stack([r.last_sample_loss for r in runs["torch"]])
    t_acc = np.array([r.accuracy for r in runs["torch"]])
    j = runs["jax"]
    for name, M, L, acc in (("torch", t_mean, t_last, t_acc),
                            ("jaxfit", j["train_loss"], j["last_batch_loss"], j["train_acc"][:, -1])):
        dev = np.abs(M[:, 1:].mean(axis=0) - LN3).max()
        c.claim("sum_mod epoch-mean loss stays at ln 3 after epoch 1 (largest |seed mean - ln 3| over the epochs)",
                name, dev, dev < MEAN_LOSS_NEAR_LN3, f"(< {MEAN_LOSS_NEAR_LN3})")
        dev = abs(L[:, -1].mean() - LN3)
        c.claim("sum_mod last-sample loss near ln 3 (|seed mean - ln 3|)", name, dev, dev < LAST_LOSS_NEAR_LN3,
                f"(< {LAST_LOSS_NEAR_LN3})")
        c.claim("sum_mod final accuracy at chance (best seed)", name, acc.max(), acc.max() < CHANCE_ACC_MAX,
                f"(< {CHANCE_ACC_MAX})")
    c.parity("sum_mod epoch-mean loss, last epoch", t_mean[:, -1], j["train_loss"][:, -1])
    c.parity("sum_mod last-sample loss, last epoch", t_last[:, -1], j["last_batch_loss"][:, -1])
    c.parity("sum_mod final accuracy", t_acc, j["train_acc"][:, -1])


def floor_claims(c: Claims, doc1: dict):
    """Softmax then CrossEntropyLoss: no loss below log(1 + 2/e), in either framework."""
    for labels in ("sum_bin", "sum_mod"):
        t_low = min(float(r.min_loss.min()) for r in doc1[labels]["torch"])
        c.claim(f"{labels}: smallest per-sample loss of any step >= log(1 + 2/e) = 0.5514", "torch", t_low,
                t_low >= DOUBLE_SOFTMAX_FLOOR - FLOOR_TOL)
        j = doc1[labels]["jax"]
        j_low = float(min(j["last_batch_loss"].min(), j["train_loss"].min(), j["full_train_loss"].min()))
        c.claim(f"{labels}: smallest recorded loss (last sample, epoch mean, full data) >= 0.5514", "jaxfit", j_low,
                j_low >= DOUBLE_SOFTMAX_FLOOR - FLOOR_TOL)


def doc2_jobs(torch_seeds, heart_epochs) -> list:
    jobs = [("doc2_circles", dict(seed=s, epochs=CIRCLES_EPOCHS, loss=loss))
            for loss in ("bce", "bce_with_logits") for s in torch_seeds]
    jobs += [("doc2_heart", dict(seed=s, epochs=heart_epochs, remedy=r)) for r in D.HEART_REMEDIES for s in torch_seeds]
    return jobs + [("doc2_circles", dict(seed=D.CIRCLES_SEED, epochs=CIRCLES_EPOCHS))]


def doc2_jax(jax_seeds, heart_epochs) -> dict:
    # train_loss of a full-batch run is the loss before each epoch's step, as the question's loop prints.
    out = {}
    n = len(jax_seeds)
    cfgs = [doc2_config(D.CIRCLES_H1, CIRCLES_EPOCHS, s, D.CIRCLES_OPTIMIZER, D.CIRCLES_LR, loss=loss)
            for loss in ("bce", "bce_with_logits") for s in jax_seeds]
    curves = jaxfit.sweep(jaxfit.datasets.circles(), cfgs).curves["train_loss"]
    out["circles_bce"], out["circles_logits"] = curves[:n], curves[n:]
    cfgs = [heart_config(r, heart_epochs, s) for r in D.HEART_REMEDIES for s in jax_seeds]
    curves = jaxfit.sweep(jaxfit.datasets.heart_rate(n=D.HEART_N, seed=0), cfgs).curves["train_loss"]
    for i, r in enumerate(D.HEART_REMEDIES):
        out[f"heart_{r}"] = curves[i * n:(i + 1) * n]
    return out


def doc2_assemble(torch_results: list, jax: dict) -> dict:
    """{"torch": {run: [seeds, epochs]}, "jax": {run: [seeds, epochs]}}; runs circles_bce, circles_logits,
    heart_<remedy>, and (torch only) circles_question_seed."""
    k = (len(torch_results) - 1) // (2 + len(D.HEART_REMEDIES))
    t = {"circles_bce": np.stack(torch_results[:k]), "circles_logits": np.stack(torch_results[k:2 * k])}
    for i, r in enumerate(D.HEART_REMEDIES):
        t[f"heart_{r}"] = np.stack(torch_results[(2 + i) * k:(3 + i) * k])
    t["circles_question_seed"] = torch_results[-1]
    return {"torch": t, "jax": jax}


def circles_claims(c: Claims, runs: dict):
    t, j = runs["torch"]["circles_bce"][:, -1], runs["jax"]["circles_bce"][:, -1]
    for name, x in (("torch", t), ("jaxfit", j)):
        g = float(np.exp(np.log(x).mean()))
        c.claim(f"circles: BCE after 1,000 epochs about 0.0016 (seed geometric mean within x{CIRCLES_FACTOR:g})",
                name, g,
                CIRCLES_REPORTED / CIRCLES_FACTOR < g < CIRCLES_REPORTED * CIRCLES_FACTOR,
                f"(per-seed range {x.min():.5f}-{x.max():.5f})")
    q = float(runs["torch"]["circles_question_seed"][-1])
    c.claim("circles: the question's setting (torch.manual_seed(2), Model(2, 4, 1), Adam 0.1) prints 0.0016",
            "torch", q,
            abs(q - CIRCLES_REPORTED) < 0.1 * CIRCLES_REPORTED, "(within 10%)")
    c.parity("circles log BCE at epoch 1,000", np.log(t), np.log(j))
    c.parity("circles log BCE at epoch 100", np.log(runs["torch"]["circles_bce"][:, 99]),
             np.log(runs["jax"]["circles_bce"][:, 99]))


def logits_claims(c: Claims, runs: dict, heart_key: str | None = None):
    """BCEWithLogitsLoss (no last sigmoid) trains as BCELoss does, where BCELoss's clamp does not bite."""
    for name, side in (("torch", runs["torch"]), ("jaxfit", runs["jax"])):
        a, b = side["circles_bce"], side["circles_logits"]
        per_seed = np.max(np.abs(a - b) / np.abs(b), axis=1)  # each seed's largest relative difference
        c.claim("circles: BCELoss vs BCEWithLogitsLoss curves, same seeds: median seed's largest relative difference",
                name, float(np.median(per_seed)), float(np.median(per_seed)) < LOGITS_RTOL_MEDIAN,
                f"(< {LOGITS_RTOL_MEDIAN:g})")
        worst = float(per_seed.max())
        c.claim("circles: ... and the worst seed's", name, worst, worst < LOGITS_RTOL_ANY,
                f"(< {LOGITS_RTOL_ANY:g})")
    # Where they part: a float32 sigmoid of z >= 16.7 is exactly 1, and BCELoss's log(1 - p) is clamped.
    z = torch.tensor([[2.0], [SATURATED_Z]])
    t = torch.tensor([[0.0], [0.0]])
    bce = torch.nn.BCELoss(reduction="none")(torch.sigmoid(z), t)[:, 0]
    logit = torch.nn.BCEWithLogitsLoss(reduction="none")(z, t)[:, 0]
    c.claim("z = 2, target 0: BCELoss equals BCEWithLogitsLoss", "torch", float(abs(bce[0] - logit[0])),
            float(abs(bce[0] - logit[0])) < 1e-6)
    c.claim(f"z = {SATURATED_Z:g}, target 0: BCELoss is the clamp 100, BCEWithLogitsLoss is z", "torch", float(bce[1]),
            float(bce[1]) == 100.0 and abs(float(logit[1]) - SATURATED_Z) < 1e-5)
    import jax.numpy as jnp

    from jaxfit.nn import losses
    zj = jnp.asarray([[2.0], [SATURATED_Z]], dtype=jnp.float32)
    yj = jnp.asarray([0, 0])
    bj = np.asarray(losses.bce(1 / (1 + jnp.exp(-zj)), yj))
    lj = np.asarray(losses.bce_with_logits(zj, yj))
    c.claim(f"z = 2 and {SATURATED_Z:g}, target 0: jaxfit's bce and bce_with_logits as PyTorch's", "jaxfit",
            float(np.max(np.abs(np.r_[bj, lj] - np.r_[bce.numpy(), logit.numpy()]))),
            np.allclose(bj, bce.numpy(), atol=1e-5) and np.allclose(lj, logit.numpy(), atol=1e-5))


def heart_claims(c: Claims, runs: dict, epochs: int, full: bool):
    T, J = runs["torch"], runs["jax"]
    at = min(epochs, CI_HEART_EPOCHS) - 1  # the "about 1,000 epochs" of the answers
    stall = RAW_STALL_FULL if full else RAW_STALL_CI
    for name, side in (("torch", T), ("jaxfit", J)):
        raw = side["heart_raw"][:, -1]
        c.claim(f"heart rate, raw inputs: seed-mean loss at epoch {epochs:,} still above {stall}", name, raw.mean(),
                raw.mean() > stall, f"(seeds {raw.min():.3f}-{raw.max():.3f})")
        for remedy in ("standardize", "batchnorm"):
            x = side[f"heart_{remedy}"][:, at]
            c.claim(f"heart rate, {remedy}: seed-mean loss below {CONVERGED} by epoch {at + 1:,}, every seed below "
                    f"{CONVERGED_ANY}", name, x.mean(), x.mean() < CONVERGED and x.max() < CONVERGED_ANY,
                    f"(largest {x.max():.4f}; raw at that epoch {side['heart_raw'][:, at].mean():.4f})")
        if full:
            lo, hi = raw.min(), side["heart_standardize"][:, at].max()
            c.claim(f"heart rate: every raw run at epoch {epochs:,} is above every standardised run at epoch "
                    f"{at + 1:,} "
                    "(lowest raw / highest standardised)", name, lo / hi, lo > hi, f"({lo:.4f} vs {hi:.4f})")
        gain = (side["heart_raw"][:, -1] - side["heart_step_lr"][:, -1]).mean()
        c.claim(f"heart rate, raw inputs: a stepped rate (StepLR from 0.01, halved every {epochs // D.STEP_LR_STEPS:,} "
                f"epochs) lowers the seed-mean loss at epoch {epochs:,} below constant Adam 1e-3's",
                name, gain, gain > 0,
                f"(raw {side['heart_raw'][:, -1].mean():.4f}, stepped {side['heart_step_lr'][:, -1].mean():.4f})")
    for r in D.HEART_REMEDIES:
        c.parity(f"heart {r}, loss at epoch {epochs:,}", T[f"heart_{r}"][:, -1], J[f"heart_{r}"][:, -1])
    if at != epochs - 1:
        for r in ("standardize", "batchnorm"):
            c.parity(f"heart {r}, loss at epoch {at + 1:,}", T[f"heart_{r}"][:, at], J[f"heart_{r}"][:, at])
    c.parity(f"heart: stepped-rate gain at epoch {epochs:,} (raw - stepped, paired by seed)",
             T["heart_raw"][:, -1] - T["heart_step_lr"][:, -1], J["heart_raw"][:, -1] - J["heart_step_lr"][:, -1])


# ---------------------------------------------------------------------------- tests


def test_document_label_functions_match_jaxfit_datasets():
    """The document's label functions (with the lost `+` restored) label jaxfit's points identically."""
    for seed in (0, DOC1_DATA_SEED):
        for labels, fn in (("sum_bin", D.sum_bin_label), ("sum_mod", D.sum_mod_label)):
            data = D.doc1_data(labels, DOC1_N, seed)
            np.testing.assert_array_equal(fn(np.asarray(data.x_train)), data.y_train, err_msg=f"{labels} seed {seed}")
    d = D.doc1_data("sum_bin", DOC1_N, DOC1_DATA_SEED)
    assert d.y_train[-1] == 1  # the class-1 last point the printed curve needs (see DOC1_DATA_SEED)


def run_tier(torch_seeds, doc1_jax_seeds, doc2_jax_seeds, *, doc1: dict | None, doc2: dict | None) -> dict:
    """Start the PyTorch runs in worker processes, run jaxfit meanwhile, and gather both.

    doc1: dict(sum_bin_epochs=, sum_mod_n=, sum_mod_epochs=) or None; doc2: dict(heart_epochs=) or None."""
    j1 = doc1_jobs(torch_seeds, **doc1) if doc1 else []
    j2 = doc2_jobs(torch_seeds, **doc2) if doc2 else []
    # Longest jobs first so the two workers finish together (document 1's batch-1 loops dominate).
    pending = D.start_many(j1 + j2)
    jax1 = doc1_jax(doc1_jax_seeds, **doc1) if doc1 else None
    jax2 = doc2_jax(doc2_jax_seeds, **doc2) if doc2 else None
    res = pending.result()
    out = {}
    if doc1:
        out["doc1"] = doc1_assemble(res[:len(j1)], jax1)
    if doc2:
        out["doc2"] = doc2_assemble(res[len(j1):], jax2)
    return out


@pytest.fixture(scope="module")
def ci():
    return run_tier(CI_TORCH_SEEDS, CI_DOC1_JAX_SEEDS, CI_DOC2_JAX_SEEDS,
                    doc1=dict(sum_bin_epochs=CI_SUM_BIN_EPOCHS, sum_mod_n=CI_SUM_MOD_N,
                              sum_mod_epochs=CI_SUM_MOD_EPOCHS),
                    doc2=dict(heart_epochs=CI_HEART_EPOCHS))


@pytest.fixture(scope="module")
def doc1_ci(ci):
    return ci["doc1"]


@pytest.fixture(scope="module")
def doc2_ci(ci):
    return ci["doc2"]


def test_doc1_sum_bin_rises_then_falls(doc1_ci):
    c = Claims(f"document 1, sum_bin, {CI_SUM_BIN_EPOCHS} epochs x {DOC1_N} batch-1 steps")
    sum_bin_claims(c, doc1_ci["sum_bin"], full=False)
    c.check()


def test_doc1_sum_mod_stuck_at_ln3_and_chance(doc1_ci):
    c = Claims(f"document 1, sum_mod, {CI_SUM_MOD_EPOCHS} epochs x {CI_SUM_MOD_N} batch-1 steps")
    sum_mod_claims(c, doc1_ci["sum_mod"])
    c.check()


def test_doc1_double_softmax_floor(doc1_ci):
    c = Claims("document 1, the double-softmax floor")
    floor_claims(c, doc1_ci)
    c.check()


def test_doc2_circles_reaches_0_0016(doc2_ci):
    c = Claims(f"document 2, circles, H1 {D.CIRCLES_H1}, {D.CIRCLES_OPTIMIZER} {D.CIRCLES_LR:g}, "
               f"{CIRCLES_EPOCHS} epochs")
    circles_claims(c, doc2_ci)
    c.check()


def test_doc2_bce_with_logits_matches_bce(doc2_ci):
    c = Claims("document 2, BCEWithLogitsLoss vs BCELoss")
    logits_claims(c, doc2_ci)
    c.check()


def test_doc2_heart_rate_remedies(doc2_ci):
    c = Claims(f"document 2, heart rate (stand-in), {CI_HEART_EPOCHS:,} epochs")
    heart_claims(c, doc2_ci, CI_HEART_EPOCHS, full=False)
    c.check()


# ---------------------------------------------------------------------------- slow tier: full lengths


@pytest.mark.slow
def test_doc1_full_length():
    runs = run_tier(SLOW_TORCH_SEEDS, SLOW_DOC1_JAX_SEEDS, (), doc2=None,
                    doc1=dict(sum_bin_epochs=DOC1_EPOCHS, sum_mod_n=DOC1_N, sum_mod_epochs=DOC1_EPOCHS))["doc1"]
    c = Claims(f"document 1 at full length: {DOC1_EPOCHS} epochs x {DOC1_N} batch-1 steps, "
               f"{len(SLOW_TORCH_SEEDS)} PyTorch / {len(SLOW_DOC1_JAX_SEEDS)} jaxfit seeds")
    sum_bin_claims(c, runs["sum_bin"], full=True)
    sum_mod_claims(c, runs["sum_mod"])
    floor_claims(c, runs)
    curves = {labels: {
        "torch_last_sample_loss_mean": np.mean([r.last_sample_loss for r in runs[labels]["torch"]], 0).tolist(),
        "jaxfit_last_sample_loss_mean": runs[labels]["jax"]["last_batch_loss"].mean(0).tolist()}
        for labels in ("sum_bin", "sum_mod")}
    write_results("doc1", {"claims": c.rows, "failures": c.failures, "torch_seeds": list(SLOW_TORCH_SEEDS),
                           "jax_seeds": len(SLOW_DOC1_JAX_SEEDS), "data_seed": DOC1_DATA_SEED, "curves": curves})
    c.check()


@pytest.mark.slow
def test_doc2_full_length():
    runs = run_tier(SLOW_TORCH_SEEDS, (), SLOW_DOC2_JAX_SEEDS, doc1=None,
                    doc2=dict(heart_epochs=HEART_EPOCHS))["doc2"]
    c = Claims(f"document 2 at full length: circles {CIRCLES_EPOCHS:,} epochs, heart rate {HEART_EPOCHS:,} epochs, "
               f"{len(SLOW_TORCH_SEEDS)} PyTorch / {len(SLOW_DOC2_JAX_SEEDS)} jaxfit seeds")
    circles_claims(c, runs)
    logits_claims(c, runs)
    heart_claims(c, runs, HEART_EPOCHS, full=True)
    write_results("doc2", {"claims": c.rows, "failures": c.failures, "torch_seeds": list(SLOW_TORCH_SEEDS),
                           "jax_seeds": len(SLOW_DOC2_JAX_SEEDS),
                           "settings": {"circles": [D.CIRCLES_H1, D.CIRCLES_OPTIMIZER, D.CIRCLES_LR],
                                        "heart": {r: D.heart_settings(r, HEART_EPOCHS) for r in D.HEART_REMEDIES}}})
    c.check()

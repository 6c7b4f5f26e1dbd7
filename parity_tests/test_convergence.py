"""Convergence parity: each framework with its own random numbers and its own initialisation.

Primary metric per task (declared here, before looking): the area under the full-data training-loss
curve, i.e. the mean of the eval-mode training-split losses at the end of every epoch (docs/parity.md: it
caught what final accuracy missed). Each task compares jaxfit's N_SEEDS seeds with PyTorch's N_SEEDS
seeds by two one-sided tests for equivalence within MARGIN_SD pooled standard deviations, Holm-
corrected across the tasks; Welch's t and Hedges' g are reported beside it.

Why N_SEEDS = 128: at a margin of 0.75 SD, TOST's power is 81% at n = 32 a side (docs/parity.md), so five
tasks at n = 32 would fail by chance most of the time. Requiring every Holm-adjusted TOST p < 0.05 of
five tasks puts the worst one at p < 0.01; at n = 128 its chance of missing with no true difference
is about 1e-4 per task (0.75 * sqrt(128 / 2) = 6 standard errors of room against a t quantile of
2.35), far below the one-in-a-hundred rule for flaky tests. The CI horizon is shortened (tasks.py:
ci_epochs); the slow tier runs the calibration (PyTorch against PyTorch) and longer horizons and
writes parity_tests/results/convergence_*.json.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import jaxfit
import torchref
from torchref import stats, tasks
from jaxfit.results import provenance

N_SEEDS = 128
MARGIN_SD = 0.75  # docs/parity.md: detects flax's default init (g about -3) and a 20%-off rate (g about +1.1)
ALPHA = 0.05
TASK_NAMES = list(tasks.TASKS)
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def auc_jax(task: tasks.Task, seeds, full: bool = False, **changes) -> np.ndarray:
    data = task.dataset(full)
    result = jaxfit.sweep(data, [task.make_config(full, seed=int(s), **changes) for s in seeds])
    return result.table["auc_full_train_loss"].to_numpy()


def auc_torch(task: tasks.Task, seeds, full: bool = False) -> np.ndarray:
    data = task.dataset(full)
    curves = torchref.train_many(data, [task.make_config(full, seed=int(s)) for s in seeds])
    return np.array([c["full_train_loss"].mean() for c in curves])


def verdict(a_by_task: dict, b_by_task: dict) -> tuple[bool, list[dict], str]:
    """(all tasks equivalent after Holm, per-task rows, a printable table)."""
    rows = []
    for name in a_by_task:
        c = stats.compare(a_by_task[name], b_by_task[name], MARGIN_SD)
        rows.append({"task": name, **c.as_dict()})
    adj = stats.holm([r["tost_p"] for r in rows])
    for r, p in zip(rows, adj):
        r["tost_p_holm"] = float(p)
        r["equivalent"] = bool(p < ALPHA)
    lines = [f"{'task':26s} {'mean A':>9s} {'mean B':>9s} {'pooled sd':>9s} {'g':>6s} {'welch p':>8s} "
             f"{'TOST p(Holm)':>12s}  verdict"]
    for r in rows:
        lines.append(f"{r['task']:26s} {r['mean_a']:9.5f} {r['mean_b']:9.5f} {r['pooled_sd']:9.5f} {r['hedges_g']:+6.2f} "
                     f"{r['welch_p']:8.3g} {r['tost_p_holm']:12.3g}  {'equivalent' if r['equivalent'] else 'NOT equivalent'}")
    return all(r["equivalent"] for r in rows), rows, "\n".join(lines)


@pytest.fixture(scope="module")
def torch_aucs():
    return {n: auc_torch(tasks.TASKS[n], range(N_SEEDS)) for n in TASK_NAMES}


@pytest.fixture(scope="module")
def jax_aucs():
    return {n: auc_jax(tasks.TASKS[n], range(N_SEEDS)) for n in TASK_NAMES}


def test_jaxfit_converges_as_pytorch_does(jax_aucs, torch_aucs):
    ok, rows, table = verdict(jax_aucs, torch_aucs)
    print("\njaxfit (A) vs PyTorch (B), area under the full-data training-loss curve, "
          f"{N_SEEDS} seeds a side:\n{table}")
    assert ok, f"convergence statistics differ beyond {MARGIN_SD} pooled SD:\n{table}"


# A planted difference must be caught: the family verdict fails, and the failing task is named.
PLANTS = {
    "flax_default_init": dict(init="lecun_normal"),  # flax.linen.Dense: lecun_normal kernel, zero bias
    "lr_20pct_high": "lr*1.2",
}


@pytest.mark.parametrize("plant", list(PLANTS))
def test_planted_difference_is_detected(plant, torch_aucs):
    planted = {}
    for n in TASK_NAMES:
        t = tasks.TASKS[n]
        changes = PLANTS[plant] if isinstance(PLANTS[plant], dict) else {"lr": t.config.lr * 1.2}
        planted[n] = auc_jax(t, range(N_SEEDS), **changes)
    ok, rows, table = verdict(planted, torch_aucs)
    print(f"\nplanted {plant} (A) vs PyTorch (B):\n{table}")
    assert not ok, f"the planted difference {plant} went unnoticed:\n{table}"


def _write(name: str, payload: dict) -> None:
    os.makedirs(RESULTS, exist_ok=True)
    payload = {**provenance(), "n_seeds": N_SEEDS, "margin_sd": MARGIN_SD, **payload}
    with open(os.path.join(RESULTS, name), "w") as f:
        json.dump(payload, f, indent=1)


@pytest.mark.slow
def test_calibration_pytorch_against_pytorch(torch_aucs):
    """PyTorch seeds 0..127 against PyTorch seeds 128..255: the test must call them equivalent."""
    other = {n: auc_torch(tasks.TASKS[n], range(N_SEEDS, 2 * N_SEEDS)) for n in TASK_NAMES}
    ok, rows, table = verdict(torch_aucs, other)
    print(f"\ncalibration, PyTorch (A) vs PyTorch (B):\n{table}")
    _write("convergence_calibration.json", {"horizon": "ci", "rows": rows, "all_equivalent": ok})
    assert ok, table


@pytest.mark.slow
def test_convergence_at_longer_horizon():
    """The same comparison at the tasks' full lengths for the cheap tasks (document 2 and the wide
    MLP; document 1's 100,000 batch-1 steps per PyTorch seed are in test_documents' slow tier)."""
    names = ["doc2_circles", "doc2_heart_standardized", "wide_mlp"]
    a = {n: auc_jax(tasks.TASKS[n], range(N_SEEDS), full=True) for n in names}
    b = {n: auc_torch(tasks.TASKS[n], range(N_SEEDS), full=True) for n in names}
    ok, rows, table = verdict(a, b)
    print(f"\nfull horizon, jaxfit (A) vs PyTorch (B):\n{table}")
    _write("convergence_full.json", {"horizon": "full", "rows": rows, "all_equivalent": ok})
    assert ok, table

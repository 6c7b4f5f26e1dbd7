"""Batched search against the grid (issue 19): how many trials `jaxfit.search` needs to find the
large sweep's best setting, and what Optuna's own one-trial-at-a-time loop over `torchref.train`
would wait for the same trials.

    python -m benchmarks.search             # 5-15 minutes on a 2-core CPU
    python -m benchmarks.search --quick     # a smoke run (the quick large sweep, tiny counts)

1. The grid: the large sweep (benchmarks/sweep.py: 12 architectures x relu/tanh/gelu x sgd/adam x
   3 learning rates = 216 settings, 5 seeds each, 10 epochs, sum_mod) trained once by `jaxfit.sweep`.
   A *setting* is a config without its seed; its value is the seed-averaged final val_acc. The grid's
   best is the best setting's value, its seed spread the std (ddof=0) of that setting's 5 seeds.
2. Searches: for each `--batches` entry (sampler:batch) and each of `--search-seeds` sampler seeds,
   `jaxfit.search` over the same space (the grid's axes as categorical lists; momentum, batch size,
   epochs fixed; seeds=5, metric="val_acc") is grown round by round in a temporary directory (a rerun
   with more trials continues it: earlier rounds are loaded, not retrained) until a trial's setting
   reaches the grid's best value, or `--max-trials` (default: the number of settings) are used, or
   every setting was trained. "Reached" is judged on the grid's own numbers for the trial's setting
   (the search's own values are compared with them: `max_abs_diff_vs_grid`). Recorded: trials to the
   best (1-based trial index), trials to within one seed-std of it, distinct settings trained by then,
   the wall of the search calls and the ask / train / tell split of each newly trained round.
   Each search starts from an empty program cache, as a fresh process's search would.
3. Optuna's own loop: `optuna.create_study(direction="maximize", sampler=TPESampler(seed=0))`,
   `study.optimize(objective, n_trials=--torch-trials)`; the objective trains the trial's 5 seed
   configs one after another with `torchref.train` (torch.set_num_threads(1), as train_many's workers)
   and returns the mean of their last-epoch `curves["val_acc"]`. Its median seconds per trial (plus
   Optuna's own per-trial overhead) is scaled to the trials each search needed and to all settings.

Writes benchmarks/results/search-<machine>[-quick].json and .png (best-so-far vs trials). A benchmark
measures: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shutil
import statistics
import tempfile
import time

from benchmarks import common  # noqa: F401  (configures host devices before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxfit  # noqa: E402
from benchmarks.sweep import _jsonable, sweep_definition  # noqa: E402
from jaxfit.engine import compile as programs  # noqa: E402

SCHEMA = "jaxfit-benchmarks-search/1"
METRIC = "val_acc"
TARGET_FRACTION = 0.25  # issue 19: TPE with batches of 64 reaches the grid's best with <= 25% of its trials
TIE = 1e-9  # settings whose grid value is within this of the best count as reaching it


# ----------------------------------------------------------------------------- the grid


def searched_names(grid: dict) -> list[str]:
    """The searched fields: the grid's list axes but the seed."""
    return [k for k, v in grid.items() if k != "seed" and isinstance(v, list)]


def space_of(grid: dict) -> dict:
    """The search space: the grid's list axes as categorical choices, the rest fixed (no seed)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in grid.items() if k != "seed"}


def setting_of_config(c, names: list[str]) -> tuple:
    return tuple(tuple(getattr(c, n)) if n == "hidden" else getattr(c, n) for n in names)


def setting_of_params(params: dict, names: list[str]) -> tuple:
    out = []
    for n in names:
        v = params[n]
        out.append(ast.literal_eval(v) if n == "hidden" and isinstance(v, str) else v)
    return tuple(tuple(v) if n == "hidden" else v for n, v in zip(names, out))


def grid_settings(result, names: list[str]) -> dict:
    """{setting: {"mean", "std", "members"}} of the grid's final val_acc (seed mean, std ddof=0)."""
    col = result.table[f"final_{METRIC}"].to_numpy(dtype=float)
    groups: dict = {}
    for i, c in enumerate(result.configs):
        groups.setdefault(setting_of_config(c, names), []).append(i)
    return {k: {"mean": float(np.mean(col[m])), "std": float(np.std(col[m])), "members": m}
            for k, m in groups.items()}


def describe(setting: tuple, names: list[str]) -> str:
    return " ".join(f"{n}={v}" for n, v in zip(names, setting))


# ----------------------------------------------------------------------------- one search, grown round by round


def grow_search(data, space, names, grid, best, spread, *, sampler, batch, seed, seeds, max_trials, n_settings,
                startup=None):
    """jaxfit.search grown by one round per call until a trial reaches the grid's best (on the
    grid's numbers), max_trials are used, or every setting is trained. Returns the record."""
    tmp = tempfile.mkdtemp(prefix="jaxfit-search-bench-")
    programs.clear_cache()
    jax.clear_caches()
    calls, rounds = [], []
    try:
        trials = 0
        while True:
            trials = min(trials + (batch if trials else (startup or batch)), max_trials)
            t0 = time.perf_counter()
            found = jaxfit.search(data, space, trials=trials, batch=batch, startup=startup, sampler=sampler, metric=METRIC,
                                  seeds=seeds, directory=tmp, seed=seed)
            calls.append(time.perf_counter() - t0)
            rounds.extend(r for r in found.meta["rounds"] if not r["resumed"])
            t = found.trials.sort_values("number")
            keys = [setting_of_params({n: row[f"param_{n}"] for n in names}, names) for _, row in t.iterrows()]
            on_grid = np.array([grid[k]["mean"] for k in keys])
            reached = bool(np.any(on_grid >= best - TIE))
            distinct = len(set(keys))
            if reached or trials >= max_trials or distinct >= n_settings:
                break
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    own = t["value"].to_numpy(dtype=float)
    so_far_grid = np.maximum.accumulate(on_grid)
    so_far_own = found.best_so_far()

    def first(mask) -> int | None:
        idx = np.flatnonzero(mask)
        return int(idx[0]) + 1 if idx.size else None

    to_best = first(so_far_grid >= best - TIE)
    to_std = first(so_far_grid >= best - spread - TIE)
    own_to_best = first(so_far_own >= best - TIE)
    states = t["state"].tolist()
    search_s = sum(r["ask_s"] + r["train_s"] + r["tell_s"] for r in rounds)
    return {
        "sampler": sampler, "batch": batch, "startup": startup, "seed": seed, "reached": to_best is not None,
        "trials_to_best": to_best, "fraction_of_settings": to_best / n_settings if to_best else None,
        "distinct_settings_to_best": len(set(keys[:to_best])) if to_best else None,
        "trials_to_within_std": to_std, "distinct_settings_to_within_std": len(set(keys[:to_std])) if to_std else None,
        "trials_to_best_on_own_values": own_to_best,
        "trials_run": len(keys), "rounds": len(rounds), "distinct_settings_trained": distinct,
        "configs_trained": int(sum(r["configs_trained"] for r in rounds)),
        "repeats_told_untrained": len(keys) - distinct,
        "states": {s: states.count(s) for s in sorted(set(states))},
        "best_on_grid_numbers": float(so_far_grid[-1]), "best_own_value": float(np.nanmax(own)),
        "max_abs_diff_vs_grid": float(np.nanmax(np.abs(own - on_grid))),
        "call_walls_s": calls, "calls_wall_s": sum(calls), "search_s": search_s,
        "ask_s": sum(r["ask_s"] for r in rounds), "train_s": sum(r["train_s"] for r in rounds),
        "tell_s": sum(r["tell_s"] for r in rounds),
        **{f"sweeps_{k}": found.result.meta.get(k) for k in ("compile_s", "run_s", "programs_compiled")},
        "round_meta": [{k: r[k] for k in ("round", "trials", "configs_trained", "ask_s", "train_s", "tell_s", "best")}
                       for r in rounds],
        "best_so_far_on_grid": so_far_grid.tolist(),
    }


# ----------------------------------------------------------------------------- Optuna's own loop


def optuna_loop(data, grid_result, grid, names, choices, *, n_trials: int, seed: int) -> dict:
    """Optuna's one-trial-at-a-time loop: each trial trains its setting's seed configs with torchref.train."""
    import optuna
    import torch

    import torchref

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads0 = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchref.train_many's workers: tiny models, one thread
    per_trial, rows = [], []

    def objective(trial) -> float:
        params = {n: trial.suggest_categorical(n, [repr(c) if n == "hidden" else c for c in choices[n]])
                  for n in names}
        key = setting_of_params(params, names)
        t0 = time.perf_counter()
        accs = [float(torchref.train(data, grid_result.configs[i]).curves["val_acc"][-1])
                for i in grid[key]["members"]]
        dt = time.perf_counter() - t0
        per_trial.append(dt)
        value = float(np.mean(accs))
        rows.append({"setting": describe(key, names), "seconds": dt, "torch_val_acc": value,
                     "jaxfit_grid_val_acc": grid[key]["mean"]})
        return value

    try:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=n_trials)
        wall = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads0)
    overhead = max(0.0, (wall - sum(per_trial)) / n_trials)
    med = statistics.median(per_trial)
    return {"trials": n_trials, "seed": seed, "torch_threads": 1, "optimize_wall_s": wall,
            "median_trial_s": med, "mean_trial_s": statistics.mean(per_trial),
            "optuna_overhead_per_trial_s": overhead, "seconds_per_trial": med + overhead,
            "trial_s": per_trial, "trials_detail": rows}


# ----------------------------------------------------------------------------- output


def _f(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def median_or_none(xs):
    """The median with runs that never reached counted as infinitely many trials (None if that is the median)."""
    vals = sorted(math.inf if x is None else x for x in xs)
    if not vals:
        return None
    m = statistics.median(vals)
    return None if math.isinf(m) else float(m)


def plot(runs, best, spread, n_settings, title, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = {}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for r in runs:
        label = label_of(r["sampler"], r["batch"], r["startup"])
        first = label not in colors
        colors.setdefault(label, palette[len(colors) % len(palette)])
        y = r["best_so_far_on_grid"]
        ax.step(range(1, len(y) + 1), y, where="post", color=colors[label], alpha=0.8, lw=1.2,
                label=label if first else None)
        if r["trials_to_best"]:
            ax.plot(r["trials_to_best"], best, "o", color=colors[label], ms=4)
    ax.axhline(best, color="black", lw=0.8, ls="--", label="grid's best")
    ax.axhline(best - spread, color="gray", lw=0.8, ls=":", label="grid's best - 1 seed-std")
    ax.axvline(TARGET_FRACTION * n_settings, color="tab:red", lw=0.8, ls="-.",
               label=f"{TARGET_FRACTION:.0%} of {n_settings} settings")
    ax.set_xlabel("trials (in trial order)")
    ax.set_ylabel("best seed-mean final val_acc so far (grid's numbers)")
    lo = min(min(r["best_so_far_on_grid"]) for r in runs)
    ax.set_ylim(max(lo, best - 10 * max(spread, 1e-3)), best + 2 * max(spread, 1e-3))
    ax.set_xlim(0, max(len(r["best_so_far_on_grid"]) for r in runs) + 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the driver


def parse_batches(text: str) -> list[tuple[str, int, int | None]]:
    """sampler:batch[:startup] entries (startup: the first round's trials, default the batch)."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, *nums = part.strip().split(":")
        if name not in ("tpe", "random", "qmc") or not 1 <= len(nums) <= 2 or not all(x.isdigit() and int(x) >= 1
                                                                                   for x in nums):
            raise SystemExit(f"--batches: {part!r} is not sampler:batch[:startup] (sampler tpe, random or qmc)")
        out.append((name, int(nums[0]), int(nums[1]) if len(nums) == 2 else None))
    return out


def label_of(sampler: str, batch: int, startup) -> str:
    return f"{sampler} batch {batch}" + (f" (first {startup})" if startup else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.search", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the quick large sweep (12 settings, 1 epoch), tiny counts")
    p.add_argument("--search-seeds", type=int, default=None, help="sampler seeds per search (default 3, quick 1)")
    p.add_argument("--batches", default=None,
                   help="comma-separated sampler:batch[:startup] (default tpe:64,random:64,tpe:16; quick "
                        "tpe:4,random:4); startup: the first round's trials")
    p.add_argument("--max-trials", type=int, default=None, help="trials a search may use (default: the settings)")
    p.add_argument("--torch-trials", type=int, default=None, help="trials of Optuna's own loop (default 8, quick 2)")
    p.add_argument("--machine", default="cpu2")
    p.add_argument("--machine-shared", action="store_true",
                   help="record that other work shared the machine while this ran")
    p.add_argument("--out", default=None, help="the JSON path (default benchmarks/results/search-<machine>.json)")
    p.add_argument("--no-plot", action="store_true")
    a = p.parse_args(argv)
    search_seeds = a.search_seeds or (1 if a.quick else 3)
    batches = parse_batches(a.batches or ("tpe:4,random:4" if a.quick else "tpe:64,random:64,tpe:16"))
    torch_trials = a.torch_trials or (2 if a.quick else 8)
    t_start = time.perf_counter()

    d = sweep_definition("large", a.quick)
    gdef = d["grid"]
    names = searched_names(gdef)
    seeds = len(gdef["seed"])
    assert gdef["seed"] == list(range(seeds)), "search trains seeds 0..seeds-1: the grid must too"
    space = space_of(gdef)
    choices = {n: gdef[n] for n in names}
    data = jaxfit.datasets.load(d["datasets"][0])
    configs = jaxfit.grid(**gdef)
    n_settings = len(configs) // seeds
    max_trials = a.max_trials or n_settings

    jaxfit.sweep(data, jaxfit.grid(hidden=(3,), epochs=1, seed=[0]))  # warm-up: a process's first compile
    programs.clear_cache()
    jax.clear_caches()
    t0 = time.perf_counter()
    grid_result = jaxfit.sweep(data, configs)
    grid_wall = time.perf_counter() - t0
    grid = grid_settings(grid_result, names)
    assert len(grid) == n_settings
    best_key = max(grid, key=lambda k: grid[k]["mean"])
    best, spread = grid[best_key]["mean"], grid[best_key]["std"]
    ties = [k for k in grid if grid[k]["mean"] >= best - TIE]
    within = [k for k in grid if grid[k]["mean"] >= best - spread - TIE]
    ranked = grid_result.ranking(METRIC)[1][0]
    ranking_top = setting_of_config(grid_result.configs[ranked[0]], names)
    print(f"grid: {len(configs)} configs = {n_settings} settings x {seeds} seeds, {grid_wall:.1f} s "
          f"(compile {grid_result.meta['compile_s']:.1f} s), {jax.device_count()} device(s)")
    print(f"grid's best: {describe(best_key, names)}: {METRIC} {best:.4f} +- {spread:.4f} over seeds; "
          f"{len(ties)} setting(s) tie at it, {len(within)} within one seed-std"
          + ("" if ranking_top in ties else f" (ranking()'s top differs: {describe(ranking_top, names)})"))

    runs = []
    for sampler, batch, startup in batches:
        for s in range(search_seeds):
            r = grow_search(data, space, names, grid, best, spread, sampler=sampler, batch=batch, seed=s,
                            seeds=seeds, max_trials=max_trials, n_settings=n_settings, startup=startup)
            runs.append(r)
            print(f"  {label_of(sampler, batch, startup)} seed {s}: best at trial {_f(r['trials_to_best'], 'd', 'never')} "
                  f"({r['distinct_settings_trained']} settings trained in {r['rounds']} round(s)), "
                  f"search {r['search_s']:.1f} s (ask {r['ask_s']:.1f}, train {r['train_s']:.1f} of which compile "
                  f"{_f(r['sweeps_compile_s'], '.1f')}), "
                  f"calls {r['calls_wall_s']:.1f} s", flush=True)

    loop = optuna_loop(data, grid_result, grid, names, choices, n_trials=torch_trials, seed=0)
    per = loop["seconds_per_trial"]
    print(f"Optuna's own loop over torchref.train: {torch_trials} trials, median {loop['median_trial_s']:.2f} s "
          f"per trial (+ {loop['optuna_overhead_per_trial_s'] * 1e3:.1f} ms Optuna)", flush=True)

    summary = []
    for sampler, batch, startup in batches:
        mine = [r for r in runs if (r["sampler"], r["batch"], r["startup"]) == (sampler, batch, startup)]
        med_trials = median_or_none([r["trials_to_best"] for r in mine])
        med_std = median_or_none([r["trials_to_within_std"] for r in mine])
        med_distinct = median_or_none([r["distinct_settings_to_best"] for r in mine])
        med_search = statistics.median(r["search_s"] for r in mine)
        med_calls = statistics.median(r["calls_wall_s"] for r in mine)
        torch_s = per * med_trials if med_trials else None
        per_seed_ratio = [per * r["trials_to_best"] / r["search_s"] for r in mine if r["trials_to_best"]]
        summary.append({
            "sampler": sampler, "batch": batch, "startup": startup, "runs": len(mine),
            "reached": sum(r["reached"] for r in mine),
            "reached_in_first_round": sum(bool(r["trials_to_best"]) and r["trials_to_best"] <= (startup or batch)
                                          for r in mine),
            "runs_within_target": sum(bool(r["trials_to_best"]) and r["trials_to_best"] <= TARGET_FRACTION * n_settings
                                      for r in mine),
            "median_trials_to_best": med_trials,
            "median_fraction_of_settings": med_trials / n_settings if med_trials else None,
            "median_trials_to_within_std": med_std, "median_distinct_settings_to_best": med_distinct,
            "median_search_s": med_search, "median_calls_wall_s": med_calls,
            "median_ask_s": statistics.median(r["ask_s"] for r in mine),
            "median_train_s": statistics.median(r["train_s"] for r in mine),
            "median_tell_s": statistics.median(r["tell_s"] for r in mine),
            "optuna_torch_s_for_median_trials": torch_s,
            "optuna_torch_over_jaxfit_search": torch_s / med_search if torch_s else None,
            "optuna_torch_over_jaxfit_search_per_seed": per_seed_ratio,
            "target_met": (med_trials is not None and med_trials <= TARGET_FRACTION * n_settings)
            if (sampler, batch) == ("tpe", 64) else None,  # with or without a smaller first round
        })
    torch_all = per * n_settings

    head = (f"{'search':16} {'seed':>4} {'to best':>7} {'% of ' + str(n_settings):>8} {'to 1sd':>6} "
            f"{'distinct':>8} {'trained':>7} {'rounds':>6} {'search s':>8} {'ask s':>6} {'train s':>7} "
            f"{'tell s':>6} {'calls s':>7} {'torch s':>8} {'x':>6}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in runs:
        tb = r["trials_to_best"]
        ts = per * tb if tb else None
        print(f"{label_of(r['sampler'], r['batch'], r['startup']):16} {r['seed']:>4} {_f(tb, 'd', 'never'):>7} "
              f"{_f(tb / n_settings if tb else None, '8.1%'):>8} {_f(r['trials_to_within_std'], 'd', 'never'):>6} "
              f"{_f(r['distinct_settings_to_best'], 'd'):>8} {r['distinct_settings_trained']:>7d} {r['rounds']:>6d} "
              f"{r['search_s']:8.1f} {r['ask_s']:6.2f} {r['train_s']:7.1f} {r['tell_s']:6.2f} "
              f"{r['calls_wall_s']:7.1f} {_f(ts, '8.1f'):>8} {_f(ts / r['search_s'] if ts else None, '6.1f'):>6}")
    print("-" * len(head))
    for m in summary:
        mt = m["median_trials_to_best"]
        print(f"{label_of(m['sampler'], m['batch'], m['startup']):16} {'med':>4} {_f(mt, 'g', 'never'):>7} "
              f"{_f(m['median_fraction_of_settings'], '8.1%'):>8} {_f(m['median_trials_to_within_std'], 'g'):>6} "
              f"{_f(m['median_distinct_settings_to_best'], 'g'):>8} {'':>7} {'':>6} {m['median_search_s']:8.1f} "
              f"{m['median_ask_s']:6.2f} {m['median_train_s']:7.1f} {m['median_tell_s']:6.2f} "
              f"{m['median_calls_wall_s']:7.1f} {_f(m['optuna_torch_s_for_median_trials'], '8.1f'):>8} "
              f"{_f(m['optuna_torch_over_jaxfit_search'], '6.1f'):>6}   reached {m['reached']}/{m['runs']}, "
              f"{m['reached_in_first_round']} in round 1, {m['runs_within_target']} within "
              f"{TARGET_FRACTION:.0%}")
    print("to best / to 1sd: trials until a trial's setting reaches the grid's best value (within one seed-std); "
          "distinct: settings trained by then; search s: ask + train + tell of the rounds trained (one call's work); "
          "calls s: the wall of the growing calls (each reloads the earlier rounds); torch s: Optuna's own loop over "
          f"torchref.train for the same trials ({per:.2f} s per trial, scaled); x: torch s / search s")
    print(f"all {n_settings} settings: jaxfit grid {grid_wall:.1f} s; Optuna's loop over torchref.train "
          f"{torch_all:.0f} s (scaled, x{torch_all / grid_wall:.1f})")
    for tpe64 in [m for m in summary if (m["sampler"], m["batch"]) == ("tpe", 64)]:
        label = label_of("tpe", 64, tpe64["startup"])
        print(f"target ({label} reaches the grid's best with <= {TARGET_FRACTION:.0%} of {n_settings} = "
              f"{TARGET_FRACTION * n_settings:g} trials): median {_f(tpe64['median_trials_to_best'], 'g', 'never')} "
              f"trials -> {'met' if tpe64['target_met'] else 'NOT met'} ({tpe64['runs_within_target']} of "
              f"{tpe64['runs']} seeds within it, {tpe64['reached_in_first_round']} found it in the first, random, round)")

    out = a.out or os.path.join(os.path.dirname(__file__), "results",
                                f"search-{a.machine}{'-quick' if a.quick else ''}.json")
    doc = {
        "schema": SCHEMA, "machine": a.machine, "machine_shared": a.machine_shared, "date": common.now_iso(),
        "device": common.describe_device("cpu"), "devices": jax.device_count(), "versions": common.versions(),
        "quick": a.quick, "wall_s": time.perf_counter() - t_start,
        "options": {"search_seeds": search_seeds,
                    "batches": [f"{s}:{b}" + (f":{st}" if st else "") for s, b, st in batches],
                    "max_trials": max_trials, "torch_trials": torch_trials, "metric": METRIC, "seeds": seeds},
        "space": {"searched": {n: _jsonable(choices[n]) for n in names},
                  "fixed": {k: _jsonable(v) for k, v in space.items() if k not in names}},
        "grid": {"configs": len(configs), "settings": n_settings, "wall_s": grid_wall,
                 **{k: grid_result.meta[k] for k in ("wall_s", "compile_s", "run_s", "programs")
                    if k in grid_result.meta and k != "wall_s"}, "train_wall_s": grid_result.meta.get("wall_s"),
                 "best": {"setting": describe(best_key, names), "mean": best, "std": spread,
                          "seed_values": [float(grid_result.table[f"final_{METRIC}"].iloc[i])
                                          for i in grid[best_key]["members"]]},
                 "ties_at_best": [describe(k, names) for k in ties],
                 "settings_within_one_std": len(within),
                 "ranking_top": describe(ranking_top, names)},
        "target": {"fraction": TARGET_FRACTION, "trials": TARGET_FRACTION * n_settings,
                   "met": tpe64["target_met"] if tpe64 else None},
        "runs": runs, "summary": summary, "optuna_torch_loop": loop,
        "optuna_torch_all_settings_s": torch_all, "optuna_torch_all_over_grid": torch_all / grid_wall,
        "how": {
            "trials_to_best": "1-based index (trial order) of the first trial whose setting's grid value (seed-mean "
                              "final val_acc of the full grid) is within 1e-9 of the grid's best; the medians count a "
                              "search that never reached as infinitely many trials",
            "search_s": "ask_s + train_s + tell_s of each round when it was first trained (SearchResult.meta): the "
                        "work of one search call with the final trials",
            "calls_wall_s": "the sum of the growing jaxfit.search calls' walls (each reloads the rounds before it)",
            "optuna_torch": "optuna TPESampler(seed) with study.optimize, one trial at a time; the objective trains "
                            "the setting's seed configs one after another with torchref.train (1 torch thread) and "
                            "returns the mean last-epoch val_acc; seconds_per_trial = median objective seconds + "
                            "Optuna's mean per-trial overhead, scaled linearly to a trial count",
            "first_round": "a round's trials are all asked before any is told, so TPE's first round (no trial told "
                           "yet, n_startup_trials=min(batch, 10)) is random sampling: the same trials as "
                           "sampler='random' with the same seed (named samplers are re-seeded per round from seed "
                           "and round); reached_in_first_round counts the runs that found the best there",
            "target_met": "tpe batch 64's median trials_to_best over the sampler seeds <= fraction x settings",
            "cold": "each search starts from an empty program cache (programs.clear_cache, jax.clear_caches)",
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(_jsonable(doc), f, indent=1)
    if not a.no_plot:
        png = os.path.splitext(out)[0] + ".png"
        plot(runs, best, spread, n_settings, f"{doc['device']} | {doc['date'][:10]} | large sweep "
             f"({n_settings} settings x {seeds} seeds){' | quick' if a.quick else ''}", png)
        print(f"wrote {out} and {png}")
    else:
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

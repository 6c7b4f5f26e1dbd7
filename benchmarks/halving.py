"""What successive halving saves and what it finds: the large sweep (benchmarks/sweep.py) trained in
full and with `prune=jaxfit.Halving(...)`, side by side in one process.

    python -m benchmarks.halving            # about 3 minutes on a 2-core CPU
    python -m benchmarks.halving --quick    # a smoke run

Wall time is the whole `jaxfit.sweep` call (training, results, diagnostics). Each sweep starts from an empty program cache (cold compile, no persistent cache) and the two
alternate `--repeats` times; wall and model-steps are medians. "Best" is the setting (a config
without its seed) with the best seed-averaged final `--metric` among those trained to the end;
the pruned run's best is compared with the full grid's on the full grid's own numbers (a survivor
trains exactly as unpruned), against the spread of the full best's seeds. Writes
benchmarks/results/halving-<machine>.json. It measures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from benchmarks import common  # noqa: F401  (configures host devices before JAX starts)

import jax  # noqa: E402

import jaxfit  # noqa: E402
from benchmarks.sweep import sweep_configs  # noqa: E402
from jaxfit.engine import compile as programs  # noqa: E402
from jaxfit.engine.prune import METRICS, group_keys  # noqa: E402


def settings(result, metric: str, only=None) -> dict:
    """{setting key: (mean, std over seeds, [config indices])} of the configs trained to the end."""
    t = result.table
    keys = group_keys(result.configs, ("seed",))
    out: dict = {}
    for i, k in enumerate(keys):
        if only is not None and not only[i]:
            continue
        out.setdefault(k, []).append(i)
    col = f"final_{metric}"
    return {k: (float(t[col].iloc[m].mean()), float(t[col].iloc[m].std(ddof=0)), m) for k, m in out.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--metric", default="val_loss", choices=sorted(METRICS))
    p.add_argument("--min-epochs", type=int, default=1)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--machine", default="cpu2")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    configs = sweep_configs("large", a.quick)
    data = jaxfit.datasets.load("sum_mod")
    halving = jaxfit.Halving(metric=a.metric, min_epochs=a.min_epochs, eta=a.eta)
    jaxfit.sweep(data, jaxfit.grid(hidden=(3,), epochs=1, seed=[0]))  # warm-up: a process's first compile
    runs: dict[str, list] = {"full": [], "halving": []}
    kept = {}
    for _ in range(1 if a.quick else a.repeats):
        for name, prune in (("full", None), ("halving", halving)):
            programs.clear_cache()
            jax.clear_caches()
            t0 = time.perf_counter()
            r = jaxfit.sweep(data, configs, prune=prune)
            call = time.perf_counter() - t0  # what the user waits for: the results and diagnostics too
            runs[name].append({"wall_s": call, "train_wall_s": r.meta["wall_s"],
                               **{k: r.meta[k] for k in ("compile_s", "run_s", "model_steps_trained", "compiles")}})
            kept[name] = r
    full, pruned = kept["full"], kept["halving"]
    sign = 1 if METRICS[a.metric] == "min" else -1
    grid = settings(full, a.metric)
    best_full = min(grid, key=lambda k: sign * grid[k][0])
    done = ~pruned.table["pruned"].to_numpy()
    survivors = settings(pruned, a.metric, only=done)
    best_pruned = min(survivors, key=lambda k: sign * survivors[k][0])
    mean_f, std_f, members_f = grid[best_full]
    mean_p = grid[best_pruned][0]  # the pruned run's pick, on the full grid's numbers
    med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in runs.items()}
    steps = med["halving"]["model_steps_trained"] / med["full"]["model_steps_trained"]
    wall = med["halving"]["wall_s"] / med["full"]["wall_s"]
    same = best_full == best_pruned
    within = abs(mean_p - mean_f) <= std_f
    c = full.configs[members_f[0]]
    print(f"large sweep, {len(configs)} configs, Halving(metric={a.metric!r}, min_epochs={a.min_epochs}, eta={a.eta}), "
          f"{jax.device_count()} device(s)")
    print(f"{'':10} {'wall s':>8} {'compile s':>10} {'run s':>7} {'model-steps':>12} {'programs':>9}")
    for name in ("full", "halving"):
        m = med[name]
        print(f"{name:10} {m['wall_s']:8.2f} {m['compile_s']:10.2f} {m['run_s']:7.2f} "
              f"{int(m['model_steps_trained']):12,d} {int(m['compiles']):9d}")
    print(f"halving / full: model-steps {steps:.1%} (goal <= 35%), wall {wall:.1%} (goal <= 45%)")
    print(f"best setting of the full grid: hidden={c.hidden} {c.activation} {c.optimizer} lr={c.lr}: "
          f"{a.metric} {mean_f:.4f} +- {std_f:.4f} over seeds")
    print(f"halving's best: {'the same' if same else 'another'} setting, {a.metric} {mean_p:.4f} on the full grid's "
          f"numbers ({'within' if within else 'outside'} the seed spread); rungs: "
          + ", ".join(f"{r['epoch']}: {r['ranked']} -> {r['kept']}" for r in pruned.meta["prune"]["rungs"]))
    out = a.out or os.path.join(os.path.dirname(__file__), "results",
                                f"halving-{a.machine}{'-quick' if a.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"machine": a.machine, "devices": jax.device_count(), "configs": len(configs),
                   "halving": halving.record(), "runs": runs, "medians": med, "steps_ratio": steps,
                   "wall_ratio": wall, "same_best": same, "within_seed_spread": within,
                   "best_full": {"mean": mean_f, "std": std_f, "configs": members_f},
                   "best_halving_on_full_numbers": mean_p, "rungs": pruned.meta["prune"]["rungs"],
                   "versions": {"jax": jax.__version__, "jaxfit": jaxfit.__version__}}, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The planner's cost model against measured times: plans of many shapes (fused and unfused, one
depth per bucket or several, the benchmark sweeps' own plans), each bucket's compile and run time
measured, the constants refitted to them (least squares on relative error, non-negative), and every
bucket's estimate with the current and the refitted constants printed beside what it measured.

    python -m benchmarks.costfit            # about 4 minutes on a 2-core CPU
    python -m benchmarks.costfit --quick    # a smoke run (fewer epochs and cases)

One process, no persistent cache (every program is a cold compile, measured once), a warm-up compile
first. Writes benchmarks/results/costfit-<machine>.json. The refitted constants are printed as a
`COST["cpu"]` entry for jaxfit/engine/plan.py; copying them there is a decision, not done here.
It measures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks import common  # noqa: F401  (configures host devices before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from scipy.optimize import nnls  # noqa: E402  (SciPy comes with JAX)

import jaxfit  # noqa: E402
from benchmarks.sweep import sweep_configs  # noqa: E402
from jaxfit.engine import plan as planmod  # noqa: E402


def cases(quick: bool) -> list[tuple[str, list, str]]:
    """(name, configs, fuse) of every plan measured, all on sum_mod."""
    default = sweep_configs("default", quick)
    large = sweep_configs("large", quick)
    w1 = jaxfit.grid(hidden=(2,), activation="relu", optimizer="sgd", lr=[0.01, 0.1], batch_size=1,
                     seed=range(4 if quick else 32), epochs=1)
    out = [("default", default, "auto"), ("large", large, "auto"), ("default fuse=all", default, "all"),
           ("default fuse=none", default, "none"), ("W1 batch 1", w1, "auto")]
    for depth in (1, 2, 3):
        out.append((f"default depth {depth}", [c for c in default if len(c.hidden) == depth], "auto"))
    out.append(("large relu", [c for c in large if c.activation == "relu"], "auto"))
    return [c for c in out if c[1]]


def measure(data, name, configs, fuse, platform) -> list[dict]:
    jaxfit.engine.compile.clear_cache()
    jax.clear_caches()
    r = jaxfit.sweep(data, configs, fuse=fuse)
    buckets = planmod.plan_buckets(data, configs, fuse=fuse, platform=platform)
    rows = []
    for pl, b in zip(r.meta["plans"], buckets):
        assert pl["bucket"] == b.index
        n = sum(len(c) for c in pl["chunks"])
        rows.append({"case": name, "bucket": b.index, "configs": n, "padded_hidden": list(b.spec.arch.hidden),
                     "activations": list(b.spec.arch.activations), "optimizers": list(b.spec.optimizers),
                     "source": pl["source"], "compile_s": pl["compile_s"], "run_s": pl["run_s"],
                     "features": planmod.cost_features(b.spec, n)})
    return rows


def fit(rows: list[dict], terms: tuple[str, ...], target: str) -> dict[str, float]:
    """Non-negative coefficients minimising the sum of squared relative errors (each row / its
    measured time). The run model's "rate" term is FLOPs / rate: fitted as 1 / rate."""
    A = np.array([[r["features"][t] for t in terms] for r in rows], dtype=float)
    y = np.array([r[target] for r in rows], dtype=float)
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls((A / scale) / y[:, None], np.ones(len(y)))
    coef = coef / scale
    out = dict(zip(terms, coef.tolist()))
    if "rate" in out:
        out["rate"] = 1.0 / out["rate"] if out["rate"] > 0 else float("inf")
    return out


def rel_errors(rows, constants) -> list[dict]:
    out = []
    for r in rows:
        est = planmod.cost_of(r["features"], constants)
        est_c, est_r = est["compile_s"], est["run_s"]
        out.append({"compile": est_c / r["compile_s"] - 1 if r["source"] == "compiled" else None,
                    "run": est_r / r["run_s"] - 1, "est_compile_s": est_c, "est_run_s": est_r})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--machine", default="cpu2")
    a = p.parse_args(argv)
    platform = jax.devices()[0].platform
    data = jaxfit.datasets.load("sum_mod")
    jaxfit.sweep(data, jaxfit.grid(hidden=(3,), epochs=1, seed=[0]))  # warm-up: the first compile of a process
    rows = []
    for name, configs, fuse in cases(a.quick):
        got = measure(data, name, configs, fuse, platform)
        rows += got
        print(f"{name}: {len(got)} bucket(s), compile {sum(r['compile_s'] for r in got):.2f} s, "
              f"run {sum(r['run_s'] for r in got):.2f} s", flush=True)
    compiled = [r for r in rows if r["source"] == "compiled"]
    old = dict(planmod.cost_constants(platform))
    new = {**fit(compiled, planmod.COMPILE_TERMS, "compile_s"), **fit(rows, planmod.RUN_TERMS, "run_s")}
    e_old, e_new = rel_errors(rows, old), rel_errors(rows, new)
    print(f"\n{'case':22} {'bkt':>3} {'cfgs':>5} {'padded':>12} | {'compile':>7} {'old':>6} {'new':>6} | "
          f"{'run':>6} {'old':>6} {'new':>6}")
    for r, o, n in zip(rows, e_old, e_new):
        print(f"{r['case'][:22]:22} {r['bucket']:>3} {r['configs']:>5} {'x'.join(map(str, r['padded_hidden'])):>12} | "
              f"{r['compile_s']:7.2f} {o['est_compile_s']:6.2f} {n['est_compile_s']:6.2f} | "
              f"{r['run_s']:6.2f} {o['est_run_s']:6.2f} {n['est_run_s']:6.2f}")
    per_case = {}
    for r, o, n in zip(rows, e_old, e_new):
        c = per_case.setdefault(r["case"], {"compile_s": 0.0, "run_s": 0.0, "old": [0.0, 0.0], "new": [0.0, 0.0]})
        if r["source"] == "compiled":
            c["compile_s"] += r["compile_s"]
            c["old"][0] += o["est_compile_s"]
            c["new"][0] += n["est_compile_s"]
        c["run_s"] += r["run_s"]
        c["old"][1] += o["est_run_s"]
        c["new"][1] += n["est_run_s"]
    print(f"\n{'case (totals)':22} | {'compile':>7} {'old':>6} {'new':>6} {'new err':>7} | "
          f"{'run':>6} {'old':>6} {'new':>6} {'new err':>7}")
    for name, c in per_case.items():
        ec, er = c["new"][0] / c["compile_s"] - 1, c["new"][1] / c["run_s"] - 1
        c["new_err"] = [ec, er]
        c["old_err"] = [c["old"][0] / c["compile_s"] - 1, c["old"][1] / c["run_s"] - 1]
        print(f"{name[:22]:22} | {c['compile_s']:7.2f} {c['old'][0]:6.2f} {c['new'][0]:6.2f} {ec:+7.0%} | "
              f"{c['run_s']:6.2f} {c['old'][1]:6.2f} {c['new'][1]:6.2f} {er:+7.0%}")
    med = {k: statistics.median(abs(e[k]) for e in errs if e[k] is not None)
           for errs, k in ((e_new, "compile"), (e_new, "run"))}
    print(f"\nmedian |relative error| per bucket, refitted: compile {med['compile']:.0%}, run {med['run']:.0%}")
    print("refitted constants:\n    \"" + platform + "\": {" + ", ".join(
        f"\"{k}\": {v:.3g}" for k, v in new.items()) + "},")
    out = a.out or os.path.join(os.path.dirname(__file__), "results",
                                f"costfit-{a.machine}{'-quick' if a.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"machine": a.machine, "platform": platform, "devices": len(jax.devices()),
                   "versions": {"jax": jax.__version__, "jaxfit": jaxfit.__version__},
                   "old_constants": old, "refitted_constants": new, "rows": rows, "per_case": per_case,
                   "median_abs_error_refitted": med}, f, indent=1, default=float)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

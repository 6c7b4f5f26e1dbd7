"""What evaluating less costs and saves: the default sweep's configs (document 1's question) on one
dataset, trained with every-epoch evaluation and with `eval_every` / `eval_rows`, side by side in one
process (each setting compiled once before timing, runs alternating, medians).

    python -m benchmarks.eval_every            # about 2 minutes on a 2-core CPU
    python -m benchmarks.eval_every --quick    # a smoke run (seconds)

Prints a table (run seconds per setting, speed-up over eval_every=1) and writes
benchmarks/results/eval-every-<machine>.json. It measures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks import common  # noqa: F401  (configures host devices before JAX starts)

import jaxfit  # noqa: E402
from jaxfit.cli import default_sweep  # noqa: E402

SETTINGS = [("every epoch", dict()), ("eval_every=5", dict(eval_every=5)), ("eval_every=10", dict(eval_every=10)),
            ("eval_rows=200", dict(eval_rows=200)), ("eval_every=5, eval_rows=200", dict(eval_every=5, eval_rows=200))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=2000, help="points of sum_mod (default 2000, the default sweep's)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    epochs, repeats, n = (4, 1, 300) if a.quick else (40, a.repeats, a.n)
    data = jaxfit.datasets.sum_mod(n=n, seed=0)
    configs = jaxfit.grid(**{**default_sweep(epochs=epochs), "seed": [0, 1]})
    for _, kw in SETTINGS:  # compile every setting's programs once, untimed
        jaxfit.sweep(data, configs, **kw)
    runs: dict[str, list] = {name: [] for name, _ in SETTINGS}
    for _ in range(repeats):
        for name, kw in SETTINGS:
            r = jaxfit.sweep(data, configs, **kw)
            runs[name].append(r.meta["run_s"])
    base = statistics.median(runs["every epoch"])
    rows = [{"setting": name, "run_s_median": statistics.median(v), "run_s": v,
             "speedup": base / statistics.median(v)} for name, v in runs.items()]
    print(f"{len(configs)} configs (the default sweep's grid), sum_mod n={n}, {epochs} epochs, "
          f"{repeats} alternating runs each, {common.describe_device('cpu')}")
    print(f"{'setting':32s} {'run s (median)':>15s} {'x every epoch':>14s}")
    for r in rows:
        print(f"{r['setting']:32s} {r['run_s_median']:15.2f} {r['speedup']:14.2f}")
    out = a.out or os.path.join(os.path.dirname(__file__), "results",
                                f"eval-every-{common.machine_slug('cpu')}{'-quick' if a.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"date": common.now_iso(), "machine": common.describe_device("cpu"), "versions": common.versions(),
                   "configs": len(configs), "n": n, "epochs": epochs, "repeats": repeats, "rows": rows}, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

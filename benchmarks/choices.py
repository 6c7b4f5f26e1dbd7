"""What computing once per block of configs gains: the large sweep (benchmarks/sweep.py) with
each choice (activation, optimiser) a `lax.switch` per block of configs that share it
(jaxfit/nn/choice.py, the default) and with every branch computed for every config and selected
(JAXFIT_CHOICE_HINTS=0), side by side in one process; with `--switch seeds`, one batch order per
block of configs of one seed (the default) against every config drawing its own
(JAXFIT_SEED_BLOCKS=0).

    python -m benchmarks.choices            # about 3 minutes on a 2-core CPU
    python -m benchmarks.choices --switch seeds --sweep default
    python -m benchmarks.choices --quick    # a smoke run (seconds)

Each setting's first sweep compiles its programs (no persistent cache: its compile_s is a cold
compile, one sample); then the settings alternate, `--repeats` sweeps each, and the run times are
medians (per bucket too). Prints a table and writes benchmarks/results/choices-<machine>.json. It
measures; it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from benchmarks import common  # noqa: F401  (configures host devices before JAX starts)

import jaxfit  # noqa: E402
from benchmarks.sweep import sweep_configs  # noqa: E402

SWITCHES = {  # name -> (environment variable, [(setting, value)]): the default first, the baseline last
    "choices": ("JAXFIT_CHOICE_HINTS", [("one branch per block", "1"), ("every branch, selected", "0")]),
    "seeds": ("JAXFIT_SEED_BLOCKS", [("one batch order per block", "1"), ("every config's own order", "0")]),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    p.add_argument("--switch", choices=sorted(SWITCHES), default="choices")
    p.add_argument("--sweep", choices=["default", "large"], default="large")
    a = p.parse_args(argv)
    var, SETTINGS = SWITCHES[a.switch]

    def _sweep(data, configs, value: str):
        os.environ[var] = value  # read when a program's key is made
        return jaxfit.sweep(data, configs)

    configs = sweep_configs(a.sweep, a.quick)
    data = jaxfit.datasets.load("sum_mod")
    repeats = 1 if a.quick else a.repeats
    compile_s, buckets = {}, {}
    for name, hints in SETTINGS:
        r = _sweep(data, configs, hints)
        compile_s[name] = r.meta["compile_s"]
        buckets[name] = [{"bucket": pl["bucket"], "configs": sum(len(c) for c in pl["chunks"]),
                          "compile_s": pl["compile_s"], "run_s": []} for pl in r.meta["plans"]]
    runs: dict[str, list] = {name: [] for name, _ in SETTINGS}
    for _ in range(repeats):
        for name, hints in SETTINGS:
            r = _sweep(data, configs, hints)
            runs[name].append(r.meta["run_s"])
            for row, pl in zip(buckets[name], r.meta["plans"]):
                row["run_s"].append(pl["run_s"])
    base = SETTINGS[1][0]
    rows = [{"setting": name, "compile_s": compile_s[name], "run_s_median": statistics.median(v), "run_s": v,
             "buckets": [{**b, "run_s_median": statistics.median(b["run_s"])} for b in buckets[name]]}
            for name, v in runs.items()]
    for r in rows:
        r["run_speedup"] = statistics.median(runs[base]) / r["run_s_median"]
    print(f"{len(configs)} configs (the {a.sweep} sweep), sum_mod, {repeats} alternating runs each, "
          f"{common.describe_device('cpu')}")
    print(f"{'setting':26s} {'compile s':>10s} {'run s (median)':>15s} {'run x last':>12s}   per bucket run s")
    for r in rows:
        per = ", ".join(f"{b['run_s_median']:.2f}" for b in r["buckets"])
        print(f"{r['setting']:26s} {r['compile_s']:10.2f} {r['run_s_median']:15.2f} {r['run_speedup']:12.2f}   {per}")
    out = a.out or os.path.join(os.path.dirname(__file__), "results",
                                f"{'choices' if (a.switch, a.sweep) == ('choices', 'large') else f'{a.switch}-{a.sweep}'}-"
                                f"{common.machine_slug('cpu')}{'-quick' if a.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"date": common.now_iso(), "machine": common.describe_device("cpu"), "versions": common.versions(),
                   "switch": var, "sweep": a.sweep, "configs": len(configs), "repeats": repeats, "rows": rows}, f, indent=1)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

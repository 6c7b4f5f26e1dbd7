"""XLA options that might shorten the compilation of jaxfit's small programs, measured.

Each option set compiles and runs the default `jaxfit sweep` programs (sum_mod; the planner's two
fused programs) in a fresh process with no persistent cache, `--repeats` times; the table gives the
median compile and run seconds per program and in all, beside the defaults. The options are XLA
debug options passed per program (`Lowered.compile(compiler_options=...)`), on top of jaxfit's own
(`jaxfit.engine.cpu.cpu_options`). A measurement decides whether jaxfit uses any of them.

    python -m benchmarks.compile_options [--repeats 3] [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

OPTION_SETS = {
    "default": {},
    "opt level 1": {"xla_backend_optimization_level": 1},
    "no expensive LLVM passes": {"xla_llvm_disable_expensive_passes": True},
    "both": {"xla_backend_optimization_level": 1, "xla_llvm_disable_expensive_passes": True},
    "opt level 0": {"xla_backend_optimization_level": 0},
}

WORKER = r"""
import json, sys, time
import jaxfit
jaxfit.configure_host_devices()
from jaxfit import cli
from jaxfit.engine import cpu
extra = json.loads(sys.argv[1]); quick = sys.argv[2] == "1"
base = cpu.cpu_options
cpu.cpu_options = lambda spec, platform: {**base(spec, platform), **extra}
data = jaxfit.datasets.load("sum_mod")
grid = cli.default_sweep(epochs=4 if quick else 40, seeds=1 if quick else 2)
r = jaxfit.sweep(data, jaxfit.grid(**grid))
print(json.dumps({"compile_s": [p["compile_s"] for p in r.meta["plans"]], "run_s": [p["run_s"] for p in r.meta["plans"]],
                  "programs": [row["padded_hidden"] for row in r.meta["plan"]]}))
"""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="4 epochs, 1 seed, 1 repeat (a harness check)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--machine", default=None, help="a name for the results file (default: cpu<cores>)")
    args = ap.parse_args(argv)
    from benchmarks.common import describe_device, now_iso, versions

    repeats = 1 if args.quick else args.repeats
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    env.setdefault("JAX_PLATFORMS", "cpu")
    rows = {}
    for name, opts in OPTION_SETS.items():
        runs = []
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(opts), "1" if args.quick else "0"],
                                 env=env, capture_output=True, text=True, timeout=900, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        k = len(runs[0]["compile_s"])
        rows[name] = {
            "options": opts, "programs": runs[0]["programs"], "repeats": repeats,
            "compile_s": [statistics.median(r["compile_s"][i] for r in runs) for i in range(k)],
            "run_s": [statistics.median(r["run_s"][i] for r in runs) for i in range(k)],
            "compile_total_s": statistics.median(sum(r["compile_s"]) for r in runs),
            "run_total_s": statistics.median(sum(r["run_s"]) for r in runs),
        }
    base = rows["default"]
    print(f"{'options':28s} {'compile/program (s)':>24s} {'run/program (s)':>20s} {'compile':>8s} {'run':>7s} "
          f"{'compile vs default':>19s} {'run vs default':>15s}")
    for name, r in rows.items():
        print(f"{name:28s} {' '.join(f'{x:6.2f}' for x in r['compile_s']):>24s} "
              f"{' '.join(f'{x:6.2f}' for x in r['run_s']):>20s} {r['compile_total_s']:8.2f} {r['run_total_s']:7.2f} "
              f"{r['compile_total_s'] / base['compile_total_s']:19.2f} {r['run_total_s'] / base['run_total_s']:15.2f}")
    result = {"machine": describe_device("cpu"), "versions": versions(), "date": now_iso(), "quick": args.quick, "sweep": "jaxfit sweep default grid on sum_mod", "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    tag = args.machine or f"cpu{os.cpu_count()}"
    path = os.path.join(args.out, f"compile-options-{tag}{'-quick' if args.quick else ''}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()

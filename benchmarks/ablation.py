"""What each of jaxfit's CPU speed-ups gains, measured side by side in one run.

    python -m benchmarks.ablation [--quick] [--out benchmarks/results]

jaxfit's XLA:CPU tuning (jaxfit/engine/cpu.py) has three switches, set from the
environment; this script trains W1 (document 1's model) and W2 (2-64-64-3, Adam, batch 32) with the
defaults, with each switch flipped alone, and with all three flipped, each setting in a fresh
process (XLA flags are read when JAX starts):

  JAXFIT_SMALL_LOOPS=0   no `xla_cpu_small_while_loop_byte_threshold` (small training loops as one
                         kernel; see jaxfit/engine/cpu.py for where this 1-epoch timing and the full
                         benchmark disagree)
  JAXFIT_TINY_OPTIONS=0  XLA's YNNPACK fusions left on for tiny networks (widths <= 8)
  JAXFIT_BLOCKS=0        no cache blocking of the config axis (`lax.map` over blocks of configs)

Plus the compile-time cost of separate random-number call sites, which is why jaxfit draws a
network's initial weights in one call (jaxfit/nn/init.py): XLA compile time of a vmapped init of
the 2-64-64-3 net drawing each of its six arrays separately, against one draw cut into the six.

Per setting: model-steps/s (median of --repeats timed sweeps after a compile and a burn-in run,
run time from `result.meta`, which includes the per-epoch evaluation) and compile time. Output: a
table on stdout and `<out>/ablation-<machine>-<date>.json`. A benchmark measures: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from . import common

SETTINGS = {
    "defaults": {},
    "small loops off": {"JAXFIT_SMALL_LOOPS": "0"},
    "tiny options off": {"JAXFIT_TINY_OPTIONS": "0"},
    "blocks off": {"JAXFIT_BLOCKS": "0"},
    "no tuning": {"JAXFIT_SMALL_LOOPS": "0", "JAXFIT_TINY_OPTIONS": "0", "JAXFIT_BLOCKS": "0"},
}
# (workload, N, epochs per timed run): long enough for a stable timing, short enough for a minute each
CASES = [("W1", 1, 1), ("W1", 1024, 1), ("W2", 16, 4), ("W2", 256, 2)]
QUICK_CASES = [("W1", 1024, 1), ("W2", 256, 1)]

WORKER = r"""
import json, sys, time
import jaxfit
from benchmarks.common import get_workload
name, n, epochs, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
w = get_workload(name)
data = w.dataset(w.n_points)
configs = [w.config.replace(seed=s, epochs=epochs) for s in range(n)]
first = jaxfit.sweep(data, configs, chunk_size=n)
jaxfit.sweep(data, configs, chunk_size=n)  # burn-in
runs = [jaxfit.sweep(data, configs, chunk_size=n).meta for _ in range(repeats)]
print(json.dumps({"compile_s": first.meta["compile_s"], "rates": [m["model_steps"] / m["run_s"] for m in runs],
                  "devices": len(__import__("jax").devices()), "plans": first.meta["plans"]}))
"""

RNG_WORKER = r"""
import json, math, time
import jax, jax.numpy as jnp
widths = (2, 64, 64, 3)
pairs = list(zip(widths[:-1], widths[1:]))
def separate(seed):  # one draw per array, as most code writes it
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * len(pairs))
    return [(jax.random.uniform(keys[2 * k], (o, i)), jax.random.uniform(keys[2 * k + 1], (o,)))
            for k, (i, o) in enumerate(pairs)]
def one(seed):  # one draw, cut into the arrays (jaxfit.nn.init.dense_layers)
    z = jax.random.uniform(jax.random.PRNGKey(seed), (sum(o * i + o for i, o in pairs),))
    out, at = [], 0
    for i, o in pairs:
        out.append((z[at:at + o * i].reshape(o, i), z[at + o * i:at + o * i + o])); at += o * i + o
    return out
res = {}
for name, f in (("separate draws", separate), ("one draw", one)):
    t = time.perf_counter(); jax.jit(jax.vmap(f)).lower(jnp.arange(256)).compile(); res[name] = time.perf_counter() - t
print(json.dumps(res))
"""


def _run(code: str, args: list[str], env_changes: dict[str, str], timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXFIT_")}
    env.update(env_changes)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=root)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"only {QUICK_CASES}, one repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join("benchmarks", "results"))
    p.add_argument("--timeout", type=float, default=600, help="seconds per setting and case")
    o = p.parse_args(argv)
    cases = QUICK_CASES if o.quick else CASES
    repeats = 1 if o.quick else o.repeats
    t0 = time.perf_counter()
    rows = []
    print(f"{'case':14s} {'setting':18s} {'model-steps/s':>15s} {'x default':>9s} {'compile s':>10s}")
    for workload, n, epochs in cases:
        base = None
        for setting, env in SETTINGS.items():
            r = _run(WORKER, [workload, str(n), str(epochs), str(repeats)], env, o.timeout)
            row = {"workload": workload, "n_models": n, "epochs": epochs, "setting": setting, "env": env, **r}
            if "rates" in r:
                row["model_steps_per_s"] = common.median(r["rates"])
                base = base or row["model_steps_per_s"]
                row["ratio_to_defaults"] = row["model_steps_per_s"] / base
                print(f"{workload + ' N=' + str(n):14s} {setting:18s} {row['model_steps_per_s']:15,.0f} "
                      f"{row['ratio_to_defaults']:9.2f} {r['compile_s']:10.2f}", flush=True)
            else:
                print(f"{workload + ' N=' + str(n):14s} {setting:18s} error: {r.get('error')}", flush=True)
            rows.append(row)
    rng = _run(RNG_WORKER, [], {}, o.timeout)
    print("\ncompile of a vmapped init of 2-64-64-3 (N=256): " + ", ".join(
        f"{k} {v:.2f} s" for k, v in rng.items() if isinstance(v, float)))
    payload = {"schema": 1, "date": common.now_iso(), "device": common.describe_device("cpu"),
               "versions": common.versions(), "quick": o.quick, "repeats": repeats, "rows": rows,
               "init_compile_s": rng, "wall_s": time.perf_counter() - t0, "settings": SETTINGS}
    os.makedirs(o.out, exist_ok=True)
    path = os.path.join(o.out, f"ablation-{common.machine_slug('cpu')}-{common.today()}{'-quick' if o.quick else ''}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path} ({payload['wall_s']:.0f} s)")
    return payload


if __name__ == "__main__":
    main()

"""The main-job benchmark: a whole sweep, timed as a user waits for it, jaxfit beside the PyTorch
ways a user would pick instead (issue 9, item 6).

    python -m benchmarks.sweep [--quick] [--sweeps default,large] [--out benchmarks/results]

Two sweeps:

  default  the `jaxfit sweep` default grid (`jaxfit.cli.default_sweep()`: 5 architectures from 2-2-3
           to three layers of 64, relu/tanh, sgd (momentum 0.9)/adam, 3 learning rates, 2 seeds,
           batch 32, 40 epochs = 120 configs) on sum_mod and sum_bin (`jaxfit.datasets.load`)
  large    1,080 configs on sum_mod: 12 architectures from (2,) to (64, 64, 64), relu/tanh/gelu,
           sgd (momentum 0.9)/adam, 3 learning rates, 5 seeds, batch 32, 10 epochs

`--quick` shrinks both (8 and 24 configs, 1 epoch) so the whole script runs in about two minutes.

For each sweep, five ways, each in a fresh process started from here (so each pays its own Python
start, imports and, for jaxfit, JAX's start, as a user's script would):

  jaxfit cold           `jaxfit.configure_host_devices()`, `jaxfit.enable_compilation_cache(<a new,
                        empty directory>)`, then `jaxfit.sweep(data, configs)` per dataset
  jaxfit warm           the same in a new process with the same cache directory (the programs come
                        from the disk cache: `programs_compiled` should be 0)
  jaxfit fuse=none      cold, `jaxfit.sweep(..., fuse="none")`: one program per architecture (the
                        behaviour before the planner fused buckets)
  torch train_many      `torchref.train_many(data, configs)`: one stock PyTorch run per config
                        (DataLoader, nn.Module, torch.optim, per-epoch evaluation), one process per
                        core. For the large sweep a seeded random subset (--torch-fraction, 10%) is
                        run and its time scaled linearly to all configs (the output says so)
  torch best ensemble   per architecture group (dataset, widths, activation, optimiser), the
                        fastest of benchmarks/torch_impls.py's ensembles that can train it
                        (torch_func: any activation; torch_bmm: ReLU only; torch_compile: tried on
                        the groups where its compile could pay off, see --compile-groups), N
                        copies of the group's architecture trained at once; the sum over groups

jaxfit's numbers come from `result.meta` (compile_s, run_s, programs compiled / from disk, the
planner's buckets with their estimates and the measured time of each); `wall_s` is what the user
waits for: the whole process, from its start to its exit (imports, JAX's start, the sweeps).

Output: a table on stdout, `<out>/sweep-<machine>-<date>[-quick].json` and the same name `.png`
(bars of each way's wall time, start / compile / run apart). A benchmark measures: nothing here
asserts a time.
"""

from __future__ import annotations

import os

_ENV0 = dict(os.environ)  # the user's environment, before anything here imports jaxfit or benchmarks.common

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

SCHEMA = "jaxfit-benchmarks-sweep/1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = ("default", "large")
WAYS = ("jaxfit_cold", "jaxfit_warm", "jaxfit_fuse_none", "torch_train_many", "torch_best_ensemble")
LABELS = {"jaxfit_cold": "jaxfit, cold cache", "jaxfit_warm": "jaxfit, warm cache",
          "jaxfit_fuse_none": "jaxfit fuse=none, cold", "torch_train_many": "torch train_many",
          "torch_best_ensemble": "torch best ensemble"}
TRIAL_CAP_S = 0.3  # seconds one thread-count trial of an ensemble may last
LARGE_HIDDEN = [(2,), (4,), (8,), (16,), (32,), (64,), (8, 8), (16, 16), (32, 32), (64, 64), (32, 32, 32),
                (64, 64, 64)]


# ----------------------------------------------------------------------------- the sweeps


def sweep_definition(name: str, quick: bool) -> dict[str, Any]:
    """{"datasets": [...], "grid": jaxfit.grid keyword axes, "description": ...} of a sweep."""
    if name == "default":
        from jaxfit.cli import DEFAULT_DATASETS, default_sweep

        grid = default_sweep()
        if quick:
            grid = {**default_sweep(epochs=1, seeds=1), "hidden": [(2,), (64, 64)], "lr": [1e-2]}
        return {"datasets": list(DEFAULT_DATASETS), "grid": grid,
                "description": "the `jaxfit sweep` default grid (jaxfit.cli.default_sweep()" +
                               (", shrunk for --quick" if quick else "") + ") on each dataset"}
    if name == "large":
        grid = {"hidden": LARGE_HIDDEN, "activation": ["relu", "tanh", "gelu"], "optimizer": ["sgd", "adam"],
                "momentum": 0.9, "lr": [1e-3, 1e-2, 1e-1], "batch_size": 32, "epochs": 10, "seed": list(range(5))}
        if quick:
            grid = {**grid, "hidden": [(2,), (16, 16), (64, 64, 64)], "activation": ["relu", "gelu"],
                    "lr": [1e-2], "epochs": 1, "seed": [0, 1]}
        return {"datasets": ["sum_mod"], "grid": grid,
                "description": "many architectures, activations, both optimiser families, learning rates and "
                               "seeds on sum_mod" + (" (shrunk for --quick)" if quick else "")}
    raise ValueError(f"unknown sweep {name!r}; the sweeps are {', '.join(SWEEPS)}")


def sweep_configs(name: str, quick: bool) -> list:
    import jaxfit

    return jaxfit.grid(**sweep_definition(name, quick)["grid"])


def _subset(n: int, fraction: float, seed: int) -> list[int]:
    """A seeded random subset of range(n), at least one index, sorted."""
    if fraction >= 1.0:
        return list(range(n))
    k = max(1, min(n, round(fraction * n)))
    return sorted(random.Random(seed).sample(range(n), k))


def _group_key(c) -> tuple:
    """What an ensemble of N copies of one network shares: widths, activation, optimiser (and its
    momentum), batch size and epochs. Learning rates and seeds vary inside a group."""
    return (tuple(c.hidden), c.activation, c.optimizer, c.momentum if c.optimizer == "sgd" else None, c.batch_size,
            c.epochs)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return _jsonable(v.item())
    except ImportError:
        pass
    return str(v)


def _best_final(vals) -> float | None:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return max(vals) if vals else None


# ----------------------------------------------------------------------------- workers (fresh processes)


def worker_jaxfit(spec: dict) -> dict:
    """What a user's script does: configure, enable the cache, sweep each dataset."""
    t0 = time.perf_counter()
    import jaxfit

    import_s = time.perf_counter() - t0
    jaxfit.configure_host_devices()
    jaxfit.enable_compilation_cache(spec["cache_dir"])
    t1 = time.perf_counter()
    import jax

    n_devices = jax.device_count()  # JAX's start (its backend) happens here
    jax_start_s = time.perf_counter() - t1
    configs = sweep_configs(spec["sweep"], spec["quick"])
    per = []
    for name in sweep_definition(spec["sweep"], spec["quick"])["datasets"]:
        data = jaxfit.datasets.load(name)
        t = time.perf_counter()
        r = jaxfit.sweep(data, configs, fuse=spec["fuse"])
        sweep_s = time.perf_counter() - t
        m = r.meta
        final = r.curves["val_acc"][:, -1].tolist() if len(configs) else []
        per.append({
            "dataset": name, "configs": len(configs), "n_train": data.n_train, "n_val": data.n_val,
            "sweep_s": sweep_s, "wall_s": m["wall_s"], "compile_s": m["compile_s"], "run_s": m["run_s"],
            "programs": m["programs"], "programs_compiled": m["programs_compiled"],
            "programs_from_disk": m["programs_from_disk"],
            "programs_from_process": sum(p.get("source") == "process" for p in m["plans"]),
            "compiles": m.get("compiles"), "model_steps": m["model_steps"], "fuse": m.get("fuse"),
            "plan": m["plan"],
            "plans": [{k: (len(v) if k == "chunks" else v) for k, v in p.items()} for p in m["plans"]],
            "diverged": int(r.diverged.sum()), "best_final_val_acc": _best_final(final)})
    return {"import_s": import_s, "jax_start_s": jax_start_s, "n_devices": n_devices,
            "cache_hits": jaxfit.cache_hits(), "worker_s": time.perf_counter() - t0, "datasets": per}


def worker_torch_many(spec: dict) -> dict:
    """torchref.train_many over all cores, on a seeded subset when fraction < 1."""
    t0 = time.perf_counter()
    import torch  # noqa: F401

    import torchref
    from jaxfit import datasets

    import_s = time.perf_counter() - t0
    configs = sweep_configs(spec["sweep"], spec["quick"])
    idx = _subset(len(configs), spec["fraction"], spec["seed"])
    workers = os.cpu_count() or 1
    per = []
    pool_s = None
    for name in sweep_definition(spec["sweep"], spec["quick"])["datasets"]:
        data = datasets.load(name)
        chosen = [configs[i] for i in idx]
        if len(chosen) < len(configs) and pool_s is None and workers > 1 and len(chosen) > 1:
            # the fixed part of a train_many call (its spawned processes start and import torch and jaxfit):
            # one 1-epoch 2-2-3 run per worker, kept out of the linear scaling below
            tiny = configs[0].replace(hidden=(2,), epochs=1)
            t = time.perf_counter()
            torchref.train_many(data, [tiny.replace(seed=s) for s in range(workers)], workers=workers)
            pool_s = time.perf_counter() - t
        t = time.perf_counter()
        curves = torchref.train_many(data, chosen, workers=workers)
        dt = time.perf_counter() - t
        final = [float(c["val_acc"][-1]) for c in curves]
        fixed = min(pool_s or 0.0, dt)
        per.append({"dataset": name, "configs": len(configs), "measured_configs": len(chosen), "measured_s": dt,
                    "fixed_s": fixed if len(chosen) < len(configs) else None,
                    "train_many_s": fixed + (dt - fixed) * len(configs) / len(chosen),
                    "extrapolated": len(chosen) < len(configs),
                    "subset": idx if len(chosen) < len(configs) else None, "best_final_val_acc": _best_final(final)})
    return {"import_s": import_s, "workers": workers, "pool_start_s": pool_s, "worker_s": time.perf_counter() - t0,
            "datasets": per}


def worker_torch_ensemble(spec: dict) -> dict:
    """Per architecture group: each applicable ensemble on a short trial (both thread counts), the
    fastest run to the end; torch.compile where its compile could pay off."""
    t0 = time.perf_counter()
    import torch

    from jaxfit import datasets

    from . import common, torch_impls

    import_s = time.perf_counter() - t0
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class GroupWorkload(common.Workload):  # torch_impls trains on workload.dataset()
        data_name: str = "sum_mod"

        def dataset(self, n_points=None):
            return datasets.load(self.data_name, n=n_points or self.n_points)

    configs = sweep_configs(spec["sweep"], spec["quick"])
    opts = torch_impls.Options(device="cpu", compile_variant="func")
    cores = os.cpu_count() or 1
    thread_cands = [1] if cores == 1 else [1, cores]
    groups = []
    for name in sweep_definition(spec["sweep"], spec["quick"])["datasets"]:
        n_train = datasets.load(name).n_train
        by: dict[tuple, list[int]] = {}
        for i, c in enumerate(configs):
            by.setdefault(_group_key(c), []).append(i)
        for key, members in by.items():
            c0 = configs[members[0]]
            w = GroupWorkload(f"{name}:{'-'.join(map(str, c0.hidden))}:{c0.activation}:{c0.optimizer}",
                              f"{len(members)} configs", c0.replace(shuffle=False), n_train, name)
            lrs = sorted({configs[i].lr for i in members})
            groups.append({"dataset": name, "hidden": list(c0.hidden), "activation": c0.activation,
                           "optimizer": c0.optimizer, "n": len(members), "lrs": lrs, "lr_used": c0.lr,
                           "total_steps": w.total_steps, "w": w, "ways": {}})

    def run_until(trainer, done: int, total: int, k: int) -> float:
        k = max(0, min(k, total - done))
        t = time.perf_counter()
        if k:
            trainer.steps(k)
        return time.perf_counter() - t

    def trial(impl: str, g: dict) -> tuple[Any, dict]:
        """Build, first step(s), a short run at each thread count; (trainer, record)."""
        w, n, total = g["w"], g["n"], g["total_steps"]
        torch.set_num_threads(thread_cands[0])
        if impl == "torch_compile":
            notes: list[str] = []
            tr, setup_s, first_s = torch_impls._compiled_trainer(w, n, opts, notes)
            done = 2 if (w.n_points % w.batch and w.steps_per_epoch > 1) else 1
        else:
            notes = []
            t = time.perf_counter()
            tr = torch_impls.TRAINERS[impl](w, n, opts)
            setup_s = time.perf_counter() - t
            first_s = run_until(tr, 0, total, 1)
            done = 1
        steps_s = first_s
        probe = run_until(tr, done, total, 2)
        done, steps_s = done + min(2, total - done), steps_s + probe
        per_step = probe / 2 if probe else first_s
        k = int(max(1, min((total - done) // (2 * len(thread_cands)) or 1, round(0.1 / max(per_step, 1e-6)))))
        trials = {}  # threads -> (steps, seconds); each trial stops after TRIAL_CAP_S (a busy core can be 100x slower)
        for th in thread_cands:
            if done >= total:
                break
            torch.set_num_threads(th)
            ran, t = 0, time.perf_counter()
            while ran < k and done + ran < total:
                m = min(max(1, k // 8), k - ran, total - done - ran)
                tr.steps(m)
                ran += m
                if time.perf_counter() - t > TRIAL_CAP_S:
                    break
            dt = time.perf_counter() - t
            done, steps_s = done + ran, steps_s + dt
            trials[th] = (ran, dt)
        rates = {th: dt / ran for th, (ran, dt) in trials.items()}
        threads = min(rates, key=rates.get) if rates else thread_cands[0]
        rate = rates.get(threads) or per_step
        # the trial steps at the slower thread count are counted at the faster one's rate: what a user who
        # set the better thread count would have waited
        lost_steps = sum(ran for th, (ran, _) in trials.items() if th != threads)
        lost_s = sum(dt for th, (_, dt) in trials.items() if th != threads)
        est = setup_s + steps_s - lost_s + (lost_steps + total - done) * rate
        return tr, {"setup_s": setup_s, "first_s": first_s, "done": done, "steps_s": steps_s, "threads": threads,
                    "s_per_step": {str(t): r for t, r in rates.items()},
                    "trial_steps": {str(t): ran for t, (ran, _) in trials.items()}, "slower_trial_s": lost_s,
                    "slower_trial_steps": lost_steps, "estimate_s": est, "notes": notes}

    def finish(tr, rec: dict, g: dict) -> None:
        torch.set_num_threads(rec["threads"])
        dt = run_until(tr, rec["done"], g["total_steps"], g["total_steps"] - rec["done"])
        rec["steps_s"] += dt
        rec["done"] = g["total_steps"]
        rate = rec["s_per_step"].get(str(rec["threads"]))
        swap = rec["slower_trial_steps"] * rate - rec["slower_trial_s"] if rate is not None else 0.0
        rec["measured_s"] = rec["setup_s"] + rec["steps_s"] + swap

    # eager ensembles: every group
    for g in groups:
        cands = ["torch_func"] + (["torch_bmm"] if g["activation"] == "relu" else [])
        live = {}
        for impl in cands:
            try:
                live[impl], g["ways"][impl] = trial(impl, g)
            except Exception as e:  # noqa: BLE001 - a failing ensemble is a result
                g["ways"][impl] = {"error": torch_impls.error_text(e)}
        ok = [i for i in live if "estimate_s" in g["ways"][i]]
        if ok:
            best = min(ok, key=lambda i: g["ways"][i]["estimate_s"])
            finish(live[best], g["ways"][best], g)
            g["best"] = best
        del live
        common.release_memory()

    # torch.compile: on the groups whose best eager run lasted longest, while a compile could pay off
    tried, min_compile = 0, None
    for g in sorted(groups, key=lambda g: -(g["ways"].get(g.get("best"), {}).get("measured_s") or 0.0)):
        eager = g["ways"].get(g.get("best"), {}).get("measured_s")
        if tried >= spec["compile_groups"]:
            g["ways"]["torch_compile"] = {"skipped": f"not tried: --compile-groups {spec['compile_groups']} reached"}
            continue
        if min_compile is not None and eager is not None and eager <= min_compile:
            g["ways"]["torch_compile"] = {
                "skipped": f"not tried: the group's best eager run ({eager:.2f} s) is shorter than the shortest "
                           f"torch.compile compile measured in this run ({min_compile:.1f} s; every group recompiles)"}
            continue
        tried += 1
        try:
            tr, rec = trial("torch_compile", g)
        except Exception as e:  # noqa: BLE001
            g["ways"]["torch_compile"] = {"error": torch_impls.error_text(e)}
            continue
        g["ways"]["torch_compile"] = rec
        min_compile = rec["first_s"] if min_compile is None else min(min_compile, rec["first_s"])
        if eager is None or rec["estimate_s"] < eager:
            finish(tr, rec, g)
            if eager is None or rec["measured_s"] < eager:
                g["best"] = "torch_compile"
        del tr
        common.release_memory()

    out_groups = []
    for g in groups:
        g = dict(g)
        g.pop("w")
        g["best_s"] = g["ways"].get(g.get("best"), {}).get("measured_s")
        out_groups.append(g)
    best = [g["best_s"] for g in out_groups]
    func = [g["ways"].get("torch_func", {}).get("measured_s") or g["ways"].get("torch_func", {}).get("estimate_s")
            for g in out_groups]
    return {"import_s": import_s, "worker_s": time.perf_counter() - t0, "threads_tried": thread_cands,
            "groups": out_groups, "complete": all(b is not None for b in best),
            "sum_best_s": sum(b for b in best if b is not None),
            "torch_func_alone_s": sum(f for f in func if f is not None) if all(f is not None for f in func) else None}


WORKERS = {"jaxfit": worker_jaxfit, "torch_many": worker_torch_many, "torch_ensemble": worker_torch_ensemble}


def _run_worker(kind: str, spec: dict, env_extra: dict | None = None) -> tuple[dict | None, float, str | None]:
    """(the worker's JSON, the process's wall seconds from start to exit, error or None)."""
    fd, path = tempfile.mkstemp(prefix="sweep-bench-", suffix=".json")
    os.close(fd)
    env = dict(_ENV0, PYTHONPATH=ROOT + os.pathsep + _ENV0.get("PYTHONPATH", ""), **(env_extra or {}))
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--worker", kind, "--worker-spec", json.dumps(spec),
           "--worker-out", path]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr)
        wall = time.perf_counter() - t0
        with open(path) as f:
            text = f.read()
        got = json.loads(text) if text.strip() else None
    finally:
        os.unlink(path)
    err = None if proc.returncode == 0 and got is not None else f"worker exited with status {proc.returncode}"
    return got, wall, err


# ----------------------------------------------------------------------------- rows


def _row(sweep: str, way: str, n_configs: int, **fields) -> dict:
    r = {"sweep": sweep, "way": way, "label": LABELS[way], "configs": n_configs, "wall_s": None, "sweep_s": None,
         "startup_s": None, "compile_s": None, "run_s": None, "programs": None, "programs_compiled": None,
         "programs_from_disk": None, "configs_per_s": None, "extrapolated": False, "error": None, "notes": []}
    r.update(fields)
    return r


def jaxfit_row(sweep: str, way: str, n_configs: int, got: dict | None, wall: float, err: str | None) -> dict:
    if got is None:
        return _row(sweep, way, n_configs, error=err)
    per = got["datasets"]
    tot = lambda k: sum(d[k] for d in per)  # noqa: E731
    sweep_s = tot("sweep_s")
    notes = [f"wall_s: the whole process from start to exit (Python, import jaxfit {got['import_s']:.2f} s, JAX's "
             f"start {got['jax_start_s']:.2f} s, the sweeps); sweep_s: time.perf_counter around jaxfit.sweep; "
             f"{got['n_devices']} JAX device(s)"]
    if len(per) > 1 and sum(d["programs_from_process"] for d in per):
        notes.append("the datasets share shapes: the later datasets' programs come from this process "
                     "(programs_from_process)")
    return _row(sweep, way, n_configs, wall_s=wall, sweep_s=sweep_s, startup_s=wall - sweep_s,
                import_s=got["import_s"], jax_start_s=got["jax_start_s"], compile_s=tot("compile_s"),
                run_s=tot("run_s"), programs=tot("programs"), programs_compiled=tot("programs_compiled"),
                programs_from_disk=tot("programs_from_disk"), programs_from_process=tot("programs_from_process"),
                model_steps=tot("model_steps"), configs_per_s=n_configs / wall, datasets=per, error=err,
                notes=notes)


def torch_many_row(sweep: str, n_configs: int, got: dict | None, wall: float, err: str | None) -> dict:
    if got is None:
        return _row(sweep, "torch_train_many", n_configs, error=err)
    per = got["datasets"]
    measured = sum(d["measured_s"] for d in per)
    est = sum(d["train_many_s"] for d in per)
    extrap = any(d["extrapolated"] for d in per)
    # the process, with the measured train_many calls replaced by their scaling and without the pool-start probe
    total = wall - measured - (got.get("pool_start_s") or 0.0) + est
    notes = [f"torchref.train_many over {got['workers']} processes (one per core), one stock PyTorch run per config "
             "(DataLoader with shuffling, torch.optim, loss.item() every step, per-epoch evaluation)"]
    if extrap:
        m = per[0]["measured_configs"]
        fixed = per[0].get("fixed_s") or 0.0
        notes.insert(0, f"EXTRAPOLATED: {m} of {per[0]['configs']} configs per dataset (a seeded random subset) "
                        f"took {measured:.1f} s; train_many's time less its fixed start ({fixed:.1f} s: its processes "
                        f"starting, measured apart with one 1-epoch 2-2-3 run per process) scaled linearly by "
                        f"{per[0]['configs'] / m:.2f}x, to {est:.1f} s (wall_s = the process's wall with that "
                        "scaling, without the start probe)")
    return _row(sweep, "torch_train_many", n_configs, wall_s=total, sweep_s=est,
                startup_s=wall - measured - (got.get("pool_start_s") or 0.0),
                pool_start_probe_s=got.get("pool_start_s"),
                import_s=got["import_s"], run_s=est, configs_per_s=n_configs / total, extrapolated=extrap,
                measured_configs=sum(d["measured_configs"] for d in per), measured_s=measured, process_wall_s=wall,
                datasets=per, error=err, notes=notes)


def ensemble_row(sweep: str, n_configs: int, got: dict | None, wall: float, err: str | None) -> dict:
    if got is None:
        return _row(sweep, "torch_best_ensemble", n_configs, error=err)
    gs = got["groups"]
    total_s = got["import_s"] + got["sum_best_s"]
    counts: dict[str, int] = {}
    for g in gs:
        counts[g.get("best") or "none"] = counts.get(g.get("best") or "none", 0) + 1
    compile_s = sum(g["ways"][g["best"]]["first_s"] for g in gs if g.get("best") == "torch_compile")
    compile_tried = [g for g in gs if "first_s" in g["ways"].get("torch_compile", {})]
    multi_lr = sum(len(g["lrs"]) > 1 for g in gs)
    notes = [f"{len(gs)} groups (dataset x widths x activation x optimiser), N = {min(g['n'] for g in gs)}-"
             f"{max(g['n'] for g in gs)} networks each; per group the fastest of the ensembles that can train it, "
             "run to the end: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
             "wall_s = import torch + the sum of each group's best run (build, compile if any, every training step); "
             "the trials of the slower ways are not counted, nor the slower of the two thread counts each way was "
             "tried at (those steps are counted at the faster one's rate); choosing per group is an optimistic bound "
             "on any one PyTorch way",
             "APPROXIMATED: torch_impls' ensembles take one learning rate per ensemble; "
             f"{multi_lr} groups hold several learning rates and were timed with the group's first one (a step's cost "
             "does not depend on it); batches in data order (no shuffling); training steps only, no per-epoch "
             "evaluation (jaxfit and train_many evaluate every epoch and shuffle): both favour the ensembles",
             "torch_bmm's forward is ReLU only: tanh/gelu groups have torch_func (and torch_compile) only"]
    if compile_tried:
        def tried_text(g):
            tc, best = g["ways"]["torch_compile"], g.get("best")
            name = f"{g['dataset']} {'-'.join(map(str, g['hidden']))} {g['activation']} {g['optimizer']}"
            if best == "torch_compile":
                return f"{name} (compile {tc['first_s']:.1f} s, the fastest)"
            eager = g["ways"].get(best, {}).get("measured_s") if best else None
            return f"{name} (compile {tc['first_s']:.1f} s, best eager run {_f(eager, '.2f')} s)"

        notes.append("torch.compile tried on " + ", ".join(tried_text(g) for g in compile_tried)
                     + "; the other groups skipped it where their best eager run was shorter than the shortest "
                       "compile measured (see each group's ways.torch_compile)")
    else:
        notes.append("torch.compile not tried (--compile-groups 0); 20-40 s of compile per group on a 2-core CPU")
    if got.get("torch_func_alone_s") is not None:
        notes.append(f"torch_func on every group alone: {got['import_s'] + got['torch_func_alone_s']:.1f} s "
                     "(measured or estimated from its trial)")
    if not got.get("complete"):
        notes.append("INCOMPLETE: some groups had no ensemble that ran (see groups)")
    return _row(sweep, "torch_best_ensemble", n_configs, wall_s=total_s, sweep_s=got["sum_best_s"],
                startup_s=got["import_s"], compile_s=compile_s, run_s=got["sum_best_s"] - compile_s,
                configs_per_s=n_configs / total_s, process_wall_s=wall, best_counts=counts,
                torch_func_alone_s=got.get("torch_func_alone_s"), groups=gs, error=err, notes=notes)


def add_ratios(rows: list[dict]) -> None:
    for sweep in {r["sweep"] for r in rows}:
        mine = [r for r in rows if r["sweep"] == sweep]
        base = {r["way"]: r["wall_s"] for r in mine if r["wall_s"]}
        for r in mine:
            w = r["wall_s"]
            r["ratio_vs_jaxfit_cold"] = w / base["jaxfit_cold"] if w and base.get("jaxfit_cold") else None
            r["ratio_vs_jaxfit_warm"] = w / base["jaxfit_warm"] if w and base.get("jaxfit_warm") else None


# ----------------------------------------------------------------------------- output


def _f(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (f"{'sweep':8s} {'way':24s} {'configs':>7s} {'wall_s':>8s} {'start_s':>7s} {'compile_s':>9s} "
            f"{'run_s':>8s} {'programs':>8s} {'compiled':>8s} {'disk':>5s} {'configs/s':>9s} {'x cold':>7s} "
            f"{'x warm':>7s}  flags")
    out = [head, "-" * len(head)]
    for r in rows:
        flags = ("EXTRAPOLATED" if r.get("extrapolated") else "") + (" ERROR" if r.get("error") else "")
        out.append(f"{r['sweep']:8s} {r['label']:24s} {r['configs']:>7d} {_f(r['wall_s'], '8.1f'):>8s} "
                   f"{_f(r['startup_s'], '7.1f'):>7s} {_f(r['compile_s'], '9.1f'):>9s} {_f(r['run_s'], '8.1f'):>8s} "
                   f"{_f(r['programs'], 'd'):>8s} {_f(r['programs_compiled'], 'd'):>8s} "
                   f"{_f(r['programs_from_disk'], 'd'):>5s} {_f(r['configs_per_s'], '9.2f'):>9s} "
                   f"{_f(r.get('ratio_vs_jaxfit_cold'), '7.2f'):>7s} {_f(r.get('ratio_vs_jaxfit_warm'), '7.2f'):>7s}"
                   f"  {flags.strip()}")
        if r.get("error"):
            out.append(f"         {r['error'][:150]}")
    return "\n".join(out)


def plot(rows: list[dict], sweeps: list[str], title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(6.4 * len(sweeps), 3.8), squeeze=False)
    colors = {"start": "tab:gray", "compile": "tab:orange", "run": "tab:blue"}
    for ax, sweep in zip(axes[0], sweeps):
        mine = [r for r in rows if r["sweep"] == sweep]
        for y, r in enumerate(mine):
            if not r["wall_s"]:
                ax.text(0, y, "  error", va="center", fontsize=8, color="red")
                continue
            start = r["startup_s"] or 0.0
            comp = r["compile_s"] or 0.0
            rest = max(0.0, r["wall_s"] - start - comp)
            hatch = "//" if r.get("extrapolated") else None
            left = 0.0
            for part, v in (("start", start), ("compile", comp), ("run", rest)):
                ax.barh(y, v, left=left, color=colors[part], hatch=hatch, edgecolor="white",
                        label=part if y == 0 or part == "compile" else None)
                left += v
            ratio = r.get("ratio_vs_jaxfit_cold")
            ax.text(r["wall_s"], y, f" {r['wall_s']:.1f} s" + (f" ({ratio:.1f}x cold)" if ratio and
                                                               r["way"] != "jaxfit_cold" else ""),
                    va="center", fontsize=8)
        ax.set_yticks(range(len(mine)))
        ax.set_yticklabels([r["label"] + (" (scaled)" if r.get("extrapolated") else "") for r in mine], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("seconds the user waits (process start to exit)")
        n = mine[0]["configs"] if mine else 0
        ax.set_title(f"{sweep}: {n} configs", fontsize=10)
        ax.margins(x=0.35)
        ax.grid(True, axis="x", alpha=0.3)
    handles: dict = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    handles = {k: handles[k] for k in ("start", "compile", "run") if k in handles}
    fig.legend(list(handles.values()), ["start (Python, imports, JAX)", "compile", "run (and the rest)"],
               loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title + "\nhatched: timed on a subset and scaled", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the driver


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny grids, 1 epoch (about two minutes on 2 cores)")
    p.add_argument("--sweeps", default=",".join(SWEEPS), help="comma-separated, of " + ", ".join(SWEEPS))
    p.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of " + ", ".join(WAYS))
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="directory for the JSON and PNG")
    p.add_argument("--torch-fraction", type=float, default=0.1,
                   help="large sweep: the fraction of configs train_many runs (a seeded random subset, scaled "
                        "linearly; default 0.1)")
    p.add_argument("--torch-fraction-default", type=float, default=1.0,
                   help="default sweep: the same (default 1: every config)")
    p.add_argument("--subset-seed", type=int, default=0, help="seed of the random subset")
    p.add_argument("--compile-groups", type=int, default=None,
                   help="torch.compile is tried on at most this many groups per sweep (those whose best eager run "
                        "is longest, while their eager run outlasts the shortest compile seen; default 2, quick 0)")
    p.add_argument("--machine", default=None, help="the machine's name in the file names (default cpu<cores>)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-spec", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.worker:
        got = WORKERS[a.worker](json.loads(a.worker_spec))
        with open(a.worker_out, "w") as f:
            json.dump(_jsonable(got), f)
        return got
    sweeps = [s.strip() for s in a.sweeps.split(",") if s.strip()]
    ways = [s.strip() for s in a.ways.split(",") if s.strip()]
    bad = [s for s in sweeps if s not in SWEEPS] + [w for w in ways if w not in WAYS]
    if bad:
        raise SystemExit(f"unknown sweep(s) or way(s) {bad}; sweeps: {', '.join(SWEEPS)}; ways: {', '.join(WAYS)}")
    if "jaxfit_warm" in ways and "jaxfit_cold" not in ways:
        ways.insert(0, "jaxfit_cold")  # warm means: the cold run's cache directory again
    compile_groups = a.compile_groups if a.compile_groups is not None else (0 if a.quick else 2)

    from . import common  # imports jaxfit (this process only; the workers start from the user's environment)

    t_start = time.perf_counter()
    date = common.now_iso()
    versions = common.versions()
    dev_text = common.describe_device("cpu")
    _log(f"# {dev_text}; " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    defs, rows = {}, []
    for sweep in sweeps:
        d = sweep_definition(sweep, a.quick)
        configs = sweep_configs(sweep, a.quick)
        n = len(configs)
        archs = sorted({tuple(c.hidden) for c in configs}, key=lambda h: (len(h), h))
        defs[sweep] = {"description": d["description"], "datasets": d["datasets"], "grid": _jsonable(d["grid"]),
                       "configs_per_dataset": n, "configs": n * len(d["datasets"]),
                       "architectures": [list(h) for h in archs],
                       "groups_per_dataset": len({_group_key(c) for c in configs}),
                       "epochs": sorted({c.epochs for c in configs})}
        total = n * len(d["datasets"])
        _log(f"# {sweep}: {n} configs x {len(d['datasets'])} dataset(s), {len(archs)} architectures")
        cache = tempfile.mkdtemp(prefix="jaxfit-sweep-cold-")
        cache_none = tempfile.mkdtemp(prefix="jaxfit-sweep-none-")
        try:
            for way in ways:
                _log(f"## {sweep}: {LABELS[way]}")
                if way.startswith("jaxfit"):
                    spec = {"sweep": sweep, "quick": a.quick, "fuse": "none" if way == "jaxfit_fuse_none" else "auto",
                            "cache_dir": cache_none if way == "jaxfit_fuse_none" else cache}
                    got, wall, err = _run_worker("jaxfit", spec)
                    row = jaxfit_row(sweep, way, total, got, wall, err)
                    row["cache_dir_bytes"] = _dir_bytes(spec["cache_dir"])
                elif way == "torch_train_many":
                    frac = a.torch_fraction if sweep == "large" else a.torch_fraction_default
                    spec = {"sweep": sweep, "quick": a.quick, "fraction": frac, "seed": a.subset_seed}
                    got, wall, err = _run_worker("torch_many", spec)
                    row = torch_many_row(sweep, total, got, wall, err)
                else:
                    spec = {"sweep": sweep, "quick": a.quick, "compile_groups": compile_groups}
                    inductor = tempfile.mkdtemp(prefix="sweep-inductor-")  # torch.compile cold, as jaxfit's
                    try:
                        got, wall, err = _run_worker("torch_ensemble", spec, {"TORCHINDUCTOR_CACHE_DIR": inductor})
                    finally:
                        shutil.rmtree(inductor, ignore_errors=True)
                    row = ensemble_row(sweep, total, got, wall, err)
                rows.append(row)
                _log(f"   wall {_f(row['wall_s'], '.1f')} s" + (f"  ERROR {row['error']}" if row["error"] else ""))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(cache_none, ignore_errors=True)
    add_ratios(rows)
    machine = a.machine or common.machine_slug("cpu")
    stem = f"sweep-{machine}-{common.today()}" + ("-quick" if a.quick else "")
    os.makedirs(a.out, exist_ok=True)
    doc = {
        "schema": SCHEMA, "date": date, "device": dev_text, "machine": machine, "versions": versions,
        "quick": a.quick, "wall_s": time.perf_counter() - t_start,
        "options": {"sweeps": sweeps, "ways": ways, "torch_fraction": a.torch_fraction,
                    "torch_fraction_default": a.torch_fraction_default, "subset_seed": a.subset_seed,
                    "compile_groups": compile_groups, "cores": os.cpu_count()},
        "sweeps": defs,
        "timing": {
            "wall_s": "what the user waits for: jaxfit and train_many, the worker process from its start to its exit "
                      "(Python, imports, JAX's start, data, the sweep calls); train_many on a subset: that wall with "
                      "the train_many calls scaled linearly to all configs; best ensemble: import torch + the sum of "
                      "each group's best run",
            "startup_s": "wall_s minus the sweep calls (jaxfit: minus time.perf_counter around each jaxfit.sweep)",
            "compile_s, run_s, programs*": "jaxfit: summed over datasets from result.meta (programs = buckets = "
                                          "compiled programs; _compiled: compiled in this process, _from_disk: JAX's "
                                          "persistent cache, _from_process: reused from an earlier dataset); "
                                          "ensemble: torch.compile's first steps where it won a group",
            "cold/warm": "cold: a new, empty directory given to jaxfit.enable_compilation_cache; warm: a new process "
                         "with the cold run's directory; fuse=none: its own new directory",
            "ratio_vs_jaxfit_cold/warm": "this way's wall_s / jaxfit's (cold or warm) wall_s on the same sweep",
        },
        "rows": rows,
    }
    jpath = os.path.join(a.out, stem + ".json")
    with open(jpath, "w") as f:
        json.dump(_jsonable(doc), f, indent=1)
    print(table(rows))
    print("wall_s: what the user waits for (the process, start to exit); start_s: outside the sweep calls (Python, "
          "imports, JAX's start); compile_s of a warm run: loading the programs from the disk cache; programs: "
          "compiled programs (buckets), compiled here / loaded from disk; x cold, x warm: wall_s over jaxfit's")
    print(f"\n{dev_text}; {', '.join(f'{k} {v}' for k, v in versions.items() if k in ('jax', 'torch', 'git'))}")
    for r in rows:
        for note in r["notes"]:
            if note.startswith(("EXTRAPOLATED", "APPROXIMATED", "INCOMPLETE")):
                print(f"{r['sweep']} {r['label']}: {note}")
    for sweep in sweeps:
        cold = next((r for r in rows if r["sweep"] == sweep and r["way"] == "jaxfit_cold" and r["wall_s"]), None)
        if cold:
            est = sum(p["estimate_compile_s"] or 0 for d in cold["datasets"] for p in d["plans"] if p["source"] ==
                      "compiled")
            print(f"{sweep}: jaxfit cold planned {cold['programs']} program(s), compile estimated {est:.1f} s, "
                  f"measured {cold['compile_s']:.1f} s")
    if not a.no_plot:
        ppath = os.path.join(a.out, stem + ".png")
        plot(rows, sweeps, f"{dev_text} | {date[:10]} | torch {versions.get('torch')} jax {versions.get('jax')}"
             + (" | quick" if a.quick else ""), ppath)
        print(f"wrote {jpath} and {ppath}")
    else:
        print(f"wrote {jpath}")
    _log(f"total {time.perf_counter() - t_start:.0f} s")
    return doc


def _dir_bytes(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


if __name__ == "__main__":
    main()

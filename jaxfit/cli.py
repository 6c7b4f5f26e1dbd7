"""The `jaxfit` command: parse, validate, call the library, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from typing import Any, Sequence

DEFAULT_DATASETS = ("sum_mod", "sum_bin")


def default_sweep(epochs: int = 40, seeds: int = 2) -> dict[str, Any]:
    """Document 1's question: which depths, widths, activations, optimisers and rates fit?
    From the document's own 2-2-3 net to three layers of 64."""
    return {
        "hidden": [(2,), (16,), (64,), (64, 64), (64, 64, 64)],
        "activation": ["relu", "tanh"],
        "optimizer": ["sgd", "adam"],
        "momentum": 0.9,
        "lr": [1e-3, 1e-2, 1e-1],
        "batch_size": 32,
        "epochs": epochs,
        "seed": list(range(seeds)),
    }


QUICK = {"hidden": [(2,), (64, 64)], "activation": ["relu"], "optimizer": ["adam"], "lr": [1e-3, 1e-2],
         "batch_size": 32, "epochs": 5, "seed": [0, 1]}


def _load_spec(path: str) -> tuple[list[dict], dict[str, Any]]:
    """A TOML sweep spec: [[data]] tables (name + generator arguments) and a [grid] table (axes as
    lists; widths as lists of lists: hidden = [[16], [64, 64]]), or [[grid]] sub-grids."""
    import tomllib

    with open(path, "rb") as f:
        spec = tomllib.load(f)
    unknown = set(spec) - {"data", "grid", "sweep"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)}; expected [[data]] and [grid]")
    data = spec.get("data", [{"name": n} for n in DEFAULT_DATASETS])
    data = [data] if isinstance(data, dict) else data
    return data, spec.get("grid", {})


def _varying(table, cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c in table.columns and table[c].astype(str).nunique() > 1]


def cmd_sweep(args: argparse.Namespace) -> int:
    import jaxfit
    from jaxfit import datasets

    if args.spec:
        data_specs, grid_spec = _load_spec(args.spec)
    else:
        names = args.datasets.split(",") if args.datasets else list(DEFAULT_DATASETS)
        data_specs = [{"name": n.strip()} for n in names]
        grid_spec = dict(QUICK) if args.quick else default_sweep()
    if args.epochs is not None:
        grid_spec = {**grid_spec, "epochs": args.epochs} if isinstance(grid_spec, dict) else grid_spec
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds={args.seeds} is invalid: need at least 1 seed")
        grid_spec = {**grid_spec, "seed": list(range(args.seeds))} if isinstance(grid_spec, dict) else grid_spec

    # Everything is validated before anything compiles.
    loaded = []
    for ds in data_specs:
        ds = dict(ds)
        name = ds.pop("name", None)
        if args.n is not None and "n" not in ds:
            ds["n"] = args.n
        loaded.append(datasets.load(name, **ds))
    configs = jaxfit.grid(grid_spec) if isinstance(grid_spec, list) else jaxfit.grid(**grid_spec)
    for data in loaded:
        for i, c in enumerate(configs):
            jaxfit.engine.check_config_for_data(c, data, i)

    out = args.out or os.path.join("jaxfit-runs", dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    if os.path.isdir(out) and os.listdir(out) and not args.resume:
        raise ValueError(f"--out {out} already holds results: pass --resume to continue that run "
                         "(finished chunks are reused), or choose another --out")
    if not args.no_cache:
        jaxfit.enable_compilation_cache()
    print(f"jaxfit sweep: {len(configs)} configs x {len(loaded)} dataset(s) -> {out}", flush=True)
    for data in loaded:
        t0 = time.perf_counter()
        print(f"\n== {data.name}: n_train={data.n_train}, n_val={data.n_val}, classes={data.num_classes}", flush=True)
        result = jaxfit.sweep(data, configs, progress=not args.no_progress,
                              checkpoint_dir=os.path.join(out, data.name, "chunks"), fuse=args.fuse)
        path = result.save(os.path.join(out, data.name))
        m = result.meta
        steps = m["model_steps"]
        resumed = sum(p["resumed"] for p in m["plans"])
        if resumed:
            print(f"resumed {resumed} finished chunk(s) from {os.path.join(out, data.name, 'chunks')}")
        print(f"{len(configs)} configs in {m['programs']} program(s) (fuse={m['fuse']}: the planner's estimate "
              f"of compile + run time decides what shares a program): compile {m['compile_s']:.1f} s "
              f"({m['programs_compiled']} compiled, {m['programs_from_disk']} from the disk cache), "
              f"run {m['run_s']:.1f} s, {steps / max(m['run_s'], 1e-9):,.0f} model-steps/s, "
              f"{int(result.diverged.sum())} diverged", flush=True)
        for row, p in zip(m["plan"], m["plans"]):
            archs = " ".join("x".join(map(str, h)) or "linear" for h in row["architectures"])
            print(f"  program {row['bucket'] + 1}: {row['configs']} configs; nets {archs} padded to "
                  f"{'x'.join(map(str, row['padded_hidden'])) or 'linear'}; {','.join(row['activations'])}; "
                  f"{','.join(row['optimizers'])}; estimated {row['estimate_compile_s']:.1f} s compile + "
                  f"{row['estimate_run_s']:.1f} s run, measured {p['compile_s']:.1f} s ({p['source'] or 'resumed'}) + "
                  f"{p['run_s']:.1f} s", flush=True)
        by = _varying(result.table, [f.name for f in __import__("dataclasses").fields(jaxfit.Config)
                                     if f.name != "seed"])
        best = result.best(args.metric, k=args.top, by=by or None)
        cols = by + [c for c in best.columns if c.startswith(("final_val_acc", "final_val_loss")) and
                     c.endswith(("mean", "ci"))] + ["diverged_fraction"]
        import pandas as pd

        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               "{:.4f}".format):
            print(f"top {args.top} by seed-averaged final {args.metric}:")
            print(best[cols].to_string(index=False))
        print(f"saved {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    print(f"\nresults: {out}  (load with jaxfit.SweepResult.load('{os.path.join(out, loaded[0].name)}'))")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from jaxfit import datasets, parity, tasks

    if args.target in tasks.TASKS:
        task = tasks.get(args.target)
        data = task.dataset(full=args.full)
        config = task.make_config(full=args.full)
    else:
        if "=" not in args.target:
            raise ValueError(f"parity: {args.target!r} is neither a task ({', '.join(tasks.TASKS)}) nor a config "
                             "such as 'hidden=16,16 optimizer=adam lr=0.01'")
        config = parity.parse_config(args.target)
        data = datasets.load(args.data, **({"n": args.n} if args.n else {}))
    changes = {}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.dtype is not None:
        changes["dtype"] = args.dtype
    if args.seed is not None:
        changes["seed"] = args.seed
    config = config.replace(**changes) if changes else config
    print(f"parity: {data.name} (n_train={data.n_train}), {config.short()}, {config.dtype}, {config.epochs} epochs",
          flush=True)
    r = parity.replay(data, config)
    print(r.table())
    print(r.verdict())
    if args.plot:
        print(f"plot: {r.plot(args.plot)}")
    return 0 if r.ok else 1


def cmd_bench(args: argparse.Namespace, rest: Sequence[str]) -> int:
    try:
        from benchmarks import throughput
    except ImportError as e:
        raise ValueError("bench: the benchmarks package is not importable (run from the repository, or "
                         "install it with pip install -e .)") from e
    throughput.main(list(rest))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxfit", description="Train many small MLPs at once with JAX.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a sweep (default: document 1's question on sum_mod and sum_bin)",
                       description="Train a grid of configs on each dataset; print a ranked table; save results.")
    s.add_argument("--spec", help="a TOML sweep spec (see examples/)")
    s.add_argument("--datasets", help=f"comma-separated dataset names (default: {','.join(DEFAULT_DATASETS)})")
    s.add_argument("--n", type=int, help="training points per dataset (default: each dataset's own)")
    s.add_argument("--epochs", type=int, help="epochs per config (default 40)")
    s.add_argument("--seeds", type=int, help="seeds per config (default 2)")
    s.add_argument("--quick", action="store_true", help="a small sweep that finishes in seconds")
    s.add_argument("--metric", default="val_acc", help="ranking metric (default val_acc)")
    s.add_argument("--top", type=int, default=10, help="rows of the ranked table (default 10)")
    s.add_argument("--out", help="results directory (default jaxfit-runs/<timestamp>)")
    s.add_argument("--resume", action="store_true",
                   help="continue a run in an existing --out: chunks it finished are loaded, not retrained")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--no-cache", action="store_true", help="do not use the persistent compilation cache")
    s.add_argument("--fuse", choices=["auto", "none", "all"], default="auto",
                   help="which configs share a compiled program: auto (the planner's cost model, default), none "
                        "(one program per structure) or all (one per batch size, dtype and output width)")
    s.set_defaults(func=cmd_sweep)

    q = sub.add_parser("parity", help="replay a task or config in jaxfit and PyTorch and compare epoch by epoch",
                       description="Train the same run in PyTorch (torchref) and jaxfit from the same weights and "
                                   "batch order; print both side by side, the largest deviation and a verdict.")
    q.add_argument("target", help="a task (doc1_sum_bin, doc1_sum_mod, doc2_circles, doc2_heart_standardized, "
                                  "wide_mlp) or a config such as 'hidden=16,16 optimizer=adam lr=0.01'")
    q.add_argument("--data", default="sum_bin", help="dataset for a config target (default sum_bin)")
    q.add_argument("--n", type=int, help="training points for a config target's dataset")
    q.add_argument("--full", action="store_true", help="a task at its documented length (default: the CI horizon)")
    q.add_argument("--epochs", type=int, help="override the number of epochs")
    q.add_argument("--dtype", choices=["float32", "float64"], help="override the dtype (default: the config's)")
    q.add_argument("--seed", type=int, help="override the seed (initial weights and shuffling)")
    q.add_argument("--plot", help="save an overlay plot of both loss curves to this PNG")
    q.set_defaults(func=cmd_parity)

    b = sub.add_parser("bench", add_help=False, help="throughput benchmarks against PyTorch "
                                                     "(python -m benchmarks.throughput; --help for options)")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .cpu import configure_host_devices

    configure_host_devices()  # before JAX starts: one XLA host device per core (jaxfit.cpu)
    args, rest = build_parser().parse_known_args(argv)
    if rest and args.func is not cmd_bench:
        build_parser().parse_args(argv)  # the usual "unrecognized arguments" error
    try:
        return args.func(args, rest) if args.func is cmd_bench else args.func(args)
    except ValueError as e:  # bad input: one clear line, no traceback
        print(f"jaxfit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

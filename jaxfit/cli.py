"""The `jaxfit` command: parse, validate, call the library, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import time
from typing import Any, Sequence
from .errors import UserError

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


METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "full_train_loss", "last_batch_loss")


def _varying(table, cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c in table.columns and table[c].astype(str).nunique() > 1]


class _Log:
    """What the sweep prints: everything, or (--quiet) only errors and the final lines."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, *a, **k):
        if not self.quiet:
            print(*a, **k, flush=True)


def _check_options(args) -> None:
    """Every option checked before any work."""
    metric = args.metric
    base = metric[6:] if metric.startswith("final_") else metric
    if base not in METRICS and not metric.startswith(("best_", "auc_")):
        raise UserError(f"--metric={metric!r} is invalid: choose among {', '.join(METRICS)} "
                         "(or best_val_acc, best_val_loss, auc_full_train_loss)")
    for name in ("top", "epochs", "seeds", "n"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise UserError(f"--{name}={v} is invalid: must be at least 1")
    spec = args.spec_pos or args.spec
    if args.spec_pos and args.spec and args.spec_pos != args.spec:
        raise UserError(f"two specs given ({args.spec_pos} and --spec {args.spec}): give one")
    if spec and args.quick:
        raise UserError("--quick is the built-in quick sweep and has no meaning with a spec: use --smoke to run "
                         "any spec on a tiny budget")
    if spec and args.datasets:
        raise UserError("--datasets has no meaning with a spec: its [[data]] tables name the datasets")
    if args.quick and args.smoke:
        raise UserError("--quick and --smoke: give one (--smoke shrinks any sweep; --quick is a small built-in one)")
    if args.resume and args.force:
        raise UserError("--resume and --force contradict each other: --force starts afresh")


def _build(args):
    from jaxfit import spec as specmod

    spec_path = args.spec_pos or args.spec
    limit = None if args.no_limits else specmod.MAX_CONFIGS
    if spec_path:
        return specmod.load_spec(spec_path, epochs=args.epochs, seeds=args.seeds, n=args.n, smoke=args.smoke,
                                 max_configs=limit)
    names = [n.strip() for n in args.datasets.split(",")] if args.datasets else list(DEFAULT_DATASETS)
    grid = dict(QUICK) if args.quick else default_sweep()
    return specmod.builtin_spec(grid, names, n=args.n, epochs=args.epochs, seeds=args.seeds, smoke=args.smoke,
                                title="quick" if args.quick else "default", max_configs=limit)


def _estimate(spec, loaded, budget):
    """Per dataset: the planner's buckets, chunks, memory and time estimates (nothing compiles)."""
    import jax

    from jaxfit import engine, plan

    ndev = len(jax.devices())
    rows = []
    for run, data in zip(spec.data, loaded):
        buckets = plan.plan_buckets(data, spec.configs)
        for b, row in zip(buckets, plan.describe(buckets, spec.configs)):
            size = engine.initial_chunk(b, None, budget, ndev)
            per = plan.bytes_per_config(b.spec)
            row.update(dataset=run.label, chunk_size=size, chunks=-(-len(b.members) // size),
                       bytes_per_config=per, chunk_bytes=per * size)
            rows.append(row)
    return rows


def _param_bytes(spec, loaded) -> int:
    """Disk the chunk checkpoints and saved parameters take (float64 upper bound, uncompressed)."""
    from jaxfit import plan
    from jaxfit.train import spec_of

    total = 0
    for data in loaded:
        for c in spec.configs:
            s = spec_of(c, data.n_train, data.n_val, data.num_features, data.num_classes)
            total += 8 * (plan.n_weights(s.arch) * 2 + 6 * c.epochs)
    return 2 * total  # chunks + params.npz


def _print_plan(log, spec, rows, est_disk, budget) -> None:
    log(f"plan: {len(spec.configs)} configs x {len(spec.data)} dataset(s); memory budget {budget / 2**30:.1f} GiB "
        f"per chunk; checkpoints and results up to {est_disk / 2**20:.1f} MiB on disk")
    total = 0.0
    for r in rows:
        t = (r["estimate_compile_s"] or 0) + (r["estimate_run_s"] or 0)
        total += t
        archs = " ".join("x".join(map(str, h)) or "linear" for h in r["architectures"])
        log(f"  {r['dataset']}: program {r['bucket'] + 1}: {r['configs']} configs (nets {archs} padded to "
            f"{'x'.join(map(str, r['padded_hidden'])) or 'linear'}; {','.join(r['activations'])}; "
            f"{','.join(r['optimizers'])}), {r['chunks']} chunk(s) of {r['chunk_size']}, "
            f"{r['chunk_bytes'] / 2**20:.1f} MiB per chunk, estimated {r['estimate_compile_s']:.1f} s compile + "
            f"{r['estimate_run_s']:.1f} s run")
    log(f"estimated time: {total:.0f} s (compiles shared by datasets of the same shapes count once when run)")


def _out_dir(args, spec) -> str:
    """The output directory: named from the spec and a hash of what it trains, so the same command
    finds and resumes it."""
    out = args.out or os.path.join("jaxfit-runs", f"{spec.title}-{spec.digest}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out}: exists and is not a directory")
    return out


def _prepare_out(args, spec, out, log) -> None:
    """Resume the same sweep in `out`, refuse another sweep's directory unless --force, or clear it.
    Called only with `out`'s lock held: nothing in `out` is read, cleared or written before it."""
    import json
    import shutil

    from jaxfit.lock import LOCK_NAME

    marker = os.path.join(out, "sweep.json")
    if [f for f in os.listdir(out) if not f.startswith(LOCK_NAME)]:
        same = False
        if os.path.exists(marker):
            try:
                with open(marker) as f:
                    same = json.load(f).get("digest") == spec.digest
            except (OSError, ValueError):
                same = False
        if args.force:
            log(f"--force: clearing {out}")
            for name in [f for f in os.listdir(out) if not f.startswith(LOCK_NAME)]:
                full = os.path.join(out, name)
                shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
        elif not same:
            raise UserError(f"--out {out} holds {'another sweep' if os.path.exists(marker) else 'other files'}: "
                            "choose another --out, or pass --force to start afresh there (its contents are deleted)")
        else:
            log(f"resuming the sweep in {out} (finished chunks are reused)")
    from jaxfit import fsio

    fsio.check_writable(out)


def _write_sweep_files(out, spec, args) -> None:
    import json

    import jaxfit

    info = {"digest": spec.digest, "title": spec.title, "spec": spec.path, "configs": len(spec.configs),
            "datasets": [{"label": d.label, "generator": d.generator, "args": d.args} for d in spec.data],
            "options": {k: getattr(args, k) for k in ("epochs", "seeds", "n", "smoke", "quick", "fuse")},
            "jaxfit": jaxfit.__version__, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    from jaxfit import fsio

    fsio.write_text(os.path.join(out, "spec.toml" if spec.path else "spec.txt"), spec.text)
    fsio.write_text(os.path.join(out, "sweep.json"), json.dumps(info, indent=1, default=str))


_STATE: dict[str, Any] = {}  # the sweep's output directory, for the interrupt message


def cmd_sweep(args: argparse.Namespace) -> int:
    import jaxfit

    _check_options(args)
    log = _Log(args.quiet)
    log("building configs ...", end=" ")
    t0 = time.perf_counter()
    spec = _build(args)
    log(f"{len(spec.configs)} configs, {len(spec.data)} dataset(s) ({time.perf_counter() - t0:.1f} s)")
    # Everything is validated before anything compiles.
    loaded = []
    for run in spec.data:
        try:
            loaded.append(run.load())
        except (TypeError, ValueError) as e:
            raise UserError(f"{spec.path or 'dataset'}: {run.label}: {e}") from None
    for run, data in zip(spec.data, loaded):
        for i, c in enumerate(spec.configs):
            try:
                jaxfit.engine.check_config_for_data(c, data, i)
            except ValueError as e:
                raise UserError(f"{run.label}: {e}") from None
    budget = jaxfit.engine.memory_budget()
    rows = _estimate(spec, loaded, budget)
    disk = _param_bytes(spec, loaded)
    out = _out_dir(args, spec)
    if args.dry_run:
        _print_plan(print, spec, rows, disk, budget)
        refusal = _refusal(args, rows, budget) or _disk_refusal(args, out, disk)
        if refusal:
            print(f"dry run: the real run would be refused: {refusal}")
            return 2
        print("dry run: nothing compiled or trained")
        return 0
    refusal = _refusal(args, rows, budget)
    if refusal:
        raise UserError(refusal)
    _STATE["out"] = out
    from jaxfit.lock import DirLock

    existed = os.path.isdir(out)
    try:
        with DirLock(out):  # one writer per output directory, taken before anything in it is touched
            _prepare_out(args, spec, out, log)
            return _run_sweep(args, spec, loaded, rows, disk, budget, out, log)
    except UserError:
        if not existed:  # refused before writing: leave no empty directory behind
            with contextlib.suppress(OSError):
                os.rmdir(out)
        raise


def _refusal(args, rows, budget) -> str | None:
    """Why the run would be refused by the memory limit (None: it would not)."""
    if args.no_limits:
        return None
    big = [r for r in rows if r["bytes_per_config"] > budget]
    if not big:
        return None
    r = big[0]
    return (f"{r['dataset']}: program {r['bucket'] + 1} needs about {r['bytes_per_config'] / 2**30:.1f} GiB per config, "
            f"over the memory budget of {budget / 2**30:.1f} GiB: shrink the nets or the data, or pass --no-limits "
            "to try anyway")


def _disk_refusal(args, out, disk) -> str | None:
    """Why the run would be refused for lack of disk space under `out` (None: it would not)."""
    import shutil

    if args.no_limits:
        return None
    probe = out
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe or ".").free
    if disk <= free:
        return None
    return (f"--out {out}: the sweep's checkpoints and results need about {disk / 2**30:.1f} GiB, only "
            f"{free / 2**30:.1f} GiB free: free space, choose another --out, or pass --no-limits")


def _run_sweep(args, spec, loaded, rows, disk, budget, out, log) -> int:
    import jaxfit

    refusal = _disk_refusal(args, out, disk)
    if refusal:
        raise UserError(refusal)
    _print_plan(log, spec, rows, disk, budget)
    _write_sweep_files(out, spec, args)
    if not args.no_cache:
        jaxfit.enable_compilation_cache()
    log(f"jaxfit sweep: {len(spec.configs)} configs x {len(loaded)} dataset(s) -> {out}")
    tables = []
    metric = args.metric if args.metric != "val_acc" else spec.settings.get("metric", "val_acc")
    top = args.top if args.top != 10 else spec.settings.get("top", 10)
    for run, data in zip(spec.data, loaded):
        t0 = time.perf_counter()
        log(f"\n== {run.label}: n_train={data.n_train}, n_val={data.n_val}, classes={data.num_classes}")
        result = jaxfit.sweep(data, spec.configs, progress=not (args.no_progress or args.quiet),
                              checkpoint_dir=os.path.join(out, run.label, "chunks"), fuse=args.fuse)
        result.meta["dataset"]["args"] = run.args
        path = result.save(os.path.join(out, run.label))
        m = result.meta
        resumed = sum(p["resumed"] for p in m["plans"])
        if resumed:
            log(f"resumed {resumed} finished chunk(s) from {os.path.join(out, run.label, 'chunks')}")
        log(f"{len(spec.configs)} configs in {m['programs']} program(s) (fuse={m['fuse']}: the planner's estimate "
            f"of compile + run time decides what shares a program): compile {m['compile_s']:.1f} s "
            f"({m['programs_compiled']} compiled, {m['programs_from_disk']} from the disk cache), "
            f"run {m['run_s']:.1f} s, {_throughput(m)}, {int(result.diverged.sum())} diverged")
        for row, p in zip(m["plan"], m["plans"]):
            archs = " ".join("x".join(map(str, h)) or "linear" for h in row["architectures"])
            log(f"  program {row['bucket'] + 1}: {row['configs']} configs; nets {archs} padded to "
                f"{'x'.join(map(str, row['padded_hidden'])) or 'linear'}; {','.join(row['activations'])}; "
                f"{','.join(row['optimizers'])}; estimated {row['estimate_compile_s']:.1f} s compile + "
                f"{row['estimate_run_s']:.1f} s run, measured {p['compile_s']:.1f} s ({p['source'] or 'resumed'}) + "
                f"{p['run_s']:.1f} s")
        by = _varying(result.table, [f.name for f in __import__("dataclasses").fields(jaxfit.Config)
                                     if f.name != "seed"])
        col, note = result.ranking_column(metric)  # note: no validation split, so a training metric ranks
        import warnings

        from jaxfit.errors import JaxfitWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JaxfitWarning)  # the note is printed below instead
            best = result.best(metric, k=top, by=by or None)  # the one ranking (the report's too)
        shown = (col,) + (("final_val_acc", "final_val_loss") if "val_" in col else ("final_train_acc",
                                                                                    "final_train_loss"))
        cols = by + list(dict.fromkeys(c for m in shown for c in best.columns if c.startswith(m) and
                                       c.endswith(("mean", "ci")))) + ["diverged_fraction"]
        import pandas as pd

        if note:
            log(f"note: {note}")
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format",
                               "{:.4f}".format):
            log(f"top {top} by seed-averaged {col.replace('final_', 'final ', 1)}:")
            log(best[cols].to_string(index=False))
        _print_diagnostics(log, result)
        log(f"saved {path} ({time.perf_counter() - t0:.1f} s)")
        t = result.table.reset_index()
        for k, v in run.columns().items():
            t.insert(0, k, v)
        tables.append(t)
    _save_table(out, tables)
    report = _report(out, log)
    print(f"results: {out}" + (f"  report: {report}" if report else "") +
          f"  (load one dataset's with jaxfit.SweepResult.load('{os.path.join(out, spec.data[0].label)}'))")
    return 0


def _throughput(meta) -> str:
    """Model-steps per second of what this process trained (resumed chunks excluded)."""
    steps = meta.get("model_steps_trained", meta["model_steps"])
    if steps == 0:
        return "nothing trained (every chunk resumed)"
    if meta["run_s"] <= 0:
        return f"{steps:,} model-steps"
    return f"{steps / meta['run_s']:,.0f} model-steps/s"


def _print_diagnostics(log, result, examples: int = 3) -> None:
    """Per flag of jaxfit.diagnose: how many configs raised it, and the first few with their diagnosis."""
    from jaxfit.diagnose import FLAGS

    t = result.table
    counts = {f: int(t[f].fillna(False).astype(bool).sum()) for f in FLAGS if f in t.columns}
    raised = {f: k for f, k in counts.items() if k}
    if not raised:
        log("diagnostics: no flag raised")
        return
    log("diagnostics (jaxfit.diagnose; columns of table.parquet): " +
        ", ".join(f"{f} {k}/{len(t)}" for f, k in raised.items()))
    shown = t[t["diagnosis"].astype(str) != ""].head(examples)
    for i, row in shown.iterrows():
        log(f"  config {i} ({'x'.join(map(str, row['hidden'])) or 'linear'}, {row['activation']}, "
            f"{row['optimizer']} lr={row['lr']:g}): {row['diagnosis']}")


def _save_table(out: str, tables) -> None:
    """One results table for the whole sweep: every dataset run's rows with its dataset arguments."""
    import pandas as pd

    t = pd.concat(tables, ignore_index=True)
    for col in ("hidden", "betas"):
        if col in t.columns:
            t[col] = t[col].map(lambda v: list(v) if isinstance(v, tuple) else v)
    from jaxfit import fsio

    fsio.write_parquet(os.path.join(out, "table.parquet"), t)
    fsio.write_csv(os.path.join(out, "table.csv"),
                   t.assign(**{c: t[c].map(str) for c in ("hidden", "betas") if c in t.columns}), index=False)


def _report(out: str, log) -> str | None:
    from jaxfit import report

    path, failures = report.build_checked(out)
    _print_failures(failures)
    log(f"report: {path}")
    return path


def _print_failures(failures) -> None:
    for where, why in failures:
        print(f"jaxfit: error: report: could not load {where}: {why} (the page says so in its place)",
              file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.dir):
        raise UserError(f"{args.dir}: no such sweep directory")
    from jaxfit import report

    path, failures = report.build_checked(args.dir)
    _print_failures(failures)
    print(path)
    return 1 if failures else 0


def cmd_datasets(args: argparse.Namespace) -> int:
    import inspect

    from jaxfit.datasets import DATASETS

    for name, fn in sorted(DATASETS.items()):
        params = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(fn).parameters.values())
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}  [{params}]")
    print("file         your own CSV / Parquet (label = column) or npz (arrays x, y): [[data]] file = \"...\"")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from jaxfit import datasets, tasks
    from torchref import parity  # the command line stands above both packages

    if args.target in tasks.TASKS:
        task = tasks.get(args.target)
        data = task.dataset(full=args.full)
        config = task.make_config(full=args.full)
    else:
        if "=" not in args.target:
            raise UserError(f"parity: {args.target!r} is neither a task ({', '.join(tasks.TASKS)}) nor a config "
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
    if args.rows < 2:
        raise UserError(f"--rows={args.rows} is invalid: need at least 2")
    if args.pair:
        if args.steps:
            raise UserError("--steps is for the config's own network, not with --pair")
        flax_factory, torch_module = _load_pair(args.pair)
        r = parity.replay_pair(data, config, flax_factory,
                               torch_module(config, data.num_features, _num_outputs(config, data)))
    else:
        r = parity.replay(data, config, steps=args.steps)
    if r.dropout:
        print(f"dropout: {r.dropout}")
    print(r.table())
    print(r.verdict())
    steps_ok = True
    if args.steps:
        print()
        print(r.steps_table(max_rows=args.rows))
        print(r.steps_verdict())
        steps_ok = r.first_step_violation() is None
    if args.plot:
        print(f"plot: {r.plot(args.plot)}")
    return 0 if r.ok and steps_ok else 1


def _num_outputs(config, data) -> int:
    from jaxfit.train import num_outputs

    return num_outputs(config.loss, data.num_classes)


def _load_pair(path: str):
    """(flax_factory, torch_module) from a user's Python file."""
    import importlib.util

    if not os.path.isfile(path):
        raise UserError(f"--pair {path}: no such file")
    spec = importlib.util.spec_from_file_location("jaxfit_user_pair", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    missing = [n for n in ("flax_factory", "torch_module") if not callable(getattr(mod, n, None))]
    if missing:
        raise UserError(f"--pair {path}: defines no {' or '.join(missing)} (see examples/residual_pair.py)")
    return mod.flax_factory, mod.torch_module


def build_parser() -> argparse.ArgumentParser:
    from jaxfit import __version__

    p = argparse.ArgumentParser(prog="jaxfit", description="Train many small MLPs at once with JAX.",
                                epilog="example:\n  jaxfit sweep --quick", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"jaxfit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sweep", help="run a sweep (default: document 1's question on sum_mod and sum_bin)",
                       description="Train a grid of configs on each dataset; print a ranked table; save results "
                                   "and a report.",
                       epilog="examples:\n  jaxfit sweep                            document 1's question\n"
                              "  jaxfit sweep examples/sum_mod.toml      your own spec (TOML; see jaxfit/spec.py)\n"
                              "  jaxfit sweep examples/sum_mod.toml --dry-run   what it would compile and cost\n"
                              "  jaxfit sweep examples/sum_mod.toml --smoke     any spec on a tiny budget",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("spec_pos", nargs="?", metavar="SPEC", help="a TOML sweep spec (see examples/)")
    s.add_argument("--spec", help="the same as SPEC")
    s.add_argument("--datasets", help=f"comma-separated dataset names (default: {','.join(DEFAULT_DATASETS)}; "
                                      "not with a spec)")
    s.add_argument("--n", type=int, help="points per generated dataset (not with a spec that sets n)")
    s.add_argument("--epochs", type=int, help="epochs of every config (default 40, or the spec's)")
    s.add_argument("--seeds", type=int, help="seeds per config (default 2, or the spec's)")
    s.add_argument("--quick", action="store_true", help="a small built-in sweep that finishes in seconds")
    s.add_argument("--smoke", action="store_true", help="any sweep on a tiny budget (2 epochs, 1 seed, 200 points, "
                                                        "8 configs): for tests and CI")
    s.add_argument("--dry-run", action="store_true", help="print the configs, programs, chunks, memory and time "
                                                          "estimate; compile and train nothing")
    s.add_argument("--metric", default="val_acc", help=f"ranking metric (default val_acc; {', '.join(METRICS)})")
    s.add_argument("--top", type=int, default=10, help="rows of the ranked table (default 10)")
    s.add_argument("--out", help="results directory (default jaxfit-runs/<spec name>-<hash>: rerunning the same "
                                 "command resumes it)")
    s.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out (the default when it holds the same sweep)")
    s.add_argument("--force", action="store_true", help="start afresh in an --out that holds another sweep "
                                                        "(its contents are deleted)")
    s.add_argument("--no-limits", action="store_true", help="train a sweep estimated over the limits (configs, "
                                                            "memory per config, disk)")
    s.add_argument("--quiet", action="store_true", help="print only errors and the results line (for scripts)")
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
    q.add_argument("--steps", action="store_true",
                   help="also compare every optimizer step's loss and parameters; print the steps around the first "
                        "difference and name it (runs of up to 20,000 steps)")
    q.add_argument("--rows", type=int, default=20, help="rows of the --steps table (default 20)")
    q.add_argument("--pair", metavar="FILE.py",
                   help="replay your own pair of models instead of the config's network: a Python file defining "
                        "flax_factory(config, num_features, num_outputs, rngs) and torch_module(config, "
                        "num_features, num_outputs) (see examples/residual_pair.py)")
    q.set_defaults(func=cmd_parity)

    r = sub.add_parser("report", help="(re)build a sweep directory's report.html",
                       description="Build report.html from a sweep directory alone.",
                       epilog="example:\n  jaxfit report jaxfit-runs/default-1a2b3c4d5e",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("dir", help="a sweep's output directory")
    r.set_defaults(func=cmd_report)
    d = sub.add_parser("datasets", help="list the built-in datasets, a line each",
                       description="The built-in dataset generators and their arguments.",
                       epilog="example:\n  jaxfit datasets", formatter_class=argparse.RawDescriptionHelpFormatter)
    d.set_defaults(func=cmd_datasets)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    from .cpu import configure_host_devices

    configure_host_devices()  # before JAX starts: one XLA host device per core (jaxfit.cpu)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:  # bad input: one clear line, no traceback (any other error keeps its traceback)
        print(f"jaxfit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = _STATE.get("out")
        hint = (f"; finished chunks are saved in {where}: rerun the same command to resume"
                if where else "")
        print(f"jaxfit: interrupted{hint}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        if argv is None:  # the command itself: leave at once (XLA's threads may be mid-compile, and an
            os._exit(130)  # ordinary interpreter exit can then crash); the lock was released on the way out
        return 130
    except OSError as e:  # a full disk, a read-only or vanished directory: one line, what and where
        print(f"jaxfit: error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

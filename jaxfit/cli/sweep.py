"""`jaxfit sweep`: build the spec, check everything, plan, take the output directory's lock, train
each dataset, print the ranked table and diagnostics, save the results and the report."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import time
from typing import Any, Sequence

from ..errors import UserError
from .report import build_for_sweep

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
    for name in ("top", "epochs", "seeds", "n", "eval_every", "eval_rows"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise UserError(f"--{name.replace('_', '-')}={v} is invalid: must be at least 1")
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


def _estimate(spec, loaded, budget, fuse):
    """Per dataset: the programs, chunks, memory and time estimates (engine.run.plan_programs, as the
    run with this `fuse` will plan them; nothing compiles)."""
    from jaxfit.engine.run import plan_programs

    return [p for run, data in zip(spec.data, loaded) for p in plan_programs(data, spec.configs, budget, run.label,
                                                                             fuse)]


def _param_bytes(spec, loaded) -> int:
    """Disk the chunk checkpoints and saved parameters take (float64 upper bound, uncompressed)."""
    from jaxfit.engine import plan
    from jaxfit.program.train import spec_of

    total = 0
    for data in loaded:
        for c in spec.configs:
            s = spec_of(c, data.n_train, data.n_val, data.num_features, data.num_classes)
            total += 8 * (plan.n_weights(s.arch) * 2 + 6 * c.epochs)
    return 2 * total  # chunks + params.npz


def _print_plan(log, spec, rows, est_disk, budget) -> None:
    if spec.search:
        se = spec.search
        first = f" after a first round of {se['startup']}" if se.get("startup") else ""
        log(f"search: {se['trials']} trials in rounds of {se['batch']}{first} ({se['sampler']} sampler, seed {se['seed']}), "
            f"each at {se['seeds']} seed(s), told the seed-averaged {se['metric']}; the plan below is one round "
            "drawn at random from the space")
    log(f"plan: {len(spec.configs)} configs x {len(spec.data)} dataset(s); memory budget {budget / 2**30:.1f} GiB "
        f"per chunk; checkpoints and results up to {est_disk / 2**20:.1f} MiB on disk")
    total = 0.0
    for p in rows:
        r = p.row
        t = (r.estimate_compile_s or 0) + (r.estimate_run_s or 0)
        total += t
        archs = " ".join("x".join(map(str, h)) or "linear" for h in r.architectures)
        log(f"  {p.dataset}: program {r.bucket + 1}: {r.configs} configs (nets {archs} padded to "
            f"{'x'.join(map(str, r.padded_hidden)) or 'linear'}; {','.join(r.activations)}; "
            f"{','.join(r.optimizers)}), {p.chunks} chunk(s) of {p.chunk_size}, "
            f"{p.chunk_bytes / 2**20:.1f} MiB per chunk, estimated {r.estimate_compile_s:.1f} s compile + "
            f"{r.estimate_run_s:.1f} s run")
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

    from jaxfit.io.lock import LOCK_NAME

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
    from jaxfit.io import files as fsio

    fsio.check_writable(out)


def _write_sweep_files(out, spec, args) -> None:
    import json

    import jaxfit

    info = {"digest": spec.digest, "title": spec.title, "spec": spec.path, "configs": len(spec.configs),
            "datasets": [{"label": d.label, "generator": d.generator, "args": d.args} for d in spec.data],
            "options": {**{k: getattr(args, k) for k in ("epochs", "seeds", "n", "smoke", "quick", "fuse")},
                        "eval_every": spec.evaluation[0], "eval_rows": spec.evaluation[1],
                        "prune": spec.prune.record() if spec.prune is not None else None,
                        "search": ({k: v for k, v in spec.search.items() if k != "space"} if spec.search else None)},
            "jaxfit": jaxfit.__version__, "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    from jaxfit.io import files as fsio

    fsio.write_text(os.path.join(out, "spec.toml" if spec.path else "spec.txt"), spec.text)
    fsio.write_text(os.path.join(out, "sweep.json"), json.dumps(info, indent=1, default=str))


CURRENT: dict[str, Any] = {}  # the sweep's output directory, for the interrupt message


def _prune_options(args, spec) -> None:
    """--prune / --min-epochs / --eta over the spec's [prune] table (checked before any work)."""
    from jaxfit.spec import prune_table

    tuning = {k: getattr(args, k, None) for k in ("min_epochs", "eta") if getattr(args, k, None) is not None}
    choice = getattr(args, "prune", None)
    if choice == "none":
        if tuning:
            raise UserError(f"--{next(iter(tuning)).replace('_', '-')} has no meaning with --prune none")
        spec.prune_table = None
        return
    if choice is None and spec.prune_table is None:
        if tuning:
            raise UserError(f"--{next(iter(tuning)).replace('_', '-')} needs --prune halving (or a [prune] table "
                             "in the spec)")
        return
    table = dict(spec.prune_table or {"kind": choice})
    if choice is not None and table.get("kind", "halving") != choice:  # --prune names the kind over the spec's
        table = {k: v for k, v in table.items() if k != "seed" or choice == "hyperband"} | {"kind": choice}
    table.update(tuning)
    spec.prune_table = prune_table(table, lambda key=None: "--prune")


def cmd_sweep(args: argparse.Namespace) -> int:
    import jaxfit

    _check_options(args)
    log = _Log(args.quiet)
    log("building configs ...", end=" ")
    t0 = time.perf_counter()
    spec = _build(args)
    for k in ("eval_every", "eval_rows"):  # the options override the spec's [sweep] settings
        if getattr(args, k, None) is not None:
            spec.settings[k] = getattr(args, k)
    _prune_options(args, spec)
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
    rows = _estimate(spec, loaded, budget, args.fuse)
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
    if _executor(args, spec)["executor"] == "ray":  # the cluster reached before anything is written
        from jaxfit.engine.remote import connect

        connect(_executor(args, spec).get("ray_address"))
    CURRENT["out"] = out
    from jaxfit.io.lock import DirLock

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
    big = [p for p in rows if p.bytes_per_config > budget]
    if not big:
        return None
    p = big[0]
    return (f"{p.dataset}: program {p.row.bucket + 1} needs about {p.bytes_per_config / 2**30:.1f} GiB per config, "
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
        shown_progress = not (args.no_progress or args.quiet)
        if spec.search:
            found = _search(spec, data, os.path.join(out, run.label, "search"), args, log)
            result = found.result
        else:
            result = jaxfit.sweep(data, spec.configs, progress=shown_progress,
                                  checkpoint_dir=os.path.join(out, run.label, "chunks"), fuse=args.fuse,
                                  eval_every=spec.evaluation[0], eval_rows=spec.evaluation[1], prune=spec.prune,
                                  **_executor(args, spec))
        result.meta["dataset"]["args"] = run.args
        path = result.save(os.path.join(out, run.label))
        m = result.meta
        resumed = sum(p["resumed"] for p in m["plans"])
        if resumed:
            log(f"resumed {resumed} finished chunk(s) from {os.path.join(out, run.label, 'chunks')}")
        log(f"{len(result)} configs in {m['programs']} program(s) (fuse={m['fuse']}: the planner's estimate "
            f"of compile + run time decides what shares a program): compile {m['compile_s']:.1f} s "
            f"({m['programs_compiled']} compiled, {m['programs_from_disk']} from the disk cache), "
            f"run {m['run_s']:.1f} s, {_throughput(m)}, {int(result.diverged.sum())} diverged")
        if m.get("prune"):
            log("successive halving on " + m["prune"]["metric"] + ": " + ("; ".join(
                f"epoch {r['epoch']}: {r['kept']} of {r['ranked']} train on" for r in m["prune"]["rungs"])
                or "no rung below the last epoch")
                + f" ({m['model_steps_trained']:,} of {m['model_steps']:,} model-steps trained)")
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
    report = build_for_sweep(out, log)
    print(f"results: {out}" + (f"  report: {report}" if report else "") +
          f"  (load one dataset's with jaxfit.SweepResult.load('{os.path.join(out, spec.data[0].label)}'))")
    return 0


def _executor(args, spec) -> dict:
    """executor= / ray_address= of the sweep calls: --ray [ADDRESS] over the spec's [sweep] executor."""
    if getattr(args, "ray", None) is not None:
        return {"executor": "ray", "ray_address": args.ray or None}
    return {"executor": spec.settings.get("executor", "local")}


def _search(spec, data, where, args, log):
    """A [search] spec's search on one dataset (its study, rounds and checkpoints under `where`), with
    a line per round and a summary."""
    import jaxfit

    se = spec.search
    found = jaxfit.search(data, se["space"], trials=se["trials"], batch=se["batch"], startup=se.get("startup"),
                          sampler=se["sampler"],
                          seed=se["seed"], seeds=se["seeds"], metric=se["metric"], prune=spec.prune, directory=where,
                          progress=log if not args.quiet else False, fuse=args.fuse,
                          eval_every=spec.evaluation[0], eval_rows=spec.evaluation[1], **_executor(args, spec))
    meta = found.meta
    states = found.trials["state"].value_counts().to_dict()
    log(f"search: {len(found.trials)} trials ({', '.join(f'{v} {k.lower()}' for k, v in states.items())}) in "
        f"{len(meta['rounds'])} round(s), {len(found.result)} configs trained; sampler {meta['ask_s']:.1f} s, "
        f"training {meta['train_s']:.1f} s, telling {meta['tell_s']:.1f} s (study: {where})")
    best = found.best(1)
    if not best.empty:
        row = best.iloc[0]
        params = ", ".join(f"{k.removeprefix('param_')}={row[k]:.4g}" if isinstance(row[k], float) else
                           f"{k.removeprefix('param_')}={row[k]}" for k in best.columns if k.startswith("param_"))
        log(f"best trial {int(row['number'])} (round {int(row['round']) + 1}): {se['metric']} {row['value']:.4f} "
            f"with {params}")
    return found


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
    from jaxfit.diagnostics import FLAGS

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
    from jaxfit.io import files as fsio

    fsio.write_parquet(os.path.join(out, "table.parquet"), t)
    fsio.write_csv(os.path.join(out, "table.csv"),
                   t.assign(**{c: t[c].map(str) for c in ("hidden", "betas") if c in t.columns}), index=False)

"""The `jaxfit` command: parse, validate, call the library, print. One module per command
(sweep, parity, report, datasets), each thin over the library; this one parses and dispatches.

Only a `jaxfit.errors.UserError` becomes one line on stderr and exit 2; any other exception keeps
its traceback. --version, --help and `datasets` import no JAX."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import UserError
from ..version import __version__
from . import sweep as sweep_cmd
from .datasets import cmd_datasets
from .parity import cmd_parity
from .report import cmd_report
from .sweep import DEFAULT_DATASETS, METRICS, cmd_sweep, default_sweep

__all__ = ["DEFAULT_DATASETS", "build_parser", "default_sweep", "main"]


def build_parser() -> argparse.ArgumentParser:
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
    s.add_argument("--eval-every", type=int, metavar="K", help="evaluate every K epochs (and at each config's "
                   "last epoch) instead of every epoch; curves hold NaN between (default 1, or the spec's)")
    s.add_argument("--eval-rows", type=int, metavar="N", help="evaluate on at most N fixed rows of each split, "
                   "except at a config's last epoch (all rows); default: every row")
    s.add_argument("--prune", choices=["halving", "hyperband", "none"], help="successive halving: at min-epochs * "
                   "eta^k epochs only the best 1/eta of the settings (seed-averaged) train on; hyperband: brackets "
                   "of it starting at each rung (default: the spec's [prune], else none)")
    s.add_argument("--min-epochs", type=int, metavar="R", help="with --prune: the first rung (default 1)")
    s.add_argument("--eta", type=int, metavar="ETA", help="with --prune: keep 1/ETA at each rung (default 3)")
    s.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="train the chunks as Ray tasks on a cluster: "
                   "ADDRESS, else $RAY_ADDRESS, else the one started here with `ray start --head` (pip install -e "
                   "\".[ray]\"; spec: [sweep] executor = \"ray\")")
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
    from ..engine.cpu import configure_host_devices

    configure_host_devices()  # before JAX starts: one XLA host device per core (jaxfit.engine.cpu)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:  # bad input: one clear line, no traceback (any other error keeps its traceback)
        print(f"jaxfit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = sweep_cmd.CURRENT.get("out")
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

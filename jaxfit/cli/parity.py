"""`jaxfit parity TARGET`: replay a task or config in PyTorch (torchref) and jaxfit from the same
weights and batches; print both epoch by epoch, the deviation and the verdict."""

from __future__ import annotations

import argparse
import os

from ..errors import UserError


def cmd_parity(args: argparse.Namespace) -> int:
    from jaxfit import datasets
    from torchref import tasks
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
    from jaxfit.program.train import num_outputs

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

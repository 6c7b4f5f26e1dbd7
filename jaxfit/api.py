"""The two entry points: `sweep(data, configs)` and `train(data, config)`."""

from __future__ import annotations

import datetime as _dt
import numbers
import time
from typing import Any, Callable, Sequence

from . import engine
from .config import Config
from .datasets import Dataset
from .diagnostics import diagnose
from .engine.plan import describe as plan_rows
from .engine.prune import Halving
from .errors import UserError
from .program.train import effective_batch
from .results import SweepResult
from .results.provenance import environment


def positive_int(name: str, v, remedy: str) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
        raise UserError(f"{name}={v!r} is invalid: {remedy}")


def check_options(chunk_size, memory_budget, segment, eval_every, eval_rows) -> None:
    """The numeric options, checked before anything is planned or compiled."""
    positive_int("chunk_size", chunk_size, "need a positive integer (configs per compiled chunk), or None for as "
                  "many as fit the memory budget")
    positive_int("memory_budget", memory_budget, "need a positive integer number of bytes (e.g. 2 * 2**30 for "
                  "2 GiB), or None for the default (70% of an accelerator's memory, half the RAM on a CPU)")
    positive_int("segment", segment, "need a positive integer (epochs per program call), or None for the default")
    positive_int("eval_every", eval_every, "need a positive integer (epochs between evaluations; 1: every epoch)")
    positive_int("eval_rows", eval_rows, "need a positive integer (rows of each split evaluated between the last "
                  "epochs), or None for every row")


def check_inputs(data, configs) -> None:
    if not isinstance(data, Dataset):
        raise UserError(f"data must be a jaxfit Dataset (jaxfit.datasets.sum_mod(), ..., from_arrays(x, y)), "
                         f"got {type(data).__name__}")
    if not configs:
        raise UserError("configs is empty: pass at least one jaxfit.Config (jaxfit.grid(...) builds many)")
    for i, c in enumerate(configs):
        if not isinstance(c, Config):
            raise UserError(f"configs[{i}] is a {type(c).__name__}, not a jaxfit.Config")
        engine.check_config_for_data(c, data, i)


def sweep(data: Dataset, configs: Sequence[Config], *, params: Sequence[Any] | None = None,
          model_states: Sequence[Any] | None = None, batch_orders: Sequence[Any] | None = None,
          chunk_size: int | None = None, memory_budget: int | None = None,
          progress: bool | str | Callable[[int, int], None] = False,
          on_chunk: Callable | None = None, checkpoint_dir: str | None = None,
          matmul_precision: str = "highest", dropout_masks: Sequence[Any] | None = None,
          fuse: str = "auto", segment: int | None = None, record_steps: bool = False,
          model: Callable | None = None, eval_every: int = 1, eval_rows: int | None = None,
          prune: Halving | None = None, executor: str = "local", ray_address: str | None = None) -> SweepResult:
    """Train every config on `data`, all configs of a bucket in one compiled, vmapped program.

    Args:
      data: a `jaxfit.datasets.Dataset`.
      configs: the `Config`s, in the order the result keeps.
      params, model_states: optional initial parameters and model state (BatchNorm running stats,
        Fourier matrix, input statistics) per config, in jaxfit's layout (`torchref.to_params`
        makes them from a PyTorch state_dict), replacing the fresh initialisation.
      batch_orders: optional [epochs, steps, batch] integer arrays of training indices per config (a
        partial last batch padded with -1), replacing the shuffling.
      chunk_size: fix the number of configs per compiled chunk (default: as many as fit the memory
        budget). A fixed chunk size and device count give bitwise-reproducible layouts.
      memory_budget: bytes a chunk may use (default: 70% of an accelerator's memory, or half the RAM).
      progress: True for progress (a bar on a terminal, plain log lines otherwise; "bar" / "log" force
        either), or a callable(done, total) in config-epochs. Phases and an ETA from training alone.
      on_chunk: callable(plan, chunk_index, raw_outputs) after each finished chunk.
      checkpoint_dir: a directory where each finished chunk is written at once; chunks already
        there (same data, same configs) are loaded instead of trained, so a rerun resumes.
      matmul_precision: "highest" (default: full float32 products, as PyTorch computes them; on
        A100/H100-class GPUs JAX's own default may use TF32) or "default" / "tensorfloat32" /
        "bfloat16" to trade exactness for speed on a GPU. The parity suite and `jaxfit parity` use
        "highest".
      dropout_masks: optional per-config 0/1 keep masks `masks[e][s][k]` [batch, hidden[k]] (rows
        aligned with `batch_orders`, which they need), replacing the dropout draws: a replay of
        PyTorch's own masks (torchref.train records them).
      fuse: "auto" (default: the planner fuses configs of different structure into one program
        where its cost model says that saves time), "none" (one program per structure) or "all"
        (one program per static remainder: batch size, shuffle, dtype, output width). The plan,
        its estimates and the measured times are in `result.meta["plan"]` / `["plans"]`.
      segment: epochs per call of the compiled program (default: about 1.5 s of estimated work).
      record_steps: also keep every optimizer step's loss and parameters (`result.step_losses`,
        `result.step_params`; for short replays: `jaxfit parity --steps`).
      model: your own Flax network instead of the built-in one: a factory
        `model(config, num_features, num_outputs, rngs) -> flax.nnx.Module`, called once per config on
        the host (`rngs`: nnx.Rngs seeded from `config.seed`, as the built-in network's init). The
        contract of the module (see jaxfit.flax):
        - `module(x, train=..., [key=..., rate=..., mask=...])` maps x [B, num_features] to what
          `config.output` names (logits, softmax or sigmoid probabilities) for `config.loss`, shape
          [B, num_outputs]; only the keywords its signature names are passed.
        - jaxfit.flax's `Dropout` and `BatchNorm1d` inside it get the mode, the step's dropout key (the
          j-th Dropout called: fold_in(key, j)), `config.dropout` (for Dropout(rate=None)) and the row
          mask of a padded batch without being wired; other layers get them through the keywords.
        - nnx.Param variables are trained (jaxfit's losses, optimisers and schedules); every other
          variable (BatchNorm statistics, buffers) is state, returned updated by the forward pass.
        A flax.linen module: `model=jaxfit.flax.from_linen(make)`. Configs whose modules share a
        graph (nnx.split's GraphDef) share one compiled program; numbers
        (rates, seeds, the module's own non-structural variables) are vmapped. Not combinable with
        params, model_states, dropout_masks, checkpoint_dir or record_steps.
      eval_every: evaluate (eval-mode loss and accuracy on both splits: full_train_loss, train_acc,
        val_loss, val_acc) every `eval_every` epochs instead of every epoch, and always at each
        config's last epoch. The curves hold NaN at the epochs not evaluated (the batch-mean
        `train_loss` and `last_batch_loss` are kept every epoch), the best epoch (`params(i, best=True)`)
        is the best evaluated one, divergence is read from the epochs evaluated, and the diagnostics
        that read a window of the curve count evaluations, not epochs. Training is unchanged: the
        evaluated epochs' numbers equal those of `eval_every=1`.
      eval_rows: evaluate on a fixed subsample of at most this many rows of each split (the same rows
        at every epoch and for every config) instead of all of them, except at a config's last epoch,
        which is always evaluated in full. Between, the curves and the choice of the best epoch come
        from the subsample (an estimate of the full split's numbers).
      prune: `jaxfit.Halving(metric="val_loss", min_epochs=r, eta=3, group_by=("seed",))` for
        successive halving: at r, r*eta, r*eta^2... epochs every bucket has trained its live configs
        that far, the best 1/eta of the groups (configs equal but for `group_by`, their metric
        averaged) train on and the rest stop there (`table["stopped_epoch"]`, `["pruned"]`; their
        curves end at the stop; final and best-epoch params are those at or before it). Survivors
        train exactly as without pruning (a config never depends on its chunk-mates); the
        decisions are in `result.meta["prune"]`. With checkpoint_dir each span between rungs of
        each chunk is saved (the carried states and curves so far), so a rerun resumes and makes the
        same decisions. eval_every must divide every rung (the rung's epoch is evaluated); with
        eval_rows the rungs rank on the subsample, and a stopped config's last epoch is the
        subsample's (only configs that reach their own last epoch are evaluated there in full).
        Not combinable with on_chunk or record_steps yet.
      executor: "local" (default: this process's devices) or "ray": every chunk a Ray task on the
        running cluster (`ray.init()` already called, else `ray_address`, else $RAY_ADDRESS, else a
        cluster started on this machine); this process plans, loads the chunks already in
        checkpoint_dir and writes each chunk as it comes back (the only writer). A worker or node lost
        mid-chunk costs that chunk (retried by Ray); an error raised by training is not retried.
        Without chunk_size, a bucket is cut into at least as many chunks as the cluster runs tasks.
        Results equal a local run of the same chunk size with one device (float64 within 1e-12).
        With prune, each chunk's span between rungs is a task and this process decides every rung.
        Needs `pip install -e ".[ray]"`; not combinable with on_chunk, record_steps, model, params or
        replays yet.
    """
    configs = list(configs)
    check_options(chunk_size, memory_budget, segment, eval_every, eval_rows)
    check_inputs(data, configs)
    t0 = time.perf_counter()
    c0 = engine.compile_count()
    raw = engine.run_sweep(data, configs, params=params, model_states=model_states, batch_orders=batch_orders,
                           chunk_size=chunk_size, memory_budget_bytes=memory_budget, progress=progress,
                           on_chunk=on_chunk, checkpoint_dir=checkpoint_dir,
                           matmul_precision=matmul_precision, dropout_masks=dropout_masks, fuse=fuse,
                           segment=segment, record_steps=record_steps, model=model, eval_every=eval_every,
                           eval_rows=eval_rows, prune=prune, executor=executor, ray_address=ray_address)
    wall = time.perf_counter() - t0
    plans = raw.plans
    meta = {
        "dataset": {"name": data.name, "fingerprint": data.fingerprint(), "num_classes": data.num_classes,
                    "num_features": data.num_features, "n_train": data.n_train, "n_val": data.n_val,
                    "meta": data.meta},
        "fuse": fuse,
        "plan": [row.asdict() for row in plan_rows(raw.buckets, configs)],
        "plans": [p.record() for p in plans],
        "wall_s": wall,
        "compile_s": sum(p.compile_s for p in plans),
        "run_s": sum(p.run_s for p in plans),
        "compiles": engine.compile_count() - c0,
        "programs": len(plans),
        "programs_from_disk": sum(p.source == "disk" for p in plans),
        "programs_compiled": sum(p.source == "compiled" for p in plans),
        "matmul_precision": matmul_precision,
        "eval_every": eval_every,
        "eval_rows": eval_rows,
        "model_steps": model_steps(data, configs),
        "model_steps_trained": (model_steps(data, [c.replace(epochs=e) for c, e in
                                                   zip(configs, raw.prune["stopped_epoch"])])
                                if raw.prune is not None else
                                model_steps(data, [configs[i] for p in plans for ci, ch in enumerate(p.chunks)
                                                   if ci not in p.resumed_chunks for i in ch])),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(),
    }
    if raw.prune is not None:
        meta["prune"] = raw.prune
    if raw.remote is not None:
        meta["executor"] = raw.remote
    if model is not None:
        meta["model"] = f"{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', repr(model))}"
    result = SweepResult.from_run(configs, raw, meta)
    result.set_diagnostics(diagnose(result, data))  # from the data it trained on, once
    if record_steps:
        result.step_losses, result.step_params = raw.step_losses, raw.step_params
    return result


def model_steps(data: Dataset, configs: Sequence[Config]) -> int:
    """Optimizer steps summed over configs (the unit of throughput: model-steps per second)."""
    return sum(c.epochs * -(-data.n_train // effective_batch(c.batch_size, data.n_train)) for c in configs)


def train(data: Dataset, config: Config, *, params: Any = None, model_state: Any = None,
          batch_order: Any = None, dropout_masks: Any = None, progress: bool = False,
          matmul_precision: str = "highest", record_steps: bool = False) -> SweepResult:
    """Train one config (a sweep of one). `params`, `model_state`, `batch_order` and
    `dropout_masks` replay a given start, batch order and dropout (see `sweep`)."""
    one = lambda v: None if v is None else [v]  # noqa: E731
    return sweep(data, [config], params=one(params), model_states=one(model_state), batch_orders=one(batch_order),
                 dropout_masks=one(dropout_masks), progress=progress, matmul_precision=matmul_precision,
                 record_steps=record_steps)

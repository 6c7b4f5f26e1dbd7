"""`run_sweep`: the host loop over buckets, chunks and segments of the compiled programs.

Planning lives in `engine.plan`, compiling and caching in `engine.compile`, CPU tuning in
`engine.cpu`, checkpoints in `engine.store`; everything it runs is the pure program of
`jaxfit.program`.

* Bucket: configs that share one compiled program (`plan.plan_buckets`: fused where the cost model
  says fusing saves time).
* Chunk: a slice of a bucket sized to the memory budget; every chunk of a bucket has the same
  shape (the last is padded by repeating a config whose results are dropped), so a bucket compiles
  once. The plan is recorded in the result; pass `chunk_size` to fix it (layout reproducibility).
* Segment: the host loop calls a chunk's program for `segment` epochs at a time, carrying the
  training state between calls; progress is reported between calls (no host callback in the program).
* Devices: the config axis of a chunk is sharded over `jax.devices()` when there are several; the
  data are replicated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax
import numpy as np

from .. import config as cfgmod
from ..config import Config
from ..datasets import Dataset
from ..errors import UserError
from ..nn import layers, optim
from ..program.train import (Boundaries, Carry, Data, ProgramSpec, TrainState, choice_boundaries, choices_of, init_state,
                             num_outputs, run_of, seed_boundaries)
from . import compile as programs
from . import plan as planmod
from . import progress as progressmod
from . import prune as pruning
from .checks import check_batch_order, check_dropout_masks
from .compile import mesh_sharding
from .plan import Bucket, plan_buckets
from .store import KINDS as OUTPUT_KINDS  # the per-config outputs, as checkpoints keep them

EXECUTORS = ("local", "ray")
from .store import ChunkStore, SpanStore

MATMUL_PRECISIONS = ("highest", "default", "tensorfloat32", "bfloat16")


# ----------------------------------------------------------------------------- memory plan


def memory_budget() -> int:
    """Default bytes a chunk may use: 70% of an accelerator's memory, or half the host's RAM."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        with contextlib.suppress(Exception):
            return int(0.7 * dev.memory_stats()["bytes_limit"])
    with contextlib.suppress(Exception):
        return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return 4 << 30


@dataclass
class ChunkPlan:
    bucket: int
    chunk_size: int
    chunks: list[list[int]]  # config indices (into the sweep) of each chunk
    segment: int = 0  # epochs per program call
    compile_s: float = 0.0
    run_s: float = 0.0
    bytes: int | None = None  # XLA's memory analysis of the compiled chunk program
    cached: bool = False  # the program came from this process's cache
    source: str = ""  # "compiled", "disk" (JAX's persistent cache) or "process"
    resumed_chunks: list = field(default_factory=list)  # indices into `chunks` of those loaded from a checkpoint
    estimate: dict = field(default_factory=dict)
    spec: Any = None

    @property
    def resumed(self) -> int:
        """Chunks loaded from a checkpoint instead of trained."""
        return len(self.resumed_chunks)

    def record(self) -> dict[str, Any]:
        """The plan as it is kept in result.meta["plans"] (JSON)."""
        return {"bucket": self.bucket, "chunk_size": self.chunk_size, "chunks": self.chunks, "segment": self.segment,
                "compile_s": self.compile_s, "run_s": self.run_s, "bytes": self.bytes, "cached": self.cached,
                "source": self.source, "resumed": self.resumed, "estimate_compile_s": self.estimate.get("compile_s"),
                "estimate_run_s": self.estimate.get("run_s")}


@dataclass(frozen=True)
class ProgramPlan:
    """What a dry run shows of one program: its plan row and the chunks the memory budget gives."""

    dataset: str
    row: planmod.PlanRow
    chunk_size: int
    chunks: int
    bytes_per_config: int

    @property
    def chunk_bytes(self) -> int:
        return self.bytes_per_config * self.chunk_size


def plan_programs(data: Dataset, configs: Sequence[Config], budget: int, label: str = "",
                  fuse: str = "auto") -> list[ProgramPlan]:
    """The programs `run_sweep` would compile for `configs` on `data` (with the same `fuse`) and their
    chunks under `budget` (nothing compiles): the plan a dry run prints and the memory limit checks."""
    ndev = len(jax.devices())
    buckets = plan_buckets(data, configs, fuse=fuse)
    out = []
    for b, row in zip(buckets, planmod.describe(buckets, configs)):
        size = initial_chunk(b, None, budget, ndev)
        out.append(ProgramPlan(label or data.name, row, size, -(-len(b.members) // size),
                               planmod.bytes_per_config(b.spec)))
    return out


@dataclass
class SweepRun:
    """What `run_sweep` returns: per config its metrics ({name: [own epochs]}), final parameters and
    model state (in its own layout), and the plan with its estimates and measured times."""

    metrics: list
    params: list
    model_state: list
    plans: list
    buckets: list
    best_params: list | None = None  # per config, the params and model state at its best epoch (train.Carry)
    best_state: list | None = None
    step_losses: list | None = None  # with record_steps: per config [epochs, steps]
    step_params: list | None = None  # with record_steps: per config, [epochs, steps] of its own params
    user: list | None = None  # with model=: per config (graphdef, initial params State, initial state State)
    prune: dict | None = None  # with prune=: the rungs' decisions and each config's stopped epoch
    remote: dict | None = None  # with executor="ray": the workers and where each chunk ran

    def __getitem__(self, k):  # the dict spelling the results module used
        return getattr(self, k)


# ----------------------------------------------------------------------------- running


def _device_data(data: Dataset, dtype: str, replicated=None) -> Data:
    arrs = Data(np.asarray(data.x_train, dtype), np.asarray(data.y_train, np.int32),
                np.asarray(data.x_val, dtype), np.asarray(data.y_val, np.int32))
    return jax.device_put(arrs, replicated) if replicated is not None else jax.device_put(arrs)


def _pad_rows(tree, n: int):
    """Pad the leading axis of every leaf to n by repeating its last row (the padding then shares the
    last config's choices: no block boundary of its own, see `chunk_boundaries`)."""
    def pad(a):
        a = np.asarray(a)
        k = n - a.shape[0]
        return a if k == 0 else np.concatenate([a, np.repeat(a[-1:], k, axis=0)])
    return jax.tree_util.tree_map(pad, tree)


def _stack(trees: Sequence[Any]):
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def run_sweep(data: Dataset, configs: Sequence[Config], *, params=None, model_states=None,
              batch_orders=None, dropout_masks=None, chunk_size: int | None = None,
              memory_budget_bytes: int | None = None, progress: bool | Callable | None = None,
              on_chunk: Callable | None = None, checkpoint_dir: str | None = None,
              matmul_precision: str = "highest", fuse: str = "auto", segment: int | None = None,
              record_steps: bool = False, model: Callable | None = None, eval_every: int = 1,
              eval_rows: int | None = None, prune=None, executor: str = "local",
              ray_address: str | None = None) -> SweepRun:
    """Train every config; returns raw per-config outputs (see results.SweepResult for the view).

    `model`: a factory `model(config, num_features, num_outputs, rngs) -> flax.nnx.Module` (see
    jaxfit.api.sweep) trained instead of the built-in network.

    `params` / `model_states` / `batch_orders` / `dropout_masks`: None, or one entry per config
    (pass all or none). `on_chunk(plan, chunk_index, outputs)` runs after each chunk.
    `checkpoint_dir`: write each finished chunk there and reuse chunks already there (see checkpoint).
    `matmul_precision`: "highest" (full float32, PyTorch's default; the default here) or a faster
    JAX setting ("default", "tensorfloat32", "bfloat16") that GPUs may use for float32 products.
    `fuse`: "auto" (the planner's choice), "none" (one program per structure) or "all".
    `segment`: epochs per program call (default: about 1.5 s of estimated work, a divisor of the epochs).
    `record_steps`: also return each step's loss and parameters (short replays only).
    `eval_every` / `eval_rows` / `prune` / `executor` / `ray_address`: see jaxfit.sweep.
    """
    if executor not in EXECUTORS:
        raise UserError(f"executor={executor!r} is invalid: allowed values are {', '.join(EXECUTORS)}")
    if executor == "ray":
        given = [name for name, v in (("params", params), ("model_states", model_states),
                                      ("batch_orders", batch_orders), ("dropout_masks", dropout_masks),
                                      ("model", model), ("on_chunk", on_chunk)) if v is not None]
        if given or record_steps:
            raise UserError(f"executor='ray' cannot be combined with {', '.join(given + ['record_steps'] * record_steps)}"
                            " yet: run those sweeps locally")
    if matmul_precision not in MATMUL_PRECISIONS:
        raise UserError(f"matmul_precision={matmul_precision!r} is invalid: allowed values are "
                         f"{', '.join(MATMUL_PRECISIONS)}")
    n = len(configs)
    budget = memory_budget_bytes or memory_budget()
    for name, seq in (("params", params), ("model_states", model_states), ("batch_orders", batch_orders),
                      ("dropout_masks", dropout_masks)):
        if seq is not None and len(seq) != n:
            raise UserError(f"{name}: need one entry per config ({n}), got {len(seq)}")
    if model_states is not None and params is None:
        raise UserError("model_states were given without params: pass params too")
    user = None
    if model is not None:
        given = [name for name, v in (("params", params), ("model_states", model_states),
                                      ("dropout_masks", dropout_masks), ("checkpoint_dir", checkpoint_dir)) if v is not None]
        if given or record_steps:
            raise UserError(f"model=: cannot be combined with {', '.join(given + ['record_steps'] * record_steps)} "
                             "(a user module's own parameters are its initial ones; checkpoints are keyed by the "
                             "configs alone)")
        user = build_user_models(model, data, configs)
        params, model_states = [u[1] for u in user], [u[2] for u in user]
    if dropout_masks is not None and batch_orders is None:
        raise UserError("dropout_masks need batch_orders (the masks are aligned with the batch order's rows)")
    injected = params is not None or batch_orders is not None or dropout_masks is not None
    if checkpoint_dir is not None and injected:
        raise UserError("checkpoint_dir cannot be combined with injected params, batch orders or dropout masks "
                         "(their chunks are not identified by the configs alone)")
    if batch_orders is not None:
        batch_orders = [check_batch_order(o, configs[i], data.n_train, f"batch_order of config {i}")
                        for i, o in enumerate(batch_orders)]
    if dropout_masks is not None:
        dropout_masks = [None if configs[i].dropout == 0 and m is None else
                         check_dropout_masks(m, configs[i], batch_orders[i], f"dropout_masks of config {i}")
                         for i, m in enumerate(dropout_masks)]
    rungs = pruning.check(prune, configs, int(eval_every))
    if prune is not None:
        if on_chunk is not None or record_steps:
            given = ["on_chunk"] * (on_chunk is not None) + ["record_steps"] * record_steps
            raise UserError(f"prune=: cannot be combined with {', '.join(given)} yet (chunks change between rungs)")
    buckets = plan_buckets(data, configs, fuse=fuse) if user is None else _user_buckets(data, configs, user)
    evaluation = (int(eval_every), int(eval_rows or 0))
    if evaluation != (1, 0):
        buckets = [dataclasses.replace(b, spec=b.spec._replace(eval_every=evaluation[0], eval_rows=evaluation[1]))
                   for b in buckets]
    store = ChunkStore(checkpoint_dir) if checkpoint_dir is not None else None
    lrs_all = optim.lr_table(configs, max(c.epochs for c in configs))
    out = SweepRun([None] * n, [None] * n, [None] * n, [], buckets, [None] * n, [None] * n,
                   [None] * n if record_steps else None, [None] * n if record_steps else None, user)
    ndev = len(jax.devices())
    total_epochs = sum(c.epochs for c in configs)
    bar = progressmod.make(progress, total_epochs)
    platform = jax.devices()[0].platform
    ctx = dict(data=data, configs=configs, lrs_all=lrs_all, params=params, model_states=model_states,
               batch_orders=batch_orders, dropout_masks=dropout_masks, out=out, bar=bar, budget=budget,
               fixed=chunk_size is not None, on_chunk=on_chunk, store=store, precision=matmul_precision,
               record_steps=record_steps, n_buckets=len(buckets))
    try:
        if executor == "ray" and prune is not None:
            from . import remote

            spans = remote.Spans(data, ray_address)
            out.prune = _run_halving(buckets, rungs, prune, chunk_size=chunk_size, segment=segment, ndev=1,
                                     platform=platform, remote=spans, **ctx)
            out.remote = spans.record()
            return out
        if executor == "ray":
            from . import remote

            out.remote = remote.run_buckets(buckets, data=data, configs=configs, lrs_all=lrs_all, out=out, bar=bar,
                                            budget=budget, chunk_size=chunk_size, store=store, precision=matmul_precision,
                                            segment=segment, address=ray_address)
            return out
        if prune is not None:
            out.prune = _run_halving(buckets, rungs, prune, chunk_size=chunk_size, segment=segment, ndev=ndev,
                                     platform=platform, **ctx)
            return out
        for b in buckets:
            size = initial_chunk(b, chunk_size, budget, ndev, warn=True)
            seg = planmod.segment_epochs(b.spec, min(size, len(b.members)), platform, override=segment)
            with programs.x64_scope(b.spec.dtype):
                while True:
                    chunks = [b.members[k:k + size] for k in range(0, len(b.members), size)]
                    plan = ChunkPlan(b.index, size, chunks, seg, estimate=dict(b.estimate), spec=b.spec)
                    if _run_bucket(b, plan, **ctx):
                        break
                    size = max(1, size // 2)  # XLA says the chunk does not fit: halve and recompile
            out.plans.append(plan)
    finally:
        if bar is not None:
            bar.close()
    return out


def _run_halving(buckets: list, rungs: list[int], prune, *, chunk_size, segment, ndev: int, platform: str,
                 data, configs, lrs_all, params, model_states, batch_orders, dropout_masks, out: SweepRun, bar,
                 budget, fixed: bool, on_chunk, store, precision, record_steps, n_buckets, remote=None) -> dict:
    """Successive halving (`engine.prune`): every bucket trains its live configs up to the next rung,
    then the sweep-wide decision stops the worst; the survivors of a bucket are packed into full
    chunks (a smaller chunk, compiled once, where the cost model says it pays). Returns the record
    of the rungs and each config's stopped epoch. `remote` (engine.remote.Spans): each chunk's span
    a task on a Ray cluster, the decisions made here."""
    del on_chunk, record_steps  # refused with prune by run_sweep
    spans = SpanStore(store) if store is not None else None
    rule = prune.record()
    n = len(configs)
    stop = [c.epochs for c in configs]
    live = set(range(n))
    state: dict[int, Carry] = {}   # config -> its carried state (host), between rungs
    hist: dict[int, list] = {i: [] for i in range(n)}   # config -> its metrics, interval by interval
    segs, sizes, compiled_at, keys, records, carry_defs, dev_data = {}, {}, {}, {}, [], {}, {}
    for b in buckets:
        size = initial_chunk(b, chunk_size, budget, ndev, warn=True)
        if chunk_size is None:
            size = _halving_size(size, len(b.members), prune.eta, ndev)
        seg = planmod.segment_epochs(b.spec, min(size, len(b.members)), platform, override=segment)
        inner = [r for r in rungs if r < b.spec.epochs]
        segs[b.index] = math.gcd(seg, *inner) if inner else seg  # a call never crosses a rung
        sizes[b.index] = size
        out.plans.append(ChunkPlan(b.index, size, [], segs[b.index], estimate=dict(b.estimate), spec=b.spec))
    bucket_of = {i: b for b in buckets for i in b.members}
    edges = [0, *rungs, max(c.epochs for c in configs)]
    for lo, hi in zip(edges[:-1], edges[1:]):
        jobs = []  # this interval's chunk trainings, their outputs taken in order once all are started
        for b, plan in zip(buckets, out.plans):
            spec = b.spec
            members = [i for i in b.members if i in live and configs[i].epochs > lo]
            if not members:
                continue
            size = sizes[b.index] = _halving_chunk(b, len(members), sizes[b.index], fixed, ndev, platform,
                                                   (spec.epochs - lo) / spec.epochs, compiled_at.get(b.index, set()))
            seg = segs[b.index]
            end = min(hi, spec.epochs)
            ks = range(lo // seg, math.ceil(end / seg))
            with programs.x64_scope(spec.dtype):
                chunks, boundaries, key = _pack(spec, members, size, seg, configs, keys.setdefault(b.index, set()),
                                                (spec.epochs - lo) / spec.epochs, platform)
            keys[b.index].add(key)
            if lo == 0:
                plan.chunks = chunks
            with programs.x64_scope(spec.dtype):
                for ci, chunk in enumerate(chunks):
                    once = list(dict.fromkeys(chunk))
                    skey = (spans.key(data.fingerprint(), [configs[i] for i in once], end, rule, precision,
                                      (spec.eval_every, spec.eval_rows)) if spans is not None else None)
                    saved = spans.get(skey) if spans is not None else None
                    if saved is not None:  # a rerun: this span of this chunk was trained and saved
                        treedef = carry_defs.get(b.index) or carry_defs.setdefault(
                            b.index, _carry_def(spec, once[0], data, configs, lrs_all, params, model_states))
                        for i, (m, leaves) in zip(once, saved):
                            state[i] = jax.tree_util.tree_unflatten(treedef, leaves)
                            hist[i] = [m]
                        if bar is not None:
                            bar.resumed(sum(max(0, min(end, configs[i].epochs) - lo) for i in once))
                        continue
                    compiled_at.setdefault(b.index, set()).add(size)
                    if remote is not None:  # a task on the cluster, collected below
                        jobs.append((plan, chunk, once, skey, end, lo, remote.submit_span(
                            spec, size, seg, ks, [configs[i] for i in chunk],
                            None if ks.start == 0 else [state[i] for i in chunk], lrs_all[chunk], precision,
                            boundaries)))
                        continue
                    key_data = (spec.dtype, size)
                    if key_data not in dev_data:  # the data on the devices once per dtype and chunk layout
                        dev_data[key_data] = _device_data(data, spec.dtype, mesh_sharding(size)[1])
                    jobs.append((plan, chunk, once, skey, end, lo, _train_span(
                        b, chunk, size, seg, ks, state, dev_data=dev_data[key_data], configs=configs, lrs_all=lrs_all, params=params,
                        model_states=model_states, batch_orders=batch_orders, dropout_masks=dropout_masks, bar=bar,
                        precision=precision, n_buckets=n_buckets, label=(ci, len(chunks)), plan=plan,
                        boundaries=boundaries)))
        for plan, chunk, once, skey, end, lo, res in jobs:  # in order: each config's first copy is kept
            carry, metrics, dt, source = res if remote is None else remote.fetch_span(
                res, plan, bar, len(once), (lo, end), sum(max(0, min(end, configs[i].epochs) - lo) for i in once))
            plan.compile_s += dt
            plan.source = plan.source or source
            seen: set[int] = set()
            for k, i in enumerate(chunk):
                if i not in seen:  # a config repeated to align a choice group: its first copy
                    seen.add(i)
                    state[i] = _row(carry, k)
                    hist[i].append({name: v[: end - lo, k] for name, v in metrics.items()})
            if spans is not None:
                spans.put(skey, [(_history(hist[i]), jax.tree_util.tree_leaves(state[i])) for i in once])
        finished = [i for i in live if configs[i].epochs <= hi]
        if hi in rungs:
            before = sorted(live)
            value = {i: float(_history(hist[i])[prune.metric][hi - 1]) for i in before if configs[i].epochs > hi}
            kept, stopped = pruning.decide(prune, hi, before, configs, value)
            records.append({"epoch": hi, "live": len(before), "ranked": len(value), "kept": len(kept),
                            "stopped": len(stopped)})
            for i in stopped:
                stop[i] = hi
                finished.append(i)
                if bar is not None:
                    bar.resumed(configs[i].epochs - hi)  # never trained: counted done
        for i in finished:
            live.discard(i)
            _finish_config(bucket_of[i].spec, i, configs[i], state.pop(i), _history(hist[i]), out, stop[i])
            hist[i] = []
    return {**rule, "rungs": records, "stopped_epoch": stop,
            "pruned": [stop[i] < configs[i].epochs for i in range(n)],
            **({"bracket": prune.brackets(configs)} if isinstance(prune, pruning.Hyperband) else {})}


def _history(spans: list) -> dict:
    """A config's metrics so far, {name: [epochs]}, from its spans' (in order)."""
    return {name: np.concatenate([h[name] for h in spans]) for name in spans[0]}


def _carry_def(spec: ProgramSpec, i: int, data, configs, lrs_all, params, model_states):
    """The pytree structure of one config's carried state in a bucket (to rebuild a saved one)."""
    runs, hp, _, given_p, given_s, _ = _chunk_inputs(spec, [i], 1, configs, lrs_all, params, model_states, None, None)
    return jax.tree_util.tree_structure(_row(_carry0(spec, runs, hp, _device_data(data, spec.dtype), given_p,
                                                     given_s), 0))


def _pack(spec: ProgramSpec, members: list[int], size: int, seg: int, configs, known: set, left: float = 1.0,
          platform: str = "cpu"):
    """Chunks of `size` for a bucket's live `members` (in the bucket's order), their choice
    boundaries and the program key they need. Plain consecutive chunks, unless their key is not one
    this bucket already compiled and a layout with each choice group padded (by repeating its last
    config) to whole blocks of that program keeps its key: survivors then train in the program they
    started in, where the cost model says its extra chunks (for the `left` fraction of the epochs)
    cost less than compiling the plain layout's program. A layout may give up sharing its blocks' batch
    orders (which changes no number) to keep a program that does not share them."""
    flags = {"precision": None}  # only the structural parts of the key are compared

    def layout(rows, shared=True):
        chunks = [rows[k:k + size] for k in range(0, len(rows), size)]
        boundaries = chunk_boundaries(spec, chunks, configs, size)
        if not shared:  # every config draws its own batch order (the same numbers): a program without seed sharing
            boundaries = Boundaries(boundaries.choices, None)
        return chunks, boundaries, programs.program_key(spec, size, seg, flags, boundaries)[0]

    def keeps(rows):  # the layout in a known program, sharing seeds where that program does
        for shared in (True, False):
            out = layout(rows, shared)
            if out[2] in known:
                return out
        return None

    plain = layout(members)
    if not known or plain[2] in known:
        return plain
    kept = keeps(members)
    if kept is not None or not choices_of(spec):
        return kept or plain
    cuts = sorted(choice_boundaries(spec, _stack([run_of(spec, configs[i]) for i in members])) | {0, len(members)})
    for key in known:
        blocks, per_dev = key[5], size // max(1, len(key[4]) if mesh_sharding(size)[0] is not None else 1)
        unit = math.lcm(*[b if 0 < b < per_dev else per_dev for b in blocks])
        rows = []
        for a, z in zip(cuts[:-1], cuts[1:]):
            group = members[a:z]
            rows += group + [group[-1]] * (-len(group) % unit)
        aligned = keeps(rows)
        if aligned is not None and aligned[2] == key:
            extra = planmod.estimate(spec, (len(aligned[0]) - len(plain[0])) * size, platform)["run_s"] * left
            if extra <= planmod.estimate(spec, size, platform)["compile_s"]:
                return aligned
    return plain


HALVING_MIN_CHUNK = 8  # configs per device: the smallest chunk _halving_size picks


def _halving_size(size: int, n: int, eta: int, ndev: int) -> int:
    """The first chunk size of a pruned bucket of `n` configs: about n / eta^2 (at most the memory's
    `size`), so the survivors of the first two rungs fill whole chunks of the program the bucket
    starts with instead of padding one chunk of all n (or compiling a smaller one)."""
    want = max(math.ceil(n / eta ** 2), HALVING_MIN_CHUNK * ndev)
    if want >= size or 2 * want > n:  # (a split into two chunks or fewer only pads)
        return size
    if ndev > 1:
        want = math.ceil(want / ndev) * ndev
    return min(size, want)


def _halving_chunk(b: Bucket, n_live: int, size: int, fixed: bool, ndev: int, platform: str, left: float,
                   compiled: set) -> int:
    """The chunk size for a bucket's `n_live` survivors: the current one, or (never with a fixed
    chunk_size) the smallest that holds them in as few chunks, where the cost model's estimate of the
    rest of the training, a new program's compile included, is lower."""
    if fixed or n_live >= size:
        return size
    chunks = math.ceil(n_live / size)
    small = math.ceil(n_live / chunks)
    if ndev > 1 and small >= ndev:
        small = math.ceil(small / ndev) * ndev
    if small >= size:
        return size
    keep = planmod.estimate(b.spec, chunks * size, platform)["run_s"] * left
    est = planmod.estimate(b.spec, chunks * small, platform)
    new = est["run_s"] * left + (0.0 if small in compiled else est["compile_s"])
    return small if new < keep else size


def _train_span(b: Bucket, members, size: int, seg: int, ks, state: dict, *, dev_data, configs, lrs_all, params,
                model_states, batch_orders, dropout_masks, bar, precision, n_buckets, label, plan, boundaries):
    """Train one chunk of a bucket over segments `ks`, from the configs' carried `state` (or from
    their start when ks starts at 0). Returns (host carry, {name: [epochs, n]}, compile s, source)."""
    spec, E = b.spec, b.spec.epochs
    sharded, _ = mesh_sharding(size)
    put = (lambda a: jax.device_put(a, sharded)) if sharded is not None else jax.device_put
    runs, hp, lrs, given_p, given_s, inputs = _chunk_inputs(spec, members, size, configs, lrs_all, params,
                                                            model_states, batch_orders, dropout_masks)
    if ks.start == 0:
        carry = _carry0(spec, runs, hp, dev_data, given_p, given_s)
    else:
        carry = _pad_rows(_stack([state[i] for i in members]), size)
    carry, runs, hp = put(carry), put(runs), put(hp)
    args = _segment_args(seg, E, lrs, inputs, runs, hp, dev_data, put)
    note = (lambda: bar.compiling(b.index + 1, n_buckets, _compile_note(b))) if bar is not None else None
    compiled, dt, source = programs.get(spec, size, seg, args(ks.start, carry), precision=precision,
                                        inputs=tuple(inputs), before=note, boundaries=boundaries)
    if bar is not None:
        bar.chunk(b.index + 1, n_buckets, label[0] + 1, label[1], len(members))
    carry, seg_metrics = _train_segments(compiled, args, carry, ks, seg, list(dict.fromkeys(members)), configs, bar,
                                         plan)
    return carry, _join_metrics(seg_metrics, len(ks) * seg), dt, source


def build_user_models(factory: Callable, data: Dataset, configs: Sequence[Config]) -> list:
    """Each config's module from the user's factory, split into (graphdef, params, state), its forward
    pass checked on two rows (output shape [B, num_outputs]) before anything compiles."""
    from flax import nnx

    from ..program.graph import apply_graph, split_for_program
    from ..program.train import init_key

    out = []
    for i, c in enumerate(configs):
        k = num_outputs(c.loss, data.num_classes)
        with programs.x64_scope(c.dtype):
            module = factory(c, data.num_features, k, nnx.Rngs(params=init_key(c.seed), dropout=init_key(c.seed)))
            if not isinstance(module, nnx.Module):
                raise UserError(f"model: the factory returned {type(module).__name__} for config {i}, not a flax.nnx.Module "
                                 "(wrap a linen module with flax.nnx.bridge.ToNNX)")
            g, p, s = split_for_program(module)
            x = np.asarray(data.x_train[:2], c.dtype)
            try:
                # checked in the config's dtype, as the program will run it (_as_dtype)
                shape = jax.eval_shape(lambda p, s: apply_graph(g, p, s, x, train=False)[0],
                                       _as_dtype(p, c.dtype), _as_dtype(s, c.dtype)).shape
            except Exception as e:  # the module cannot take x: say which module, and x's width
                first = " ".join(str(e).split())[:300]
                raise UserError(f"model: config {i}'s module {type(module).__name__} fails on x of shape "
                                f"[B, {data.num_features}] (dataset {data.name!r}: {data.num_features} feature(s)): "
                                f"{type(e).__name__}: {first}; build its first layer with num_features inputs "
                                "(the factory's second argument)") from None
        if tuple(shape) != (x.shape[0], k):
            raise UserError(f"model: config {i}'s module maps x [B, {data.num_features}] to {tuple(shape)}, but its loss "
                             f"{c.loss!r} on {data.num_classes} classes needs [B, {k}]")
        out.append((g, p, s))
    return out


def _user_buckets(data: Dataset, configs: Sequence[Config], user: list) -> list[Bucket]:
    """One program per module graph and static remainder: no padding or fusion for a user's module."""
    out = []
    for b in plan_buckets(data, configs, fuse="none"):
        groups: dict[Any, list[int]] = {}
        for i in b.members:
            groups.setdefault(user[i][0], []).append(i)
        for g, members in groups.items():
            out.append(Bucket(len(out), b.spec._replace(model=g), members, dict(b.estimate)))
    return out


def _as_dtype(tree, dtype):
    """Floating leaves of a user's params/state in the config's dtype (integer counters kept)."""
    return jax.tree_util.tree_map(
        lambda a: np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else np.asarray(a), tree)


def initial_chunk(b: Bucket, chunk_size: int | None, budget: int, ndev: int, warn: bool = False) -> int:
    """Configs per chunk of a bucket before XLA's memory analysis has had its say. `warn`: say so
    when the budget is below one config's estimate (the chunk is then one config, over budget)."""
    per = planmod.bytes_per_config(b.spec)
    if warn and chunk_size is None and per > budget:
        from ..errors import warn as _warn

        _warn(f"memory budget {budget:,} bytes ({budget / 2**20:.1f} MiB) is smaller than one config of program "
              f"{b.index + 1} (about {per:,} bytes, {per / 2**20:.1f} MiB): training it in chunks of 1 config, which "
              "may exceed the budget; raise memory_budget or shrink the nets or the data", stacklevel=5)
    size = chunk_size or max(1, min(len(b.members), budget // max(per, 1)))
    if chunk_size is None and ndev > 1 and size >= ndev:
        size = math.ceil(size / ndev) * ndev  # shard the chunk evenly (pad <= ndev - 1 configs)
    return size


def _compile_note(b: Bucket) -> str:
    hidden = "x".join(map(str, b.spec.arch.hidden)) or "linear"
    est = b.estimate.get("compile_s")
    return f"{len(b.members)} configs, nets padded to {hidden}" + (f", estimated {est:.1f} s" if est else "")


def _chunk_inputs(spec: ProgramSpec, members, size, configs, lrs_all, params, model_states, batch_orders,
                  dropout_masks):
    """The padded host arrays of one chunk: (runs, hp, lrs [size, E], carry0 parts, inputs)."""
    dtype, E = spec.dtype, spec.epochs
    cs = [configs[i] for i in members]
    runs = _stack([run_of(spec, c, given_params=params is not None, given_state=model_states is not None)
                   for c in cs])
    hp = cfgmod.hparams(cs, dtype)
    lrs = lrs_all[members, :E].astype(dtype)
    given_p = given_s = None
    if spec.model is not None:
        given_p = _stack([_as_dtype(params[i], dtype) for i in members])
        given_s = _stack([_as_dtype(model_states[i], dtype) for i in members])
    elif params is not None:
        padded = [layers.pad_tree(spec.arch, configs[i], params[i], model_states[i] if model_states else {}, dtype)
                  for i in members]
        given_p = _stack([p for p, _ in padded])
        if model_states is not None:
            given_s = _stack([s for _, s in padded])
    inputs = {}
    if batch_orders is not None:
        orders = []
        for i in members:
            o = batch_orders[i]
            if o.shape[0] < E:  # epochs past the config's own are frozen: any valid order does
                o = np.concatenate([o, np.repeat(o[-1:], E - o.shape[0], axis=0)])
            orders.append(o)
        inputs["order"] = np.stack(orders)
    if dropout_masks is not None and spec.arch.use_dropout:
        D, W = spec.arch.depth, max(spec.arch.hidden)
        S, B = spec.steps_per_epoch, spec.batch
        full = np.ones((len(members), E, S, D, B, W), dtype)
        for k, i in enumerate(members):
            m = dropout_masks[i]
            if m is None:
                continue
            full[k, : m.shape[0], :, : m.shape[2], :, : m.shape[4]] = m
        inputs["dropout_masks"] = full
    tree = (runs, hp, lrs, given_p, given_s, inputs)
    return _pad_rows(tree, size)


def chunk_boundaries(spec: ProgramSpec, chunks, configs, size: int) -> Boundaries:
    """Where the choices (and, in a shuffled bucket, the seeds) change within the bucket's (padded)
    chunks, over all of them: the program is the same for every chunk, resumed ones included, so it
    never depends on what a resume found."""
    out: set[int] = set()
    seeds: set[int] | None = set() if spec.shuffle and spec.model is None else None
    for members in chunks:
        if choices_of(spec):
            out |= choice_boundaries(spec, _pad_rows(_stack([run_of(spec, configs[i]) for i in members]), size))
        if seeds is not None:
            seeds |= seed_boundaries(_pad_rows(np.array([configs[i].seed for i in members], np.uint32), size))
    return Boundaries(frozenset(out), None if seeds is None else frozenset(seeds))


def _carry0(spec: ProgramSpec, runs, hp, dev_data, given_p, given_s):
    """The first call's carry: zeros, with the replayed params / model state where given (a user's
    module: its own, always; init_state takes them from `given`)."""
    g = None if spec.model is None else TrainState(given_p, given_s, None, None)
    shapes = jax.eval_shape(lambda h, r, gg: jax.vmap(lambda a, b, c: init_state(spec, a, dev_data, b, c))(h, r, gg),
                            hp, runs, g)
    zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    p = zeros.params if given_p is None else jax.tree_util.tree_map(lambda z, g: np.asarray(g, z.dtype),
                                                                   zeros.params, given_p)
    s = zeros.model_state if given_s is None else jax.tree_util.tree_map(lambda z, g: np.asarray(g, z.dtype),
                                                                        zeros.model_state, given_s)
    n = np.shape(jax.tree_util.tree_leaves(hp)[0])[0]
    return Carry(TrainState(p, s, zeros.opt_state, zeros.step), zeros.params, zeros.model_state,
                 np.full(n, -np.inf, np.dtype(spec.dtype)))


def _run_bucket(b: Bucket, plan: ChunkPlan, *, data, configs, lrs_all, params, model_states, batch_orders,
                dropout_masks, out: SweepRun, bar, budget, fixed: bool, on_chunk, store, precision,
                record_steps, n_buckets) -> bool:
    """Train one bucket's chunks, segment by segment. False when the first chunk's program is over
    the memory budget (the caller halves the chunk)."""
    spec, size, seg = b.spec, plan.chunk_size, plan.segment
    E = spec.epochs
    n_seg = math.ceil(E / seg)
    sharded, replicated = mesh_sharding(size)
    dev_data = None
    first = True
    put = (lambda a: jax.device_put(a, sharded)) if sharded is not None else jax.device_put
    boundaries = chunk_boundaries(spec, plan.chunks, configs, size)
    for ci, members in enumerate(plan.chunks):
        key, loaded = load_chunk(store, data, spec, configs, members, precision, out, bar)
        if loaded:
            plan.resumed_chunks.append(ci)
            if on_chunk is not None:
                on_chunk(plan, ci, out)
            continue
        if dev_data is None:
            dev_data = _device_data(data, spec.dtype, replicated)
        runs, hp, lrs, given_p, given_s, inputs = _chunk_inputs(spec, members, size, configs, lrs_all, params,
                                                                model_states, batch_orders, dropout_masks)
        carry = _carry0(spec, runs, hp, dev_data, given_p, given_s)
        carry, runs, hp = put(carry), put(runs), put(hp)

        seg_args = _segment_args(seg, E, lrs, inputs, runs, hp, dev_data, put)

        if first:
            note = (lambda: bar.compiling(b.index + 1, n_buckets, _compile_note(b))) if bar is not None else None
            compiled, dt, source = programs.get(spec, size, seg, seg_args(0, carry), precision=precision,
                                                inputs=tuple(inputs), record_steps=record_steps, before=note,
                                                boundaries=boundaries)
            first = False
            plan.compile_s, plan.cached, plan.source = dt, source == "process", source
            plan.bytes = programs.memory_of(compiled)
            if bar is not None:
                bar.compiled(b.index + 1, n_buckets, dt, source)
            if not fixed and plan.bytes is not None and plan.bytes > budget and size > 1:
                return False
        if bar is not None:
            bar.chunk(b.index + 1, n_buckets, ci + 1, len(plan.chunks), len(members))
        carry, seg_metrics = _train_segments(compiled, seg_args, carry, range(n_seg), seg, members, configs, bar, plan)
        metrics = _join_metrics(seg_metrics, E)
        for k, i in enumerate(members):
            _finish_config(spec, i, configs[i], _row(carry, k), {n: v[:, k] for n, v in metrics.items()}, out,
                           configs[i].epochs)
            if record_steps:
                c = configs[i]
                out.step_losses[i] = np.asarray(metrics["step_loss"][: c.epochs, k])
                S = metrics["step_loss"].shape[2]
                steps = [jax.tree_util.tree_map(lambda a: np.asarray(a[e, k, st]), sm["step_params"])
                         for sm in seg_metrics for e in range(seg) for st in range(S)]
                own = [layers.unpad_tree(spec.arch, c, pp, {})[0] for pp in steps[: c.epochs * S]]
                out.step_params[i] = [own[e * S:(e + 1) * S] for e in range(c.epochs)]
        if store is not None:
            store.put(key, [{kind: out[kind][i] for kind in OUTPUT_KINDS} for i in members])
        if on_chunk is not None:
            on_chunk(plan, ci, out)
    return True


def load_chunk(store, data: Dataset, spec: ProgramSpec, configs, members, precision: str, out: SweepRun,
               bar) -> tuple[str | None, bool]:
    """(the chunk's checkpoint key, or None without a store; whether it was there): a saved chunk's
    outputs are put into `out` and counted done on the progress bar."""
    if store is None:
        return None, False
    key = store.key(data.fingerprint(), [configs[i] for i in members], matmul_precision=precision,
                    evaluation=(spec.eval_every, spec.eval_rows))
    saved = store.get(key)
    if saved is None:
        return key, False
    fill_outputs(out, members, saved)
    if bar is not None:
        bar.resumed(sum(configs[i].epochs for i in members))
    return key, True


def fill_outputs(out: SweepRun, members, outputs) -> None:
    """Config members[k]'s outputs (params, state, metrics...) from outputs[k], as a ChunkStore holds them."""
    for i, o in zip(members, outputs):
        for kind in OUTPUT_KINDS:
            out[kind][i] = o[kind]


def _segment_args(seg: int, E: int, lrs, inputs: dict, runs, hp, dev_data, put) -> Callable:
    """args(k, carry): the arguments of a chunk's program call for its k-th segment of `seg` epochs."""

    def args(k, carry):
        lo, hi = k * seg, min((k + 1) * seg, E)
        lr = lrs[:, lo:hi]
        inp = {name: v[:, lo:hi] for name, v in inputs.items()}
        if hi - lo < seg:  # a last, shorter segment: pad with frozen epochs (never trained)
            lr = np.concatenate([lr, np.repeat(lr[:, -1:], seg - (hi - lo), axis=1)], axis=1)
            inp = {name: np.concatenate([v, np.repeat(v[:, -1:], seg - (hi - lo), axis=1)], axis=1)
                   for name, v in inp.items()}
        return (carry, np.bool_(k == 0), np.int32(lo), runs, hp, put(lr), dev_data,
                {name: put(v) for name, v in inp.items()})

    return args


def _train_segments(compiled, args: Callable, carry, ks: range, seg: int, members, configs, bar, plan: ChunkPlan):
    """Call a chunk's program for segments `ks` (each segment's metrics fetched while the next one
    runs), its progress reported for `members`; the time goes to plan.run_s. Returns (the final
    carry on the host, each segment's metrics)."""
    t0 = time.perf_counter()
    seg_metrics, pending = [], None
    for k in ks:
        carry, m = compiled(*args(k, carry))
        if pending is not None:
            seg_metrics.append(_finish(pending, seg, members, configs, bar))
        pending = (k, m)
    seg_metrics.append(_finish(pending, seg, members, configs, bar))
    carry = jax.device_get(carry)
    plan.run_s += time.perf_counter() - t0
    return carry, seg_metrics


def _join_metrics(seg_metrics: list, epochs: int) -> dict:
    """One chunk's metrics of consecutive segments, {name: [epochs, n, ...]} (step_params left out)."""
    return {name: np.concatenate([sm[name] for sm in seg_metrics], axis=0)[:epochs]
            for name in seg_metrics[0] if name != "step_params"}


def _row(tree, k: int):
    """Config k's slice of a chunk's (host) pytree."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a[k]), tree)


def _finish_config(spec: ProgramSpec, i: int, c: Config, carry_row: Carry, metrics: dict, out: SweepRun,
                   stop: int) -> None:
    """Write config i's outputs: its first `stop` epochs of metrics and, from its carried state, its
    final and best-epoch params and model state in its own layout."""
    out.metrics[i] = {name: np.asarray(v[:stop]) for name, v in metrics.items() if name != "step_loss"}
    p, s = carry_row.ts.params, carry_row.ts.model_state
    bp, bs = carry_row.best_params, carry_row.best_state
    if spec.model is not None:  # a user's module: its variables as plain nested dicts
        from flax import nnx

        out.params[i], out.model_state[i] = nnx.to_pure_dict(p), nnx.to_pure_dict(s)
        out.best_params[i], out.best_state[i] = nnx.to_pure_dict(bp), nnx.to_pure_dict(bs)
    else:
        out.params[i], out.model_state[i] = layers.unpad_tree(spec.arch, c, p, s)
        out.best_params[i], out.best_state[i] = layers.unpad_tree(spec.arch, c, bp, bs)


def _finish(pending, seg: int, members, configs, bar) -> dict:
    """Fetch one segment's metrics (waits for it) and report its progress."""
    k, m = pending
    m = jax.device_get(m)
    if bar is not None:
        lo = k * seg
        done = sum(max(0, min(configs[i].epochs, lo + seg) - lo) for i in members)
        bar.update(done)
    return m


# ----------------------------------------------------------------------------- one chunk, elsewhere


def train_chunk(data: Dataset, spec: ProgramSpec, size: int, seg: int, configs: Sequence[Config], lrs,
                precision: str, boundaries: frozenset) -> dict:
    """Train one chunk of a bucket in this process, from its configs alone (what a worker of
    `executor="ray"` runs: `engine.remote`). `lrs`: the configs' rows of the sweep's learning-rate
    table. Returns {"outputs": per config {kind: ...} as a ChunkStore holds them, "compile_s",
    "run_s", "source", "bytes"}: the same numbers as the local loop for the same chunk and devices."""
    n, E = len(configs), spec.epochs
    out = SweepRun([None] * n, [None] * n, [None] * n, [], [], [None] * n, [None] * n)
    carry, metrics, plan = train_span_alone(data, spec, size, seg, range(0, math.ceil(E / seg)), configs, None, lrs,
                                            precision, boundaries)
    for k, c in enumerate(configs):
        _finish_config(spec, k, c, _row(carry, k), {m: v[:, k] for m, v in metrics.items()}, out, c.epochs)
    return {"outputs": [{kind: out[kind][k] for kind in OUTPUT_KINDS} for k in range(n)],
            "compile_s": plan.compile_s, "run_s": plan.run_s, "source": plan.source, "bytes": plan.bytes}


def train_span_alone(data: Dataset, spec: ProgramSpec, size: int, seg: int, ks: range, configs: Sequence[Config],
                     states, lrs, precision: str, boundaries: frozenset):
    """One chunk over segments `ks` from its configs alone (`configs` may repeat one, as `_pack`
    aligns choice groups), from each one's carried state in `states` (None: from the start).
    Returns (host carry, {name: [epochs of ks, n]}, a ChunkPlan holding compile_s, run_s, source, bytes)."""
    members = list(range(len(configs)))
    plan = ChunkPlan(0, size, [members], seg, spec=spec)
    with programs.x64_scope(spec.dtype):
        dev_data = _device_data(data, spec.dtype, mesh_sharding(size)[1])
        carry, metrics, plan.compile_s, plan.source = _train_span(
            _Alone(spec), members, size, seg, ks, dict(enumerate(states)) if states is not None else {},
            dev_data=dev_data, configs=list(configs), lrs_all=np.asarray(lrs), params=None, model_states=None,
            batch_orders=None, dropout_masks=None, bar=None, precision=precision, n_buckets=1, label=None, plan=plan,
            boundaries=boundaries)
    return carry, metrics, plan


@dataclass
class _Alone:
    """What `_train_span` reads of a Bucket, for a chunk trained away from its sweep."""

    spec: ProgramSpec
    index: int = 0

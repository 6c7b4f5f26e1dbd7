"""The engine: configs -> buckets -> chunks -> one compiled program per bucket -> results.

The only stateful part of jaxfit (devices, compile cache, memory budget). Everything it runs is the
pure program of `jaxfit.train`.

* Bucket: configs with the same `static_key` on the same data shapes; one compiled program.
* Chunk: a slice of a bucket sized to the memory budget; every chunk of a bucket has the same
  shape (the last is padded by repeating a config whose results are dropped), so a bucket compiles
  once. The plan is recorded in the result; pass `chunk_size` to fix it (layout reproducibility).
* Devices: the config axis of a chunk is sharded over `jax.devices()` when there are several; the
  data are replicated.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import numpy as np

from . import config as cfgmod
from .config import Config, static_key
from .datasets import Dataset
from .nn import optim
from .train import Data, ProgramSpec, make_program, num_outputs

_compiled: dict[tuple, Any] = {}
_stats = {"compiles": 0, "compile_s": 0.0}
_lock = threading.Lock()
_pending: dict[tuple, concurrent.futures.Future] = {}  # programs being compiled (ahead, in threads)
class _ProgressHolder:
    sink: Callable | None = None


# Not thread-local: XLA may run host callbacks on its own threads.
_progress = _ProgressHolder()


def compile_count() -> int:
    """How many programs this process has compiled (a sweep that only changes numbers adds none)."""
    return _stats["compiles"]


def clear_cache() -> None:
    _compiled.clear()


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache (programs survive the process)."""
    path = path or os.path.join(os.path.expanduser("~"), ".cache", "jaxfit", "xla")
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


# ----------------------------------------------------------------------------- checks


def check_config_for_data(c: Config, data: Dataset, index: int | None = None) -> None:
    """Refuse, before compiling, a config that cannot train on these data."""
    where = f"config {index}" if index is not None else "config"
    n = data.n_train
    if c.loss in cfgmod.ONE_UNIT_LOSSES and data.num_classes != 2:
        raise ValueError(f"{where}: Config.loss={c.loss!r} needs 2 classes (one output unit); "
                         f"dataset {data.name!r} has {data.num_classes}: use loss='cross_entropy' or 'mse'")
    uses_bn = c.batchnorm or c.input_norm == "batchnorm"
    if uses_bn:
        b = n if c.batch_size == 0 else min(c.batch_size, n)
        if b == 1 or n % b == 1:
            raise ValueError(
                f"{where}: Config.batch_size={c.batch_size} leaves a training batch of 1 row on {n} training "
                "points, and batch norm in training needs more than 1 value per channel (PyTorch raises): "
                "choose a batch size whose last batch is not 1 row")
    if c.encoding == "identity" and data.num_features < 1:  # pragma: no cover - Dataset refuses it
        raise ValueError(f"{where}: dataset has no features")


def check_batch_order(order, spec: ProgramSpec, where: str = "batch_order") -> np.ndarray:
    order = np.asarray(order)
    want = (spec.static.epochs, spec.steps_per_epoch, spec.batch)
    if order.ndim != 3 or order.shape != want:
        raise ValueError(f"{where}: shape {order.shape} is invalid: need [epochs, steps, batch] = {list(want)} "
                         "(a partial last batch padded with -1)")
    if not np.issubdtype(order.dtype, np.integer):
        raise ValueError(f"{where}: must hold integer training-set indices, got dtype {order.dtype}")
    if order.min() < -1 or order.max() >= spec.n_train:
        raise ValueError(f"{where}: indices must lie in 0..{spec.n_train - 1} (or -1 for padding), "
                         f"got {order.min()}..{order.max()}")
    if (order[:, :, 0] < 0).any():
        raise ValueError(f"{where}: every batch needs at least one real index in its first slot")
    return order.astype(np.int32)


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


def estimate_bytes_per_config(spec: ProgramSpec) -> int:
    """A first guess at one config's share of a chunk's memory (checked after compiling against
    XLA's own memory analysis)."""
    a = spec.arch
    w = a.widths
    n_params = sum(i * o + o for i, o in zip(w[:-1], w[1:]))
    slots = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 2}[spec.static.optimizer]
    item = 8 if spec.static.dtype == "float64" else 4
    params_like = n_params * (3 + slots)  # params, grads, new params, optimizer slots
    acts = 4 * spec.batch * sum(w)  # forward activations kept for the backward pass
    evals = 2 * max(spec.n_train, spec.n_val) * max(w)  # the end-of-epoch evaluation
    metrics = 8 * spec.static.epochs
    order = spec.steps_per_epoch * spec.batch  # the epoch's batch order (int32)
    return item * (params_like + acts + evals + metrics) + 4 * order


@dataclass
class ChunkPlan:
    bucket: int
    chunk_size: int
    chunks: list[list[int]]  # config indices (into the sweep) of each chunk
    compile_s: float = 0.0
    run_s: float = 0.0
    bytes: int | None = None  # XLA's memory analysis of the compiled chunk program
    cached: bool = False  # the program came from this process's cache
    resumed: int = 0  # chunks loaded from a checkpoint instead of trained


# ----------------------------------------------------------------------------- running


def _progress_cb(epoch) -> None:
    sink = getattr(_progress, "sink", None)
    if sink is not None:
        sink(int(epoch))


def _mesh_sharding(n: int):
    devs = jax.devices()
    if len(devs) < 2 or n % len(devs):
        return None, None
    mesh = jax.sharding.Mesh(np.array(devs), ("configs",))
    return (jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("configs")),
            jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def _device_data(data: Dataset, dtype: str, replicated=None) -> Data:
    arrs = Data(np.asarray(data.x_train, dtype), np.asarray(data.y_train, np.int32),
                np.asarray(data.x_val, dtype), np.asarray(data.y_val, np.int32))
    return jax.device_put(arrs, replicated) if replicated is not None else jax.device_put(arrs)


MATMUL_PRECISIONS = ("highest", "default", "tensorfloat32", "bfloat16")


# ----------------------------------------------------------------------------- CPU tuning
# Measured on this project's 2-core CPU (jax 0.10.2; benchmarks/README.md, "What made it fast").

BLOCK_CACHE_FRACTION = 1.0  # a block's working set may use this much of one core's L2 cache
TINY_WIDTH = 8  # networks no wider than this compile without XLA's YNNPACK fusions (see cpu_options)


def _l2_bytes() -> int:
    """One core's L2 cache size from sysfs (Linux), else 1 MiB."""
    with contextlib.suppress(Exception):
        base = "/sys/devices/system/cpu/cpu0/cache"
        for idx in sorted(os.listdir(base)):
            d = os.path.join(base, idx)
            with open(os.path.join(d, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(d, "size")) as f:
                text = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
            return int(text.rstrip("KM")) * mult
    return 1 << 20


def _largest_divisor_at_most(n: int, k: int) -> int:
    k = max(1, min(k, n))
    while n % k:
        k -= 1
    return k


def block_sizes(spec: ProgramSpec, chunk: int, groups: int, platform: str) -> tuple[int, int]:
    """(train_block, eval_block) for `make_program`: configs per `lax.map` iteration on each device,
    chosen so a block (its parameters, gradients and optimizer state and one batch's
    activations; for the evaluation, one split's activations) fits in a core's L2 cache
    (the fraction and the byte counts calibrated on W2 of benchmarks/: 8 configs of 2-64-64-3 with Adam). 0
    means no blocking: on accelerators, when the whole chunk fits anyway, or with JAXFIT_BLOCKS=0
    in the environment (for measuring what blocking gains: benchmarks/ablation.py)."""
    if platform != "cpu" or os.environ.get("JAXFIT_BLOCKS", "1").strip() == "0":
        return 0, 0
    budget = int(BLOCK_CACHE_FRACTION * _l2_bytes())
    item = 8 if spec.static.dtype == "float64" else 4
    w = spec.arch.widths
    n_params = sum(i * o + o for i, o in zip(w[:-1], w[1:]))
    slots = {"sgd": 1, "adam": 2, "adamw": 2, "rmsprop": 2}[spec.static.optimizer]
    train_bytes = item * (n_params * (2 + slots) + 3 * spec.batch * sum(w))
    eval_bytes = item * (n_params + 3 * max(spec.n_train, spec.n_val) * sum(w))
    per_dev = max(1, chunk // max(groups, 1))  # configs of one device (a group, see blocked_vmap)

    def fit(nbytes):
        k = budget // max(nbytes, 1)
        if k >= per_dev:
            return 0
        return _largest_divisor_at_most(per_dev, k)

    return fit(train_bytes), fit(eval_bytes)


def cpu_options(spec: ProgramSpec, platform: str) -> dict[str, Any]:
    """Per-program XLA options. For networks no wider than TINY_WIDTH on a CPU, XLA's experimental
    YNNPACK fusions (jaxlib 0.10 hands small reductions and products to them) are turned off: the
    document-1 model trained 1.6x faster without them, while 64-wide nets ran 1.4x slower (and 5x
    slower with none). JAXFIT_TINY_OPTIONS=0 in the environment turns this off."""
    if (platform != "cpu" or max(spec.arch.widths) > TINY_WIDTH
            or os.environ.get("JAXFIT_TINY_OPTIONS", "1").strip() == "0"):
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": ""}


_rejected_options: set = set()  # option names this jaxlib did not accept (compiled without them)


def _program_key(spec: ProgramSpec, chunk: int, flags: dict):
    devices = jax.devices()
    platform = devices[0].platform
    groups = len(devices) if _mesh_sharding(chunk)[0] is not None else 1  # one group per device shard
    blocks = block_sizes(spec, chunk, groups, platform)
    options = {k: v for k, v in cpu_options(spec, platform).items() if k not in _rejected_options}
    key = (spec, chunk, flags["with_params"], flags["with_state"], flags["with_order"], flags["precision"],
           tuple(devices), jax.config.jax_enable_x64, blocks, tuple(sorted(options.items())))
    return key, blocks, options, groups


def _build(spec: ProgramSpec, chunk: int, args, flags: dict, key, blocks, options, groups):
    """Lower and compile one program; returns (compiled, seconds)."""
    program = make_program(spec, with_params=flags["with_params"], with_state=flags["with_state"],
                           with_order=flags["with_order"], progress=_progress_cb, train_block=blocks[0],
                           eval_block=blocks[1], groups=groups)
    t0 = time.perf_counter()
    with jax.default_matmul_precision(flags["precision"]):
        lowered = jax.jit(program).lower(*args)
        try:
            compiled = lowered.compile(compiler_options=options) if options else lowered.compile()
        except Exception:  # an XLA without these (experimental) options: compile without them
            if not options:
                raise
            _rejected_options.update(options)
            compiled = lowered.compile()
    dt = time.perf_counter() - t0
    with _lock:
        _stats["compiles"] += 1
        _stats["compile_s"] += dt
        _compiled[key] = compiled
    return compiled, dt


def _start_compile(pool, spec: ProgramSpec, chunk: int, args, **flags) -> None:
    """Compile a program in `pool`'s threads (XLA compiles without holding the GIL), unless it is
    compiled or under way already; `_compile` then waits for it instead of compiling again."""
    key, blocks, options, groups = _program_key(spec, chunk, flags)
    with _lock:
        if key in _compiled or key in _pending:
            return
        _pending[key] = pool.submit(_build, spec, chunk, args, flags, key, blocks, options, groups)


def _compile(spec: ProgramSpec, chunk: int, args, *, with_params: bool, with_state: bool, with_order: bool,
             precision: str = "highest"):
    """(compiled program, compile seconds, whether it came from this process's cache). A program
    compiled ahead in a thread (`_start_compile`) reports its own compile time, not the wait."""
    flags = dict(with_params=with_params, with_state=with_state, with_order=with_order, precision=precision)
    key, blocks, options, groups = _program_key(spec, chunk, flags)
    with _lock:
        hit = _compiled.get(key)
        fut = _pending.get(key)
    if fut is not None:
        try:
            compiled, dt = fut.result()
        finally:
            with _lock:
                _pending.pop(key, None)
        return compiled, dt, False
    if hit is not None:
        return hit, 0.0, True
    compiled, dt = _build(spec, chunk, args, flags, key, blocks, options, groups)
    return compiled, dt, False


def _memory_of(compiled) -> int | None:
    with contextlib.suppress(Exception):
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    return None


def _pad_rows(tree, n: int):
    """Pad the leading axis of every leaf to n by repeating its first row."""
    def pad(a):
        a = np.asarray(a)
        k = n - a.shape[0]
        return a if k == 0 else np.concatenate([a, np.repeat(a[:1], k, axis=0)])
    return jax.tree_util.tree_map(pad, tree)


def _stack(trees: Sequence[Any]):
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def ensure_x64(configs: Sequence[Config]) -> None:
    if any(c.dtype == "float64" for c in configs) and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


class Bucket:
    def __init__(self, index: int, spec: ProgramSpec, members: list[int]):
        self.index, self.spec, self.members = index, spec, members


def plan_buckets(data: Dataset, configs: Sequence[Config]) -> list[Bucket]:
    by_key: dict[ProgramSpec, list[int]] = {}
    for i, c in enumerate(configs):
        spec = ProgramSpec(static_key(c), data.n_train, data.n_val, data.num_features,
                           num_outputs(c.loss, data.num_classes))
        by_key.setdefault(spec, []).append(i)
    return [Bucket(b, spec, m) for b, (spec, m) in enumerate(by_key.items())]


def run_sweep(data: Dataset, configs: Sequence[Config], *, params=None, model_states=None,
              batch_orders=None, chunk_size: int | None = None, memory_budget_bytes: int | None = None,
              progress: bool | Callable | None = None, on_chunk: Callable | None = None,
              checkpoint_dir: str | None = None, matmul_precision: str = "highest") -> dict:
    """Train every config; returns raw per-config outputs (see results.SweepResult for the view).

    `params` / `model_states` / `batch_orders`: None, or one entry per config (None entries are not
    allowed: pass all or none). `on_chunk(plan, chunk_index, outputs)` runs after each chunk.
    `checkpoint_dir`: write each finished chunk there and reuse chunks already there (see checkpoint).
    `matmul_precision`: "highest" (full float32, PyTorch's default; the default here) or a faster
    JAX setting ("default", "tensorfloat32", "bfloat16") that GPUs may use for float32 products.
    """
    if matmul_precision not in MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision={matmul_precision!r} is invalid: allowed values are "
                         f"{', '.join(MATMUL_PRECISIONS)}")
    n = len(configs)
    ensure_x64(configs)
    budget = memory_budget_bytes or memory_budget()
    buckets = plan_buckets(data, configs)
    for name, seq in (("params", params), ("model_states", model_states), ("batch_orders", batch_orders)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name}: need one entry per config ({n}), got {len(seq)}")
    if model_states is not None and params is None:
        raise ValueError("model_states were given without params: pass params too")
    injected = params is not None or batch_orders is not None
    if checkpoint_dir is not None and injected:
        raise ValueError("checkpoint_dir cannot be combined with injected params or batch orders "
                         "(their chunks are not identified by the configs alone)")
    from .checkpoint import ChunkStore
    store = ChunkStore(checkpoint_dir) if checkpoint_dir is not None else None
    if batch_orders is not None:
        spec_of = {i: b.spec for b in buckets for i in b.members}
        batch_orders = [check_batch_order(o, spec_of[i], f"batch_order of config {i}")
                        for i, o in enumerate(batch_orders)]

    lrs_all = optim.lr_table(configs, max(c.epochs for c in configs))
    out: dict[str, Any] = {"metrics": [None] * n, "params": [None] * n, "model_state": [None] * n,
                           "plans": []}
    ndev = len(jax.devices())
    total_epochs = sum(len(b.members) * b.spec.static.epochs for b in buckets)
    bar = _make_bar(progress, total_epochs)
    flags = dict(with_params=params is not None, with_state=model_states is not None,
                 with_order=batch_orders is not None, precision=matmul_precision)
    pool = None
    try:
        threads = compile_threads()
        if len(buckets) > 1 and threads > 1:
            # Compile every bucket's program ahead, `threads` at a time: XLA compiles without the GIL.
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(len(buckets), threads),
                                                         thread_name_prefix="jaxfit-compile")
            for b in buckets:
                size = _initial_chunk(b, chunk_size, budget, ndev)
                chunks = [b.members[k:k + size] for k in range(0, len(b.members), size)]
                if store is not None and all(store.has(store.key(data.fingerprint(), [configs[i] for i in c]))
                                             for c in chunks):
                    continue  # all of it is checkpointed already: nothing to compile
                _start_compile(pool, b.spec, size, _abstract_args(data, configs, b.spec, size, b.members[:size],
                                                                  lrs_all, params, model_states, batch_orders),
                               **flags)
        for b in buckets:
            spec = b.spec
            size = _initial_chunk(b, chunk_size, budget, ndev)
            plan = None
            while True:
                chunks = [b.members[k:k + size] for k in range(0, len(b.members), size)]
                plan = ChunkPlan(b.index, size, chunks)
                ok = _run_bucket(data, configs, spec, plan, lrs_all, params, model_states, batch_orders,
                                 out, bar, budget, fixed=chunk_size is not None, on_chunk=on_chunk,
                                 store=store, flags=flags)
                if ok:
                    break
                size = max(1, size // 2)  # XLA says the chunk does not fit: halve and recompile
            out["plans"].append(plan)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            with _lock:
                for k in [k for k, f in _pending.items() if f.done()]:
                    del _pending[k]
    return out


def compile_threads() -> int:
    """Programs a sweep compiles at once: JAXFIT_COMPILE_THREADS, default 1 (each when its bucket's
    turn comes). On this project's 2-core CPU, compiling the default sweep's 20 programs two at a time
    ahead of their buckets was no faster (70 s wall against 67 s: XLA already spreads one compile's
    code generation over the cores); machines with many cores may gain from more."""
    env = os.environ.get("JAXFIT_COMPILE_THREADS", "").strip()
    if not env:
        return 1
    try:
        n = int(env)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"JAXFIT_COMPILE_THREADS={env!r} is invalid: use a positive integer")
    return n


def _initial_chunk(b, chunk_size: int | None, budget: int, ndev: int) -> int:
    """Configs per chunk of a bucket before XLA's memory analysis has had its say."""
    size = chunk_size or max(1, min(len(b.members), budget // max(estimate_bytes_per_config(b.spec), 1)))
    if chunk_size is None and ndev > 1 and size >= ndev:
        size = math.ceil(size / ndev) * ndev  # shard the chunk evenly (pad <= ndev - 1 configs)
    return size


def _abstract_args(data, configs, spec, size, members, lrs_all, params, model_states, batch_orders):
    """The program arguments of a chunk as shapes, dtypes and shardings (enough to compile it)."""
    sharded, replicated = _mesh_sharding(size)
    args = _chunk_args(configs, members, spec, size, lrs_all, params, model_states, batch_orders)
    d = spec.static.dtype
    shapes = Data((data.n_train, data.num_features), (data.n_train,), (data.n_val, data.num_features), (data.n_val,))
    dtypes = Data(d, np.int32, d, np.int32)
    dev_data = Data(*(jax.ShapeDtypeStruct(sh, dt, sharding=replicated) for sh, dt in zip(shapes, dtypes)))
    sds = [jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=sharded), x)
           for x in args]
    return (*sds[:2], dev_data, *sds[2:])


def _make_bar(progress, total):
    if progress is None or progress is False:
        return None
    if callable(progress) and not isinstance(progress, bool):
        return _CallbackBar(progress, total)
    from tqdm.auto import tqdm
    return tqdm(total=total, unit="cfg-epoch", desc="jaxfit", smoothing=0.1, dynamic_ncols=True)


class _CallbackBar:
    def __init__(self, fn, total):
        self.fn, self.total, self.n = fn, total, 0

    def update(self, k):
        self.n += k
        self.fn(self.n, self.total)

    def close(self):
        pass


def _chunk_args(configs, members, spec, size, lrs_all, params, model_states, batch_orders):
    """The padded host arrays of one chunk, in the program's argument order (data excluded)."""
    dtype, epochs = spec.static.dtype, spec.static.epochs
    cs = [configs[i] for i in members]
    args = [_pad_rows(cfgmod.hparams(cs, dtype), size), _pad_rows(lrs_all[members, :epochs].astype(dtype), size)]
    if params is not None:
        args.append(_pad_rows(_stack([_as_dtype(params[i], dtype) for i in members]), size))
    if model_states is not None:
        args.append(_pad_rows(_stack([_as_dtype(model_states[i], dtype) for i in members]), size))
    if batch_orders is not None:
        args.append(_pad_rows(np.stack([batch_orders[i] for i in members]), size))
    return args


def _run_bucket(data, configs, spec, plan: ChunkPlan, lrs_all, params, model_states, batch_orders, out,
                bar, budget, *, fixed: bool, on_chunk, store=None, flags: dict) -> bool:
    """Train one bucket's chunks; `flags` are `_compile`'s keywords. False when the first chunk's
    program is over the memory budget (the caller halves the chunk)."""
    size = plan.chunk_size
    epochs = spec.static.epochs
    sharded, replicated = _mesh_sharding(size)
    dev_data = None
    first = True
    for ci, members in enumerate(plan.chunks):
        key = store.key(data.fingerprint(), [configs[i] for i in members]) if store is not None else None
        saved = store.get(key) if store is not None else None
        if saved is not None:
            for i, o in zip(members, saved):
                out["metrics"][i], out["params"][i], out["model_state"][i] = o["metrics"], o["params"], o["model_state"]
            if bar is not None:
                bar.update(epochs * len(members))
            plan.resumed += 1
            if on_chunk is not None:
                on_chunk(plan, ci, out)
            continue
        if dev_data is None:
            dev_data = _device_data(data, spec.static.dtype, replicated)
        args = _chunk_args(configs, members, spec, size, lrs_all, params, model_states, batch_orders)
        if sharded is not None:
            args = [jax.device_put(a, sharded) for a in args]
        compiled, dt, cached = _compile(spec, size, (*args[:2], dev_data, *args[2:]), **flags)
        if first:
            first = False
            plan.compile_s, plan.cached = dt, cached
            plan.bytes = _memory_of(compiled)
            if not fixed and plan.bytes is not None and plan.bytes > budget and size > 1:
                return False
        last = [0]

        def sink(e, _n=len(members), _last=last):
            if bar is not None and e + 1 > _last[0]:
                bar.update((e + 1 - _last[0]) * _n)
                _last[0] = e + 1

        _progress.sink = sink
        t0 = time.perf_counter()
        try:
            ts, metrics = compiled(args[0], args[1], dev_data, *args[2:])
            metrics = jax.device_get(metrics)
            final_params = jax.device_get(ts.params)
            final_state = jax.device_get(ts.model_state)
        finally:
            _progress.sink = None
        plan.run_s += time.perf_counter() - t0
        if bar is not None and last[0] < epochs:
            bar.update((epochs - last[0]) * len(members))
        for k, i in enumerate(members):
            out["metrics"][i] = {m: np.asarray(v[:, k]) for m, v in metrics.items()}
            out["params"][i] = jax.tree_util.tree_map(lambda a: np.asarray(a[k]), final_params)
            out["model_state"][i] = jax.tree_util.tree_map(lambda a: np.asarray(a[k]), final_state)
        if store is not None:
            store.put(key, [{"metrics": out["metrics"][i], "params": out["params"][i],
                             "model_state": out["model_state"][i]} for i in members])
        if on_chunk is not None:
            on_chunk(plan, ci, out)
    return True


def _as_dtype(tree, dtype):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), tree)

"""Compiling and caching programs.

A program is `jaxfit.program.train.make_segment(spec, epochs, ...)` compiled for one chunk shape. This
process keeps the programs it used last (keyed by everything that changes the executable; at most
`programs_kept()`, least recently used dropped first: each executable holds memory mappings, and a
process that compiled thousands of them ran out of the kernel's map count and crashed), and
JAX's persistent compilation cache keeps them across processes once it is on
(`enable_compilation_cache`; the command line turns it on by default). Programs hold no host
callbacks, so the persistent cache can store them.

Float64 buckets are traced, compiled and run under a scoped `jax.enable_x64(True)` and float32 ones
under `jax.enable_x64(False)`, so a float64 sweep changes nothing for the rest of the process and
a float32 program is the same (and the same cache entry) whatever the process's x64 setting.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from ..program.train import Boundaries, ProgramSpec, choices_of, make_segment
from . import cpu

_compiled: collections.OrderedDict[tuple, Any] = collections.OrderedDict()  # least recently used first
PROGRAMS_KEPT = 64
_stats = {"compiles": 0, "compile_s": 0.0, "cache_hits": 0}
_lock = threading.Lock()
_listening = [False]
_rejected_options: set = set()  # option names this jaxlib did not accept (compiled without them)


def compile_count() -> int:
    """How many programs this process has compiled or loaded from the persistent cache (a sweep that
    only changes numbers adds none)."""
    return _stats["compiles"]


def cache_hits() -> int:
    """How many of those came from JAX's persistent compilation cache."""
    return _stats["cache_hits"]


def clear_cache() -> None:
    """Forget this process's compiled programs (the persistent cache on disk is untouched)."""
    with _lock:
        _compiled.clear()


def programs_kept() -> int:
    """How many compiled programs this process keeps (JAXFIT_PROGRAMS_KEPT, default 64; at least 1).
    A sweep needs one at a time; more only spare recompiling when the same shapes come back."""
    raw = os.environ.get("JAXFIT_PROGRAMS_KEPT", "").strip()
    try:
        return max(1, int(raw)) if raw else PROGRAMS_KEPT
    except ValueError:
        return PROGRAMS_KEPT


def _on_event(event: str, **_kw) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        with _lock:
            _stats["cache_hits"] += 1


def _listen() -> None:
    if not _listening[0]:
        _listening[0] = True
        with contextlib.suppress(Exception):
            jax.monitoring.register_event_listener(_on_event)


def default_cache_dir() -> str:
    return os.environ.get("JAXFIT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "jaxfit", "xla")


def enable_compilation_cache(path: str | None = None) -> str:
    """Turn on JAX's persistent compilation cache, so programs survive the process: a rerun, a
    resume or the next sweep of the same shapes loads them instead of compiling. From Python:
    `jaxfit.enable_compilation_cache()` before the first sweep (the command line does it unless
    `--no-cache`). Returns the directory (default ~/.cache/jaxfit/xla, or $JAXFIT_CACHE_DIR)."""
    path = path or default_cache_dir()
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def x64_scope(dtype: str):
    """The x64 setting a bucket of this dtype is traced, compiled and run under."""
    return jax.enable_x64(dtype == "float64")


def program_key(spec: ProgramSpec, chunk: int, seg: int, flags: dict, boundaries=frozenset()):
    """(cache key, blocks, options, groups, hints) of a chunk program. `boundaries`: where the choices
    (and seeds) of the chunks it will run change (`program.train.Boundaries`, or a plain set of the
    choices' positions); `hints` (training, evaluation, seed) say whether every block of them
    shares its choices (one branch computed per block) and every training block its seed (one
    batch order per block)."""

    devices = jax.devices()
    platform = devices[0].platform
    groups = len(devices) if mesh_sharding(chunk)[0] is not None else 1  # one group per device shard
    choices, seeds = (boundaries.choices, boundaries.seeds) if isinstance(boundaries, Boundaries) else (boundaries, None)
    if not seed_blocks_on():
        seeds = None
    blocks = cpu.block_sizes(spec, chunk, groups, platform, choices, seeds)
    per_dev = chunk // groups
    hints = (False, False)
    if choice_hints_on() and choices_of(spec):
        hints = tuple(cpu.hints_hold(b, per_dev, choices) for b in blocks)
    share = seeds is not None and cpu.hints_hold(blocks[0], per_dev, seeds)
    hints = (*hints, share)
    options = {k: v for k, v in cpu.cpu_options(spec, platform).items() if k not in _rejected_options}
    key = (spec, chunk, seg, tuple(sorted(flags.items())), tuple(devices), blocks, hints,
           tuple(sorted(options.items())))
    return key, blocks, options, groups, hints


def seed_blocks_on() -> bool:
    """JAXFIT_SEED_BLOCKS=0 in the environment draws every config's batch order itself, as before
    blocks shared their seeds (for measuring what it gains: benchmarks/)."""
    return os.environ.get("JAXFIT_SEED_BLOCKS", "1").strip() != "0"


def choice_hints_on() -> bool:
    """JAXFIT_CHOICE_HINTS=0 in the environment computes every branch of every choice for every
    config, as before blocks shared their choices (for measuring what it gains: benchmarks/)."""
    return os.environ.get("JAXFIT_CHOICE_HINTS", "1").strip() != "0"


def get(spec: ProgramSpec, chunk: int, seg: int, args, *, precision: str = "highest", inputs: tuple = (),
        record_steps: bool = False, before: Callable[[], None] | None = None, boundaries=frozenset()):
    """(compiled program, seconds spent compiling or loading it, how: "process" | "disk" | "compiled").
    Call inside `x64_scope(spec.dtype)`. `inputs`: the names of the optional inputs present.
    `before()` runs when the program is not already in this process (it is about to be compiled or loaded).
    `boundaries`: see `program_key`."""
    _listen()
    flags = {"precision": precision, "inputs": tuple(sorted(inputs)), "record_steps": record_steps}
    key, blocks, options, groups, hints = program_key(spec, chunk, seg, flags, boundaries)
    with _lock:
        hit = _compiled.get(key)
        if hit is not None:
            _compiled.move_to_end(key)
    if hit is not None:
        return hit, 0.0, "process"
    if before is not None:
        before()
    program = make_segment(spec, seg, train_block=blocks[0], eval_block=blocks[1], groups=groups,
                           record_steps=record_steps, hints=hints[:2], share_seed=hints[2])
    h0 = _stats["cache_hits"]
    t0 = time.perf_counter()
    with jax.default_matmul_precision(precision):
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
        while len(_compiled) > programs_kept():
            _compiled.popitem(last=False)
    return compiled, dt, ("disk" if _stats["cache_hits"] > h0 else "compiled")


def memory_of(compiled) -> int | None:
    with contextlib.suppress(Exception):
        m = compiled.memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
    return None


def mesh_sharding(n: int):
    devs = jax.devices()
    if len(devs) < 2 or n % len(devs):
        return None, None
    mesh = jax.sharding.Mesh(np.array(devs), ("configs",))
    return (jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("configs")),
            jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))

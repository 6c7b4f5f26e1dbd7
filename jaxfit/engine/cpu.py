"""XLA:CPU tuning: host devices, per-program options and cache blocking (the measurements that
chose each are in benchmarks/README.md, "What made it fast").

Host devices and the small-loop option are process-wide XLA flags, so nothing here is applied on
import: the command line calls `configure_host_devices()` before JAX starts, and Python users may
call it first thing (`jaxfit.configure_host_devices()`).

One host device per core: XLA:CPU runs most of a small-model training step on one thread, and the
engine shards the config axis of a chunk over the devices it sees, so each core trains its share of
a chunk. Opt out with JAXFIT_HOST_DEVICES=1 (or
set the count, e.g. JAXFIT_HOST_DEVICES=4); an XLA_FLAGS that already names a host device count
is left alone. Only the CPU platform is affected: accelerators are not host devices.

Small while loops as one kernel: `xla_cpu_small_while_loop_byte_threshold` (an XLA:CPU backend
option) lets XLA compile a training loop whose buffers are under the threshold into one kernel
instead of running each step's operations one by one: small nets train faster with it, very wide
ones (whose big products then run inside the loop kernel) slower (benchmarks/README.md). On by default; JAXFIT_SMALL_LOOPS=0 turns it off. The option is a key of
`--xla_backend_extra_options`, which XLA looks up by name (a jaxlib that does not know it ignores
it), and is only added when XLA_FLAGS names no backend extra options of its own.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any
from ..errors import UserError

FLAG = "--xla_force_host_platform_device_count"
EXTRA = "--xla_backend_extra_options"
SMALL_LOOPS = "xla_cpu_small_while_loop_byte_threshold=1000000000"


def _backends_started() -> bool:
    import sys

    if "jax" not in sys.modules:  # JAX not even imported: nothing started (and no import just to ask)
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a JAX without that helper: be safe, assume started once jax is imported
        return True


def host_device_count() -> int:
    mode = os.environ.get("JAXFIT_HOST_DEVICES", "auto").strip().lower()
    if mode in ("", "auto"):
        return os.cpu_count() or 1
    try:
        n = int(mode)
    except ValueError:
        raise UserError(f"JAXFIT_HOST_DEVICES={mode!r} is invalid: use 'auto' or a positive integer") from None
    if n < 1:
        raise UserError(f"JAXFIT_HOST_DEVICES={mode!r} is invalid: use 'auto' or a positive integer")
    return n


def configure_host_devices() -> bool:
    """Add the host device count (and the small-loop option) to XLA_FLAGS, if JAX's backends have not
    started yet; True if it changed them. One host device per core lets a sweep shard its configs over
    every core (about 2x on a 2-core CPU). Call it before anything uses JAX."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _backends_started():
        return False
    new = flags
    if FLAG not in flags:
        n = host_device_count()
        if n > 1:
            new = f"{new} {FLAG}={n}"
    if EXTRA not in flags and os.environ.get("JAXFIT_SMALL_LOOPS", "1").strip() != "0":
        new = f"{new} {EXTRA}={SMALL_LOOPS}"
    if new == flags:
        return False
    os.environ["XLA_FLAGS"] = new.strip()
    return True



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


def aligned_block(per_dev: int, k: int, boundaries) -> int:
    """The largest divisor of `per_dev` at most `k` that every boundary is a multiple of (a block of
    it never straddles a change of choice; 1 always qualifies)."""
    for d in range(max(1, min(k, per_dev)), 0, -1):
        if per_dev % d == 0 and all(b % d == 0 for b in boundaries):
            return d
    return 1


def hints_hold(block: int, per_dev: int, boundaries) -> bool:
    """Every block (of `block` configs, 0: one device's whole range) lies within one choice group."""
    size = block if 0 < block < per_dev else per_dev
    return all(b % size == 0 for b in boundaries)


def block_sizes(spec, chunk: int, groups: int, platform: str, boundaries=frozenset(), seeds=None) -> tuple[int, int]:
    """(train_block, eval_block) for `program.train.make_segment`: configs per `lax.map` iteration on each device,
    chosen so a block (its parameters, gradients and optimizer state and one batch's
    activations; for the evaluation, one split's activations) fits in a core's L2 cache
    (the fraction and the byte counts calibrated on W2 of benchmarks/: 8 configs of 2-64-64-3 with Adam). 0
    means no blocking: on accelerators, when the whole chunk fits anyway, or with JAXFIT_BLOCKS=0
    in the environment (for measuring what blocking gains: benchmarks/ablation.py).

    `boundaries`: the chunk positions where the configs' choices change (`program.train.choice_boundaries`,
    over every chunk of the bucket). A block that fits is then shrunk to one aligned to them
    (`aligned_block`) when that costs at most half its size, so each block computes one branch of
    each choice (`jaxfit.nn.choice`). `seeds` (where the seed changes, or None): a training block is
    first shrunk (by at most half again) to one aligned to both, so each block also shares one
    batch order (`program.train.make_segment`'s share_seed)."""
    if platform != "cpu" or os.environ.get("JAXFIT_BLOCKS", "1").strip() == "0":
        return 0, 0
    budget = int(BLOCK_CACHE_FRACTION * _l2_bytes())
    item = 8 if spec.dtype == "float64" else 4
    from ..nn import layers, optim  # (imports JAX: this module's top level must not)

    w = spec.arch.widths
    n_params = layers.n_weights(spec.arch)
    slots = optim.slot_count(spec.optimizers)
    train_bytes = item * (n_params * (2 + slots) + 3 * spec.batch * sum(w))
    eval_bytes = item * (n_params + 3 * max(spec.n_train, spec.n_val) * sum(w))
    per_dev = max(1, chunk // max(groups, 1))  # configs of one device (a group, see blocked_vmap)

    def fit(nbytes, seeds=None):
        k = budget // max(nbytes, 1)
        if k >= per_dev:
            return 0
        plain = _largest_divisor_at_most(per_dev, k)
        if seeds:
            both = frozenset(boundaries) | seeds
            d = aligned_block(per_dev, plain, both)
            if 2 * d >= plain:
                return d
        if boundaries and not hints_hold(plain, per_dev, boundaries):
            d = aligned_block(per_dev, plain, boundaries)
            if 2 * d >= plain:
                return d
        return plain

    return fit(train_bytes, seeds), fit(eval_bytes)


def cpu_options(spec, platform: str) -> dict[str, Any]:
    """Per-program XLA options. For networks no wider than TINY_WIDTH on a CPU, XLA's experimental
    YNNPACK fusions (to which jaxlib hands small reductions and products) are turned off: tiny nets
    train faster without them, 64-wide ones slower (benchmarks/README.md). JAXFIT_TINY_OPTIONS=0 in
    the environment turns this off."""
    if (platform != "cpu" or max(spec.arch.widths) > TINY_WIDTH
            or os.environ.get("JAXFIT_TINY_OPTIONS", "1").strip() == "0"):
        return {}
    return {"xla_cpu_experimental_ynn_fusion_type": ""}



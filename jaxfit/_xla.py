"""XLA:CPU set-up, applied when jaxfit is imported and only if JAX's backends have not started yet.

One host device per core: XLA:CPU runs most of a small-model training step on one thread, and the
engine shards the config axis of a chunk over the devices it sees, so on a 2-core machine two host
devices about double the throughput of a sweep (benchmarks/). Opt out with JAXFIT_HOST_DEVICES=1 (or
set the count, e.g. JAXFIT_HOST_DEVICES=4); an XLA_FLAGS that already names a host device count
is left alone. Only the CPU platform is affected: accelerators are not host devices.

Small while loops as one kernel: `xla_cpu_small_while_loop_byte_threshold` (an XLA:CPU backend
option) lets XLA compile a training loop whose buffers are under the threshold into one kernel
instead of running each step's operations one by one. Measured with the full benchmark both ways on
this project's 2-core CPU (benchmarks/results/throughput-cpu2-2026-11-23*.json): with it, document
1's model trained 1.4x faster at N=1024 (44.7 M vs 31.5 M model-steps/s) and the 2-64-64-3 net 1.1x
(61.4 k vs 54.9 k), while the 2-512-512-512-3 net was 1.3x slower (88 vs 116 at N=1), whose big
products XLA then runs inside the loop kernel; a 1-epoch ablation (benchmarks/ablation.py) disagreed
for the small nets. On by default; JAXFIT_SMALL_LOOPS=0 turns it off. The option is a key of
`--xla_backend_extra_options`, which XLA looks up by name (a jaxlib that does not know it ignores
it), and is only added when XLA_FLAGS names no backend extra options of its own.
"""

from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"
EXTRA = "--xla_backend_extra_options"
SMALL_LOOPS = "xla_cpu_small_while_loop_byte_threshold=1000000000"


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a JAX without that helper: be safe, assume started only if jax is imported
        import sys

        return "jax" in sys.modules


def host_device_count() -> int:
    mode = os.environ.get("JAXFIT_HOST_DEVICES", "auto").strip().lower()
    if mode in ("", "auto"):
        return os.cpu_count() or 1
    try:
        n = int(mode)
    except ValueError:
        raise ValueError(f"JAXFIT_HOST_DEVICES={mode!r} is invalid: use 'auto' or a positive integer") from None
    if n < 1:
        raise ValueError(f"JAXFIT_HOST_DEVICES={mode!r} is invalid: use 'auto' or a positive integer")
    return n


def configure() -> bool:
    """Add the host device count (and the small-loop option) to XLA_FLAGS; True if it changed them."""
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

"""XLA:CPU set-up, applied when jaxfit is imported and only if JAX's backends have not started yet.

One host device per core: XLA:CPU runs most of a small-model training step on one thread, and the
engine shards the config axis of a chunk over the devices it sees, so on a 2-core machine two host
devices about double the throughput of a sweep (benchmarks/). Opt out with JAXFIT_HOST_DEVICES=1 (or
set the count, e.g. JAXFIT_HOST_DEVICES=4); an XLA_FLAGS that already names a host device count
is left alone. Only the CPU platform is affected: accelerators are not host devices.
"""

from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"


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
    """Add the host device count to XLA_FLAGS; True if it did."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG in flags or _backends_started():
        return False
    n = host_device_count()
    if n <= 1:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}={n}".strip()
    return True

"""Where and when a result was computed: machine, versions, commit (one record for sweeps,
benchmarks and the parity suite's result files)."""

from __future__ import annotations

import os
import platform
from typing import Any

def cpu_name() -> str:
    """The host CPU's model name (for results files: which machine a number came from)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The checkout's short commit (with "-dirty" when tracked files are modified), or None."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return None


VERSIONED = ("jaxfit", "jax", "jaxlib", "numpy", "flax", "torch")


def versions() -> dict[str, str]:
    """Python's and each installed package's version (from the installed metadata: nothing is imported,
    so asking for torch's version does not load torch)."""
    from importlib import metadata

    v = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            v[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return v


def provenance() -> dict[str, Any]:
    """Where and when a result was computed, for a results file: the one record of the benchmarks,
    the parity suite's result files and sweeps (`environment`)."""
    import datetime

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"node": platform.node(), "platform": platform.platform(), "cpu": cpu_name(),
                        "cpu_count": os.cpu_count()},
            "versions": versions(), "git": git_commit()}


def environment() -> dict[str, Any]:
    import jax

    dev = jax.devices()[0]
    return {**versions(), "platform": dev.platform,
            "device": getattr(dev, "device_kind", str(dev)), "n_devices": jax.device_count(),
            "machine": platform.machine(), "cpu_count": os.cpu_count()}

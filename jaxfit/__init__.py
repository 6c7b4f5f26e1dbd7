"""jaxfit: train hundreds of small MLPs at once in one jitted, vmapped JAX program.

    import jaxfit
    data = jaxfit.datasets.sum_mod(n=2000, seed=0)
    configs = jaxfit.grid(hidden=[(16,), (64, 64)], lr=[1e-3, 1e-2], seed=range(4), epochs=20)
    result = jaxfit.sweep(data, configs)
    result.best("val_acc")

Importing jaxfit changes nothing process-wide. Two optional calls, first thing in a script:
`jaxfit.configure_host_devices()` (one XLA host device per CPU core, before JAX starts: about 2x
on a 2-core CPU) and `jaxfit.enable_compilation_cache()` (compiled programs kept on disk across
processes). The `jaxfit` command line does both.
"""

__version__ = "0.1.0"

from .cpu import configure_host_devices  # noqa: E402  (no JAX import: callable before JAX starts)
from . import datasets, engine  # noqa: E402
from .api import model_steps, sweep, train  # noqa: E402
from .config import Config, grid, int_uniform, log_uniform, sample, uniform  # noqa: E402
from .programs import cache_hits, compile_count, enable_compilation_cache  # noqa: E402
from .results import SweepResult  # noqa: E402
from .diagnose import diagnose  # noqa: E402

__all__ = [
    "Config", "SweepResult", "cache_hits", "compile_count", "configure_host_devices", "datasets", "diagnose",
    "enable_compilation_cache", "grid", "int_uniform", "log_uniform", "model_steps", "sample", "sweep", "train",
    "uniform",
]

"""jaxfit: train hundreds of small MLPs at once in one jitted, vmapped JAX program.

    import jaxfit
    data = jaxfit.datasets.sum_mod(n=2000, seed=0)
    configs = jaxfit.grid(hidden=[(16,), (64, 64)], lr=[1e-3, 1e-2], seed=range(4), epochs=20)
    result = jaxfit.sweep(data, configs)
    result.best("val_acc")
"""

__version__ = "0.1.0"

from . import _xla

_xla.configure()  # before anything starts JAX's backends: one host device per core (see _xla)

from . import datasets, engine
from .api import model_steps, sweep, train
from .config import Config, grid, int_uniform, log_uniform, sample, uniform
from .engine import compile_count, enable_compilation_cache
from .results import SweepResult

__all__ = [
    "Config", "SweepResult", "compile_count", "datasets", "enable_compilation_cache", "grid", "int_uniform",
    "log_uniform", "model_steps", "sample", "sweep", "train", "uniform",
]

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

# Names are imported on first use (PEP 562), so `import jaxfit` and the command line's --version,
# --help and `datasets` do not start JAX; `from jaxfit import sweep` imports what it needs.
_LAZY = {
    "configure_host_devices": "cpu", "datasets": None, "engine": None, "errors": None,
    "model_steps": "api", "sweep": "api", "train": "api",
    "Config": "config", "grid": "config", "int_uniform": "config", "log_uniform": "config", "sample": "config",
    "uniform": "config",
    "cache_hits": "programs", "compile_count": "programs", "enable_compilation_cache": "programs",
    "SweepResult": "results", "diagnose": "diagnose", "UserError": "errors", "JaxfitWarning": "errors",
}

__all__ = sorted(n for n in _LAZY if n not in ("errors", "engine"))


def __getattr__(name: str):
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'jaxfit' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

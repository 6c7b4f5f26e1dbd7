"""jaxfit: train hundreds of small MLPs at once in one jitted, vmapped JAX program.

    import jaxfit
    data = jaxfit.datasets.sum_mod(n=2000, seed=0)
    configs = jaxfit.grid(hidden=[(16,), (64, 64)], lr=[1e-3, 1e-2], seed=range(4), epochs=20)
    result = jaxfit.sweep(data, configs)
    result.best("val_acc")

Importing jaxfit changes nothing process-wide. Two optional calls, first thing in a script:
`jaxfit.configure_host_devices()` (one XLA host device per CPU core, before JAX starts, so that
every core trains its share of a chunk) and `jaxfit.enable_compilation_cache()` (compiled programs kept on disk across
processes). The `jaxfit` command line does both.
"""

from .lazy import lazy
from .version import __version__

# Names are imported on first use (PEP 562), so `import jaxfit` and the command line's --version,
# --help and `datasets` do not start JAX; `from jaxfit import sweep` imports what it needs.
_LAZY = {
    "configure_host_devices": "engine.cpu",
    "model_steps": "api", "sweep": "api", "train": "api", "search": "study", "SearchResult": "study",
    "Config": "config", "grid": "config", "int_uniform": "config", "log_uniform": "config", "sample": "config",
    "uniform": "config",
    "Halving": "engine.prune", "Hyperband": "engine.prune", "cache_hits": "engine.compile", "compile_count": "engine.compile", "enable_compilation_cache": "engine.compile",
    "SweepResult": "results", "diagnose": "diagnostics", "UserError": "errors", "JaxfitWarning": "errors",
}

# Subpackages by layer; an import may only point down this list (tests/test_import_arrows.py):
# errors, version, lazy, io <- config, datasets <- nn <- program <- flax <- engine <- results <- diagnostics
# <- report <- api, study, spec <- cli.
SUBMODULES = ("errors", "version", "io", "config", "datasets", "nn", "program", "flax", "engine", "results",
              "diagnostics", "report", "api", "study", "spec", "cli")

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__, __dir__ = lazy(__name__, globals(), SUBMODULES, _LAZY)

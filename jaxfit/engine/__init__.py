"""The engine: configs -> buckets -> chunks -> segments of a compiled program -> raw outputs.

The stateful part of jaxfit (devices, compiled programs, memory budget, checkpoints), around the
pure program of `jaxfit.program`:

* `checks`:   a config against its data, given batch orders and dropout masks, before any work;
* `plan`:     buckets (configs sharing one compiled program) and the cost model that fuses them;
* `compile`:  compiling and caching programs (this process's and JAX's persistent cache), sharding;
* `cpu`:      XLA host-device and CPU options (importable before JAX starts: no JAX import);
* `run`:      `run_sweep`, the host loop over buckets, chunks and segments;
* `store`:    finished chunks on disk (`ChunkStore`), so that a rerun resumes;
* `progress`: phases, bar or log lines, and the ETA.

Names are imported on first use, so `jaxfit.engine.cpu` does not start JAX.
"""

from ..lazy import lazy

SUBMODULES = ("checks", "plan", "compile", "cpu", "run", "store", "progress")
_LAZY = {
    "run_sweep": "run", "SweepRun": "run", "ChunkPlan": "run", "memory_budget": "run", "initial_chunk": "run",
    "build_user_models": "run", "MATMUL_PRECISIONS": "run", "plan_programs": "run",
    "check_config_for_data": "checks", "check_batch_order": "checks", "check_dropout_masks": "checks",
    "clear_cache": "compile", "compile_count": "compile", "cache_hits": "compile",
    "enable_compilation_cache": "compile", "mesh_sharding": "compile",
    "configure_host_devices": "cpu",
}


__getattr__, __dir__ = lazy(__name__, globals(), SUBMODULES, _LAZY)

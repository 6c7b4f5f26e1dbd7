"""executor="ray": a sweep's chunks as Ray tasks, the driver the only writer.

The driver plans the buckets and chunks as a local sweep does, loads the chunks already in the
checkpoint directory, and submits every other chunk as a task (`run.train_chunk` on the chunk's
configs: a pure function of them and the data). It writes each chunk's outputs as they come back
(the ChunkStore's atomic, checksummed files), so a driver killed mid-sweep resumes from them with
the same command, and no shared filesystem is needed.

Faults: tasks are retried on system failures (a worker process killed, a node lost: Ray's
`max_retries`); an exception raised by the training itself is not retried and ends the sweep with it.
Workers are reused between tasks (Ray keeps CPU workers; GPU tasks are given `max_calls=0`), so a
worker keeps its compiled programs (the process cache) and compiles each bucket once. Each worker
sees one device (one CPU device per task on a CPU node, `num_gpus=1` on a GPU node, without JAX's
preallocation of the whole GPU); with the persistent compilation cache on in the driver, workers use
the same directory (a shared path when the cluster has one).

Ray is an optional dependency (`pip install -e ".[ray]"`), imported only here.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np

from ..errors import UserError
from . import plan as planmod
from . import run as runmod

MAX_RETRIES = 3  # Ray's default for tasks: a worker or node lost three times gives up


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("executor='ray' needs Ray: pip install -e \".[ray]\" (or pip install ray)") from None
    return ray


def connect(address: str | None = None):
    """Ray, connected: the running session (`ray.init()` already called), else `address`, else
    $RAY_ADDRESS, else a cluster started on this machine (`ray start --head`)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _reachable(target)
    try:
        ray.init(address=target, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"executor='ray': no Ray cluster at {target!r} ({str(e).splitlines()[0]}): start one "
                        "(`ray start --head`), call ray.init() first, or pass ray_address= / --ray ADDRESS") from None
    return ray


def _reachable(target: str, timeout_s: float = 5.0) -> None:
    """A host:port address that nothing answers at is refused at once (Ray itself would retry for
    minutes); "auto" and ray:// addresses are left to Ray."""
    import socket

    if target == "auto" or "://" in target or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as e:
        raise UserError(f"executor='ray': nothing answers at {target!r} ({e}): start the cluster's head there "
                        "(`ray start --head --port PORT`) or give its address (ray_address= / --ray HOST:PORT / "
                        "$RAY_ADDRESS)") from None


def workers(ray) -> tuple[int, bool]:
    """(tasks the cluster runs at once, whether they are GPU tasks)."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    return (gpus, True) if gpus else (max(1, int(res.get("CPU", 1))), False)


def _env(gpu: bool, cache_dir: str | None) -> dict[str, str]:
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"} if gpu else \
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=1"}  # one device per one-CPU task
    if cache_dir:
        env["JAXFIT_CACHE_DIR"] = cache_dir
    return env


def _in_worker(cache_dir, train, *args) -> dict:
    """What a worker's task runs: `train(*args)` (a dict), the persistent cache turned on first when the
    driver's is, with where and how long it ran."""
    import socket

    if cache_dir:
        from .compile import enable_compilation_cache

        enable_compilation_cache(cache_dir)
    t0 = time.perf_counter()
    res = train(*args)
    return {**res, "wall_s": time.perf_counter() - t0, "host": socket.gethostname(), "pid": os.getpid()}


def _chunk_task(data, spec, size, seg, configs, lrs, precision, boundaries, cache_dir):
    """A worker's task: one chunk trained."""
    return _in_worker(cache_dir, runmod.train_chunk, data, spec, size, seg, configs, lrs, precision, boundaries)


def _span(*args) -> dict:
    carry, metrics, plan = runmod.train_span_alone(*args)
    return {"carry": carry, "metrics": metrics, "compile_s": plan.compile_s, "run_s": plan.run_s,
            "source": plan.source}


def _span_task(data, spec, size, seg, ks, configs, states, lrs, precision, boundaries, cache_dir):
    """A worker's task under successive halving: one chunk over one span between rungs."""
    return _in_worker(cache_dir, _span, data, spec, size, seg, ks, configs, states, lrs, precision, boundaries)


def _options(address):
    """(Ray connected, task options, workers, gpu?, the persistent cache directory to pass on)."""
    import jax

    ray = connect(address)
    n_workers, gpu = workers(ray)
    cache_dir = jax.config.jax_compilation_cache_dir or None
    opts = dict(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=MAX_RETRIES, retry_exceptions=False,
                runtime_env={"env_vars": _env(gpu, cache_dir)}, **({"max_calls": 0} if gpu else {}))
    return ray, opts, n_workers, gpu, cache_dir


class Spans:
    """Successive halving on the cluster (`run._run_halving(remote=...)`): each chunk's span between
    two rungs a task; the driver makes every decision and packs the survivors, as locally."""

    def __init__(self, data, address=None):
        self.ray, opts, self.workers, self.gpu, self.cache_dir = _options(address)
        self.task = self.ray.remote(_span_task).options(**opts)
        self.data_ref = self.ray.put(data)
        self.ran: list[dict] = []
        self.t0 = time.perf_counter()

    def submit_span(self, spec, size, seg, ks, configs, states, lrs, precision, boundaries):
        return self.task.remote(self.data_ref, spec, size, seg, ks, configs, states, np.asarray(lrs), precision,
                                boundaries, self.cache_dir)

    def fetch_span(self, ref, plan, bar, n_configs: int, span: tuple[int, int], epochs_done: int):
        """A span task's (host carry, metrics, compile s, source); its time and place recorded, the
        progress bar moved by the `epochs_done` config-epochs it trained."""
        res = _result(self.ray, ref)
        plan.run_s += res["run_s"]
        self.ran.append({"bucket": plan.bucket, "epochs": list(span), "configs": n_configs, "host": res["host"],
                         "pid": res["pid"], "wall_s": res["wall_s"], "compile_s": res["compile_s"],
                         "source": res["source"]})
        if bar is not None:
            bar.update(epochs_done)
        return res["carry"], res["metrics"], res["compile_s"], res["source"]

    def record(self) -> dict[str, Any]:
        return {"executor": "ray", "workers": self.workers, "gpu": self.gpu, "spans": self.ran,
                "chunks": [], "wall_s": time.perf_counter() - self.t0}


def run_buckets(buckets, *, data, configs, lrs_all, out, bar, budget, chunk_size, store, precision, segment,
                address=None) -> dict[str, Any]:
    """Train every bucket's chunks on the Ray cluster; fills `out` (its plans too) as the local loop
    does. Returns what the meta records: the workers, and per chunk where it ran and for how long."""
    ray, opts, n_workers, gpu, cache_dir = _options(address)
    task = ray.remote(_chunk_task).options(**opts)
    data_ref = ray.put(data)
    platform = "gpu" if gpu else "cpu"
    pending: dict = {}
    t0 = time.perf_counter()
    for b in buckets:
        fit = runmod.initial_chunk(b, chunk_size, budget, 1, warn=True)
        # Without a fixed chunk size, at least as many chunks as workers (each worker busy).
        size = chunk_size or max(1, min(fit, math.ceil(len(b.members) / n_workers)))
        seg = planmod.segment_epochs(b.spec, min(size, len(b.members)), platform, override=segment)
        chunks = [b.members[k:k + size] for k in range(0, len(b.members), size)]
        plan = runmod.ChunkPlan(b.index, size, chunks, seg, estimate=dict(b.estimate), spec=b.spec)
        plan.source = "ray"
        out.plans.append(plan)
        boundaries = runmod.chunk_boundaries(b.spec, chunks, configs, size)
        for ci, members in enumerate(chunks):
            key, loaded = runmod.load_chunk(store, data, b.spec, configs, members, precision, out, bar)
            if loaded:
                plan.resumed_chunks.append(ci)
                continue
            ref = task.remote(data_ref, b.spec, size, seg, [configs[i] for i in members],
                              np.asarray(lrs_all[members]), precision, boundaries, cache_dir)
            pending[ref] = (plan, ci, members, key)
    ran = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            plan, ci, members, key = pending.pop(done[0])
            res = _result(ray, done[0])
            runmod.fill_outputs(out, members, res["outputs"])
            if store is not None:
                store.put(key, res["outputs"])
            plan.compile_s += res["compile_s"]
            plan.run_s += res["run_s"]
            plan.bytes = res["bytes"]
            ran.append({"bucket": plan.bucket, "chunk": ci, "configs": len(members), "host": res["host"],
                        "pid": res["pid"], "wall_s": res["wall_s"], "compile_s": res["compile_s"],
                        "source": res["source"]})
            if bar is not None:
                bar.update(sum(configs[i].epochs for i in members))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return {"executor": "ray", "workers": n_workers, "gpu": gpu, "chunks": ran, "wall_s": time.perf_counter() - t0}


def _result(ray, ref):
    """A chunk task's result; its own exception re-raised as it is (not retried), a task lost more
    times than Ray retries as a one-line error."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.as_instanceof_cause() if hasattr(e, "as_instanceof_cause") else e
        raise cause from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as e:
        raise RuntimeError(f"executor='ray': a chunk was lost {MAX_RETRIES + 1} times "
                           f"({type(e).__name__}); rerun the same command to resume from the chunks written") from e

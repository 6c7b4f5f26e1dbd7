"""What every implementation shares: the workloads, the FLOP count of one model-step, the machine's
measured matmul rate, peak-memory sampling, the machine and version description, and the cell record.

A *model-step* is one optimizer step of one network on one batch: forward, loss, backward, update.
Throughput is model-steps per second summed over the networks trained at once.
"""

from __future__ import annotations

from jaxfit.results import cpu_name as _cpu_name, git_commit, versions as _versions
import ctypes
import datetime as _dt
import gc
import math
import os
import platform
import re
import resource
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import jaxfit

jaxfit.configure_host_devices()  # as the command line does: one XLA host device per core
from jaxfit import datasets  # noqa: E402
from torchref import tasks  # noqa: E402
from jaxfit.config import Config

# ----------------------------------------------------------------------------- workloads

# Every implementation trains on the batches in data order (no shuffling): document 1's DataLoader
# does not shuffle, and it keeps the per-step work identical across implementations.
WORK_NOTE = ("model-step = forward + loss + backward + optimizer update of one network on one batch, "
             "batches in data order (no shuffling) for every implementation; the PyTorch implementations "
             "time training steps only, jaxfit's run also evaluates every network on the whole training and "
             "validation split once per epoch (not counted as model-steps, see eval_flops_ratio)")


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    config: Config  # at full length
    n_points: int  # sum_mod training points (validation: n_points // 4, as sum_mod's default)

    def dataset(self, n_points: int | None = None) -> datasets.Dataset:
        return datasets.sum_mod(n=n_points or self.n_points, seed=0)

    @property
    def batch(self) -> int:
        b = self.config.batch_size
        return self.n_points if b == 0 else min(b, self.n_points)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_points // self.batch)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of one model over the whole workload."""
        return self.config.epochs * self.steps_per_epoch

    @property
    def widths(self) -> tuple[int, ...]:
        return (2, *self.config.hidden, 3)

    @property
    def n_params(self) -> int:
        w = self.widths
        return sum(i * o + o for i, o in zip(w[:-1], w[1:]))

    def summary(self) -> dict[str, Any]:
        c = self.config
        return {"description": self.description, "widths": list(self.widths), "n_params": self.n_params,
                "activation": c.activation, "output": c.output, "loss": c.loss, "optimizer": c.optimizer,
                "lr": c.lr, "momentum": c.momentum if c.optimizer == "sgd" else None, "batch_size": self.batch,
                "epochs": c.epochs, "n_train": self.n_points, "n_val": self.n_points // 4,
                "steps_per_epoch": self.steps_per_epoch, "total_steps_per_model": self.total_steps,
                "dataset": f"sum_mod(n={self.n_points}, seed=0), 3 classes", "dtype": c.dtype,
                "shuffle": c.shuffle}


_DOC1 = tasks.get("doc1_sum_mod")
WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("W1", "document 1's model: 2-2-3 ReLU, softmax output + CrossEntropyLoss, SGD 1e-3 momentum 0.9, "
             "batch 1, sum_mod n=2000, 50 epochs", _DOC1.make_config(full=True), 2000),
    Workload("W2", "sweep-typical: 2-64-64-3 ReLU, Adam 1e-3, batch 32, sum_mod n=2000, 50 epochs",
             Config(hidden=(64, 64), activation="relu", output="logits", loss="cross_entropy", optimizer="adam",
                    lr=1e-3, batch_size=32, epochs=50, shuffle=False), 2000),
    Workload("W3", "wide: 2-512-512-512-3 ReLU, Adam 1e-3, batch 256, sum_mod n=20000, 5 epochs",
             Config(hidden=(512, 512, 512), activation="relu", output="logits", loss="cross_entropy",
                    optimizer="adam", lr=1e-3, batch_size=256, epochs=5, shuffle=False), 20000),
]}
assert not WORKLOADS["W1"].config.shuffle and WORKLOADS["W1"].config.batch_size == 1


def get_workload(name: str) -> Workload:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; the workloads are {', '.join(WORKLOADS)}")
    return WORKLOADS[name]


# ----------------------------------------------------------------------------- FLOPs per model-step


def _cost(stage) -> dict[str, float]:
    ca = stage.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jaxlibs: one dict per computation
        ca = ca[0] if ca else {}
    return {k: float(v) for k, v in (ca or {}).items() if k in ("flops", "transcendentals", "bytes accessed")}


def step_cost(w: Workload) -> dict[str, Any]:
    """XLA's own cost analysis of ONE training step of ONE model (float32), built from jaxfit.nn:
    layers.apply + the loss + value_and_grad + the optimizer update, on one full batch given as
    input (the batch gather is not counted). The same count is used for every implementation.

    Also the cost of the per-epoch evaluation jaxfit runs (an eval-mode forward and loss on the
    training and validation splits), as a ratio to the training FLOPs of one epoch."""
    import jax
    import jax.numpy as jnp

    from jaxfit.config import hparams
    from jaxfit.nn import layers, losses, optim
    from jaxfit.program.train import spec_of

    c = w.config.replace(dtype="float32")
    data = w.dataset()
    arch = spec_of(c, data.n_train, data.n_val, data.num_features, data.num_classes).arch
    hp = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((), a.dtype), hparams([c], "float32"))
    # Shapes only (lowering needs no values, and eager init would compile every op).
    params, state = jax.eval_shape(lambda k: layers.init(arch, k, jnp.float32), jax.random.PRNGKey(0))
    assert not state, "these workloads carry no model state (no batch norm, encoding or input statistics)"
    loss_fn = losses.LOSSES[c.loss]
    xb = jax.ShapeDtypeStruct((w.batch, data.num_features), jnp.float32)
    yb = jax.ShapeDtypeStruct((w.batch,), jnp.int32)

    def train_step(params, opt_state, hp, lr, x, y):
        opt = optim.make(c.optimizer, hp, c.nesterov)

        def loss(p):
            out, _ = layers.apply(arch, p, state, x, train=True)
            return jnp.mean(loss_fn(out, y))

        value, grads = jax.value_and_grad(loss)(params)
        params, opt_state = opt.step(grads, opt_state, params, lr)
        return params, opt_state, value

    opt_state = jax.eval_shape(optim.make(c.optimizer, hp, c.nesterov).init, params)
    lr = jax.ShapeDtypeStruct((), jnp.float32)
    train = _cost(jax.jit(train_step).lower(params, opt_state, hp, lr, xb, yb).compile())

    def evaluate(params, x, y):
        out, _ = layers.apply(arch, params, state, x, train=False)
        return jnp.mean(loss_fn(out, y)), jnp.mean(losses.correct(out, y, c.output))

    ev = 0.0
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        # lowered, not compiled: this count only sizes a note, and skipping the compile saves time
        ev += _cost(jax.jit(evaluate).lower(params, jax.ShapeDtypeStruct(x.shape, jnp.float32),
                                            jax.ShapeDtypeStruct(y.shape, jnp.int32))).get("flops", 0.0)
    flops = train.get("flops", float("nan"))
    return {"flops_per_model_step": flops, "transcendentals_per_model_step": train.get("transcendentals"),
            "bytes_accessed_per_model_step": train.get("bytes accessed"),
            "eval_flops_per_epoch": ev,
            "eval_flops_ratio": ev / (flops * w.steps_per_epoch) if flops == flops and flops > 0 else None,
            "how": "jax.jit(one float32 training step of one model from jaxfit.nn: layers.apply + loss + "
                   "value_and_grad + optimizer step, one full batch as input).lower().compile()"
                   ".cost_analysis()['flops']"}


# ----------------------------------------------------------------------------- the machine's matmul rate


def matmul_rate(size: int = 2048, repeats: int = 7, device: str = "cpu") -> dict[str, Any]:
    """Median GFLOP/s of a size x size float32 matrix product in numpy, torch and jax (each after
    two warm-up products, synchronised before the clock stops); `peak_gflops` is the largest."""
    flop = 2.0 * size ** 3
    out: dict[str, Any] = {"size": size, "repeats": repeats, "dtype": "float32"}

    def med(fn) -> float:
        for _ in range(2):
            fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return flop / statistics.median(ts) / 1e9

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), np.float32)
    b = rng.standard_normal((size, size), np.float32)
    if device == "cpu":
        out["numpy"] = med(lambda: a @ b)
    try:
        import torch

        dev = "cuda" if device == "cuda" else "cpu"
        ta, tb = torch.as_tensor(a, device=dev), torch.as_tensor(b, device=dev)
        if dev == "cuda":
            out["torch"] = med(lambda: (torch.mm(ta, tb), torch.cuda.synchronize()))
        else:
            out["torch"] = med(lambda: torch.mm(ta, tb))
    except Exception as e:  # torch missing or broken: the other two still measure the machine
        out["torch_error"] = repr(e)
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    mm = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    out["jax"] = med(lambda: mm(ja, jb).block_until_ready())
    out["peak_gflops"] = max(v for k, v in out.items() if k in ("numpy", "torch", "jax"))
    return out


# ----------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    """Resident set size of this process now (Linux: /proc/self/statm; else psutil; else maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if platform.system() == "Darwin" else 1024)


def available_memory() -> int:
    """Bytes of RAM available to a new allocation (MemAvailable), or half the physical RAM."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so the next cell's RSS
    starts near the process's baseline."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


MEMORY_HOW = ("peak_mem_mb: the largest resident set size (RSS) of the worker process during the cell (setup, "
              "compilation, burn-in and timed repeats; /proc/self/statm sampled every 10 ms, and getrusage's "
              "ru_maxrss where the cell set a new process high) minus the RSS at the cell's start (after gc and "
              "malloc_trim); peak_mem_run_mb: the same over the timed repeats only; host memory only")


class PeakRSS:
    """Context manager sampling this process's RSS in a background thread; `.peak_mb` is the rise of
    the peak over the RSS at entry, `.run_peak_mb` the same over the part after `timed()` was called
    (the timed repeats, without setup and compilation)."""

    def __init__(self, interval_s: float = 0.01):
        self.interval = interval_s
        self._stop = threading.Event()
        self.start = self.peak = 0
        self.run_peak: int | None = None

    def __enter__(self):
        release_memory()
        self.start = self.peak = rss_bytes()
        self._max0 = _maxrss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def timed(self) -> None:
        self.run_peak = rss_bytes()

    def _sample(self):
        r = rss_bytes()
        self.peak = max(self.peak, r)
        if self.run_peak is not None:
            self.run_peak = max(self.run_peak, r)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        m1 = _maxrss_bytes()
        if m1 > self._max0:  # this cell set the process's high-water mark: that is its exact peak
            self.peak = max(self.peak, m1)
        return False

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.start) / 2 ** 20

    @property
    def run_peak_mb(self) -> float | None:
        return None if self.run_peak is None else (self.run_peak - self.start) / 2 ** 20

    @property
    def start_mb(self) -> float:
        return self.start / 2 ** 20


# ----------------------------------------------------------------------------- machine and versions


cpu_name = _cpu_name  # one implementation: jaxfit.results.cpu_name


def describe_device(device: str) -> str:
    if device == "cuda":
        import torch

        return f"{torch.cuda.get_device_name(0)} (CUDA), host {os.cpu_count()} CPUs"
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return f"CPU: {cpu_name()}, {os.cpu_count()} logical cores, {ram:.0f} GiB RAM"


def machine_slug(device: str) -> str:
    """A short file-name-safe name of the device: cpu2 (2 logical cores), h100, h200..."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name(0).lower()
        m = re.search(r"(h100|h200|a100|a10g|l4|l40s?|v100|t4|rtx ?\d+)", name)
        return re.sub(r"[^a-z0-9]+", "", m.group(1) if m else name)[:20] or "gpu"
    return f"cpu{os.cpu_count()}"


def versions() -> dict[str, Any]:
    v: dict[str, Any] = dict(_versions())  # one implementation: jaxfit.results.versions
    commit = git_commit()
    if commit:
        v["git"] = commit
    v["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return v


def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).date().isoformat()


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- cells

CELL_KEYS = ("impl", "workload", "n_models", "model_steps_per_s", "compile_s", "run_s", "peak_mem_mb", "gflops",
             "fraction_of_peak", "device", "versions", "date", "notes")


def new_cell(impl: str, workload: str, n_models: int, **fields) -> dict[str, Any]:
    cell: dict[str, Any] = {k: None for k in CELL_KEYS}
    cell.update(impl=impl, workload=workload, n_models=n_models, n_requested=n_models, capped=False, notes=[],
                error=None)
    cell.update(fields)
    return cell


def median(xs) -> float:
    return float(statistics.median(xs))


def choose_steps(seconds_per_step: float, target_s: float, total: int, minimum: int = 1) -> int:
    """How many steps make a timed repeat last about target_s (at least `minimum`, at most `total`)."""
    if not seconds_per_step > 0 or not math.isfinite(seconds_per_step):
        return max(minimum, min(total, 1))
    return int(max(minimum, min(total, round(target_s / seconds_per_step))))


def time_call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0

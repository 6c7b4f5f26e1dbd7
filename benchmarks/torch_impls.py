"""The PyTorch implementations, each written the way a competent user of that tool would write it.

All of them train `workload.config` (W1-W3: ReLU MLPs, softmax or logits output, CrossEntropyLoss,
SGD with momentum or Adam) on the workload's training set, batches in data order, and time training
steps only (no evaluation, no shuffling).

    torch_doc      document 1's loop: a DataLoader over a TensorDataset, torchref's nn.Sequential model
                   (torchref.convert.build_model), torch.optim with its defaults, opt.zero_grad(),
                   loss.item() every step; torch's default thread count. One model at a time.
    torch_loop     a tuned single-model loop: batches pre-sliced, no DataLoader, zero_grad(set_to_none=True),
                   foreach optimizer, no per-step .item(), torch.set_num_threads chosen by a short trial
                   (see thread_candidates). One model at a time.
    torch_func     an ensemble: torch.func.stack_module_state + vmap(grad(functional_call)) over the
                   stacked parameters; the optimizer written with torch._foreach_* on the stacked tensors
                   (torch.optim's own foreach algorithm, so each model's update is its own).
    torch_bmm      a hand-batched ensemble: weights stacked [N, in, out], torch.baddbmm per layer, the sum
                   of the per-model mean losses through autograd, torch.optim (foreach) on the stacked
                   tensors (elementwise optimizers: each model's update is its own).
    torch_compile  the torch_func step (gradients and optimizer update, written functionally) under
                   torch.compile(dynamic=False); the first call (the compile) is timed apart. If it does
                   not compile, the torch_bmm step compiled (forward + loss, and optimizer.step) is tried;
                   the cell says which ran, or carries the error.

Every implementation but torch_doc tries 1 thread and all cores on a short run after its burn-in and
keeps the faster (narrow nets: per-op overhead dominates and a second thread mostly adds
synchronisation; wide nets: a quiet second core can double the rate).

A sequential implementation's N models are N runs one after another: its rate is measured on one
model (a prefix of steps, scaled) and is the same for every N; the cell says so.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from torchref.convert import build_model
from torchref.train import make_optimizer

from .common import PeakRSS, Workload, choose_steps, median

DEFAULT_THREADS = torch.get_num_threads()  # before any cell changes it
TORCH_IMPLS = ("torch_doc", "torch_loop", "torch_func", "torch_bmm", "torch_compile")
SEQUENTIAL = ("torch_doc", "torch_loop")
ENSEMBLES = ("torch_func", "torch_bmm", "torch_compile")


@dataclass
class Options:
    target_s: float = 1.0  # a timed repeat lasts about this long
    repeats: int = 3  # timed repeats (the median is reported)
    warmup: int = 3  # burn-in steps after the first call
    device: str = "cpu"
    threads: int | None = None  # override every implementation's thread count
    compile_variant: str = "func"  # torch_compile: "func" or "bmm"
    max_steps: int | None = None  # at most this many steps per model in a timed repeat


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _data(w: Workload, device: str):
    d = w.dataset()
    x = torch.as_tensor(np.array(d.x_train, np.float32), device=device)  # copies: the Dataset's are read-only
    y = torch.as_tensor(np.array(d.y_train, np.int64), device=device)
    return x, y


def _batches(x, y, b: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[s:s + b], y[s:s + b]) for s in range(0, x.shape[0], b)]


def _check_supported(w: Workload) -> None:
    c = w.config
    if not (c.loss == "cross_entropy" and c.output in ("logits", "softmax") and c.optimizer in ("sgd", "adam")
            and c.input_norm == "none" and not c.batchnorm and c.dropout == 0 and c.encoding == "identity"
            and c.schedule == "constant" and c.effective_weight_decay == 0 and not c.nesterov):
        raise ValueError(f"{w.name}: the PyTorch benchmark implementations cover plain ReLU MLPs with "
                         "cross-entropy and SGD(momentum)/Adam only")


def thread_candidates(impl: str) -> list[int]:
    """torch_doc keeps torch's default (the document sets nothing); the others try one thread and
    all cores on a short run and keep the faster (on a busy or small machine a second OpenMP thread
    can cost more than it gives, on a quiet one it can double a wide net's speed)."""
    if impl == "torch_doc":
        return [DEFAULT_THREADS]
    cores = os.cpu_count() or 1
    return [1] if cores == 1 else [1, cores]


# ----------------------------------------------------------------------------- trainers
# A trainer owns one model or one ensemble; `steps(k)` runs k optimizer steps (cycling through the
# epoch's batches in order) and returns when the work is done.


class _Cycle:
    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def next(self):
        b = self.batches[self.i]
        self.i = (self.i + 1) % len(self.batches)
        return b

    def last_first(self):
        """Make the next batch the epoch's last (a partial batch, if any), so a warm-up step sees its
        shape; afterwards the cycle goes on from the first batch."""
        self.i = len(self.batches) - 1


class DocTrainer:
    """Document 1's loop (torchref.documents.fitit), for any of the workloads."""

    def __init__(self, w: Workload, n: int, o: Options):
        assert n == 1
        x, y = _data(w, o.device)
        torch.manual_seed(0)
        self.model = build_model(w.config, 2, 3).to(o.device)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = make_optimizer(w.config, self.model.parameters())
        self.loader = DataLoader(TensorDataset(x, y), batch_size=w.batch, shuffle=False)
        self.it = iter(self.loader)
        self.total = 0.0
        self.device = o.device

    def _next(self):
        try:
            return next(self.it)
        except StopIteration:  # the next epoch
            self.it = iter(self.loader)
            return next(self.it)

    def steps(self, k: int) -> None:
        for _ in range(k):
            inputs, labels = self._next()
            self.optimizer.zero_grad()
            outputs = self.model(inputs)
            loss = self.criterion(outputs, labels)
            loss.backward()
            self.optimizer.step()
            self.total += loss.item()

    def warm_partial(self) -> None:
        pass


def _foreach_optimizer(c, params: list[torch.Tensor]):
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, foreach=True)
    return torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps, foreach=True)


class LoopTrainer:
    """A tuned single-model loop."""

    def __init__(self, w: Workload, n: int, o: Options):
        assert n == 1
        x, y = _data(w, o.device)
        torch.manual_seed(0)
        self.model = build_model(w.config, 2, 3).to(o.device)  # ends in nn.Softmax for W1
        self.optimizer = _foreach_optimizer(w.config, list(self.model.parameters()))
        self.cycle = _Cycle(_batches(x, y, w.batch))
        self.device = o.device

    def steps(self, k: int) -> None:
        model, opt, nxt = self.model, self.optimizer, self.cycle.next
        for _ in range(k):
            xb, yb = nxt()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        _sync(self.device)

    def warm_partial(self) -> None:
        self.cycle.last_first()
        self.steps(1)


def stacked_modules(w: Workload, n: int, device: str, chunk: int = 256):
    """(base module on the meta device, {name: [n, ...]} parameters): torch.func.stack_module_state
    over n freshly initialised torchref models, built `chunk` at a time so the models and their
    stacked copy are not all alive at once."""
    from torch.func import stack_module_state

    torch.manual_seed(0)
    parts: list[dict[str, torch.Tensor]] = []
    base = None
    for s in range(0, n, chunk):
        models = [build_model(w.config, 2, 3) for _ in range(min(chunk, n - s))]
        if base is None:
            base = build_model(w.config, 2, 3).to("meta")
        p, _ = stack_module_state(models)
        parts.append({k: v.detach() for k, v in p.items()})
        del models
    params = {k: (torch.cat([p[k] for p in parts]) if len(parts) > 1 else parts[0][k]).to(device).contiguous()
              for k in parts[0]}
    return base, params


class ForeachSGD:
    """torch.optim.SGD's foreach algorithm (momentum, dampening 0) on stacked tensors, in place."""

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float):
        self.p, self.lr, self.mu = params, lr, momentum
        self.buf: list[torch.Tensor] | None = None

    def step(self, grads: list[torch.Tensor]) -> None:
        if self.mu:
            if self.buf is None:
                self.buf = [torch.clone(g) for g in grads]
            else:
                torch._foreach_mul_(self.buf, self.mu)
                torch._foreach_add_(self.buf, grads)
            grads = self.buf
        torch._foreach_add_(self.p, grads, alpha=-self.lr)


class ForeachAdam:
    """torch.optim.Adam's foreach algorithm (amsgrad off, no weight decay) on stacked tensors, in place."""

    def __init__(self, params: list[torch.Tensor], lr: float, betas, eps: float):
        self.p, self.lr, (self.b1, self.b2), self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        torch._foreach_lerp_(self.m, grads, 1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, 1 - self.b2)
        bc1 = 1 - self.b1 ** self.t
        bc2 = 1 - self.b2 ** self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.p, self.m, denom, value=-self.lr / bc1)


class FuncTrainer:
    """torch.func ensemble: vmap(grad(loss of functional_call)) over stacked parameters."""

    def __init__(self, w: Workload, n: int, o: Options):
        from torch.func import functional_call, grad, vmap

        _check_supported(w)
        x, y = _data(w, o.device)
        self.base, params = stacked_modules(w, n, o.device)
        self.names = list(params)
        self.params = [params[k] for k in self.names]
        c = w.config
        base = self.base  # torchref's model ends in its output module (nn.Softmax for W1)

        def loss(p, xb, yb):
            return F.cross_entropy(functional_call(base, p, (xb,)), yb)

        self.grad = vmap(grad(loss), in_dims=(0, None, None))
        self.opt = self._make_optimizer(c)
        self.cycle = _Cycle(_batches(x, y, w.batch))
        self.device = o.device

    def _make_optimizer(self, c):
        if c.optimizer == "sgd":
            return ForeachSGD(self.params, c.lr, c.momentum)
        return ForeachAdam(self.params, c.lr, c.betas, c.eps)

    def steps(self, k: int) -> None:
        names = self.names
        for _ in range(k):
            xb, yb = self.cycle.next()
            g = self.grad(dict(zip(names, self.params)), xb, yb)
            self.opt.step([g[n] for n in names])
        _sync(self.device)

    def warm_partial(self) -> None:
        self.cycle.last_first()
        self.steps(1)


def _stacked_init(w: Workload, n: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """[(W [n, in, out], b [n, 1, out])] per layer, nn.Linear's default distribution U(+-1/sqrt(in))."""
    g = torch.Generator().manual_seed(0)
    layers = []
    for i, o in zip(w.widths[:-1], w.widths[1:]):
        bound = 1.0 / math.sqrt(i)
        W = (torch.rand(n, i, o, generator=g) * (2 * bound) - bound).to(device)
        b = (torch.rand(n, 1, o, generator=g) * (2 * bound) - bound).to(device)
        layers.append((W.requires_grad_(), b.requires_grad_()))
    return layers


def bmm_forward(layers, xb: torch.Tensor, n: int) -> torch.Tensor:
    """[B, F] -> [n, B, K] logits, every model on the same batch."""
    h = xb.expand(n, *xb.shape)
    for W, b in layers[:-1]:
        h = torch.relu(torch.baddbmm(b, h, W))
    W, b = layers[-1]
    return torch.baddbmm(b, h, W)


def bmm_loss(layers, xb, yb, n: int, output: str) -> torch.Tensor:
    """The sum over models of each model's mean loss: its gradient w.r.t. model i's weights is model
    i's own gradient."""
    z = bmm_forward(layers, xb, n)
    if output == "softmax":
        z = torch.softmax(z, dim=-1)
    k = z.shape[-1]
    return F.cross_entropy(z.reshape(-1, k), yb.repeat(n), reduction="sum") / xb.shape[0]


class BmmTrainer:
    """A hand-batched ensemble: torch.baddbmm on stacked weights, autograd, torch.optim (foreach)."""

    def __init__(self, w: Workload, n: int, o: Options):
        _check_supported(w)
        x, y = _data(w, o.device)
        self.n, self.output = n, w.config.output
        self.layers = _stacked_init(w, n, o.device)
        self.optimizer = _foreach_optimizer(w.config, [t for lw in self.layers for t in lw])
        self.cycle = _Cycle(_batches(x, y, w.batch))
        self.device = o.device

    def steps(self, k: int) -> None:
        for _ in range(k):
            xb, yb = self.cycle.next()
            self.optimizer.zero_grad(set_to_none=True)
            bmm_loss(self.layers, xb, yb, self.n, self.output).backward()
            self.optimizer.step()
        _sync(self.device)

    def warm_partial(self) -> None:
        self.cycle.last_first()
        self.steps(1)


class CompiledFuncTrainer(FuncTrainer):
    """The torch_func step, written functionally (new tensors out, no Python state touched inside),
    under torch.compile(dynamic=False). Step-dependent scalars (Adam's bias corrections) enter as
    0-d tensors so the graph does not specialise on the step count."""

    variant = "func"

    def __init__(self, w: Workload, n: int, o: Options):
        super().__init__(w, n, o)
        c = w.config
        names, grad_fn = self.names, self.grad
        self.kind = c.optimizer
        if c.optimizer == "sgd":
            lr, mu = c.lr, c.momentum
            self.state = [torch.zeros_like(p) for p in self.params]  # buf = mu * 0 + g = g at step 1

            def step(params, buf, xb, yb):
                g = grad_fn(dict(zip(names, params)), xb, yb)
                g = [g[k] for k in names]
                buf = [mu * b + gi for b, gi in zip(buf, g)]
                return [p - lr * b for p, b in zip(params, buf)], buf
        else:
            lr, (b1, b2), eps = c.lr, c.betas, c.eps
            self.state = ([torch.zeros_like(p) for p in self.params], [torch.zeros_like(p) for p in self.params])
            self.t = 0

            def step(params, m, v, step_size, bc2_sqrt, xb, yb):
                g = grad_fn(dict(zip(names, params)), xb, yb)
                g = [g[k] for k in names]
                m = [mi + (1 - b1) * (gi - mi) for mi, gi in zip(m, g)]
                v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
                new = [p - step_size * mi / (vi.sqrt() / bc2_sqrt + eps) for p, mi, vi in zip(params, m, v)]
                return new, m, v

        torch._dynamo.reset()  # each cell compiles afresh: its compile time is its own
        self.step = torch.compile(step, dynamic=False)
        self.lr = c.lr
        self.b1, self.b2 = (c.betas if c.optimizer == "adam" else (0.0, 0.0))

    def steps(self, k: int) -> None:
        for _ in range(k):
            xb, yb = self.cycle.next()
            if self.kind == "sgd":
                self.params, self.state = self.step(self.params, self.state, xb, yb)
            else:
                self.t += 1
                step_size = torch.tensor(self.lr / (1 - self.b1 ** self.t), dtype=torch.float32,
                                         device=self.device)
                bc2_sqrt = torch.tensor(math.sqrt(1 - self.b2 ** self.t), dtype=torch.float32, device=self.device)
                m, v = self.state
                self.params, m, v = self.step(self.params, m, v, step_size, bc2_sqrt, xb, yb)
                self.state = (m, v)
        _sync(self.device)

    def _make_optimizer(self, c):
        return None  # the update is part of the compiled step


class CompiledBmmTrainer(BmmTrainer):
    """The torch_bmm step with the forward + loss under torch.compile (the backward compiled by
    AOTAutograd) and optimizer.step under torch.compile, as PyTorch's tutorials show."""

    variant = "bmm"

    def __init__(self, w: Workload, n: int, o: Options):
        super().__init__(w, n, o)
        torch._dynamo.reset()
        n_, output = self.n, self.output
        self.loss = torch.compile(lambda layers, xb, yb: bmm_loss(layers, xb, yb, n_, output), dynamic=False)
        self.opt_step = torch.compile(self.optimizer.step, dynamic=False)

    def steps(self, k: int) -> None:
        for _ in range(k):
            xb, yb = self.cycle.next()
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(self.layers, xb, yb).backward()
            self.opt_step()
        _sync(self.device)


TRAINERS: dict[str, Callable[..., Any]] = {
    "torch_doc": DocTrainer, "torch_loop": LoopTrainer, "torch_func": FuncTrainer, "torch_bmm": BmmTrainer,
}


# ----------------------------------------------------------------------------- memory estimate


def bytes_per_model(impl: str, w: Workload) -> int:
    """A (generous) estimate of one ensemble member's memory: parameters, gradients, optimizer slots
    and the temporaries of an update (new parameters and slots for the functional compiled step,
    foreach temporaries otherwise), and the activations of a batch kept for the backward pass."""
    p = w.n_params
    slots = 1 if w.config.optimizer == "sgd" else 2
    acts = w.batch * sum(w.widths[1:])
    floats = (6 + 2 * slots) * p + 6 * acts + w.batch * w.widths[0]
    return 4 * floats


# ----------------------------------------------------------------------------- one cell


@dataclass
class Measured:
    rate: float  # model-steps per second (median of the repeats)
    rates: list[float]
    steps_per_repeat: int
    run_s: float  # the median repeat's seconds
    compile_s: float
    warmup_s: float
    setup_s: float
    peak_mem_mb: float
    peak_mem_run_mb: float | None
    rss_start_mb: float
    threads: int
    notes: list[str] = field(default_factory=list)


def measure(impl: str, w: Workload, n: int, o: Options) -> Measured:
    """Build the trainer, burn in, choose the steps per repeat for about o.target_s, time o.repeats
    repeats. Raises what the implementation raises (the caller turns it into an error cell)."""
    total = min(w.total_steps, o.max_steps) if o.max_steps else w.total_steps
    cands = [o.threads] if o.threads else thread_candidates(impl)
    torch.set_num_threads(cands[0])
    notes: list[str] = []
    with PeakRSS() as mem:
        if impl == "torch_compile":
            trainer, setup_s, first_s = _compiled_trainer(w, n, o, notes)
        else:
            t0 = time.perf_counter()
            trainer = TRAINERS[impl](w, n, o)
            setup_s = time.perf_counter() - t0
            first_s = _timed(trainer, 1)
        t0 = time.perf_counter()
        warm = max(1, o.warmup)
        per_step = _timed(trainer, warm) / warm
        threads = cands[0]
        if len(cands) > 1:  # a short trial of each thread count, after the burn-in
            kt = choose_steps(per_step, 0.1 * o.target_s, total)
            trial = {}
            for t in cands:
                torch.set_num_threads(t)
                trainer.steps(1)
                trial[t] = n * kt / _timed(trainer, kt)
            threads = max(trial, key=trial.get)
            torch.set_num_threads(threads)
            notes.append("threads " + ", ".join(f"{t}: {r:,.0f}" for t, r in trial.items())
                         + f" model-steps/s in a short trial; kept {threads}")
        # calibrate: enough steps that the clock's resolution and the loop's jitter do not matter
        k0 = choose_steps(per_step, 0.05 * o.target_s, total)
        while True:
            dt = _timed(trainer, k0)
            if dt >= 0.02 * o.target_s or k0 >= total:
                break
            k0 = min(total, max(k0 * 2, int(math.ceil(0.05 * o.target_s / max(dt, 1e-6) * k0))))
        warmup_s = time.perf_counter() - t0
        k = choose_steps(dt / k0, o.target_s, total)
        mem.timed()
        for _ in range(3):  # a calibration disturbed by the machine can leave the repeats far too short
            times = [_timed(trainer, k) for _ in range(o.repeats)]
            if median(times) >= 0.3 * o.target_s or k >= total:
                break
            k = choose_steps(median(times) / k, o.target_s, total)
    rates = [n * k / t for t in times]
    compile_s = first_s if impl == "torch_compile" else 0.0
    if impl != "torch_compile":
        warmup_s += first_s
    return Measured(rate=median(rates), rates=rates, steps_per_repeat=k, run_s=median(times), compile_s=compile_s,
                    warmup_s=warmup_s, setup_s=setup_s, peak_mem_mb=mem.peak_mb,
                    peak_mem_run_mb=mem.run_peak_mb, rss_start_mb=mem.start_mb,
                    threads=threads, notes=notes)


def _timed(trainer, k: int) -> float:
    t0 = time.perf_counter()
    trainer.steps(k)  # synchronises before returning
    return time.perf_counter() - t0


def _compiled_trainer(w: Workload, n: int, o: Options, notes: list[str]):
    """(trainer, setup_s, first_s): the compiled trainer after its first step(s), which compile it
    (and, when the epoch ends in a partial batch, its second static shape too). Falls back to the
    other variant when one fails to compile."""
    order = ["func", "bmm"] if o.compile_variant == "func" else ["bmm", "func"]
    errors = []
    for variant in order:
        cls = CompiledFuncTrainer if variant == "func" else CompiledBmmTrainer
        try:
            t0 = time.perf_counter()
            tr = cls(w, n, o)
            setup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if w.n_points % w.batch and w.steps_per_epoch > 1:
                tr.warm_partial()
            tr.steps(1)
            first_s = time.perf_counter() - t0
        except Exception as e:  # a compile failure is a result, not a crash
            errors.append(f"torch_{variant}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}")
            torch._dynamo.reset()
            continue
        notes.append(f"torch.compile of the torch_{variant} step (dynamic=False)")
        if errors:
            notes.append("did not compile: " + errors[0])
        return tr, setup_s, first_s
    raise RuntimeError("torch.compile failed: " + " | ".join(errors))


def error_text(e: BaseException) -> str:
    tb = traceback.format_exception_only(type(e), e)
    return "".join(tb).strip()[:1000]

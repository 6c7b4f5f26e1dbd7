"""`torchref.train`: a `jaxfit.Config` trained the way a PyTorch user writes it.

Stock parts only: the `MLP` of `torchref.convert` (nn.Linear, activation modules, nn.BatchNorm1d,
nn.Dropout), nn.CrossEntropyLoss / BCELoss / BCEWithLogitsLoss / MSELoss, torch.optim.SGD / Adam /
AdamW / RMSprop, torch.optim.lr_scheduler.StepLR / ExponentialLR / CosineAnnealingLR stepped once
per epoch, and a DataLoader over a TensorDataset. The per-epoch metrics have the names and
definitions of `jaxfit.program.train.METRICS`.

Replaying a run in both frameworks: pass the same `params`/`model_state` (jaxfit's layout, see
`torchref.to_params`) and the same `batch_order` ([epochs, steps, batch] training indices, -1 pads a
partial last batch) to `torchref.train` and `jaxfit.train`. Without `batch_order` the DataLoader
shuffles with a `torch.Generator` seeded from config.seed; the order it used comes back as
`TorchResult.batch_order`, ready to give to `jaxfit.train`.

Dropout: the two frameworks' random numbers cannot match, so `dropout_masks` replaces nn.Dropout's
own Bernoulli draw (a forward hook on each nn.Dropout returns input * (mask / (1 - p)), the formula
nn.Dropout uses). `dropout_masks[e][s][k]` is the 0/1 mask [batch, width_k] of hidden layer k at
step s of epoch e, its rows aligned with `batch_order[e, s]` (rows where batch_order is -1 are
ignored); an array [epochs, steps, n_hidden, batch, width] does when the hidden widths are equal.
The parity tests build the masks from the keys jaxfit draws its own from.

Recording a run: `record_dropout=True` keeps the masks nn.Dropout draws itself (its own RNG, no
masks injected) as `TorchResult.dropout_masks`, in the format above (rows aligned with the batch
order, rows of padding all ones), so jaxfit can replay PyTorch's own dropout
(`jaxfit.train(..., batch_order=t.batch_order, dropout_masks=t.dropout_masks)`). A forward pre-hook
saves the global RNG state before each nn.Dropout call; the forward hook redraws the mask from a
generator set to that state (nn.Dropout on CPU: `empty_like(x).bernoulli_(1 - p)`, divided by
1 - p, times x) and asserts that it reproduces the module's output bit for bit, so a recorded mask
is the module's own draw or the run stops. `record_params=True` keeps the parameters after every
optimizer step (`TorchResult.step_params[e][s]`, jaxfit's layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from jaxfit.program.train import effective_batch

from .convert import build_model, to_params, to_state_dict, torch_dtype
from jaxfit.errors import UserError

METRICS = ("train_loss", "last_batch_loss", "full_train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class TorchResult:
    """What `torchref.train` returns."""

    config: Any
    curves: dict[str, np.ndarray]  # metric -> [epochs] float64 (jaxfit.program.train.METRICS)
    step_losses: np.ndarray  # [total_steps] float64: each optimizer step's batch loss
    model: nn.Module  # the trained model (left in eval mode)
    batch_order: np.ndarray  # [epochs, steps, batch] int32: the rows each step used (-1 pads)
    lrs: np.ndarray = field(default=None)  # [epochs] float64: the learning rate each epoch used
    # with record_dropout: masks[e][s][k] 0/1 [batch, hidden[k]] nn.Dropout's own draw (None without dropout)
    dropout_masks: list | None = None
    # with record_params: step_params[e][s] = jaxfit-layout params (NumPy) after step s of epoch e
    step_params: list | None = None

    def params(self) -> dict:
        return to_params(self.model.state_dict(), self.config)[0]

    def model_state(self) -> dict:
        return to_params(self.model.state_dict(), self.config)[1]


def make_optimizer(config, parameters) -> torch.optim.Optimizer:
    wd = config.effective_weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=wd)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=0.99, eps=config.eps, momentum=config.momentum,
                                   weight_decay=wd)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def make_scheduler(config, optimizer):
    s = torch.optim.lr_scheduler
    if config.schedule == "constant":
        return None
    if config.schedule == "step":
        return s.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    if config.schedule == "exponential":
        return s.ExponentialLR(optimizer, gamma=config.gamma)
    if config.schedule == "cosine":
        return s.CosineAnnealingLR(optimizer, T_max=config.effective_t_max, eta_min=config.eta_min)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def make_loss(config, num_outputs: int):
    """loss(outputs [B, K], labels [B] long) -> scalar mean loss, with PyTorch's loss modules."""
    if config.loss == "cross_entropy":
        crit = nn.CrossEntropyLoss()
        return lambda out, y: crit(out, y)
    if config.loss == "bce":
        crit = nn.BCELoss()
        return lambda out, y: crit(out[:, 0], y.to(out.dtype))
    if config.loss == "bce_with_logits":
        crit = nn.BCEWithLogitsLoss()
        return lambda out, y: crit(out[:, 0], y.to(out.dtype))
    if config.loss == "mse":
        crit = nn.MSELoss()
        return lambda out, y: crit(out, F.one_hot(y, num_outputs).to(out.dtype))
    raise ValueError(f"unknown loss {config.loss!r}")


def accuracy(out: torch.Tensor, y: torch.Tensor, output: str) -> float:
    if out.shape[-1] == 1:
        pred = (out[:, 0] > (0.5 if output == "sigmoid" else 0.0)).long()
    else:
        pred = out.argmax(-1)
    return (pred == y).to(torch.float64).mean().item()


def _batches_from_order(order: np.ndarray, epoch: int):
    for s, row in enumerate(order[epoch]):
        yield s, row[row >= 0]


class _MaskedDropout:
    """Forward hooks that make each nn.Dropout use given masks instead of its own draw."""

    def __init__(self, model: nn.Module):
        self.mods = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        self.masks: list[torch.Tensor] | None = None
        self.handles = [m.register_forward_hook(self._hook(k)) for k, m in enumerate(self.mods)]

    def _hook(self, k):
        def hook(mod, inputs, output):
            if not mod.training or self.masks is None:
                return output
            # nn.Dropout's formula, x * (mask / (1 - p)), with the injected mask.
            return inputs[0] * (self.masks[k] / (1 - mod.p))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


class _RecordedDropout:
    """Hooks that record the mask each nn.Dropout draws itself (training mode), proving each one.

    nn.Dropout on CPU computes noise = empty_like(x).bernoulli_(1 - p); noise.div_(1 - p); x * noise
    from the global generator. The pre-hook saves that generator's state; the hook redraws the same
    Bernoulli numbers from a private generator set to it and asserts x * (mask / (1 - p)) equals the
    module's output exactly (torch.equal). `current[k]` is layer k's 0/1 mask of the last forward pass;
    `checked` counts the masks proven so."""

    def __init__(self, model: nn.Module):
        self.mods = [m for m in model.modules() if isinstance(m, nn.Dropout)]
        self.states: dict[int, torch.Tensor] = {}
        self.current: list[np.ndarray | None] = [None] * len(self.mods)
        self.checked = 0
        self.handles = []
        for k, m in enumerate(self.mods):
            self.handles.append(m.register_forward_pre_hook(self._pre(k)))
            self.handles.append(m.register_forward_hook(self._post(k)))

    def _pre(self, k):
        def pre(mod, inputs):
            if mod.training:
                self.states[k] = torch.get_rng_state()
        return pre

    def _post(self, k):
        def hook(mod, inputs, output):
            if not mod.training:
                return None
            inp = inputs[0]
            g = torch.Generator()
            g.set_state(self.states.pop(k))
            with torch.no_grad():
                mask = torch.empty_like(inp).bernoulli_(1 - mod.p, generator=g)
                same = torch.equal(inp * (mask / (1 - mod.p)), output)
            if not same:
                raise AssertionError(f"record_dropout: the mask redrawn for dropout layer {k} does not reproduce "
                                     "nn.Dropout's output (its implementation differs from "
                                     "empty_like(x).bernoulli_(1 - p) on this device / version)")
            self.checked += 1
            self.current[k] = mask.detach().cpu().numpy().astype(np.float64)
            return None
        return hook

    def take(self, row: np.ndarray, widths) -> list[np.ndarray]:
        """The masks of the last forward pass as [batch, width] arrays aligned with the batch order's
        `row` (its rows where the order is -1: ones)."""
        out = []
        keep = np.asarray(row) >= 0
        for k, w in enumerate(widths):
            m = np.ones((len(keep), w), np.float64)
            if self.current[k] is None:
                raise AssertionError(f"record_dropout: dropout layer {k} did not run in this step")
            m[keep] = self.current[k]
            out.append(m)
        self.current = [None] * len(self.mods)
        return out

    def remove(self):
        for h in self.handles:
            h.remove()


def train(data, config, *, params=None, model_state=None, batch_order=None, dropout_masks=None,
          record_dropout: bool = False, record_params: bool = False, module=None) -> TorchResult:
    """Train `config` on `data` (a `jaxfit.datasets.Dataset`) with PyTorch. See the module docstring.
    `module`: a user's own torch.nn.Module to train instead of the config's network (in place, from
    its current weights), by the same loop, loss, optimiser and scheduler; it maps x [B, F] to what
    `config.output` names."""
    if module is not None and (params is not None or model_state is not None or dropout_masks is not None
                               or record_dropout or record_params):
        raise UserError("train(module=...): params, model_state, dropout_masks, record_dropout and record_params "
                         "are for the config's own network")
    dtype = torch_dtype(config)
    x = torch.as_tensor(np.array(data.x_train), dtype=dtype)
    y = torch.as_tensor(np.array(data.y_train), dtype=torch.long)
    xv = torch.as_tensor(np.array(data.x_val), dtype=dtype)
    yv = torch.as_tensor(np.array(data.y_val), dtype=torch.long)
    n, num_features, num_classes = x.shape[0], x.shape[1], data.num_classes

    if module is not None:
        model = module.to(dtype)
    elif params is None:
        torch.manual_seed(config.seed)
        model = build_model(config, num_features, num_classes, x_train=x)
        if model_state is not None:  # e.g. a given Fourier matrix with a fresh torch init
            p0, _ = to_params(model.state_dict(), config)
            model.load_state_dict(to_state_dict(p0, model_state, config))
    else:
        model = build_model(config, num_features, num_classes)
        if model_state is None:
            _, model_state = to_params(model.state_dict(), config)
            if config.input_norm == "standardize":
                model.norm.fit(x)
                _, model_state = to_params(model.state_dict(), config)
        model.load_state_dict(to_state_dict(params, model_state, config))

    from jaxfit.program.train import num_outputs

    num_out = num_outputs(config.loss, num_classes)
    loss_fn = make_loss(config, num_out)
    opt = make_optimizer(config, model.parameters())
    sched = make_scheduler(config, opt)

    batch = effective_batch(config.batch_size, n)
    steps = -(-n // batch)
    if batch_order is not None:
        batch_order = np.asarray(batch_order)
        if batch_order.ndim != 3 or batch_order.shape[0] != config.epochs:
            raise UserError(f"batch_order: need [epochs={config.epochs}, steps, batch], got {batch_order.shape}")
        order = batch_order.astype(np.int64)
        loader = None
    else:
        order = np.full((config.epochs, steps, batch), -1, np.int64)
        gen = torch.Generator()
        gen.manual_seed(config.seed)
        loader = DataLoader(TensorDataset(x, y, torch.arange(n)), batch_size=batch, shuffle=config.shuffle,
                            generator=gen)
    masked = None
    if dropout_masks is not None:
        if batch_order is None:
            raise UserError("dropout_masks need an explicit batch_order (the masks are aligned with its rows)")
        masked = _MaskedDropout(model)
    recorder = None
    recorded: list[list] | None = None
    if record_dropout:
        if dropout_masks is not None:
            raise UserError("record_dropout records nn.Dropout's own masks: do not also pass dropout_masks")
        recorder = _RecordedDropout(model)
        if not recorder.mods:
            recorder.remove()
            recorder = None
        else:
            recorded = [[] for _ in range(config.epochs)]
            if len(recorder.mods) != len(config.hidden):
                recorder.remove()
                raise UserError(f"record_dropout: {len(recorder.mods)} nn.Dropout modules for "
                                 f"{len(config.hidden)} hidden layers")
    step_params: list[list] | None = [[] for _ in range(config.epochs)] if record_params else None

    curves = {m: np.full(config.epochs, np.nan) for m in METRICS}
    step_losses: list[float] = []
    lrs = np.empty(config.epochs)
    try:
        for e in range(config.epochs):
            lrs[e] = opt.param_groups[0]["lr"]
            model.train()
            if loader is not None:
                batches = ((s, idx) for s, (_, _, idx) in enumerate(loader))
            else:
                batches = _batches_from_order(order, e)
            tot, cnt, last = 0.0, 0, float("nan")
            for s, idx in batches:
                if loader is not None:
                    order[e, s, : len(idx)] = idx.numpy()
                idx_t = torch.as_tensor(np.asarray(idx), dtype=torch.long)
                if masked is not None:
                    row = order[e, s]
                    keep = row >= 0
                    masked.masks = [torch.as_tensor(np.asarray(dropout_masks[e][s][k])[keep], dtype=dtype)
                                    for k in range(len(masked.mods))]
                opt.zero_grad()
                out = model(x[idx_t])
                loss = loss_fn(out, y[idx_t])
                loss.backward()
                opt.step()
                if recorder is not None:
                    recorded[e].append(recorder.take(order[e, s], config.hidden))
                if step_params is not None:
                    step_params[e].append(to_params(model.state_dict(), config)[0])
                lv = loss.item()
                step_losses.append(lv)
                tot += lv * len(idx_t)
                cnt += len(idx_t)
                last = lv
            curves["train_loss"][e] = tot / cnt
            curves["last_batch_loss"][e] = last
            model.eval()
            with torch.no_grad():
                out = model(x)
                curves["full_train_loss"][e] = loss_fn(out, y).item()
                curves["train_acc"][e] = accuracy(out, y, config.output)
                if xv.shape[0]:
                    out = model(xv)
                    curves["val_loss"][e] = loss_fn(out, yv).item()
                    curves["val_acc"][e] = accuracy(out, yv, config.output)
            if sched is not None:
                sched.step()
    finally:
        if masked is not None:
            masked.remove()
        if recorder is not None:
            recorder.remove()
    model.eval()
    return TorchResult(config=config, curves=curves, step_losses=np.asarray(step_losses, np.float64), model=model,
                       batch_order=order.astype(np.int32), lrs=lrs, dropout_masks=recorded, step_params=step_params)


def _train_curves(args) -> dict[str, np.ndarray]:
    data, config = args
    torch.set_num_threads(1)  # tiny models: one thread per process beats two fighting over a core
    return train(data, config).curves


def train_many(data, configs, *, workers: int | None = None) -> list[dict[str, np.ndarray]]:
    """`train(data, c).curves` for each config, one PyTorch run per config spread over `workers`
    processes (default: one per CPU core). Each run seeds torch from its own config, so the result
    does not depend on the number of workers."""
    import os
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    configs = list(configs)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(configs) <= 1:
        threads = torch.get_num_threads()
        try:
            return [_train_curves((data, c)) for c in configs]
        finally:
            torch.set_num_threads(threads)
    # spawn, not fork: the parent may already run JAX's threads
    with ProcessPoolExecutor(max_workers=min(workers, len(configs)), mp_context=mp.get_context("spawn")) as ex:
        return list(ex.map(_train_curves, [(data, c) for c in configs], chunksize=max(1, len(configs) // (4 * workers))))

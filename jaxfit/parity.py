"""Replay one run in jaxfit and in PyTorch (torchref) from the same weights and batch order, and
compare them epoch by epoch. Backs `jaxfit parity`; needs PyTorch.

Tolerances (PARITY.md, measured on this project's CPU): float64 losses agree to 1e-10 over runs of
up to 1,000 steps; float32 to 1e-5 over 100 steps. Past those horizons identical runs part
chaotically (momentum and Adam amplify rounding), so the verdict uses the looser bound the
measurements support there and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Config
from .datasets import Dataset

METRICS_SHOWN = ("train_loss", "last_batch_loss", "full_train_loss", "val_loss", "val_acc")


def tolerance(dtype: str, steps: int) -> tuple[float, str]:
    """(loss tolerance, why) for a replay of `steps` optimizer steps."""
    if dtype == "float64":
        if steps <= 1000:
            return 1e-10, "float64, <= 1,000 steps: PARITY.md measures <= 6e-16 (SGD, Adam, momentum)"
        return 1e-6, ("float64, > 1,000 steps: PARITY.md measures 2e-8 (momentum) at 10,000 steps and Adam "
                      "parting in 1 of 3 seeds; 1e-6 flags a semantic difference, not chaos")
    if steps <= 100:
        return 1e-5, "float32, <= 100 steps: PARITY.md measures <= 3.6e-7 (8.2e-5 for optax's own Adam)"
    return 5e-2, ("float32, > 100 steps: identical float32 runs part chaotically (PARITY.md: 4e-4 .. 2 by "
                  "10,000 steps); only gross differences are flagged, use the convergence statistics")


@dataclass
class Replay:
    config: Config
    data: Dataset
    jax: dict[str, np.ndarray]
    torch: dict[str, np.ndarray]
    steps: int
    tol: float
    why: str

    @property
    def deviation(self) -> np.ndarray:
        """[epochs]: the largest |jaxfit - PyTorch| over the loss metrics."""
        d = [np.abs(self.jax[m] - self.torch[m]) for m in ("train_loss", "last_batch_loss", "full_train_loss")]
        if self.data.n_val:
            d.append(np.abs(self.jax["val_loss"] - self.torch["val_loss"]))
        return np.max(d, axis=0)

    @property
    def first_violation(self) -> int | None:
        bad = np.flatnonzero(~(self.deviation <= self.tol))
        return int(bad[0]) if bad.size else None

    @property
    def ok(self) -> bool:
        return self.first_violation is None

    def table(self) -> str:
        head = f"{'epoch':>5s}  {'jaxfit loss':>14s}  {'torch loss':>14s}  {'last-batch j':>12s}  {'last-batch t':>12s}  " \
               f"{'val acc j':>9s}  {'val acc t':>9s}  {'max |diff|':>10s}"
        rows = [head]
        for e in range(len(self.deviation)):
            rows.append(f"{e + 1:5d}  {self.jax['train_loss'][e]:14.10f}  {self.torch['train_loss'][e]:14.10f}  "
                        f"{self.jax['last_batch_loss'][e]:12.6f}  {self.torch['last_batch_loss'][e]:12.6f}  "
                        f"{self.jax['val_acc'][e]:9.4f}  {self.torch['val_acc'][e]:9.4f}  {self.deviation[e]:10.2e}")
        return "\n".join(rows)

    def verdict(self) -> str:
        worst = float(np.max(self.deviation))
        if self.ok:
            return f"PASS: largest deviation {worst:.3g} <= {self.tol:g} ({self.why})"
        return (f"FAIL: deviation {self.deviation[self.first_violation]:.3g} > {self.tol:g} first at epoch "
                f"{self.first_violation + 1}, largest {worst:.3g} ({self.why})")

    def plot(self, path: str) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = np.arange(1, len(self.deviation) + 1)
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        for m, style in (("train_loss", "-"), ("val_loss", "--")):
            if m == "val_loss" and not self.data.n_val:
                continue
            ax.plot(epochs, self.torch[m], style, color="tab:orange", lw=3, alpha=0.6, label=f"PyTorch {m}")
            ax.plot(epochs, self.jax[m], style, color="tab:blue", lw=1.2, label=f"jaxfit {m}")
        ax.set_ylabel("loss")
        ax.set_title(f"{self.data.name}: {self.config.short()} ({self.config.dtype}, {self.steps} steps)", fontsize=9)
        ax.legend(fontsize=8)
        ax2.semilogy(epochs, np.maximum(self.deviation, 1e-17), color="k")
        ax2.axhline(self.tol, color="r", ls=":", label=f"tolerance {self.tol:g}")
        ax2.set_ylabel("max |diff|")
        ax2.set_xlabel("epoch")
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def replay(data: Dataset, config: Config, *, init_seed: int | None = None) -> Replay:
    """Train `config` in PyTorch (its own DataLoader order and nn.Linear init from `init_seed`, default
    the config's seed), then in jaxfit from the same initial weights and the batch order PyTorch used."""
    import torch

    import torchref
    from . import api

    seed = config.seed if init_seed is None else init_seed
    torch.manual_seed(seed)
    model = torchref.build_model(config, data.num_features, data.num_classes, x_train=data.x_train)
    params, state = torchref.to_params(model.state_dict(), config)
    t = torchref.train(data, config, params=params, model_state=state, batch_order=None)
    j = api.sweep(data, [config], params=[params], model_states=[state], batch_orders=[t.batch_order],
                  matmul_precision="highest")  # full float32 products, as PyTorch (TF32 off on GPUs)
    jcurves = {m: j.curves[m][0, : config.epochs] for m in j.curves}
    steps = int(config.epochs * t.batch_order.shape[1])
    tol, why = tolerance(config.dtype, steps)
    return Replay(config, data, jcurves, {m: np.asarray(v, np.float64) for m, v in t.curves.items()}, steps, tol, why)


def parse_config(text: str, base: Config | None = None) -> Config:
    """'hidden=64,64 optimizer=adam lr=0.01' -> Config (fields as in jaxfit.Config)."""
    import dataclasses

    base = base or Config()
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    changes: dict[str, Any] = {}
    for part in text.replace(";", " ").split():
        if "=" not in part:
            raise ValueError(f"config text: {part!r} is not field=value")
        k, v = part.split("=", 1)
        if k not in types:
            raise ValueError(f"config text: unknown field {k!r}; the fields are {sorted(types)}")
        changes[k] = _parse_value(k, v, getattr(base, k))
    return dataclasses.replace(base, **changes)


def _parse_value(name: str, v: str, current: Any) -> Any:
    if name in ("hidden", "betas"):
        items = [x for x in v.strip("()[]").split(",") if x]
        return tuple(int(x) if name == "hidden" else float(x) for x in items)
    if name in ("nesterov", "batchnorm", "shuffle"):
        if v.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"Config.{name}={v!r} is invalid: must be true or false")
        return v.lower() in ("true", "1")
    if v.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v

"""SweepResult: the table, curves and final parameters of a sweep, and its on-disk layout.

On disk (one directory):
    configs.json   the configs, in order (the source of truth on load)
    table.parquet  one row per config: every config field, final and best metrics, divergence
    curves.npz     metric -> [configs, epochs] (NaN past a config's own epochs)
    params.npz     "<i>/params/<path>" and "<i>/state/<path>" -> final arrays of config i
    meta.json      dataset name and fingerprint, chunk plans, timings, versions, device
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import fields
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .config import Config
from .train import METRICS

FORMAT_VERSION = 1
HIGHER_IS_BETTER = {"train_acc", "val_acc"}


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: np.asarray(tree)}
    out = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def _unflatten(flat: dict[str, np.ndarray]):
    root: dict = {}
    for path, v in flat.items():
        node = root
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v

    def fix(n):
        if not isinstance(n, dict):
            return n
        if n and all(k.isdigit() for k in n):
            return [fix(n[str(i)]) for i in range(len(n))]
        return {k: fix(v) for k, v in n.items()}

    return fix(root)


def _divergence(metrics: dict[str, np.ndarray], params) -> int:
    """The first epoch (0-based) whose training loss is not finite, -1 if none."""
    bad = ~np.isfinite(metrics["train_loss"]) | ~np.isfinite(metrics["full_train_loss"])
    if bad.any():
        return int(np.argmax(bad))
    leaves = [np.asarray(v) for v in _flatten(params).values()]
    if any(not np.isfinite(a).all() for a in leaves):
        return len(metrics["train_loss"]) - 1
    return -1


class SweepResult:
    """Results of `jaxfit.sweep`, one entry per config in the order given."""

    def __init__(self, configs: Sequence[Config], curves: dict[str, np.ndarray], params: list, model_states: list,
                 meta: dict[str, Any]):
        self.configs = list(configs)
        self.curves = curves
        self._params = params
        self._model_states = model_states
        self.meta = meta
        self.diverged_epoch = np.array([
            _divergence({m: curves[m][i, :c.epochs] for m in METRICS}, params[i])
            for i, c in enumerate(self.configs)], dtype=np.int64)
        self._table: pd.DataFrame | None = None

    @classmethod
    def from_run(cls, configs, raw, meta: dict) -> "SweepResult":
        n = len(configs)
        e = max(c.epochs for c in configs)
        curves = {m: np.full((n, e), np.nan) for m in METRICS}
        for i, mt in enumerate(raw["metrics"]):
            for m in METRICS:
                curves[m][i, : len(mt[m])] = mt[m]
        return cls(configs, curves, raw["params"], raw["model_state"], meta)

    def __len__(self) -> int:
        return len(self.configs)

    def __repr__(self) -> str:
        return (f"SweepResult({len(self)} configs on {self.meta.get('dataset', {}).get('name', '?')!r}, "
                f"{int(self.diverged.sum())} diverged)")

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_epoch >= 0

    # ------------------------------------------------------------------ views
    def params(self, i: int) -> dict:
        """Final parameters of config i (PyTorch layout: dense[k] = {"w": [out, in], "b": [out]})."""
        return self._params[i]

    def model_state(self, i: int) -> dict:
        """Final BatchNorm running statistics and fixed encodings of config i."""
        return self._model_states[i]

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            rows = []
            for i, c in enumerate(self.configs):
                row: dict[str, Any] = {"config": i}
                for f in fields(Config):
                    row[f.name] = getattr(c, f.name)
                for m in METRICS:
                    curve = self.curves[m][i, : c.epochs]
                    row[f"final_{m}"] = float(curve[-1])
                va = self.curves["val_acc"][i, : c.epochs]
                vl = self.curves["val_loss"][i, : c.epochs]
                row["best_val_acc"] = float(np.nanmax(va)) if np.isfinite(va).any() else math.nan
                row["best_val_loss"] = float(np.nanmin(vl)) if np.isfinite(vl).any() else math.nan
                row["auc_full_train_loss"] = float(np.mean(self.curves["full_train_loss"][i, : c.epochs]))
                row["diverged"] = bool(self.diverged_epoch[i] >= 0)
                row["diverged_epoch"] = int(self.diverged_epoch[i])
                rows.append(row)
            self._table = pd.DataFrame(rows).set_index("config")
        return self._table

    def summary(self, by: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
        """Final metrics aggregated over seeds: for each group of `by` (default: every config field
        but `seed`), the mean, standard deviation, count and a t-based confidence interval half-width."""
        from scipy import stats

        t = self.table
        by = list(by) if by is not None else [f.name for f in fields(Config) if f.name != "seed"]
        for b in by:
            if b not in t.columns:
                raise ValueError(f"summary: unknown column {b!r}; choose among {list(t.columns)}")
        metrics = list(metrics) if metrics is not None else [f"final_{m}" for m in ("val_acc", "val_loss",
                                                                                    "train_acc", "train_loss")]
        g = t.groupby(by, sort=False, dropna=False)
        parts = {}
        for m in metrics:
            agg = g[m].agg(["mean", "std", "count"])
            q = stats.t.ppf(0.5 + confidence / 2, np.maximum(agg["count"] - 1, 1))
            agg["ci"] = np.where(agg["count"] > 1, q * agg["std"] / np.sqrt(agg["count"]), np.nan)
            parts[m] = agg
        out = pd.concat(parts, axis=1)
        out[("diverged", "fraction")] = g["diverged"].mean()
        return out

    def best(self, metric: str = "val_acc", k: int = 10, by: Sequence[str] | None = None) -> pd.DataFrame:
        """The k best groups of configs by the seed-averaged final `metric` (accuracies: highest first;
        losses: lowest first). Diverged runs count with their (non-finite) numbers, so they sink."""
        col = metric if metric.startswith(("final_", "best_", "auc_")) else f"final_{metric}"
        if col not in self.table.columns:
            raise ValueError(f"best: unknown metric {metric!r}; choose among "
                             f"{[m for m in self.table.columns if m.startswith(('final_', 'best_', 'auc_'))]}")
        s = self.summary(by=by, metrics=[col])
        mean = s[(col, "mean")]
        higher = any(col.endswith(h) for h in HIGHER_IS_BETTER)
        key = mean.fillna(-np.inf if higher else np.inf)
        order = np.argsort(-key.to_numpy() if higher else key.to_numpy(), kind="stable")
        s = s.iloc[order[:k]]
        s.columns = [f"{a}_{b}" if b else a for a, b in s.columns]
        return s.reset_index()

    def outputs(self, i: int, x) -> np.ndarray:
        """Eval-mode network outputs of config i on x [B, F] (what its `output` layer returns)."""
        import jax

        from .nn import layers
        from .train import num_outputs

        c = self.configs[i]
        ds = self.meta["dataset"]
        arch = layers.arch_of(c, ds["num_features"], num_outputs(c.loss, ds["num_classes"]))
        x = np.asarray(x, dtype=c.dtype)
        if x.ndim != 2 or x.shape[1] != ds["num_features"]:
            raise ValueError(f"predict: x must have shape [B, {ds['num_features']}], got {x.shape}")
        with jax.enable_x64(c.dtype == "float64"):
            out, _ = layers.apply(arch, self._params[i], self._model_states[i], x, train=False)
            return np.asarray(out)

    def predict(self, i: int, x) -> np.ndarray:
        """Predicted class of each row of x for config i."""
        o = self.outputs(i, x)
        if o.shape[-1] == 1:
            thr = 0.5 if self.configs[i].output == "sigmoid" else 0.0
            return (o[:, 0] > thr).astype(np.int64)
        return np.argmax(o, axis=-1)

    def to_torch(self, i: int):
        """Config i as a PyTorch `nn.Module` (torchref's stock-parts model) holding its trained weights,
        BatchNorm running statistics and fixed encodings, in eval mode: a sweep's winner, ready to use
        in PyTorch. Needs PyTorch installed."""
        try:
            import torch
            import torchref
        except ImportError as e:  # pragma: no cover - torch is optional for jaxfit alone
            raise ImportError("to_torch needs PyTorch: pip install torch (and this repo's torchref)") from e
        c = self.configs[i]
        ds = self.meta["dataset"]
        model = torchref.build_model(c, ds["num_features"], ds["num_classes"])
        model.load_state_dict(torchref.to_state_dict(self._params[i], self._model_states[i], c))
        return model.eval().to(torch.float64 if c.dtype == "float64" else torch.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> str:
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "configs.json"), "w") as f:
            json.dump([c.to_dict() for c in self.configs], f, indent=1)
        tab = self.table.copy()
        for col in ("hidden", "betas"):
            tab[col] = tab[col].map(list)
        tab.to_parquet(os.path.join(path, "table.parquet"))
        np.savez_compressed(os.path.join(path, "curves.npz"), **self.curves)
        flat = {}
        for i in range(len(self)):
            flat.update({f"{i}/params/{k}": v for k, v in _flatten(self._params[i]).items()})
            flat.update({f"{i}/state/{k}": v for k, v in _flatten(self._model_states[i]).items()})
        np.savez_compressed(os.path.join(path, "params.npz"), **flat)
        with open(os.path.join(path, "meta.json"), "w") as f:
            json.dump({"format_version": FORMAT_VERSION, **self.meta}, f, indent=1, default=str)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SweepResult":
        path = os.fspath(path)
        with open(os.path.join(path, "configs.json")) as f:
            configs = [Config.from_dict(d) for d in json.load(f)]
        with open(os.path.join(path, "meta.json")) as f:
            meta = json.load(f)
        with np.load(os.path.join(path, "curves.npz")) as z:
            curves = {k: z[k] for k in z.files}
        per: list[dict[str, dict]] = [{"params": {}, "state": {}} for _ in configs]
        with np.load(os.path.join(path, "params.npz")) as z:
            for k in z.files:
                i, kind, rest = k.split("/", 2)
                per[int(i)][kind][rest] = z[k]
        params = [_unflatten(p["params"]) for p in per]
        states = [_unflatten(p["state"]) for p in per]
        meta.pop("format_version", None)
        return cls(configs, curves, params, states, meta)


def cpu_name() -> str:
    """The host CPU's model name (for results files: which machine a number came from)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The checkout's short commit (with "-dirty" when tracked files are modified), or None."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return None


def environment() -> dict[str, Any]:
    import jax

    import jaxfit

    dev = jax.devices()[0]
    return {"jaxfit": jaxfit.__version__, "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": dev.platform,
            "device": getattr(dev, "device_kind", str(dev)), "n_devices": jax.device_count(),
            "machine": platform.machine(), "cpu_count": os.cpu_count()}

"""SweepResult: the table, curves and final parameters of a sweep, and its on-disk layout.

On disk (one directory):
    configs.json   the configs, in order (the source of truth on load)
    table.parquet  one row per config: every config field, final and best metrics, divergence (and its
                   rule), the diagnostics of jaxfit.diagnose (flags, best_epoch, diagnosis)
    curves.npz     metric -> [configs, epochs] (NaN past a config's own epochs)
    params.npz     "<i>/params/<path>" and "<i>/state/<path>" -> final arrays of config i
    table.csv      the same table as CSV
    meta.json      dataset name and fingerprint, chunk plans, timings, versions, device
    manifest.json  written last: format version, every file above with its size and sha256, the number
                   of configs, a sha256 of the configs, the dataset fingerprint. `load` checks it all and
                   refuses (ValueError, one line) a directory that is incomplete or mixed, e.g. by a save
                   killed half way over an earlier result.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..config import Config, configs_sha256
from ..errors import ConfigIndexError, UserError
from ..io import files as fsio
from ..io.tree import flatten, unflatten
from ..program.train import METRICS
from .divergence import counted, divergence

FORMAT_VERSION = 2  # 2: manifest.json (sizes and sha256 of every file), table.csv
HIGHER_IS_BETTER = {"train_acc", "val_acc"}


class SweepResult:
    """Results of `jaxfit.sweep`, one entry per config in the order given."""

    def __init__(self, configs: Sequence[Config], curves: dict[str, np.ndarray], params: list, model_states: list,
                 meta: dict[str, Any], best_params: list | None = None, best_states: list | None = None):
        self.configs = list(configs)
        self.curves = curves
        self._params = params
        self._model_states = model_states
        self._best = (best_params, best_states) if best_params is not None else None
        self.meta = meta
        k = (meta.get("dataset") or {}).get("num_classes")
        every = int(meta.get("eval_every") or 1)
        pruned = meta.get("prune")
        # Epochs each config trained: its own, or where successive halving stopped it.
        self.stopped_epoch = np.array(pruned["stopped_epoch"] if pruned else [c.epochs for c in self.configs],
                                      dtype=np.int64)
        div = [divergence({m: curves[m][i, :self.stopped_epoch[i]] for m in METRICS}, params[i], c.loss, k, every)
               for i, c in enumerate(self.configs)]
        self.diverged_epoch = np.array([d[0] for d in div], dtype=np.int64)
        self.diverged_rule = [d[1] for d in div]  # "" or one of DIVERGENCE_RULES, per config
        self._table: pd.DataFrame | None = None
        self._base_table: pd.DataFrame | None = None
        self._diagnostics: pd.DataFrame | None = None  # set_diagnostics: jaxfit.diagnose's columns
        self._user = None  # model=: per config (graphdef, params State, state State) of the user's module

    def set_diagnostics(self, frame: pd.DataFrame | None) -> "SweepResult":
        """Join `frame` (one row per config, indexed like `table`: `jaxfit.diagnose(result, data)`) to
        the table. `jaxfit.sweep` sets it from the data it trained on; `load` from the saved table.
        The result never computes diagnostics itself."""
        if frame is not None:
            if len(frame) != len(self) or list(frame.index) != list(range(len(self))):
                raise UserError(f"set_diagnostics: need one row per config, indexed 0..{len(self) - 1}, "
                                f"got {len(frame)} rows")
            frame = frame.drop(columns=["diverged", "diverged_rule"], errors="ignore")
        self._diagnostics = frame
        self._table = None
        return self

    @classmethod
    def from_run(cls, configs, raw, meta: dict) -> "SweepResult":
        n = len(configs)
        e = max(c.epochs for c in configs)
        curves = {m: np.full((n, e), np.nan) for m in METRICS}
        for i, mt in enumerate(raw["metrics"]):
            for m in METRICS:
                curves[m][i, : len(mt[m])] = mt[m]
        r = cls(configs, curves, raw["params"], raw["model_state"], meta,
                getattr(raw, "best_params", None), getattr(raw, "best_state", None))
        r._user = getattr(raw, "user", None)
        return r

    @classmethod
    def concat(cls, parts: Sequence["SweepResult"], meta: dict | None = None) -> "SweepResult":
        """One result holding the configs of `parts` in order (sweeps of the same dataset, e.g. the
        batches of `jaxfit.search`): curves padded with NaN to the longest, params, best-epoch params,
        diagnostics and successive halving's stopped epochs carried over; `meta` (default: the first
        part's, timings and plans summed over the parts) replaces the metadata."""
        parts = list(parts)
        if not parts:
            raise UserError("SweepResult.concat: need at least one result")
        prints = {(p.meta.get("dataset") or {}).get("fingerprint") for p in parts}
        if len(prints) > 1:
            raise UserError("SweepResult.concat: the results were trained on different datasets")
        if any(p._user is not None for p in parts):
            raise UserError("SweepResult.concat: results of a user's model (model=) cannot be joined")
        configs = [c for p in parts for c in p.configs]
        e = max(p.curves[m].shape[1] for p in parts for m in p.curves)
        curves = {m: np.concatenate([np.pad(p.curves[m], ((0, 0), (0, e - p.curves[m].shape[1])),
                                            constant_values=np.nan) for p in parts]) for m in parts[0].curves}
        if meta is None:
            meta = dict(parts[0].meta)
            for k in ("wall_s", "compile_s", "run_s", "compiles", "programs", "programs_from_disk",
                      "programs_compiled", "model_steps", "model_steps_trained"):
                if all(k in p.meta for p in parts):
                    meta[k] = sum(p.meta[k] for p in parts)
            for k in ("plan", "plans"):
                meta[k] = [row for p in parts for row in p.meta.get(k, [])]
        pruned = [p.meta.get("prune") for p in parts]
        if any(pruned):
            rule = next(pr for pr in pruned if pr)
            meta = {**meta, "prune": {
                **{k: v for k, v in rule.items() if k not in ("rungs", "stopped_epoch", "pruned", "bracket")},
                "rungs": [{**r, "part": j} for j, pr in enumerate(pruned) if pr for r in pr["rungs"]],
                "stopped_epoch": [int(s) for p in parts for s in p.stopped_epoch],
                "pruned": [bool(s < c.epochs) for p in parts for s, c in zip(p.stopped_epoch, p.configs)],
                **({"bracket": [b for pr in pruned for b in pr["bracket"]]}
                   if all(pr and "bracket" in pr for pr in pruned) else {})}}
        best = (None, None) if any(p._best is None for p in parts) else \
            ([b for p in parts for b in p._best[0]], [b for p in parts for b in p._best[1]])
        out = cls(configs, curves, [x for p in parts for x in p._params],
                  [x for p in parts for x in p._model_states], meta, *best)
        if all(p._diagnostics is not None for p in parts):
            out.set_diagnostics(pd.concat([p._diagnostics for p in parts], ignore_index=True)
                                .rename_axis(parts[0]._diagnostics.index.name))
        return out

    def __len__(self) -> int:
        return len(self.configs)

    def _index(self, i) -> int:
        """`i` as a config index of this result, or a ConfigIndexError naming the valid range."""
        n = len(self.configs)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ConfigIndexError(f"config index {i!r} is invalid: need an integer in 0..{n - 1} "
                                   "(a row of result.table)")
        if not -n <= int(i) < n:
            raise ConfigIndexError(f"config {i} is out of range: this result holds {n} config(s), indices 0..{n - 1}")
        return int(i) % n

    def __repr__(self) -> str:
        return (f"SweepResult({len(self)} configs on {self.meta.get('dataset', {}).get('name', '?')!r}, "
                f"{int(self.diverged.sum())} diverged)")

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_epoch >= 0

    # ------------------------------------------------------------------ views
    def params(self, i: int, best: bool = False) -> dict:
        """Final parameters of config i (PyTorch layout: dense[k] = {"w": [out, in], "b": [out]}).
        `best=True`: those after its best epoch instead (the highest validation accuracy, the earliest
        of ties; training accuracy without a validation split: `table["best_epoch"]`), what early
        stopping would have kept."""
        i = self._index(i)
        return self._best_or_final(0, i) if best else self._params[i]

    def model_state(self, i: int, best: bool = False) -> dict:
        """Final BatchNorm running statistics and fixed encodings of config i (`best`: as in params)."""
        i = self._index(i)
        return self._best_or_final(1, i) if best else self._model_states[i]

    def _best_or_final(self, which: int, i: int) -> dict:
        if self._best is None:
            raise UserError("this result holds no best-epoch parameters (it was saved by an older jaxfit)")
        return self._best[which][i]

    @property
    def table(self) -> pd.DataFrame:
        """One row per config: its fields, final / best / area metrics, divergence, and the
        diagnostics handed over by `set_diagnostics` (jaxfit.sweep and load do)."""
        if self._table is None:
            base = self._metrics_table()
            self._table = base if self._diagnostics is None else base.join(self._diagnostics)
        return self._table

    def _metrics_table(self) -> pd.DataFrame:
        """The table without the diagnostics (computed once: set_diagnostics only joins to it)."""
        if self._base_table is None:
            every = int(self.meta.get("eval_every") or 1)
            rows = []
            for i, c in enumerate(self.configs):
                row: dict[str, Any] = {"config": i}
                stop = int(self.stopped_epoch[i])
                for f in fields(Config):
                    row[f.name] = getattr(c, f.name)
                for m in METRICS:
                    curve = self.curves[m][i, : stop]
                    row[f"final_{m}"] = float(curve[-1])
                va = self.curves["val_acc"][i, : stop]
                vl = self.curves["val_loss"][i, : stop]
                row["best_val_acc"] = float(np.nanmax(va)) if np.isfinite(va).any() else math.nan
                row["best_val_loss"] = float(np.nanmin(vl)) if np.isfinite(vl).any() else math.nan
                full = self.curves["full_train_loss"][i, : stop]
                row["auc_full_train_loss"] = float(np.mean(full[counted(full, every)]))  # the epochs evaluated
                row["diverged"] = bool(self.diverged_epoch[i] >= 0)
                row["diverged_epoch"] = int(self.diverged_epoch[i])
                row["diverged_rule"] = self.diverged_rule[i]
                if self.meta.get("prune"):
                    row["stopped_epoch"] = stop
                    row["pruned"] = stop < c.epochs
                    if "bracket" in self.meta["prune"]:  # Hyperband: the config's bracket
                        row["bracket"] = int(self.meta["prune"]["bracket"][i])
                rows.append(row)
            self._base_table = pd.DataFrame(rows).set_index("config")
        return self._base_table

    def summary(self, by: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                confidence: float = 0.95) -> pd.DataFrame:
        """Final metrics aggregated over seeds: for each group of `by` (default: every config field
        but `seed`), the mean, standard deviation, count and a t-based confidence interval half-width."""
        from scipy import stats

        t = self.table
        by = list(by) if by is not None else [f.name for f in fields(Config) if f.name != "seed"]
        for b in by:
            if b not in t.columns:
                raise UserError(f"summary: unknown column {b!r}; choose among {list(t.columns)}")
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

    def ranking_column(self, metric: str = "val_acc") -> tuple[str, str]:
        """(the table column `metric` ranks by, a note or ""). On data without a validation split a
        validation metric is all NaN: the training counterpart is used instead, and the note says so."""
        col = metric if metric.startswith(("final_", "best_", "auc_")) else f"final_{metric}"
        if col not in self.table.columns:
            raise UserError(f"best: unknown metric {metric!r}; choose among "
                            f"{[m for m in self.table.columns if m.startswith(('final_', 'best_', 'auc_'))]}")
        n_val = (self.meta.get("dataset") or {}).get("n_val")
        if "val_" in col and n_val == 0:
            alt = col.replace("val_", "train_")
            if alt in self.table.columns:
                return alt, (f"dataset {self.meta['dataset'].get('name', '?')!r} has no validation split: ranked by "
                             f"{alt} instead of {col} (give the data a validation split, e.g. val_fraction=0.2)")
        return col, ""

    def ranking(self, metric: str = "val_acc", by: Sequence[str] | None = None) -> tuple[pd.DataFrame, list, str]:
        """Every group of configs (the configs equal but for the fields outside `by`; default: equal
        but for the seed), best first: (the seed-aggregated summary in rank order, each group's config
        indices, the note of `ranking_column`). The one ranking of jaxfit: `best`, the command line's
        table and the report all use it.

        Order: groups holding a diverged run (any rule, finite blow-ups included) below every group
        without one, by their fraction diverged; then, after successive halving (`prune=`), groups
        stopped earlier below those trained further; then the seed-averaged metric (accuracies highest first,
        losses lowest first, NaN last); ties by the matching loss (final_val_loss for val_acc) and then
        by the group's first config."""
        col, note = self.ranking_column(metric)
        tie = None
        for acc, loss in (("val_acc", "val_loss"), ("train_acc", "train_loss")):
            if col.endswith(acc) and col.replace(acc, loss) in self.table.columns:
                tie = col.replace(acc, loss)
        metrics = [col] + ([tie] if tie else [])
        s = self.summary(by=by, metrics=metrics)
        by_cols = list(by) if by is not None else [f.name for f in fields(Config) if f.name != "seed"]
        t = self.table
        gid = t.groupby(by_cols, sort=False, dropna=False).ngroup().to_numpy()  # summary's row order
        members = [[int(c) for c in t.index[gid == g]] for g in range(len(s))]
        higher = any(col.endswith(h) for h in HIGHER_IS_BETTER)
        key = s[(col, "mean")].to_numpy(dtype=float)
        key = np.where(np.isfinite(key), -key if higher else key, np.inf)
        tie_key = s[(tie, "mean")].to_numpy(dtype=float) if tie else np.zeros(len(s))
        tie_key = np.where(np.isfinite(tie_key), tie_key, np.inf)
        frac = s[("diverged", "fraction")].to_numpy(dtype=float)
        first = np.array([m[0] for m in members])
        # Pruned (successive halving): a group stopped early ranks below every group trained further,
        # whatever its metric at its stop; without pruning every group trained all its epochs.
        share = self.stopped_epoch / np.array([c.epochs for c in self.configs], dtype=np.float64)
        trained = np.array([-float(np.mean(share[m])) for m in members])
        order = np.lexsort((first, tie_key, key, trained, frac))
        return s.iloc[order], [members[o] for o in order], note

    def best(self, metric: str = "val_acc", k: int = 10, by: Sequence[str] | None = None) -> pd.DataFrame:
        """The k best groups of configs by the seed-averaged final `metric` (accuracies: highest first;
        losses: lowest first), in the order of `ranking`: groups holding a diverged run (`diverged`:
        non-finite or blown up) sink below all others, ordered by their fraction diverged. On data
        without a validation split a validation metric ranks by its training counterpart, with a
        JaxfitWarning."""
        s, _, note = self.ranking(metric, by)
        if note:
            from ..errors import warn

            warn(note)
        s = s.iloc[:k].copy()
        s.columns = [f"{a}_{b}" if b else a for a, b in s.columns]
        return s.reset_index()

    def outputs(self, i: int, x) -> np.ndarray:
        """Eval-mode network outputs of config i on x [B, F] (what its `output` layer returns)."""
        import jax

        from ..nn import layers
        from ..program.train import num_outputs

        i = self._index(i)
        c = self.configs[i]
        ds = self.meta["dataset"]
        if self.meta.get("model"):
            from ..program.graph import apply_graph

            with jax.enable_x64(c.dtype == "float64"):
                g, p, s = self._user_parts(i)
                out, _ = apply_graph(g, p, s, jax.numpy.asarray(np.asarray(x, c.dtype)), train=False)
                return np.asarray(out)
        arch = layers.arch_of(c, ds["num_features"], num_outputs(c.loss, ds["num_classes"]))
        x = np.asarray(x, dtype=c.dtype)
        if x.ndim != 2 or x.shape[1] != ds["num_features"]:
            raise UserError(f"predict: x must have shape [B, {ds['num_features']}], got {x.shape}")
        with jax.enable_x64(c.dtype == "float64"):
            import jax.numpy as jnp

            # as JAX arrays (not NumPy ones, which some steps would round differently in the last bit):
            # the same numbers as the trained program's evaluation and as to_flax(i)
            p, s, xj = jax.tree_util.tree_map(jnp.asarray, (self._params[i], self._model_states[i], x))
            out, _ = layers.apply(arch, p, s, xj, train=False)
            return np.asarray(out)

    def predict(self, i: int, x) -> np.ndarray:
        """Predicted class of each row of x for config i."""
        i = self._index(i)
        o = self.outputs(i, x)
        if o.shape[-1] == 1:
            thr = 0.5 if self.configs[i].output == "sigmoid" else 0.0
            return (o[:, 0] > thr).astype(np.int64)
        return np.argmax(o, axis=-1)

    def to_torch(self, i: int):
        """Config i as a PyTorch `nn.Module` (torchref's stock-parts model) holding its trained weights,
        BatchNorm running statistics and fixed encodings, in eval mode, in the config's dtype: a sweep's
        winner, ready to use in PyTorch. Its inputs are cast to that dtype (NumPy arrays become tensors),
        so `model(torch.tensor(data.x_val))` works on float64 data for a float32 config. Needs PyTorch."""
        try:
            import torch
            import torchref
        except ImportError as e:  # pragma: no cover - torch is optional for jaxfit alone
            raise ImportError("to_torch needs PyTorch: pip install torch (and this repo's torchref)") from e
        i = self._index(i)
        c = self.configs[i]
        ds = self.meta["dataset"]
        model = torchref.build_model(c, ds["num_features"], ds["num_classes"])
        model.load_state_dict(torchref.to_state_dict(self._params[i], self._model_states[i], c))
        model = model.eval().to(torch.float64 if c.dtype == "float64" else torch.float32)
        model.register_forward_pre_hook(torchref.cast_inputs)  # NumPy / other-dtype inputs as the model's dtype
        return model

    def _user_parts(self, i: int, best: bool = False):
        """(graphdef, params State, state State) of a user module's config i, trained."""
        if self._user is None:
            raise UserError(f"config {i} was trained with the user's module {self.meta.get('model')}: its graph is not "
                             "saved with the result; rebuild the module with your factory and load params(i) / "
                             "model_state(i) into it (nnx.replace_by_pure_dict)")
        import jax
        from flax import nnx

        g, p0, s0 = self._user[i]
        p = jax.tree_util.tree_map(lambda a: a, p0)  # a copy of the State to fill
        s = jax.tree_util.tree_map(lambda a: a, s0)
        nnx.replace_by_pure_dict(p, self.params(i, best))
        nnx.replace_by_pure_dict(s, self.model_state(i, best))
        return g, p, s

    def to_flax(self, i: int, best: bool = False):
        """Config i as a `flax.nnx` module (`jaxfit.flax.MLP`) holding its trained weights (`best`: as
        in params), BatchNorm running statistics and fixed encodings, in eval mode: its outputs are
        `outputs(i, x)` and its predictions `predict(i, x)`; a float64 config's module computes in float64 with JAX's
        x64 enabled. Needs flax."""
        import jax

        from ..flax import MLP
        from ..program.train import num_outputs

        i = self._index(i)
        c, ds = self.configs[i], self.meta["dataset"]
        if self.meta.get("model"):  # the user's own module, trained
            from flax import nnx

            with jax.enable_x64(c.dtype == "float64"):
                model = nnx.merge(*self._user_parts(i, best))
            model.eval()
            return model
        with jax.enable_x64(c.dtype == "float64"):
            model = MLP.from_params(c, self.params(i, best), self.model_state(i, best),
                                    num_features=ds["num_features"], num_outputs=num_outputs(c.loss, ds["num_classes"]))
        model.eval()
        return model

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> str:
        """Write the result to directory `path` (see the module docstring). Every file is written
        atomically (fsio) and `manifest.json` last, listing each file's size and sha256: a save that is
        interrupted (killed, disk full) leaves a directory that `load` refuses, never a silent mix.
        Raises fsio.OutputError (one line) when a file cannot be written."""
        path = os.fspath(path)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise fsio.OutputError(f"cannot create output directory {path}: {fsio.reason(e)}") from e
        fsio.remove_stale_temporaries(path)  # left by an earlier save killed mid-write
        j = lambda name: os.path.join(path, name)  # noqa: E731
        written = {}
        written["configs.json"] = fsio.write_json(j("configs.json"), [c.to_dict() for c in self.configs])
        tab = self.table.copy()
        for col in ("hidden", "betas"):
            tab[col] = tab[col].map(list)
        written["table.parquet"] = fsio.write_parquet(j("table.parquet"), tab)
        written["table.csv"] = fsio.write_csv(j("table.csv"), tab)
        written["curves.npz"] = fsio.write_npz(j("curves.npz"), self.curves, compressed=True)
        written["params.npz"] = fsio.write_npz(j("params.npz"), self._flat_params(), compressed=True)
        written["meta.json"] = fsio.write_json(j("meta.json"), {"format_version": FORMAT_VERSION, **self.meta},
                                               default=str)
        manifest = {
            "format": "jaxfit-result", "format_version": FORMAT_VERSION,
            "files": {name: {"bytes": w.size, "sha256": w.sha256} for name, w in written.items()},
            "n_configs": len(self), "configs_sha256": configs_sha256(self.configs),
            "dataset_fingerprint": self.meta.get("dataset", {}).get("fingerprint"),
        }
        fsio.write_json(j(MANIFEST), manifest)  # last: its presence means every file above is complete
        return path

    def _flat_params(self) -> dict[str, np.ndarray]:
        flat = {}
        for i in range(len(self)):
            flat.update({f"{i}/params/{k}": v for k, v in flatten(self._params[i]).items()})
            flat.update({f"{i}/state/{k}": v for k, v in flatten(self._model_states[i]).items()})
            if self._best is not None:
                flat.update({f"{i}/best_params/{k}": v for k, v in flatten(self._best[0][i]).items()})
                flat.update({f"{i}/best_state/{k}": v for k, v in flatten(self._best[1][i]).items()})
        return flat

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SweepResult":
        """Read a directory written by `save`, after checking it against its manifest: a missing,
        truncated, changed or mismatched file raises ValueError naming the directory and the problem."""
        path = os.fspath(path)
        manifest = _check_manifest(path)
        no = lambda what: UserError(f"cannot load {path}: {what}")  # noqa: E731
        n = manifest["n_configs"]

        try:
            with open(os.path.join(path, "configs.json")) as f:
                configs = [Config.from_dict(d) for d in json.load(f)]
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError, TypeError) as e:
            raise no(f"configs.json or meta.json unreadable ({' '.join(str(e).split())})") from e
        if len(configs) != n:
            raise no(f"configs.json holds {len(configs)} configs, manifest.json {n}")
        if configs_sha256(configs) != manifest.get("configs_sha256"):
            raise no("configs.json does not match the configs hash in manifest.json")
        fp = meta.get("dataset", {}).get("fingerprint") if isinstance(meta, dict) else None
        if fp != manifest.get("dataset_fingerprint"):
            raise no(f"meta.json names dataset fingerprint {fp!r}, manifest.json {manifest.get('dataset_fingerprint')!r}")
        try:
            with np.load(os.path.join(path, "curves.npz"), allow_pickle=False) as z:
                curves = {k: z[k] for k in z.files}
            per: list[dict[str, dict]] = [{"params": {}, "state": {}, "best_params": {}, "best_state": {}}
                                          for _ in configs]
            held = set()
            with np.load(os.path.join(path, "params.npz"), allow_pickle=False) as z:
                for k in z.files:
                    i, kind, rest = k.split("/", 2)
                    held.add(int(i))
                    if int(i) < n:
                        per[int(i)][kind][rest] = z[k]
        except Exception as e:  # hashes matched, so only a file written wrongly gets here
            raise no(f"curves.npz or params.npz unreadable ({type(e).__name__}: {' '.join(str(e).split())})") from e
        missing = [m for m in METRICS if m not in curves]
        if missing:
            raise no(f"curves.npz lacks {', '.join(missing)}")
        for m in METRICS:
            if curves[m].ndim != 2 or curves[m].shape[0] != n:
                raise no(f"curves.npz: {m} holds {curves[m].shape[0] if curves[m].ndim else 0} configs, "
                         f"configs.json {n}")
        if held != set(range(n)):
            raise no(f"params.npz: holds {len(held)} configs, configs.json {n}")
        try:
            saved = pd.read_parquet(os.path.join(path, "table.parquet"))
        except Exception as e:
            raise no(f"table.parquet unreadable ({type(e).__name__}: {' '.join(str(e).split())})") from e
        if len(saved) != n:
            raise no(f"table.parquet: holds {len(saved)} configs, configs.json {n}")
        params = [unflatten(p["params"]) for p in per]
        states = [unflatten(p["state"]) for p in per]
        has_best = any(p["best_params"] for p in per)
        best = ([unflatten(p["best_params"]) for p in per], [unflatten(p["best_state"]) for p in per]) \
            if has_best else (None, None)
        meta.pop("format_version", None)
        result = cls(configs, curves, params, states, meta, *best)
        # the diagnostics saved with the table (jaxfit.diagnose's columns), as they were computed
        base = set(result._metrics_table().columns) | {"config"}
        extra = [c for c in saved.columns if c not in base]
        if extra:
            diag = saved[extra].copy()
            diag.index = pd.RangeIndex(len(diag), name="config")
            result.set_diagnostics(diag)
        return result


MANIFEST = "manifest.json"
RESULT_FILES = ("configs.json", "table.parquet", "table.csv", "curves.npz", "params.npz", "meta.json")


def _check_manifest(path: str) -> dict:
    """Read `path`/manifest.json and check every file it lists (present, size, sha256); the manifest."""
    no = lambda what: UserError(f"cannot load {path}: {what}")  # noqa: E731
    if not os.path.isdir(path):
        raise no("no such directory" if not os.path.exists(path) else "not a directory")
    mfile = os.path.join(path, MANIFEST)
    if not os.path.exists(mfile):
        raise no(_why_no_manifest(path))
    try:
        with open(mfile, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
        files = manifest["files"]
        version = manifest["format_version"]
        n = manifest["n_configs"]
        if not isinstance(files, dict) or not isinstance(n, int):
            raise UserError("bad field types")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise no(f"manifest.json unreadable ({type(e).__name__}: {' '.join(str(e).split())}; "
                 "an interrupted save?)") from e
    if version != FORMAT_VERSION:
        raise no(f"manifest.json has format_version {version!r}; this jaxfit reads {FORMAT_VERSION}")
    for name in RESULT_FILES:
        if name not in files:
            raise no(f"manifest.json does not list {name}")
    for name, rec in files.items():
        file = os.path.join(path, name)
        if os.path.basename(name) != name:
            raise no(f"manifest.json lists {name!r}, not a file name")
        if not os.path.isfile(file):
            raise no(f"{name}: missing (listed in manifest.json)")
        size, digest = fsio.sha256_file(file)
        if size != rec.get("bytes"):
            raise no(f"{name}: {size} bytes, manifest.json says {rec.get('bytes')} (truncated, or replaced by an "
                     "interrupted save?)")
        if digest != rec.get("sha256"):
            raise no(f"{name}: sha256 mismatch with manifest.json (changed, or replaced by an interrupted save?)")
    return manifest


def _why_no_manifest(path: str) -> str:
    present = [f for f in RESULT_FILES if os.path.exists(os.path.join(path, f))]
    if not present:
        return "missing manifest.json: no jaxfit result here"
    version = None
    try:
        with open(os.path.join(path, "meta.json")) as f:
            version = json.load(f).get("format_version")
    except (OSError, ValueError, AttributeError):
        pass
    old = ("configs.json", "table.parquet", "curves.npz", "params.npz", "meta.json")
    if isinstance(version, int) and version < FORMAT_VERSION and all(f in present for f in old):
        return (f"it was saved by an older jaxfit (format_version {version}) before results carried a manifest.json, "
                "so it cannot be checked: rebuild it by rerunning the same sweep with the same --out and --resume "
                "(its finished chunks are reused), or with jaxfit.sweep(..., checkpoint_dir=...) and save()")
    return "missing manifest.json (an interrupted save?)"



"""Replay one run in jaxfit and in PyTorch (torchref) from the same weights and batch order, and
compare them epoch by epoch (and, with `steps=True`, optimizer step by optimizer step). Backs
`jaxfit parity`; needs PyTorch.

With dropout PyTorch trains with nn.Dropout's own masks, recorded as it draws them
(`torchref.train(record_dropout=True)`), and jaxfit replays those masks: a run is replayed from
PyTorch's own dropout, not from masks built for the purpose.

Tolerances (docs/parity.md says why): float64 losses must agree to 1e-10 over runs of up to
1,000 steps; float32 to 1e-5 over 100 steps. Past those horizons identical runs part
chaotically (momentum and Adam amplify rounding), so the verdict uses the looser bound the
measurements support there and says so. Step by step, parameters are held to 1e-9 (float64, first
1,000 steps) and 2e-4 (float32, first 100 steps), past those horizons to 10x the loss tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxfit.config import Config
from jaxfit.datasets import Dataset
from jaxfit.errors import UserError

METRICS_SHOWN = ("train_loss", "last_batch_loss", "full_train_loss", "val_loss", "val_acc")
MAX_RECORDED_STEPS = 20_000  # steps=True keeps every step's parameters on both sides


def tolerance(dtype: str, steps: int) -> tuple[float, str]:
    """(loss tolerance, the rule that gives it) for a replay of `steps` optimizer steps. The reasons
    and the measured drift behind each bound are in docs/parity.md."""
    if dtype == "float64":
        if steps <= 1000:
            return 1e-10, "the float64 bound for runs of up to 1,000 steps"
        return 1e-6, ("the float64 bound past 1,000 steps, where identical runs part chaotically: it flags a "
                      "semantic difference, not chaos")
    if steps <= 100:
        return 1e-5, "the float32 bound for runs of up to 100 steps"
    return 5e-2, ("the float32 bound past 100 steps, where identical float32 runs part chaotically: only gross "
                  "differences are flagged; compare such runs by their statistics across seeds")


def step_tolerance(dtype: str, step: int) -> tuple[float, float]:
    """(loss tolerance, parameter tolerance) at global optimizer step `step` (1-based): step `step`
    of a long run is step `step` of a run that stopped there, so the short-run bounds hold up to the
    horizons (float64 1,000 steps, float32 100) and the looser ones of `tolerance` past them."""
    loss_tol, _ = tolerance(dtype, step)
    if dtype == "float64" and step <= 1000:
        return loss_tol, 1e-9
    if dtype != "float64" and step <= 100:
        return loss_tol, 2e-4
    return loss_tol, 10 * loss_tol


def _absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in float64, 0 where both are the same non-finite value, inf where only one is NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.where(same, 0.0, np.where(np.isnan(d), np.inf, d))


def _leaves(tree) -> dict[str, np.ndarray]:
    """{"dense/1/w": array, ...} of a params tree (dicts and lists), in the tree's order."""
    from jaxfit.io.tree import flatten

    return flatten(tree)


def _fmt_index(index: tuple) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


@dataclass
class StepViolation:
    """The first optimizer step where jaxfit and PyTorch differ beyond the step tolerances."""

    step: int  # global optimizer step, 1-based
    epoch: int  # 1-based
    step_in_epoch: int  # 1-based
    loss_jax: float
    loss_torch: float
    loss_diff: float
    loss_tol: float
    param: str  # the parameter with the largest |diff| at that step, e.g. "dense/1/w"
    index: tuple  # its entry, e.g. (0, 3)
    param_jax: float
    param_torch: float
    param_diff: float
    param_tol: float

    def describe(self) -> str:
        rel = lambda d, t: ">" if not d <= t else "<="  # noqa: E731
        return (f"first difference: step {self.step} (epoch {self.epoch}, step {self.step_in_epoch}): "
                f"loss {self.loss_jax:.12g} vs {self.loss_torch:.12g} (jaxfit vs PyTorch, |diff| "
                f"{self.loss_diff:.3g} {rel(self.loss_diff, self.loss_tol)} {self.loss_tol:g}); parameter "
                f"{self.param}{_fmt_index(self.index)} {self.param_jax:.12g} vs {self.param_torch:.12g} "
                f"(|diff| {self.param_diff:.3g} {rel(self.param_diff, self.param_tol)} {self.param_tol:g})")


@dataclass
class StepRecord:
    """Per optimizer step (flattened over epochs): both losses and the largest parameter difference."""

    steps_per_epoch: int
    loss_jax: np.ndarray  # [total steps]
    loss_torch: np.ndarray  # [total steps]
    param_diff: np.ndarray  # [total steps]: max |diff| over every parameter after the step
    param_where: list  # [total steps] of (path, index, jaxfit value, torch value) of that max

    @classmethod
    def compare(cls, jax_losses, torch_losses, jax_params, torch_params) -> "StepRecord":
        """From jaxfit's step_losses [epochs, steps] / step_params[e][s] and torchref's step_losses
        [total] / step_params[e][s] (both in jaxfit's params layout)."""
        jl = np.asarray(jax_losses, np.float64)
        E, S = jl.shape
        tl = np.asarray(torch_losses, np.float64).reshape(-1)
        if tl.size != E * S:
            raise ValueError(f"step records: jaxfit has {E} x {S} steps, PyTorch {tl.size}")
        jflat = [_leaves(jax_params[e][s]) for e in range(E) for s in range(S)]
        tflat = [_leaves(torch_params[e][s]) for e in range(E) for s in range(S)]
        if list(jflat[0]) != list(tflat[0]):
            raise ValueError(f"step records: jaxfit's parameters {list(jflat[0])} differ from PyTorch's "
                             f"{list(tflat[0])}")
        T = E * S
        best = np.full(T, -1.0)
        where: list = [None] * T
        for path in jflat[0]:
            J = np.stack([np.asarray(p[path], np.float64) for p in jflat])
            Tt = np.stack([np.asarray(p[path], np.float64) for p in tflat])
            if J.shape != Tt.shape:
                raise ValueError(f"step records: {path} is {J.shape[1:]} in jaxfit, {Tt.shape[1:]} in PyTorch")
            D = _absdiff(J, Tt).reshape(T, -1)
            if D.shape[1] == 0:
                continue
            arg = np.argmax(D, axis=1)
            mx = D[np.arange(T), arg]
            for g in np.flatnonzero(mx > best):
                idx = tuple(int(i) for i in np.unravel_index(arg[g], J.shape[1:]))
                best[g] = mx[g]
                where[g] = (path, idx, float(J[g][idx]), float(Tt[g][idx]))
        return cls(S, jl.reshape(-1), tl, np.maximum(best, 0.0), where)

    @property
    def loss_diff(self) -> np.ndarray:
        return _absdiff(self.loss_jax, self.loss_torch)


@dataclass
class Replay:
    config: Config
    data: Dataset
    jax: dict[str, np.ndarray]
    torch: dict[str, np.ndarray]
    steps: int
    tol: float
    why: str
    step_record: StepRecord | None = None  # with replay(steps=True)
    dropout: str = field(default="")  # how dropout was replayed ("" without dropout)

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

    # ---------------------------------------------------------------- step by step (steps=True)

    def _steps(self) -> StepRecord:
        if self.step_record is None:
            raise UserError("this replay has no step records: run parity.replay(..., steps=True)")
        return self.step_record

    @property
    def step_deviation(self) -> np.ndarray:
        """[total steps]: |jaxfit - PyTorch| of each optimizer step's batch loss."""
        return self._steps().loss_diff

    def step_tolerances(self) -> tuple[np.ndarray, np.ndarray]:
        """([total steps] loss tolerance, [total steps] parameter tolerance), see `step_tolerance`."""
        T = len(self._steps().loss_jax)
        tols = np.array([step_tolerance(self.config.dtype, g) for g in range(1, T + 1)]).reshape(T, 2)
        return tols[:, 0], tols[:, 1]

    def _step_bad(self) -> np.ndarray:
        r = self._steps()
        lt, pt = self.step_tolerances()
        return ~(r.loss_diff <= lt) | ~(r.param_diff <= pt)

    def first_step_violation(self) -> StepViolation | None:
        """The first optimizer step whose loss differs beyond the loss tolerance or any of whose
        parameters (after the step) differs beyond the parameter tolerance; None if none does."""
        r = self._steps()
        bad = np.flatnonzero(self._step_bad())
        if not bad.size:
            return None
        g = int(bad[0])
        lt, pt = step_tolerance(self.config.dtype, g + 1)
        path, idx, pj, ptorch = r.param_where[g] if r.param_where[g] else ("", (), np.nan, np.nan)
        return StepViolation(step=g + 1, epoch=g // r.steps_per_epoch + 1, step_in_epoch=g % r.steps_per_epoch + 1,
                             loss_jax=float(r.loss_jax[g]), loss_torch=float(r.loss_torch[g]),
                             loss_diff=float(r.loss_diff[g]), loss_tol=lt, param=path, index=idx, param_jax=pj,
                             param_torch=ptorch, param_diff=float(r.param_diff[g]), param_tol=pt)

    def steps_table(self, max_rows: int | None = 40) -> str:
        """Per optimizer step: global step, epoch, both losses, |diff|, the largest parameter |diff|
        and where; '!' marks a step beyond the tolerances. With more steps than `max_rows`, the rows
        around the first violation (or the first and last rows when there is none)."""
        r = self._steps()
        T = len(r.loss_jax)
        bad = self._step_bad()
        if max_rows is None or T <= max_rows:
            spans = [(0, T)]
        else:
            max_rows = max(max_rows, 2)
            first = np.flatnonzero(bad)
            if first.size:
                g = int(first[0])
                start = max(0, min(g - max_rows // 4, T - max_rows))
                spans = [(start, start + max_rows)]
            else:
                head = max_rows // 2
                spans = [(0, head), (T - (max_rows - head), T)]
        head = (f"{'step':>6s}  {'epoch':>5s}  {'loss jaxfit':>16s}  {'loss torch':>16s}  {'|diff|':>9s}  "
                f"{'param |diff|':>12s}  where")
        rows = [head]
        if spans[0][0] > 0:
            rows.append(f"{'...':>6s}")
        for k, (a, b) in enumerate(spans):
            if k:
                rows.append(f"{'...':>6s}")
            for g in range(a, b):
                w = r.param_where[g]
                where = f"{w[0]}{_fmt_index(w[1])}" if w and r.param_diff[g] > 0 else "-"
                rows.append(f"{g + 1:6d}  {g // r.steps_per_epoch + 1:5d}  {r.loss_jax[g]:16.12f}  "
                            f"{r.loss_torch[g]:16.12f}  {r.loss_diff[g]:9.2e}  {r.param_diff[g]:12.2e}  {where}"
                            f"{'  !' if bad[g] else ''}")
        if spans[-1][1] < T:
            rows.append(f"{'...':>6s}")
        return "\n".join(rows)

    def steps_verdict(self) -> str:
        """The "first difference: ..." line, or "no step differs beyond the tolerances"."""
        v = self.first_step_violation()
        if v is not None:
            return v.describe()
        lt, pt = self.step_tolerances()
        return (f"no step differs beyond the tolerances ({len(lt)} steps; largest loss |diff| "
                f"{float(np.max(self.step_deviation)):.3g}, parameter |diff| {float(np.max(self._steps().param_diff)):.3g}; "
                f"tolerances loss {lt[0]:g} / parameters {pt[0]:g}"
                + (f", past the horizon {lt[-1]:g} / {pt[-1]:g}" if lt[-1] != lt[0] else "") + ")")

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
        """PASS or FAIL, with the deviation measured in this run and the tolerance applied (and the
        rule that gives it; docs/parity.md has the reasons and the measured drift)."""
        worst = float(np.max(self.deviation))
        where = f"{self.steps:,} optimizer steps, {self.config.dtype}"
        if self.ok:
            return (f"PASS: measured deviation {worst:.3g} (largest |jaxfit - PyTorch| over the losses, {where}) is "
                    f"within the tolerance {self.tol:g} ({self.why}; docs/parity.md)")
        return (f"FAIL: measured deviation {self.deviation[self.first_violation]:.3g} exceeds the tolerance "
                f"{self.tol:g} first at epoch {self.first_violation + 1}; largest {worst:.3g} ({where}; {self.why}; "
                "docs/parity.md)")

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


def replay(data: Dataset, config: Config, *, steps: bool = False, torch_masks: bool = True,
           init_seed: int | None = None) -> Replay:
    """Train `config` in PyTorch (its own DataLoader order and nn.Linear init from `init_seed`, default
    the config's seed), then in jaxfit from the same initial weights and the batch order PyTorch used.

    With dropout, PyTorch draws its own masks (nn.Dropout) and, with `torch_masks` (the default),
    records them (`torchref.train(record_dropout=True)`) for jaxfit to replay; `torch_masks=False`
    lets jaxfit draw its own instead (the runs then differ: a control). `steps=True` also records each
    optimizer step's loss and parameters on both sides (`Replay.step_deviation`,
    `first_step_violation()`, `steps_table()`), for runs of up to MAX_RECORDED_STEPS steps."""
    import torch

    import torchref
    from jaxfit import api

    total = api.model_steps(data, [config])
    if steps and total > MAX_RECORDED_STEPS:
        raise UserError(f"parity --steps records every step's parameters: {total:,} steps is over the limit of "
                         f"{MAX_RECORDED_STEPS:,} (use fewer epochs, a larger batch or fewer points)")
    seed = config.seed if init_seed is None else init_seed
    torch.manual_seed(seed)
    model = torchref.build_model(config, data.num_features, data.num_classes, x_train=data.x_train)
    params, state = torchref.to_params(model.state_dict(), config)
    record = config.dropout > 0 and torch_masks
    t = torchref.train(data, config, params=params, model_state=state, batch_order=None, record_dropout=record,
                       record_params=steps)
    j = api.sweep(data, [config], params=[params], model_states=[state], batch_orders=[t.batch_order],
                  dropout_masks=[t.dropout_masks] if record else None, record_steps=steps,
                  matmul_precision="highest")  # full float32 products, as PyTorch (TF32 off on GPUs)
    dropout = ""
    if config.dropout > 0:
        dropout = ("jaxfit replays PyTorch's own dropout masks" if record else
                   "each framework draws its own dropout masks (the runs cannot match)")
    return compare(data, config, t, j, dropout=dropout)


def compare(data: Dataset, config: Config, t, j, *, dropout: str = "") -> Replay:
    """The Replay of a torchref.train result `t` and a jaxfit SweepResult `j` of one config (step
    records when both recorded them: t.step_params and j.step_params)."""
    jcurves = {m: j.curves[m][0, : config.epochs] for m in j.curves}
    steps = int(config.epochs * t.batch_order.shape[1])
    tol, why = tolerance(config.dtype, steps)
    rec = None
    if getattr(t, "step_params", None) is not None and getattr(j, "step_params", None) is not None:
        rec = StepRecord.compare(j.step_losses[0], t.step_losses, j.step_params[0], t.step_params)
    return Replay(config, data, jcurves, {m: np.asarray(v, np.float64) for m, v in t.curves.items()}, steps, tol, why,
                  step_record=rec, dropout=dropout)


def parse_config(text: str, base: Config | None = None) -> Config:
    """'hidden=64,64 optimizer=adam lr=0.01' -> Config (fields as in jaxfit.Config)."""
    import dataclasses

    base = base or Config()
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    changes: dict[str, Any] = {}
    for part in text.replace(";", " ").split():
        if "=" not in part:
            raise UserError(f"config text: {part!r} is not field=value")
        k, v = part.split("=", 1)
        if k not in types:
            raise UserError(f"config text: unknown field {k!r}; the fields are {sorted(types)}")
        changes[k] = _parse_value(k, v, getattr(base, k))
    return dataclasses.replace(base, **changes)


def _parse_value(name: str, v: str, current: Any) -> Any:
    if name in ("hidden", "betas"):
        items = [x for x in v.strip("()[]").split(",") if x]
        return tuple(int(x) if name == "hidden" else float(x) for x in items)
    if name in ("nesterov", "batchnorm", "shuffle"):
        if v.lower() not in ("true", "false", "1", "0"):
            raise UserError(f"Config.{name}={v!r} is invalid: must be true or false")
        return v.lower() in ("true", "1")
    if v.lower() == "none":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def replay_pair(data: Dataset, config: Config, flax_factory, torch_module) -> Replay:
    """Parity for a user's own pair of models: a Flax module built from jaxfit.flax layers
    (`flax_factory(config, num_features, num_outputs, rngs) -> nnx.Module`) and its PyTorch twin
    (`torch_module`, an nn.Module built from the matching torch layers, whose attribute paths name the
    same variables: `jaxfit.flax.state_dict(flax_module)` has the keys of `torch_module.state_dict()`).

    PyTorch trains its twin from its own initial weights and DataLoader order (torchref.train(module=));
    the Flax module gets the same initial weights by attribute path (a missing or extra key, or a
    shape that differs, is refused by name) and is trained by jaxfit.sweep(model=) on the same batch
    order. The Replay has the epoch table, largest deviation and verdict of `replay`. Dropout is
    refused (each framework would draw its own masks)."""
    import copy


    import torchref
    from jaxfit import api
    from jaxfit.flax import load_state_dict

    if config.dropout > 0:
        raise UserError("replay_pair: dropout > 0 cannot be replayed for a user's pair (each framework draws its own "
                         "masks); set dropout=0")
    initial = {k: v.detach().cpu().numpy().copy() for k, v in torch_module.state_dict().items()}
    t = torchref.train(data, config, module=copy.deepcopy(torch_module))

    def factory(c, F, K, rngs):
        m = flax_factory(c, F, K, rngs)
        load_state_dict(m, initial)
        return m

    j = api.sweep(data, [config], model=factory, batch_orders=[t.batch_order], matmul_precision="highest")
    return compare(data, config, t, j)

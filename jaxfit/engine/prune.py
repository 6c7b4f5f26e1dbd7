"""Successive halving inside one sweep: which configs stop at which rung.

`Halving(metric, min_epochs=r, eta=3, group_by=("seed",))` puts rungs at r, r*eta, r*eta^2, ...
epochs (below the longest config's epochs). The sweep trains every live config up to a rung (all
buckets, synchronously), then ranks the configs still training past that rung by `metric` at the
rung's epoch, averaged over each group (configs equal but for the `group_by` fields: the seeds of
one setting live or die together), keeps the best ceil(groups / eta) groups (at least one) and
stops the rest there. NaN (a diverged config) ranks last; ties go to the group whose first config
comes first in the sweep. A config whose own epochs end at or before a rung is never stopped by it.

The decisions are pure host code over the curves (`decide`); `engine.run` trains the intervals
between rungs and packs the survivors of a bucket into full chunks.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import Config
from ..errors import UserError

METRICS = {"val_loss": "min", "val_acc": "max", "full_train_loss": "min", "train_acc": "max",
           "train_loss": "min"}


@dataclass(frozen=True)
class Halving:
    """Synchronous successive halving (see the module docstring). `metric`: one of METRICS;
    `min_epochs`: the first rung; `eta`: the reduction factor (keep 1/eta at each rung);
    `group_by`: the Config fields whose values are averaged over (default: the seed)."""

    metric: str = "val_loss"
    min_epochs: int = 1
    eta: int = 3
    group_by: tuple[str, ...] = ("seed",)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise UserError(f"Halving(metric={self.metric!r}) is invalid: allowed values are {', '.join(METRICS)}")
        for name in ("min_epochs", "eta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if name == "min_epochs" else 2):
                raise UserError(f"Halving({name}={v!r}) is invalid: need an integer >= "
                                f"{1 if name == 'min_epochs' else 2}")
        group_by = (self.group_by,) if isinstance(self.group_by, str) else tuple(self.group_by)
        names = {f.name for f in dataclasses.fields(Config)}
        bad = [g for g in group_by if g not in names]
        if bad:
            raise UserError(f"Halving(group_by=...): {', '.join(map(repr, bad))} is not a Config field "
                            f"(allowed: {', '.join(sorted(names))})")
        object.__setattr__(self, "group_by", group_by)
        object.__setattr__(self, "min_epochs", int(self.min_epochs))
        object.__setattr__(self, "eta", int(self.eta))

    def rungs(self, max_epochs: int) -> list[int]:
        """Rung epochs (epochs trained when a decision is made), each below `max_epochs`."""
        out, r = [], self.min_epochs
        while r < max_epochs:
            out.append(r)
            r *= self.eta
        return out

    def record(self) -> dict:
        return {"kind": "halving", "metric": self.metric, "min_epochs": self.min_epochs, "eta": self.eta,
                "group_by": list(self.group_by)}


@dataclass(frozen=True)
class Hyperband(Halving):
    """Hyperband (Li et al., 2018): several brackets of successive halving. The rungs of
    `Halving(metric, min_epochs, eta)` below the longest config's epochs, r_0 < r_1 < ... < r_{K-1}, give
    K + 1 brackets: bracket b halves at r_b, r_{b+1}, ... (bracket 0 is plain successive halving,
    bracket K trains every config to its end). The groups (configs equal but for `group_by`) are
    shuffled with `seed` and split among the brackets in Hyperband's proportions, bracket b getting
    ceil((K+1)/(K+1-b) * eta^(K-b)) shares: many configs where the halving starts early, few trained
    in full. At a rung each bracket that halves there keeps the best ceil(groups / eta) of its own live
    groups; the brackets never compete with each other."""

    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise UserError(f"Hyperband(seed={self.seed!r}) is invalid: need an integer")
        object.__setattr__(self, "seed", int(self.seed))

    def shares(self, max_epochs: int) -> list[int]:
        """Bracket b's share of the groups, b = 0..K (K: the rungs below `max_epochs`)."""
        k = len(self.rungs(max_epochs))
        return [math.ceil((k + 1) / (k + 1 - b) * self.eta ** (k - b)) for b in range(k + 1)]

    def brackets(self, configs: Sequence[Config]) -> list[int]:
        """Each config's bracket (0..K): its group's, by a seeded shuffle of the groups split by `shares`."""
        keys = group_keys(configs, self.group_by)
        groups = list(dict.fromkeys(keys))
        order = np.random.default_rng(self.seed).permutation(len(groups))
        shares = self.shares(max(c.epochs for c in configs))
        bounds = np.floor(np.cumsum([0, *shares]) / sum(shares) * len(groups) + 0.5).astype(int)
        of_group = {}
        for b in range(len(shares)):
            for g in order[bounds[b]:bounds[b + 1]]:
                of_group[groups[g]] = b
        return [of_group[k] for k in keys]

    def record(self) -> dict:
        return {**super().record(), "kind": "hyperband", "seed": self.seed}


def check(prune: Halving | None, configs: Sequence[Config], eval_every: int) -> list[int]:
    """The rungs of `prune` for these configs (empty without one); a UserError where a rung's
    epoch would not be evaluated (eval_every must divide every rung)."""
    if prune is None:
        return []
    if not isinstance(prune, Halving):
        raise UserError(f"prune={prune!r} is invalid: pass jaxfit.Halving(...), jaxfit.Hyperband(...) or None")
    rungs = prune.rungs(max(c.epochs for c in configs))
    late = [r for r in rungs if r % eval_every]
    if late:
        raise UserError(f"prune: rung epoch(s) {late} are not evaluated with eval_every={eval_every}: choose "
                        "min_epochs and eta so that eval_every divides every rung (or eval_every=1)")
    return rungs


def group_keys(configs: Sequence[Config], group_by: Sequence[str]) -> list[tuple]:
    """Per config, the key of its group: every field but those in `group_by`."""
    keep = [f.name for f in dataclasses.fields(Config) if f.name not in set(group_by)]
    return [tuple(repr(getattr(c, n)) for n in keep) for c in configs]


def decide(prune: Halving, rung: int, live: Sequence[int], configs: Sequence[Config],
           value_at_rung: dict[int, float]) -> tuple[list[int], list[int]]:
    """(kept, stopped) among the `live` config indices that train past `rung` (their epochs > rung);
    `value_at_rung[i]`: config i's metric after `rung` epochs (NaN: ranks last). Hyperband: each
    bracket that halves at `rung` decides among its own configs (the others are kept)."""
    candidates = [i for i in live if configs[i].epochs > rung]
    if isinstance(prune, Hyperband):
        rungs = prune.rungs(max(c.epochs for c in configs))
        bracket = prune.brackets(configs)
        kept, stopped = [i for i in candidates if bracket[i] > rungs.index(rung)], []
        for b in sorted({bracket[i] for i in candidates if bracket[i] <= rungs.index(rung)}):
            k, s = decide(Halving(prune.metric, prune.min_epochs, prune.eta, prune.group_by), rung,
                          [i for i in candidates if bracket[i] == b], configs, value_at_rung)
            kept += k
            stopped += s
        return sorted(kept), sorted(stopped)
    if not candidates:
        return [], []
    keys = group_keys([configs[i] for i in candidates], prune.group_by)
    groups: dict[tuple, list[int]] = {}
    for i, k in zip(candidates, keys):
        groups.setdefault(k, []).append(i)
    sign = 1.0 if METRICS[prune.metric] == "min" else -1.0

    def score(members):
        v = np.array([value_at_rung[i] for i in members], np.float64)
        m = float(np.mean(v)) if np.isfinite(v).all() else math.inf  # a diverged seed sinks its group
        return (sign * m if math.isfinite(m) else math.inf, min(members))

    ranked = sorted(groups.values(), key=score)
    n_keep = max(1, math.ceil(len(ranked) / prune.eta))
    kept = sorted(i for g in ranked[:n_keep] for i in g)
    stopped = sorted(i for g in ranked[n_keep:] for i in g)
    return kept, stopped

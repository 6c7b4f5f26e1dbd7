"""The planner: configs -> buckets (one compiled program each) with a cost model.

A bucket's program is `jaxfit.program.train.make_segment` on a (possibly fused) `ProgramSpec`. What must
stay static in a program is the *remainder*: batch size, shuffling, dtype, the output width (which
the loss fixes), and whether the network is a linear model; everything else (widths, depth,
activation, output, loss, optimiser, init, input normalisation, hidden BatchNorm, dropout,
encoding, epochs) can be per-config arrays of one fused program (`jaxfit.nn.layers`).

Fusing trades compile time for run time: a 2-unit net padded to 64 units computes 64 units, and
every selector computes each branch present. The planner estimates both and picks the buckets that
minimise the total:

    estimated seconds of a bucket = compile + run
    compile = COMPILE_S[platform] * (1 + BRANCH_COST * extra branches)
    run     = configs * longest epochs * steps per epoch
              * (STEP_S + ELEM_S * batch * units * branches + FLOPs per step / RATE)

FLOPs per step count a padded network's forward and backward (6 * batch * weights) plus the
per-epoch evaluation. The constants are per platform (`COST`); every sweep records the estimate beside
the measured times (result.meta["plans"]), so they can be checked and refitted (benchmarks/sweep.py).

`fuse="none"` keeps one bucket per distinct structure, `"all"` one per
remainder, `"auto"` (default) merges buckets greedily while the estimate falls.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config import Config
from ..errors import UserError
from ..nn import layers, optim
from ..program.train import ProgramSpec, num_outputs, spec_of

FUSE_MODES = ("auto", "none", "all")

# Cost model constants per platform (seconds; FLOP/s). CPU: fitted to the default sweep's two fused
# programs (a one-hidden-layer bucket, mostly elementwise work over batch x units; a three-layer one,
# mostly products) and document 1's net at batch 1 (benchmarks/README.md has the fit). GPU: guesses,
# kept so a plan can be made there; the measured times are recorded beside the estimates.
COST = {
    "cpu": {"compile_s": 3.0, "branch": 0.08, "step_s": 1e-8, "elem_s": 1.5e-9, "rate": 1e11},
    "gpu": {"compile_s": 1.5, "branch": 0.05, "step_s": 1e-10, "elem_s": 1e-13, "rate": 2e13},
}


def cost_constants(platform: str) -> dict:
    return COST.get(platform, COST["gpu"])


@dataclass
class Bucket:
    index: int
    spec: ProgramSpec
    members: list[int]
    estimate: dict = field(default_factory=dict)  # {"compile_s", "run_s"}


def remainder(c: Config, num_classes: int) -> tuple:
    """What two configs must share to share a program."""
    return (num_outputs(c.loss, num_classes), c.batch_size, bool(c.shuffle), c.dtype, len(c.hidden) == 0)


def _unit_key(c: Config) -> tuple:
    """One bucket per distinct structure (fuse='none'): the configs that needed no padding or
    selector before fusion existed."""
    return (tuple(c.hidden), c.activation, c.output, c.init, c.input_norm, bool(c.batchnorm), c.dropout > 0,
            c.encoding, c.fourier_features if c.encoding == "fourier" else 0, c.loss, c.optimizer, bool(c.nesterov),
            c.epochs)


def fuse_specs(specs: Sequence[ProgramSpec]) -> ProgramSpec:
    s0 = specs[0]
    return ProgramSpec(layers.fuse_archs([s.arch for s in specs]), layers.union_of(specs, "losses"),
                       layers.union_of(specs, "optimizers"),
                       s0.batch_size, s0.shuffle, s0.dtype, max(s.epochs for s in specs), s0.n_train, s0.n_val)


def spec_for(configs: Sequence[Config], data) -> ProgramSpec:

    specs = [spec_of(c, data.n_train, data.n_val, data.num_features, data.num_classes) for c in configs]
    uniq = list(dict.fromkeys(specs))
    return uniq[0] if len(uniq) == 1 else fuse_specs(uniq)


n_weights = layers.n_weights


def branches(spec: ProgramSpec) -> int:
    """Selector branches beyond the first (each costs compile time and some run time)."""
    a = spec.arch
    return sum(len(t) - 1 for t in (a.activations, a.outputs, a.inits, a.input_norms, a.encodings, spec.losses,
                                    spec.optimizers)) + (len(a.depths) > 1)


def flops_per_step(spec: ProgramSpec) -> float:
    """Estimated FLOPs of one optimizer step of one config (padded), evaluation included."""
    w = n_weights(spec.arch)
    act = 1 + 0.15 * (len(spec.arch.activations) - 1) + 0.3 * (len(spec.optimizers) - 1)
    train = 6.0 * spec.batch * w * act
    evals = 2.0 * (spec.n_train + spec.n_val) * w / max(spec.steps_per_epoch, 1)
    return train + evals


def estimate(spec: ProgramSpec, n_configs: int, platform: str) -> dict:
    k = cost_constants(platform)
    compile_s = k["compile_s"] * (1 + k["branch"] * branches(spec))
    steps = n_configs * spec.epochs * spec.steps_per_epoch
    elems = spec.batch * sum(spec.arch.widths) * (1 + 0.5 * (len(spec.arch.activations) - 1))
    run_s = steps * (k["step_s"] + k["elem_s"] * elems + flops_per_step(spec) / k["rate"])
    return {"compile_s": compile_s, "run_s": run_s}


def _total(e: dict) -> float:
    return e["compile_s"] + e["run_s"]


def plan_buckets(data, configs: Sequence[Config], fuse: str = "auto", platform: str | None = None) -> list[Bucket]:
    """Buckets of `configs` (indices into it) for `data`; each with its estimate."""
    if fuse not in FUSE_MODES:
        raise UserError(f"fuse={fuse!r} is invalid: allowed values are {', '.join(FUSE_MODES)}")
    if platform is None:
        import jax

        platform = jax.devices()[0].platform

    groups: dict[tuple, dict[tuple, list[int]]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(remainder(c, data.num_classes), {}).setdefault(_unit_key(c), []).append(i)
    out: list[Bucket] = []
    for rem, units in groups.items():
        cur = []
        for members in units.values():
            c = configs[members[0]]
            spec = spec_of(c, data.n_train, data.n_val, data.num_features, data.num_classes)
            cur.append((spec, list(members)))
        if fuse == "all" and len(cur) > 1:
            cur = [(fuse_specs([s for s, _ in cur]), sorted(i for _, m in cur for i in m))]
        elif fuse == "auto":
            cur = _greedy(cur, platform)
        for spec, members in cur:
            members = sorted(members, key=lambda i: (choice_key(configs[i]), i))
            out.append(Bucket(len(out), spec, members, estimate(spec, len(members), platform)))
    return out


def choice_key(c: Config) -> tuple:
    """A bucket's configs are ordered by their choices (then by position in the sweep), so that a
    block of consecutive configs shares them: one branch computed per block (`jaxfit.nn.choice`)."""
    return (c.optimizer, c.activation, c.loss, c.output, c.input_norm, c.encoding)


def _greedy(cur: list, platform: str) -> list:
    """Merge the pair of buckets whose merge lowers the estimated total most, until none does (the
    first such pair in list order on ties). Each pair's merge is estimated once: a merge only adds
    the pairs of the new bucket, so a plan of k units fuses O(k^2) specs, not O(k^3)."""
    serial = itertools.count()   # a bucket's key in the cache: never reused (an id() is, once freed)
    items = [(s, list(m), _total(estimate(s, len(m), platform)), next(serial)) for s, m in cur]
    pairs: dict[tuple[int, int], tuple[float, ProgramSpec, float]] = {}

    def pair(a, b):
        key = (items[a][3], items[b][3])
        got = pairs.get(key)
        if got is None:
            spec = fuse_specs([items[a][0], items[b][0]])
            t = _total(estimate(spec, len(items[a][1]) + len(items[b][1]), platform))
            got = pairs[key] = (items[a][2] + items[b][2] - t, spec, t)
        return got

    while len(items) > 1:
        best = None
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                gain, spec, t = pair(a, b)
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, a, b, spec, t)
        if best is None:
            break
        _, a, b, spec, t = best
        merged = (spec, items[a][1] + items[b][1], t, next(serial))
        items = [x for k, x in enumerate(items) if k not in (a, b)] + [merged]
    return [(s, m) for s, m, _, _ in items]


def segment_epochs(spec: ProgramSpec, n_configs: int, platform: str, target_s: float = 1.5,
                   override: int | None = None) -> int:
    """Epochs per call of a bucket's program: about `target_s` seconds a call (the host loop between
    calls drives progress, and the persistent cache keys on it), rounded to a divisor of the
    longest epochs so no call trains frozen epochs past the end."""
    E = spec.epochs
    if override:
        return max(1, min(int(override), E))
    per_epoch = estimate(spec, n_configs, platform)["run_s"] / max(E, 1)
    want = max(1, min(E, int(round(target_s / max(per_epoch, 1e-9)))))
    divisors = [d for d in range(1, E + 1) if E % d == 0]
    return min(divisors, key=lambda d: (abs(math.log(d / want)), -d))


def bytes_per_config(spec: ProgramSpec) -> int:
    """A first guess at one config's share of a chunk's memory (checked after compiling against
    XLA's own memory analysis)."""
    a = spec.arch
    w = a.widths
    n_params = n_weights(a)
    slots = optim.slot_count(spec.optimizers)
    item = 8 if spec.dtype == "float64" else 4
    params_like = n_params * (3 + slots) * (1 + (len(spec.optimizers) - 1))  # params, grads, new, slots
    acts = 4 * spec.batch * sum(w) * len(a.activations)  # forward activations kept for the backward pass
    evals = 2 * (spec.n_train + spec.n_val) * max(w)  # the end-of-epoch evaluation
    metrics = 8 * spec.epochs
    order = spec.steps_per_epoch * spec.batch  # the epoch's batch order (int32)
    return item * (params_like + acts + evals + metrics) + 4 * order


@dataclass(frozen=True)
class PlanRow:
    """One bucket of the plan, as plain data: what it holds, what it is padded to, its estimates."""

    bucket: int
    configs: int
    architectures: list  # the distinct hidden widths of its configs, e.g. [[2], [64, 64]]
    padded_hidden: list  # the widths every config of it computes
    activations: list
    optimizers: list
    losses: list
    epochs: int
    fused: bool
    estimate_compile_s: float | None
    estimate_run_s: float | None

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe(buckets: Sequence[Bucket], configs: Sequence[Config]) -> list[PlanRow]:
    """The plan as plain data (for result.meta and a dry run)."""
    rows = []
    for b in buckets:
        a = b.spec.arch
        archs = sorted({tuple(configs[i].hidden) for i in b.members})
        rows.append(PlanRow(b.index, len(b.members), [list(h) for h in archs], list(a.hidden), list(a.activations),
                            list(b.spec.optimizers), list(b.spec.losses), b.spec.epochs, b.spec.fused,
                            b.estimate.get("compile_s"), b.estimate.get("run_s")))
    return rows


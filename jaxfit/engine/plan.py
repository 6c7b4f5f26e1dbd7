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
    compile = COMPILE_S + BRANCH * extra branches + LAYER * padded hidden layers
    run     = configs * longest epochs * steps per epoch
              * (STEP_S + ELEM_S * batch * units * branches computed + FLOPs per step / RATE)

FLOPs per step count a padded network's forward and backward (6 * batch * weights) plus the
per-epoch evaluation. Where blocks of configs share their choices (`jaxfit.nn.choice`, the default)
one activation and one optimiser branch is computed per config; otherwise every branch is. The
constants are per platform (`COST`), fitted by `python -m benchmarks.costfit` to measured
compile and run times of many plans; every sweep records the estimate beside the measured times
(result.meta["plans"]), so they can be checked and refitted.

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

# Cost model constants per platform (seconds; FLOP/s). CPU: fitted by `python -m benchmarks.costfit`
# (benchmarks/README.md, "The planner's cost model") to the measured compile and run times of the
# benchmark sweeps' plans, fused and unfused. GPU: guesses, kept so a plan can be made there; the
# measured times are recorded beside the estimates.
COST = {
    # 2026-12-04, 2-core CPU, jax 0.10.2, 35 buckets of 9 plans (results/costfit-cpu2.json): the
    # FLOP term came out 0 (its work is collinear with the elementwise term here), so rate = inf.
    "cpu": {"compile_s": 1.54, "branch": 0.52, "layer": 0.29, "step_s": 2.7e-7, "elem_s": 5.1e-9, "rate": math.inf},
    "gpu": {"compile_s": 1.5, "branch": 0.08, "layer": 0.0, "step_s": 1e-10, "elem_s": 1e-13, "rate": 2e13},
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


def computed_branches(spec: ProgramSpec, hinted: bool | None = None) -> tuple[int, int]:
    """(activation, optimiser) branches computed per config: one each where blocks share their
    choices (`hinted`, default: unless JAXFIT_CHOICE_HINTS=0), every one present otherwise."""
    if hinted is None:
        from .compile import choice_hints_on

        hinted = choice_hints_on()
    return (1, 1) if hinted else (len(spec.arch.activations), len(spec.optimizers))


def flops_per_step(spec: ProgramSpec, hinted: bool | None = None) -> float:
    """Estimated FLOPs of one optimizer step of one config (padded), evaluation included."""
    w = n_weights(spec.arch)
    acts, opts = computed_branches(spec, hinted)
    act = 1 + 0.15 * (acts - 1) + 0.3 * (opts - 1)
    train = 6.0 * spec.batch * w * act
    evals = 2.0 * (spec.n_train + spec.n_val) * w / max(spec.steps_per_epoch, 1)
    return train + evals


def cost_features(spec: ProgramSpec, n_configs: int, hinted: bool | None = None) -> dict[str, float]:
    """What each cost constant multiplies: {"compile_s", "branch", "layer"} sum to the compile
    estimate, {"step_s", "elem_s", "rate"} (FLOPs, divided by the rate) to the run estimate."""
    steps = n_configs * spec.epochs * spec.steps_per_epoch
    acts, _ = computed_branches(spec, hinted)
    elems = spec.batch * sum(spec.arch.widths) * (1 + 0.5 * (acts - 1))
    return {"compile_s": 1.0, "branch": float(branches(spec)), "layer": float(spec.arch.depth),
            "step_s": float(steps), "elem_s": steps * elems, "rate": steps * flops_per_step(spec, hinted)}


COMPILE_TERMS = ("compile_s", "branch", "layer")
RUN_TERMS = ("step_s", "elem_s", "rate")


def cost_of(features: dict, constants: dict) -> dict:
    """{"compile_s", "run_s"} estimated from `cost_features` with a set of constants (see COST)."""
    compile_s = sum(constants.get(t, 0.0) * features[t] for t in COMPILE_TERMS)
    run_s = (features["step_s"] * constants["step_s"] + features["elem_s"] * constants["elem_s"]
             + features["rate"] / constants["rate"])
    return {"compile_s": compile_s, "run_s": run_s}


def estimate(spec: ProgramSpec, n_configs: int, platform: str, hinted: bool | None = None,
             constants: dict | None = None) -> dict:
    return cost_of(cost_features(spec, n_configs, hinted), constants or cost_constants(platform))


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
            members = sorted(members, key=lambda i: (choice_key(configs[i]), configs[i].seed, i))
            out.append(Bucket(len(out), spec, members, estimate(spec, len(members), platform)))
    return out


def choice_key(c: Config) -> tuple:
    """A bucket's configs are ordered by their choices (then by seed, then by position in the
    sweep), so that a block of consecutive configs shares them: one branch computed per block
    (`jaxfit.nn.choice`), and one batch order per block where it also shares the seed."""
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


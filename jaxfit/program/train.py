"""The pure training program: `make_segment(spec, epochs)` -> a function of arrays that jit and vmap take.

A run is a host loop over *segments*: one call of the compiled program trains every config of a
chunk for `epochs` epochs (an outer `lax.scan` over epochs of a `vmap` over configs of an inner
`lax.scan` over the steps of an epoch) and hands back the training state, which the next call
continues from. The first call (`first=True`) initialises the state inside the program. Nothing
inside calls back to the host, so a program can go in JAX's persistent compilation cache, and the
host loop between segments is where progress, early stopping and mid-run checkpoints live.

One program may train networks of different structure (a fused bucket, see `jaxfit.nn.layers`): the
per-config `Run` arrays say which depth, widths, activation, output, loss, optimiser, init, input
normalisation, encoding and epochs each config has. A config whose epochs are done is frozen (no
update) and its metrics past its end are NaN.

Randomness: each config's key is `PRNGKey(seed)`, split by purpose with `fold_in` (0 init and
Fourier features, 1 shuffling, 2 dropout), then folded with the epoch (shuffling) or the global step
(dropout). A config's numbers never depend on its position in the sweep or on its bucket-mates.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..config import Config
from ..nn import choice, layers, losses, optim

METRICS = ("train_loss", "last_batch_loss", "full_train_loss", "train_acc", "val_loss", "val_acc")
"""Per config and epoch:
train_loss       sample-weighted mean of the train-mode batch losses over the epoch
last_batch_loss  the epoch's last batch loss (with batch size 1, what document 1 prints)
full_train_loss  eval-mode loss on the whole training split at the end of the epoch
train_acc        eval-mode accuracy on the whole training split at the end of the epoch
val_loss/val_acc eval-mode loss and accuracy on the validation split (NaN when it is empty)
"""

KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT = 0, 1, 2


class Data(NamedTuple):
    x_train: jax.Array  # [N, F] float
    y_train: jax.Array  # [N] int32
    x_val: jax.Array  # [M, F] float
    y_val: jax.Array  # [M] int32


class TrainState(NamedTuple):
    params: Any  # pytree, see nn.layers (the bucket's padded layout)
    model_state: Any  # BatchNorm running stats, fixed encodings and input statistics
    opt_state: Any  # optim.OptState
    step: jax.Array  # [] int32: optimizer steps taken


class Carry(NamedTuple):
    """What a segment program carries from one call to the next: the training state, and the
    parameters and model state at the best epoch so far (highest validation accuracy, the earliest
    of ties; training accuracy when there is no validation split): what an early-stopping user keeps."""
    ts: TrainState
    best_params: Any
    best_state: Any
    best_score: jax.Array  # [] -inf before the first epoch


def best_score(m: dict, n_val: int):
    """The score the best epoch maximises (see Carry)."""
    return m["val_acc"] if n_val > 0 else m["train_acc"]


class ProgramSpec(NamedTuple):
    """Everything that fixes one compiled program: the (fused) network, the losses and optimisers
    present, and what stays static: batch size, shuffling, dtype, the data's shapes, the epochs."""

    arch: layers.Arch
    losses: tuple[str, ...]
    optimizers: tuple[str, ...]
    batch_size: int
    shuffle: bool
    dtype: str
    epochs: int  # the longest config's
    n_train: int
    n_val: int
    # A user's flax.nnx module (jaxfit.sweep(..., model=factory)): its static graph (nnx.split's
    # GraphDef, hashable). None: the built-in network `arch`. With a model, `arch` still says what the
    # configs ask for (output kind, dropout on/off); the forward pass is the module's.
    model: Any = None
    # Evaluation: every `eval_every` epochs (and at each config's last epoch), on at most `eval_rows`
    # fixed rows of each split (0: all) except at a last epoch, which is always evaluated in full.
    eval_every: int = 1
    eval_rows: int = 0

    @property
    def batch(self) -> int:
        return effective_batch(self.batch_size, self.n_train)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch)

    @property
    def num_features(self) -> int:
        return self.arch.num_features

    @property
    def num_outputs(self) -> int:
        return self.arch.num_outputs

    @property
    def fused(self) -> bool:
        return self.arch.fused or len(self.losses) > 1 or len(self.optimizers) > 1


class Run(NamedTuple):
    """Per-config arrays of a program (leading config axis): the network's place in the fused Arch
    and the run's own choices."""

    struct: layers.Struct
    loss: Any  # [] int32 index into ProgramSpec.losses
    optimizer: Any  # [] int32 index into ProgramSpec.optimizers
    nesterov: Any  # [] bool
    epochs: Any  # [] int32
    given_params: Any  # [] bool: start from the carry's params (a replay) instead of fresh ones
    given_state: Any  # [] bool: likewise for the model state


def effective_batch(batch_size: int, n: int) -> int:
    """Rows per optimizer step: the whole split for batch_size 0, else at most the split."""
    return n if batch_size == 0 else min(batch_size, n)


def num_outputs(loss: str, num_classes: int) -> int:
    return 1 if loss in ("bce", "bce_with_logits") else num_classes


def spec_of(c, n_train: int, n_val: int, num_features: int, num_classes: int) -> ProgramSpec:
    """The ProgramSpec of one config alone."""
    k = num_outputs(c.loss, num_classes)
    return ProgramSpec(layers.arch_of(c, num_features, k), (c.loss,), (c.optimizer,), c.batch_size,
                       bool(c.shuffle), c.dtype, c.epochs, n_train, n_val)


def run_of(spec: ProgramSpec, c, *, given_params: bool = False, given_state: bool = False) -> Run:
    """The host arrays of config `c`'s Run in `spec`."""
    return Run(layers.struct_of(spec.arch, c, spec.dtype), np.int32(spec.losses.index(c.loss)),
               np.int32(spec.optimizers.index(c.optimizer)), np.bool_(c.nesterov), np.int32(c.epochs),
               np.bool_(given_params), np.bool_(given_state))


def default_batch_order(spec: ProgramSpec, key: jax.Array, epoch) -> jax.Array:
    """[steps, batch] training indices of one epoch; the partial last batch is padded with -1.
    Shuffled with the config's shuffle key folded with the epoch, or in order (DataLoader shuffle=False)."""
    n, b, s = spec.n_train, spec.batch, spec.steps_per_epoch
    if spec.shuffle:
        idx = jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)
    else:
        idx = jnp.arange(n, dtype=jnp.int32)
    pad = s * b - n
    if pad:
        idx = jnp.concatenate([idx, jnp.full((pad,), -1, jnp.int32)])
    return idx.reshape(s, b)


def init_key(seed: int) -> jax.Array:
    """The key a sweep initialises config `seed`'s network from (fold_in(PRNGKey(seed), 0), `keys`)."""
    return keys(np.uint32(seed))[0]


def keys(seed):
    """[fold_in(PRNGKey(seed), k) for k in (KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT)], computed as one
    vmapped fold_in: the same keys from one threefry call site instead of three (each site costs
    compile time)."""
    key = jax.random.PRNGKey(seed)
    ks = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.array([KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT]))
    return list(ks)


def _struct(spec: ProgramSpec, run: Run | None):
    return run.struct if run is not None and spec.arch.fused else None


def init_state(spec: ProgramSpec, hp, data: Data, run: Run, given: TrainState | None = None) -> TrainState:
    """One config's starting state; where `run.given_params` / `run.given_state`, the params / model
    state of `given` replace the fresh ones."""
    if spec.model is not None:  # a user's module: its params and state come in as `given` (built on the host)
        return TrainState(given.params, given.model_state, optim.init_state(spec.optimizers, given.params),
                          jnp.zeros([], jnp.int32))
    dtype = jnp.dtype(spec.dtype)
    k_init, _, _ = keys(hp.seed)
    params, state = layers.init(spec.arch, k_init, dtype, fourier_scale=hp.fourier_scale, x_train=data.x_train,
                                struct=_struct(spec, run))
    if given is not None:
        params = layers.select(run.given_params, given.params, params)
        state = layers.select(run.given_state, given.model_state, state)
    return TrainState(params, state, optim.init_state(spec.optimizers, params), jnp.zeros([], jnp.int32))


def forward(spec: ProgramSpec, params, state, x, *, train: bool, mask=None, dropout_rate=None, dropout_key=None,
            struct=None, dropout_masks=None):
    """One network's forward pass -> (outputs, new state): the built-in network (`layers.apply`), or the
    user's nnx module (`jaxfit.flax.apply_graph`), which gets the mode, the row mask, the dropout key and
    rate through its signature or jaxfit.flax's layers."""
    if spec.model is not None:
        from .graph import apply_graph

        return apply_graph(spec.model, params, state, x, train=train, key=dropout_key if train else None,
                           rate=dropout_rate if train else None, mask=mask)
    return layers.apply(spec.arch, params, state, x, train=train, mask=mask, dropout_rate=dropout_rate,
                        dropout_key=dropout_key, struct=struct, dropout_masks=dropout_masks)


def _masked_update(spec: ProgramSpec, run: Run, params):
    """Padded units' weights stay exact zeros (their gradients are zero already; this makes it hold
    even when a diverged config's NaN reaches them)."""
    if not (spec.arch.padded or len(spec.arch.depths) > 1):
        return params
    masks = layers.dense_masks(spec.arch, run.struct)
    dense = [{k: jnp.where(m[k], d[k], 0) for k in d} for d, m in zip(params["dense"], masks)]
    return {**params, "dense": dense}


def train_steps(spec: ProgramSpec, hp, lr, data: Data, ts: TrainState, epoch_idx, run: Run, order=None,
                dropout_masks=None, record_steps: bool = False):
    """Every optimizer step of one epoch of one config.

    `lr` is this epoch's learning rate; `order` [steps, batch] the batch indices (-1 pads), or None
    to draw them from the config's shuffle key; `dropout_masks` [steps, hidden, batch, width] (0/1)
    replace the dropout draws. Returns (new state, {train_loss, last_batch_loss} and, with
    `record_steps`, each step's loss and parameters after it).
    """
    arch = spec.arch
    # A block of configs with one seed (`make_segment`'s share_seed) draws its batch order once: the
    # seed is then the block's scalar, not batched, so the permutation, the batch gather and the
    # first layer's product with the (shared) batch are computed once for the block, not per config.
    seed = choice.hint("seed")
    _, k_shuffle, k_dropout = keys(hp.seed if seed is None else seed)
    # Without an explicit order and with a batch size that divides the training split, no batch is
    # padded: the masking is left out of the program (statically), which saves work in every step.
    padded = order is not None or spec.n_train % spec.batch != 0
    if order is None:
        order = default_batch_order(spec, k_shuffle, epoch_idx)
    struct = _struct(spec, run)

    def batch_loss(params, model_state, idx, step, masks):
        if padded:
            mask = idx >= 0
            safe = jnp.where(mask, idx, 0)
        else:
            mask, safe = None, idx
        x, y = data.x_train[safe], data.y_train[safe]
        dkey = jax.random.fold_in(k_dropout, step) if arch.use_dropout or spec.model is not None else None
        out, new_state = forward(spec, params, model_state, x, train=True, mask=mask, dropout_rate=hp.dropout,
                                 dropout_key=dkey, struct=struct, dropout_masks=masks)
        per_example = layers.choose(run.loss, spec.losses, losses.LOSSES, out, y, name="loss")
        loss = losses.masked_mean(per_example, mask) if padded else jnp.mean(per_example)
        return loss, new_state

    grad_fn = jax.value_and_grad(batch_loss, has_aux=True)

    def step_fn(ts: TrainState, xs):
        idx, masks = xs
        (loss, new_model_state), grads = grad_fn(ts.params, ts.model_state, idx, ts.step, masks)
        params, opt_state = optim.step(spec.optimizers, run.optimizer, hp, run.nesterov, grads, ts.opt_state,
                                       ts.params, lr)
        params = _masked_update(spec, run, params)
        count = jnp.sum(idx >= 0).astype(loss.dtype) if padded else None
        rec = params if record_steps else None
        return TrainState(params, new_model_state, opt_state, ts.step + 1), (loss, count, rec)

    ts, (batch_losses, counts, recs) = lax.scan(step_fn, ts, (order, dropout_masks))
    train_loss = jnp.sum(batch_losses * counts) / jnp.sum(counts) if padded else jnp.mean(batch_losses)
    m = {"train_loss": train_loss, "last_batch_loss": batch_losses[-1]}
    if record_steps:
        m["step_loss"] = batch_losses
        m["step_params"] = recs
    return ts, m


def eval_rows(data: Data):
    """The rows the evaluation runs on: the training split followed by the validation split (built
    once per program; in eval mode every row is independent, so one pass serves both splits)."""
    return jnp.concatenate([data.x_train, data.x_val]), jnp.concatenate([data.y_train, data.y_val])


EVAL_SUBSAMPLE_SEED = 0  # the fixed rows of `eval_subsample` (the same for every config and epoch)


def eval_subsample(n: int, rows: int) -> np.ndarray:
    """Sorted indices of the `rows` (of `n`) a subsampled evaluation uses: all when rows >= n."""
    if rows <= 0 or rows >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(EVAL_SUBSAMPLE_SEED).permutation(n)[:rows])


def eval_metrics(spec: ProgramSpec, params, model_state, x, y, run: Run | None = None, n: int | None = None) -> dict:
    """The end-of-epoch evaluation of one config on `eval_rows`: eval-mode loss and accuracy on the
    training split (the first `n` rows, default n_train) and the validation split (NaN when it is
    empty)."""
    n = spec.n_train if n is None else n
    out, _ = forward(spec, params, model_state, x, train=False, struct=_struct(spec, run))
    loss = layers.choose(None if run is None else run.loss, spec.losses, losses.LOSSES, out, y, name="loss")
    right = layers.choose(None if run is None else run.struct.output, spec.arch.outputs,
                          {k: (lambda o, y, k=k: losses.correct(o, y, k)) for k in spec.arch.outputs}, out, y,
                           name="output")
    m = {"full_train_loss": jnp.mean(loss[:n]), "train_acc": jnp.mean(right[:n])}
    if x.shape[0] == n:
        nan = jnp.full([], jnp.nan, x.dtype)
        return {**m, "val_loss": nan, "val_acc": nan}
    return {**m, "val_loss": jnp.mean(loss[n:]), "val_acc": jnp.mean(right[n:])}


CHOICE_AXIS = "configs"  # the mesh axis a chunk's configs are sharded over


def choices_of(spec: ProgramSpec) -> tuple[str, ...]:
    """The choices the program has several values of (the names `layers.choose` and `optim.step`
    ask `jaxfit.nn.choice` about)."""
    a = spec.arch
    values = {"activation": a.activations, "output": a.outputs, "input_norm": a.input_norms,
              "encoding": a.encodings, "loss": spec.losses, "optimizer": spec.optimizers}
    return tuple(k for k, v in values.items() if len(v) > 1)


def choice_indices(spec: ProgramSpec, runs: Run) -> dict:
    """name -> the per-config index array (leading config axis) of each of `choices_of(spec)`; works
    on the host's arrays and on traced ones."""
    st = runs.struct
    fields = {"activation": st.activation, "output": st.output, "input_norm": st.input_norm,
              "encoding": st.encoding, "loss": runs.loss, "optimizer": runs.optimizer}
    return {k: fields[k] for k in choices_of(spec)}


def choice_boundaries(spec: ProgramSpec, runs: Run) -> frozenset[int]:
    """Positions p of a chunk's (host) Run arrays where some choice differs from position p - 1: a
    block of configs [i, j) shares every choice iff no boundary lies in (i, j)."""
    out: set[int] = set()
    for v in choice_indices(spec, runs).values():
        v = np.asarray(v)
        out.update((np.flatnonzero(v[1:] != v[:-1]) + 1).tolist())
    return frozenset(out)


def _block_choices(spec: ProgramSpec, runs: Run) -> dict:
    """The block's common index of each choice: its first config's (the engine guarantees the rest
    agree, see `choice_boundaries`)."""
    return {k: v[0] for k, v in choice_indices(spec, runs).items()}


def seed_boundaries(seeds) -> frozenset[int]:
    """Positions p of a chunk's (host) seed array where the seed differs from position p - 1."""
    v = np.asarray(seeds)
    return frozenset((np.flatnonzero(v[1:] != v[:-1]) + 1).tolist())


class Boundaries(NamedTuple):
    """Where a bucket's chunks change choice (`choice_boundaries`) and, for a shuffled bucket, seed
    (`seed_boundaries`; None: blocks never share a seed's batch order, as for an unshuffled bucket,
    whose order is the same for every config anyway)."""
    choices: frozenset
    seeds: frozenset | None = None


def blocked_vmap(f, block: int, groups: int = 1, hints=None):
    """`jax.vmap(f)` over the leading (config) axis, run `block` configs per group at a time with
    `lax.map`.

    On a CPU a block whose working set (parameters, optimizer state, activations) fits in the
    core's cache trains faster than all configs at once, whose state streams through memory every
    step (benchmarks/README.md). The n configs are split into `groups` contiguous ranges (one per
    device when the config axis is sharded over devices: each device then loops over its own range,
    with no communication) of n / groups configs, each run `block` at a time: a reshape of every
    leaf to [groups, n / (groups * block), block, ...], which moves no data. `block` <= 0, or a block
    covering a whole group, is plain vmap; otherwise `groups * block` must divide n.

    `hints(*block_args) -> {choice name: scalar index}`: each block's common choices, declared to
    `jaxfit.nn.choice` while the block is traced so each choice computes one branch (the caller
    guarantees every config of a block shares them). Only with one group: under an outer vmap over
    groups the index would be batched again (a sharded chunk runs this inside `shard_map`).
    """
    vf = jax.vmap(f)
    if hints is not None and groups != 1:
        raise ValueError("blocked_vmap: choice hints need one group (shard the chunk with shard_map)")

    def one_block(*a):
        if hints is None:
            return vf(*a)
        with choice.hinted(hints(*a)):
            return vf(*a)

    def run(*args):
        n = jax.tree_util.tree_leaves(args)[0].shape[0]
        if block <= 0 or block * groups >= n:
            return one_block(*args)
        if n % (groups * block):
            raise ValueError(f"{groups} group(s) of blocks of {block} do not divide the {n} configs of the chunk")
        nb = n // (groups * block)
        if groups == 1:  # no outer vmap: it would batch each block's hints again (a select, not a switch)
            split = jax.tree_util.tree_map(lambda a: a.reshape(nb, block, *a.shape[1:]), args)
            out = lax.map(lambda a: one_block(*a), split)
            return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[2:]), out)
        split = jax.tree_util.tree_map(lambda a: a.reshape(groups, nb, block, *a.shape[1:]), args)
        out = jax.vmap(lambda g: lax.map(lambda a: one_block(*a), g))(split)
        return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[3:]), out)

    return run


def make_segment(spec: ProgramSpec, epochs: int, *, train_block: int = 0, eval_block: int = 0, groups: int = 1,
                 record_steps: bool = False, hints: tuple[bool, bool] = (False, False), share_seed: bool = False):
    """The batched program for one bucket: `epochs` epochs of every config of a chunk per call.

    Returns `run(carry, first, epoch0, runs, hp, lrs, data, inputs) -> (Carry, metrics)`:
    `carry` the Carry of the previous call (on the first call, `first=True`, its params and
    model state are the replayed ones where `runs.given_*`, zeros elsewhere); `epoch0` the index of
    the segment's first epoch; every leaf of `runs`, `hp` and `lrs` [n, epochs] (the learning rate
    of each epoch) has a leading config axis n. `inputs` is a dict of optional replay inputs, each
    with a config axis: "order" [n, epochs, steps, batch] batch indices (-1 pads) and
    "dropout_masks" [n, epochs, steps, hidden, batch, width]. Metrics come back as {name: [epochs, n]}
    (with `record_steps` also "step_loss" [epochs, n, steps] and "step_params"). `train_block` /
    `eval_block`: configs per `lax.map` iteration and group (`groups`: the devices the config axis
    is sharded over) of the training steps and of the evaluation (`blocked_vmap`; 0: all at once).
    They change the speed, not the numbers (beyond the last-bit differences any change of XLA's
    kernels can make).

    `hints` (training, evaluation): every block of those configs shares its choices (the caller
    checked it on the host, `choice_boundaries`), so each choice computes one branch per block
    (`jaxfit.nn.choice`) instead of every branch for every config. With several groups the program
    is then a `shard_map` over the devices, each looping over its own configs' blocks.

    `share_seed`: every training block's configs have one seed (the caller checked it on the host,
    `seed_boundaries`), so each block draws one batch order and gathers each batch once
    (`train_steps`); the numbers are the same, since configs of one seed see the same batches anyway.
    """
    sharded = (any(hints) or share_seed) and groups > 1
    local = 1 if sharded else groups  # groups of one device's blocked_vmap

    def block_train_hints(h, r, *_):
        out = _block_choices(spec, r) if hints[0] else {}
        if share_seed:
            out["seed"] = h.seed[0]
        return out

    train_hints = block_train_hints if hints[0] or share_seed else None
    eval_hints = (lambda p, s, r: _block_choices(spec, r)) if hints[1] else None

    def run(carry, first, epoch0, runs, hp, lrs, data, inputs):
        x_eval, y_eval = eval_rows(data)
        ti = eval_subsample(spec.n_train, spec.eval_rows)
        vi = eval_subsample(spec.n_val, spec.eval_rows)
        x_sub = jnp.concatenate([data.x_train[ti], data.x_val[vi]])
        y_sub = jnp.concatenate([data.y_train[ti], data.y_val[vi]])

        def evaluate(ts, x, y, n):
            return blocked_vmap(lambda p, s, r: eval_metrics(spec, p, s, x, y, r, n), eval_block, local, eval_hints)(
                ts.params, ts.model_state, runs)

        def evaluation(ts, e):
            """The epoch's evaluation: in full every epoch by default; else only when due (every
            eval_every epochs, on the subsample) and at any config's last epoch (in full), NaN
            between. Each condition is one scalar for the whole chunk: a real branch, not a select."""
            if spec.eval_every == 1 and spec.eval_rows == 0:
                return evaluate(ts, x_eval, y_eval, spec.n_train)
            full = lambda: evaluate(ts, x_eval, y_eval, spec.n_train)  # noqa: E731
            sub = (lambda: evaluate(ts, x_sub, y_sub, len(ti))) if spec.eval_rows else full
            shapes = jax.eval_shape(full)
            skip = lambda: jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)  # noqa: E731
            last = jnp.any(e == runs.epochs - 1)
            if sharded:  # a condition for the whole chunk, as unsharded: any device's configs
                last = lax.psum(last.astype(jnp.int32), CHOICE_AXIS) > 0
            due = (e + 1) % spec.eval_every == 0
            return lax.cond(last, full, lambda: lax.cond(due, sub, skip))
        order = inputs.get("order")
        masks = inputs.get("dropout_masks")
        def fresh():
            ts = jax.vmap(lambda h, r, g: init_state(spec, h, data, r, g))(hp, runs, carry.ts)
            return Carry(ts, ts.params, ts.model_state, jnp.full_like(carry.best_score, -jnp.inf))

        c0 = lax.cond(first, fresh, lambda: carry)

        def one(h, r, lr, t, e, o, dm):
            new, m = train_steps(spec, h, lr, data, t, e, r, o, dm, record_steps)
            active = e < r.epochs
            new = layers.select(active, new, t)
            return new, m

        def body(c, k):
            ts = c.ts
            e = epoch0 + k
            lr_e = lrs[:, k]
            o = None if order is None else order[:, k]
            dm = None if masks is None else masks[:, k]
            ts, m = blocked_vmap(lambda h, r, lr, t, o, dm: one(h, r, lr, t, e, o, dm), train_block, local,
                                 train_hints)(
                hp, runs, lr_e, ts, o, dm)
            m.update(evaluation(ts, e))
            active = e < runs.epochs
            m = {k2: (jnp.where(active, v, jnp.nan) if k2 in METRICS else v) for k2, v in m.items()}
            score = best_score(m, spec.n_val)
            better = active & (score > c.best_score)  # strict: the earliest of ties; NaN never
            keep = jax.vmap(layers.select)
            c = Carry(ts, keep(better, ts.params, c.best_params), keep(better, ts.model_state, c.best_state),
                      jnp.where(better, score, c.best_score))
            return c, m

        return lax.scan(body, c0, jnp.arange(epochs, dtype=jnp.int32))

    if not sharded:
        return run
    from jax.sharding import Mesh, PartitionSpec as P

    c, r = P(CHOICE_AXIS), P()
    mesh = Mesh(np.array(jax.devices()), (CHOICE_AXIS,))
    return jax.shard_map(run, mesh=mesh, in_specs=(c, r, r, c, c, c, r, c), out_specs=(c, P(None, CHOICE_AXIS)),
                         check_vma=False)


def static_key(c: Config, num_features: int = 2, num_classes: int = 3, n_train: int = 0, n_val: int = 0):
    """What fixes the compiled program of `c` trained alone, for a data shape: its ProgramSpec
    (`spec_of`; one definition, not a second list of fields). Configs with equal keys
    share a program even unfused; the planner may fuse configs of different keys (jaxfit.engine.plan)."""
    return spec_of(c, n_train, n_val, num_features, num_classes)

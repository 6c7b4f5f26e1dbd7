"""The pure training program: `make_program(spec)` -> a function of arrays that jit and vmap take.

One config's run is `init_state` followed by `epochs` applications of `train_steps` and
`eval_metrics`; the program batches configs with `vmap` and loops over epochs with an outer `lax.scan` (so a progress callback fires once
per epoch for the whole chunk, not once per config), and over the steps of an epoch with an inner
`lax.scan`. Nothing runs per step in Python; the data stay on the device.

Randomness: each config's key is `PRNGKey(seed)`, split by purpose with `fold_in` (0 init and
Fourier features, 1 shuffling, 2 dropout), then folded with the epoch (shuffling) or the global step
(dropout). A config's numbers never depend on its position in the sweep.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .config import Static
from .nn import layers, losses, optim

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
    params: Any  # pytree, see nn.layers
    model_state: Any  # BatchNorm running stats, fixed encodings and input statistics
    opt_state: Any
    step: jax.Array  # [] int32: optimizer steps taken


class ProgramSpec(NamedTuple):
    """Everything that fixes one compiled program: the static config plus the data's shapes."""

    static: Static
    n_train: int
    n_val: int
    num_features: int
    num_outputs: int

    @property
    def batch(self) -> int:
        return self.n_train if self.static.batch_size == 0 else min(self.static.batch_size, self.n_train)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch)

    @property
    def arch(self) -> layers.Arch:
        s = self.static
        return layers.Arch(self.num_features, self.num_outputs, s.hidden, s.activation, s.output, s.init,
                           s.input_norm, s.batchnorm, s.use_dropout, s.encoding, s.fourier_features)


def num_outputs(loss: str, num_classes: int) -> int:
    return 1 if loss in ("bce", "bce_with_logits") else num_classes


def default_batch_order(spec: ProgramSpec, key: jax.Array, epoch) -> jax.Array:
    """[steps, batch] training indices of one epoch; the partial last batch is padded with -1.
    Shuffled with the config's shuffle key folded with the epoch, or in order (DataLoader shuffle=False)."""
    n, b, s = spec.n_train, spec.batch, spec.steps_per_epoch
    if spec.static.shuffle:
        idx = jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)
    else:
        idx = jnp.arange(n, dtype=jnp.int32)
    pad = s * b - n
    if pad:
        idx = jnp.concatenate([idx, jnp.full((pad,), -1, jnp.int32)])
    return idx.reshape(s, b)


def _keys(seed):
    """[fold_in(PRNGKey(seed), k) for k in (KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT)], computed as one
    vmapped fold_in: the same keys from one threefry call site instead of three (each site costs
    compile time)."""
    key = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.array([KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT]))
    return list(keys)


def init_state(spec: ProgramSpec, hp, data: Data, params=None, model_state=None) -> TrainState:
    """One config's starting state; `params` / `model_state` replace the fresh ones when given."""
    dtype = jnp.dtype(spec.static.dtype)
    k_init, _, _ = _keys(hp.seed)
    fresh_p, fresh_s = layers.init(spec.arch, k_init, dtype, fourier_scale=hp.fourier_scale,
                                   x_train=data.x_train)
    params = fresh_p if params is None else params
    model_state = fresh_s if model_state is None else model_state
    opt = optim.make(spec.static.optimizer, hp, spec.static.nesterov)
    return TrainState(params, model_state, opt.init(params), jnp.zeros([], jnp.int32))


def train_steps(spec: ProgramSpec, hp, lr, data: Data, ts: TrainState, epoch_idx, order=None):
    """Every optimizer step of one epoch of one config.

    `lr` is this epoch's learning rate; `order` [steps, batch] the batch indices (-1 pads), or None
    to draw them from the config's shuffle key. Returns (new state, {train_loss, last_batch_loss}).
    """
    arch, static = spec.arch, spec.static
    _, k_shuffle, k_dropout = _keys(hp.seed)
    # Without an explicit order and with a batch size that divides the training split, no batch is
    # padded: the masking is left out of the program (statically), which saves work in every step.
    padded = order is not None or spec.n_train % spec.batch != 0
    if order is None:
        order = default_batch_order(spec, k_shuffle, epoch_idx)
    opt = optim.make(static.optimizer, hp, static.nesterov)
    loss_fn = losses.LOSSES[static.loss]

    def batch_loss(params, model_state, idx, step):
        if padded:
            mask = idx >= 0
            safe = jnp.where(mask, idx, 0)
        else:
            mask, safe = None, idx
        x, y = data.x_train[safe], data.y_train[safe]
        dkey = jax.random.fold_in(k_dropout, step) if arch.use_dropout else None
        out, new_state = layers.apply(arch, params, model_state, x, train=True, mask=mask,
                                      dropout_rate=hp.dropout, dropout_key=dkey)
        per_example = loss_fn(out, y)
        loss = losses.masked_mean(per_example, mask) if padded else jnp.mean(per_example)
        return loss, new_state

    grad_fn = jax.value_and_grad(batch_loss, has_aux=True)

    def step_fn(ts: TrainState, idx):
        (loss, new_model_state), grads = grad_fn(ts.params, ts.model_state, idx, ts.step)
        params, opt_state = opt.step(grads, ts.opt_state, ts.params, lr)
        count = jnp.sum(idx >= 0).astype(loss.dtype) if padded else None
        return TrainState(params, new_model_state, opt_state, ts.step + 1), (loss, count)

    ts, (batch_losses, counts) = lax.scan(step_fn, ts, order)
    train_loss = jnp.sum(batch_losses * counts) / jnp.sum(counts) if padded else jnp.mean(batch_losses)
    return ts, {"train_loss": train_loss, "last_batch_loss": batch_losses[-1]}


def eval_rows(data: Data):
    """The rows the evaluation runs on: the training split followed by the validation split (built
    once per program; in eval mode every row is independent, so one pass serves both splits)."""
    return jnp.concatenate([data.x_train, data.x_val]), jnp.concatenate([data.y_train, data.y_val])


def eval_metrics(spec: ProgramSpec, params, model_state, x, y) -> dict:
    """The end-of-epoch evaluation of one config on `eval_rows`: eval-mode loss and accuracy on the
    training split (the first n_train rows) and the validation split (NaN when it is empty)."""
    n = spec.n_train
    out, _ = layers.apply(spec.arch, params, model_state, x, train=False)
    loss = losses.LOSSES[spec.static.loss](out, y)
    right = losses.correct(out, y, spec.static.output)
    m = {"full_train_loss": jnp.mean(loss[:n]), "train_acc": jnp.mean(right[:n])}
    if x.shape[0] == n:
        nan = jnp.full([], jnp.nan, x.dtype)
        return {**m, "val_loss": nan, "val_acc": nan}
    return {**m, "val_loss": jnp.mean(loss[n:]), "val_acc": jnp.mean(right[n:])}


def blocked_vmap(f, block: int, groups: int = 1):
    """`jax.vmap(f)` over the leading (config) axis, run `block` configs per group at a time with
    `lax.map`.

    On a CPU a block whose working set (parameters, optimizer state, activations) fits in the
    core's cache trains faster than all configs at once, whose state streams through memory every
    step (benchmarks/README.md). The n configs are split into `groups` contiguous ranges (one per
    device when the config axis is sharded over devices: each device then loops over its own range,
    with no communication) of n / groups configs, each run `block` at a time: a reshape of every
    leaf to [groups, n / (groups * block), block, ...], which moves no data. `block` <= 0, or a block
    covering a whole group, is plain vmap; otherwise `groups * block` must divide n.
    """
    vf = jax.vmap(f)

    def run(*args):
        n = jax.tree_util.tree_leaves(args)[0].shape[0]
        if block <= 0 or block * groups >= n:
            return vf(*args)
        if n % (groups * block):
            raise ValueError(f"{groups} group(s) of blocks of {block} do not divide the {n} configs of the chunk")
        nb = n // (groups * block)
        split = jax.tree_util.tree_map(lambda a: a.reshape(groups, nb, block, *a.shape[1:]), args)
        out = jax.vmap(lambda g: lax.map(lambda a: vf(*a), g))(split)
        return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[3:]), out)

    return run


def make_program(spec: ProgramSpec, *, with_params: bool = False, with_state: bool = False,
                 with_order: bool = False, progress=None, train_block: int = 0, eval_block: int = 0,
                 groups: int = 1):
    """The batched program for one bucket.

    Returns `run(hp, lrs, data, [params], [model_state], [order]) -> (final TrainState, metrics)`
    where every leaf of `hp` and `lrs` [n, epochs] has a leading config axis n, `params` (when
    `with_params`) and `model_state` (when `with_state`; else fresh) too, and `order`
    [n, epochs, steps, batch] (when `with_order`). Metrics come
    back as {name: [epochs, n]}. `progress(epoch)` (optional) is called on the host after each epoch.
    `train_block` / `eval_block`: configs per `lax.map` iteration and group (`groups`: the devices
    the config axis is sharded over) of the training steps and of the evaluation (`blocked_vmap`;
    0: all at once). They change the speed, not the numbers (beyond
    the last-bit differences any change of XLA's kernels can make).
    """
    def run(hp, lrs, data, *extra):
        extra = list(extra)
        params = model_state = order = None
        if with_params:
            params = extra.pop(0)
        if with_state:
            model_state = extra.pop(0)
        if with_order:
            order = extra.pop(0)
        x_eval, y_eval = eval_rows(data)
        ts0 = jax.vmap(lambda h, p, s: init_state(spec, h, data, p, s),
                       in_axes=(0, 0 if with_params else None, 0 if with_state else None))(hp, params, model_state)

        def body(ts, e):
            lr_e = lrs[:, e]
            o = lax.dynamic_index_in_dim(order, e, axis=1, keepdims=False) if with_order else None
            ts, m = blocked_vmap(lambda h, lr, t, oo: train_steps(spec, h, lr, data, t, e, oo),
                                 train_block, groups)(hp, lr_e, ts, o)
            m.update(blocked_vmap(lambda p, s: eval_metrics(spec, p, s, x_eval, y_eval), eval_block, groups)(
                ts.params, ts.model_state))
            if progress is not None:
                jax.debug.callback(progress, e)
            return ts, m

        return lax.scan(body, ts0, jnp.arange(spec.static.epochs, dtype=jnp.int32))

    return run

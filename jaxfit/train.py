"""The pure training program: `make_program(spec)` -> a function of arrays that jit and vmap take.

One config's run is `init_state` followed by `epochs` applications of `epoch`; the program batches
configs with `vmap` and loops over epochs with an outer `lax.scan` (so a progress callback fires once
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
    key = jax.random.PRNGKey(seed)
    return [jax.random.fold_in(key, k) for k in (KEY_INIT, KEY_SHUFFLE, KEY_DROPOUT)]


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


def evaluate(spec: ProgramSpec, params, model_state, x, y):
    """(mean loss, accuracy) in eval mode on a whole split."""
    if x.shape[0] == 0:
        nan = jnp.full([], jnp.nan, x.dtype)
        return nan, nan
    out, _ = layers.apply(spec.arch, params, model_state, x, train=False)
    return (jnp.mean(losses.LOSSES[spec.static.loss](out, y)),
            jnp.mean(losses.correct(out, y, spec.static.output)))


def epoch(spec: ProgramSpec, hp, lr, data: Data, ts: TrainState, epoch_idx, order=None):
    """One epoch of one config: every step, then the end-of-epoch evaluation.

    `lr` is this epoch's learning rate; `order` [steps, batch] the batch indices (-1 pads), or None
    to draw them from the config's shuffle key. Returns (new state, {metric: scalar}).
    """
    arch, static = spec.arch, spec.static
    _, k_shuffle, k_dropout = _keys(hp.seed)
    if order is None:
        order = default_batch_order(spec, k_shuffle, epoch_idx)
    opt = optim.make(static.optimizer, hp, static.nesterov)
    loss_fn = losses.LOSSES[static.loss]

    def batch_loss(params, model_state, idx, step):
        mask = idx >= 0
        safe = jnp.where(mask, idx, 0)
        x, y = data.x_train[safe], data.y_train[safe]
        out, new_state = layers.apply(arch, params, model_state, x, train=True, mask=mask,
                                      dropout_rate=hp.dropout, dropout_key=jax.random.fold_in(k_dropout, step))
        return losses.masked_mean(loss_fn(out, y), mask), new_state

    grad_fn = jax.value_and_grad(batch_loss, has_aux=True)

    def step_fn(ts: TrainState, idx):
        (loss, new_model_state), grads = grad_fn(ts.params, ts.model_state, idx, ts.step)
        params, opt_state = opt.step(grads, ts.opt_state, ts.params, lr)
        count = jnp.sum(idx >= 0).astype(loss.dtype)
        return TrainState(params, new_model_state, opt_state, ts.step + 1), (loss, count)

    ts, (batch_losses, counts) = lax.scan(step_fn, ts, order)
    full_loss, train_acc = evaluate(spec, ts.params, ts.model_state, data.x_train, data.y_train)
    val_loss, val_acc = evaluate(spec, ts.params, ts.model_state, data.x_val, data.y_val)
    metrics = {
        "train_loss": jnp.sum(batch_losses * counts) / jnp.sum(counts),
        "last_batch_loss": batch_losses[-1],
        "full_train_loss": full_loss,
        "train_acc": train_acc,
        "val_loss": val_loss,
        "val_acc": val_acc,
    }
    return ts, metrics


def make_program(spec: ProgramSpec, *, with_params: bool = False, with_state: bool = False,
                 with_order: bool = False, progress=None):
    """The batched program for one bucket.

    Returns `run(hp, lrs, data, [params], [model_state], [order]) -> (final TrainState, metrics)`
    where every leaf of `hp` and `lrs` [n, epochs] has a leading config axis n, `params` (when
    `with_params`) and `model_state` (when `with_state`; else fresh) too, and `order`
    [n, epochs, steps, batch] (when `with_order`). Metrics come
    back as {name: [epochs, n]}. `progress(epoch)` (optional) is called on the host after each epoch.
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
        ts0 = jax.vmap(lambda h, p, s: init_state(spec, h, data, p, s),
                       in_axes=(0, 0 if with_params else None, 0 if with_state else None))(hp, params, model_state)

        def body(ts, e):
            lr_e = lrs[:, e]
            if with_order:
                o = lax.dynamic_index_in_dim(order, e, axis=1, keepdims=False)
                ts, m = jax.vmap(lambda h, lr, t, oo: epoch(spec, h, lr, data, t, e, oo))(hp, lr_e, ts, o)
            else:
                ts, m = jax.vmap(lambda h, lr, t: epoch(spec, h, lr, data, t, e))(hp, lr_e, ts)
            if progress is not None:
                jax.debug.callback(progress, e)
            return ts, m

        return lax.scan(body, ts0, jnp.arange(spec.static.epochs, dtype=jnp.int32))

    return run

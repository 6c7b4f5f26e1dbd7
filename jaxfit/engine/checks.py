"""Checks of a sweep's inputs against its data, run before anything is planned or compiled."""

from __future__ import annotations

import math

import numpy as np

from .. import config as cfgmod
from ..config import Config
from ..datasets import Dataset
from ..errors import UserError
from ..program.train import effective_batch



def check_config_for_data(c: Config, data: Dataset, index: int | None = None) -> None:
    """Refuse, before compiling, a config that cannot train on these data."""
    where = f"config {index}" if index is not None else "config"
    n = data.n_train
    if c.loss in cfgmod.ONE_UNIT_LOSSES and data.num_classes != 2:
        raise UserError(f"{where}: Config.loss={c.loss!r} needs 2 classes (one output unit); "
                         f"dataset {data.name!r} has {data.num_classes}: use loss='cross_entropy' or 'mse'")
    uses_bn = c.batchnorm or c.input_norm == "batchnorm"
    if uses_bn:
        b = effective_batch(c.batch_size, n)
        if b == 1 or n % b == 1:
            raise UserError(
                f"{where}: Config.batch_size={c.batch_size} leaves a training batch of 1 row on {n} training "
                "points, and batch norm in training needs more than 1 value per channel (PyTorch raises): "
                "choose a batch size whose last batch is not 1 row")
    if c.encoding == "identity" and data.num_features < 1:  # pragma: no cover - Dataset refuses it
        raise UserError(f"{where}: dataset has no features")


def check_batch_order(order, c: Config, n_train: int, where: str = "batch_order") -> np.ndarray:
    order = np.asarray(order)
    b = effective_batch(c.batch_size, n_train)
    want = (c.epochs, math.ceil(n_train / b), b)
    if order.ndim != 3 or order.shape != want:
        raise UserError(f"{where}: shape {order.shape} is invalid: need [epochs, steps, batch] = {list(want)} "
                         "(a partial last batch padded with -1)")
    if not np.issubdtype(order.dtype, np.integer):
        raise UserError(f"{where}: must hold integer training-set indices, got dtype {order.dtype}")
    if order.min() < -1 or order.max() >= n_train:
        raise UserError(f"{where}: indices must lie in 0..{n_train - 1} (or -1 for padding), "
                         f"got {order.min()}..{order.max()}")
    if (order[:, :, 0] < 0).any():
        raise UserError(f"{where}: every batch needs at least one real index in its first slot")
    return order.astype(np.int32)


def check_dropout_masks(masks, c: Config, order: np.ndarray, where: str = "dropout_masks") -> np.ndarray:
    """`masks[e][s][k]`: the 0/1 keep mask [batch, hidden[k]] of hidden layer k at step s of epoch e
    (torchref.train's format; rows aligned with the batch order), as one array
    [epochs, steps, n_hidden, batch, max width] (padded with ones)."""
    E, S, B = order.shape
    W = max(c.hidden) if c.hidden else 0
    out = np.ones((E, S, len(c.hidden), B, W), np.float64)
    try:
        for e in range(E):
            for s in range(S):
                for k, h in enumerate(c.hidden):
                    m = np.asarray(masks[e][s][k], np.float64)
                    if m.shape != (B, h):
                        raise UserError(f"{where}[{e}][{s}][{k}]: shape {m.shape} is invalid: need "
                                         f"[batch, width] = [{B}, {h}]")
                    if not np.isin(m, (0.0, 1.0)).all():
                        raise UserError(f"{where}[{e}][{s}][{k}]: must hold only 0 and 1")
                    out[e, s, k, :, :h] = m
    except (IndexError, TypeError) as err:
        raise UserError(f"{where}: need [epochs={E}][steps={S}][hidden={len(c.hidden)}] masks of "
                         f"[batch, width]: {err}") from None
    return out

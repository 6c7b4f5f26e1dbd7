"""flax.linen modules in a sweep: `jaxfit.sweep(data, configs, model=from_linen(make))` with
`make(config, num_features, num_outputs) -> flax.linen.Module`.

The linen module is wrapped by `flax.nnx.bridge.ToNNX` and initialised on one zero row of the data's
width (its `rngs`: the config's seed, as every jaxfit network). Its `__call__` gets `train=` when it
names that argument. Its parameters are trained by jaxfit's optimisers like any nnx.Param. Not wired:
linen's own Dropout rng stream and mutable collections (BatchNorm's batch_stats): for those, build the
network from jaxfit.flax layers, whose Dropout and BatchNorm1d take the program's key, rate and mask.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
from flax import nnx


class Linen(nnx.Module):
    """A linen module as an nnx module that follows jaxfit's contract `module(x, *, train)`."""

    def __init__(self, module, num_features: int, *, rngs: nnx.Rngs, dtype="float32"):
        self.inner = nnx.bridge.ToNNX(module, rngs=rngs)
        nnx.bridge.lazy_init(self.inner, jnp.zeros((1, num_features), jnp.dtype(dtype)))
        self.inner.to_nnx__rngs = None  # its RNG streams were for the init only (linen dropout is not wired)
        try:
            names = inspect.signature(type(module).__call__).parameters
        except (TypeError, ValueError):  # pragma: no cover
            names = {}
        self.takes_train = "train" in names

    def __call__(self, x, *, train: bool = False):
        return self.inner(x, train=train) if self.takes_train else self.inner(x)


def from_linen(make):
    """A `model=` factory from `make(config, num_features, num_outputs) -> flax.linen.Module`."""

    def factory(config, num_features, num_outputs, rngs):
        return Linen(make(config, num_features, num_outputs), num_features, rngs=rngs, dtype=config.dtype)

    factory.__qualname__ = f"from_linen({getattr(make, '__qualname__', repr(make))})"
    return factory

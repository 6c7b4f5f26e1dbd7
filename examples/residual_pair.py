"""A residual MLP written twice, in Flax (jaxfit.flax layers) and in PyTorch (the matching torch
layers), with the same attribute names, so that their variables map by path; and the replay that
shows they train the same:

    python examples/residual_pair.py            # the epoch table and the verdict (float64)
    jaxfit parity "optimizer=adam lr=0.01 batch_size=32 epochs=8" --dtype float64 --pair examples/residual_pair.py

BatchNorm comes before the block's Linear, not after it: a bias right before BatchNorm has an exactly
zero gradient, which both frameworks compute as rounding noise, and Adam divides that noise by its
own tiny running average: the bias then drifts apart by about 1e-9 within 8 steps in float64 (a
real divergence of the two runs, not a semantic difference, measured while building this example).

Port your own PyTorch model the same way: build the Flax twin from jaxfit.flax.Linear / BatchNorm1d /
..., keep the attribute names, and call torchref.parity.replay_pair(data, config, factory, module).
"""

from __future__ import annotations

import torch
from flax import nnx
from torch import nn

import jaxfit.flax as jf


class FlaxResMLP(nnx.Module):
    def __init__(self, num_features: int, num_outputs: int, width: int = 16, *, rngs: nnx.Rngs, dtype=None):
        kw = {} if dtype is None else {"dtype": dtype}
        self.inp = jf.Linear(num_features, width, rngs=rngs, **kw)
        self.block = jf.Linear(width, width, rngs=rngs, **kw)
        self.bn = jf.BatchNorm1d(width, **kw)
        self.out = jf.Linear(width, num_outputs, rngs=rngs, **kw)

    def __call__(self, x):
        h = nnx.relu(self.inp(x))
        h = h + nnx.relu(self.block(self.bn(h)))
        return self.out(h)


class TorchResMLP(nn.Module):
    def __init__(self, num_features: int, num_outputs: int, width: int = 16):
        super().__init__()
        self.inp = nn.Linear(num_features, width)
        self.block = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.out = nn.Linear(width, num_outputs)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.block(self.bn(h)))
        return self.out(h)


def flax_factory(config, num_features, num_outputs, rngs):
    import jax.numpy as jnp

    return FlaxResMLP(num_features, num_outputs, rngs=rngs, dtype=jnp.dtype(config.dtype))


def torch_module(config, num_features, num_outputs):
    """The PyTorch twin, seeded from the config (its own nn.Linear init: the Flax twin gets these weights)."""
    torch.manual_seed(config.seed)
    m = TorchResMLP(num_features, num_outputs)
    return m.double() if config.dtype == "float64" else m


def main() -> int:
    import jaxfit
    from torchref.parity import replay_pair

    data = jaxfit.datasets.sum_bin(n=256, seed=0)
    config = jaxfit.Config(optimizer="adam", lr=1e-2, batch_size=32, epochs=8, dtype="float64")
    torch.manual_seed(0)
    twin = TorchResMLP(data.num_features, data.num_classes).double()
    r = replay_pair(data, config, flax_factory, twin)
    print(r.table())
    print(r.verdict())
    return 0 if r.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""jaxfit's PyTorch semantics as `flax.nnx` modules.

    from flax import nnx
    from jaxfit.flax import Linear, BatchNorm1d, Dropout, MLP

    layer = Linear(8, 4, init="torch", rngs=nnx.Rngs(0))       # weight [4, 8], U(+-1/sqrt(8)), bias too
    mlp = MLP.from_config(config, num_features, num_outputs)    # drawn as a sweep of `config` draws it
    mlp = result.to_flax(i)                                     # a sweep's trained network, eval mode

Layers (jaxfit.flax.modules): `Linear` (torch layout and init schemes), `BatchNorm1d` (torch's
momentum and unbiased running variance, row masks), `Dropout` (a rate that may be a traced array),
`Standardize` and `Fourier` (non-trainable `Buffer` variables). They compute with the functions of
`jaxfit.nn.layers` and `jaxfit.nn.init`, the ones the compiled program runs. Stock Flax layers differ:
nnx.Linear keeps an (in, out) kernel drawn lecun_normal with a zero bias, nnx.BatchNorm a biased
running variance with momentum 0.99 (the other way round), nnx.Dropout cannot take a traced rate.

`state_dict` / `load_state_dict`: a module's variables as {"linear0.weight": array, ...} and back
(strict), the names of the PyTorch twin's state_dict. `split_for_program` / `apply_graph`: a module
as (static graph, params, state) and a pure forward pass, for a vmapped training program.
`from_linen(make)`: a flax.linen module as a sweep's `model=` factory (jaxfit.flax.linen).
"""

from .linen import Linen, from_linen
from ..program.train import init_key
from .mlp import MLP
from .modules import (SCHEMES, BatchNorm1d, Buffer, Dropout, Fourier, FourierMatrix, Hyper, InputStat, Linear,
                      Standardize)
from ..program.graph import apply_graph, program_inputs, split_for_program
from .state_dict import load_state_dict, state_dict

__all__ = [
    "Linen", "MLP", "SCHEMES", "BatchNorm1d", "Buffer", "Dropout", "Fourier", "FourierMatrix", "Hyper", "InputStat", "Linear",
    "Standardize", "apply_graph", "from_linen", "init_key", "load_state_dict", "program_inputs", "split_for_program", "state_dict",
]

"""An nnx module inside a jitted, vmapped program: split it once into a static graph and two
pytrees (what vmap batches over configs), and call the graph functionally.

    graphdef, params, state = split_for_program(module)       # graphdef: hashable, static
    out, new_state = apply_graph(graphdef, params, state, x, train=True, key=k, rate=r, mask=m)
    grads = jax.grad(lambda p: loss(apply_graph(graphdef, p, state, x, train=True, key=k)[0]))(params)

`apply_graph` calls `module(x, **kw)` with those of train / key / rate / mask that its `__call__`
names (or takes through **kwargs), and opens `program_inputs(...)` around the call, so that
jaxfit.flax's Dropout and BatchNorm1d layers deep inside a user's module get the program's mode, dropout
key (the j-th Dropout called: fold_in(key, j)), rate (a Dropout built with rate=None) and row mask
without the module passing them on. A module whose `__call__` has no `train` argument gets its mode
from there too (layers of other packages keep the mode they were split in).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from dataclasses import dataclass, field
from typing import Any

from flax import nnx



@dataclass
class _Inputs:
    train: bool | None = None
    key: Any = None
    rate: Any = None
    mask: Any = None
    drawn: list = field(default_factory=lambda: [0])  # dropout keys handed out so far


_INPUTS: contextvars.ContextVar[_Inputs | None] = contextvars.ContextVar("jaxfit_flax_inputs", default=None)


@contextlib.contextmanager
def program_inputs(*, train: bool | None = None, key=None, rate=None, mask=None):
    """What a call leaves out, the layers of this package take from here while the block runs:
    `train` (Dropout active and BatchNorm on batch statistics, or not), the dropout `key` (the j-th
    Dropout called in the block draws from fold_in(key, j)), the dropout `rate` (for a Dropout built
    with rate=None) and the BatchNorm row `mask` [B] (real rows of a padded batch)."""
    token = _INPUTS.set(_Inputs(train, key, rate, mask))
    try:
        yield
    finally:
        _INPUTS.reset(token)


def current_inputs() -> _Inputs:
    """What the innermost open `program_inputs` block hands the layers (all None outside one)."""
    return _INPUTS.get() or _Inputs()



def split_for_program(module: nnx.Module):
    """(graphdef, params, state): the static structure (hashable: a program's cache key), the
    nnx.Param variables (what the optimiser trains) and everything else (BatchNorm statistics,
    buffers, RNG state), as nnx.State pytrees."""
    return nnx.split(module, nnx.Param, ...)


def _accepted(fn, names) -> set[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return set()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return set(names)
    return {n for n in names if n in sig.parameters}


def apply_graph(graphdef, params, state, x, *, train: bool, key=None, rate=None, mask=None):
    """The module's forward pass as a pure function: (outputs, new state) with the structure of
    `state` (BatchNorm running statistics updated in training)."""
    module = nnx.merge(graphdef, params, state, copy=True)  # fresh Variables of this trace level
    given = {"train": train, "key": key, "rate": rate, "mask": mask}
    kw = {n: given[n] for n in _accepted(module.__call__, given) if given[n] is not None}
    with program_inputs(train=train, key=key, rate=rate, mask=mask):
        out = module(x, **kw)
    _, _, new_state = nnx.split(module, nnx.Param, ...)
    return out, new_state

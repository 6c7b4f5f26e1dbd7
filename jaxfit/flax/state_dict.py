"""A module's variables as a flat dict keyed by attribute path, and back: the converter between a
`flax.nnx` module and a PyTorch `state_dict` (same names for the twins built from this package's
layers and torch's: "linear0.weight", "layers.0.bias", "bn0.running_var", ...)."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .modules import Hyper
from ..errors import UserError

DEFAULT_FILTER = nnx.Not(nnx.Any(nnx.RngState, Hyper))  # RNG streams and run numbers: no part of a state_dict


def _key(path) -> str:
    return ".".join(str(p) for p in path)


def _state(tree, filter):
    return nnx.filter_state(tree, filter) if isinstance(tree, nnx.State) else nnx.state(tree, filter)


def _flat(tree, filter) -> list:
    return [(_key(path), var) for path, var in nnx.to_flat_state(_state(tree, filter))]


def state_dict(tree, filter=DEFAULT_FILTER) -> dict[str, Any]:
    """{"<attribute path joined by '.'>": array} of every variable of `tree` (an nnx Module or
    State) that `filter` keeps (default: all but RNG state and `Hyper` numbers), in nnx's path order."""
    return {k: var.get_value() for k, var in _flat(tree, filter)}


def _array(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def load_state_dict(tree, flat: Mapping[str, Any], filter=DEFAULT_FILTER):
    """Put the arrays of `flat` (keys as `state_dict` gives them; NumPy, JAX or torch arrays) into
    `tree`: a Module is updated in place and returned, a State is returned updated. Strict, as
    torch's `load_state_dict`: a missing or unexpected key, or a shape that differs, raises
    ValueError naming each; values are cast to the variable's dtype."""
    have = dict(_flat(tree, filter))
    missing = [k for k in have if k not in flat]
    extra = [k for k in flat if k not in have]
    if missing or extra:
        parts = ([f"missing key(s) {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected key(s) {', '.join(extra)}"] if extra else [])
        raise UserError(f"load_state_dict: {'; '.join(parts)}")
    new, bad = {}, []
    for k, var in have.items():
        a = _array(flat[k])
        old = var.get_value()
        if a.shape != tuple(old.shape):
            bad.append(f"{k} has shape {a.shape}, the module's {tuple(old.shape)}")
        new[k] = jnp.asarray(a, old.dtype)
    if bad:
        raise UserError(f"load_state_dict: {'; '.join(bad)}")
    state = tree if isinstance(tree, nnx.State) else nnx.state(tree, filter)  # a State: all of it
    updated = nnx.from_flat_state([(path, var.replace(new[_key(path)]) if _key(path) in new else var)
                                   for path, var in nnx.to_flat_state(state)])
    if isinstance(tree, nnx.State):
        return updated
    nnx.update(tree, updated)
    return tree

"""One branch per block of configs: the per-config choices of a fused program as real branches.

A fused program trains configs of different activations, outputs, losses, optimisers, input
normalisations and encodings. Under `vmap` a per-config choice is a select: every branch present is
computed for every config and the config's own kept (`layers.choose`). When the configs of a block
(one `lax.map` iteration of `program.train.blocked_vmap`) all make the same choice, the block's
common index is a scalar the block's `vmap` does not batch, and `lax.switch` on it computes one
branch only. The engine sorts a bucket's configs by their choices, aligns the blocks to the choice
boundaries and checks on the host that every block of every chunk is homogeneous before it asks for
such a program (`jaxfit.engine.compile`): a hint must never be wrong, since it is not checked inside.

`hinted({name: index})` declares the block's common index of each named choice while the block's
computation is traced; `hint(name)` reads it (None outside, or for a choice not declared). The
numbers are those of the select: the same branch's same operations, computed for fewer configs.
"""

from __future__ import annotations

import contextlib
import threading

import jax

_local = threading.local()


@contextlib.contextmanager
def hinted(hints: dict):
    """Trace the body with these block-wide choice indices (name -> scalar int32 index)."""
    stack = _local.__dict__.setdefault("stack", [])
    stack.append(dict(hints))
    try:
        yield
    finally:
        stack.pop()


def hint(name: str | None):
    """The block's common index of choice `name`, if one was declared around this trace."""
    stack = getattr(_local, "stack", None)
    if not stack or name is None:
        return None
    return stack[-1].get(name)


def pick(index, name: str | None, branches: list, *args):
    """`branches[index](*args)` for a multi-branch choice: `lax.switch` on the block's hint when
    there is one, else every branch computed and each config's own selected."""
    h = hint(name)
    if h is not None:
        return jax.lax.switch(h, branches, *args)
    outs = [f(*args) for f in branches]
    return jax.tree_util.tree_map(lambda *xs: jax.lax.select_n(jax.numpy.asarray(index, "int32"), *xs), *outs)

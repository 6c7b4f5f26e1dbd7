"""Params / model-state pytrees (dicts and lists of arrays) as flat {"dense/0/w": array} dicts and
back: the one spelling of a leaf's path in saved results, checkpoints and the parity tests."""

from __future__ import annotations

import numpy as np


def flatten(tree, prefix=""):
    """A params / model-state pytree (dicts and lists) as {"dense/0/w": array, ...}: the one spelling
    of a leaf's path in saved results, checkpoints and the parity tests."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: np.asarray(tree)}
    out = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    return out


def unflatten(flat: dict[str, np.ndarray]):
    root: dict = {}
    for path, v in flat.items():
        node = root
        parts = path.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v

    def fix(n):
        if not isinstance(n, dict):
            return n
        if n and all(k.isdigit() for k in n):
            return [fix(n[str(i)]) for i in range(len(n))]
        return {k: fix(v) for k, v in n.items()}

    return fix(root)

"""`jaxfit datasets`: the built-in dataset generators, a line each (no JAX import)."""

from __future__ import annotations

import argparse


def cmd_datasets(args: argparse.Namespace) -> int:
    import inspect

    from jaxfit.datasets import DATASETS

    for name, fn in sorted(DATASETS.items()):
        params = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(fn).parameters.values())
        doc = (fn.__doc__ or "").strip().splitlines()[0]
        print(f"{name:12s} {doc}  [{params}]")
    print("file         your own CSV / Parquet (label = column) or npz (arrays x, y): [[data]] file = \"...\"")
    return 0

"""Packages whose names are imported on first use (PEP 562), so that importing them starts nothing
heavy (no JAX): `__getattr__, __dir__ = lazy(__name__, globals(), submodules, names)`."""

from __future__ import annotations

import importlib
from typing import Callable, Mapping, Sequence


def lazy(package: str, namespace: dict, submodules: Sequence[str],
         names: Mapping[str, str]) -> tuple[Callable, Callable]:
    """(__getattr__, __dir__) for `package`: a name of `submodules` imports that submodule, a name of
    `names` is taken from the submodule it maps to; each is kept in `namespace` once imported."""

    def __getattr__(name: str):
        if name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        elif name in names:
            value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(names) | set(submodules))

    return __getattr__, __dir__

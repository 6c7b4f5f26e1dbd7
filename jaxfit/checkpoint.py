"""Chunk checkpoints: every finished chunk is written to disk at once, so a run that dies loses at
most the chunk in flight, and a rerun into the same directory picks up the finished chunks.

A chunk file is keyed by the dataset's fingerprint and the exact configs it holds (in order), so a
changed config, dataset or chunk plan simply misses and is trained afresh; a hit is bitwise the
result that was saved. Files are written to a temporary name and renamed, so a crash mid-write
leaves no half file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence

import numpy as np


class ChunkStore:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.hits = 0
        self.writes = 0

    @staticmethod
    def key(fingerprint: str, configs: Sequence[Any]) -> str:
        blob = json.dumps([fingerprint, [c.to_dict() for c in configs]], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _file(self, key: str) -> str:
        return os.path.join(self.path, f"chunk-{key}.npz")

    def has(self, key: str) -> bool:
        """Whether a chunk with this key is saved (without loading it)."""
        return os.path.exists(self._file(key))

    def get(self, key: str) -> list[dict] | None:
        """The saved per-config outputs [{"metrics", "params", "model_state"}, ...] or None."""
        from .results import _unflatten

        if not self.has(key):
            return None
        with np.load(self._file(key)) as z:
            n = int(z["__n__"])
            per: list[dict[str, dict]] = [{"metrics": {}, "params": {}, "model_state": {}} for _ in range(n)]
            for name in z.files:
                if name == "__n__":
                    continue
                i, kind, rest = name.split("/", 2)
                per[int(i)][kind][rest] = z[name]
        self.hits += 1
        return [{"metrics": p["metrics"], "params": _unflatten(p["params"]),
                 "model_state": _unflatten(p["model_state"])} for p in per]

    def put(self, key: str, outputs: Sequence[dict]) -> None:
        from .results import _flatten

        flat: dict[str, np.ndarray] = {"__n__": np.array(len(outputs))}
        for i, o in enumerate(outputs):
            for kind in ("metrics", "params", "model_state"):
                flat.update({f"{i}/{kind}/{k}": v for k, v in _flatten(o[kind]).items()})
        tmp = self._file(key) + ".tmp.npz"
        np.savez(tmp, **flat)
        os.replace(tmp, self._file(key))
        self.writes += 1

"""Chunk checkpoints: every finished chunk is written to disk at once, so a run that dies loses at
most the chunk in flight, and a rerun into the same directory picks up the finished chunks.

A chunk file ``chunk-<key>.npz`` is keyed by the dataset's fingerprint and the exact configs it holds
(in order), so a changed config, dataset or chunk plan simply misses and is trained afresh. Inside,
next to the arrays, ``__meta__`` records what the numbers depend on: the key, a sha256 of the configs,
the dataset fingerprint, the matmul precision, the configs' dtypes, the jaxfit and jax versions, and a
sha256 over every array. `get` checks all of it: a chunk that cannot be read (truncated, bit-flipped)
or that belongs elsewhere (another chunk's file under this name, other settings, another version) is
reported in a warning naming the file and the problem, moved aside to ``<name>.bad`` and retrained,
never trusted. Files are written through `fsio` (a unique temporary per writer, fsync, rename), so a
crash mid-write leaves no half file and a full disk raises `fsio.OutputError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any, Sequence

import numpy as np

from ..config import configs_sha256
from ..errors import JaxfitWarning, UserError
from ..io import files as fsio
from ..io.tree import flatten, unflatten
from ..version import __version__

CHUNK_FORMAT = 3  # 3: the best epoch's params and model state too
KINDS = ("metrics", "params", "model_state", "best_params", "best_state")  # per config (engine.SweepRun's lists)
_META = "__meta__"
_N = "__n__"


class CheckpointWarning(JaxfitWarning):
    """A checkpoint chunk was set aside (unreadable or not matching) and will be retrained."""


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes (in name order)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import jax

    return {"jaxfit": __version__, "jax": jax.__version__}


class ChunkStore:
    def __init__(self, path: str | os.PathLike, matmul_precision: str = "highest"):
        self.path = os.fspath(path)
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise fsio.OutputError(f"cannot create checkpoint directory {self.path}: {fsio.reason(e)}") from e
        self.matmul_precision = matmul_precision
        fsio.remove_stale_temporaries(self.path)  # left by writers killed mid-write
        self.hits = 0
        self.writes = 0
        self.rejected: list[tuple[str, str]] = []  # (file, what was wrong)
        self._expected: dict[str, dict] = {}  # key -> what its chunk file must record

    def key(self, fingerprint: str, configs: Sequence[Any], matmul_precision: str | None = None,
            evaluation: tuple[int, int] = (1, 0)) -> str:
        """The chunk's key (its file name); also remembers what that chunk file must record (and so
        what `get` checks): `matmul_precision` is the run's (default: the store's); `evaluation`
        (eval_every, eval_rows) is part of the key when it is not the default (1, 0)."""
        what = [fingerprint, [c.to_dict() for c in configs]]
        if tuple(evaluation) != (1, 0):
            what.append({"eval_every": int(evaluation[0]), "eval_rows": int(evaluation[1])})
        blob = json.dumps(what, sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()[:24]
        self._expected[key] = {
            "format": CHUNK_FORMAT, "key": key, "n": len(configs), "configs_sha256": configs_sha256(configs),
            "fingerprint": fingerprint,
            "matmul_precision": matmul_precision if matmul_precision is not None else self.matmul_precision,
            "dtypes": sorted({c.dtype for c in configs}), **_versions(),
            "epochs": [int(c.epochs) for c in configs],
        }
        return key

    def _file(self, key: str) -> str:
        return os.path.join(self.path, f"chunk-{key}.npz")

    def has(self, key: str) -> bool:
        """Whether a chunk with this key is saved (without loading or checking it)."""
        return os.path.exists(self._file(key))

    def _expect(self, key: str) -> dict:
        try:
            return self._expected[key]
        except KeyError:
            raise UserError(f"ChunkStore: unknown key {key!r}: get it from store.key(fingerprint, configs)") from None

    # ------------------------------------------------------------------ reading
    def get(self, key: str) -> list[dict] | None:
        """The saved per-config outputs [{"metrics", "params", "model_state"}, ...], or None when there
        is no chunk, or when the chunk file is unreadable or does not match (then it is set aside)."""

        want = self._expect(key)
        file = self._file(key)
        if not os.path.exists(file):
            return None
        try:
            arrays, meta = self._read(file)
            problem = self._mismatch(meta, want, arrays)
        except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, KeyError, OSError...: damaged
            problem = f"unreadable ({type(e).__name__}: {' '.join(str(e).split())})"
        if problem is not None:
            self._reject(file, problem)
            return None
        n = want["n"]
        per: list[dict[str, dict]] = [{kind: {} for kind in KINDS} for _ in range(n)]
        for name, v in arrays.items():
            i, kind, rest = name.split("/", 2)
            per[int(i)][kind][rest] = v
        self.hits += 1
        return [{kind: p[kind] if kind == "metrics" else unflatten(p[kind]) for kind in KINDS} for p in per]

    @staticmethod
    def _read(file: str) -> tuple[dict[str, np.ndarray], dict]:
        with np.load(file, allow_pickle=False) as z:
            names = z.files
            if _META not in names:
                raise UserError(f"no {_META} record (written before chunk format {CHUNK_FORMAT}?)")
            meta = json.loads(bytes(z[_META]).decode("utf-8"))
            arrays = {name: z[name] for name in names if name not in (_META, _N)}
        if not isinstance(meta, dict):
            raise UserError(f"{_META} is not a record")
        return arrays, meta

    @staticmethod
    def _mismatch(meta: dict, want: dict, arrays: dict[str, np.ndarray]) -> str | None:
        """What is wrong with a chunk read from disk, or None."""
        if meta.get("format") != want["format"]:
            return f"chunk format {meta.get('format')!r}, this jaxfit writes {want['format']}"
        if meta.get("arrays_sha256") != arrays_sha256(arrays):
            return "its arrays do not match their recorded sha256 (damaged)"
        labels = {"key": "key", "configs_sha256": "configs hash", "fingerprint": "dataset fingerprint",
                  "n": "number of configs", "matmul_precision": "matmul precision", "dtypes": "dtypes",
                  "jaxfit": "jaxfit version", "jax": "jax version", "epochs": "epochs"}
        for field, label in labels.items():
            if meta.get(field) != want[field]:
                if field == "key":
                    return (f"holds chunk {meta.get('key')!r}, not {want['key']!r} (another chunk's file under this "
                            "name)")
                return f"{label} {meta.get(field)!r}, this run needs {want[field]!r}"
        n = want["n"]
        seen = set()
        for name, v in arrays.items():
            parts = name.split("/", 2)
            if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) >= n or \
                    parts[1] not in KINDS:
                return f"unexpected array {name!r}"
            i = int(parts[0])
            seen.add(i)
            if parts[1] == "metrics" and v.shape[:1] != (want["epochs"][i],):
                return f"config {i}'s {parts[2]} has {v.shape[:1]} epochs, expected {want['epochs'][i]}"
        if seen != set(range(n)):
            return f"holds arrays for {len(seen)} of its {n} configs"
        return None

    def _reject(self, file: str, problem: str) -> None:
        bad = file + ".bad"
        try:
            os.replace(file, bad)
            where = f"moved aside to {os.path.basename(bad)}"
        except OSError as e:
            where = f"could not be moved aside ({fsio.reason(e)})"
        self.rejected.append((file, problem))
        warnings.warn(f"jaxfit: checkpoint {file}: {problem}; {where}, retraining its configs",
                      CheckpointWarning, stacklevel=3)

    # ------------------------------------------------------------------ writing
    def put(self, key: str, outputs: Sequence[dict]) -> None:

        want = self._expect(key)
        if len(outputs) != want["n"]:
            raise ValueError(f"ChunkStore.put: chunk {key} holds {want['n']} configs, got {len(outputs)} outputs")
        flat: dict[str, np.ndarray] = {}
        for i, o in enumerate(outputs):
            for kind in KINDS:  # best_params / best_state may be left out (then none are kept)
                flat.update({f"{i}/{kind}/{k}": np.asarray(v) for k, v in flatten(o.get(kind) or {}).items()})
        meta = {**want, "arrays_sha256": arrays_sha256(flat)}
        record = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        fsio.write_npz(self._file(key), {**flat, _N: np.array(len(outputs)), _META: record})
        self.writes += 1


class SpanStore:
    """Checkpoints of successive halving (`engine.prune`): after each span of epochs between rungs,
    a chunk's configs' carried training state and their metrics so far, in ``span-<key>.npz`` beside
    the chunk files. The key covers the dataset, the chunk's configs, the span's epochs, the pruning
    rule and the evaluation settings; decisions are recomputed from the saved metrics (they are
    deterministic), so a rerun follows the same rungs. Checked as chunk files are (sha256 over the
    arrays, versions, key); a damaged or mismatched file is set aside and its span retrained."""

    def __init__(self, store: ChunkStore):
        self.path = store.path
        self.store = store
        self.hits = 0
        self._expected: dict[str, dict] = {}

    def key(self, fingerprint: str, configs: Sequence[Any], end: int, rule: dict, matmul_precision: str,
            evaluation: tuple[int, int]) -> str:
        what = [fingerprint, [c.to_dict() for c in configs], int(end), rule, matmul_precision,
                [int(evaluation[0]), int(evaluation[1])]]
        key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]
        self._expected[key] = {"format": CHUNK_FORMAT, "key": key, "n": len(configs), "end": int(end),
                               "configs_sha256": configs_sha256(configs), **_versions()}
        return key

    def _file(self, key: str) -> str:
        return os.path.join(self.path, f"span-{key}.npz")

    def get(self, key: str) -> list[tuple[dict, list]] | None:
        """Per config (metrics so far {name: [end]}, carried state leaves), or None."""
        want = self._expected[key]
        file = self._file(key)
        if not os.path.exists(file):
            return None
        try:
            arrays, meta = ChunkStore._read(file)
            problem = None
            if meta.get("arrays_sha256") != arrays_sha256(arrays):
                problem = "its arrays do not match their recorded sha256 (damaged)"
            for field in want:
                if problem is None and meta.get(field) != want[field]:
                    problem = f"{field} {meta.get(field)!r}, this run needs {want[field]!r}"
            out = [({}, {}) for _ in range(want["n"])]
            for name, v in arrays.items():
                i, kind, rest = name.split("/", 2)
                out[int(i)][0 if kind == "metrics" else 1][rest] = v
            if problem is None and any(len(m) == 0 or len(c) == 0 for m, c in out):
                problem = "it holds no state for some of its configs"
        except Exception as e:  # damaged: zipfile.BadZipFile, ValueError, KeyError...
            problem = f"unreadable ({type(e).__name__}: {' '.join(str(e).split())})"
        if problem is not None:
            self.store._reject(file, problem)
            return None
        self.hits += 1
        return [(m, [c[str(j)] for j in range(len(c))]) for m, c in out]

    def put(self, key: str, per_config: Sequence[tuple[dict, list]]) -> None:
        want = self._expected[key]
        flat: dict[str, np.ndarray] = {}
        for i, (metrics, leaves) in enumerate(per_config):
            flat.update({f"{i}/metrics/{k}": np.asarray(v) for k, v in metrics.items()})
            flat.update({f"{i}/carry/{j}": np.asarray(v) for j, v in enumerate(leaves)})
        meta = {**want, "arrays_sha256": arrays_sha256(flat)}
        record = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
        fsio.write_npz(self._file(key), {**flat, _N: np.array(len(per_config)), _META: record})

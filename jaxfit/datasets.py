"""Datasets for jaxfit: the two documents' tasks plus user-supplied arrays.

Every dataset is a :class:`Dataset`: float64 features of shape
``[n, num_features]``, int64 labels ``0..num_classes-1`` of shape ``[n]``, a
separate validation split (possibly empty), and the generation parameters in
``meta``. Arrays are read-only so one dataset can be shared by many runs, and
:meth:`Dataset.fingerprint` gives a short hash for checking that saved results
belong to the same data.

Generators (all deterministic for a given seed / random_state):

* :func:`sum_bin` -- document 1's easy task: ``x ~ U[0,1)^2``, three classes
  cut on ``s = x0 + x1`` at 0.807 and 1.169.
* :func:`sum_mod` -- the striped task: label ``floor(100 * s) % modulus``.
* :func:`circles` -- document 2's data, exactly ``sklearn.datasets.make_circles``.
* :func:`heart_rate` -- a synthetic stand-in for document 2's heart-rate data.
* :func:`from_arrays` -- the user's own arrays, checked and converted.

The float64 rule
----------------
Labels are always computed from the float64 points that the dataset stores.
This matters most for ``sum_mod``: its classes are stripes of width 0.01 in
``s``, so there are ~200 stripe edges in ``[0, 2)``. Recomputing ``s`` from
points rounded to float32 (and summed and scaled in float32) moves it by
~1e-7, about 1e-5 of a stripe's width, and a point that lies that close to an
edge lands in the neighbouring stripe: its label flips. That is rare (about
one point in 100,000; seed 0 with n = 1,000,000 flips 6, while n = 20,000
usually flips none) but never zero for large n, so the labels are defined as
the float64 ones and a model fed float32 inputs sees a few points whose
float32 label disagrees with the stored one. ``tests/test_datasets.py``
demonstrates the flip.

This module uses NumPy only (scikit-learn is imported lazily by
:func:`circles`); it never imports JAX.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from .errors import UserError

__all__ = [
    "Dataset",
    "sum_bin",
    "sum_mod",
    "circles",
    "heart_rate",
    "from_arrays",
    "DATASETS",
    "load",
]

# Document 1's class boundaries on s = x0 + x1.
SUM_BIN_EDGES = (0.807, 1.169)


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------


def _readonly(a: np.ndarray, dtype: Any) -> np.ndarray:
    """A private, read-only, C-contiguous copy of ``a`` with ``dtype``."""
    out = np.array(a, dtype=dtype, copy=True, order="C")
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A classification dataset with a training and a validation split.

    Attributes:
        name: short identifier, e.g. ``"sum_bin"``.
        x_train: float64 ``[n_train, num_features]``.
        y_train: int64 ``[n_train]``, values in ``0..num_classes-1``.
        x_val: float64 ``[n_val, num_features]`` (``n_val`` may be 0).
        y_val: int64 ``[n_val]``.
        num_classes: number of classes C (>= 2).
        meta: the generation parameters (seed, n, ...).

    The arrays are stored as read-only copies; the dataclass is frozen.
    Equality is identity (compare :meth:`fingerprint` values for content).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"Dataset: name must be a non-empty str, got {self.name!r}")
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, numbers.Integral)
            or self.num_classes < 2
        ):
            raise UserError(
                f"Dataset: num_classes must be an integer >= 2, got {self.num_classes!r}"
            )
        xt = _readonly(self.x_train, np.float64)
        yt = _readonly(self.y_train, np.int64)
        xv = _readonly(self.x_val, np.float64)
        yv = _readonly(self.y_val, np.int64)
        if xt.ndim != 2:
            raise UserError(f"Dataset: x_train must be 2-D, got shape {xt.shape}")
        if yt.ndim != 1 or yt.shape[0] != xt.shape[0]:
            raise UserError(
                f"Dataset: y_train must be 1-D with {xt.shape[0]} rows, got shape {yt.shape}"
            )
        if xv.ndim != 2 or xv.shape[1] != xt.shape[1]:
            raise UserError(
                f"Dataset: x_val must be 2-D with {xt.shape[1]} columns, got shape {xv.shape}"
            )
        if yv.ndim != 1 or yv.shape[0] != xv.shape[0]:
            raise UserError(
                f"Dataset: y_val must be 1-D with {xv.shape[0]} rows, got shape {yv.shape}"
            )
        for label_name, y in (("y_train", yt), ("y_val", yv)):
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise UserError(
                    f"Dataset: {label_name} has labels outside 0..{self.num_classes - 1}"
                )
        object.__setattr__(self, "x_train", xt)
        object.__setattr__(self, "y_train", yt)
        object.__setattr__(self, "x_val", xv)
        object.__setattr__(self, "y_val", yv)
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "meta", dict(self.meta))

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.x_val.shape[0])

    def fingerprint(self) -> str:
        """Short hex sha256 over name, num_classes and the four arrays.

        Dtype and shape of each array are hashed along with its bytes, so a
        reshaped or re-typed array gives a different fingerprint. ``meta`` is
        not included: two routes to identical data share a fingerprint.
        """
        h = hashlib.sha256()
        h.update(b"jaxfit.Dataset/v1\0")
        h.update(self.name.encode("utf-8") + b"\0")
        h.update(str(self.num_classes).encode("ascii") + b"\0")
        for a in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(f"{a.dtype.str}{a.shape}".encode("ascii"))
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_val={self.n_val}, "
            f"num_features={self.num_features}, num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------


def _check_int(fn: str, arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{fn}: {arg} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise UserError(f"{fn}: {arg} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_real(fn: str, arg: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UserError(f"{fn}: {arg} must be a finite real number, got {value!r}")
    return float(value)


def _n_val(fn: str, n: int, n_val: Any) -> int:
    if n_val is None:
        return n // 4
    return _check_int(fn, "n_val", n_val, 0)


# --------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------


def _sum_bin_labels(x: np.ndarray) -> np.ndarray:
    s = x[:, 0] + x[:, 1]  # float64
    lo, hi = SUM_BIN_EDGES
    return np.where(s < lo, 0, np.where(s < hi, 1, 2)).astype(np.int64)


def _sum_mod_labels(x: np.ndarray, modulus: int) -> np.ndarray:
    s = x[:, 0] + x[:, 1]  # float64, see the module docstring
    return np.floor(s * 100).astype(np.int64) % modulus


def sum_bin(n: int = 2000, seed: int = 0, n_val: int | None = None) -> Dataset:
    """Document 1's easy task: three classes cut on the sum of two uniforms.

    ``x = rng.random((n, 2))`` (float64, uniform on [0,1)^2) with
    ``rng = np.random.default_rng(seed)``; ``s = x0 + x1``; label 0 if
    ``s < 0.807``, 1 if ``s < 1.169``, else 2 (about a third each).
    The validation points (``n_val``, default ``n // 4``) are the next draw
    from the same generator, after the training draw.
    """
    fn = "sum_bin"
    n = _check_int(fn, "n", n, 1)
    seed = _check_int(fn, "seed", seed, 0)
    n_val = _n_val(fn, n, n_val)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    xv = rng.random((n_val, 2))
    return Dataset(
        name="sum_bin",
        x_train=x,
        y_train=_sum_bin_labels(x),
        x_val=xv,
        y_val=_sum_bin_labels(xv),
        num_classes=3,
        meta={"seed": seed, "n": n, "n_val": n_val, "edges": list(SUM_BIN_EDGES)},
    )


def sum_mod(
    n: int = 2000, seed: int = 0, modulus: int = 3, n_val: int | None = None
) -> Dataset:
    """Striped task: label ``floor(100 * (x0 + x1)) % modulus``.

    Points are drawn exactly as in :func:`sum_bin` (same seed -> same points).
    Labels are computed in float64 (``np.floor(s * 100).astype(int64) %
    modulus``); see the module docstring for why float32 would flip some.
    ``num_classes == modulus``.
    """
    fn = "sum_mod"
    n = _check_int(fn, "n", n, 1)
    seed = _check_int(fn, "seed", seed, 0)
    modulus = _check_int(fn, "modulus", modulus, 2)
    n_val = _n_val(fn, n, n_val)
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    xv = rng.random((n_val, 2))
    return Dataset(
        name="sum_mod",
        x_train=x,
        y_train=_sum_mod_labels(x, modulus),
        x_val=xv,
        y_val=_sum_mod_labels(xv, modulus),
        num_classes=modulus,
        meta={"seed": seed, "n": n, "n_val": n_val, "modulus": modulus},
    )


def circles(
    n: int = 500,
    noise: float = 0.1,
    factor: float = 0.2,
    random_state: int = 123,
    n_val: int | None = None,
) -> Dataset:
    """Document 2's two concentric circles, via ``sklearn.datasets.make_circles``.

    Training points are exactly ``make_circles(n_samples=n, noise=noise,
    factor=factor, random_state=random_state)`` (cast to float64). Validation
    points are a separate ``make_circles(n_samples=n_val, ...,
    random_state=random_state + 1)``; ``n_val`` defaults to ``n // 4``.
    Two classes (0 = outer circle, 1 = inner circle).
    """
    fn = "circles"
    n = _check_int(fn, "n", n, 1)
    noise = _check_real(fn, "noise", noise)
    if noise < 0:
        raise UserError(f"{fn}: noise must be >= 0, got {noise}")
    factor = _check_real(fn, "factor", factor)
    if not 0 < factor < 1:
        raise UserError(f"{fn}: factor must be in the open interval (0, 1), got {factor}")
    random_state = _check_int(fn, "random_state", random_state, 0)
    n_val = _n_val(fn, n, n_val)

    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=n, noise=noise, factor=factor, random_state=random_state)
    if n_val > 0:
        xv, yv = make_circles(
            n_samples=n_val, noise=noise, factor=factor, random_state=random_state + 1
        )
    else:
        xv, yv = np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    return Dataset(
        name="circles",
        x_train=np.asarray(x, dtype=np.float64),
        y_train=np.asarray(y).astype(np.int64),
        x_val=np.asarray(xv, dtype=np.float64),
        y_val=np.asarray(yv).astype(np.int64),
        num_classes=2,
        meta={
            "n": n,
            "noise": noise,
            "factor": factor,
            "random_state": random_state,
            "n_val": n_val,
            "val_random_state": random_state + 1,
        },
    )


def heart_rate(
    n: int = 1000,
    seed: int = 0,
    n_val: int | None = None,
    mean: float = 92.0,
    std: float = 10.0,
    threshold: float = 91.0,
) -> Dataset:
    """Synthetic STAND-IN for document 2's heart-rate data.

    Document 2 trains on a file of real patients' heart-rate readings; that
    file is not available, so this generator only imitates its shape: one
    feature, readings ``rng.normal(mean, std)`` with
    ``rng = np.random.default_rng(seed)``, label 1 when the reading is
    ``> threshold`` else 0. Results on it are not results on the real data.

    ``x_train`` has shape ``[n, 1]``; validation (``n_val``, default
    ``n // 4``) is the next draw from the same generator.
    """
    fn = "heart_rate"
    n = _check_int(fn, "n", n, 1)
    seed = _check_int(fn, "seed", seed, 0)
    n_val = _n_val(fn, n, n_val)
    mean = _check_real(fn, "mean", mean)
    std = _check_real(fn, "std", std)
    if std <= 0:
        raise UserError(f"{fn}: std must be > 0, got {std}")
    threshold = _check_real(fn, "threshold", threshold)
    rng = np.random.default_rng(seed)
    hr = rng.normal(mean, std, size=n)
    hr_val = rng.normal(mean, std, size=n_val)
    return Dataset(
        name="heart_rate",
        x_train=hr.reshape(-1, 1),
        y_train=(hr > threshold).astype(np.int64),
        x_val=hr_val.reshape(-1, 1),
        y_val=(hr_val > threshold).astype(np.int64),
        num_classes=2,
        meta={
            "seed": seed,
            "n": n,
            "n_val": n_val,
            "mean": mean,
            "std": std,
            "threshold": threshold,
            "stand_in": True,
        },
    )


# --------------------------------------------------------------------------
# user arrays
# --------------------------------------------------------------------------

_FN = "from_arrays"


def _as_features(arg: str, x: Any) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists etc.
        raise UserError(f"{_FN}: {arg} could not be read as an array ({e})") from None
    if a.dtype.kind not in "iuf":
        raise UserError(
            f"{_FN}: {arg} must be numeric (integer or float), got dtype {a.dtype}"
        )
    if a.ndim == 1:
        raise UserError(
            f"{_FN}: {arg} must be 2-D [n, num_features], got 1-D shape {a.shape}; "
            f"for a single feature pass {arg}.reshape(-1, 1)"
        )
    if a.ndim != 2:
        raise UserError(f"{_FN}: {arg} must be 2-D [n, num_features], got shape {a.shape}")
    if a.shape[1] < 1:
        raise UserError(f"{_FN}: {arg} has 0 feature columns; need at least 1")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.nonzero(bad.any(axis=1))[0]
        raise UserError(
            f"{_FN}: {arg} has {int(bad.sum())} non-finite values (first at row "
            f"{int(rows[0])}); remove or impute NaN/inf before training"
        )
    return a


def _as_labels(arg: str, y: Any) -> np.ndarray:
    try:
        a = np.asarray(y)
    except Exception as e:
        raise UserError(f"{_FN}: {arg} could not be read as an array ({e})") from None
    if a.dtype.kind not in "iuf":
        raise UserError(f"{_FN}: {arg} must hold integer labels, got dtype {a.dtype}")
    if a.ndim != 1:
        hint = f"; pass {arg}.ravel()" if a.ndim == 2 and a.shape[1:] == (1,) else ""
        raise UserError(f"{_FN}: {arg} must be 1-D [n], got shape {a.shape}{hint}")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise UserError(
                f"{_FN}: {arg} has {int(bad.sum())} non-finite values "
                f"(first at row {int(np.nonzero(bad)[0][0])})"
            )
        frac = a != np.round(a)
        if frac.any():
            i = int(np.nonzero(frac)[0][0])
            raise UserError(
                f"{_FN}: {arg} must be integer-valued; {int(frac.sum())} values are not "
                f"(first at row {i}: {a[i]!r})"
            )
    return a.astype(np.int64)


def _check_range(arg: str, y: np.ndarray, num_classes: int) -> None:
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        vals = np.unique(y[bad])
        shown = vals[:10].tolist()
        more = "" if len(vals) <= 10 else f" and {len(vals) - 10} more"
        raise UserError(
            f"{_FN}: {arg} has labels outside 0..{num_classes - 1}: {shown}{more}"
        )


def from_arrays(
    x: Any,
    y: Any,
    x_val: Any = None,
    y_val: Any = None,
    *,
    num_classes: int | None = None,
    name: str = "user",
    val_fraction: float = 0.0,
    seed: int = 0,
    remap_labels: bool = False,
) -> Dataset:
    """Wrap the user's own arrays as a :class:`Dataset`, checking them first.

    Args:
        x: ``[n, num_features]`` numeric, finite (a 1-D x is rejected; use
            ``x.reshape(-1, 1)`` for one feature).
        y: ``[n]`` integer labels ``0..C-1``; floats that are exact integers
            are accepted. ``C`` is ``num_classes`` or ``max(y) + 1`` (over
            ``y`` and ``y_val``).
        x_val, y_val: optional validation arrays, both or neither.
        num_classes: number of classes (>= 2); inferred when None.
        name: dataset name.
        val_fraction: when ``x_val`` is None and this is in (0, 1), that
            fraction of the rows (rounded) is split off as validation using
            ``np.random.default_rng(seed).permutation``; rows keep their
            original order within each split.
        seed: seed for the split.
        remap_labels: map the distinct labels found (over ``y`` and ``y_val``, sorted) to
            ``0..K-1``; the original values are kept in ``meta["label_values"]`` (class k is
            ``label_values[k]``). Without it, labels that are not ``0..K-1`` are refused (labels
            such as {0, 2, 5} would otherwise give 6 output units, 3 of them never trained), unless
            ``num_classes`` is passed to say that the missing classes are real.

    Raises:
        ValueError: naming the argument and the problem.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"{_FN}: name must be a non-empty str, got {name!r}")
    xa = _as_features("x", x)
    ya = _as_labels("y", y)
    if xa.shape[0] < 1:
        raise UserError(f"{_FN}: x has 0 rows; need at least 1")
    if xa.shape[0] != ya.shape[0]:
        raise UserError(f"{_FN}: x has {xa.shape[0]} rows but y has {ya.shape[0]}")

    if (x_val is None) != (y_val is None):
        given, missing = ("x_val", "y_val") if y_val is None else ("y_val", "x_val")
        raise UserError(f"{_FN}: {given} was given without {missing}; pass both or neither")

    vf = val_fraction
    if isinstance(vf, bool) or not isinstance(vf, numbers.Real) or not (0 <= vf < 1):
        raise UserError(f"{_FN}: val_fraction must be a number in [0, 1), got {vf!r}")
    seed = _check_int(_FN, "seed", seed, 0)

    if x_val is not None:
        if vf > 0:
            raise UserError(
                f"{_FN}: val_fraction={vf} cannot be used together with x_val/y_val; "
                "pass one or the other"
            )
        xva = _as_features("x_val", x_val)
        yva = _as_labels("y_val", y_val)
        if xva.shape[1] != xa.shape[1]:
            raise UserError(
                f"{_FN}: x_val has {xva.shape[1]} features but x has {xa.shape[1]}"
            )
        if xva.shape[0] != yva.shape[0]:
            raise UserError(
                f"{_FN}: x_val has {xva.shape[0]} rows but y_val has {yva.shape[0]}"
            )
    else:
        xva = np.zeros((0, xa.shape[1]))
        yva = np.zeros((0,), dtype=np.int64)

    label_values = None
    if remap_labels:
        if num_classes is not None:
            raise UserError(f"{_FN}: remap_labels=True and num_classes={num_classes!r}: give one (remapping counts "
                            "the classes found)")
        values, inverse = np.unique(np.concatenate([ya, yva]), return_inverse=True)
        ya, yva = inverse[: ya.shape[0]].astype(np.int64), inverse[ya.shape[0]:].astype(np.int64)
        label_values = [int(v) for v in values]
    elif num_classes is None:
        found = np.unique(np.concatenate([ya, yva]))
        if found.size >= 2 and (found[0] != 0 or found[-1] != found.size - 1):
            shown = ", ".join(str(int(v)) for v in found[:8]) + (", ..." if found.size > 8 else "")
            raise UserError(
                f"{_FN}: y holds {found.size} distinct labels ({shown}), not 0..{found.size - 1}: "
                + ("a negative label is no class index" if found[0] < 0 else
                   f"as given they would need {int(found[-1]) + 1} output units, "
                   f"{int(found[-1]) + 1 - found.size} of them for classes that never occur")
                + ". Pass remap_labels=True "
                f"(the sorted labels become 0..{found.size - 1}; [[data]] remap_labels = true in a spec), remap "
                "them yourself (np.unique(y, return_inverse=True)[1]), or pass num_classes= if the missing "
                "classes are real")
    if num_classes is None:
        top = int(max(ya.max(), yva.max() if yva.size else ya.max()))
        C = max(top, 0) + 1
        if ya.min() >= 0 and (yva.size == 0 or yva.min() >= 0) and C < 2:
            raise UserError(
                f"{_FN}: y has only one class (max label {top}), so num_classes would be "
                f"{C}; need at least 2 (pass num_classes= explicitly)"
            )
    else:
        C = _check_int(_FN, "num_classes", num_classes, 2)
    _check_range("y", ya, C)
    _check_range("y_val", yva, C)

    split = None
    if x_val is None and vf > 0:
        n = xa.shape[0]
        n_val = int(round(n * vf))
        if n_val < 1 or n - n_val < 1:
            raise UserError(
                f"{_FN}: val_fraction={vf} of {n} rows leaves {n_val} validation and "
                f"{n - n_val} training rows; each split needs at least 1"
            )
        perm = np.random.default_rng(seed).permutation(n)
        vi, ti = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        xa, ya, xva, yva = xa[ti], ya[ti], xa[vi], ya[vi]
        split = {"val_fraction": float(vf), "seed": seed}

    meta: dict = {"source": "from_arrays", "n": int(xa.shape[0]), "n_val": int(xva.shape[0])}
    if split:
        meta.update(split)
    if label_values is not None:
        meta["label_values"] = label_values
    return Dataset(
        name=name,
        x_train=xa,
        y_train=ya,
        x_val=xva,
        y_val=yva,
        num_classes=C,
        meta=meta,
    )


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------

DATASETS: dict[str, Callable[..., Dataset]] = {
    "sum_bin": sum_bin,
    "sum_mod": sum_mod,
    "circles": circles,
    "heart_rate": heart_rate,
}


def load(name: str, **kwargs: Any) -> Dataset:
    """Build the registered dataset ``name`` with the generator's ``kwargs``."""
    if not isinstance(name, str) or name not in DATASETS:
        allowed = ", ".join(sorted(DATASETS))
        raise UserError(f"load: unknown dataset {name!r}; allowed names: {allowed}")
    return DATASETS[name](**kwargs)


def regenerate(ds: dict):
    """(Dataset or None, note): the dataset a result was trained on, rebuilt from the generator
    arguments in its meta["dataset"], kept only when its fingerprint equals the saved one. The note
    says what was done, or why not."""
    import inspect

    name = ds.get("name")
    gen = DATASETS.get(name)
    if gen is None:
        return None, (f"dataset {name!r} is not one of jaxfit's generators ({', '.join(sorted(DATASETS))}); "
                      "its points are not stored with the results")
    gen_meta = ds.get("meta") or {}
    params = inspect.signature(gen).parameters
    # Dataset.meta also holds derived values (sum_bin's edges, circles' val_random_state,
    # heart_rate's stand_in flag): pass only the generator's own arguments.
    kwargs = {k: v for k, v in gen_meta.items() if k in params}
    try:
        data = load(name, **kwargs)
    except Exception as e:  # e.g. scikit-learn missing for circles
        return None, (f"could not regenerate dataset {name!r} from {kwargs} ({type(e).__name__}: {e})")
    want = ds.get("fingerprint")
    if want is None:
        return data, (f"regenerated {name}({_kw(kwargs)}); the result holds no fingerprint, so it could not be "
                      "checked against the data the sweep trained on")
    if data.fingerprint() != want:
        return None, (f"regenerating {name}({_kw(kwargs)}) gives fingerprint {data.fingerprint()}, not the saved "
                      f"{want}: the data is not reproducible here")
    return data, f"regenerated {name}({_kw(kwargs)}); fingerprint {want} matches the saved one"


def _kw(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())

"""Tests for jaxfit.datasets (NumPy only, fast)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.datasets import make_circles

from jaxfit import datasets as D
from jaxfit.datasets import Dataset, from_arrays


def _arrays(ds: Dataset):
    return (ds.x_train, ds.y_train, ds.x_val, ds.y_val)


def _same_bytes(a: Dataset, b: Dataset) -> bool:
    return all(p.tobytes() == q.tobytes() for p, q in zip(_arrays(a), _arrays(b)))


GENERATORS = [
    ("sum_bin", D.sum_bin, {"seed": 0}, {"seed": 1}),
    ("sum_mod", D.sum_mod, {"seed": 0}, {"seed": 1}),
    ("circles", D.circles, {"random_state": 123}, {"random_state": 7}),
    ("heart_rate", D.heart_rate, {"seed": 0}, {"seed": 1}),
]


# --------------------------------------------------------------------------
# determinism, shapes, dtypes, read-only, repr
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name,gen,kw_a,kw_b", GENERATORS)
def test_deterministic_per_seed(name, gen, kw_a, kw_b):
    a1, a2, b = gen(**kw_a), gen(**kw_a), gen(**kw_b)
    assert _same_bytes(a1, a2)
    assert a1.fingerprint() == a2.fingerprint()
    assert not np.array_equal(a1.x_train, b.x_train)
    assert a1.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    "gen,num_features,num_classes",
    [(D.sum_bin, 2, 3), (D.sum_mod, 2, 3), (D.circles, 2, 2), (D.heart_rate, 1, 2)],
)
def test_shapes_dtypes(gen, num_features, num_classes):
    ds = gen(n=40)
    assert ds.x_train.shape == (40, num_features) and ds.x_train.dtype == np.float64
    assert ds.y_train.shape == (40,) and ds.y_train.dtype == np.int64
    assert ds.x_val.shape == (10, num_features) and ds.x_val.dtype == np.float64
    assert ds.y_val.shape == (10,) and ds.y_val.dtype == np.int64
    assert (ds.n_train, ds.n_val, ds.num_features, ds.num_classes) == (
        40, 10, num_features, num_classes)
    for y in (ds.y_train, ds.y_val):
        assert y.min() >= 0 and y.max() < num_classes

    ds = gen(n=7, n_val=3)
    assert (ds.n_train, ds.n_val) == (7, 3)
    ds = gen(n=5, n_val=0)
    assert ds.x_val.shape == (0, num_features) and ds.y_val.shape == (0,)


@pytest.mark.parametrize("name,gen,kw_a,kw_b", GENERATORS)
def test_arrays_read_only_and_frozen(name, gen, kw_a, kw_b):
    ds = gen(n=20)
    for a in _arrays(ds):
        assert not a.flags.writeable
        with pytest.raises(ValueError):
            a[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


def test_dataset_copies_caller_arrays():
    x = np.zeros((4, 2))
    ds = Dataset("t", x, np.array([0, 1, 0, 1]), np.zeros((0, 2)), np.zeros(0, int), 2)
    assert x.flags.writeable  # caller's array untouched
    x[0, 0] = 5.0
    assert ds.x_train[0, 0] == 0.0


def test_repr_is_short():
    ds = D.sum_bin(n=2000)
    r = repr(ds)
    assert r == "Dataset(name='sum_bin', n_train=2000, n_val=500, num_features=2, num_classes=3)"
    assert len(r) < 120 and "[" not in r


def test_meta_records_generation_parameters():
    assert D.sum_bin(n=10, seed=3).meta["seed"] == 3
    assert D.sum_bin(n=10, seed=3).meta["n"] == 10
    assert D.sum_mod(n=10, modulus=5).meta["modulus"] == 5
    m = D.circles(n=10, noise=0.05).meta
    assert m["noise"] == 0.05 and m["random_state"] == 123 and m["val_random_state"] == 124
    assert D.heart_rate(n=10).meta["stand_in"] is True


# --------------------------------------------------------------------------
# label rules, recomputed independently
# --------------------------------------------------------------------------


def test_sum_bin_draw_and_labels():
    ds = D.sum_bin(n=300, seed=5, n_val=100)
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(ds.x_train, rng.random((300, 2)))
    np.testing.assert_array_equal(ds.x_val, rng.random((100, 2)))  # after the train draw
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        for row, label in zip(x, y):
            s = float(row[0]) + float(row[1])
            want = 0 if s < 0.807 else (1 if s < 1.169 else 2)
            assert label == want


def test_sum_bin_class_balance_roughly_thirds():
    ds = D.sum_bin(n=2000, seed=0)
    frac = np.bincount(ds.y_train, minlength=3) / ds.n_train
    assert frac.shape == (3,)
    assert np.all((frac > 0.25) & (frac < 0.42)), frac


@pytest.mark.parametrize("modulus", [2, 3, 7])
def test_sum_mod_labels(modulus):
    ds = D.sum_mod(n=500, seed=2, modulus=modulus)
    assert ds.num_classes == modulus
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        for row, label in zip(x, y):
            s = float(row[0]) + float(row[1])
            assert label == int(s * 100) % modulus
    # same points as sum_bin for the same seed
    np.testing.assert_array_equal(ds.x_train, D.sum_bin(n=500, seed=2).x_train)


def test_sum_mod_float32_would_flip_labels():
    # The float64 rule matters: recomputing labels in float32 flips some.
    # The rate is ~1e-5 per point, so n=20000 usually flips none (seed 0 does
    # not); n=1e6 with seed 0 flips 6.
    ds = D.sum_mod(n=1_000_000, seed=0, n_val=0)
    x32 = ds.x_train.astype(np.float32)
    s32 = x32[:, 0] + x32[:, 1]
    assert s32.dtype == np.float32
    y32 = np.floor(s32 * np.float32(100)).astype(np.int64) % 3
    flipped = np.nonzero(y32 != ds.y_train)[0]
    assert len(flipped) >= 1
    # each flipped point really is within float32 rounding of a stripe edge
    s64 = ds.x_train[flipped].sum(axis=1) * 100
    assert np.all(np.abs(s64 - np.round(s64)) < 1e-4)


def test_circles_equals_sklearn_exactly():
    ds = D.circles()
    x, y = make_circles(n_samples=500, noise=0.1, factor=0.2, random_state=123)
    assert ds.x_train.tobytes() == x.astype(np.float64).tobytes()
    np.testing.assert_array_equal(ds.y_train, y.astype(np.int64))
    xv, yv = make_circles(n_samples=125, noise=0.1, factor=0.2, random_state=124)
    np.testing.assert_array_equal(ds.x_val, xv)
    np.testing.assert_array_equal(ds.y_val, yv)
    assert ds.num_classes == 2


def test_heart_rate_distribution_and_labels():
    ds = D.heart_rate(n=5000, seed=0)
    hr = ds.x_train[:, 0]
    assert ds.x_train.shape == (5000, 1)
    assert abs(hr.mean() - 92.0) < 0.6
    assert abs(hr.std() - 10.0) < 0.5
    np.testing.assert_array_equal(ds.y_train, (hr > 91.0).astype(np.int64))
    np.testing.assert_array_equal(ds.y_val, (ds.x_val[:, 0] > 91.0).astype(np.int64))
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(hr, rng.normal(92.0, 10.0, size=5000))

    ds2 = D.heart_rate(n=100, mean=60.0, std=1.0, threshold=60.0)
    np.testing.assert_array_equal(ds2.y_train, (ds2.x_train[:, 0] > 60.0).astype(np.int64))
    assert "stand-in" in D.heart_rate.__doc__.lower()


# --------------------------------------------------------------------------
# fingerprint
# --------------------------------------------------------------------------


def test_fingerprint_stable_and_sensitive():
    ds = D.sum_bin(n=100)
    fp = ds.fingerprint()
    assert fp == D.sum_bin(n=100).fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0

    x = ds.x_train.copy()
    x[17, 1] = np.nextafter(x[17, 1], 2.0)  # one value changed by one ulp
    changed = Dataset(ds.name, x, ds.y_train, ds.x_val, ds.y_val, ds.num_classes, ds.meta)
    assert changed.fingerprint() != fp

    y = ds.y_val.copy()
    y[0] = (y[0] + 1) % 3
    assert Dataset(ds.name, ds.x_train, ds.y_train, ds.x_val, y, 3).fingerprint() != fp
    assert Dataset("other", *_arrays(ds), 3).fingerprint() != fp
    assert Dataset(ds.name, *_arrays(ds), 4).fingerprint() != fp
    # meta does not enter the fingerprint
    assert Dataset(ds.name, *_arrays(ds), 3, {"note": 1}).fingerprint() == fp


# --------------------------------------------------------------------------
# registry / load / generator argument checks
# --------------------------------------------------------------------------


def test_load_and_registry():
    assert set(D.DATASETS) == {"sum_bin", "sum_mod", "circles", "heart_rate"}
    assert _same_bytes(D.load("sum_mod", n=50, seed=4, modulus=4),
                       D.sum_mod(n=50, seed=4, modulus=4))
    with pytest.raises(ValueError, match=r"unknown dataset 'moons'.*circles, heart_rate, sum_bin, sum_mod"):
        D.load("moons")


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: D.sum_bin(n=0), r"sum_bin: n must be an integer >= 1, got 0"),
        (lambda: D.sum_bin(n=2.5), r"sum_bin: n must be an integer >= 1, got 2.5"),
        (lambda: D.sum_bin(n=True), r"sum_bin: n must be an integer"),
        (lambda: D.sum_bin(n_val=-1), r"sum_bin: n_val must be an integer >= 0, got -1"),
        (lambda: D.sum_bin(seed=-3), r"sum_bin: seed must be an integer >= 0"),
        (lambda: D.sum_mod(modulus=1), r"sum_mod: modulus must be an integer >= 2, got 1"),
        (lambda: D.circles(noise=-0.1), r"circles: noise must be >= 0, got -0.1"),
        (lambda: D.circles(factor=1.0), r"circles: factor must be in the open interval \(0, 1\), got 1.0"),
        (lambda: D.circles(factor=0), r"circles: factor must be in the open interval"),
        (lambda: D.circles(n=-5), r"circles: n must be an integer >= 1, got -5"),
        (lambda: D.heart_rate(std=0.0), r"heart_rate: std must be > 0, got 0.0"),
        (lambda: D.heart_rate(mean=float("nan")), r"heart_rate: mean must be a finite real"),
    ],
)
def test_generator_argument_checks(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------
# from_arrays
# --------------------------------------------------------------------------


def test_from_arrays_basic():
    x = np.arange(12, dtype=np.int32).reshape(6, 2)
    y = [0, 1, 2, 0, 1, 2]
    ds = from_arrays(x, y)
    assert ds.name == "user" and ds.num_classes == 3
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train, x)
    assert ds.n_val == 0 and ds.x_val.shape == (0, 2)
    assert not ds.x_train.flags.writeable
    assert x.flags.writeable  # input untouched

    ds = from_arrays(x, np.array(y, dtype=float), num_classes=5, name="mine")
    assert ds.num_classes == 5 and ds.name == "mine" and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, y)


def test_from_arrays_explicit_validation():
    x, y = np.random.default_rng(0).random((10, 3)), np.array([0, 1] * 5)
    xv, yv = np.ones((4, 3)), np.array([0, 2, 1, 0])
    ds = from_arrays(x, y, xv, yv)
    assert ds.num_classes == 3  # inferred over y and y_val
    assert (ds.n_train, ds.n_val) == (10, 4)
    np.testing.assert_array_equal(ds.y_val, yv)


def test_from_arrays_val_fraction_split():
    n = 100
    x = np.arange(2 * n, dtype=float).reshape(n, 2)
    y = np.arange(n) % 2
    ds = from_arrays(x, y, val_fraction=0.2, seed=3)
    assert (ds.n_train, ds.n_val) == (80, 20)
    # the split is a partition of the rows, reproducible, and seed-dependent
    rows = np.concatenate([ds.x_train[:, 0], ds.x_val[:, 0]]) / 2
    assert sorted(rows.astype(int).tolist()) == list(range(n))
    np.testing.assert_array_equal(ds.y_val, (ds.x_val[:, 0] / 2).astype(int) % 2)
    perm = np.random.default_rng(3).permutation(n)
    np.testing.assert_array_equal(ds.x_val[:, 0] / 2, np.sort(perm[:20]))
    assert _same_bytes(ds, from_arrays(x, y, val_fraction=0.2, seed=3))
    assert not np.array_equal(ds.x_val, from_arrays(x, y, val_fraction=0.2, seed=4).x_val)
    assert ds.meta["val_fraction"] == 0.2 and ds.meta["seed"] == 3


X3 = np.zeros((3, 2))
Y3 = np.array([0, 1, 0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=np.zeros(3), y=Y3), r"x must be 2-D.*x\.reshape\(-1, 1\)"),
        (dict(x=np.zeros((3, 2, 1)), y=Y3), r"x must be 2-D .*got shape \(3, 2, 1\)"),
        (dict(x=np.array([["a", "b"]] * 3), y=Y3), r"x must be numeric"),
        (dict(x=np.zeros((3, 2), dtype=complex), y=Y3), r"x must be numeric"),
        (dict(x=np.zeros((0, 2)), y=np.zeros(0, int)), r"x has 0 rows"),
        (dict(x=np.zeros((3, 0)), y=Y3), r"x has 0 feature columns"),
        (
            dict(x=np.array([[0, 0], [1, np.nan], [np.inf, 2]]), y=Y3),
            r"from_arrays: x has 2 non-finite values \(first at row 1\)",
        ),
        (dict(x=np.zeros((100, 2)), y=np.zeros(99, int)), r"x has 100 rows but y has 99"),
        (dict(x=X3, y=np.array([[0], [1], [0]])), r"y must be 1-D.*y\.ravel\(\)"),
        (dict(x=X3, y=np.array([0, 1.5, 0])), r"y must be integer-valued.*row 1"),
        (dict(x=X3, y=np.array([0, np.nan, 1])), r"y has 1 non-finite values"),
        (dict(x=X3, y=np.array(["a", "b", "c"])), r"y must hold integer labels"),
        (dict(x=X3, y=np.array([0, 5, 1]), num_classes=3), r"y has labels outside 0\.\.2: \[5\]"),
        (dict(x=X3, y=np.array([0, -1, 1])), r"y holds 3 distinct labels \(-1, 0, 1\), not 0\.\.2: a negative label"),
        (dict(x=X3, y=np.array([0, -1, 1]), num_classes=2), r"y has labels outside 0\.\.1: \[-1\]"),
        (dict(x=X3, y=np.zeros(3, int)), r"y has only one class.*num_classes"),
        (dict(x=X3, y=Y3, num_classes=1), r"num_classes must be an integer >= 2, got 1"),
        (dict(x=X3, y=Y3, x_val=X3), r"x_val was given without y_val"),
        (dict(x=X3, y=Y3, y_val=Y3), r"y_val was given without x_val"),
        (dict(x=X3, y=Y3, x_val=np.zeros((3, 4)), y_val=Y3), r"x_val has 4 features but x has 2"),
        (dict(x=X3, y=Y3, x_val=np.zeros((2, 2)), y_val=Y3), r"x_val has 2 rows but y_val has 3"),
        (dict(x=X3, y=Y3, x_val=X3, y_val=np.array([0, 9, 1]), num_classes=2),
         r"y_val has labels outside 0\.\.1: \[9\]"),
        (dict(x=X3, y=Y3, x_val=np.full((3, 2), np.inf), y_val=Y3), r"x_val has 6 non-finite"),
        (dict(x=X3, y=Y3, x_val=X3, y_val=Y3, val_fraction=0.5), r"val_fraction=0.5 cannot be used together"),
        (dict(x=X3, y=Y3, val_fraction=1.0), r"val_fraction must be a number in \[0, 1\)"),
        (dict(x=X3, y=Y3, val_fraction=-0.1), r"val_fraction must be a number in \[0, 1\)"),
        (dict(x=X3, y=Y3, val_fraction=0.1), r"leaves 0 validation and 3 training rows"),
        (dict(x=X3, y=Y3, name=""), r"name must be a non-empty str"),
    ],
)
def test_from_arrays_rejections(kwargs, match):
    with pytest.raises(ValueError, match=match):
        from_arrays(**kwargs)

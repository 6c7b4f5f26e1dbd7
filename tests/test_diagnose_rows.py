"""The activation flags run each network on at most diagnose.ACTIVATION_ROWS training rows (a seeded
subsample): the same rows for every config and every call, and all rows when the split is smaller."""

import importlib

import numpy as np

import jaxfit

dg = importlib.import_module("jaxfit.diagnostics")


def test_activation_flags_use_a_seeded_subsample_of_large_splits(monkeypatch):
    data = jaxfit.datasets.sum_bin(n=300, seed=0)
    r = jaxfit.sweep(data, [jaxfit.Config(hidden=(8,), epochs=2, seed=s) for s in (0, 1)])
    seen = []
    real = dg.unit_stats_many  # every config's activation statistics, from one x for all of them
    monkeypatch.setattr(dg, "unit_stats_many",
                        lambda cs, p, s, x: seen.extend([np.array(x)] * len(cs)) or real(cs, p, s, x))
    full = dg.diagnose(r, data)
    assert [x.shape[0] for x in seen] == [300, 300]
    seen.clear()
    monkeypatch.setattr(dg, "ACTIVATION_ROWS", 50)
    sub = dg.diagnose(r, data)
    first = list(seen)
    seen.clear()
    dg.diagnose(r, data)
    again = list(seen)
    assert [x.shape[0] for x in again] == [50, 50]
    np.testing.assert_array_equal(again[0], again[1])  # the same rows for every config
    np.testing.assert_array_equal(again[0], first[0])  # and every call
    rows = {tuple(v) for v in data.x_train}
    assert all(tuple(v) in rows for v in again[0])  # rows of the training split
    assert list(sub.columns) == list(full.columns)

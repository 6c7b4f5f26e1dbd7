"""jaxfit.diagnose: each flag raised by a config built to trigger it, not by a healthy one; the
finite-blow-up divergence rules; the numpy forward against SweepResult.outputs."""

import math

import numpy as np
import pytest

import jaxfit
from jaxfit import Config
from jaxfit.diagnostics import FLAGS, double_softmax_floor, forward, prior_loss, unit_stats, unit_stats_many
from jaxfit.results import (BCE_CLAMP, BCE_CLAMP_FRACTION, LOSS_BLOWUP_FACTOR, PARAM_BLOWUP, SweepResult,
                            chance_loss)
from jaxfit.results import divergence as _divergence

# Document 1's FeedForward: Linear(2, 2) -> ReLU -> Linear(2, 3) -> Softmax, CrossEntropyLoss, SGD.
DOC1 = Config(hidden=(2,), activation="relu", output="softmax", loss="cross_entropy", optimizer="sgd", lr=1e-3,
              momentum=0.9, batch_size=32, epochs=5)
# Document 2's heart-rate net: raw inputs near 92, sigmoid hidden units, sigmoid output, BCELoss.
DOC2 = Config(hidden=(4,), activation="sigmoid", output="sigmoid", loss="bce", optimizer="adam", lr=1e-3,
              batch_size=0, epochs=20)

SB = {  # sum_bin: name -> config
    "healthy": Config(hidden=(16,), optimizer="adam", lr=0.1, batch_size=0, epochs=30),
    "too_slow": Config(hidden=(16,), optimizer="sgd", lr=5e-2, batch_size=32, epochs=30),
    "oscillation": Config(hidden=(16,), activation="tanh", optimizer="sgd", lr=3.0, batch_size=32, epochs=30),
    "dead_relu": Config(hidden=(16,), optimizer="adam", lr=1.0, batch_size=32, epochs=30),
    "div_ce_sgd": Config(hidden=(16,), optimizer="sgd", lr=1e6, batch_size=32, epochs=30),
    "div_mse_adam": Config(hidden=(16,), loss="mse", optimizer="adam", lr=1e6, batch_size=32, epochs=30),
    "div_mse_sgd": Config(hidden=(16,), loss="mse", optimizer="sgd", lr=1e6, batch_size=32, epochs=30),
}
SM = {  # sum_mod (100 points: 75 to train on)
    "doc1": DOC1,
    "overfitting": Config(hidden=(64, 64), optimizer="adam", lr=1e-2, batch_size=0, epochs=100,
                          encoding="fourier", fourier_scale=10.0, dtype="float64"),
    # layouts for the forward check
    "bn": Config(hidden=(8, 8), activation="gelu", batchnorm=True, input_norm="batchnorm", epochs=3),
    "std": Config(hidden=(8,), activation="selu", input_norm="standardize", output="softmax", epochs=3),
    "elu": Config(hidden=(8,), activation="elu", loss="mse", output="sigmoid", epochs=3, dtype="float64"),
    "softplus": Config(hidden=(8,), activation="softplus", optimizer="sgd", lr=0.5, epochs=3),
}
HR = {  # heart rate
    "doc2": DOC2,
    "standardized": DOC2.replace(input_norm="standardize", lr=1e-2),
    "div_bce": DOC2.replace(optimizer="sgd", lr=1e6),
}


def _sweep(data, named):
    return jaxfit.sweep(data, list(named.values()), fuse="all"), {k: i for i, k in enumerate(named)}


@pytest.fixture(scope="module")
def sum_bin():
    data = jaxfit.datasets.sum_bin(n=256, seed=0)
    r, ix = _sweep(data, SB)
    return data, r, ix, jaxfit.diagnose(r)


@pytest.fixture(scope="module")
def sum_mod():
    data = jaxfit.datasets.sum_mod(n=100, seed=0)
    r, ix = _sweep(data, SM)
    return data, r, ix, jaxfit.diagnose(r)


@pytest.fixture(scope="module")
def heart():
    data = jaxfit.datasets.heart_rate(n=128, seed=0)
    r, ix = _sweep(data, HR)
    return data, r, ix, jaxfit.diagnose(r)


def _raised(d, i):
    return {f for f in FLAGS if bool(d[f].iloc[i])}


def test_healthy_config_raises_nothing(sum_bin):
    _, r, ix, d = sum_bin
    i = ix["healthy"]
    assert _raised(d, i) == set() and d["diagnosis"].iloc[i] == ""
    assert r.diverged_rule[i] == "" and d["best_epoch"].iloc[i] >= 0


def test_document_1_raises_prior_plateau_and_double_softmax_floor(sum_mod):
    data, r, ix, d = sum_mod
    i = ix["doc1"]
    assert {"prior_plateau", "double_softmax_floor"} <= _raised(d, i)
    text = d["diagnosis"].iloc[i]
    assert "0.5514" in text and "logits" in text and "class-prior" in text
    assert prior_loss("cross_entropy", data.y_train, 3) == pytest.approx(math.log(3), abs=0.02)


def test_double_softmax_floor_value():
    assert double_softmax_floor(3) == pytest.approx(0.5514, abs=1e-4)
    assert double_softmax_floor(2) == pytest.approx(-math.log(math.e / (math.e + 1)))


def test_document_2_raises_unnormalised_inputs_standardised_does_not(heart):
    _, r, ix, d = heart
    assert "unnormalised_inputs" in _raised(d, ix["doc2"])
    assert "standardis" in d["diagnosis"].iloc[ix["doc2"]] and "BatchNorm" in d["diagnosis"].iloc[ix["doc2"]]
    assert not d["unnormalised_inputs"].iloc[ix["standardized"]]
    assert not d["prior_plateau"].iloc[ix["standardized"]]


def test_each_flag_raised_by_its_config(sum_bin, sum_mod):
    _, _, ix, d = sum_bin
    for flag in ("too_slow", "oscillation", "dead_relu"):
        assert flag in _raised(d, ix[flag]), (flag, d.iloc[ix[flag]].to_dict())
    _, r, ixm, dm = sum_mod
    assert "overfitting" in _raised(dm, ixm["overfitting"])
    assert "overfitting" not in _raised(dm, ixm["doc1"])
    i = ixm["overfitting"]
    va = r.curves["val_acc"][i, : r.configs[i].epochs]
    assert dm["best_epoch"].iloc[i] == int(np.flatnonzero(va == np.nanmax(va))[0])  # earliest of ties


def test_lr_1e6_runs_are_diverged_and_rank_last(sum_bin, heart):
    _, r, ix, d = sum_bin
    rules = {k: r.diverged_rule[ix[k]] for k in ("div_ce_sgd", "div_mse_adam", "div_mse_sgd")}
    assert rules == {"div_ce_sgd": "loss_blowup", "div_mse_adam": "loss_blowup", "div_mse_sgd": "nonfinite"}
    for k in rules:
        i = ix[k]
        assert d["diverged"].iloc[i] and r.table["diverged"].iloc[i] and r.diverged_epoch[i] >= 0
        assert "lower the learning rate" in d["diagnosis"].iloc[i]
        assert not ({"oscillation", "too_slow", "overfitting", "prior_plateau"} & _raised(d, i))
    assert int(r.diverged.sum()) == 3
    best = r.best("val_acc", k=len(r), by=["optimizer", "loss", "lr", "activation", "batch_size"])
    assert best["diverged_fraction"].tolist()[-3:] == [1.0, 1.0, 1.0]
    _, rh, ixh, _ = heart
    assert rh.diverged_rule[ixh["div_bce"]] == "bce_clamp"
    assert [rh.diverged_rule[ixh[k]] for k in ("doc2", "standardized")] == ["", ""]


def test_divergence_rules_on_synthetic_curves():
    def m(full):
        full = np.asarray(full, float)
        return {"train_loss": full, "full_train_loss": full}

    ok = {"dense": [{"w": np.ones((2, 2)), "b": np.zeros(2)}]}
    big = {"dense": [{"w": np.full((2, 2), 2 * PARAM_BLOWUP), "b": np.zeros(2)}]}
    thr = LOSS_BLOWUP_FACTOR * chance_loss("cross_entropy", 3)
    assert _divergence(m([1.0, 0.9, 0.8]), ok, "cross_entropy", 3) == (-1, "")
    assert _divergence(m([1.0, np.nan, 0.8]), ok, "cross_entropy", 3) == (1, "nonfinite")
    assert _divergence(m([1.0, 2 * thr, 0.8]), ok, "cross_entropy", 3) == (-1, "")  # came back
    assert _divergence(m([1.0, 2 * thr, 0.5, 3 * thr, 4 * thr]), ok, "cross_entropy", 3) == (3, "loss_blowup")
    assert _divergence(m([1.0, 0.9, 0.8]), big, "cross_entropy", 3) == (2, "param_blowup")
    pinned = BCE_CLAMP_FRACTION * BCE_CLAMP + 1
    assert _divergence(m([pinned] * 3), ok, "bce", 2) == (0, "bce_clamp")
    assert _divergence(m([pinned] * 3), ok, "bce_with_logits", 2) == (-1, "")  # below 100 ln 2


def test_forward_matches_outputs(sum_mod, heart):
    for data, r, ix, _ in (sum_mod, heart):
        for k, i in ix.items():
            if r.diverged[i]:
                continue
            c = r.configs[i]
            want = r.outputs(i, data.x_train)
            got = forward(c, r.params(i), r.model_state(i), np.asarray(data.x_train, c.dtype))["out"]
            tol = 1e-9 if c.dtype == "float64" else 2e-5
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=k)


def test_batched_unit_stats_equal_one_pass_per_config(sum_mod, heart):
    """The diagnostics' batched pass (one compiled pass per structure) reads what `forward` of each
    config alone gives: every layout of the fixtures, several configs sharing a structure."""
    for data, r, ix, _ in (sum_mod, heart):
        live = [i for i in range(len(r.configs)) if not r.diverged[i]]
        x = np.asarray(data.x_train, np.float64)
        got = unit_stats_many([r.configs[i] for i in live], [r.params(i) for i in live],
                              [r.model_state(i) for i in live], x)
        for i, g in zip(live, got):
            want = unit_stats(forward(r.configs[i], r.params(i), r.model_state(i), x))
            for key in ("pinned_sigmoid", "pinned_tanh", "active"):
                assert len(g[key]) == len(want[key]) == len(r.configs[i].hidden)
                for a, b in zip(g[key], want[key]):
                    np.testing.assert_allclose(a, b, atol=1e-12, err_msg=f"{i} {key}")
            assert abs(g["out_saturated"] - float(want["out_saturated"])) < 1e-12 and g["rows"] == want["rows"]


def test_table_carries_the_diagnostics_and_a_saved_result_diagnoses_alone(heart, tmp_path):
    data, r, ix, d = heart
    t = r.table
    for col in (*FLAGS, "diagnosis", "best_epoch", "diverged_rule"):
        assert col in t.columns, col
    assert t["unnormalised_inputs"].iloc[ix["doc2"]]
    r.save(tmp_path / "hr")
    loaded = SweepResult.load(tmp_path / "hr")
    d2 = jaxfit.diagnose(loaded)  # the data regenerated from meta, fingerprint checked
    np.testing.assert_array_equal(d2[list(FLAGS)].to_numpy(), d[list(FLAGS)].to_numpy())
    assert d2["diagnosis"].tolist() == d["diagnosis"].tolist()
    other = jaxfit.datasets.heart_rate(n=128, seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        jaxfit.diagnose(r, other)


def test_custom_data_leaves_data_flags_unknown(heart):
    data, r, ix, _ = heart
    meta = dict(r.meta, dataset=dict(r.meta["dataset"], name="mine", fingerprint=None))
    anon = SweepResult(r.configs, r.curves, [r.params(i) for i in range(len(r))],
                       [r.model_state(i) for i in range(len(r))], meta)
    d = jaxfit.diagnose(anon)
    assert d["unnormalised_inputs"].isna().all() and d["dead_relu"].isna().all()
    assert bool(d["diverged"].iloc[ix["div_bce"]])
    d = jaxfit.diagnose(anon, data)
    assert bool(d["unnormalised_inputs"].iloc[ix["doc2"]])

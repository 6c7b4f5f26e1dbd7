"""Replaying a run from PyTorch's own dropout masks, step by step (issue 8, parts 2 and 3).

torchref.train(record_dropout=True) records the masks nn.Dropout draws itself, proving each one
against the module's output; jaxfit replaying them follows PyTorch's float64 trajectory to 1e-10
(losses) / 1e-9 (parameters) at every optimizer step, and jaxfit's own masks do not. `parity
--steps` names the first step where a planted difference appears.
"""

import contextlib
import importlib

import numpy as np
import pytest
import torch

import jaxfit
import torchref
from jaxfit import Config
from torchref import parity
from jaxfit.cli import main
from jaxfit.nn import layers

torch_train = importlib.import_module("torchref.train")  # the module (torchref.train is the function)

DATA = jaxfit.datasets.sum_bin(n=120, seed=0)  # 120 training points: 4 steps of 32, the last 24 real rows
DROP = Config(hidden=(16, 8), dropout=0.3, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=3,
              shuffle=True, dtype="float64")
LEAKY = Config(hidden=(8, 8), activation="leaky_relu", optimizer="adam", lr=0.01, batch_size=32, epochs=3,
               dtype="float64")
CLI_LEAKY = "hidden=8,8 activation=leaky_relu optimizer=adam lr=0.01 batch_size=32 epochs=3"


def _start(cfg):
    """replay's start: nn.Linear's init from torch.manual_seed(cfg.seed), in jaxfit's layout."""
    torch.manual_seed(cfg.seed)
    model = torchref.build_model(cfg, DATA.num_features, DATA.num_classes, x_train=DATA.x_train)
    return torchref.to_params(model.state_dict(), cfg)


@contextlib.contextmanager
def leaky_slope(value):
    """jaxfit's LeakyReLU slope planted at `value` (PyTorch keeps 0.01), programs recompiled."""
    old = layers.LEAKY_SLOPE
    jaxfit.engine.clear_cache()
    layers.LEAKY_SLOPE = value
    try:
        yield
    finally:
        layers.LEAKY_SLOPE = old
        jaxfit.engine.clear_cache()


def test_recorded_masks_are_nn_dropouts_own(monkeypatch):
    recorders = []

    class Counting(torch_train._RecordedDropout):
        def __init__(self, model):
            super().__init__(model)
            recorders.append(self)

    monkeypatch.setattr(torch_train, "_RecordedDropout", Counting)
    params, state = _start(DROP)
    t = torchref.train(DATA, DROP, params=params, model_state=state, record_dropout=True)
    E, S, B = t.batch_order.shape
    assert (E, S, B) == (3, 4, 32)
    # every training-mode call of both nn.Dropout layers was redrawn and proven equal (torch.equal)
    assert recorders[0].checked == E * S * 2
    masks = t.dropout_masks
    assert len(masks) == E and all(len(m) == S for m in masks)
    for e in range(E):
        for s in range(S):
            pad = t.batch_order[e, s] < 0
            for k, width in enumerate(DROP.hidden):
                m = masks[e][s][k]
                assert m.shape == (B, width) and np.isin(m, (0.0, 1.0)).all()
                assert (m[pad] == 1).all()  # rows of padding: ones
    assert t.batch_order[0, 3, 24:].tolist() == [-1] * 8
    real = np.concatenate([masks[e][s][k][t.batch_order[e, s] >= 0].ravel()
                           for e in range(E) for s in range(S) for k in range(2)])
    assert 0.2 < 1 - real.mean() < 0.4  # dropped at about the rate 0.3: not all ones

    # The assertion is live: something drawing from the global generator between the saved state and
    # nn.Dropout's own draw makes the redrawn mask wrong, and the run stops.
    class Disturbed(torch_train._RecordedDropout):
        def __init__(self, model):
            super().__init__(model)
            for m in self.mods:
                self.handles.append(m.register_forward_pre_hook(self._draw))

        @staticmethod
        def _draw(mod, inputs):
            torch.rand(1)

    monkeypatch.setattr(torch_train, "_RecordedDropout", Disturbed)
    with pytest.raises(AssertionError, match="does not reproduce nn.Dropout's output"):
        torchref.train(DATA, DROP, params=params, model_state=state, record_dropout=True)


@pytest.mark.parametrize("hidden", [(16, 16), (16, 8)], ids=["16x16", "16x8"])
def test_jaxfit_replays_pytorchs_own_masks(hidden):
    cfg = DROP.replace(hidden=hidden)
    try:
        r = parity.replay(DATA, cfg, steps=True)
    except TypeError as e:
        if "incompatible shapes" not in str(e):
            raise
        pytest.fail("jaxfit cannot take injected dropout masks for unequal hidden widths: the engine pads them to "
                    "the widest layer and jaxfit/nn/layers.py apply() multiplies without slicing them to the "
                    f"layer's width (dropout_masks[i][:, :width]): {e}".splitlines()[0], pytrace=False)
    assert r.dropout == "jaxfit replays PyTorch's own dropout masks"
    assert len(r.step_deviation) == 12
    assert r.first_step_violation() is None, r.steps_verdict()
    assert float(np.max(r.step_deviation)) <= 1e-10
    assert float(np.max(r.step_record.param_diff)) <= 1e-9
    assert r.ok

    # Control: jaxfit's own masks (same weights, same batch order) do not follow PyTorch.
    c = parity.replay(DATA, cfg, steps=True, torch_masks=False)
    assert "own dropout masks" in c.dropout
    assert float(np.max(c.step_deviation)) > 1e-6
    v = c.first_step_violation()
    assert v is not None and v.step == 1  # the first step's masks already differ


def test_first_step_violation_names_a_planted_slope():
    r = parity.replay(DATA, LEAKY, steps=True)
    assert r.first_step_violation() is None and r.ok
    assert r.steps_verdict().startswith("no step differs beyond the tolerances")
    with leaky_slope(0.0101):
        p = parity.replay(DATA, LEAKY, steps=True)
    v = p.first_step_violation()
    assert (v.step, v.epoch, v.step_in_epoch) == (1, 1, 1)
    assert v.param.startswith("dense/") and v.param.endswith(("/w", "/b")) and len(v.index) in (1, 2)
    assert v.loss_diff > v.loss_tol == 1e-10 and v.param_tol == 1e-9
    assert p.steps_verdict() == v.describe()
    assert v.describe().startswith("first difference: step 1 (epoch 1, step 1): loss ")


def test_first_step_violation_names_a_difference_from_epoch_2():
    params, state = _start(LEAKY)
    t = torchref.train(DATA, LEAKY, params=params, model_state=state, record_params=True)
    S = t.batch_order.shape[1]
    same = jaxfit.train(DATA, LEAKY, params=params, model_state=state, batch_order=t.batch_order, record_steps=True)
    assert parity.compare(DATA, LEAKY, t, same).first_step_violation() is None

    # PyTorch's order, but two points traded between epoch 2's second and third batch.
    order = t.batch_order.copy()
    order[1, 1, 0], order[1, 2, 0] = order[1, 2, 0], order[1, 1, 0]
    j = jaxfit.train(DATA, LEAKY, params=params, model_state=state, batch_order=order, record_steps=True)
    r = parity.compare(DATA, LEAKY, t, j)
    assert float(np.max(r.step_deviation[: S + 1])) <= 1e-10  # epoch 1 and epoch 2's first step agree
    v = r.first_step_violation()
    assert (v.step, v.epoch, v.step_in_epoch) == (S + 2, 2, 2)
    paths = [f"dense/{i}/{k}" for i in range(3) for k in ("w", "b")]
    assert v.param in paths and v.param_diff > 0
    w = params["dense"][paths.index(v.param) // 2][v.param[-1]]
    assert len(v.index) == w.ndim and all(0 <= i < n for i, n in zip(v.index, w.shape))
    assert v.describe().startswith(f"first difference: step {S + 2} (epoch 2, step 2): loss ")
    assert f"parameter {v.param}[{', '.join(map(str, v.index))}]" in v.describe()
    table = r.steps_table(max_rows=6).splitlines()
    marked = [row for row in table if row.endswith("!")]
    assert marked and marked[0].split()[:2] == [str(S + 2), "2"]


def test_steps_limit():
    long = LEAKY.replace(batch_size=1, epochs=200)  # 24,000 steps
    with pytest.raises(ValueError, match="limit of 20,000"):
        parity.replay(DATA, long, steps=True)


def test_cli_steps(capsys):
    args = ["parity", CLI_LEAKY, "--data", "sum_bin", "--n", "120", "--dtype", "float64", "--steps", "--rows", "6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no step differs beyond the tolerances" in out and "loss jaxfit" in out
    with leaky_slope(0.0101):
        assert main(args) == 1
    out = capsys.readouterr().out
    line = [row for row in out.splitlines() if row.startswith("first difference:")]
    assert len(line) == 1 and line[0].startswith("first difference: step 1 (epoch 1, step 1): loss ")
    assert "; parameter dense/" in line[0]

"""The documents' own modules and loops, replayed step for step by jaxfit through the converters.

`torchref.to_params` / `to_state_dict` take the documents' `FeedForward` (fc1, fc2), `Model` /
`ModelLogits` (linear, linear2) and `ModelBN` (bn, linear, linear2) state_dicts as well as
torchref's own `MLP`. Here each document module is built with a seed, its initial weights converted
and given to `jaxfit.train`, and the document's own training loop as written (`fitit` over a
`DataLoader`, `fit_full_batch`) is compared with jaxfit's run: every per-epoch loss and the final
weights (and BatchNorm buffers), within the float32 tolerances of test_trajectory, over 100 steps.

Not replayed: the answer's `(x - x.mean()) / x.std()` standardisation, which is whole-tensor and
unbiased where jaxfit's input_norm="standardize" is per feature with ddof 0 (see
torchref.documents.standardize); its claims are checked by seed bands in test_documents.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils import data as tdata

import jaxfit
import torchref
from torchref import tasks
from torchref import documents as D
from torchref.convert import detect_layout

from test_trajectory import LOSS_ATOL_F32, PARAM_ATOL_F32, curve_violations, tree_violations

STEPS = 100  # test_trajectory.F32_MAX_STEPS: the float32 tolerances hold over this many steps


def _doc2_model(kind: str, input_size: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return {"model": D.Model, "logits": D.ModelLogits, "bn": D.ModelBN}[kind](input_size, D.CIRCLES_H1, 1)


# ----------------------------------------------------------------------------- converters


@pytest.mark.parametrize("kind", ["feedforward", "model", "logits", "bn"])
def test_document_state_dicts_round_trip(kind):
    """to_params then to_state_dict gives back the module's own state_dict (keys, order, values)."""
    if kind == "feedforward":
        torch.manual_seed(0)
        module = D.FeedForward(2, 3)
        cfg, layout = tasks.DOC1, "feedforward"
    else:
        module = _doc2_model(kind, 1, 0)
        cfg = tasks.DOC2.replace(input_norm="batchnorm" if kind == "bn" else "none",
                                 output="logits" if kind == "logits" else "sigmoid",
                                 loss="bce_with_logits" if kind == "logits" else "bce")
        layout = "model"
        if kind == "bn":  # non-trivial buffers, so a swapped mean/var would show
            module.train()
            module(torch.randn(16, 1) * 5 + 90)
    sd = module.state_dict()
    assert detect_layout(sd) == layout
    params, state = torchref.to_params(sd, cfg)
    back = torchref.to_state_dict(params, state, cfg, layout=layout)
    keys = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert [k for k in back if not k.endswith("num_batches_tracked")] == keys
    for k in keys:
        torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0, msg=f"{kind}: {k}")
    fresh = copy.deepcopy(module)
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    fresh.load_state_dict(back)  # strict: every key present, none extra
    x = torch.randn(8, 2 if kind == "feedforward" else 1)
    module.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), module(x), rtol=0, atol=0)


def test_converter_refuses_a_mismatched_state_dict():
    torch.manual_seed(0)
    sd = D.FeedForward(2, 3).state_dict()
    with pytest.raises(ValueError, match="hidden=\\(4, 4\\)"):
        torchref.to_params(sd, tasks.DOC1.replace(hidden=(4, 4)))
    with pytest.raises(ValueError, match="input_norm='standardize'"):
        torchref.to_params(sd, tasks.DOC1.replace(input_norm="standardize"))
    mlp = torchref.build_model(tasks.DOC1.replace(hidden=(2, 2)), 2, 3).state_dict()
    with pytest.raises(ValueError, match="unexpected \\['linear1.weight', 'linear1.bias'\\]"):
        torchref.to_params(mlp, tasks.DOC1)
    bn = _doc2_model("bn", 1, 0).state_dict()
    with pytest.raises(ValueError, match="unexpected \\['bn.weight'"):
        torchref.to_params(bn, tasks.DOC2)  # a ModelBN state_dict for a config without input BatchNorm
    with pytest.raises(ValueError, match="layout='fc' is not one of mlp, feedforward, model"):
        torchref.to_state_dict({}, {}, tasks.DOC1, layout="fc")


# ----------------------------------------------------------------------------- the loops, replayed


def _compare(name, torch_curves, jres, torch_module, cfg, metrics):
    problems = curve_violations(torch_curves, {m: jres.curves[m][0] for m in metrics}, metrics, LOSS_ATOL_F32)
    tp, ts = torchref.to_params(torch_module.state_dict(), cfg)
    problems += tree_violations("params", tp, jres.params(0), PARAM_ATOL_F32)
    problems += tree_violations("model_state", ts, jres.model_state(0), PARAM_ATOL_F32)
    for m in metrics:  # a diverged or frozen run would make the comparison vacuous
        assert np.isfinite(torch_curves[m]).all(), f"{name}: PyTorch's {m} is not finite"
    if problems:
        pytest.fail(f"{name}: jaxfit parts from the document's own loop:\n  " + "\n  ".join(problems), pytrace=False)


def test_document1_fitit_replayed():
    """FeedForward + `fitit` over `DataLoader(RandomModuloDataset)` (batch 1, in order), 2 epochs of
    about 50 points, against jaxfit's DOC1 config started from the same weights (DataLoader order is
    jaxfit's shuffle=False order, so no batch order is passed)."""
    data = jaxfit.datasets.sum_bin(n=50, seed=3)
    epochs = 2
    assert epochs * data.n_train <= STEPS
    loader = tdata.DataLoader(D.RandomModuloDataset(data.x_train, data.y_train))
    torch.manual_seed(1)
    net = D.FeedForward(2, 3)
    cfg = tasks.DOC1.replace(epochs=epochs, dtype="float32")  # FeedForward computes in float32 (x.float())
    params, state = torchref.to_params(net.state_dict(), cfg)
    jres = jaxfit.train(data, cfg, params=params, model_state=state)
    fit = D.fitit(net, loader, epochs=epochs)
    curves = {"train_loss": fit.mean_loss, "last_batch_loss": fit.last_sample_loss}
    assert np.ptp(fit.mean_loss) > 10 * LOSS_ATOL_F32, "the run must move for the comparison to mean anything"
    _compare("document 1 fitit", curves, jres, net, cfg, list(curves))


DOC2_CASES = {
    # name: (model kind, data, jaxfit changes, fit_full_batch keywords)
    "circles_bce_adam0.1": ("model", "circles", {}, dict(optimizer_name="adam", lr=0.1)),
    "circles_logits": ("logits", "circles", dict(output="logits", loss="bce_with_logits"),
                       dict(optimizer_name="adam", lr=0.1, loss="bce_with_logits")),
    "heart_batchnorm": ("bn", "heart", dict(input_norm="batchnorm", lr=0.01), dict(optimizer_name="adam", lr=0.01)),
    "heart_step_lr": ("model", "heart", dict(lr=0.01, schedule="step", step_size=20, gamma=0.5),
                      dict(optimizer_name="adam", lr=0.01, step_lr=(20, 0.5))),
    "heart_sgd": ("model", "heart", dict(optimizer="sgd", lr=0.01), dict(optimizer_name="sgd", lr=0.01)),
}


@pytest.mark.parametrize("name", list(DOC2_CASES))
def test_document2_fit_full_batch_replayed(name):
    """Model / ModelLogits / ModelBN + `fit_full_batch` (the question's loop), 100 full-batch epochs,
    against jaxfit's DOC2 config with the same changes, from the same weights."""
    kind, which, changes, fit_kw = DOC2_CASES[name]
    data = jaxfit.datasets.circles() if which == "circles" else jaxfit.datasets.heart_rate(n=200, seed=0)
    model = _doc2_model(kind, data.num_features, seed=2)
    cfg = tasks.DOC2.replace(epochs=STEPS, dtype="float32", **changes)
    params, state = torchref.to_params(model.state_dict(), cfg)
    jres = jaxfit.train(data, cfg, params=params, model_state=state)
    x, y = D._tensors(data)
    losses = D.fit_full_batch(model, x, y, STEPS, **fit_kw)
    assert np.ptp(losses) > 10 * LOSS_ATOL_F32, "the run must move for the comparison to mean anything"
    _compare(f"document 2 {name}", {"train_loss": losses}, jres, model, cfg, ["train_loss"])

"""result.to_torch(i): a trained jaxfit config as a PyTorch module that predicts what jaxfit predicts."""

import numpy as np
import pytest
import torch

import jaxfit
from jaxfit import Config

CASES = {
    "relu_softmax": Config(hidden=(16, 16), output="softmax", epochs=3),
    "batchnorm_dropout": Config(hidden=(16,), batchnorm=True, dropout=0.3, input_norm="batchnorm", epochs=3),
    "fourier_standardize": Config(hidden=(8,), encoding="fourier", fourier_features=6, input_norm="standardize",
                                  activation="gelu", epochs=3),
    "bce_float64": Config(hidden=(8,), activation="sigmoid", output="sigmoid", loss="bce", dtype="float64",
                          input_norm="standardize", epochs=3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_to_torch_predicts_what_jaxfit_predicts(name):
    cfg = CASES[name]
    data = jaxfit.datasets.heart_rate(n=128, seed=1) if cfg.loss == "bce" else jaxfit.datasets.sum_bin(n=128, seed=1)
    r = jaxfit.train(data, cfg)
    model = r.to_torch(0)
    assert isinstance(model, torch.nn.Module) and not model.training
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    with torch.no_grad():
        out = model(torch.as_tensor(np.array(data.x_val), dtype=dtype)).numpy()
    np.testing.assert_allclose(out, r.outputs(0, data.x_val), rtol=1e-5, atol=1e-6 if cfg.dtype == "float32" else 1e-12)
    pred = out.argmax(-1) if out.shape[-1] > 1 else (out[:, 0] > 0.5).astype(int)
    np.testing.assert_array_equal(pred, r.predict(0, data.x_val))

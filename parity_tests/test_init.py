"""Each init scheme: jaxfit's weights against PyTorch's (torch.nn.init / nn.Linear's default) by a
two-sample Kolmogorov-Smirnov test on many draws, each framework with its own RNG."""

import numpy as np
import pytest
import torch
from scipy import stats

import jaxfit
import torchref
from jaxfit import Config

SCHEMES = ["torch", "lecun_normal", "he_normal", "glorot_uniform"]
N_DRAWS = 200  # networks per side: 200 x (16 x 8) first-layer weights
# Equal distributions give p ~ U(0, 1); with 8 (scheme, tensor) tests, P(any p < 1e-3) < 1%.
P_MIN = 1e-3


def jax_layers(scheme):
    from jaxfit.nn import init as jinit
    import jax
    keys = jax.random.split(jax.random.PRNGKey(123), N_DRAWS)
    l0 = [jinit.dense(k, 8, 16, scheme, np.float32) for k in keys]
    return np.concatenate([np.asarray(d["w"]).ravel() for d in l0]), np.concatenate([np.asarray(d["b"]).ravel() for d in l0])


def torch_layers(scheme):
    torch.manual_seed(0)
    cfg = Config(hidden=(16,), init=scheme)
    ws, bs = [], []
    for _ in range(N_DRAWS):
        m = torchref.build_model(cfg, 8, 3)
        ws.append(m.linear0.weight.detach().numpy().ravel())
        bs.append(m.linear0.bias.detach().numpy().ravel())
    return np.concatenate(ws), np.concatenate(bs)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_init_distribution_matches_pytorch(scheme):
    jw, jb = jax_layers(scheme)
    tw, tb = torch_layers(scheme)
    p_w = stats.ks_2samp(jw, tw).pvalue
    assert p_w > P_MIN, f"{scheme}: weights differ from PyTorch's (KS p={p_w:.2g}; sd {jw.std():.4f} vs {tw.std():.4f})"
    if scheme == "torch":
        p_b = stats.ks_2samp(jb, tb).pvalue
        assert p_b > P_MIN, f"{scheme}: biases differ from PyTorch's (KS p={p_b:.2g})"
    else:
        assert not jb.any() and not tb.any()


def test_ks_detects_flax_kaiming_trap():
    """PARITY.md: flax's kaiming_uniform is He-uniform, 2.45x torch's bound: the test must see it."""
    jw, _ = jax_layers("torch")
    tw, _ = torch_layers("torch")
    assert stats.ks_2samp(jw * np.sqrt(6), tw).pvalue < 1e-6


def test_jaxfit_trains_from_the_scheme_it_is_given():
    # one epoch at lr 1e-30: the weights stay (to ~1e-30) the initial draw of the scheme
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    for scheme in SCHEMES:
        r = jaxfit.train(data, Config(hidden=(16,), init=scheme, epochs=1, lr=1e-30, optimizer="sgd"))
        w = r.params(0)["dense"][0]["w"]
        bound = {"torch": 1 / np.sqrt(2), "glorot_uniform": np.sqrt(6 / 18)}.get(scheme)
        if bound is not None:
            assert np.abs(w).max() <= bound
        if scheme != "torch":
            assert np.abs(r.params(0)["dense"][0]["b"]).max() < 1e-20

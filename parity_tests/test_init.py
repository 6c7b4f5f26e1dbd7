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


def test_jaxfit_torch_init_is_not_flax_kaiming_trap():
    """docs/parity.md: flax's kaiming_uniform (jax's he_uniform) is He-uniform, 2.45x torch's bound. The KS
    test sees the trap (He-uniform draws against PyTorch's), and jaxfit's own "torch" draws are
    told apart from He-uniform ones: this fails if jaxfit drew flax's default."""
    import jax
    jw, _ = jax_layers("torch")
    tw, _ = torch_layers("torch")
    keys = jax.random.split(jax.random.PRNGKey(7), N_DRAWS)
    he = np.concatenate([np.asarray(jax.nn.initializers.he_uniform()(k, (8, 16), np.float32)).ravel() for k in keys])
    assert np.abs(he).max() > 2 / np.sqrt(8)  # the trap's bound, sqrt(6 / fan_in), is reached
    assert stats.ks_2samp(he, tw).pvalue < 1e-6  # the KS test has the power to see it
    assert stats.ks_2samp(jw, he).pvalue < 1e-6  # and jaxfit is not it
    assert np.abs(jw).max() <= 1 / np.sqrt(8)


WIDE = 256  # first layer 2 -> 256, second 256 -> 3: enough weights for the moments below


@pytest.mark.parametrize("scheme", SCHEMES)
def test_layers_init_gives_each_scheme(scheme):
    """`layers.init` (what the trainer starts from) draws each scheme: its bound or sd, per layer,
    and zero biases except for torch's (a few milliseconds, no training program)."""
    import jax
    from jaxfit.nn import layers
    cfg = Config(hidden=(WIDE,), init=scheme)
    params, _ = layers.init(layers.arch_of(cfg, 2, 3), jax.random.PRNGKey(0), np.float32)
    for layer, (fan_in, fan_out) in zip(params["dense"], ((2, WIDE), (WIDE, 3))):
        w, b = np.asarray(layer["w"]), np.asarray(layer["b"])
        assert w.shape == (fan_out, fan_in) and w.dtype == np.float32
        if scheme in ("torch", "glorot_uniform"):
            bound = 1 / np.sqrt(fan_in) if scheme == "torch" else np.sqrt(6 / (fan_in + fan_out))
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound, (scheme, fan_in)
            np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.15)
        else:
            sd = np.sqrt((1 if scheme == "lecun_normal" else 2) / fan_in)
            np.testing.assert_allclose(w.std(), sd, rtol=0.15)
            assert np.abs(w).max() > 1.5 * sd  # normal, not a narrow uniform
        if scheme == "torch":
            assert np.abs(b).max() <= 1 / np.sqrt(fan_in) and np.abs(b).min() > 0
        else:
            assert not b.any()


def test_jaxfit_trains_from_the_scheme_it_is_given():
    """End to end, one program: one epoch at lr 1e-30 leaves the weights (to ~1e-30) the `layers.init`
    draw of the config's scheme from its init key, fold_in(PRNGKey(seed), KEY_INIT)."""
    import jax
    from jaxfit.nn import layers
    from jaxfit.program.train import KEY_INIT
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    cfg = Config(hidden=(16,), init="he_normal", epochs=1, lr=1e-30, optimizer="sgd", seed=5)
    r = jaxfit.train(data, cfg)
    want, _ = layers.init(layers.arch_of(cfg, data.num_features, 3),
                          jax.random.fold_in(jax.random.PRNGKey(5), KEY_INIT), np.float32)
    for got, w in zip(r.params(0)["dense"], want["dense"]):
        for k in ("w", "b"):
            np.testing.assert_allclose(got[k], np.asarray(w[k]), rtol=0, atol=1e-20, err_msg=k)

"""jaxfit.flax: PyTorch-semantics nnx modules computed by jaxfit's own functions.

Bitwise checks against jaxfit.nn (init, layers.apply, the engine's init_state and a real sweep),
numeric checks against torch.nn.BatchNorm1d, the state-dict converter, and the helpers that run a
module inside a vmapped program. Also the claims of issue 12 about stock Flax layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxfit
from jaxfit import Config
from jaxfit.program.train import Data, init_state, run_of, spec_of
from jaxfit.flax import (MLP, BatchNorm1d, Dropout, Fourier, Linear, Standardize, apply_graph, load_state_dict,
                         split_for_program, state_dict)
from jaxfit.nn import init as jinit
from jaxfit.nn import layers

SCHEMES = ("torch", "lecun_normal", "he_normal", "glorot_uniform")


def same(a, b) -> bool:
    """Bitwise equality of two pytrees of arrays (same structure, dtypes and values)."""
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
                            for x, y in zip(la, lb))


def x64(dtype):
    return jax.enable_x64(dtype == "float64")


def xs(n=12, f=3, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=(n, f)).astype(dtype)


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize("scheme", SCHEMES)
def test_linear_init_is_jaxfits_bitwise(scheme):
    key = jax.random.PRNGKey(3)
    lin = Linear(5, 4, init=scheme, key=key)
    want = jinit.dense(key, 5, 4, scheme, jnp.float32)
    assert lin.weight[...].shape == (4, 5)
    assert same({"w": lin.weight[...], "b": lin.bias[...]}, want)
    # from nnx.Rngs: the key its params stream hands out
    lin = Linear(5, 4, init=scheme, rngs=nnx.Rngs(params=7))
    assert same({"w": lin.weight[...], "b": lin.bias[...]},
                jinit.dense(nnx.Rngs(params=7).params(), 5, 4, scheme, jnp.float32))
    x = xs(f=5)
    assert same(lin(x), layers.linear(x, lin.weight[...], lin.bias[...]))


CONFIGS = {
    "torch": Config(hidden=(6, 5), batchnorm=True, dropout=0.25, seed=4),
    "lecun_normal": Config(hidden=(7,), init="lecun_normal", input_norm="standardize", encoding="fourier",
                           fourier_features=4, fourier_scale=0.5, seed=5),
    "he_normal": Config(hidden=(4, 4), init="he_normal", input_norm="batchnorm", seed=6),
    "glorot_uniform": Config(hidden=(), init="glorot_uniform", output="softmax", seed=7),
}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_from_config_is_the_engines_init_bitwise(scheme, dtype):
    c = CONFIGS[scheme].replace(dtype=dtype)
    x = xs(dtype=dtype)
    with x64(dtype):
        spec = spec_of(c, len(x), 0, 3, 3)
        hp = jax.tree.map(lambda a: a[0], jaxfit.config.hparams([c]))
        data = Data(jnp.asarray(x), jnp.zeros(len(x), jnp.int32), jnp.zeros((0, 3), dtype),
                           jnp.zeros(0, jnp.int32))
        ts = init_state(spec, hp, data, run_of(spec, c))
        m = MLP.from_config(c, 3, 3, x_train=x)
        assert same(m.to_params(), (ts.params, ts.model_state))
        assert m.out.weight[...].dtype == jnp.dtype(dtype)


def test_stock_flax_layers_are_not_pytorchs():
    """Issue 12's claims, measured: why this package exists."""
    stock = nnx.Linear(8, 2048, rngs=nnx.Rngs(0))
    assert stock.kernel[...].shape == (8, 2048)  # (in, out), torch keeps [out, in]
    assert not np.asarray(stock.bias[...]).any()  # zero bias; torch draws it
    assert float(np.std(stock.kernel[...])) == pytest.approx(8 ** -0.5, rel=0.05)  # lecun_normal, 0.35
    ours = Linear(8, 2048, rngs=nnx.Rngs(0))
    assert ours.weight[...].shape == (2048, 8)
    assert float(np.std(ours.weight[...])) == pytest.approx((3 * 8) ** -0.5, rel=0.05)  # U(+-1/sqrt(8)): 0.204
    assert np.asarray(ours.bias[...]).any()
    # nnx.BatchNorm: momentum 0.99 the other way round and a biased running variance
    x = xs(n=6, f=2)
    bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
    bn(x)
    biased = 0.01 * x.var(0) + 0.99
    np.testing.assert_allclose(bn.var[...], biased, rtol=1e-5)
    ours = BatchNorm1d(2)
    ours(x)
    np.testing.assert_allclose(ours.running_var[...], 0.1 * x.var(0, ddof=1) + 0.9, rtol=1e-5)
    # nnx.Dropout cannot take a vmapped rate; ours can
    with pytest.raises(jax.errors.TracerBoolConversionError):
        jax.vmap(lambda r: nnx.Dropout(r, rngs=nnx.Rngs(0))(jnp.ones(3)))(jnp.array([0.1, 0.2]))
    jax.vmap(lambda r: Dropout(r)(jnp.ones((1, 3)), key=jax.random.PRNGKey(0)))(jnp.array([0.1, 0.2]))


# ----------------------------------------------------------------------------- forward


def _params_of(c, f, k, x, dtype):
    arch = layers.arch_of(c, f, k)
    p, s = layers.init(arch, jax.random.PRNGKey(11), jnp.dtype(dtype), fourier_scale=c.fourier_scale,
                       x_train=jnp.asarray(x))
    # trained-looking BatchNorm parameters and statistics, so that eval mode uses them
    rng = np.random.default_rng(1)

    def jitter(t):
        return jax.tree.map(lambda a: jnp.asarray(np.asarray(a) + rng.uniform(0.1, 0.5, np.shape(a)), a.dtype), t)

    for key in ("bn", "in_bn"):
        if key in p:
            p[key], s[key] = jitter(p[key]), jitter(s[key])
    return arch, p, s


FORWARD = [Config(hidden=(6, 5), input_norm="batchnorm", batchnorm=True, dropout=0.3, activation="softplus",
                  output="softmax"),
           Config(hidden=(5,), input_norm="standardize", encoding="fourier", fourier_features=3, dropout=0.5,
                  activation="gelu", output="sigmoid")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ci", range(len(FORWARD)))
def test_mlp_forward_is_layers_apply_bitwise(ci, dtype):
    c = FORWARD[ci].replace(dtype=dtype)
    x = xs(dtype=dtype)
    with x64(dtype):
        arch, p, s = _params_of(c, 3, 2, x, dtype)
        m = MLP.from_params(c, p, s)
        assert same(m.to_params(), (p, s))
        want, _ = layers.apply(arch, p, s, x, train=False)
        m.eval()
        assert same(m(x), want)
        assert same(m(x, train=False), want)

        # training mode: the same dropout key (layer i: fold_in(key, i)), a row mask, new statistics
        key, rate = jax.random.PRNGKey(5), jnp.asarray(c.dropout, dtype)
        mask = jnp.arange(len(x)) < 9
        want, want_s = layers.apply(arch, p, s, x, train=True, mask=mask, dropout_rate=rate, dropout_key=key)
        m = MLP.from_params(c, p, s)
        assert same(m(x, train=True, mask=mask, key=key), want)
        assert same(m.to_params()[1], want_s)
        # given dropout masks replace the draws
        if c.dropout:
            dm = (np.random.default_rng(2).uniform(size=(len(c.hidden), len(x), max(c.hidden))) > 0.4)
            want, _ = layers.apply(arch, p, s, x, train=True, dropout_rate=rate, dropout_masks=jnp.asarray(dm))
            got = MLP.from_params(c, p, s)(x, train=True, dropout_masks=dm)
            assert same(got, want)


def test_batchnorm1d_matches_torch_after_one_train_step():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 4)) * 3 + 1
    w, b = rng.normal(size=4), rng.normal(size=4)
    tbn = torch.nn.BatchNorm1d(4).double()
    with torch.no_grad():
        tbn.weight.copy_(torch.as_tensor(w))
        tbn.bias.copy_(torch.as_tensor(b))
    with jax.enable_x64(True):
        bn = BatchNorm1d(4, dtype=jnp.float64)
        bn.weight[...], bn.bias[...] = jnp.asarray(w), jnp.asarray(b)
        # a padded batch: the two extra rows take no part
        xp = np.concatenate([x, rng.normal(size=(2, 4)) * 100])
        y = bn(xp, mask=jnp.arange(9) < 7)
        ty = tbn(torch.as_tensor(x)).detach().numpy()
        np.testing.assert_allclose(y[:7], ty, rtol=1e-12, atol=1e-12)
        for name in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(bn, name)[...], getattr(tbn, name).numpy(), rtol=1e-13, atol=1e-15)
        assert int(bn.num_batches_tracked[...]) == int(tbn.num_batches_tracked) == 1
        tbn.eval()
        bn.eval()
        np.testing.assert_allclose(bn(x), tbn(torch.as_tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
        assert int(bn.num_batches_tracked[...]) == 1  # eval does not count


def test_dropout_vmapped_rate_matches_the_mask_function():
    x = jnp.asarray(xs(n=5, f=6))
    rates = jnp.array([0.0, 0.2, 0.5, 0.9], jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)

    def by_call(r, k):
        return Dropout()(x, rate=r, key=k)

    def built_inside(r, k):
        return Dropout(r)(x, key=k)

    want = []
    for j in range(4):
        keep = 1 - rates[j]
        want.append(x * (layers.dropout_keep(keys[j], keep, 5, 6, 6).astype(x.dtype) / keep))
    for fn in (by_call, built_inside):
        assert same(list(jax.jit(jax.vmap(fn))(rates, keys)), want)
    assert same(jax.vmap(by_call)(rates, keys)[0], x)  # rate 0: everything kept, scale 1
    # eval: identity; keys from nnx.Rngs (the call's, or the module's own stream)
    assert Dropout(0.5, deterministic=True)(x) is x
    assert same(Dropout(0.5)(x, rngs=nnx.Rngs(dropout=3)), Dropout(0.5)(x, key=nnx.Rngs(dropout=3).dropout()))
    d = Dropout(0.5, rngs=nnx.Rngs(dropout=3))
    assert not np.array_equal(d(x), d(x))  # the stream moves on
    with pytest.raises(ValueError, match="needs a key"):
        Dropout(0.5)(x)
    with pytest.raises(ValueError, match="no rate"):
        Dropout()(x, key=keys[0])


def test_standardize_and_fourier_are_state_not_params():
    x = xs(n=20, f=3) * 4 + 2
    st = Standardize(3).fit(x)
    mean, std = layers.input_stats(jnp.asarray(x))
    assert same((st.mean[...], st.std[...]), (mean, std))
    assert same(st(x), layers.standardize(x, mean, std))
    fo = Fourier(3, 5, 0.7, key=jax.random.PRNGKey(2))
    assert same(fo.B[...], layers.fourier_matrix(jax.random.PRNGKey(2), 5, 3, jnp.float32, 0.7))
    assert same(fo(x), layers.fourier_encode(x, fo.B[...]))
    for mod in (st, fo):
        assert not jax.tree.leaves(nnx.state(mod, nnx.Param))
        assert len(jax.tree.leaves(nnx.state(mod, jaxfit.flax.Buffer))) == len(jax.tree.leaves(nnx.state(mod)))


# ----------------------------------------------------------------------------- state dict


def test_state_dict_round_trip_and_torch_names():
    pytest.importorskip("torch")
    import torchref

    c = Config(hidden=(5, 4), batchnorm=True, dropout=0.2, input_norm="standardize", encoding="fourier",
               fourier_features=3)
    x = xs()
    m = MLP.from_config(c, 3, 2, x_train=x)
    sd = state_dict(m)
    tm = torchref.build_model(c, 3, 2)
    assert set(sd) == set(tm.state_dict())  # the PyTorch twin's names
    p, s = m.to_params()
    tsd = torchref.to_state_dict(p, s, c)
    for k, v in tsd.items():
        np.testing.assert_array_equal(np.asarray(sd[k]), v.numpy())
    # back: a torch state_dict loads into a fresh module (other weights) and gives the same network
    other = MLP.from_config(c, 3, 2, seed=99, x_train=x)
    assert not same(other.to_params(), (p, s))
    tm.load_state_dict(tsd)
    load_state_dict(other, tm.state_dict())
    assert same(other.to_params(), (p, s))
    other.eval()
    m.eval()
    assert same(other(x), m(x))
    # a State round trip
    st = load_state_dict(nnx.state(m), {k: np.zeros_like(v) for k, v in sd.items()})
    assert all(not np.asarray(v).any() for v in state_dict(st).values())
    assert float(st['drop0']['rate'][...]) == pytest.approx(0.2)  # not a state_dict entry: kept
    assert same(state_dict(m), sd)  # the State was updated, not the module

    bad = dict(sd)
    del bad["linear1.bias"]
    bad["linear9.weight"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing key\(s\) linear1\.bias; unexpected key\(s\) linear9\.weight"):
        load_state_dict(m, bad)
    with pytest.raises(ValueError, match=r"out\.weight has shape \(1, 4\), the module's \(2, 4\)"):
        load_state_dict(m, {**sd, "out.weight": np.zeros((1, 4))})
    assert same(state_dict(m), sd)  # a refused load changes nothing


def test_state_dict_keys_of_a_list_of_layers():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([Linear(3, 4, rngs=rngs), Linear(4, 2, rngs=rngs)])
            self.drop = Dropout(0.1, rngs=rngs)  # its RNG stream is no part of the state dict

    sd = state_dict(Net(nnx.Rngs(0)))
    assert list(sd) == ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]


# ----------------------------------------------------------------------------- SweepResult.to_flax


def test_to_flax_equals_outputs_after_a_sweep(sum_bin_small):
    data = sum_bin_small
    configs = [Config(hidden=(8, 6), batchnorm=True, dropout=0.2, epochs=2, seed=1),
               Config(hidden=(8,), input_norm="standardize", encoding="fourier", fourier_features=4, epochs=2, seed=2),
               Config(hidden=(6, 6), input_norm="batchnorm", dropout=0.3, init="he_normal", epochs=2, seed=3)]
    r = jaxfit.sweep(data, configs, fuse="all")
    x = np.asarray(data.x_val[:40], np.float32)
    for i, c in enumerate(configs):
        m = r.to_flax(i)
        assert isinstance(m, MLP)
        assert same(m.to_params(), (r.params(i), r.model_state(i)))
        arch = layers.arch_of(c, data.num_features, data.num_classes)
        want, _ = layers.apply(arch, *jax.tree.map(jnp.asarray, (r.params(i), r.model_state(i))), x, train=False)
        assert same(m(x), want)
        assert same(m(x), r.outputs(i, x))  # bitwise: outputs() computes on JAX arrays too
        assert np.array_equal(np.argmax(m(x), -1), r.predict(i, x))
        t = r.to_torch(i).state_dict()
        assert set(state_dict(m)) == set(t)
        fresh = MLP.from_config(c, data.num_features, data.num_classes, x_train=data.x_train)
        assert not same(m.to_params()[0], fresh.to_params()[0])  # trained


# ----------------------------------------------------------------------------- inside a vmapped program


class Residual(nnx.Module):
    """A user's module from jaxfit.flax layers: its Dropout takes the program's rate and key."""

    def __init__(self, f, h, k, *, rngs):
        self.inp = Linear(f, h, rngs=rngs)
        self.block = Linear(h, h, rngs=rngs)
        self.bn = BatchNorm1d(h)
        self.drop = Dropout()
        self.out = Linear(h, k, rngs=rngs)

    def __call__(self, x):  # no train argument: the program sets the mode
        h = jax.nn.relu(self.inp(x))
        h = h + self.drop(jax.nn.relu(self.bn(self.block(h))))
        return self.out(h)


def test_split_for_program_and_apply_graph_under_vmap_and_grad():
    x = jnp.asarray(xs(n=8, f=3))
    mods = [Residual(3, 5, 2, rngs=nnx.Rngs(s)) for s in range(3)]
    split = [split_for_program(m) for m in mods]
    g = split[0][0]
    assert all(s[0] == g and hash(s[0]) == hash(g) for s in split)  # one graph: one program
    assert split_for_program(Residual(3, 6, 2, rngs=nnx.Rngs(0)))[0] != g
    params = jax.tree.map(lambda *a: jnp.stack(a), *[s[1] for s in split])
    states = jax.tree.map(lambda *a: jnp.stack(a), *[s[2] for s in split])
    rates = jnp.array([0.0, 0.3, 0.6])
    keys = jax.random.split(jax.random.PRNGKey(1), 3)

    def loss(p, st, r, k):
        out, new = apply_graph(g, p, st, x, train=True, key=k, rate=r)
        return jnp.mean(out ** 2), new

    (vals, new_states), grads = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))(params, states, rates, keys)
    for j, m in enumerate(mods):
        with jaxfit.flax.program_inputs(key=keys[j], rate=rates[j]):  # alone, the same inputs
            out = m(x)
        np.testing.assert_allclose(vals[j], jnp.mean(out ** 2), rtol=1e-6)
        np.testing.assert_allclose(new_states["bn"]["running_var"][j], m.bn.running_var[...], rtol=1e-6)
        assert int(new_states["bn"]["num_batches_tracked"][j]) == 1
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.isfinite(g).all() and np.asarray(g).any() for g in jax.tree.leaves(grads))
    # eval: running statistics, no dropout, state unchanged
    _, p1, s1 = split_for_program(mods[1])
    out, new = apply_graph(g, p1, s1, x, train=False)
    assert same(jax.tree.leaves(new), jax.tree.leaves(s1))
    mods[1].eval()
    np.testing.assert_allclose(out, mods[1](x), rtol=1e-6)


def test_mlps_of_one_structure_share_a_graph_and_vmap_their_rates():
    x = jnp.asarray(xs())
    cs = [Config(hidden=(5, 4), batchnorm=True, dropout=0.4, seed=1),
          Config(hidden=(5, 4), batchnorm=True, dropout=0.1, lr=0.1, init="he_normal", seed=2)]
    ps = [_params_of(c, 3, 2, x, "float32") for c in cs]
    split = [split_for_program(MLP.from_params(c, p, s)) for c, (_, p, s) in zip(cs, ps)]
    g = split[0][0]
    assert split[1][0] == g  # rate, lr, init, seed: numbers, not graph
    assert split_for_program(MLP.from_config(cs[0].replace(hidden=(5, 3)), 3, 2))[0] != g
    assert "drop0.rate" not in state_dict(nnx.merge(*split[0]))
    params, states = (jax.tree.map(lambda *a: jnp.stack(a), *[s[j] for s in split]) for j in (1, 2))
    keys = jax.random.split(jax.random.PRNGKey(9), 2)
    # no rate given: each network's own (a Hyper variable of its state), layer i keyed fold_in(key, i)
    out, new = jax.vmap(lambda p, s, k: apply_graph(g, p, s, x, train=True, key=k))(params, states, keys)
    for j, (c, (arch, p, s)) in enumerate(zip(cs, ps)):
        want, want_s = layers.apply(arch, p, s, x, train=True, dropout_rate=jnp.float32(c.dropout),
                                    dropout_key=keys[j])
        np.testing.assert_allclose(out[j], want, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(new["bn1"]["running_var"][j], want_s["bn"][1]["var"], rtol=1e-6)
    # unbatched, with a rate given: bitwise layers.apply
    rate = jnp.float32(0.25)
    out, new = apply_graph(g, split[0][1], split[0][2], x, train=True, key=keys[0], rate=rate)
    want, want_s = layers.apply(ps[0][0], ps[0][1], ps[0][2], x, train=True, dropout_rate=rate, dropout_key=keys[0])
    assert same(out, want)
    assert same(new["bn0"]["running_var"][...], want_s["bn"][0]["var"])

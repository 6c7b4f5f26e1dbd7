"""Fused buckets: configs of different structure in one compiled program give the numbers they get alone.

Everything here is float64 where numbers are compared (x64 is scoped to the float64 buckets by the
engine; these tests only turn it on locally to build float64 arrays)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxfit
from jaxfit import Config
from jaxfit.engine import plan
from jaxfit.nn import layers
from jaxfit.program.train import make_segment, run_of, spec_of

STEPS_TOL = 1e-10  # float64 losses over 1,000 steps (docs/parity.md), as the trajectory parity suite
PARAM_TOL = 1e-9


@pytest.fixture(scope="module")
def small():
    return jaxfit.datasets.sum_bin(n=160, seed=3)  # 128 train / 32 val, 3 classes


def test_random_draws_are_prefixes_of_longer_draws():
    """What bucket-independent initialisation rests on (jax_threefry_partitionable, the default)."""
    key = jax.random.PRNGKey(7)
    with jax.enable_x64(True):
        for dtype in (jnp.float32, jnp.float64):
            for draw in (lambda n: jax.random.uniform(key, (n,), dtype, -1.0, 1.0),
                         lambda n: jax.random.normal(key, (n,), dtype)):
                np.testing.assert_array_equal(np.asarray(draw(1000))[:37], np.asarray(draw(37)))
            u = jax.random.uniform(key, (5, 7), dtype)
            np.testing.assert_array_equal(np.asarray(u).ravel(), np.asarray(jax.random.uniform(key, (35,), dtype)))


INIT_CONFIGS = [
    Config(hidden=(3,), init="torch"),
    Config(hidden=(5, 2), init="he_normal", activation="tanh"),
    Config(hidden=(7, 7, 4), init="glorot_uniform", batchnorm=True),
    Config(hidden=(2, 6), init="lecun_normal", encoding="fourier", fourier_features=3, fourier_scale=2.0),
    Config(hidden=(6,), init="torch", encoding="fourier", fourier_features=5, input_norm="standardize"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_init_is_bitwise_the_config_alone(small, dtype):
    """Each config's real weights (and Fourier matrix) in a fused Arch of wider, deeper networks
    with other activations and init schemes equal bitwise what it draws alone; padding is exact zeros."""
    cfgs = [c.replace(dtype=dtype) for c in INIT_CONFIGS]
    with jax.enable_x64(dtype == "float64"):
        spec = plan.spec_for(cfgs, small)
        arch = spec.arch
        assert arch.fused and arch.padded and len(arch.depths) == 3
        x = jnp.asarray(small.x_train, dtype)
        for c in cfgs:
            key = jax.random.PRNGKey(11)
            own_arch = spec_of(c, small.n_train, small.n_val, 2, 3).arch
            p0, s0 = layers.init(own_arch, key, dtype, fourier_scale=c.fourier_scale, x_train=x)
            struct = jax.tree_util.tree_map(jnp.asarray, layers.struct_of(arch, c, dtype))
            pf, sf = layers.init(arch, key, dtype, fourier_scale=c.fourier_scale, x_train=x, struct=struct)
            pf, sf = jax.tree_util.tree_map(np.asarray, (pf, sf))
            po, so = layers.unpad_tree(arch, c, pf, sf)
            for a, b in zip(jax.tree_util.tree_leaves((p0, s0)), jax.tree_util.tree_leaves((po, so))):
                np.testing.assert_array_equal(np.asarray(a), b)
            # everything outside the config's own network is exactly zero
            repad, _ = layers.pad_tree(arch, c, po, so, dtype)
            for slot_f, slot_r in zip(pf["dense"], repad["dense"]):
                np.testing.assert_array_equal(slot_f["w"], slot_r["w"])
                np.testing.assert_array_equal(slot_f["b"], slot_r["b"])


# Every selector family in one bucket: widths, depth, activation, output, loss, optimiser kind and
# Nesterov, init, input normalisation, hidden BatchNorm, dropout, Fourier encoding, epochs.
# A bias right before a hidden BatchNorm has zero true gradient: RMSprop or Adam would normalise its
# rounding noise into steps of size lr (measured: 5e-10 on those biases alone, 1e-15 on every other
# parameter, from any change of XLA's kernels), so the hidden-BatchNorm config trains with SGD and
# RMSprop goes to the input-BatchNorm one, whose biases have real gradients.
FAMILY = [
    dict(hidden=(4,), activation="relu", optimizer="sgd", momentum=0.9, nesterov=True, lr=0.05),
    dict(hidden=(16, 8), activation="tanh", optimizer="adam", lr=0.01, init="he_normal", epochs=9),
    dict(hidden=(8, 8, 8), activation="sigmoid", optimizer="sgd", lr=0.05, weight_decay=1e-3, batchnorm=True),
    dict(hidden=(12,), activation="selu", optimizer="adamw", lr=0.01, output="softmax", init="glorot_uniform"),
    dict(hidden=(6, 3), activation="gelu", optimizer="sgd", lr=0.1, loss="mse", input_norm="standardize"),
    dict(hidden=(10,), activation="sin", optimizer="adam", lr=0.01, encoding="fourier", fourier_features=4,
         fourier_scale=1.5, init="lecun_normal"),
    dict(hidden=(5, 5), activation="softplus", optimizer="rmsprop", momentum=0.5, lr=0.003, input_norm="batchnorm"),
    dict(hidden=(9,), activation="leaky_relu", optimizer="adam", lr=0.01, dropout=0.2, epochs=6),
]


def family_configs():
    return [Config(**{"epochs": 12, "batch_size": 16, "seed": k, "dtype": "float64", **kw}) for k, kw in
            enumerate(FAMILY)]


@pytest.mark.parametrize("branches", ["every", "one per block"])
def test_fused_equals_unfused_every_selector_family_float64(small, branches, monkeypatch):
    """One fused program (fuse='all') against one program per structure (fuse='none'): 96 steps of
    each config, float64, within the trajectory tolerances; epochs of shorter configs end where theirs do.
    "every": each choice computes every branch and selects (the 8 configs differ in every choice, so
    no block of the default sizes shares them); "one per block": blocks of one config, where each
    choice is a `lax.switch` on the block's own index (jaxfit.nn.choice)."""
    from jaxfit.engine import compile as programs, cpu

    cfgs = family_configs()
    if branches == "one per block":
        monkeypatch.setattr(cpu, "block_sizes", lambda *a, **k: (1, 1))
    before = set(programs._compiled)
    fused = jaxfit.sweep(small, cfgs, fuse="all")
    hints = [k[6][:2] for k in set(programs._compiled) - before]
    assert hints == [(True, True) if branches == "one per block" else (False, False)]
    alone = jaxfit.sweep(small, cfgs, fuse="none")
    assert len(fused.meta["plans"]) == 1 and len(alone.meta["plans"]) == len(cfgs)
    for m in ("train_loss", "last_batch_loss", "full_train_loss", "val_loss", "val_acc", "train_acc"):
        np.testing.assert_allclose(fused.curves[m], alone.curves[m], rtol=0, atol=STEPS_TOL, err_msg=m)
    assert np.isnan(fused.curves["train_loss"][1, 9:]).all() and np.isfinite(fused.curves["train_loss"][1, :9]).all()
    for i in range(len(cfgs)):
        for a, b in zip(jax.tree_util.tree_leaves((fused.params(i), fused.model_state(i))),
                        jax.tree_util.tree_leaves((alone.params(i), alone.model_state(i)))):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=PARAM_TOL)


def test_a_config_does_not_depend_on_its_bucket_mates_over_1000_steps():
    """float64, 1,000 steps: a 2-8-3 net alone, and fused beside a wide and a deep neighbour of other
    activations (added or removed), agree within 1e-10; in float32 within the short-horizon bound."""
    data = jaxfit.datasets.sum_bin(n=80, seed=1)  # 64 train rows: 4 steps per epoch at batch 16
    me = Config(hidden=(8,), activation="tanh", optimizer="sgd", momentum=0.9, lr=0.05, batch_size=16, epochs=250,
                seed=5, dtype="float64")
    wide = me.replace(hidden=(64,), activation="relu", optimizer="adam", lr=1e-3, seed=6)
    deep = me.replace(hidden=(16, 16, 16), activation="gelu", seed=7)
    alone = jaxfit.sweep(data, [me], fuse="none")
    with_wide = jaxfit.sweep(data, [wide, me], fuse="all")
    with_both = jaxfit.sweep(data, [deep, me, wide], fuse="all")
    assert with_both.meta["plan"][0]["padded_hidden"] == [64, 64, 64]
    for other, j in ((with_wide, 1), (with_both, 1)):
        np.testing.assert_allclose(other.curves["train_loss"][j], alone.curves["train_loss"][0], rtol=0, atol=STEPS_TOL)
        for a, b in zip(jax.tree_util.tree_leaves(other.params(j)), jax.tree_util.tree_leaves(alone.params(0))):
            np.testing.assert_allclose(a, b, rtol=0, atol=PARAM_TOL)
    f32 = [c.replace(dtype="float32", epochs=25) for c in (me, wide, deep)]  # 100 steps
    a32 = jaxfit.sweep(data, f32[:1], fuse="none")
    b32 = jaxfit.sweep(data, f32, fuse="all")
    np.testing.assert_allclose(b32.curves["train_loss"][0], a32.curves["train_loss"][0], rtol=0, atol=1e-5)


def test_padded_units_stay_exactly_zero(small):
    """Inside the program: after training with weight decay and a sigmoid (whose value at 0 is 0.5),
    every padded weight, bias and Fourier row of the fused state is exactly zero."""
    cfgs = [Config(hidden=(3,), activation="sigmoid", optimizer="sgd", weight_decay=0.1, lr=0.5, epochs=3,
                   encoding="fourier", fourier_features=2),
            Config(hidden=(7, 5), activation="softplus", optimizer="adamw", lr=0.05, epochs=3, encoding="fourier",
                   fourier_features=6)]
    spec = plan.spec_for(cfgs, small)
    runs = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *[run_of(spec, c) for c in cfgs])
    hp = jaxfit.config.hparams(cfgs, "float32")
    lrs = jaxfit.nn.optim.lr_table(cfgs, 3).astype(np.float32)
    from jaxfit.engine.run import _carry0, _device_data

    data = _device_data(small, "float32")
    carry = _carry0(spec, runs, hp, data, None, None)
    prog = jax.jit(make_segment(spec, 3))
    c, m = prog(carry, np.bool_(True), np.int32(0), runs, hp, lrs, data, {})
    assert np.isfinite(np.asarray(m["train_loss"])).all()
    for params, state in ((c.ts.params, c.ts.model_state), (c.best_params, c.best_state)):  # best epoch's too
        check_padding_zero(cfgs, spec, *jax.tree_util.tree_map(np.asarray, (params, state)))


def check_padding_zero(cfgs, spec, p, s):
    for k, c in enumerate(cfgs):
        pk = jax.tree_util.tree_map(lambda a: a[k], p)
        sk = jax.tree_util.tree_map(lambda a: a[k], s)
        own_p, own_s = layers.unpad_tree(spec.arch, c, pk, sk)
        repad, restate = layers.pad_tree(spec.arch, c, own_p, own_s, "float32")
        for a, b in zip(jax.tree_util.tree_leaves(pk["dense"]), jax.tree_util.tree_leaves(repad["dense"])):
            np.testing.assert_array_equal(a, b)  # nothing outside the own network: exact zeros
        np.testing.assert_array_equal(sk["fourier"], restate["fourier"])
        assert np.abs(own_p["dense"][0]["w"]).min() > 0  # the real weights did train


def test_no_recompilation_when_only_numbers_change_in_a_fused_bucket(small):
    cfgs = jaxfit.grid(hidden=[(4,), (8, 8)], activation=["relu", "tanh"], optimizer=["sgd", "adam"], lr=0.01,
                       momentum=0.9, epochs=2, seed=[0, 1])
    first = jaxfit.sweep(small, cfgs)
    assert first.meta["programs"] == 1
    other = [c.replace(lr=c.lr * 3, seed=c.seed + 10) for c in cfgs]
    c0 = jaxfit.compile_count()
    again = jaxfit.sweep(small, other)
    assert jaxfit.compile_count() == c0 and again.meta["compiles"] == 0
    assert not np.array_equal(again.curves["train_loss"], first.curves["train_loss"])
    # positive control: a new structure in the bucket is a new program
    jaxfit.sweep(small, other + [cfgs[0].replace(hidden=(5, 5, 5))])
    assert jaxfit.compile_count() == c0 + 1


def test_planner_keeps_a_tiny_net_apart_from_big_ones():
    """Document 1's 2-2-3 net beside 3x512 nets: padding it to 512 costs far more run time than a
    second compile, so auto does not fuse them; small nets of several widths are fused."""
    data = jaxfit.datasets.sum_mod(n=2000, seed=0)
    tiny = jaxfit.grid(hidden=(2,), activation="sigmoid", optimizer="sgd", lr=0.1, epochs=50, batch_size=1,
                       seed=range(32))
    big = jaxfit.grid(hidden=(512, 512, 512), lr=1e-3, epochs=50, batch_size=1, seed=range(4))
    buckets = plan.plan_buckets(data, tiny + big, platform="cpu")
    assert len(buckets) == 2
    assert {tuple(b.spec.arch.hidden) for b in buckets} == {(2,), (512, 512, 512)}
    small_nets = jaxfit.grid(hidden=[(2,), (16,), (32, 32)], activation=["relu", "tanh"], lr=[1e-3, 1e-2],
                             epochs=20, seed=range(2))
    assert len(plan.plan_buckets(data, small_nets, platform="cpu")) == 1
    assert len(plan.plan_buckets(data, small_nets, fuse="none", platform="cpu")) == 6
    with pytest.raises(ValueError, match="fuse='some' is invalid: allowed values are auto, none, all"):
        plan.plan_buckets(data, small_nets, fuse="some")


def test_float64_sweep_leaves_x64_off_and_float32_programs_cached(small):
    """x64 is scoped to float64 buckets: the process setting is unchanged after a float64 sweep, and
    a float32 bucket compiled before it is not compiled again after it."""
    with jax.enable_x64(False):  # as a user's process: x64 off
        _x64_scope_checks(small)


def _x64_scope_checks(small):
    assert not jax.config.jax_enable_x64
    c32 = [Config(hidden=(4,), epochs=2, seed=s) for s in range(40)]
    jaxfit.sweep(small, c32)
    c0 = jaxfit.compile_count()
    r64 = jaxfit.sweep(small, [c.replace(dtype="float64") for c in c32])
    assert r64.curves["train_loss"].dtype == np.float64 and not jax.config.jax_enable_x64
    assert r64.params(0)["dense"][0]["w"].dtype == np.float64
    c1 = jaxfit.compile_count()
    assert c1 == c0 + 1
    jaxfit.sweep(small, c32)
    assert jaxfit.compile_count() == c1


CACHE_SCRIPT = textwrap.dedent("""
    import json, sys
    import jaxfit
    jaxfit.enable_compilation_cache(sys.argv[1])
    data = jaxfit.datasets.sum_bin(n=96, seed=0)
    cfgs = jaxfit.grid(hidden=[(4,), (8, 8)], activation=["relu", "tanh"], lr=[0.01, 0.1], epochs=3, seed=[0, 1])
    r = jaxfit.sweep(data, cfgs)
    print(json.dumps({k: r.meta[k] for k in ("programs", "programs_compiled", "programs_from_disk", "compile_s")}
                     | {"hits": jaxfit.cache_hits(), "loss": r.curves["train_loss"].tolist()}))
""")


def test_second_process_compiles_nothing_with_the_persistent_cache(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")

    def run():
        out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT, str(tmp_path / "xla")], env=env,
                             capture_output=True, text=True, timeout=240, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold, warm = run(), run()
    assert cold["programs_compiled"] == cold["programs"] >= 1 and cold["hits"] == 0
    assert os.listdir(tmp_path / "xla")  # the program was written to the cache
    assert warm["programs_compiled"] == 0 and warm["programs_from_disk"] == warm["programs"]
    assert warm["hits"] >= warm["programs"]
    assert warm["loss"] == cold["loss"]  # the cached program computes the same numbers


def _reference_greedy(cur, platform):
    """The planner's greedy merge written plainly (every pair re-estimated every round)."""
    est = [plan._total(plan.estimate(s, len(m), platform)) for s, m in cur]
    while len(cur) > 1:
        best = None
        for a in range(len(cur)):
            for b in range(a + 1, len(cur)):
                spec = plan.fuse_specs([cur[a][0], cur[b][0]])
                t = plan._total(plan.estimate(spec, len(cur[a][1]) + len(cur[b][1]), platform))
                gain = est[a] + est[b] - t
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, a, b, spec, t)
        if best is None:
            break
        _, a, b, spec, t = best
        cur = [x for k, x in enumerate(cur) if k not in (a, b)] + [(spec, cur[a][1] + cur[b][1])]
        est = [e for k, e in enumerate(est) if k not in (a, b)] + [t]
    return cur


@pytest.mark.parametrize("seed", range(4))
def test_planner_cache_gives_the_plain_greedy_plan_and_covers_every_member(seed):
    """The cached greedy (each pair estimated once) must give the plain greedy's plan, and every bucket's
    spec must hold each of its members (a cache keyed by id() once paired a bucket with a freed one's
    merge, and a config's input_norm was missing from its program)."""
    data = jaxfit.datasets.sum_bin(n=150, seed=0)
    rng = np.random.default_rng(seed)
    space = dict(hidden=[(4,), (16,), (16, 16), (8, 8, 8)], activation=["relu", "tanh", "gelu", "sigmoid"],
                 optimizer=["sgd", "adam", "rmsprop"], input_norm=["none", "standardize", "batchnorm"], init=["torch", "he_normal"],
                 encoding=["identity", "fourier"], batchnorm=[False, True], dropout=[0.0, 0.2])
    configs = [Config(**{k: v[rng.integers(len(v))] for k, v in space.items()}, epochs=10, batch_size=25,
                      lr=1e-2, seed=int(s)) for s in range(40)]
    buckets = plan.plan_buckets(data, configs, platform="cpu")
    units: dict = {}
    for i, c in enumerate(configs):
        units.setdefault(plan.remainder(c, data.num_classes), {}).setdefault(plan._unit_key(c), []).append(i)
    want = []
    for group in units.values():
        cur = [(spec_of(configs[m[0]], data.n_train, data.n_val, data.num_features, data.num_classes), list(m))
               for m in group.values()]
        want += [sorted(m) for _, m in _reference_greedy(cur, "cpu")]
    assert sorted(sorted(b.members) for b in buckets) == sorted(want)
    for b in buckets:
        for i in b.members:
            run_of(b.spec, configs[i], given_params=False, given_state=False)   # raises if not covered

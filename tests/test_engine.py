"""Sweeps: buckets, isolation, determinism, recompilation, layouts, chunking, results."""

import logging

import jax
import numpy as np
import pytest

import jaxfit
from jaxfit import Config, engine
from jaxfit.engine import cpu


def _bits(r, i):
    return {m: r.curves[m][i].copy() for m in r.curves}, jax.tree_util.tree_leaves(r.params(i))


def assert_bitwise_same(ra, i, rb, j):
    ca, pa = _bits(ra, i)
    cb, pb = _bits(rb, j)
    for m in ca:
        np.testing.assert_array_equal(ca[m], cb[m], err_msg=m)
    for a, b in zip(pa, pb):
        np.testing.assert_array_equal(a, b)


def test_isolation_divergent_config_leaks_nothing(sum_bin_small):
    # MSE with SGD at lr=1e6 overflows to NaN within the first epoch (cross-entropy only explodes to
    # ~1e16, finite, which ranks last but is not "diverged").
    base = [Config(hidden=(8,), loss="mse", optimizer="sgd", lr=lr, epochs=4, seed=s)
            for lr, s in ((0.1, 0), (0.05, 1), (0.1, 2))]
    wild = base[:1] + [base[1].replace(lr=1e6)] + base[2:]
    ra = jaxfit.sweep(sum_bin_small, base, chunk_size=3)
    rb = jaxfit.sweep(sum_bin_small, wild, chunk_size=3)
    assert rb.diverged[1] and rb.diverged_epoch[1] >= 0 and not rb.diverged[[0, 2]].any()
    assert bool(rb.table.loc[1, "diverged"])
    for i in (0, 2):
        assert_bitwise_same(ra, i, rb, i)


def test_random_streams_follow_the_seed_not_the_position(sum_bin_small):
    cfgs = [Config(hidden=(8,), epochs=2, seed=s, dropout=0.1) for s in (5, 6, 7)]
    ra = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=3)
    rb = jaxfit.sweep(sum_bin_small, cfgs[::-1], chunk_size=3)
    for i in range(3):
        assert_bitwise_same(ra, i, rb, 2 - i)


def test_rerun_is_bitwise_identical(sum_bin_small):
    cfgs = jaxfit.grid(hidden=[(8,)], lr=[0.01, 0.1], seed=range(2), epochs=3)
    ra = jaxfit.sweep(sum_bin_small, cfgs)
    rb = jaxfit.sweep(sum_bin_small, cfgs)
    for i in range(len(cfgs)):
        assert_bitwise_same(ra, i, rb, i)


def _logged_compiles(caplog, fn):
    """Run fn with JAX's compile log on: (its result, how many run programs JAX logged compiling)."""
    caplog.clear()
    jax.config.update("jax_log_compiles", True)
    try:
        with caplog.at_level(logging.WARNING):
            out = fn()
    finally:
        jax.config.update("jax_log_compiles", False)
    return out, len([rec for rec in caplog.records if "Compiling" in rec.getMessage() and "run" in rec.getMessage()])


def test_changing_numbers_compiles_nothing_new(sum_bin_small, caplog):
    g1 = jaxfit.grid(hidden=(8, 8), optimizer="sgd", lr=[0.1, 0.01], momentum=[0.0, 0.9], seed=range(2), epochs=2,
                     schedule="step", step_size=1, gamma=0.5)
    g2 = jaxfit.grid(hidden=(8, 8), optimizer="sgd", lr=[0.3, 0.003], momentum=[0.5, 0.99], seed=[10, 11], epochs=2,
                     schedule="step", step_size=2, gamma=0.9, weight_decay=1e-3)
    jaxfit.sweep(sum_bin_small, g1)
    before = jaxfit.compile_count()
    r, logged = _logged_compiles(caplog, lambda: jaxfit.sweep(sum_bin_small, g2))
    assert jaxfit.compile_count() == before
    assert r.meta["compiles"] == 0
    assert logged == 0
    # Positive control: the same three checks see a compile when the structure changes (a width no
    # other test uses, so no program of it is cached yet).
    g3 = [c.replace(hidden=(8, 13)) for c in g2]
    r3, logged3 = _logged_compiles(caplog, lambda: jaxfit.sweep(sum_bin_small, g3))
    assert jaxfit.compile_count() > before
    assert r3.meta["compiles"] >= 1
    assert logged3 >= 1


def test_the_process_keeps_a_bounded_number_of_programs(sum_bin_small, monkeypatch):
    # Each executable holds memory mappings; a process that kept every program it compiled crashed
    # in XLA once it passed the kernel's map limit. The least recently used program goes first.
    from jaxfit.engine import compile as programs

    monkeypatch.setenv("JAXFIT_PROGRAMS_KEPT", "2")
    programs.clear_cache()
    nets = [jaxfit.grid(hidden=(w,), lr=0.01, epochs=1, seed=[0, 1]) for w in (5, 7, 9)]
    for cfgs in nets:
        assert jaxfit.sweep(sum_bin_small, cfgs).meta["compiles"] == 1
    assert len(programs._compiled) == 2
    assert jaxfit.sweep(sum_bin_small, nets[2]).meta["compiles"] == 0   # kept (and now the most recent)
    assert jaxfit.sweep(sum_bin_small, nets[0]).meta["compiles"] == 1   # dropped: compiled again
    assert jaxfit.sweep(sum_bin_small, nets[2]).meta["compiles"] == 0   # kept: nets[1] went instead
    assert len(programs._compiled) == 2
    monkeypatch.setenv("JAXFIT_PROGRAMS_KEPT", "not a number")
    assert programs.programs_kept() == programs.PROGRAMS_KEPT


def test_one_program_per_bucket(sum_bin_small):
    cfgs = jaxfit.grid(hidden=[(4,), (6,)], activation=["relu", "tanh"], lr=[0.01, 0.02], epochs=1, seed=[100])
    r = jaxfit.sweep(sum_bin_small, cfgs, fuse="none")
    assert len(r.meta["plans"]) == 4  # 2 widths x 2 activations, one program each
    assert r.meta["compiles"] <= 4
    fused = jaxfit.sweep(sum_bin_small, cfgs)  # the planner fuses these small nets into one program
    assert len(fused.meta["plans"]) == 1 and fused.meta["plan"][0]["fused"]


def test_layout_independence_float64(sum_bin_small):
    """float64: a config alone, in a chunk of 8, or chunked by 3 agrees to 1e-10 / 1e-9 (docs/parity.md)."""
    cfgs = [Config(hidden=(16, 16), optimizer=o, lr=0.02, momentum=0.9 if o == "sgd" else 0.0, epochs=4,
                   batch_size=16, seed=s, dtype="float64") for o in ("sgd", "adam") for s in range(4)]
    whole = jaxfit.sweep(sum_bin_small, cfgs)  # one chunk of 4 per bucket
    by3 = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=3)
    for i in (0, 5):
        alone = jaxfit.train(sum_bin_small, cfgs[i])
        for other, j in ((whole, i), (by3, i)):
            np.testing.assert_allclose(alone.curves["train_loss"][0], other.curves["train_loss"][j], rtol=0, atol=1e-10)
            for a, b in zip(jax.tree_util.tree_leaves(alone.params(0)), jax.tree_util.tree_leaves(other.params(j))):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_layout_float32_close_over_first_epochs(sum_bin_small):
    cfgs = [Config(hidden=(16, 16), lr=0.01, epochs=2, batch_size=16, seed=s) for s in range(5)]  # 32 steps
    whole = jaxfit.sweep(sum_bin_small, cfgs)
    alone = jaxfit.train(sum_bin_small, cfgs[3])
    np.testing.assert_allclose(alone.curves["train_loss"][0], whole.curves["train_loss"][3], rtol=0, atol=1e-5)


def test_fixed_chunk_size_is_bitwise_reproducible_and_recorded(sum_bin_small):
    cfgs = [Config(hidden=(8,), epochs=2, seed=s) for s in range(5)]
    ra = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=2)
    rb = jaxfit.sweep(sum_bin_small, cfgs[2:] + cfgs[:2], chunk_size=2)
    plan = ra.meta["plans"][0]
    assert plan["chunk_size"] == 2 and plan["chunks"] == [[0, 1], [2, 3], [4]]
    # config 2 sits in a chunk of the same shape in both runs
    assert_bitwise_same(ra, 2, rb, 0)


def test_memory_budget_splits_into_chunks(sum_bin_small):
    cfgs = [Config(hidden=(8,), epochs=1, seed=s) for s in range(6)]
    spec = engine.plan.plan_buckets(sum_bin_small, cfgs)[0].spec
    per = engine.plan.bytes_per_config(spec)
    r = jaxfit.sweep(sum_bin_small, cfgs, memory_budget=per * 2 + 1)
    plan = r.meta["plans"][0]
    assert len(plan["chunks"]) >= 3 and sorted(sum(plan["chunks"], [])) == list(range(6))
    full = jaxfit.sweep(sum_bin_small, cfgs)
    np.testing.assert_allclose(r.curves["train_loss"], full.curves["train_loss"], rtol=0, atol=1e-6)


def test_sweep_of_200_configs_on_sum_bin_and_sum_mod():
    for data in (jaxfit.datasets.sum_bin(n=500, seed=1), jaxfit.datasets.sum_mod(n=500, seed=1)):
        cfgs = jaxfit.grid(hidden=(16,), optimizer="sgd", lr=list(np.geomspace(1e-3, 0.5, 10)),
                           momentum=[0.0, 0.9], seed=range(10), epochs=3, batch_size=50)
        assert len(cfgs) == 200
        r = jaxfit.sweep(data, cfgs)
        assert len(r.table) == 200 and r.meta["compiles"] <= 1
        assert np.isfinite(r.curves["train_loss"]).all()
        # every data set: the best config beats guessing the commonest class, and most configs learn
        best, majority = r.table["final_train_acc"].max(), np.bincount(data.y_train).max() / data.n_train
        assert best > max(majority, 0.5 if data.name == "sum_bin" else 0.0), (data.name, best, majority)
        loss = r.curves["train_loss"]
        assert (loss[:, -1] < loss[:, 0]).mean() > 0.5, data.name


def test_batch_order_validation(sum_bin_small):
    cfg = Config(hidden=(4,), batch_size=100, epochs=2)
    with pytest.raises(ValueError, match=r"shape .* need \[epochs, steps, batch\] = \[2, 3, 100\]"):
        jaxfit.train(sum_bin_small, cfg, batch_order=np.zeros((2, 2, 100), int))
    bad = np.zeros((2, 3, 100), int)
    bad[0, 0, 5] = 256
    with pytest.raises(ValueError, match=r"indices must lie in 0..255"):
        jaxfit.train(sum_bin_small, cfg, batch_order=bad)
    with pytest.raises(ValueError, match="integer"):
        jaxfit.train(sum_bin_small, cfg, batch_order=np.zeros((2, 3, 100)))


def test_bad_inputs_fail_before_compiling(sum_bin_small):
    before = jaxfit.compile_count()
    with pytest.raises(ValueError, match="Dataset"):
        jaxfit.sweep(np.zeros((3, 2)), [Config()])
    with pytest.raises(ValueError, match="empty"):
        jaxfit.sweep(sum_bin_small, [])
    with pytest.raises(ValueError, match=r"config 1: Config.loss='bce' needs 2 classes"):
        jaxfit.sweep(sum_bin_small, [Config(), Config(loss="bce", output="sigmoid")])
    assert jaxfit.compile_count() == before


def test_results_table_summary_best_predict_save_load(sum_bin_small, tmp_path):
    cfgs = jaxfit.grid(hidden=[(4,), (16,)], lr=[0.001, 0.05], seed=range(3), epochs=4)
    r = jaxfit.sweep(sum_bin_small, cfgs)
    t = r.table
    assert list(t.index) == list(range(12)) and {"hidden", "lr", "seed", "final_val_acc", "diverged"} <= set(t.columns)
    s = r.summary()
    assert len(s) == 4 and (s[("final_val_acc", "count")] == 3).all()
    best = r.best("val_acc", k=2)
    means = s[("final_val_acc", "mean")].sort_values(ascending=False)
    assert best["final_val_acc_mean"].iloc[0] == pytest.approx(means.iloc[0])
    i = int(np.argmax(t["final_val_acc"]))
    pred = r.predict(i, sum_bin_small.x_val)
    assert np.mean(pred == sum_bin_small.y_val) == pytest.approx(t.loc[i, "final_val_acc"], abs=1e-6)
    path = r.save(tmp_path / "run")
    back = jaxfit.SweepResult.load(path)
    assert back.configs == r.configs
    np.testing.assert_array_equal(back.curves["val_loss"], r.curves["val_loss"])
    for a, b in zip(jax.tree_util.tree_leaves(back.params(5)), jax.tree_util.tree_leaves(r.params(5))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.predict(i, sum_bin_small.x_val), pred)
    import pandas as pd
    assert len(pd.read_parquet(tmp_path / "run" / "table.parquet")) == 12
    with pytest.raises(ValueError, match="unknown metric"):
        r.best("accuracy")


def test_checkpointed_chunks_survive_a_crash_and_resume_bitwise(sum_bin_small, tmp_path):
    cfgs = [Config(hidden=(8,), epochs=2, seed=s) for s in range(5)]
    ref = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=2)

    class Died(Exception):
        pass

    def die_after_first(plan, ci, out):
        if ci == 0:
            raise Died

    with pytest.raises(Died):
        jaxfit.sweep(sum_bin_small, cfgs, chunk_size=2, checkpoint_dir=tmp_path, on_chunk=die_after_first)
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 1  # the finished chunk is on disk
    r = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=2, checkpoint_dir=tmp_path)
    assert r.meta["plans"][0]["resumed"] == 1
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 3
    for i in range(5):
        assert_bitwise_same(ref, i, r, i)
    # a changed config misses its chunk and is trained afresh
    r2 = jaxfit.sweep(sum_bin_small, cfgs[:4] + [cfgs[4].replace(lr=0.02)], chunk_size=2, checkpoint_dir=tmp_path)
    assert r2.meta["plans"][0]["resumed"] == 2
    assert not np.array_equal(r2.curves["train_loss"][4], ref.curves["train_loss"][4])


def test_params_without_model_state_start_from_fresh_state(sum_bin_small):
    c = Config(hidden=(8,), epochs=1, input_norm="standardize")
    a = jaxfit.train(sum_bin_small, c)
    start = jaxfit.train(sum_bin_small, c.replace(epochs=1, lr=1e-30))  # params barely move
    b = jaxfit.train(sum_bin_small, c, params=start.params(0))
    np.testing.assert_allclose(b.curves["train_loss"], a.curves["train_loss"], rtol=1e-4)
    np.testing.assert_array_equal(b.model_state(0)["norm_std"], a.model_state(0)["norm_std"])


def test_matmul_precision_is_checked_and_recorded(sum_bin_small):
    with pytest.raises(ValueError, match="matmul_precision='fast' is invalid: allowed values are highest"):
        jaxfit.sweep(sum_bin_small, [Config(hidden=(4,), epochs=1)], matmul_precision="fast")
    r = jaxfit.sweep(sum_bin_small, [Config(hidden=(4,), epochs=1)])
    assert r.meta["matmul_precision"] == "highest"


def test_cache_blocking_with_a_chunk_the_devices_do_not_divide(sum_bin_small):
    """21 configs of a net big enough to be blocked (2-64-64-3, Adam): the chunk is not sharded (21
    is odd), the configs run 7 (or 3) at a time, and the numbers are those of configs trained alone."""
    cfgs = [Config(hidden=(64, 64), optimizer="adam", lr=1e-3, batch_size=16, epochs=2, seed=s, dtype="float64")
            for s in range(21)]
    spec = engine.plan.plan_buckets(sum_bin_small, cfgs)[0].spec
    train_block, _ = cpu.block_sizes(spec, 21, 1, "cpu")
    assert train_block in (1, 3, 7), train_block  # blocked, by a divisor of 21
    together = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=21)
    alone = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=1)
    for m in ("train_loss", "val_loss"):
        np.testing.assert_allclose(together.curves[m], alone.curves[m], rtol=0, atol=1e-10, err_msg=m)
    np.testing.assert_allclose(together.params(20)["dense"][1]["w"], alone.params(20)["dense"][1]["w"], rtol=0, atol=1e-9)


def test_blocks_align_to_the_choices_and_hints_only_where_every_block_shares_them():
    """The large sweep's 64-wide bucket: 270 configs per device in groups of 90 that share their
    choices; a block of 54 would straddle them, so 45 is taken (one branch per block)."""
    assert cpu.aligned_block(270, 54, {90, 180}) == 45
    assert cpu.aligned_block(12, 12, {5}) == 1
    assert cpu.hints_hold(45, 270, {90, 180}) and not cpu.hints_hold(54, 270, {90, 180})
    assert cpu.hints_hold(0, 6, {6}) and not cpu.hints_hold(0, 12, {6})  # 0: one device's range at once
    assert cpu.hints_hold(1, 12, {5, 7})


@pytest.mark.parametrize("blocks", [(3, 1), (2, 12)])
def test_a_block_straddling_a_choice_computes_every_branch(sum_bin_small, blocks, monkeypatch):
    """4 gelu, 4 relu, then 4 tanh configs (sorted by choice), float64, on one or two devices. Blocks
    of 3 straddle the changes at 4 and 8: training selects (every branch); blocks of 2 switch (one
    branch per block). Evaluation in one block per device straddles them too; in blocks of 1 it
    switches. Either way the numbers are those of the program that computes every branch everywhere,
    so a wrong hint (tanh trained as relu) cannot pass, and the switch must leave XLA conditionals."""
    from jaxfit.engine import compile as programs

    cfgs = jaxfit.grid(hidden=(8,), activation=["tanh", "relu", "gelu"], seed=range(4), optimizer="adam", lr=1e-2,
                       batch_size=16, epochs=3, dtype="float64")
    monkeypatch.setattr(cpu, "block_sizes", lambda *a: blocks)
    before = set(programs._compiled)
    hinted = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=12, fuse="all")
    keys = list(set(programs._compiled) - before)
    assert [k[6][:2] for k in keys] == [(blocks[0] == 2, blocks[1] == 1)]
    monkeypatch.setenv("JAXFIT_CHOICE_HINTS", "0")
    before = set(programs._compiled)
    plain = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=12, fuse="all")
    (plain_key,) = set(programs._compiled) - before

    def branches(key):  # XLA conditionals left in the optimised program: a hint's switch is one
        return programs._compiled[key].as_text().count(" conditional(")

    assert branches(keys[0]) > branches(plain_key), (branches(keys[0]), branches(plain_key))
    for m in ("train_loss", "val_loss", "train_acc"):
        np.testing.assert_allclose(hinted.curves[m], plain.curves[m], rtol=0, atol=1e-12, err_msg=m)


@pytest.mark.parametrize("blocks", [(3, 1), (2, 1)])
def test_a_block_of_one_seed_draws_one_batch_order(sum_bin_small, blocks, monkeypatch):
    """Three rates x two seeds, shuffled, with dropout, float64: sorted by seed, blocks of 3 each
    hold one seed (one batch order and one dropout key per block, the seed a scalar of the block);
    blocks of 2 straddle the change at 3 and draw every config's own. Either way the numbers are
    those of configs drawing their own orders, so a block trained with a wrong seed cannot pass."""
    from jaxfit.engine import compile as programs

    cfgs = jaxfit.grid(hidden=(8,), lr=[1e-2, 3e-2, 1e-1], seed=[5, 9], optimizer="adam", dropout=0.25,
                       batch_size=16, epochs=3, dtype="float64")
    monkeypatch.setattr(cpu, "block_sizes", lambda *a: blocks)
    programs.clear_cache()
    shared = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=6)
    (key,) = programs._compiled
    assert key[6][2] == (blocks[0] == 3)
    monkeypatch.setenv("JAXFIT_SEED_BLOCKS", "0")
    programs.clear_cache()
    own = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=6)
    (own_key,) = programs._compiled
    assert own_key[6][2] is False
    for m in ("train_loss", "val_loss", "train_acc"):
        np.testing.assert_allclose(shared.curves[m], own.curves[m], rtol=0, atol=1e-12, err_msg=m)
    np.testing.assert_allclose(shared.params(4)["dense"][0]["w"], own.params(4)["dense"][0]["w"], rtol=0, atol=1e-12)

"""Successive halving inside a sweep (jaxfit.Halving): the decisions, the refusals, and survivors that
train exactly as without pruning."""

import math
import re

import jax
import numpy as np
import pytest

import jaxfit
from jaxfit import Config
from jaxfit.engine import compile as programs
from jaxfit.engine import cpu, prune, run


def test_rungs_and_a_decision_by_seed_averaged_groups():
    h = jaxfit.Halving(metric="val_loss", min_epochs=2, eta=3)
    assert h.rungs(20) == [2, 6, 18] and h.rungs(18) == [2, 6] and h.rungs(2) == []
    configs = [Config(hidden=(4,), lr=lr, seed=s, epochs=10) for lr in (0.1, 0.01, 0.001, 0.3) for s in (0, 1)]
    configs.append(Config(hidden=(4,), lr=0.5, seed=0, epochs=2))  # ends at the rung: never ranked
    # per setting (lr) the two seeds' values: means 0.5, 0.4, 0.8 and NaN (a diverged seed sinks its setting)
    value = {0: 0.1, 1: 0.9, 2: 0.4, 3: 0.4, 4: 0.8, 5: 0.8, 6: math.nan, 7: 0.0}
    kept, stopped = prune.decide(h, 2, range(9), configs, value)
    # 4 groups, ceil(4 / 3) = 2 kept: lr 0.01 (0.4) and lr 0.1 (0.5, though its seed 1 is worst alone)
    assert kept == [0, 1, 2, 3] and stopped == [4, 5, 6, 7]  # config 8 ends at the rung: in neither


def test_keeps_ceil_groups_over_eta_nan_last_ties_by_position():
    h = jaxfit.Halving(metric="val_acc", min_epochs=1, eta=2, group_by=())
    configs = [Config(hidden=(4,), lr=0.1 * (k + 1), epochs=4) for k in range(5)]
    value = {0: 0.5, 1: 0.9, 2: 0.5, 3: math.nan, 4: 0.7}  # accuracy: higher is better
    kept, stopped = prune.decide(h, 1, range(5), configs, value)
    assert kept == [0, 1, 4] and stopped == [2, 3]  # ceil(5 / 2) = 3; the tie 0 vs 2 goes to 0; NaN last
    assert prune.decide(h, 4, range(5), configs, value) == ([], [])  # nobody trains past epoch 4


@pytest.mark.parametrize("kwargs, match", [
    ({"metric": "val_los"}, "allowed values are val_loss"),
    ({"eta": 1}, "eta=1"),
    ({"min_epochs": 0}, "min_epochs=0"),
    ({"group_by": ("sead",)}, "'sead' is not a Config field"),
])
def test_bad_halving_fields_are_named(kwargs, match):
    with pytest.raises(jaxfit.UserError, match=match):
        jaxfit.Halving(**kwargs)


def test_refusals_come_before_compiling(sum_bin_small, tmp_path):
    cfgs = jaxfit.grid(hidden=(4,), lr=[0.1, 0.01], epochs=6)
    c0 = jaxfit.compile_count()
    with pytest.raises(jaxfit.UserError, match=r"rung epoch\(s\) \[1, 3\] are not evaluated with eval_every=2"):
        jaxfit.sweep(sum_bin_small, cfgs, prune=jaxfit.Halving(min_epochs=1), eval_every=2)
    with pytest.raises(jaxfit.UserError, match="prune=: cannot be combined with on_chunk"):
        jaxfit.sweep(sum_bin_small, cfgs, prune=jaxfit.Halving(), on_chunk=print)
    with pytest.raises(jaxfit.UserError, match="pass jaxfit.Halving"):
        jaxfit.sweep(sum_bin_small, cfgs, prune="halving")
    assert jaxfit.compile_count() == c0


GRID = dict(hidden=[(8,), (16, 16)], activation=["relu", "tanh"], lr=[0.3, 0.03, 0.003], seed=[0, 1], epochs=9,
            dtype="float64")


@pytest.fixture(scope="module")
def full_and_pruned(sum_bin_small):
    cfgs = jaxfit.grid(**GRID)
    full = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4)
    programs.clear_cache()  # the pruned sweep's compiles are counted from nothing
    pruned = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=jaxfit.Halving(min_epochs=1, eta=3))
    return cfgs, full, pruned


def test_survivors_train_as_without_pruning_and_the_stopped_keep_their_epochs(full_and_pruned):
    cfgs, full, h = full_and_pruned
    t = h.table
    rungs = h.meta["prune"]["rungs"]
    assert [(r["epoch"], r["ranked"], r["kept"]) for r in rungs] == [(1, 24, 8), (3, 8, 4)]  # 12 -> 4 -> 2 groups
    assert t["pruned"].sum() == 20 and sorted(set(t["stopped_epoch"])) == [1, 3, 9]
    assert (t.groupby(["hidden", "activation", "lr"])["stopped_epoch"].nunique() == 1).all()  # seeds together
    for i in range(len(cfgs)):
        stop = int(t["stopped_epoch"][i])
        for m in full.curves:
            np.testing.assert_allclose(h.curves[m][i, :stop], full.curves[m][i, :stop], rtol=0, atol=1e-10,
                                       err_msg=f"config {i} {m}")
            assert np.isnan(h.curves[m][i, stop:]).all()
        if stop == cfgs[i].epochs:
            for a, b in zip(jax.tree_util.tree_leaves(h.params(i)), jax.tree_util.tree_leaves(full.params(i))):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
            assert t["final_val_loss"][i] == pytest.approx(full.table["final_val_loss"][i], abs=1e-10)
        else:  # its final metrics are those of its last epoch trained
            assert t["final_val_loss"][i] == pytest.approx(full.curves["val_loss"][i, stop - 1], abs=1e-10)
            best = int(np.nanargmax(full.curves["val_acc"][i, :stop]))
            assert t["best_val_acc"][i] == pytest.approx(full.curves["val_acc"][i, best], abs=1e-10)
        assert h.params(i, best=True)["dense"][0]["w"].shape == full.params(i)["dense"][0]["w"].shape
    assert h.meta["model_steps_trained"] < full.meta["model_steps_trained"] / 2
    assert "verdict" in t.columns or len(t.columns) > len(full.table.columns) - 1  # diagnostics ran on it


def test_survivors_stay_in_the_programs_they_started_in(full_and_pruned, sum_bin_small, monkeypatch):
    # With a fixed chunk size the survivors are packed into chunks of the same shape, each choice
    # group padded to whole blocks where that keeps the program: one program per bucket, compiled once.
    cfgs, _, h = full_and_pruned
    assert h.meta["compiles"] == len(h.meta["plans"])
    # The packing itself, on survivors relu, tanh, tanh, tanh in chunks of 4 with whole-device blocks
    # (fixed here: the block size otherwise follows this CPU's L2 cache). The one relu config straddles
    # with one host device or two (the suite has two once benchmarks/ is imported before JAX starts).
    monkeypatch.setattr(cpu, "block_sizes", lambda *a, **k: (0, 0))
    from jaxfit.engine.plan import plan_buckets

    (b,) = plan_buckets(sum_bin_small, cfgs)
    first = [b.members[k:k + 4] for k in range(0, len(b.members), 4)]
    with programs.x64_scope(b.spec.dtype):
        _, _, key0 = plain(b.spec, b.members, 4, 1, cfgs)  # the bucket's first program: every chunk one choice
        assert key0[6][:2] == (True, True)
        relu = [i for i in b.members if cfgs[i].activation == "relu"][:1]
        tanh = [i for i in b.members if cfgs[i].activation == "tanh"][:3]
        survivors = relu + tanh
        chunks, _, key = run._pack(b.spec, survivors, 4, 1, cfgs, {key0})
        assert key == key0 and [i for ch in chunks for i in dict.fromkeys(ch)] == survivors
        assert all(len(ch) <= 4 for ch in chunks) and len(chunks) == 2  # relu padded to its own block(s)
        # Control: packed plainly, the chunk straddles the choice and needs another program.
        _, _, key_plain = plain(b.spec, survivors, 4, 1, cfgs)
        assert key_plain != key0 and key_plain[6][:2] == (False, False)
        # Where the extra chunks would cost more than a compile, the plain layout (and a compile) is taken.
        monkeypatch.setattr(run.planmod, "estimate", lambda spec, n, platform: {"compile_s": 0.0, "run_s": float(n)})
        assert run._pack(b.spec, survivors, 4, 1, cfgs, {key0})[0] == [survivors]
    assert len(first) == 6


def plain(spec, members, size, seg, configs):
    chunks = [members[k:k + size] for k in range(0, len(members), size)]
    bounds = run.chunk_boundaries(spec, chunks, configs, size)
    return chunks, bounds, programs.program_key(spec, size, seg, {"precision": None}, bounds)[0]



def test_a_killed_pruned_sweep_resumes_to_the_uninterrupted_result(sum_bin_small, tmp_path, monkeypatch):
    cfgs = jaxfit.grid(hidden=[(8,), (16,)], lr=[0.3, 0.03, 0.003], seed=[0, 1], epochs=9)
    rule = jaxfit.Halving(min_epochs=1, eta=3)
    real, calls = run._train_span, []
    monkeypatch.setattr(run, "_train_span", lambda *a, **k: calls.append(1) or real(*a, **k))
    whole = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=rule)
    n_spans = len(calls)
    calls.clear()

    def dies(*a, **k):  # the process dies in its 4th span (after the first rung's decision)
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(run, "_train_span", dies)
    with pytest.raises(KeyboardInterrupt):
        jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=rule, checkpoint_dir=str(tmp_path))
    spans = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("span-"))
    assert len(spans) == 3
    calls.clear()
    monkeypatch.setattr(run, "_train_span", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=rule, checkpoint_dir=str(tmp_path))
    assert again.meta["prune"]["rungs"] == whole.meta["prune"]["rungs"]
    assert len(calls) == n_spans - 3  # the saved spans were loaded, not trained
    for m in whole.curves:
        np.testing.assert_array_equal(again.curves[m], whole.curves[m])
    for i in range(len(cfgs)):
        for a, b in zip(jax.tree_util.tree_leaves(again.params(i, best=True)),
                        jax.tree_util.tree_leaves(whole.params(i, best=True))):
            np.testing.assert_array_equal(a, b)
    # A damaged span file is set aside with a warning and retrained: the same result again.
    victim = tmp_path / spans[0]
    victim.write_bytes(victim.read_bytes()[:100])
    with pytest.warns(jaxfit.JaxfitWarning, match="unreadable"):
        third = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=rule, checkpoint_dir=str(tmp_path))
    np.testing.assert_array_equal(third.curves["val_loss"], whole.curves["val_loss"])
    assert (tmp_path / (spans[0] + ".bad")).exists()



SPEC = '''[[data]]
name = "sum_bin"
n = 200

[grid]
hidden = [[4], [8]]
lr = [0.3, 0.03, 0.003]
seed = [0, 1]
epochs = 6

[prune]
metric = "val_loss"
min_epochs = 2
eta = 3
'''


def test_a_spec_prune_table_runs_saves_reports_and_resumes(tmp_path, capsys):
    from jaxfit.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    args = ["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "successive halving on val_loss: epoch 2: 4 of 12 train on (280 of 504 model-steps trained)" in text
    r = jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")
    assert r.meta["prune"]["min_epochs"] == 2 and int(r.table["pruned"].sum()) == 8
    assert list(r.table["stopped_epoch"]).count(6) == 4
    ranked = r.ranking("val_acc")[1]
    assert all(r.table["stopped_epoch"][i] == 6 for g in ranked[:2] for i in g)  # the finishers rank first
    assert "successive halving" in (tmp_path / "o" / "report.html").read_text()
    assert main(args) == 0  # the same command again: every span is loaded, the same table
    again = jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")
    np.testing.assert_array_equal(again.curves["val_loss"], r.curves["val_loss"])
    # --prune none is another sweep (its digest differs): refused in the same directory
    assert main(args + ["--prune", "none"]) == 2
    assert "holds another sweep" in capsys.readouterr().err


@pytest.mark.parametrize("text, argv, match", [
    (SPEC + 'etta = 2\n', [], r"unknown key 'etta' in \[prune\] \(did you mean 'eta'\?\)"),
    (SPEC.replace('metric = "val_loss"', 'kind = "asha"'), [], "kind='asha' is invalid: allowed values are halving"),
    (SPEC.replace("eta = 3", "eta = 1"), [], r"\[prune\].*Halving\(eta=1\) is invalid"),
    (SPEC.split("[prune]")[0], ["--eta", "2"], "--eta needs --prune halving"),
    (SPEC.split("[prune]")[0], ["--prune", "halving", "--eta", "1"], r"--prune: Halving\(eta=1\) is invalid"),
    (SPEC + "seed = 3\n", [], r"seed is Hyperband's .*kind = \"hyperband\""),
    (SPEC + 'kind = "hyperband"\nseed = 1.5\n', [], r"Hyperband\(seed=1.5\) is invalid"),
])
def test_bad_prune_settings_are_one_line_before_any_work(tmp_path, capsys, text, argv, match):
    from jaxfit.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text(text)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "o").exists()


def test_a_pruned_bucket_starts_in_chunks_the_survivors_fill():
    assert run._halving_size(540, 540, 3, 2) == 60  # 540 / 3^2, a multiple of the 2 devices
    assert run._halving_size(100, 1000, 3, 1) == 100  # never above what the memory allows
    assert run._halving_size(12, 12, 3, 1) == 12  # small buckets: at least 8 configs per device


# ----------------------------------------------------------------------------- Hyperband


def test_hyperband_brackets_split_groups_in_its_proportions_and_decide_apart():
    hb = jaxfit.Hyperband(metric="val_loss", min_epochs=1, eta=3, seed=0)
    assert hb.rungs(9) == [1, 3] and hb.shares(9) == [9, 5, 3]  # K = 2: ceil(3/3*9), ceil(3/2*3), ceil(3/1*1)
    configs = [Config(hidden=(4,), lr=0.001 * (k + 1), seed=s, epochs=9) for k in range(34) for s in (0, 1)]
    b = hb.brackets(configs)
    assert [b.count(k) // 2 for k in range(3)] == [18, 10, 6]  # 34 groups in shares 9:5:3
    assert all(b[2 * k] == b[2 * k + 1] for k in range(34))  # the seeds of a setting share a bracket
    assert b != sorted(b)  # shuffled, not the grid's order
    assert jaxfit.Hyperband(seed=1).brackets(configs) != jaxfit.Hyperband(seed=0).brackets(configs)
    value = {i: float(i) for i in range(len(configs))}  # lower is better: the first configs win
    kept, stopped = prune.decide(hb, 1, range(len(configs)), configs, value)
    # At epoch 1 only bracket 0 halves: its 18 groups -> ceil(18 / 3) = 6, the 6 with the smallest values.
    b0 = sorted(i for i in range(len(configs)) if b[i] == 0)
    assert stopped == b0[12:] and kept == sorted(set(range(len(configs))) - set(b0[12:]))
    live = kept
    kept3, stopped3 = prune.decide(hb, 3, live, configs, value)
    # At epoch 3 brackets 0 (6 groups -> 2) and 1 (10 -> 4) halve; bracket 2 trains on untouched.
    b1 = sorted(i for i in live if b[i] == 1)
    assert set(stopped3) == set(b0[4:12]) | set(b1[8:])
    assert sum(b[i] == 2 for i in kept3) == 12 and not any(b[i] == 2 for i in stopped3)


def test_hyperband_in_a_sweep_keeps_survivors_exact_and_one_bracket_unpruned(full_and_pruned, sum_bin_small):
    cfgs, full, _ = full_and_pruned
    hb = jaxfit.Hyperband(min_epochs=1, eta=3, seed=0)
    h = jaxfit.sweep(sum_bin_small, cfgs, chunk_size=4, prune=hb)
    t = h.table
    assert h.meta["prune"]["kind"] == "hyperband" and list(t["bracket"]) == hb.brackets(cfgs)
    assert (t.loc[t["bracket"] == 2, "stopped_epoch"] == 9).all()  # the last bracket trains in full
    assert set(t.loc[t["bracket"] == 1, "stopped_epoch"]) <= {3, 9}  # bracket 1 first halves at epoch 3
    assert t["pruned"].any() and (t.groupby(["hidden", "activation", "lr"])["stopped_epoch"].nunique() == 1).all()
    for i in range(len(cfgs)):
        stop = int(t["stopped_epoch"][i])
        np.testing.assert_allclose(h.curves["val_loss"][i, :stop], full.curves["val_loss"][i, :stop], rtol=0,
                                   atol=1e-10)


def test_a_spec_hyperband_table_runs_with_its_brackets_in_the_table(tmp_path, capsys):
    from jaxfit.cli import main

    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("min_epochs = 2", "min_epochs = 2\nkind = \"hyperband\"\nseed = 4"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache", "--dry-run"]) == 0
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]) == 0
    r = jaxfit.SweepResult.load(tmp_path / "o" / "sum_bin")
    hb = jaxfit.Hyperband(metric="val_loss", min_epochs=2, eta=3, seed=4)
    assert r.meta["prune"]["kind"] == "hyperband" and r.meta["prune"]["seed"] == 4
    assert list(r.table["bracket"]) == hb.brackets(r.configs)
    assert (r.table.loc[r.table["bracket"] == 1, "stopped_epoch"] == 6).all()  # K = 1: bracket 1 unpruned
    assert "Hyperband" in (tmp_path / "o" / "report.html").read_text()

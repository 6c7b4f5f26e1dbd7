import jaxfit
from jaxfit.cli import main


def test_sweep_quick_prints_ranked_table_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sweep", "--quick", "--datasets", "sum_bin", "--n", "200", "--epochs", "2", "--out", str(out),
                 "--no-progress", "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "top 10 by seed-averaged final val_acc" in text and "model-steps/s" in text
    r = jaxfit.SweepResult.load(out / "sum_bin")
    assert len(r) == 8 and r.configs[0].epochs == 2
    assert r.meta["dataset"]["n_train"] == 200


def test_spec_file(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[[data]]\nname = "heart_rate"\nn = 64\n\n[grid]\nhidden = [[4]]\ninput_norm = "standardize"\n'
                    'loss = "bce_with_logits"\nlr = [0.01, 0.1]\nepochs = 2\n')
    assert main(["sweep", "--spec", str(spec), "--out", str(tmp_path / "o"), "--no-progress", "--no-cache"]) == 0
    assert len(jaxfit.SweepResult.load(tmp_path / "o" / "heart_rate")) == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["sweep", "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "jaxfit: error: --epochs=0 is invalid: must be at least 1"
    assert main(["sweep", "--datasets", "nope", "--quick"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written before validation passed


def test_same_sweep_resumes_and_another_sweep_is_refused(tmp_path, capsys):
    args = ["sweep", "--quick", "--datasets", "sum_bin", "--n", "100", "--epochs", "1", "--out", str(tmp_path / "r"),
            "--no-progress", "--no-cache"]
    assert main(args) == 0
    first = jaxfit.SweepResult.load(tmp_path / "r" / "sum_bin")
    capsys.readouterr()
    assert main(args) == 0  # the same sweep into the same directory: resumed
    out = capsys.readouterr().out
    chunks = sum(len(p["chunks"]) for p in first.meta["plans"])
    assert "resuming the sweep" in out and f"resumed {chunks} finished chunk(s)" in out
    again = jaxfit.SweepResult.load(tmp_path / "r" / "sum_bin")
    import numpy as np
    np.testing.assert_array_equal(first.curves["val_loss"], again.curves["val_loss"])
    other = [a if a != "1" else "2" for a in args]  # another sweep (2 epochs) into the same directory
    assert main(other) == 2
    assert "holds another sweep" in capsys.readouterr().err
    assert main(other + ["--force"]) == 0
    assert jaxfit.SweepResult.load(tmp_path / "r" / "sum_bin").configs[0].epochs == 2

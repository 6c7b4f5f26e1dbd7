"""Progress: phases as they happen, an ETA from training alone, plain lines when not a terminal."""

import pytest

import jaxfit
from jaxfit.engine import progress


def test_eta_counts_training_only_not_compiling_or_resumed_chunks(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    p = progress.Progress(total=100)
    p.compiling(1, 2)
    clock[0] += 60.0  # a minute compiling: no training time
    p.compiled(1, 2, 60.0, "compiled")
    p.resumed(20)  # a chunk from a checkpoint: done, but no training rate
    assert p.eta() is None
    p.chunk(1, 2, 1, 1, configs=8)
    clock[0] += 4.0
    p.update(20)  # 20 config-epochs in 4 s -> 0.2 s each; 60 left -> 12 s
    assert p.eta() == pytest.approx(12.0)
    p.compiling(2, 2)
    clock[0] += 100.0  # the second compile does not slow the estimate down
    p.chunk(2, 2, 1, 1, configs=8)
    clock[0] += 2.0
    p.update(10)  # 30 in 6 s; 50 left -> 10 s
    assert p.eta() == pytest.approx(10.0)
    assert "80/100 config-epochs (80%), ETA 0:10" not in p.status()  # done is 50, not 80
    assert p.status().startswith("50/100 config-epochs (50%), ETA 0:10")


def test_a_sweep_logs_its_phases_as_plain_lines_when_not_a_terminal(capsys):
    data = jaxfit.datasets.sum_bin(n=64, seed=0)
    configs = jaxfit.grid(hidden=[(4,), (8, 8)], lr=[1e-2], batch_size=16, epochs=2, seed=[0, 1])
    seen = []
    jaxfit.sweep(data, configs, progress=True, fuse="none", chunk_size=1)  # stderr is captured: not a tty
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("jaxfit: ")]
    assert any(ln.startswith("jaxfit: compiling program 1/2 (2 configs") for ln in lines), err
    assert any(ln.startswith("jaxfit: compiling program 2/2") for ln in lines), err
    assert "jaxfit: training program 1/2, chunk 1/2 (1 configs)" in lines
    assert "jaxfit: training program 2/2, chunk 2/2 (1 configs)" in lines
    assert lines[-1].endswith("8/8 config-epochs (100%), ETA 0:00 (training only)"), lines[-1]
    assert "\r" not in err  # no bar redraws in a log
    jaxfit.sweep(data, configs, progress=lambda done, total: seen.append((done, total)), fuse="none")
    assert seen and seen[-1] == (8, 8) and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_a_bad_progress_value_is_refused_naming_the_allowed_ones():
    data = jaxfit.datasets.sum_bin(n=32, seed=0)
    with pytest.raises(ValueError, match="progress='yes' is invalid: allowed values are"):
        jaxfit.sweep(data, [jaxfit.Config(hidden=(2,), epochs=1)], progress="yes")

"""The command line end to end, in subprocesses as a user runs it: bad input is one line on stderr with
exit code 2 and no traceback, before any work; example specs run with --smoke; a second sweep into a
directory in use is refused; the report is written."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def jaxfit(*args, cwd=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "jaxfit.cli", *args], cwd=cwd or ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(p, *needles):
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxfit: error: "), p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def write(path, text):
    path.write_text(text)
    return str(path)


def test_bad_inputs_are_one_line_exit_2_before_any_work(tmp_path):
    ok_data = '[[data]]\nname = "sum_bin"\nn = 64\n'
    cases = [
        (["sweep", str(tmp_path / "missing.toml")], ["missing.toml", "no such spec file"]),
        (["sweep", write(tmp_path / "typo.toml", '[[data]]\nname = "sum_bin"\nsed = 3\n[grid]\nlr = 0.1\n')],
         ["typo.toml:3", "'sed'", "did you mean 'seed'"]),
        (["sweep", write(tmp_path / "empty.toml", 'data = []\n[grid]\nlr = 0.1\n')], ["names no dataset"]),
        (["sweep", write(tmp_path / "flat.toml", ok_data + '[grid]\nhidden = [64, 64]\n')],
         ["flat.toml:5", "hidden = [[64, 64]]", "ambiguous"]),
        (["sweep", write(tmp_path / "table.toml", ok_data + '[sweeep]\nname = "x"\n[grid]\nlr = 0.1\n')],
         ["table.toml:4", "'sweeep'", "did you mean 'sweep'"]),
        (["sweep", write(tmp_path / "field.toml", ok_data + '[grid]\nlearning_rate = 0.1\n')], ["learning_rate"]),
        (["sweep", write(tmp_path / "bad.toml", 'x = [\n')], ["invalid TOML"]),
        (["sweep", "--quick", "--metric", "accuracy"], ["--metric='accuracy' is invalid"]),
        (["sweep", "--quick", "--top", "0"], ["--top=0"]),
        (["sweep", write(tmp_path / "q.toml", ok_data + '[grid]\nlr = 0.1\n'), "--quick"], ["--smoke"]),
        (["sweep", write(tmp_path / "n.toml", ok_data + '[grid]\nlr = 0.1\n'), "--n", "10"], ["--n would override"]),
        (["sweep", "--quick", "--out", write(tmp_path / "afile", "x")], ["not a directory"]),
        (["report", str(tmp_path / "nowhere")], ["no such sweep directory"]),
    ]
    for args, needles in cases:
        one_line_error(jaxfit(*args), *needles)
    assert not glob.glob(str(tmp_path / "jaxfit-runs*"))


def test_example_spec_smoke_dry_run_report_and_version(tmp_path):
    spec = os.path.join(ROOT, "examples", "sum_mod.toml")
    dry = jaxfit("sweep", spec, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "dry run: nothing compiled" in dry.stdout and "program 1" in dry.stdout
    assert not os.path.exists(tmp_path / "jaxfit-runs")
    run = jaxfit("sweep", spec, "--smoke", "--no-progress", "--no-cache", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    (out,) = glob.glob(str(tmp_path / "jaxfit-runs" / "sum_mod-*"))  # named from the spec and its hash
    for f in ("spec.toml", "sweep.json", "table.parquet", "table.csv", "report.html"):
        assert os.path.exists(os.path.join(out, f)), f
    import pandas as pd

    t = pd.read_parquet(os.path.join(out, "table.parquet"))
    assert set(t["data"]) == {"sum_mod", "sum_bin"} and len(t) == 2 * 8
    again = jaxfit("sweep", spec, "--smoke", "--no-progress", "--no-cache", cwd=tmp_path)  # same command: resumes
    assert again.returncode == 0 and "resuming" in again.stdout
    rebuilt = jaxfit("report", out)
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip().endswith("report.html")
    v = jaxfit("--version")
    assert v.returncode == 0 and v.stdout.startswith("jaxfit ")
    assert jaxfit("datasets").stdout.count("\n") >= 5


def test_second_sweep_into_a_directory_in_use_is_refused_and_ctrl_c_says_how_to_resume(tmp_path):
    out = tmp_path / "busy"
    args = [sys.executable, "-m", "jaxfit.cli", "sweep", "--datasets", "sum_bin", "--epochs", "400", "--seeds", "1",
            "--out", str(out), "--no-progress", "--no-cache"]
    # Ctrl-C reaches the sweep even when the tests run as a background job (`cmd &` in a script starts
    # with SIGINT ignored, and an ignored signal stays ignored in children; a handled one is reset to
    # the default at exec, so SIGINT is handled here while the sweep starts).
    before_sig = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        first = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before_sig)
    try:
        deadline = time.time() + 120
        while not (out / "sweep.json").exists():
            assert time.time() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.2)
        second = jaxfit("sweep", "--datasets", "sum_bin", "--epochs", "400", "--seeds", "1", "--out", str(out),
                        "--no-progress", "--no-cache")
        one_line_error(second, "being written by pid", str(first.pid))
        before = sorted(os.listdir(out))
        # another sweep with --force into the live sweep's directory: refused by the lock, nothing deleted
        forced = jaxfit("sweep", "--quick", "--out", str(out), "--force", "--no-progress", "--no-cache")
        one_line_error(forced, "being written by pid", str(first.pid))
        assert "clearing" not in forced.stdout
        assert set(before) <= set(os.listdir(out)) and (out / "sweep.json").exists()
        assert first.poll() is None  # the first sweep is still at work
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 130 and "rerun the same command to resume" in err and "Traceback" not in err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not (out / ".jaxfit.lock").exists()


KILL_SPEC = """
[[data]]
name = "sum_bin"
n = 200
seed = 0

[[data]]
name = "sum_mod"
n = 200
seed = 0

[grid]
hidden = [[4], [16, 16]]
lr = 0.01
batch_size = 16
epochs = 200
seed = [0, 1]
"""


def _sweep_until(args, line_starts, env):
    """Start a sweep and kill -9 it as soon as a line starting with `line_starts` is printed (None:
    let it finish). Returns the lines seen."""
    p = subprocess.Popen([sys.executable, "-m", "jaxfit.cli", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in p.stdout:
            seen.append(line.rstrip("\n"))
            if line_starts is not None and line.startswith(line_starts):
                os.kill(p.pid, signal.SIGKILL)
                break
        p.wait(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if line_starts is None:
        assert p.returncode == 0, "\n".join(seen[-30:])
    else:
        assert p.returncode == -signal.SIGKILL, (p.returncode, seen[-30:])
    return seen


def test_kill_9_while_compiling_training_or_saving_then_resume_equals_an_uninterrupted_run(tmp_path):
    import pandas as pd

    spec = write(tmp_path / "kill.toml", KILL_SPEC)
    env = dict(ENV, JAXFIT_CACHE_DIR=str(tmp_path / "xla"))
    whole = tmp_path / "whole"
    _sweep_until(["sweep", spec, "--out", str(whole), "--fuse", "none"], None, env)
    expect = pd.read_parquet(whole / "table.parquet")
    assert len(expect) == 8  # 4 configs x 2 datasets
    moments = {"compiling": "jaxfit: compiling program 1/2",  # nothing trained yet
               "training": "jaxfit: training program 2/2",  # the first program's chunk saved, the second running
               "saving": "top 4 by seed-averaged"}  # the first dataset trained, its results being written
    for name, line in moments.items():
        out = tmp_path / name
        args = ["sweep", spec, "--out", str(out), "--fuse", "none", "--top", "4"]
        seen = _sweep_until(args, line, env)
        assert seen[-1].startswith(line), seen[-5:]
        assert not (out / "table.parquet").exists()
        lines = _sweep_until(args, None, env)  # the same command again: resumes
        assert any(ln.startswith("resuming the sweep in") for ln in lines), lines[:10]
        reused = sum(int(ln.split()[1]) for ln in lines if ln.startswith("resumed ") and "finished chunk" in ln)
        assert reused == {"compiling": 0, "training": 1, "saving": 2}[name], (name, reused)
        got = pd.read_parquet(out / "table.parquet")
        pd.testing.assert_frame_equal(got, expect, check_exact=True)
        assert not glob.glob(str(out / "**" / "*.tmp*"), recursive=True), name


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "examples", "*.toml"))
                                        if os.path.basename(p) != "sum_mod.toml"))  # sum_mod.toml: the test above
def test_every_example_spec_runs_with_smoke(tmp_path, name):
    run = jaxfit("sweep", os.path.join(ROOT, "examples", name), "--smoke", "--no-progress", "--no-cache",
                 "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "diagnostics" in run.stdout and os.path.exists(tmp_path / "out" / "report.html")

"""The throughput benchmark runs end to end on a tiny setting and writes what it promises. It checks
the harness (schema, every cell measured, failures recorded as cells), never a speed."""

import json
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # benchmarks/ is not an installed package: run from any directory, by any pytest
    sys.path.insert(0, ROOT)
TOP_KEYS = {"schema", "date", "device", "machine", "versions", "matmul", "work", "memory", "flops", "timing",
            "workloads", "cells"}
CELL_KEYS = {"impl", "workload", "n_models", "model_steps_per_s", "compile_s", "run_s", "peak_mem_mb", "gflops",
             "fraction_of_peak", "device", "versions", "date", "notes"}


def test_tiny_run_writes_a_complete_table_json_and_plot(tmp_path):
    impls = ["torch_doc", "torch_loop", "torch_func", "torch_bmm", "jaxfit"]  # torch.compile: 20-40 s cold
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--quick", "--workloads", "W1,W2", "--n", "1,2",
           "--impls", ",".join(impls), "--target-s", "0.01", "--repeats", "3", "--warmup", "1", "--threads", "1",
           "--peak-size", "256", "--max-steps", "64", "--out", str(tmp_path), "--machine", "test"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    files = sorted(os.listdir(tmp_path))
    stem = [f for f in files if f.endswith(".json")][0][:-5]
    assert stem.startswith("throughput-test-") and stem.endswith("-quick")
    assert stem + ".png" in files and os.path.getsize(tmp_path / (stem + ".png")) > 10_000
    doc = json.loads((tmp_path / (stem + ".json")).read_text())

    assert TOP_KEYS <= set(doc)
    assert doc["matmul"]["peak_gflops"] > 0
    for w in ("W1", "W2"):
        assert doc["workloads"][w]["flops_per_model_step"] > 0
    cells = doc["cells"]
    assert {(c["impl"], c["workload"], c["n_requested"]) for c in cells} == {
        (i, w, n) for i in impls for w in ("W1", "W2") for n in (1, 2)}
    for c in cells:
        assert CELL_KEYS <= set(c), c["impl"]
        label = f"{c['impl']} {c['workload']} N={c['n_models']}: {c.get('error')}"
        assert c["error"] is None, label
        assert c["model_steps_per_s"] > 0 and math.isfinite(c["model_steps_per_s"]), label
        assert len(c["model_steps_per_s_repeats"]) == 3, label
        assert c["gflops"] > 0 and c["fraction_of_peak"] > 0, label
        assert c["run_s"] > 0 and c["compile_s"] >= 0 and c["peak_mem_mb"] is not None, label
        assert c["steps_per_repeat"] <= 64, label
        assert isinstance(c["notes"], list) and c["versions"]["jax"] and c["versions"]["torch"], label
    jax_cells = [c for c in cells if c["impl"] == "jaxfit"]
    assert all(c["compile_s"] > 0 for c in jax_cells)
    # the table names every implementation and the ratio columns
    assert all(i in out.stdout for i in impls) and "x doc" in out.stdout and "x best-ens" in out.stdout


def test_a_failing_implementation_becomes_an_error_cell(tmp_path, monkeypatch):
    from benchmarks import throughput, torch_impls

    def broken(*a, **k):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(torch_impls, "measure", broken)
    monkeypatch.setattr(throughput, "_prewarm", lambda impl: None)
    path = tmp_path / "cells.jsonl"
    o = {"workloads": ["W1"], "n": [1, 4], "quick": False, "device": "cpu", "threads": None, "target_s": 0.01,
         "repeats": 3, "warmup": 1, "max_cell_s": 10.0, "mem_budget_gb": 1.0, "compile_variant": "func",
         "max_steps": 8}
    throughput.worker(["torch_bmm", "torch_loop"], o, str(path))
    cells = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(c["impl"], c["n_requested"]) for c in cells] == [("torch_bmm", 1), ("torch_bmm", 4),
                                                              ("torch_loop", 1), ("torch_loop", 4)]
    assert all("planted failure" in c["error"] and c["model_steps_per_s"] is None for c in cells)


def test_memory_cap_and_jaxfit_plan():
    from benchmarks import throughput, torch_impls
    from benchmarks.common import WORKLOADS

    w3 = WORKLOADS["W3"]
    # one W3 ensemble member: parameters, gradients, two Adam slots and update temporaries, > 10 MiB
    assert torch_impls.bytes_per_model("torch_func", w3) > 10 * 2 ** 20
    # jaxfit's timed run: whole epochs when they fit the target, else a K-step one-epoch prefix
    assert throughput._jaxfit_plan(WORKLOADS["W1"], 1, 1e6, 1.0) == (50, 2000)
    assert throughput._jaxfit_plan(WORKLOADS["W1"], 1, float("inf"), 1.0) == (50, 2000)
    assert throughput._jaxfit_plan(WORKLOADS["W1"], 100, 1e6, 1.0) == (5, 2000)
    assert throughput._jaxfit_plan(w3, 16, 100.0, 1.0) == (1, 6 * 256)
    assert throughput._jaxfit_plan(w3, 1, 1e6, 1.0, max_steps=10) == (1, 10 * 256)


def test_flop_count_is_one_step_of_one_model():
    from benchmarks.common import WORKLOADS, step_cost

    w = WORKLOADS["W2"]
    flops = step_cost(w)["flops_per_model_step"]
    # forward + backward of a dense net is about 6 x batch x parameters; the optimizer adds O(parameters)
    assert 6 * w.batch * w.n_params <= flops <= 8 * w.batch * w.n_params

"""The sweep benchmark (benchmarks/sweep.py) runs end to end in --quick and writes what it promises:
every row measured, the warm run's programs from the disk cache, the JSON and the plot. It checks
the harness, never a speed."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = ("default", "large")
WAYS = ("jaxfit_cold", "jaxfit_warm", "jaxfit_fuse_none", "torch_train_many", "torch_best_ensemble")


@pytest.mark.slow  # ~80 s; the cold/warm persistent-cache behaviour it relies on is tested in test_fused.py
def test_quick_sweep_benchmark_writes_every_row_json_and_plot(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--quick", "--out", str(tmp_path), "--machine", "test"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    files = sorted(os.listdir(tmp_path))
    jsons = [f for f in files if f.endswith(".json")]
    assert len(jsons) == 1, files
    stem = jsons[0][:-5]
    assert stem.startswith("sweep-test-") and stem.endswith("-quick")
    assert stem + ".png" in files and os.path.getsize(tmp_path / (stem + ".png")) > 10_000
    doc = json.loads((tmp_path / jsons[0]).read_text())
    assert doc["schema"].startswith("jaxfit-benchmarks-sweep/") and doc["quick"] is True
    assert doc["versions"].get("jax") and doc["versions"].get("torch") and doc["device"]

    rows = {(r["sweep"], r["way"]): r for r in doc["rows"]}
    assert set(rows) == {(s, w) for s in SWEEPS for w in WAYS}
    for (sweep, way), r in rows.items():
        label = f"{sweep} {way}: {r.get('error')}"
        assert r["error"] is None, label
        assert r["configs"] == doc["sweeps"][sweep]["configs"] > 0, label
        assert r["wall_s"] > 0 and r["configs_per_s"] > 0 and r["run_s"] > 0, label
        assert r["ratio_vs_jaxfit_cold"] > 0 and r["ratio_vs_jaxfit_warm"] > 0, label
        if way.startswith("jaxfit"):
            assert r["sweep_s"] > 0 and r["startup_s"] > 0 and r["compile_s"] > 0, label
            assert r["programs"] >= 1 and r["wall_s"] > r["sweep_s"], label
            for d in r["datasets"]:
                assert d["plan"] and all("estimate_compile_s" in p and "estimate_run_s" in p for p in d["plan"])
                assert len(d["plans"]) == d["programs"]
                assert all(p["compile_s"] >= 0 and p["run_s"] > 0 for p in d["plans"]), label

    for sweep in SWEEPS:
        cold, warm = rows[(sweep, "jaxfit_cold")], rows[(sweep, "jaxfit_warm")]
        # the warm process compiled nothing: every program the cold one compiled came from the disk cache
        assert cold["programs_compiled"] >= 1
        assert warm["programs_compiled"] == 0, warm["datasets"]
        assert warm["programs_from_disk"] == cold["programs_compiled"]
        assert warm["programs"] == cold["programs"]
        # one program per architecture (and activation, optimiser) without fusion
        assert rows[(sweep, "jaxfit_fuse_none")]["programs"] >= cold["programs"]
        ens = rows[(sweep, "torch_best_ensemble")]
        assert ens["groups"] and all(g["best"] and g["best_s"] > 0 for g in ens["groups"])
        assert any(n.startswith("APPROXIMATED") for n in ens["notes"])

    many = rows[("large", "torch_train_many")]  # a random subset, scaled and flagged
    assert many["extrapolated"] and 0 < many["measured_configs"] < many["configs"] and many["measured_s"] > 0
    assert any(n.startswith("EXTRAPOLATED") for n in many["notes"])
    assert not rows[("default", "torch_train_many")]["extrapolated"]
    for label in ("jaxfit, cold cache", "jaxfit, warm cache", "torch train_many", "torch best ensemble", "x cold"):
        assert label in out.stdout

"""The config axis sharded over several (fake) host devices gives the single-device numbers."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    import jaxfit
    data = jaxfit.datasets.sum_bin(n=128, seed=0)
    cfgs = jaxfit.grid(hidden=(8,), optimizer=["sgd", "adam"], lr=[0.01, 0.05], seed=range(2), epochs=3,
                       batch_size=16, dtype="float64")
    r = jaxfit.sweep(data, cfgs, chunk_size=4)
    print(json.dumps({"devices": jax.device_count(), "loss": r.curves["train_loss"].tolist(),
                      "w": [r.params(i)["dense"][0]["w"].tolist() for i in range(len(cfgs))]}))
""")


def _run(ndev: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={ndev}")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_two_devices_matches_one():
    import numpy as np

    one, two = _run(1), _run(2)
    assert one["devices"] == 1 and two["devices"] == 2
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(two["w"], one["w"], rtol=0, atol=1e-9)

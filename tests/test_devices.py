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
    from jaxfit.engine import compile as programs, cpu
    if sys.argv[1] == "blocked":  # one config per lax.map iteration on each device (blocked_vmap)
        cpu.block_sizes = lambda *a: (1, 1)
    data = jaxfit.datasets.sum_bin(n=128, seed=0)
    cfgs = jaxfit.grid(hidden=(8,), optimizer=["sgd", "adam"], lr=[0.01, 0.05], seed=range(2), epochs=3,
                       batch_size=16, dtype="float64")
    r = jaxfit.sweep(data, cfgs, chunk_size=4)
    hlo = " ".join(c.as_text() for c in programs._compiled.values())
    collectives = [op for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
                   if op + "(" in hlo or op + "-start(" in hlo]
    print(json.dumps({"devices": jax.device_count(), "collectives": collectives,
                      "val": r.curves["val_loss"].tolist(), "loss": r.curves["train_loss"].tolist(),
                      "w": [r.params(i)["dense"][0]["w"].tolist() for i in range(len(cfgs))]}))
""")


def _run(ndev: int, mode: str = "auto") -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={ndev}")
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True, text=True, timeout=240,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_over_two_devices_matches_one():
    import numpy as np

    one, two, blocked = _run(1), _run(2), _run(2, "blocked")
    assert one["devices"] == 1 and two["devices"] == 2 and blocked["devices"] == 2
    for other in (two, blocked):
        np.testing.assert_allclose(other["loss"], one["loss"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(other["val"], one["val"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(other["w"], one["w"], rtol=0, atol=1e-9)
    # Each device trains its own configs: the sharded programs, blocked or not, exchange nothing.
    assert two["collectives"] == [] and blocked["collectives"] == [], (two["collectives"], blocked["collectives"])


def _flags_after(code: str, **env) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXFIT_HOST_DEVICES", "JAXFIT_SMALL_LOOPS")}
    e.update(env)
    code = f"import os, jaxfit; {code}; print(os.environ.get('XLA_FLAGS', ''))"
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip()


def test_import_changes_nothing_and_configure_sets_host_devices():
    assert _flags_after("pass") == ""  # importing jaxfit leaves XLA_FLAGS alone
    mine = "--xla_force_host_platform_device_count=3"
    assert _flags_after("pass", XLA_FLAGS=mine) == mine
    cores = os.cpu_count() or 1
    configure = "jaxfit.configure_host_devices()"
    flags = _flags_after(configure)
    assert "xla_cpu_small_while_loop_byte_threshold=" in flags
    assert (f"--xla_force_host_platform_device_count={cores}" in flags) == (cores > 1)
    assert "device_count" not in _flags_after(configure, JAXFIT_HOST_DEVICES="1")
    assert "small_while_loop" not in _flags_after(configure, JAXFIT_SMALL_LOOPS="0")
    mine = "--xla_backend_extra_options=xla_cpu_foo=1 --xla_force_host_platform_device_count=3"
    assert _flags_after(configure, XLA_FLAGS=mine) == mine  # the user's own settings are left alone
    # too late once JAX's backends run: nothing changes, and it says so
    late = _flags_after("import jax; jax.devices(); print(jaxfit.configure_host_devices())")
    assert late.splitlines()[0] == "False" and "device_count" not in late

import os

# Fixed before JAX starts. Importing jaxfit leaves XLA_FLAGS alone, so the tests see as many CPU
# devices as the environment's XLA_FLAGS gives (--xla_force_host_platform_device_count; one when it
# names none): a test that needs a device count sets or checks it itself.
# tests/test_devices.py sets two host devices itself, in subprocesses.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Strict dtype promotion (no silent int + float or float32 + float64 in JAX code): a mixed-dtype
# operation in jaxfit raises in the tests instead of promoting; subprocesses inherit it.
os.environ.setdefault("JAX_NUMPY_DTYPE_PROMOTION", "strict")

import jax
import numpy as np
import pytest

import jaxfit


@pytest.fixture(scope="session")
def sum_bin_small():
    return jaxfit.datasets.sum_bin(n=256, seed=0)


@pytest.fixture(scope="session")
def heart_small():
    return jaxfit.datasets.heart_rate(n=128, seed=0)


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)


@pytest.fixture
def x64():
    """x64 on for one test that builds float64 JAX arrays itself. The suite otherwise runs as users do,
    x64 off (float32 defaults); jaxfit turns x64 on only around its own float64 configs."""
    with jax.enable_x64(True):
        yield

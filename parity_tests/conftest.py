"""Shared set-up for the parity tests: CPU JAX, x64 where a test asks for it (`x64`), small data sets."""

import os

# Fixed before JAX starts (as tests/conftest.py): the CPU, with as many host devices as the environment's
# XLA_FLAGS gives (--xla_force_host_platform_device_count; one when it names none).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Strict dtype promotion (no silent int + float or float32 + float64 in JAX code): a mixed-dtype
# operation in jaxfit raises in the tests instead of promoting; subprocesses inherit it.
os.environ.setdefault("JAX_NUMPY_DTYPE_PROMOTION", "strict")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import jaxfit  # noqa: E402

# Small models: one thread is faster than two and keeps torch's reductions in one fixed order.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def parity_data():
    """The data sets the trajectory cases run on, by name."""
    return {
        "sum_bin": jaxfit.datasets.sum_bin(n=120, seed=0),  # 3 classes, 2 features in [0, 1)
        "heart_rate": jaxfit.datasets.heart_rate(n=96, seed=0),  # 2 classes, 1 raw feature near 92
    }


@pytest.fixture
def x64():
    """x64 on for a test that builds float64 JAX arrays itself (dropout masks, activations at float64
    thresholds); a module whose tests all do says `pytestmark = pytest.mark.usefixtures("x64")`.
    Elsewhere x64 is off, as users run: jaxfit turns it on only around its own float64 configs."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)

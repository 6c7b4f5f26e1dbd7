"""Shared set-up for the parity tests: CPU JAX with float64 enabled, small data sets."""

import os

# Fixed before JAX starts (as tests/conftest.py): the CPU, with the devices XLA_FLAGS names (one unless set).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import jaxfit  # noqa: E402

# float64 runs need x64 on the JAX side (jaxfit enables it itself for a float64 config; the tests
# also build float64 arrays, such as dropout masks, before that).
jax.config.update("jax_enable_x64", True)
# Small models: one thread is faster than two and keeps torch's reductions in one fixed order.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def parity_data():
    """The data sets the trajectory cases run on, by name."""
    return {
        "sum_bin": jaxfit.datasets.sum_bin(n=120, seed=0),  # 3 classes, 2 features in [0, 1)
        "heart_rate": jaxfit.datasets.heart_rate(n=96, seed=0),  # 2 classes, 1 raw feature near 92
    }


@pytest.fixture(autouse=True)
def _seeded():
    np.random.seed(0)

import os

# Fixed before JAX starts. Importing jaxfit leaves XLA_FLAGS alone, so the tests see the CPU devices
# XLA_FLAGS names (one unless set); tests/test_devices.py runs two host devices in subprocesses.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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

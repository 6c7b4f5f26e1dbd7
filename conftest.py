"""Shared by tests/ and parity_tests/ (each sets up JAX in its own conftest.py: nothing here imports
JAX before they do)."""

import gc

import pytest


MAPS_LIMIT = 25_000  # well under Linux's default vm.max_map_count (65,530)


def _maps() -> int | None:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no count to read
        return None


@pytest.fixture(autouse=True, scope="module")
def _release_programs():
    """After a test module, when this process holds many memory mappings, drop the compiled programs
    left in it (jaxfit's and JAX's own caches). Each executable holds mappings: one pytest process
    compiling the whole suite's programs passed the kernel's limit of 65,530 (vm.max_map_count) and
    XLA crashed in the middle of a compile (SIGSEGV / SIGABRT). Below the limit the programs stay,
    so later modules reuse them."""
    yield
    n = _maps()
    if n is not None and n < MAPS_LIMIT:
        return
    import jax

    from jaxfit.engine import compile as programs

    programs.clear_cache()
    jax.clear_caches()
    gc.collect()

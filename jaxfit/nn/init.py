"""Weight initialisation by formula (weights stored PyTorch-style, [out, in])."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def dense(key: jax.Array, fan_in: int, fan_out: int, scheme: str, dtype) -> dict:
    """One linear layer's {"w": [fan_out, fan_in], "b": [fan_out]}.

    torch:          W, b ~ U(+-1/sqrt(fan_in))  (nn.Linear's default: kaiming_uniform_(a=sqrt(5)))
    lecun_normal:   W ~ N(0, 1/fan_in),  b = 0
    he_normal:      W ~ N(0, 2/fan_in),  b = 0   (not truncated, as torch.nn.init.kaiming_normal_)
    glorot_uniform: W ~ U(+-sqrt(6/(fan_in+fan_out))),  b = 0
    """
    kw, kb = jax.random.split(key)
    shape = (fan_out, fan_in)
    if scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        w = jax.random.uniform(kw, shape, dtype, -bound, bound)
        b = jax.random.uniform(kb, (fan_out,), dtype, -bound, bound)
        return {"w": w, "b": b}
    if scheme == "lecun_normal":
        w = jax.random.normal(kw, shape, dtype) * jnp.asarray(math.sqrt(1.0 / fan_in), dtype)
    elif scheme == "he_normal":
        w = jax.random.normal(kw, shape, dtype) * jnp.asarray(math.sqrt(2.0 / fan_in), dtype)
    elif scheme == "glorot_uniform":
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        w = jax.random.uniform(kw, shape, dtype, -bound, bound)
    else:  # pragma: no cover - Config validation refuses it first
        raise ValueError(f"unknown init {scheme!r}")
    return {"w": w, "b": jnp.zeros((fan_out,), dtype)}

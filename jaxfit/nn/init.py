"""Weight initialisation by formula (weights stored PyTorch-style, [out, in])."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def dense(key: jax.Array, fan_in: int, fan_out: int, scheme: str, dtype) -> dict:
    """One linear layer's {"w": [fan_out, fan_in], "b": [fan_out]} (see `dense_layers`)."""
    return dense_layers(key, (fan_in, fan_out), scheme, dtype)[0]


def dense_layers(key: jax.Array, widths, scheme: str, dtype) -> list[dict]:
    """Every linear layer of a network with these widths: [{"w": [out, in], "b": [out]}, ...].

    torch:          W, b ~ U(+-1/sqrt(fan_in))  (nn.Linear's default: kaiming_uniform_(a=sqrt(5)))
    lecun_normal:   W ~ N(0, 1/fan_in),  b = 0
    he_normal:      W ~ N(0, 2/fan_in),  b = 0   (not truncated, as torch.nn.init.kaiming_normal_)
    glorot_uniform: W ~ U(+-sqrt(6/(fan_in+fan_out))),  b = 0

    All the random numbers of the network come from ONE draw (standard uniform on [-1, 1) or
    standard normal), cut into the layers in order (w then b, layer by layer) and scaled by each
    layer's bound or standard deviation. One draw instead of one per array is what keeps the
    compile time of a program low: XLA:CPU compiles each separate threefry call site on its own
    (benchmarks/README.md), and a 3-layer net would otherwise have 10 of them.
    """
    pairs = list(zip(widths[:-1], widths[1:]))
    if scheme not in ("torch", "lecun_normal", "he_normal", "glorot_uniform"):  # pragma: no cover
        raise ValueError(f"unknown init {scheme!r}")
    with_bias = scheme == "torch"
    total = sum(o * i + (o if with_bias else 0) for i, o in pairs)
    if scheme in ("torch", "glorot_uniform"):
        z = jax.random.uniform(key, (total,), dtype, -1.0, 1.0)
    else:
        z = jax.random.normal(key, (total,), dtype)
    layers, at = [], 0
    for fan_in, fan_out in pairs:
        if scheme == "torch":
            scale = 1.0 / math.sqrt(fan_in)
        elif scheme == "glorot_uniform":
            scale = math.sqrt(6.0 / (fan_in + fan_out))
        else:
            scale = math.sqrt((1.0 if scheme == "lecun_normal" else 2.0) / fan_in)
        scale = jnp.asarray(scale, dtype)
        w = z[at:at + fan_out * fan_in].reshape(fan_out, fan_in) * scale
        at += fan_out * fan_in
        if with_bias:
            b = z[at:at + fan_out] * scale
            at += fan_out
        else:
            b = jnp.zeros((fan_out,), dtype)
        layers.append({"w": w, "b": b})
    return layers

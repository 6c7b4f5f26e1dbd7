"""A `jaxfit.Config` as a stock PyTorch model, and converters between its `state_dict` and jaxfit's
(params, model_state) layout.

`build_model(config, num_features, num_classes)` returns an `MLP`, an `nn.Sequential` whose parts
carry readable names, so its `state_dict` keys say what they are::

    norm.mean, norm.std                        input_norm="standardize" (buffers of `Standardize`)
    norm.weight, norm.bias, norm.running_*     input_norm="batchnorm"   (nn.BatchNorm1d)
    fourier.B                                  encoding="fourier"       (buffer of `Fourier`)
    linear{i}.weight, linear{i}.bias           hidden layer i           (nn.Linear)
    bn{i}.weight, bn{i}.bias, bn{i}.running_*  batchnorm=True           (nn.BatchNorm1d)
    act{i}, drop{i}                            activation, dropout      (no parameters)
    out.weight, out.bias                       output layer             (nn.Linear)
    output                                     nn.Softmax(dim=-1) / nn.Sigmoid / nn.Identity

The documents' own modules (torchref.documents) are converted by the same pair: `FeedForward`
(fc1 = linear0, fc2 = out), `Model` / `ModelLogits` (linear = linear0, linear2 = out) and `ModelBN`
(bn = norm, an input BatchNorm1d); `to_params` detects which from the keys, `to_state_dict` takes
`layout="feedforward"` or `"model"`.

jaxfit's layout (see jaxfit/nn/layers.py) keeps PyTorch's [out, in] weights, so the converters only
rename and move arrays between torch tensors and NumPy arrays:

    params = {"dense": [{"w", "b"}, ...], "bn": [{"weight", "bias"}, ...], "in_bn": {"weight", "bias"}}
    state  = {"bn": [{"mean", "var"}, ...], "in_bn": {"mean", "var"}, "fourier": B,
              "norm_mean", "norm_std"}
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn
from jaxfit.errors import UserError

ONE_UNIT_LOSSES = ("bce", "bce_with_logits")


class Sin(nn.Module):
    """x -> sin(x) (PyTorch has no activation module for it)."""

    def forward(self, x):
        return torch.sin(x)


class Standardize(nn.Module):
    """x -> (x - mean) / std with fixed per-feature statistics of the training split (buffers)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "Standardize":
        """Population statistics (ddof 0) of `x`; a constant feature keeps scale 1."""
        x = x.to(self.mean.dtype)
        mean = x.mean(0)
        std = torch.sqrt(((x - mean) ** 2).mean(0))
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))
        return self

    def forward(self, x):
        return (x - self.mean) / self.std


class Fourier(nn.Module):
    """Random Fourier features: x -> [sin(2 pi x B^T), cos(2 pi x B^T)], B [features, in] fixed."""

    def __init__(self, num_features: int, fourier_features: int, scale: float = 1.0):
        super().__init__()
        self.register_buffer("B", torch.randn(fourier_features, num_features) * scale)

    def forward(self, x):
        z = (2 * math.pi) * (x @ self.B.T)
        return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


def activation_module(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.01),
        "elu": nn.ELU,
        "selu": nn.SELU,
        "gelu": lambda: nn.GELU(),  # exact (erf) form, PyTorch's default
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
        "softplus": nn.Softplus,
        "sin": Sin,
        "identity": nn.Identity,
    }[name]()


def output_module(name: str) -> nn.Module:
    return {"logits": nn.Identity, "softmax": lambda: nn.Softmax(dim=-1), "sigmoid": nn.Sigmoid}[name]()


def num_outputs(config, num_classes: int) -> int:
    return 1 if config.loss in ONE_UNIT_LOSSES else num_classes


def init_linear_(layer: nn.Linear, scheme: str) -> None:
    """Re-initialise a Linear layer the way a PyTorch user writes each of jaxfit's init schemes
    ("torch" is nn.Linear's own default and needs nothing)."""
    w = layer.weight
    if scheme == "lecun_normal":  # N(0, 1/fan_in): kaiming with the linear gain (1)
        nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear")
    elif scheme == "he_normal":  # N(0, 2/fan_in), not truncated
        nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
    elif scheme == "glorot_uniform":  # U(+-sqrt(6/(fan_in+fan_out)))
        nn.init.xavier_uniform_(w)
    else:
        raise ValueError(f"unknown init {scheme!r}")
    nn.init.zeros_(layer.bias)


def torch_dtype(config) -> torch.dtype:
    return torch.float64 if config.dtype == "float64" else torch.float32


class MLP(nn.Sequential):
    """The network a `jaxfit.Config` describes, built from stock PyTorch modules (see the module
    docstring for the part names)."""

    def __init__(self, config, num_features: int, num_classes: int):
        parts: "OrderedDict[str, nn.Module]" = OrderedDict()
        if config.input_norm == "standardize":
            parts["norm"] = Standardize(num_features)
        elif config.input_norm == "batchnorm":
            parts["norm"] = nn.BatchNorm1d(num_features)
        width = num_features
        if config.encoding == "fourier":
            parts["fourier"] = Fourier(num_features, config.fourier_features, config.fourier_scale)
            width = 2 * config.fourier_features
        for i, h in enumerate(config.hidden):
            parts[f"linear{i}"] = nn.Linear(width, h)
            if config.batchnorm:
                parts[f"bn{i}"] = nn.BatchNorm1d(h)
            parts[f"act{i}"] = activation_module(config.activation)
            if config.dropout > 0:
                parts[f"drop{i}"] = nn.Dropout(config.dropout)
            width = h
        parts["out"] = nn.Linear(width, num_outputs(config, num_classes))
        parts["output"] = output_module(config.output)
        super().__init__(parts)
        self.config = config
        if config.init != "torch":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    init_linear_(m, config.init)

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # nn.Sequential would call MLP(OrderedDict) here
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


def cast_inputs(module: nn.Module, args: tuple) -> tuple:
    """A forward pre-hook: NumPy arrays become tensors and floating inputs take the module's own
    dtype (jaxfit's datasets are float64; a float32 config's model would refuse them)."""
    p = next(module.parameters(), None)
    dtype = p.dtype if p is not None else torch.get_default_dtype()
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.array(a))  # a writable copy
        if isinstance(a, torch.Tensor) and a.is_floating_point() and a.dtype != dtype:
            a = a.to(dtype)
        out.append(a)
    return tuple(out)


def build_model(config, num_features: int, num_classes: int, *, x_train=None) -> MLP:
    """A fresh PyTorch model for `config` (in config.dtype), with PyTorch's default initialisation
    drawn from torch's global RNG (seed it first).

    `config.init` is applied with torch.nn.init (`init_linear_`); jaxfit's schemes are checked
    against these by distribution (parity_tests/test_init.py), since the two RNGs cannot match; to
    compare trajectories, start both frameworks from the same weights. With input_norm="standardize",
    pass `x_train` to fit the statistics (otherwise they are mean 0, std 1 until `Standardize.fit`
    or a loaded state_dict sets them)."""
    model = MLP(config, num_features, num_classes).to(torch_dtype(config))
    if config.input_norm == "standardize" and x_train is not None:
        model.norm.fit(torch.as_tensor(np.array(x_train)))
    return model


# ----------------------------------------------------------------------------- converters


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.array(a, copy=True))


def _hidden_count(config) -> int:
    return len(config.hidden)


# The documents' own modules (torchref.documents) name the same parts differently. A layout maps
# MLP's key prefixes to another module's; the converters take and give any of them.
LAYOUTS: dict[str, dict[str, str]] = {
    "mlp": {},
    # document 1's FeedForward(input_size, num_classes): fc1 Linear(in, in) -> ReLU -> fc2 -> Softmax
    "feedforward": {"linear0": "fc1", "out": "fc2"},
    # document 2's Model(input_size, H1, output_size) (and ModelLogits): linear -> sigmoid -> linear2,
    # and ModelBN's BatchNorm1d on the input, `bn`
    "model": {"linear0": "linear", "out": "linear2", "norm": "bn"},
}


def _check_layout(layout: str, config) -> dict[str, str]:
    if layout not in LAYOUTS:
        raise UserError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}")
    if layout == "mlp":
        return LAYOUTS[layout]
    problems = []
    if len(config.hidden) != 1:
        problems.append(f"hidden={config.hidden} (the {layout} module has exactly one hidden layer)")
    if config.batchnorm:
        problems.append("batchnorm=True (no hidden BatchNorm in that module)")
    if config.encoding != "identity":
        problems.append(f"encoding={config.encoding!r} (no encoding in that module)")
    allowed_norms = ("none", "batchnorm") if layout == "model" else ("none",)
    if config.input_norm not in allowed_norms:
        problems.append(f"input_norm={config.input_norm!r} (that module allows {', '.join(allowed_norms)})")
    if problems:
        raise UserError(f"config does not describe a document {layout!r} module: " + "; ".join(problems))
    return LAYOUTS[layout]


def detect_layout(state_dict) -> str:
    """"feedforward" (keys fc1.*, fc2.*), "model" (linear.*, linear2.*) or "mlp" (torchref's MLP)."""
    keys = {k.split(".")[0] for k in state_dict}
    if {"fc1", "fc2"} <= keys:
        return "feedforward"
    if {"linear", "linear2"} <= keys:
        return "model"
    return "mlp"


def _expected_keys(config, num_hidden: int) -> list[str]:
    """MLP's state_dict keys for `config` (num_batches_tracked left out: jaxfit does not count)."""
    keys = []
    if config.input_norm == "standardize":
        keys += ["norm.mean", "norm.std"]
    elif config.input_norm == "batchnorm":
        keys += [f"norm.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    if config.encoding == "fourier":
        keys.append("fourier.B")
    for i in range(num_hidden):
        keys += [f"linear{i}.weight", f"linear{i}.bias"]
        if config.batchnorm:
            keys += [f"bn{i}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
    return keys + ["out.weight", "out.bias"]


def _rename(key: str, mapping: dict[str, str]) -> str:
    head, _, rest = key.partition(".")
    return f"{mapping.get(head, head)}.{rest}" if rest else mapping.get(head, head)


def to_params(state_dict, config, layout: str | None = None) -> tuple[dict, dict]:
    """(params, model_state) in jaxfit's layout (NumPy arrays) from a PyTorch state_dict.

    Takes torchref's `MLP` and the documents' `FeedForward` / `Model` / `ModelBN` / `ModelLogits`
    alike; `layout` ("mlp", "feedforward", "model") is detected from the keys when not given. A key
    the config needs but the state_dict lacks, or one it has that the config does not use, raises a
    ValueError naming it (so a state_dict from another architecture is never half-converted).
    """
    layout = detect_layout(state_dict) if layout is None else layout
    mapping = _check_layout(layout, config)
    back = {v: k for k, v in mapping.items()}
    sd = {_rename(k, back): v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
    n = _hidden_count(config)
    expected = _expected_keys(config, n)
    missing = [_rename(k, mapping) for k in expected if k not in sd]
    extra = [_rename(k, mapping) for k in sd if k not in set(expected)]
    if missing or extra:
        raise UserError(f"state_dict ({layout} layout) does not match the config: "
                         f"missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
    params: dict[str, Any] = {"dense": []}
    state: dict[str, Any] = {}
    for i in range(n):
        params["dense"].append({"w": _np(sd[f"linear{i}.weight"]), "b": _np(sd[f"linear{i}.bias"])})
    params["dense"].append({"w": _np(sd["out.weight"]), "b": _np(sd["out.bias"])})
    if config.batchnorm:
        params["bn"] = [{"weight": _np(sd[f"bn{i}.weight"]), "bias": _np(sd[f"bn{i}.bias"])} for i in range(n)]
        state["bn"] = [{"mean": _np(sd[f"bn{i}.running_mean"]), "var": _np(sd[f"bn{i}.running_var"])}
                       for i in range(n)]
    if config.input_norm == "batchnorm":
        params["in_bn"] = {"weight": _np(sd["norm.weight"]), "bias": _np(sd["norm.bias"])}
        state["in_bn"] = {"mean": _np(sd["norm.running_mean"]), "var": _np(sd["norm.running_var"])}
    elif config.input_norm == "standardize":
        state["norm_mean"] = _np(sd["norm.mean"])
        state["norm_std"] = _np(sd["norm.std"])
    if config.encoding == "fourier":
        state["fourier"] = _np(sd["fourier.B"])
    return params, state


def to_state_dict(params, model_state, config, layout: str = "mlp") -> "OrderedDict[str, torch.Tensor]":
    """A state_dict from jaxfit's (params, model_state): the keys and order of
    `build_model(config, ...)` (layout "mlp"), or of the documents' modules ("feedforward":
    `FeedForward`; "model": `Model`, `ModelLogits`, and `ModelBN` when input_norm="batchnorm"), ready
    for a strict `load_state_dict`. BatchNorm's num_batches_tracked is set to 0 (jaxfit does not count)."""
    mapping = _check_layout(layout, config)
    model_state = model_state or {}
    n = _hidden_count(config)
    sd: "OrderedDict[str, torch.Tensor]" = OrderedDict()

    def bn(prefix, p, s):
        sd[f"{prefix}.weight"] = _t(p["weight"])
        sd[f"{prefix}.bias"] = _t(p["bias"])
        sd[f"{prefix}.running_mean"] = _t(s["mean"])
        sd[f"{prefix}.running_var"] = _t(s["var"])
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    if config.input_norm == "standardize":
        sd["norm.mean"] = _t(model_state["norm_mean"])
        sd["norm.std"] = _t(model_state["norm_std"])
    elif config.input_norm == "batchnorm":
        bn("norm", params["in_bn"], model_state["in_bn"])
    if config.encoding == "fourier":
        sd["fourier.B"] = _t(model_state["fourier"])
    for i in range(n):
        sd[f"linear{i}.weight"] = _t(params["dense"][i]["w"])
        sd[f"linear{i}.bias"] = _t(params["dense"][i]["b"])
        if config.batchnorm:
            bn(f"bn{i}", params["bn"][i], model_state["bn"][i])
    sd["out.weight"] = _t(params["dense"][n]["w"])
    sd["out.bias"] = _t(params["dense"][n]["b"])
    return OrderedDict((_rename(k, mapping), v) for k, v in sd.items())

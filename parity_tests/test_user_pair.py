"""A user's own pair of models (examples/residual_pair.py: a Flax residual MLP from jaxfit.flax layers and
its PyTorch twin) replayed from the same weights and batch order: the same numbers, and a planted
difference found; weights map by attribute path, a missing or extra key refused by name."""

import os
import sys

import pytest
import torch
from torch import nn

import jaxfit
from torchref.parity import replay_pair

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
from residual_pair import TorchResMLP, flax_factory  # noqa: E402

DATA = jaxfit.datasets.sum_bin(n=128, seed=2, n_val=32)


def twin(cls=TorchResMLP, seed=0):
    torch.manual_seed(seed)
    return cls(DATA.num_features, DATA.num_classes).double()


@pytest.mark.parametrize("opt", [dict(optimizer="sgd", momentum=0.9, lr=0.01), dict(optimizer="adam", lr=0.01)])
def test_the_residual_pair_trains_the_same(opt):
    cfg = jaxfit.Config(batch_size=16, epochs=4, dtype="float64", **opt)
    r = replay_pair(DATA, cfg, flax_factory, twin())
    assert r.ok, r.verdict()
    assert r.deviation.max() < 1e-12
    assert r.jax["full_train_loss"][-1] < r.jax["full_train_loss"][0]  # it trained


class LeakyTwin(TorchResMLP):
    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + nn.functional.leaky_relu(self.block(self.bn(h)), 0.01)  # planted: the Flax twin uses relu
        return self.out(h)


def test_a_planted_difference_fails_the_verdict():
    cfg = jaxfit.Config(optimizer="adam", lr=0.01, batch_size=16, epochs=3, dtype="float64")
    r = replay_pair(DATA, cfg, flax_factory, twin(LeakyTwin))
    assert not r.ok and r.first_violation == 0, r.verdict()


class ExtraTwin(TorchResMLP):
    def __init__(self, *a):
        super().__init__(*a)
        self.extra = nn.Linear(3, 3)


def test_a_missing_or_extra_key_is_refused_by_name():
    cfg = jaxfit.Config(epochs=1, dtype="float64")
    with pytest.raises(ValueError, match="extra"):
        replay_pair(DATA, cfg, flax_factory, twin(ExtraTwin))
    with pytest.raises(ValueError, match="dropout"):
        replay_pair(DATA, cfg.replace(dropout=0.1), flax_factory, twin())


def test_jaxfit_parity_pair_on_the_command_line(tmp_path):
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = lambda *a: subprocess.run([sys.executable, "-m", "jaxfit.cli", "parity", *a], cwd=root, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=240)
    ok = run("optimizer=adam lr=0.01 batch_size=32 epochs=2", "--dtype", "float64", "--n", "128",
             "--pair", "examples/residual_pair.py")
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout[-2000:] + ok.stderr[-2000:]
    bad = tmp_path / "pair.py"
    bad.write_text("def flax_factory(*a):\n    pass\n")
    no = run("epochs=1", "--pair", str(bad))
    assert no.returncode == 2 and "defines no torch_module" in no.stderr and "Traceback" not in no.stderr

"""PyTorch pruning API: prepare / step / make permanent, schedules and importance criteria;
the pattern travels through ONNX to the sparse kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwprune
from hwprune.errors import ConfigError
from hwprune.pipeline import compile_graph
from hwprune.prune.patterns import Pattern, bank_counts
from hwprune.prune.torch_prune import Cubic, OneShot, Pruner


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 3))


def test_one_shot_block_pruning_and_export():
    model = mlp()
    pruner = Pruner(model, "block:4x4", 0.75).prepare()
    assert pruner.step() == 0.75
    patterns = pruner.make_permanent()
    assert set(patterns) == {"0.weight", "2.weight"}  # the classifier (4.weight) is left dense
    p = Pattern.parse("block:4x4")
    for layer in (model[0], model[2]):
        m = layer.weight.detach().numpy() != 0
        assert np.all(bank_counts(m, p) == m.shape[1] // 4 // 4)
    assert (model[4].weight != 0).all()
    proto = pruner.export(torch.zeros(1, 32))
    g = compile_graph(proto)
    sparse = [l for l in g.layers if getattr(l, "sparsity", None) is not None]
    assert len(sparse) == 2 and all(l.sparsity.density == pytest.approx(0.25) for l in sparse)
    x = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(hwprune.run(proto, [x], engine="float")[0], model(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_cubic_schedule():
    c = Cubic(steps=10)
    s = [c.sparsity_at(t, 0.9) for t in range(12)]
    assert s[0] == 0.0 and s[10] == pytest.approx(0.9) and s[11] == pytest.approx(0.9)
    assert all(a <= b for a, b in zip(s, s[1:]))
    assert s[1] > 0.9 * (1 - (1 - 0.1) ** 3) - 1e-9  # front-loaded: most pruning happens early
    assert OneShot().sparsity_at(0, 0.5) == 0.5


@pytest.mark.parametrize("importance", ["magnitude", "taylor", "movement"])
def test_gradual_pruning_during_fine_tuning_keeps_the_pattern(importance):
    torch.manual_seed(1)
    model = mlp()
    x, y = torch.randn(256, 32), torch.randint(0, 3, (256,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    pruner = Pruner(model, "nm:2:4", 0.5, importance=importance, schedule=Cubic(steps=5)).prepare()
    for _ in range(8):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        pruner.observe()
        opt.step()
        pruner.step()
    pruner.make_permanent()
    w = model[0].weight.detach().numpy()
    assert np.all((w != 0).reshape(-1, 4).sum(axis=1) <= 2)
    assert pruner.sparsity_report()["0"] >= 0.5


def test_bad_settings():
    with pytest.raises(ConfigError):
        Pruner(mlp(), "block:4x4", 0.5, importance="random")
    with pytest.raises(ConfigError):
        Pruner(mlp(), "block:4x4", 0.5).step()
    with pytest.raises(ConfigError):
        Pruner(mlp(), "block:4x4", 1.5)

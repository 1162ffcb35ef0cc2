"""Filter/channel pruning with dependency tracking: models physically shrink, tied layers
(residual adds) lose the same channels, concat and batch norm follow, the classifier keeps
its classes, and the result still exports and runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwprune.pipeline import run_onnx
from hwprune.prune.channels import prune_channels
from hwprune.text.model import TextCNN
from conftest import torch_onnx


class Residual(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv1d(4, 8, 3, padding=1)
        self.c2 = torch.nn.Conv1d(8, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm1d(8)
        self.c3 = torch.nn.Conv1d(8, 6, 1)
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x))
        h = torch.relu(self.bn(self.c2(h)) + h)  # residual: c1 and c2 are tied
        h = torch.relu(self.c3(h))
        return self.fc(torch.amax(h, dim=2))


def test_text_cnn_shrinks_through_concat():
    torch.manual_seed(0)
    model = TextCNN(50, 2, dim=8, filters=8, widths=(3, 4)).eval()
    ids = torch.randint(0, 50, (4, 12))
    report = prune_channels(model, ids, 0.5)
    assert report["convs.0"] == (8, 4) and report["convs.1"] == (8, 4)
    assert model.fc.in_features == 8 and model.fc.out_features == 2  # classes untouched
    assert "fc" not in report or report["fc"] == (2, 2)
    y = model(ids)
    assert y.shape == (4, 2)
    proto = torch_onnx(model, ids[:1])
    np.testing.assert_allclose(run_onnx(proto, [ids.numpy()])[0], y.detach().numpy(), atol=1e-5)


def test_residual_groups_are_pruned_together_and_equal_masking():
    torch.manual_seed(1)
    model = Residual().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 4, 10)
    ref = Residual().eval()
    ref.load_state_dict(model.state_dict())
    report = prune_channels(model, x, 0.5)
    assert report["c1"] == (8, 4) and report["c2"] == (8, 4) and report["c3"] == (6, 3)
    assert model.bn.num_features == 4 and model.c3.in_channels == 4 and model.fc.in_features == 3
    # The same channels went from c1, c2 and the batch norm (the residual ties them).
    kept = [i for i in range(8) if any(torch.equal(ref.c1.weight[i], w) for w in model.c1.weight)]
    assert len(kept) == 4
    torch.testing.assert_close(model.c2.weight, ref.c2.weight[kept][:, kept])
    torch.testing.assert_close(model.bn.running_mean, ref.bn.running_mean[kept])
    # Equivalent to the original network with the removed channels cut at their consumers
    # (c2 and c3 read the tied channels, fc reads c3's).
    with torch.no_grad():
        y = model(x)
        dropped = [i for i in range(8) if i not in kept]
        ref.c2.weight[:, dropped] = 0  # c2 consumes c1's channels
        ref.c3.weight[:, dropped] = 0
        kept3 = [i for i in range(6) if any(torch.equal(ref.c3.weight[i, kept], w) for w in model.c3.weight)]
        ref.fc.weight[:, [i for i in range(6) if i not in kept3]] = 0
        np.testing.assert_allclose(ref(x).numpy(), y.numpy(), atol=1e-5)
    assert y.shape == (5, 3)
    proto = torch_onnx(model, x[:1])
    np.testing.assert_allclose(run_onnx(proto, [x.numpy()])[0], y.numpy(), atol=1e-5)


def test_pruned_channels_are_the_weakest():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4, 2)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[1.0], [1.0]], [[0.1], [0.1]], [[2.0], [2.0]], [[0.2], [0.2]]]))
    x = torch.randn(3, 2, 1)
    w_fc = model[3].weight.detach().clone()
    prune_channels(model, x, 0.5)
    torch.testing.assert_close(model[0].weight[:, :, 0], torch.tensor([[1.0, 1.0], [2.0, 2.0]]))
    torch.testing.assert_close(model[3].weight, w_fc[:, [0, 2]])


def test_flattened_spatial_maps_are_left_whole():
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 2)).eval()
    report = prune_channels(model, torch.randn(1, 2, 6), 0.5)
    assert report["0"] == (4, 4)

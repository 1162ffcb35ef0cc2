"""Pruning during training: neuron and layer pruning, the fine-tuning loop with masks,
distillation, lottery-ticket rewinding, zeros held through further training, and the metrics of
a pruned model (hand-computed)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import torch_onnx
from hwprune.errors import ConfigError
from hwprune.pipeline import run_onnx
from hwprune.prune.channels import prune_channels
from hwprune.prune.layers import prune_layers, shape_preserving_blocks
from hwprune.prune.torch_prune import Cubic, FixedMasks, Pruner
from hwprune.text.train import FitConfig, fit


class Block(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


def blocks_model(weak: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Sequential(*(Block(8) for _ in range(4))),
                                torch.nn.Linear(8, 3)).eval()
    with torch.no_grad():
        model[1][weak].fc.weight.mul_(1e-3)  # this block barely changes its input
        model[1][weak].fc.bias.zero_()
    return model


def test_layer_pruning_drops_the_block_that_matters_least():
    model = blocks_model(weak=2)
    x = torch.randn(64, 6)
    with torch.no_grad():
        ref = model(x).clone()

    def loss(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(m(x), ref))

    # The four blocks, and their container as a whole (8 -> 8 features).
    assert set(shape_preserving_blocks(model, x)) == {"1", "1.0", "1.1", "1.2", "1.3"}
    drops = prune_layers(model, x, loss, n_drop=2)
    assert drops[0].name == "1.2" and drops[0].loss < 1e-6
    assert len(drops) == 2 and drops[1].loss > drops[0].loss
    assert isinstance(model[1][2], torch.nn.Identity)
    # A loss ceiling stops the search; the pruned model still exports and runs.
    more = prune_layers(model, x, loss, n_drop=2, max_loss=drops[1].loss)
    assert more == []
    proto = torch_onnx(model, x[:1])
    np.testing.assert_allclose(run_onnx(proto, [x.numpy()])[0], model(x).detach().numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="shape-preserving"):
        prune_layers(model, x, loss, candidates=["0"])


def test_neuron_pruning_of_linear_layers_equals_masking():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3)).eval()
    ref = copy.deepcopy(model)
    x = torch.randn(7, 10)
    report = prune_channels(model, x, 0.5)
    assert report["0"] == (16, 8) and report["2"] == (8, 4) and report["4"] == (3, 3)  # classes kept
    kept0 = [i for i in range(16) if any(torch.equal(ref[0].weight[i], w) for w in model[0].weight)]
    kept2 = [i for i in range(8) if any(torch.equal(ref[2].weight[i, kept0], w) for w in model[2].weight)]
    with torch.no_grad():  # the original with the removed neurons' outputs cut at their consumers
        ref[2].weight[:, [i for i in range(16) if i not in kept0]] = 0
        ref[4].weight[:, [i for i in range(8) if i not in kept2]] = 0
        torch.testing.assert_close(model(x), ref(x))


def toy_task(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] > 0).astype(np.int64)
    idx = rng.permutation(n)
    return x, y, idx[: n * 2 // 3], idx[n * 2 // 3:]


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 2))


def test_fit_with_a_cubic_schedule_ends_on_final_masks_and_keeps_them():
    x, y, tr, va = toy_task()
    model = mlp()
    pruner = Pruner(model, "block:4x4", 0.75, schedule=Cubic(steps=10)).prepare()
    pruner.step()
    seen = []

    def on_step(step: int) -> bool:
        if step % 10 == 0 and not pruner.is_final:
            seen.append(pruner.step())
        return not pruner.is_final

    hist = fit(model, x, y, tr, va, FitConfig(epochs=4, batch_size=32, lr=5e-3, seed=0), masks=pruner,
               on_step=on_step)
    assert pruner.is_final and seen == sorted(seen) and seen[-1] == pytest.approx(0.75)
    assert hist[-1]["final_masks"] and not hist[0]["final_masks"]
    assert hist[-1]["val_accuracy"] > 0.8
    w = model[2].weight.detach().numpy()
    blocks = (w.reshape(4, 4, 8, 4) != 0).any(axis=(1, 3))
    assert (blocks.sum(axis=1) == 2).all()  # every bank keeps 2 of its 8 blocks
    assert np.count_nonzero(model[4].weight.detach().numpy()) == 32  # the classifier stays dense


def test_fixed_masks_hold_zeros_through_training():
    x, y, tr, va = toy_task()
    model = mlp()
    with torch.no_grad():
        model[0].weight[:, ::2] = 0
    zeros = model[0].weight.detach() == 0
    fit(model, x, y, tr, va, FitConfig(epochs=2, batch_size=32), masks=FixedMasks(model))
    assert torch.equal(model[0].weight.detach() == 0, zeros)


def test_lottery_ticket_rewind_restores_early_weights_under_the_masks():
    x, y, tr, va = toy_task()
    model = mlp()
    early = copy.deepcopy(model.state_dict())
    fit(model, x, y, tr, va, FitConfig(epochs=2, batch_size=32))
    pruner = Pruner(model, "unstructured", 0.8).prepare()
    pruner.step()
    masks = [t.mask.clone() for t in pruner._targets]
    pruner.rewind(early)
    for t, m in zip(pruner._targets, masks):
        torch.testing.assert_close(t.module.weight.detach(), early[f"{t.name}.weight"] * m)
    assert torch.equal(model[4].weight.detach(), early["4.weight"])  # the classifier was not masked
    small = mlp()
    small[0] = torch.nn.Linear(12, 8)
    with pytest.raises(ConfigError, match="same architecture|lacks"):
        Pruner(small, "unstructured", 0.5).prepare().rewind(early)


def test_distillation_pulls_the_student_towards_the_teacher():
    x, y, tr, va = toy_task()
    teacher = mlp(1)
    fit(teacher, x, y, tr, va, FitConfig(epochs=4, batch_size=32))
    noisy = np.random.default_rng(5).integers(0, 2, size=len(y))  # labels that carry nothing
    agree = {}
    for alpha in (0.0, 0.9):
        student = mlp(2)
        fit(student, x, noisy, tr, va, FitConfig(epochs=4, batch_size=32, distill_alpha=alpha), teacher=teacher)
        with torch.no_grad():
            agree[alpha] = float((student(torch.from_numpy(x)).argmax(1) == teacher(torch.from_numpy(x)).argmax(1)).float().mean())
    assert agree[0.9] > 0.85 and agree[0.9] > agree[0.0] + 0.2


def test_metrics_of_a_block_sparse_mlp_are_hand_computed():
    import hwprune
    from hwprune.fixed import FixedType
    from hwprune.precision import PrecisionConfig
    from hwprune.prune.metrics import model_metrics
    from hwprune.sim.estimate import estimate

    model = mlp()
    pruner = Pruner(model, "block:4x4", 0.75).prepare()
    pruner.step()
    pruner.make_permanent()
    proto = pruner.export(torch.zeros(1, 12))
    prec = PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<8,3>"))
    g = hwprune.build_graph(proto, prec)
    m = model_metrics(g, estimate(g, hwprune.board.load_board("pynq-z2")))
    # fc0 (32x12): 4x4 blocks, 3 block-columns -> kept 1 per bank (round(3*0.25)=1): 8 banks x 1 block x 16.
    # fc1 (16x32): 8 block-columns -> 2 per bank: 4 banks x 2 x 16; fc2 dense 2x16.
    kept = 8 * 16 + 4 * 2 * 16
    index_bits = 8 * 1 * 2 + 4 * 2 * 3  # log2(3 candidates) -> 2 bits; log2(8) -> 3 bits
    bias_bits = (32 + 16 + 2) * 8
    assert m.index_bits == index_bits
    assert m.memory_bits == (kept + 32) * 8 + bias_bits + index_bits
    assert m.macs == kept + 32 and m.dense_macs == 12 * 32 + 32 * 16 + 16 * 2
    assert m.params == int(sum(np.count_nonzero(p.detach().numpy()) for p in model.parameters()))
    assert m.nominal_sparsity == pytest.approx(1 - (kept + 32) / m.dense_macs)


def test_per_layer_patterns_and_sparsities():
    model = mlp()
    pruner = Pruner(model, layers={"0": ("unstructured", 0.5), "2": ("block:4x4", 0.75), "4": ("nm:2:4", 0.5)})
    pruner.prepare().step()
    patterns = pruner.make_permanent()
    assert patterns == {"0.weight": "unstructured", "2.weight": "block:4x4", "4.weight": "nm:2:4"}
    assert np.mean(model[0].weight.detach().numpy() == 0) == pytest.approx(0.5)
    blocks = (model[2].weight.detach().numpy().reshape(4, 4, 8, 4) != 0).any(axis=(1, 3))
    assert (blocks.sum(axis=1) == 2).all()
    groups = (model[4].weight.detach().numpy().reshape(-1, 4) != 0).sum(axis=1)
    assert (groups <= 2).all()  # the classifier was named, so it is pruned too
    with pytest.raises(ConfigError, match="no Linear"):
        Pruner(mlp(), layers={"9": ("unstructured", 0.5)}).prepare()
    with pytest.raises(ConfigError, match="either one pattern"):
        Pruner(mlp(), "unstructured", 0.5, layers={"0": ("unstructured", 0.5)})


def test_per_layer_filter_pruning():
    model = mlp().eval()
    report = prune_channels(model, torch.randn(2, 12), {"0": 0.75})
    assert report["0"] == (32, 8) and report["2"] == (16, 16) and model[2].in_features == 8
    with pytest.raises(ConfigError, match="no Conv/Linear"):
        prune_channels(mlp(), torch.randn(2, 12), {"conv9": 0.5})

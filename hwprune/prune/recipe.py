"""The recipe that turns a trained float model into a pruned, quantized one, shared by
`hwprune compare` and the budget-driven pruner:

1. filter pruning (physical, with dependency tracking) where asked;
2. pruning during fine-tuning: masks follow a cubic schedule (Zhu & Gupta 2017) over the first
   two thirds of the steps, with distillation from the dense model, optional lottery-ticket
   rewinding, and early stopping among epochs that end on the final masks;
3. quantization: calibration (PTQ), then quantization-aware training with the zeros held;
   export to QONNX with the patterns in its metadata.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hwprune.errors import ConfigError
from hwprune.prune.patterns import Pattern
from hwprune.task import TaskData  # noqa: F401 (the recipe's data; re-exported)

log = logging.getLogger(__name__)

SCHEDULE_UPDATES = 30  # mask updates over the ramp


@dataclass
class Recipe:
    finetune_epochs: int = 3
    qat_epochs: int = 1
    distill_alpha: float = 0.5
    importance: str = "magnitude"
    rewind: bool = False
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("finetune_epochs", "qat_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"distillation weight {self.distill_alpha} must be in [0, 1]")


def fit_epochs(model: torch.nn.Module, data: TaskData, recipe: Recipe, epochs: int, teacher: torch.nn.Module | None,
               say: Callable[[str], None], masks: Any = None, on_step: Any = None) -> None:
    from hwprune.training import FitConfig, fit

    if epochs == 0:
        return
    fc = FitConfig(epochs=epochs, batch_size=data.batch_size, lr=recipe.lr, weight_decay=0.0, seed=recipe.seed,
                   distill_alpha=recipe.distill_alpha if teacher is not None else 0.0)
    fit(model, data.x, data.y, data.train, data.val, fc, masks=masks, teacher=teacher, on_step=on_step,
        progress=lambda m: say(f"  {m}"), loss_fn=data.loss, metric=data.metric)


def prune_finetune(model: torch.nn.Module, data: TaskData,
                   spec: tuple[str, float] | Mapping[str, tuple[str, float]], recipe: Recipe,
                   teacher: torch.nn.Module | None = None, say: Callable[[str], None] = log.info,
                   rewind_state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """A pruned, fine-tuned copy of `model` (the original is untouched). `spec` is one
    (pattern, sparsity) for every prunable layer but the classifier, or {module: (pattern,
    sparsity)} for exactly the named layers."""
    from hwprune.prune.channels import prune_channels
    from hwprune.prune.torch_prune import Cubic, FixedMasks, Pruner

    student = copy.deepcopy(model)
    uniform = isinstance(spec, tuple)
    if uniform:
        pattern, sparsity = spec
        filters: Any = sparsity if Pattern.parse(pattern).kind == "filter" else None
        others: dict[str, tuple[str, float]] | None = None if filters is not None else {}
    else:
        filters = {n: s for n, (p, s) in spec.items() if Pattern.parse(p).kind == "filter" and s > 0}
        others = {n: (p, s) for n, (p, s) in spec.items() if Pattern.parse(p).kind != "filter" and s > 0}
    if filters:
        report = prune_channels(student, data.example(), filters)
        say(f"  filter pruning: {', '.join(f'{k} {a}->{b}' for k, (a, b) in report.items() if a != b) or 'nothing'}")
    if others is None or (not uniform and not others):  # only filters (or nothing): fine-tune the smaller net
        fit_epochs(student, data, recipe, recipe.finetune_epochs, teacher, say)
        return student
    total = max(recipe.finetune_epochs, 1) * math.ceil(len(data.train) / data.batch_size)
    every = max(1, (2 * total // 3) // SCHEDULE_UPDATES)
    schedule = Cubic(steps=max(1, (2 * total // 3) // every))
    if uniform:
        pruner = Pruner(student, spec[0], spec[1], importance=recipe.importance, schedule=schedule)
    else:
        pruner = Pruner(student, layers=others, importance=recipe.importance, schedule=schedule)
    pruner.prepare()
    pruner.step()

    def on_step(step: int) -> bool:
        if step % every == 0 and not pruner.is_final:
            pruner.step()
        return not pruner.is_final

    if recipe.finetune_epochs == 0:
        while not pruner.is_final:
            pruner.step()
    fit_epochs(student, data, recipe, recipe.finetune_epochs, teacher, say, masks=pruner, on_step=on_step)
    while not pruner.is_final:  # a schedule longer than the fine-tuning: finish it
        pruner.step()
    if recipe.rewind:
        if rewind_state is None:
            raise ConfigError("lottery-ticket rewinding needs the first-epoch weights (rewind.pt): train the model "
                              "again with hwprune train")
        if filters:
            raise ConfigError("lottery-ticket rewinding needs the dense architecture; it does not combine with filter pruning")
        pruner.rewind(rewind_state)
        say("  rewound to the first-epoch weights (lottery ticket); fine-tuning with the final masks")
        fit_epochs(student, data, recipe, recipe.finetune_epochs, teacher, say, masks=FixedMasks(student))
    pruner.make_permanent()
    return student


def quantize_finetune(model: torch.nn.Module, data: TaskData, quant: Any, recipe: Recipe,
                      teacher: torch.nn.Module | None = None, say: Callable[[str], None] = log.info,
                      mode: str = "qat") -> tuple[Any, Any]:
    """Calibrate and QAT-fine-tune a quantized copy of a (pruned) float model, zeros held;
    returns (quantized model, QONNX proto with the pruning patterns in its metadata). `mode`
    "ptq": no quantized torch model (None) and the post-training export (hwprune.quantize.ptq:
    weights rounded to `quant`'s bits per module, activations at the precision's result type)."""
    from hwprune.prune.torch_prune import FixedMasks
    from hwprune.quantize.qat import calibrate, export_qonnx, quantize_model

    if mode == "ptq":
        from hwprune.quantize.ptq import export_ptq

        model.eval()
        return None, export_ptq(model, data.example(), {m: b for m, (b, _) in quant.layers.items() if b is not None},
                                default_bits=quant.weight_bits)
    if mode != "qat":
        raise ConfigError(f"quantization mode {mode!r}: expected 'qat' or 'ptq'")

    q = quantize_model(model, data.example(), quant)
    calibrate(q, data.batches(data.train, limit=2048))
    fit_epochs(q, data, recipe, recipe.qat_epochs, teacher, say, masks=FixedMasks(q))
    sparsity = getattr(model, "hwprune_sparsity", None)
    if sparsity:
        q.hwprune_sparsity = dict(sparsity)
    return q, export_qonnx(q, data.example())


def fixed_metric(g: Any, data: TaskData, idx: np.ndarray) -> float:
    """The task's metric (default accuracy) of the bit-exact fixed-point engine (what the C
    simulation computes)."""
    from hwprune.pipeline import run_fixed

    outs = [run_fixed(g, [data.x[idx[i:i + 512]]])[0] for i in range(0, len(idx), 512)]
    return data.score(np.concatenate(outs) if outs else np.zeros((0,)), data.y[idx])


def torch_metric(model: torch.nn.Module, data: TaskData, idx: np.ndarray, x: np.ndarray | None = None) -> float:
    """The task's metric of a torch model (float or quantized) on samples `idx`."""
    from hwprune.training import evaluate

    x = data.x if x is None else x
    return evaluate(model, x[idx], data.y[idx], data.metric)


fixed_accuracy = fixed_metric  # the names of the classification-only API
torch_accuracy = torch_metric

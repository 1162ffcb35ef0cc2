"""The one training loop that training, fine-tuning after pruning and quantization-aware
training share (`fit`), for any task: inputs and labels as arrays with a split by indices, a
loss (default cross-entropy on class labels) and a metric (default accuracy)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from hwprune.progress import Progress
from hwprune.task import Loss, Metric, accuracy_metric, model_outputs


class MaskHolder(Protocol):
    """What `fit` needs from a pruner (hwprune.prune.torch_prune.Pruner, FixedMasks)."""

    def observe(self) -> None: ...
    def apply_masks(self) -> None: ...


@dataclass
class FitConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # Knowledge distillation from a teacher (Hinton et al. 2015): loss = (1-a)*CE + a*T^2*KL.
    distill_alpha: float = 0.0
    temperature: float = 2.0


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    return evaluate(model, x, y, None, batch)


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, metric: Metric | None = None, batch: int = 512) -> float:
    """The metric (None: accuracy) of the model's outputs on (x, y), in eval mode."""
    return float((metric or accuracy_metric)(model_outputs(model, x, batch), y))


def fit(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
        cfg: FitConfig, masks: MaskHolder | None = None, teacher: torch.nn.Module | None = None,
        on_step: Callable[[int], bool] | None = None, progress: Callable[[str], None] | None = None,
        loss_fn: Loss | None = None, metric: Metric | None = None) -> list[dict]:
    """Train `model` and keep the weights of its best validation epoch (by `metric`, higher
    is better; None: accuracy). `loss_fn(outputs, targets)`: None is cross-entropy on class
    labels; distillation applies only then (it compares class distributions).

    `masks` (a pruner) sees every gradient (`observe`) and re-zeros pruned weights after every
    optimizer step. `on_step(step)` runs after each step (a pruning schedule updating its
    masks) and returns True while the model is still changing shape: only epochs that end
    with the final masks may be chosen as the best. With a `teacher`, the loss adds
    distillation towards its softened outputs."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if teacher is not None:
        teacher.eval()
    history: list[dict] = []
    best, best_state, step = -1.0, None, 0
    changing = False
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(train_idx)
        total = 0.0
        bar = Progress(math.ceil(len(order) / cfg.batch_size), f"epoch {epoch + 1}/{cfg.epochs}",
                       enabled=None if progress is not None else False)
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            xb, yb = torch.from_numpy(np.ascontiguousarray(x[b])), torch.from_numpy(np.ascontiguousarray(y[b]))
            if loss_fn is None:
                yb = yb.long()
            opt.zero_grad()
            logits = model(xb)
            logits = getattr(logits, "value", logits)
            loss = torch.nn.functional.cross_entropy(logits, yb) if loss_fn is None else loss_fn(logits, yb)
            if teacher is not None and cfg.distill_alpha > 0 and loss_fn is None:
                with torch.no_grad():
                    t_logits = teacher(xb)
                    t_logits = getattr(t_logits, "value", t_logits)
                T = cfg.temperature
                kd = torch.nn.functional.kl_div(torch.log_softmax(logits / T, 1), torch.softmax(t_logits / T, 1),
                                                reduction="batchmean") * T * T
                loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
            loss.backward()
            if masks is not None:
                masks.observe()
            opt.step()
            if masks is not None:
                masks.apply_masks()
            step += 1
            changing = bool(on_step(step)) if on_step is not None else False
            total += loss.item() * len(b)
            bar.update()
        bar.close()
        val = evaluate(model, x[val_idx], y[val_idx], metric)
        history.append(dict(epoch=epoch + 1, loss=total / len(order), val_accuracy=val, seconds=time.perf_counter() - t0,
                            final_masks=not changing))
        if progress is not None:
            what = "accuracy" if metric is None else "metric"
            progress(f"epoch {epoch + 1}/{cfg.epochs}: loss {total / len(order):.4f}, validation {what} "
                     f"{100 * val:.1f}% ({time.perf_counter() - t0:.1f} s)")
        # Early stopping on validation, among epochs whose masks are the final ones.
        if not changing and val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    if masks is not None:
        masks.apply_masks()
    model.eval()
    return history

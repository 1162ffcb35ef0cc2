"""Pruning PyTorch modules with hardware patterns, in the style of torch.ao.pruning and
Torch-Pruning: `prepare` attaches masks, `step` updates them on a schedule during
fine-tuning, `make_permanent` bakes them into the weights.

    pruner = Pruner(model, "block:4x4", sparsity=0.75, schedule=Cubic(steps=300))
    pruner.prepare()
    for batch in data:
        loss.backward(); pruner.observe(); opt.step(); pruner.step()
    pruner.make_permanent()
    onnx_model = pruner.export(example_input)    # the pattern travels in the ONNX metadata

Importance: `magnitude` (|w|, L2 per block), `taylor` (|w·grad|, first order, accumulated),
`movement` (−w·grad accumulated, Sanh et al. 2020: weights moving towards zero go first).
Classifier layers (the module that produces the model's output classes) are left dense by
default: pruning them silently changes the task (a Torch-Pruning pitfall).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from hwprune.errors import ConfigError
from hwprune.prune.patterns import Pattern, check_sparsity, mask

log = logging.getLogger(__name__)
IMPORTANCE = ("magnitude", "taylor", "movement")


@dataclass
class OneShot:
    """Prune to the final sparsity at the first step."""

    def sparsity_at(self, step: int, final: float) -> float:
        return final


@dataclass
class Cubic:
    """Gradual pruning (Zhu & Gupta 2017): s_t = s_f + (s_0 − s_f)(1 − t/T)^3 over `steps`
    mask updates after `start`, then constant."""

    steps: int
    start: int = 0
    initial: float = 0.0

    def sparsity_at(self, step: int, final: float) -> float:
        if step < self.start:
            return 0.0
        t = min(max(step - self.start, 0), self.steps) / max(self.steps, 1)
        return final + (self.initial - final) * (1.0 - t) ** 3


@dataclass
class _Target:
    name: str
    module: torch.nn.Module
    mask: torch.Tensor | None = None
    score: torch.Tensor | None = None
    pattern: Pattern | None = None  # this layer's own pattern and final sparsity (per-layer mode)
    sparsity: float = 0.0


@dataclass
class Pruner:
    """Prune Linear/Conv layers with one pattern and sparsity, or per layer:

        Pruner(model, "block:4x4", 0.75)
        Pruner(model, layers={"convs.0": ("block:4x4", 0.75), "convs.1": ("nm:2:4", 0.5)})

    With `layers`, exactly the named modules are pruned (the classifier too, if named), each
    towards its own sparsity on the shared schedule."""

    model: torch.nn.Module
    pattern: Pattern | str | None = None
    sparsity: float = 0.0
    importance: str = "magnitude"
    schedule: OneShot | Cubic = field(default_factory=OneShot)
    ignore: Iterable[str] = ()
    prune_classifier: bool = False
    layers: dict[str, tuple[Pattern | str, float]] | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            if self.pattern is not None:
                raise ConfigError("give either one pattern or per-layer patterns (layers=...), not both")
            self.layers = {n: _pattern_and_sparsity(p, s) for n, (p, s) in self.layers.items()}
            self.sparsity = max((s for _, s in self.layers.values()), default=0.0)
        else:
            if self.pattern is None:
                raise ConfigError("a pattern is needed (e.g. 'block:4x4'), or per-layer patterns via layers=")
            self.pattern, self.sparsity = _pattern_and_sparsity(self.pattern, self.sparsity)
        if self.importance not in IMPORTANCE:
            raise ConfigError(f"importance {self.importance!r} is not one of: {', '.join(IMPORTANCE)}")
        self._targets: list[_Target] = []
        self._step = 0
        self._prepared = False
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> "Pruner":
        """Choose the layers (Linear, Conv1d, Conv2d; not the classifier unless asked) and
        attach all-ones masks."""
        prunable = [(n, m) for n, m in self.model.named_modules()
                    if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
        if self.layers is not None:
            unknown = sorted(set(self.layers) - {n for n, _ in prunable})
            if unknown:
                raise ConfigError(f"no Linear/Conv1d/Conv2d module named {unknown[0]!r}; prunable: "
                                  f"{', '.join(n for n, _ in prunable)}")
        ignore = set(self.ignore)
        if prunable and not self.prune_classifier and self.layers is None:
            ignore.add(prunable[-1][0])  # the last layer maps features to classes
        for name, module in prunable:
            if name in ignore or (self.layers is not None and name not in self.layers):
                continue
            pattern, sparsity = self.layers[name] if self.layers is not None else (self.pattern, self.sparsity)
            self._targets.append(_Target(name, module, torch.ones_like(module.weight, dtype=torch.bool),
                                         torch.zeros_like(module.weight), pattern, sparsity))
        if not self._targets:
            raise ConfigError("no Linear/Conv1d/Conv2d layer left to prune (all ignored)")
        self._prepared = True
        return self

    def observe(self) -> None:
        """Accumulate gradient-based importance; call after backward(), before the optimizer step."""
        if self.importance == "magnitude":
            return
        for t in self._targets:
            g = t.module.weight.grad
            if g is None:
                continue
            w = t.module.weight.detach()
            t.score += (w * g).abs() if self.importance == "taylor" else -(w * g)

    @torch.no_grad()
    def step(self) -> float:
        """Update the masks to the schedule's sparsity and zero the pruned weights. Returns the
        sparsity now targeted."""
        if not self._prepared:
            raise ConfigError("call prepare() before step()")
        target = self.schedule.sparsity_at(self._step, self.sparsity)
        self._step += 1
        for t in self._targets:
            w = t.module.weight
            matrix = w.detach().reshape(w.shape[0], -1).cpu().numpy()
            score = self._score(t, matrix)
            # Each layer follows the schedule towards its own final sparsity.
            layer_target = self.schedule.sparsity_at(self._step - 1, t.sparsity)
            if t.pattern.fixed_sparsity() is not None:  # N:M is all or nothing
                layer_target = t.sparsity if layer_target >= t.sparsity - 1e-12 else 0.0
            try:
                m = mask(matrix, t.pattern, layer_target, importance=score) if layer_target > 0 else np.ones_like(matrix, dtype=bool)
            except ConfigError as e:
                if t.name not in self._warned:  # once per layer, not at every step of a fine-tune
                    self._warned.add(t.name)
                    log.warning("%s stays dense: %s", t.name, e)
                continue
            # Pruned weights stay pruned (masks only shrink), as in gradual magnitude pruning.
            t.mask = t.mask & torch.from_numpy(m.reshape(w.shape)) if self.importance == "magnitude" else torch.from_numpy(m.reshape(w.shape))
            w.mul_(t.mask.to(w.dtype))
        return target

    def _score(self, t: _Target, matrix: np.ndarray) -> np.ndarray:
        if self.importance == "magnitude":
            return np.abs(matrix) * t.mask.reshape(matrix.shape).numpy()
        s = t.score.reshape(matrix.shape).cpu().numpy()
        # Movement scores are signed (large = keep); shift them positive for ranking.
        return s - s.min() + 1e-12 if self.importance == "movement" else s

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Re-zero pruned weights (call after every optimizer step while fine-tuning)."""
        for t in self._targets:
            t.module.weight.mul_(t.mask.to(t.module.weight.dtype))

    @torch.no_grad()
    def rewind(self, state: dict[str, torch.Tensor]) -> None:
        """Lottery-ticket rewinding (Frankle et al. 2019/2020): reset the weights to an early
        checkpoint of the dense training run and keep the masks, then fine-tune again."""
        missing = [k for k in self.model.state_dict() if k not in state]
        if missing:
            raise ConfigError(f"the rewind checkpoint lacks {len(missing)} entries, e.g. {missing[0]}")
        current = self.model.state_dict()
        for k, v in state.items():
            if k in current and current[k].shape != v.shape:
                raise ConfigError(f"the rewind checkpoint's {k} has shape {tuple(v.shape)}, the model {tuple(current[k].shape)}; "
                                  "rewinding needs the same architecture (not after filter pruning)")
        self.model.load_state_dict(state)
        self.apply_masks()

    @property
    def is_final(self) -> bool:
        """True once the schedule has reached the final sparsity."""
        return abs(self.schedule.sparsity_at(max(self._step - 1, 0), self.sparsity) - self.sparsity) < 1e-12

    def make_permanent(self) -> dict[str, str]:
        """Bake the masks in and return {parameter name: pattern} for the export."""
        self.apply_masks()
        pruned = {f"{t.name}.weight": str(t.pattern) for t in self._targets if t.sparsity > 0}
        self.model.hwprune_sparsity = pruned  # type: ignore[attr-defined]
        self._prepared = False
        return pruned

    # ------------------------------------------------------------------ reporting
    def sparsity_report(self) -> dict[str, float]:
        return {t.name: float((t.module.weight == 0).float().mean()) for t in self._targets}

    def export(self, example_input: torch.Tensor, dynamo: bool = False):
        """ONNX with the pattern of every pruned weight in its metadata (read by the import)."""
        from hwprune.frontend.torch_export import export_torch
        from hwprune.quantize.qat import record_sparsity

        proto = export_torch(self.model, example_input, dynamo=dynamo)
        # by value, not by name: the exporter renames (and a MatMul transposes) weights
        record_sparsity(self.model, proto)
        return proto


def _pattern_and_sparsity(pattern: Pattern | str, sparsity: float) -> tuple[Pattern, float]:
    p = pattern if isinstance(pattern, Pattern) else Pattern.parse(pattern)
    s = check_sparsity(sparsity)
    fixed = p.fixed_sparsity()
    return p, (fixed if fixed is not None else s)


class FixedMasks:
    """Hold the zeros of an already pruned model in place while it trains further (e.g.
    quantization-aware training after pruning): the masks are the weights' current non-zeros.
    Duck-types the part of `Pruner` that the training loop uses."""

    def __init__(self, model: torch.nn.Module, names: Iterable[str] | None = None) -> None:
        wanted = None if names is None else {n.removesuffix(".weight") for n in names}
        self._masks = [(m, (m.weight.detach() != 0)) for n, m in model.named_modules()
                       if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))
                       and (wanted is None or n in wanted)]

    def observe(self) -> None:
        return None

    @torch.no_grad()
    def apply_masks(self) -> None:
        for m, keep in self._masks:
            m.weight.mul_(keep.to(m.weight.dtype))

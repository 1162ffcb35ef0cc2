"""Layer pruning: drop whole repeated blocks, greedily by loss.

A *candidate* is a child of an `nn.Sequential` or `nn.ModuleList` whose output has the same
shape as its input on an example batch — a block that can become an identity without changing
any other layer (a residual block, a same-width hidden layer). Each round tries removing every
remaining candidate, keeps the removal that costs the least loss on the given data, and stops
after `n_drop` removals or when the best loss would exceed `max_loss`. Removed blocks are
replaced by `nn.Identity`, so the model keeps its structure and still exports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from hwprune.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class LayerDrop:
    name: str
    loss: float  # loss of the model after this block (and the earlier ones) was removed


def shape_preserving_blocks(model: torch.nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the children of Sequential/ModuleList containers that map a tensor to one of
    the same shape on `example_input` (removable without touching other layers)."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = []
    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Sequential, torch.nn.ModuleList))]
    for cname, container in containers:
        for child_name, child in container.named_children():
            name = f"{cname}.{child_name}" if cname else child_name

            def hook(mod: torch.nn.Module, args: tuple, out: object, name: str = name) -> None:
                if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                    shapes[name] = (tuple(args[0].shape), tuple(out.shape))

            hooks.append(child.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [n for n, (i, o) in shapes.items() if i == o and any(p.numel() for p in model.get_submodule(n).parameters())]


def _replace(model: torch.nn.Module, name: str, new: torch.nn.Module) -> torch.nn.Module:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = parent._modules[child]
    parent._modules[child] = new
    return old  # type: ignore[return-value]


def prune_layers(model: torch.nn.Module, example_input: torch.Tensor, loss_fn: Callable[[torch.nn.Module], float],
                 n_drop: int = 1, max_loss: float | None = None, candidates: list[str] | None = None) -> list[LayerDrop]:
    """Greedily replace up to `n_drop` shape-preserving blocks by identities, each time the
    one whose removal gives the lowest `loss_fn(model)`. Returns the removals in order."""
    if n_drop < 0:
        raise ConfigError(f"n_drop={n_drop} must be >= 0")
    pool = list(candidates) if candidates is not None else shape_preserving_blocks(model, example_input)
    known = shape_preserving_blocks(model, example_input)
    bad = [c for c in pool if c not in known]
    if bad:
        raise ConfigError(f"{bad[0]} cannot be dropped: it is not a shape-preserving child of a Sequential/ModuleList")
    dropped: list[LayerDrop] = []
    while len(dropped) < n_drop and pool:
        trials = []
        for name in pool:
            old = _replace(model, name, torch.nn.Identity())
            try:
                trials.append((float(loss_fn(model)), name))
            finally:
                _replace(model, name, old)
        loss, best = min(trials)
        if max_loss is not None and loss > max_loss:
            log.info("layer pruning stops: dropping %s would give loss %.4f > %.4f", best, loss, max_loss)
            break
        _replace(model, best, torch.nn.Identity())
        # The dropped block's own children went with it.
        pool = [n for n in pool if n != best and not n.startswith(best + ".")]
        dropped.append(LayerDrop(best, loss))
        log.info("dropped %s (loss %.4f)", best, loss)
    return dropped

"""PyTorch nn.Module -> ONNX, through torch.onnx.export (classic TorchScript-based exporter
or the dynamo exporter). The batch axis is exported as dynamic. Several inputs (a BERT's
input_ids and attention_mask) come as a tuple of examples and keep the forward's parameter names."""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import onnx

from hwprune.errors import HwpruneInputError

log = logging.getLogger(__name__)


def export_torch(module: Any, example_input: Any, dynamo: bool = False, opset: int = 17) -> onnx.ModelProto:
    import torch

    if not isinstance(module, torch.nn.Module):
        raise HwpruneInputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    examples = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    x = tuple(e if isinstance(e, torch.Tensor) else torch.as_tensor(e) for e in examples)
    module = module.eval()
    # The exporters log optional-dependency notices (torchvision ops) that say nothing about
    # the user's model; keep them out of hwprune's output.
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        return _export(module, x, dynamo, opset)
    finally:
        torch_log.setLevel(level)


def _input_names(module: Any, n: int) -> list[str]:
    if n == 1:
        return ["input"]
    import inspect

    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[:n] if len(params) >= n else [f"input_{k}" for k in range(n)]


def _positional(module: Any, n: int) -> Any:
    """The classic exporter traces every parameter of forward, turning defaults such as
    nn.TransformerEncoderLayer's is_causal=False into tensors; a wrapper that passes the given
    inputs only leaves the defaults to Python."""
    import inspect

    import torch

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return module
    if len(params) <= n or any(p.kind == p.VAR_POSITIONAL for p in params):
        return module

    class Positional(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model = inner

        def forward(self, *xs: Any) -> Any:
            return self.model(*xs)

    return Positional(module).eval()


def _export(module: Any, x: tuple[Any, ...], dynamo: bool, opset: int) -> onnx.ModelProto:
    import torch

    names = _input_names(module, len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            prog = torch.onnx.export(module, x, dynamo=True, input_names=names, output_names=["output"],
                                     dynamic_shapes=tuple({0: batch} for _ in x), verbose=False)
            proto = prog.model_proto
        else:
            buf = io.BytesIO()
            axes = {name: {0: "batch"} for name in names + ["output"]}
            torch.onnx.export(_positional(module, len(x)), x, buf, dynamo=False, opset_version=opset, input_names=names,
                              output_names=["output"], dynamic_axes=axes)
            proto = onnx.load_from_string(buf.getvalue())
    return proto

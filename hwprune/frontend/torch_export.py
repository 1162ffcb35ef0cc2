"""PyTorch nn.Module -> ONNX, through torch.onnx.export (classic TorchScript-based exporter
or the dynamo exporter). The batch axis is exported as dynamic."""

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
    x = example_input if isinstance(example_input, torch.Tensor) else torch.as_tensor(example_input)
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


def _export(module: Any, x: Any, dynamo: bool, opset: int) -> onnx.ModelProto:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            prog = torch.onnx.export(module, (x,), dynamo=True, input_names=["input"], output_names=["output"],
                                     dynamic_shapes=({0: batch},), verbose=False)
            proto = prog.model_proto
        else:
            buf = io.BytesIO()
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
            proto = onnx.load_from_string(buf.getvalue())
    return proto

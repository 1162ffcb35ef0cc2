"""The text-CNN pattern (embedding -> Conv1d -> ReLU -> max over time -> Linear), as the classic
and the dynamo torch exporters write it, end to end in both io types. hls4ml 1.3 fails on it
or gives silently wrong results; here csim must equal the fixed reference bit for bit and the
float model within the quantization bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.pipeline import error_bounds, run_float, run_onnx, trace_fixed
from hwprune.project import build_graph, load_project_graph
from conftest import torch_onnx


class TextCNN(torch.nn.Module):
    def __init__(self, reduce: str, widths=(3,), vocab: int = 40, dim: int = 8, filters: int = 6) -> None:
        super().__init__()
        self.reduce = reduce
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(dim, filters, w) for w in widths)
        self.pool = torch.nn.AdaptiveMaxPool1d(1)
        self.fc = torch.nn.Linear(filters * len(widths), 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)
        feats = []
        for conv in self.convs:
            h = torch.relu(conv(x))
            if self.reduce == "max":
                h = h.max(dim=2).values
            elif self.reduce == "amax":
                h = torch.amax(h, dim=2)
            else:
                h = self.pool(h).flatten(1)
            feats.append(h)
        return self.fc(torch.cat(feats, dim=1) if len(feats) > 1 else feats[0])


VARIANTS = [("max", (3,)), ("amax", (3,)), ("adaptive", (3,)), ("amax", (3, 4))]


# Over ~20 s each, so slow (pytest -m "not slow" keeps adaptive-1conv-classic and amax-2conv-dynamo).
QUICK = {("adaptive", 1, False), ("amax", 2, True)}
CASES = [pytest.param(d, r, w, id=f"{r}-{len(w)}conv-{'dynamo' if d else 'classic'}",
                      marks=() if (r, len(w), d) in QUICK else pytest.mark.slow)
         for d in (False, True) for r, w in VARIANTS]


@pytest.mark.parametrize("dynamo,reduce,widths", CASES)
def test_text_cnn_end_to_end(tmp_path, dynamo, reduce, widths):
    torch.manual_seed(0)
    model = TextCNN(reduce, widths).eval()
    ids = np.random.default_rng(0).integers(0, 40, size=(16, 12))
    proto = torch_onnx(model, torch.from_numpy(ids[:2]), dynamo=dynamo)
    with torch.no_grad():
        y_torch = model(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(run_onnx(proto, [ids])[0], y_torch, atol=1e-5)
    for io in ("parallel", "stream"):
        g = build_graph(proto, io_type=io)
        # Layouts: the float IR (channels-last inside) reproduces torch exactly.
        np.testing.assert_allclose(run_float(g, [ids])[0], y_torch, atol=1e-5)
        prj = hwprune.export(proto, tmp_path / f"{io}", io_type=io)
        g2 = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [ids])[0], trace_fixed(g2, [ids]).values[g2.outputs[0]])
        y_csim = hwprune.run(prj, [ids], engine="csim")[0]
        assert np.all(np.abs(y_csim - y_torch) <= error_bounds(g2, [ids])[0] + 1e-6)

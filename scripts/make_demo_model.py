"""Regenerate the bundled demo model hwprune/data/textcnn_small.onnx and its sample inputs.

A small text CNN (embedding 200x16 -> Conv1d(16, 16, 3) -> ReLU -> max over time ->
Linear(16, 2)) with seeded weights, exported by torch's classic ONNX exporter. It exists so
`hwprune demo` runs offline in seconds; the trained Rotten Tomatoes model comes from
`hwprune train`.
"""

import io
from pathlib import Path

import numpy as np
import onnx
import torch

OUT = Path(__file__).resolve().parents[1] / "hwprune" / "data"


class TextCNN(torch.nn.Module):
    def __init__(self, vocab: int = 200, dim: int = 16, filters: int = 16, width: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.conv = torch.nn.Conv1d(dim, filters, width)
        self.fc = torch.nn.Linear(filters, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)
        x = torch.relu(self.conv(x))
        return self.fc(x.amax(dim=2))


def main() -> None:
    torch.manual_seed(0)
    model = TextCNN().eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 200, size=(64, 24)))
    buf = io.BytesIO()
    torch.onnx.export(model, (ids[:1],), buf, dynamo=False, opset_version=17, input_names=["tokens"],
                      output_names=["logits"], dynamic_axes={"tokens": {0: "batch"}, "logits": {0: "batch"}})
    onnx.save(onnx.load_from_string(buf.getvalue()), OUT / "textcnn_small.onnx")
    np.save(OUT / "textcnn_small_tokens.npy", ids.numpy())


if __name__ == "__main__":
    main()

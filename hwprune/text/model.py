"""TextCNN (Kim 2014): embedding -> parallel Conv1d of several widths -> ReLU -> max over time
-> dropout -> Linear. Written so the ONNX export is exactly the pattern hwprune implements."""

from __future__ import annotations

import torch


class TextCNN(torch.nn.Module):
    def __init__(self, vocab: int, classes: int, dim: int = 64, filters: int = 64,
                 widths: tuple[int, ...] = (3, 4, 5), dropout: float = 0.5) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.convs = torch.nn.ModuleList(torch.nn.Conv1d(dim, filters, w) for w in widths)
        self.dropout = torch.nn.Dropout(dropout)
        self.fc = torch.nn.Linear(filters * len(widths), classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)  # (B, dim, L): channels first for Conv1d
        feats = [torch.amax(torch.relu(conv(x)), dim=2) for conv in self.convs]
        h = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        return self.fc(self.dropout(h))

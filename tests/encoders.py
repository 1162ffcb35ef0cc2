"""Small transformer encoders for the import tests and properties: PyTorch's own
nn.TransformerEncoderLayer, and a BERT-style classifier written the way HuggingFace's
modeling_bert writes it (embeddings with position ids, padding mask, view/permute heads,
GELU FFN, post-LN residuals, a tanh pooler over the CLS token)."""

from __future__ import annotations

import math

import torch
from torch import nn


def transformer_layer(width: int, heads: int, ffn: int, norm_first: bool, activation: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    torch.backends.mha.set_fastpath_enabled(False)  # the fused kernel has no ONNX export
    return nn.TransformerEncoderLayer(width, heads, ffn, dropout=0.0, activation=activation, batch_first=True,
                                      norm_first=norm_first).eval()


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn: int, mask_style: str) -> None:
        super().__init__()
        self.h, self.d = heads, width // heads
        self.query, self.key, self.value, self.attn_out = (nn.Linear(width, width) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(width, eps=1e-12), nn.LayerNorm(width, eps=1e-12)
        self.intermediate, self.output = nn.Linear(width, ffn), nn.Linear(ffn, width)
        self.mask_style = mask_style

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size()[:-1] + (self.h, self.d)).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, extended: torch.Tensor) -> torch.Tensor:
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d)
        if self.mask_style == "where":
            scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        else:
            scores = scores + extended
        probs = nn.functional.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        ctx = ctx.view(ctx.size()[:-2] + (self.h * self.d,))
        x = self.ln1(x + self.attn_out(ctx))
        return self.ln2(x + self.output(nn.functional.gelu(self.intermediate(x))))


class TinyBert(nn.Module):
    """forward(input_ids, attention_mask) -> class logits."""

    def __init__(self, vocab: int = 50, seq: int = 8, width: int = 16, heads: int = 2, ffn: int = 32, layers: int = 1,
                 classes: int = 2, mask_style: str = "additive", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.word_embeddings = nn.Embedding(vocab, width)
        self.position_embeddings = nn.Embedding(seq, width)
        self.token_type_embeddings = nn.Embedding(2, width)
        self.register_buffer("position_ids", torch.arange(seq).unsqueeze(0), persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, seq, dtype=torch.long), persistent=False)
        self.ln = nn.LayerNorm(width, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(width, heads, ffn, mask_style) for _ in range(layers))
        self.pooler = nn.Linear(width, width)
        self.classifier = nn.Linear(width, classes)
        self.mask_style = mask_style

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(self.token_type_ids[:, :seq])
        x = self.ln(x + self.position_embeddings(self.position_ids[:, :seq]))
        extended = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, attention_mask, extended)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(pooled)

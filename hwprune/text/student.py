"""The tiny BERT student: the teacher's WordPiece vocabulary cut to the task, initialised from
the teacher's weights (selected layers, heads and FFN neurons, the cut vocabulary's embedding
rows, one orthonormal width projection), then distilled from the teacher's cached logits.

Width projection: P (width x 384) holds the leading principal axes of the teacher's embedding
output on the task's tokens. A Linear reading the residual stream gets W P^T, one writing it
gets P W (and P b); LayerNorm gains become (P*P) gamma (each axis' average gain), offsets P beta.
Heads keep the teacher's head size (32), so the 1/sqrt(d) scaling is unchanged.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from hwprune.errors import HwpruneInputError
from hwprune.text.bert import BertForClassification, BertShape, MiniLM, WordPiece, pad_ids

log = logging.getLogger(__name__)

PAD, UNK = 0, 1


@dataclass
class WordPieceVocabulary:
    """The teacher's WordPiece tokens kept for the task: ids[i] is the teacher id of student
    token i; 0 is [PAD], 1 is [UNK] (every dropped piece maps onto it)."""

    tokens: list[str] = field(default_factory=list)
    teacher_ids: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, texts: list[str], max_size: int = 30522, min_count: int = 1) -> "WordPieceVocabulary":
        tok = WordPiece()
        counts = Counter(i for s in tok.ids(texts) for i in s)
        counts.pop(tok.pad_id, None)
        counts.pop(tok.unk_id, None)
        common = [i for i, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count][: max_size - 2]
        ids = [tok.pad_id, tok.unk_id] + common
        return cls([tok.token(i) for i in ids], ids)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: list[str], length: int) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.teacher_ids)}
        seqs = [[index.get(i, UNK) for i in s] for s in WordPiece().ids(texts)]
        return pad_ids(seqs, length, PAD)


@dataclass
class StudentInit:
    """Which parts of the teacher start the student."""

    teacher_layers: tuple[int, ...] = (2, 5)

    def check(self, shape: BertShape, teacher: BertShape) -> None:
        if len(self.teacher_layers) != shape.layers:
            raise HwpruneInputError(f"the student has {shape.layers} layers but {len(self.teacher_layers)} teacher layers "
                                    "were chosen to start them")
        if any(not 0 <= i < teacher.layers for i in self.teacher_layers):
            raise HwpruneInputError(f"teacher layers {self.teacher_layers}: the teacher has {teacher.layers}")
        if shape.width // shape.heads != teacher.width // teacher.heads:
            raise HwpruneInputError(f"initialising from the teacher needs its head size {teacher.width // teacher.heads}; "
                                    f"width {shape.width} / {shape.heads} heads is {shape.width // shape.heads}")
        if shape.width > teacher.width or shape.ffn > teacher.ffn or shape.seq_len > teacher.seq_len:
            raise HwpruneInputError("the student cannot be wider, have a larger FFN or a longer sequence than the teacher")


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.argsort(-score, stable=True)[:k]).values


@torch.no_grad()
def init_from_teacher(student: BertForClassification, vocab: WordPieceVocabulary, init: StudentInit | None = None) -> None:
    init = init or StudentInit()
    teacher = MiniLM()
    s, t = student.shape, teacher.shape
    init.check(s, t)
    rows = torch.tensor(vocab.teacher_ids, dtype=torch.long)
    # The principal axes of the task's pieces; of the whole table when the task has too few.
    basis = rows if len(rows) >= 4 * s.width else torch.arange(teacher.word.num_embeddings)
    emb = teacher.embedding_norm(teacher.word.weight[basis] + teacher.position[:1])
    centred = (emb - emb.mean(0)).double()
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    P = vt[: s.width].float()  # (width, 384), orthonormal rows
    P = P * torch.sign(P[torch.arange(s.width), P.abs().argmax(1)])[:, None]  # sign fixed: LAPACK-independent

    def norm(dst: torch.nn.LayerNorm, src: torch.nn.LayerNorm) -> None:
        dst.weight.copy_((P * P) @ src.weight)
        dst.bias.copy_(P @ src.bias)

    student.embeddings.word.weight.copy_(teacher.word.weight[rows] @ P.T)
    student.embeddings.position.copy_(teacher.position[: s.seq_len] @ P.T)
    norm(student.encoder.embedding_norm, teacher.embedding_norm)
    d = t.width // t.heads
    for dst, i in zip(student.encoder.layers, init.teacher_layers):
        src = teacher.layers[i]
        a = src.attention
        # Heads by the size of what they write: |W_v(head)| * |W_o(:, head)|.
        score = torch.stack([a.value.weight[h * d:(h + 1) * d].norm() * a.output.weight[:, h * d:(h + 1) * d].norm()
                             for h in range(t.heads)])
        heads = _top(score, s.heads)
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads.tolist()])
        for name in ("query", "key", "value"):
            lin_s, lin_t = getattr(dst.attention, name), getattr(a, name)
            lin_s.weight.copy_(lin_t.weight[cols] @ P.T)
            lin_s.bias.copy_(lin_t.bias[cols])
        dst.attention.output.weight.copy_(P @ a.output.weight[:, cols])
        dst.attention.output.bias.copy_(P @ a.output.bias)
        norm(dst.attention_norm, src.attention_norm)
        neurons = _top(src.intermediate.weight.norm(dim=1) * src.ffn_output.weight.norm(dim=0), s.ffn)
        dst.intermediate.weight.copy_(src.intermediate.weight[neurons] @ P.T)
        dst.intermediate.bias.copy_(src.intermediate.bias[neurons])
        dst.ffn_output.weight.copy_(P @ src.ffn_output.weight[:, neurons])
        dst.ffn_output.bias.copy_(P @ src.ffn_output.bias)
        norm(dst.output_norm, src.output_norm)

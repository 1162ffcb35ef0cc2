"""The teacher's side of distillation: all-MiniLM-L6-v2 (a sentence encoder, not a classifier)
is fine-tuned with a classifier head over its mean-pooled last layer on the train split (the
epoch with the best validation accuracy is kept), and its logits for every sample are cached in
the user cache directory, keyed by the texts, labels, split, seed and training settings — the
teacher trains once per dataset and seed, not once per student.

A frozen teacher with a fitted logistic-regression head reached only 76.9% test accuracy on
the bundled Rotten Tomatoes split (below TF-IDF + LR): the encoder is fine-tuned (one epoch,
word table frozen; batches group texts of similar length, ~10 min on a shared 2-core CPU).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hwprune.text.bert import MiniLM, WordPiece, pad_ids

log = logging.getLogger(__name__)

TEACHER_SEQ = 64
EPOCHS, BATCH, LR = 1, 32, 5e-5
FORMAT = 2  # bump when the cached content changes meaning


@dataclass
class TeacherOutputs:
    logits: np.ndarray  # (N, classes) float32, every sample of the dataset
    val_accuracy: float
    test_accuracy: float
    path: Path


def _key(texts: list[str], labels: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(dict(format=FORMAT, seq=TEACHER_SEQ, epochs=EPOCHS, batch=BATCH, lr=LR, seed=seed)).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    for a in (labels, train, val):
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


def cache_path(key: str) -> Path:
    from hwprune.backend.csim import cache_dir

    return cache_dir() / "teacher" / f"minilm-{key}.npz"


def _batches(seqs: list[list[int]], idx: np.ndarray, size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar length (less padding); shuffled within and across buckets when `rng`."""
    order = idx[np.argsort([len(seqs[i]) for i in idx], kind="stable")] if rng is None else idx[rng.permutation(len(idx))]
    if rng is not None:  # sort within chunks of 50 batches: similar lengths, still random
        chunk = size * 50
        order = np.concatenate([c[np.argsort([len(seqs[i]) for i in c], kind="stable")]
                                for c in np.array_split(order, max(1, len(order) // chunk))])
    out = [order[i:i + size] for i in range(0, len(order), size)]
    if rng is not None:
        out = [out[i] for i in rng.permutation(len(out))]
    return out


class _Teacher(torch.nn.Module):
    """MiniLM + mean pooling (padding excluded) + a linear classifier."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.encoder = MiniLM()
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(self.encoder.shape.width, classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(ids, mask)[-1]
        m = mask[..., None].float()
        return self.head(self.dropout((h * m).sum(1) / m.sum(1)))


def _run(model: _Teacher, seqs: list[list[int]], idx: np.ndarray, pad: int) -> np.ndarray:
    model.eval()
    out = np.zeros((len(seqs), model.head.out_features), dtype=np.float32)
    with torch.no_grad():
        for b in _batches(seqs, idx, 128, None):
            ids = torch.from_numpy(pad_ids([seqs[j] for j in b], max(len(seqs[j]) for j in b), pad))
            out[b] = model(ids, ids != pad).numpy()
    return out


def teacher_logits(texts: list[str], labels: np.ndarray, train: np.ndarray, val: np.ndarray, test: np.ndarray,
                   classes: int, seed: int = 0, progress: Callable[[str], None] | None = None) -> TeacherOutputs:
    """The fine-tuned teacher's logits on every sample (cached; see the module doc)."""
    path = cache_path(_key(texts, labels, train, val, seed))
    if path.is_file():
        z = np.load(path)
        return TeacherOutputs(z["logits"], float(z["val_accuracy"]), float(z["test_accuracy"]), path)
    say = progress or (lambda m: None)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = WordPiece()
    seqs = [s[: TEACHER_SEQ - 1] + [tok.sep_id] if len(s) > TEACHER_SEQ else s for s in tok.ids(texts, special=True)]
    model = _Teacher(classes)
    # The 30,522-row word table stays frozen: most of the optimizer's work for little gain.
    model.encoder.word.weight.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.01)
    batches = [_batches(seqs, train, BATCH, rng) for _ in range(EPOCHS)]
    total = sum(len(b) for b in batches)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.1 * total)) * max(0.0, (total - s) / (0.9 * total)))
    best = None
    for epoch, epoch_batches in enumerate(batches):
        model.train()
        for k, b in enumerate(epoch_batches):
            ids = torch.from_numpy(pad_ids([seqs[j] for j in b], max(len(seqs[j]) for j in b), tok.pad_id))
            loss = torch.nn.functional.cross_entropy(model(ids, ids != tok.pad_id), torch.from_numpy(labels[b]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if k % 50 == 0:
                say(f"teacher fine-tuning, epoch {epoch + 1}/{EPOCHS}: batch {k}/{len(epoch_batches)}, loss {loss.item():.3f}")
        logits = _run(model, seqs, np.arange(len(texts)), tok.pad_id)
        acc = float(np.mean(logits[val].argmax(1) == labels[val]))
        say(f"teacher epoch {epoch + 1}: validation accuracy {100 * acc:.1f}%")
        if best is None or acc > best[0]:
            best = (acc, logits)
    acc, logits = best
    test_acc = float(np.mean(logits[test].argmax(1) == labels[test]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, logits=logits, val_accuracy=acc, test_accuracy=test_acc)
    tmp.replace(path)
    log.info("teacher: validation %.1f%%, test %.1f%%", 100 * acc, 100 * test_acc)
    return TeacherOutputs(logits, acc, test_acc, path)

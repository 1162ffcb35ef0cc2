"""Train the tiny BERT student (`hwprune train --model transformer`): the teacher's head is fitted
and its logits cached (hwprune.text.distill), the student starts from the teacher's weights
(hwprune.text.student) and is distilled from the cached logits with the shared training loop.

The targets the loop sees are [label, teacher logits...] per sample, so the distillation loss
needs no teacher module at training time; the metric is accuracy on the label column.

MODEL_DIR as for the TextCNN (hwprune.text.train), with config.json's "model": "transformer"
and vocab.json holding the kept WordPiece tokens and their teacher ids.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hwprune.errors import ConfigError
from hwprune.training import FitConfig, fit
from hwprune.text.bert import BertForClassification, BertShape
from hwprune.text.data import TextDataset, split
from hwprune.text.student import StudentInit, WordPieceVocabulary, init_from_teacher

log = logging.getLogger(__name__)


@dataclass
class TransformerConfig:
    seq_len: int = 48
    width: int = 96
    heads: int = 3
    layers: int = 2
    ffn: int = 384
    teacher_layers: tuple[int, ...] = (2, 5)
    epochs: int = 5  # ~90 s each on 2 cores
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.0
    dropout: float = 0.1
    distill_alpha: float = 0.7
    temperature: float = 2.0
    seed: int = 0
    # The split and the teacher are seeded apart from the student: seeds of the student compare
    # on one split with one teacher (None: the student's seed).
    split_seed: int | None = None
    teacher_seed: int = 0
    # "teacher": weights selected and projected from all-MiniLM-L6-v2; "random".
    init: str = "teacher"

    def __post_init__(self) -> None:
        if self.init not in ("teacher", "random"):
            raise ConfigError(f"init {self.init!r} is not one of: teacher, random")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"distillation weight {self.distill_alpha} must be in [0, 1]")
        self.teacher_layers = tuple(self.teacher_layers)

    def shape(self, vocab: int, classes: int) -> BertShape:
        return BertShape(vocab, self.width, self.heads, self.layers, self.ffn, self.seq_len, classes)


def distillation_targets(labels: np.ndarray, teacher_logits: np.ndarray) -> np.ndarray:
    return np.concatenate([labels[:, None].astype(np.float32), teacher_logits.astype(np.float32)], axis=1)


def distillation_loss(alpha: float, temperature: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(1 - alpha) CE(label) + alpha T^2 KL(teacher_T || student_T) (Hinton et al. 2015)."""
    T = temperature

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(logits, target[:, 0].long())
        kd = torch.nn.functional.kl_div(torch.log_softmax(logits / T, 1), torch.softmax(target[:, 1:] / T, 1),
                                        reduction="batchmean") * T * T
        return (1 - alpha) * ce + alpha * kd

    return loss


def label_accuracy(outputs: np.ndarray, targets: np.ndarray) -> float:
    t = np.asarray(targets)
    labels = t[:, 0] if t.ndim == 2 else t
    return float(np.mean(np.argmax(outputs, axis=1) == labels.astype(np.int64))) if len(outputs) else 0.0


def transformer_macs(shape: BertShape) -> int:
    """Multiply-accumulates per sample of the encoder (the lookup has none)."""
    n, d = shape.seq_len, shape.width
    per_layer = n * (4 * d * d + 2 * d * shape.ffn) + 2 * n * n * d
    return shape.layers * per_layer + d * shape.classes


def train_transformer(data: TextDataset, cfg: TransformerConfig, progress: bool = True):
    from hwprune.text.distill import teacher_logits
    from hwprune.text.train import TrainResult

    say = (lambda m: print(f"[hwprune train] {m}", flush=True)) if progress else (lambda m: None)
    if cfg.init == "teacher":  # before the teacher's fine-tuning, not after
        from hwprune.text.bert import teacher_config

        c = teacher_config()
        StudentInit(cfg.teacher_layers).check(cfg.shape(2, len(data.classes)), BertShape(
            c["vocab_size"], c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"], c["intermediate_size"],
            c["max_position_embeddings"]))
    torch.manual_seed(cfg.seed)
    idx_train, idx_val, idx_test = split(len(data.texts), cfg.seed if cfg.split_seed is None else cfg.split_seed)
    teacher = None
    if cfg.distill_alpha > 0:
        teacher = teacher_logits(data.texts, data.labels, idx_train, idx_val, idx_test, len(data.classes),
                                 cfg.teacher_seed, say)
        say(f"teacher (all-MiniLM-L6-v2, fine-tuned): validation {100 * teacher.val_accuracy:.1f}%, "
            f"test {100 * teacher.test_accuracy:.1f}% (logits cached in {teacher.path})")
    vocab = WordPieceVocabulary.build([data.texts[i] for i in idx_train])
    x = vocab.encode(data.texts, cfg.seq_len)
    shape = cfg.shape(len(vocab), len(data.classes))
    model = BertForClassification(shape, cfg.dropout)
    if cfg.init == "teacher":
        init_from_teacher(model, vocab, StudentInit(cfg.teacher_layers))
    t_logits = teacher.logits if teacher is not None else np.zeros((len(data.labels), len(data.classes)), np.float32)
    y = distillation_targets(data.labels, t_logits)
    fc = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
    history = fit(model, x, y, idx_train, idx_val, fc, progress=say,
                  loss_fn=distillation_loss(cfg.distill_alpha, cfg.temperature), metric=label_accuracy)
    from hwprune.task import model_outputs

    acc = lambda idx: label_accuracy(model_outputs(model, x[idx]), data.labels[idx])  # noqa: E731
    metrics = dict(train_accuracy=acc(idx_train), val_accuracy=acc(idx_val), test_accuracy=acc(idx_test),
                   params=int(sum(p.numel() for p in model.parameters())),
                   encoder_params=int(sum(p.numel() for p in model.encoder.parameters())), macs=transformer_macs(shape),
                   classes=data.classes, n_samples=len(data.texts), history=history, source=data.source,
                   teacher=None if teacher is None else dict(val_accuracy=teacher.val_accuracy,
                                                             test_accuracy=teacher.test_accuracy),
                   init=cfg.init)
    return TrainResult(model, vocab, metrics, None), dict(train=idx_train, val=idx_val, test=idx_test)


def save_transformer_dir(out: Path, result, cfg: TransformerConfig, splits: dict[str, np.ndarray], force: bool,
                         data=None) -> Path:
    """Write MODEL_DIR atomically; model.onnx is the encoder from the embedded sequence on."""
    import onnx

    from hwprune.frontend.torch_export import export_torch
    from hwprune.fsutil import atomic_directory
    from hwprune.text.train import DataSpec

    spec = data or DataSpec()
    inputs = [spec.path] if getattr(spec, "path", None) else []
    with atomic_directory(out, force, inputs, kind="model") as tmp:
        torch.save(result.model.state_dict(), tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(dict(asdict(cfg), model="transformer", vocab=len(result.vocab),
                                                         classes=result.metrics["classes"], data=asdict(spec)), indent=2))
        (tmp / "vocab.json").write_text(json.dumps(dict(tokens=result.vocab.tokens, teacher_ids=result.vocab.teacher_ids)))
        np.savez(tmp / "split.npz", **splits)
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        example = torch.zeros((1, cfg.seq_len, cfg.width))
        onnx.save(export_torch(result.model.encoder, example), str(tmp / "model.onnx"))
    return out


def load_transformer(p: Path, d: dict):
    cfg = TransformerConfig(**{k: v for k, v in d.items() if k in TransformerConfig.__dataclass_fields__})
    v = json.loads((p / "vocab.json").read_text())
    vocab = WordPieceVocabulary(v["tokens"], v["teacher_ids"])
    model = BertForClassification(cfg.shape(len(vocab), len(d["classes"])), cfg.dropout)
    model.load_state_dict(torch.load(p / "model.pt", weights_only=True))
    return cfg, vocab, model

"""Train the TextCNN on a text dataset (`hwprune train`).

MODEL_DIR holds everything the later steps (pruning, export, deployment) need:

    model.pt        state dict          config.json   architecture, sequence length, classes, seed
    vocab.json      the vocabulary      split.npz     train/validation/test indices of the data
    model.onnx      the float model     metrics.json  accuracy per split and per epoch, parameters, MACs
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hwprune.errors import ModelLoadError
from hwprune.fsutil import atomic_directory
from hwprune.text.data import TextDataset, Vocabulary, split
from hwprune.text.model import TextCNN

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    seq_len: int = 48
    vocab_size: int = 20000
    dim: int = 64
    filters: int = 64
    widths: tuple[int, ...] = (3, 4, 5)
    dropout: float = 0.5
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TrainResult:
    model: TextCNN
    vocab: Vocabulary
    metrics: dict = field(default_factory=dict)


def accuracy(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[i:i + batch]))
            correct += int((logits.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / max(len(x), 1)


def train_textcnn(data: TextDataset, cfg: TrainConfig, progress: bool = True) -> tuple[TrainResult, dict[str, np.ndarray]]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    idx_train, idx_val, idx_test = split(len(data.texts), cfg.seed)
    vocab = Vocabulary.build([data.texts[i] for i in idx_train], cfg.vocab_size)
    x = vocab.encode(data.texts, cfg.seq_len)
    y = data.labels
    model = TextCNN(len(vocab), len(data.classes), cfg.dim, cfg.filters, cfg.widths, cfg.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    best, best_state = -1.0, None
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(idx_train)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[b])), torch.from_numpy(y[b]))
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        val = accuracy(model, x[idx_val], y[idx_val])
        history.append(dict(epoch=epoch + 1, loss=total / len(order), val_accuracy=val, seconds=time.perf_counter() - t0))
        if progress:
            print(f"[hwprune train] epoch {epoch + 1}/{cfg.epochs}: loss {total / len(order):.4f}, "
                  f"validation accuracy {100 * val:.1f}% ({time.perf_counter() - t0:.1f} s)", flush=True)
        if val > best:  # keep the epoch that generalises best (early stopping on validation)
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    positions = [cfg.seq_len - w + 1 for w in cfg.widths]
    macs = sum(p * w * cfg.dim * cfg.filters for p, w in zip(positions, cfg.widths)) + cfg.filters * len(cfg.widths) * len(data.classes)
    metrics = dict(
        train_accuracy=accuracy(model, x[idx_train], y[idx_train]), val_accuracy=accuracy(model, x[idx_val], y[idx_val]),
        test_accuracy=accuracy(model, x[idx_test], y[idx_test]), params=int(n_params), macs=int(macs),
        classes=data.classes, n_samples=len(data.texts), history=history, source=data.source,
    )
    return TrainResult(model, vocab, metrics), dict(train=idx_train, val=idx_val, test=idx_test)


def save_model_dir(out: Path, result: TrainResult, cfg: TrainConfig, splits: dict[str, np.ndarray], force: bool) -> Path:
    """Write MODEL_DIR atomically (a failure leaves nothing behind)."""
    from hwprune.frontend.torch_export import export_torch

    with atomic_directory(out, force) as tmp:
        torch.save(result.model.state_dict(), tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps(dict(asdict(cfg), vocab=len(result.vocab),
                                                         classes=result.metrics["classes"]), indent=2))
        (tmp / "vocab.json").write_text(json.dumps(result.vocab.tokens))
        np.savez(tmp / "split.npz", **splits)
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        example = torch.zeros((1, cfg.seq_len), dtype=torch.long)
        import onnx

        onnx.save(export_torch(result.model, example), str(tmp / "model.onnx"))
    return out


def load_model_dir(path: str | Path) -> tuple[TextCNN, Vocabulary, TrainConfig, dict]:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"{p} is not a trained model directory (no config.json); create one with hwprune train")
    d = json.loads((p / "config.json").read_text())
    cfg = TrainConfig(**{k: (tuple(v) if k == "widths" else v) for k, v in d.items() if k in TrainConfig.__dataclass_fields__})
    vocab = Vocabulary(json.loads((p / "vocab.json").read_text()))
    model = TextCNN(len(vocab), len(d["classes"]), cfg.dim, cfg.filters, cfg.widths, cfg.dropout)
    model.load_state_dict(torch.load(p / "model.pt", weights_only=True))
    model.eval()
    return model, vocab, cfg, json.loads((p / "metrics.json").read_text())

"""Train the TextCNN on a text dataset (`hwprune train`) with the shared training loop
(`hwprune.training.fit`, re-exported here).

MODEL_DIR holds everything the later steps (pruning, export, deployment) need:

    model.pt        state dict          config.json   architecture, sequence length, classes, seed, data
    vocab.json      the vocabulary      split.npz     train/validation/test indices of the data
    model.onnx      the float model     metrics.json  accuracy per split and per epoch, parameters, MACs
    rewind.pt       weights after the first epoch (lottery-ticket rewinding)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from hwprune.errors import ConfigError, ModelLoadError
from hwprune.fsutil import atomic_directory
from hwprune.training import FitConfig, MaskHolder, accuracy, evaluate, fit  # noqa: F401 (re-exported)
from hwprune.text.data import TextDataset, Vocabulary, load_csv, rotten_tomatoes, split
from hwprune.text.model import TextCNN

log = logging.getLogger(__name__)

EMBEDDINGS = ("glove", "random")


@dataclass
class TrainConfig:
    seq_len: int = 48
    vocab_size: int = 20000
    # A multiple of 16 so balanced patterns divide the conv matrices (see text/glove.py).
    dim: int = 48
    filters: int = 64
    widths: tuple[int, ...] = (3, 4, 5)
    dropout: float = 0.5
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    # "glove": GloVe 6B 50-d vectors (their leading `dim` principal components) initialise
    # the embedding; "random".
    embeddings: str = "glove"
    # The split's seed (None: `seed`); a fixed split compares seeds of training on one test set.
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.embeddings not in EMBEDDINGS:
            raise ConfigError(f"embeddings {self.embeddings!r} is not one of: {', '.join(EMBEDDINGS)}")
        if self.embeddings == "glove" and not 1 <= self.dim <= 50:
            raise ConfigError(f"GloVe vectors have 50 dimensions; got dim={self.dim} (use --embeddings random)")


@dataclass
class DataSpec:
    """Where the dataset came from, so later steps (compare, demo) reload the same texts."""

    path: str | None = None  # None: the bundled Rotten Tomatoes snippets
    text_column: str = "text"
    label_column: str = "label"

    def load(self) -> TextDataset:
        return rotten_tomatoes() if self.path is None else load_csv(self.path, self.text_column, self.label_column)


@dataclass
class TrainResult:
    model: TextCNN
    vocab: Vocabulary
    metrics: dict = field(default_factory=dict)
    rewind_state: dict[str, torch.Tensor] | None = None


def textcnn_macs(cfg: TrainConfig, classes: int) -> int:
    positions = [cfg.seq_len - w + 1 for w in cfg.widths]
    return sum(p * w * cfg.dim * cfg.filters for p, w in zip(positions, cfg.widths)) + cfg.filters * len(cfg.widths) * classes


def train_textcnn(data: TextDataset, cfg: TrainConfig, progress: bool = True) -> tuple[TrainResult, dict[str, np.ndarray]]:
    torch.manual_seed(cfg.seed)
    idx_train, idx_val, idx_test = split(len(data.texts), cfg.seed if cfg.split_seed is None else cfg.split_seed)
    vocab = Vocabulary.build([data.texts[i] for i in idx_train], cfg.vocab_size)
    x = vocab.encode(data.texts, cfg.seq_len)
    y = data.labels
    model = TextCNN(len(vocab), len(data.classes), cfg.dim, cfg.filters, cfg.widths, cfg.dropout)
    coverage = None
    if cfg.embeddings == "glove":
        from hwprune.text.glove import glove_matrix

        table, coverage = glove_matrix(vocab, cfg.seed, cfg.dim)
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(table))
    rewind: dict[str, torch.Tensor] = {}

    def keep_first_epoch(step: int) -> bool:
        if not rewind and step * cfg.batch_size >= len(idx_train):
            rewind.update(copy.deepcopy(model.state_dict()))
        return False

    say = (lambda m: print(f"[hwprune train] {m}", flush=True)) if progress else None
    fc = FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
    history = fit(model, x, y, idx_train, idx_val, fc, on_step=keep_first_epoch, progress=say)
    n_params = sum(p.numel() for p in model.parameters())
    metrics = dict(
        train_accuracy=accuracy(model, x[idx_train], y[idx_train]), val_accuracy=accuracy(model, x[idx_val], y[idx_val]),
        test_accuracy=accuracy(model, x[idx_test], y[idx_test]), params=int(n_params),
        macs=textcnn_macs(cfg, len(data.classes)), classes=data.classes, n_samples=len(data.texts), history=history,
        source=data.source, embeddings=cfg.embeddings, glove_coverage=coverage,
    )
    return TrainResult(model, vocab, metrics, rewind or None), dict(train=idx_train, val=idx_val, test=idx_test)


def save_model_dir(out: Path, result: TrainResult, cfg: TrainConfig, splits: dict[str, np.ndarray], force: bool,
                   data: DataSpec | None = None) -> Path:
    """Write MODEL_DIR atomically (a failure leaves nothing behind)."""
    from hwprune.frontend.torch_export import export_torch

    spec = data or DataSpec()
    inputs = [spec.path] if getattr(spec, "path", None) else []
    with atomic_directory(out, force, inputs, kind="model") as tmp:
        torch.save(result.model.state_dict(), tmp / "model.pt")
        if result.rewind_state is not None:
            torch.save(result.rewind_state, tmp / "rewind.pt")
        (tmp / "config.json").write_text(json.dumps(dict(asdict(cfg), vocab=len(result.vocab), classes=result.metrics["classes"],
                                                         data=asdict(data or DataSpec())), indent=2))
        (tmp / "vocab.json").write_text(json.dumps(result.vocab.tokens))
        np.savez(tmp / "split.npz", **splits)
        (tmp / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        example = torch.zeros((1, cfg.seq_len), dtype=torch.long)
        import onnx

        onnx.save(export_torch(result.model, example), str(tmp / "model.onnx"))
    return out


@dataclass
class ModelDir:
    """A trained model directory, loaded: the model, its data and split, ready for pruning."""

    path: Path
    model: TextCNN
    vocab: Vocabulary
    cfg: TrainConfig
    metrics: dict[str, Any]
    data: DataSpec
    splits: dict[str, np.ndarray]
    rewind_state: dict[str, torch.Tensor] | None

    def encoded(self) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, labels) of the whole dataset, in the split's index space."""
        d = self.data.load()
        if len(d.texts) != sum(len(v) for v in self.splits.values()):
            raise ModelLoadError(f"{self.path}: the data now has {len(d.texts)} texts but the model was trained on "
                                 f"{sum(len(v) for v in self.splits.values())}; retrain with hwprune train")
        return self.vocab.encode(d.texts, self.cfg.seq_len), d.labels


def load_model_dir(path: str | Path) -> ModelDir:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ModelLoadError(f"{p} is not a trained model directory (no config.json); create one with hwprune train")
    try:
        d = json.loads((p / "config.json").read_text())
        if d.get("model") == "transformer":
            from hwprune.text.train_transformer import load_transformer

            cfg, vocab, model = load_transformer(p, d)
            splits = dict(np.load(p / "split.npz"))
            metrics = json.loads((p / "metrics.json").read_text())
            model.eval()
            return ModelDir(p, model, vocab, cfg, metrics, DataSpec(**d.get("data", {})), splits, None)
        d.setdefault("embeddings", "random")  # directories written before GloVe support
        cfg = TrainConfig(**{k: (tuple(v) if k == "widths" else v) for k, v in d.items() if k in TrainConfig.__dataclass_fields__})
        vocab = Vocabulary(json.loads((p / "vocab.json").read_text()))
        model = TextCNN(len(vocab), len(d["classes"]), cfg.dim, cfg.filters, cfg.widths, cfg.dropout)
        model.load_state_dict(torch.load(p / "model.pt", weights_only=True))
        splits = dict(np.load(p / "split.npz"))
        rewind = torch.load(p / "rewind.pt", weights_only=True) if (p / "rewind.pt").is_file() else None
        metrics = json.loads((p / "metrics.json").read_text())
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"{p}: the model directory is incomplete or corrupt ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}); retrain with hwprune train") from None
    model.eval()
    return ModelDir(p, model, vocab, cfg, metrics, DataSpec(**d.get("data", {})), splits, rewind)

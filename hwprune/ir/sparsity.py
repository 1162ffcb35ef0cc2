"""Sparsity structure of a layer's weights.

`Sparsity` declares a pattern a kernel can exploit: the weight matrix (rows = inputs, cols =
outputs for Dense; kernel taps x output channels for Conv) cut into `block` tiles, `kept`
marking the tiles that hold non-zeros. A layer without a declared pattern is run by the dense
kernels; the estimate then reports its zeros as nominal sparsity with no cycles saved — zeros
only pay where the schedule skips them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sparsity:
    pattern: str  # "unstructured", "block", "bank_balanced", "n:m", ...
    block: tuple[int, int]
    kept: np.ndarray  # bool, shape (rows // block[0], cols // block[1])

    @property
    def density(self) -> float:
        return float(self.kept.mean()) if self.kept.size else 1.0

    @classmethod
    def unstructured(cls, matrix: np.ndarray) -> "Sparsity":
        return cls("unstructured", (1, 1), np.asarray(matrix) != 0)


def zero_fraction(weight: np.ndarray) -> float:
    """Nominal sparsity: the fraction of weights that are exactly zero."""
    w = np.asarray(weight)
    return float(np.mean(w == 0)) if w.size else 0.0

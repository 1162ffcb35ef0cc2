"""Sparsity structure of a layer's weights.

`Sparsity` declares a balanced pattern a kernel exploits. The weight matrix in (outputs,
inputs) orientation is cut into `block` tiles. Row-balanced: every block-row (a *bank* of
`block[0]` outputs) keeps the same number of blocks; column indices are grouped into groups of
`group` consecutive block-columns, each group keeping `per_group` blocks (one group spanning
all columns for block patterns; a row segment for bank-balanced sparsity; M weights for N:M).
Column-balanced swaps the roles of rows and columns (one group). `kept` marks kept blocks.

A layer without a declared pattern runs on the dense kernels; the estimate then reports its
zeros as nominal sparsity with no cycles saved — zeros only pay where the schedule skips them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sparsity:
    pattern: str  # the pattern as written, e.g. "block:4x4", "bbs:8", "nm:2:4"
    block: tuple[int, int]
    kept: np.ndarray  # bool (rows // block[0], cols // block[1])
    group: int  # candidate block positions per group (the index range)
    per_group: int  # kept blocks per group
    column_balanced: bool = False

    @property
    def density(self) -> float:
        return float(self.kept.mean()) if self.kept.size else 1.0

    @property
    def per_bank(self) -> int:
        """Kept blocks in every bank (row of blocks, or column when column-balanced)."""
        k = self.kept.T if self.column_balanced else self.kept
        return int(k.sum(axis=1).max()) if k.size else 0

    @property
    def index_bits(self) -> int:
        return max(1, int(np.ceil(np.log2(max(self.group, 2)))))

    @property
    def n_banks(self) -> int:
        return int(self.kept.shape[1] if self.column_balanced else self.kept.shape[0])

    @property
    def kept_blocks(self) -> int:
        return self.n_banks * self.per_bank

    @property
    def kept_weights(self) -> int:
        return self.kept_blocks * self.block[0] * self.block[1]

    def gather(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The kept blocks of an (outputs, inputs) matrix in bank order, (banks, per_bank, br, bc),
        and their in-group indices (banks, per_bank): what a sparse kernel's ROMs hold."""
        br, bc = self.block
        tiles = m.reshape(m.shape[0] // br, br, m.shape[1] // bc, bc).transpose(0, 2, 1, 3)  # (RB, CB, br, bc)
        if self.column_balanced:
            tiles = tiles.transpose(1, 0, 2, 3)  # banks are block-columns
        idx = self.bank_lists()
        pos = idx.copy()
        if not self.column_balanced:
            for t in range(idx.shape[1]):
                pos[:, t] = (t // self.per_group) * self.group + idx[:, t]
        return np.stack([tiles[b, pos[b]] for b in range(tiles.shape[0])]), idx

    def bank_lists(self) -> np.ndarray:
        """(banks, per_bank) index of each kept block *within its group*, in group order."""
        k = self.kept.T if self.column_balanced else self.kept
        banks, cols = k.shape
        # Every bank keeps exactly per_bank blocks, so the kept positions reshape row by row.
        _, sel = np.nonzero(k)
        return (sel.reshape(banks, self.per_bank) % self.group).astype(np.int64)


def zero_fraction(weight: np.ndarray) -> float:
    """Nominal sparsity: the fraction of weights that are exactly zero."""
    w = np.asarray(weight)
    return float(np.mean(w == 0)) if w.size else 0.0


def balanced_structure(matrix: np.ndarray, pattern_text: str) -> Sparsity | None:
    """Recover the balanced structure of a pruned (outputs, inputs) matrix from its zeros and
    the pattern it was pruned with. A block that lost all its weights in fine-tuning is still a
    block the kernel may keep: banks are topped up with zero blocks to an equal count. Returns
    None when the pattern has no sparse kernel (unstructured, filter) or does not fit."""
    from hwprune.prune.patterns import Pattern

    try:
        p = Pattern.parse(pattern_text)
    except Exception:
        return None
    rows, cols = matrix.shape
    if p.kind == "block":
        br, bc = p.block
        col_balanced = p.column_balanced
    elif p.kind in ("bbs", "nm"):
        br, bc, col_balanced = 1, 1, False
    else:
        return None
    if rows % br or cols % bc:
        return None
    nz = (np.asarray(matrix) != 0).reshape(rows // br, br, cols // bc, bc).any(axis=(1, 3))
    if p.kind == "block":
        group = nz.shape[0] if col_balanced else nz.shape[1]
    else:
        group = p.m
        if nz.shape[1] % group:
            return None
    k = nz.T.copy() if col_balanced else nz.copy()  # banks x candidates
    banks, cand = k.shape
    groups = cand // group
    per_group = int(k.reshape(banks, groups, group).sum(axis=2).max()) if k.size else 0
    if per_group == 0 or per_group == group:
        return None  # nothing to skip
    # Top up every group to per_group kept blocks (the lowest free positions).
    g3 = k.reshape(banks, groups, group)
    free = ~g3
    need = per_group - g3.sum(axis=2, keepdims=True)
    # A free position is taken when fewer than `need` free positions come before it (inclusive).
    g3 = g3 | (free & (np.cumsum(free, axis=2) <= need))
    kept = g3.reshape(banks, cand)
    kept = kept.T if col_balanced else kept
    return Sparsity(pattern_text, (br, bc), kept, group, per_group, col_balanced)

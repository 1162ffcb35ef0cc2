"""Sparsity patterns and their masks, on a weight matrix W of shape (rows, cols) with rows =
output neurons/filters and cols = inputs (torch's Linear/Conv layout, a conv flattened to
(out, in*kh*kw)).

One abstraction covers the families of the survey that hardware can exploit:

* `block:RxC` row-balanced — W cut into RxC blocks; every *bank* (a row of blocks) keeps
  exactly k blocks, chosen by block L2 norm; `block:RxC:col` — banks are columns of blocks;
* `bbs:B` bank-balanced sparsity — every row split into banks of B consecutive weights, each
  keeping the same number (1x1 blocks, banks = row segments);
* `nm:N:M` — every group of M consecutive weights along a row keeps N;
* `unstructured` — magnitude, no balance; `filter` — whole rows (output channels) by L2 norm.

Every mask keeps the same count in every bank, so each processing element that serves one
bank does the same work: that is what lets a kernel turn the sparsity into fewer cycles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hwprune.errors import ConfigError

PATTERN_HELP = "unstructured, block:RxC, block:RxC:col, bbs:B, nm:N:M or filter"


@dataclass(frozen=True)
class Pattern:
    kind: str  # unstructured | block | bbs | nm | filter
    block: tuple[int, int] = (1, 1)
    column_balanced: bool = False
    n: int = 0  # nm
    m: int = 0  # nm, bbs bank size

    def __str__(self) -> str:
        if self.kind == "block":
            return f"block:{self.block[0]}x{self.block[1]}" + (":col" if self.column_balanced else "")
        if self.kind == "bbs":
            return f"bbs:{self.m}"
        if self.kind == "nm":
            return f"nm:{self.n}:{self.m}"
        return self.kind

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        s = str(text).strip().lower()
        if s in ("unstructured", "filter"):
            return cls(s)
        m = re.fullmatch(r"block:(\d+)x(\d+)(:col|:row)?", s)
        if m:
            r, c = int(m.group(1)), int(m.group(2))
            if r < 1 or c < 1:
                raise ConfigError(f"pattern {text!r}: block sides must be positive")
            return cls("block", (r, c), column_balanced=m.group(3) == ":col")
        m = re.fullmatch(r"bbs:(\d+)", s)
        if m and int(m.group(1)) >= 2:
            return cls("bbs", m=int(m.group(1)))
        m = re.fullmatch(r"nm:(\d+):(\d+)", s)
        if m and 0 < int(m.group(1)) < int(m.group(2)):
            return cls("nm", n=int(m.group(1)), m=int(m.group(2)))
        raise ConfigError(f"pattern {text!r} is not one of: {PATTERN_HELP} (e.g. block:4x4, nm:2:4, bbs:8)")

    def fixed_sparsity(self) -> float | None:
        """N:M fixes the sparsity; the others take it as a parameter."""
        return 1 - self.n / self.m if self.kind == "nm" else None


def kept_count(total: int, sparsity: float) -> int:
    """How many of `total` units a bank keeps at `sparsity` (at least one)."""
    return max(1, min(total, int(round(total * (1.0 - sparsity)))))


def check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"sparsity {sparsity} must be in [0, 1) (0.75 = keep a quarter of the weights)")
    return s


def mask(w: np.ndarray, pattern: Pattern, sparsity: float, importance: np.ndarray | None = None) -> np.ndarray:
    """Boolean keep-mask of W (rows, cols) for the pattern at the given sparsity. `importance`
    (same shape, default |W|) ranks weights; blocks are ranked by the L2 norm of it."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError("mask() takes a 2-D matrix; flatten conv weights to (out, in*kh*kw)")
    score = np.abs(w) if importance is None else np.abs(np.asarray(importance, dtype=np.float64))
    rows, cols = w.shape
    s = check_sparsity(sparsity)
    fixed = pattern.fixed_sparsity()
    if pattern.kind == "unstructured":
        keep = kept_count(w.size, s)
        order = np.argsort(-score, axis=None, kind="stable")[:keep]
        out = np.zeros(w.size, dtype=bool)
        out[order] = True
        return out.reshape(w.shape)
    if pattern.kind == "filter":
        norms = np.sqrt((score**2).sum(axis=1))
        keep = np.argsort(-norms, kind="stable")[: kept_count(rows, s)]
        out = np.zeros(w.shape, dtype=bool)
        out[keep] = True
        return out
    if pattern.kind == "nm":
        if fixed is not None and abs(s - fixed) > 1e-9 and s != 0:
            raise ConfigError(f"pattern {pattern} always has sparsity {fixed:g}; got {s:g}")
        return _banked(score, pattern.m, pattern.n)
    if pattern.kind == "bbs":
        return _banked(score, pattern.m, kept_count(pattern.m, s))
    br, bc = pattern.block
    if rows % br or cols % bc:
        raise ConfigError(f"a {rows}x{cols} weight matrix is not divisible into {br}x{bc} blocks")
    blocks = np.sqrt((score**2).reshape(rows // br, br, cols // bc, bc).sum(axis=(1, 3)))  # (RB, CB)
    if pattern.column_balanced:
        kb = _keep_top(blocks.T, kept_count(blocks.shape[0], s)).T
    else:
        kb = _keep_top(blocks, kept_count(blocks.shape[1], s))
    return np.repeat(np.repeat(kb, br, axis=0), bc, axis=1)


def _keep_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of `scores`, True at its k largest entries."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out


def _banked(score: np.ndarray, bank: int, keep: int) -> np.ndarray:
    """Each row split into consecutive banks of `bank` weights, each keeping `keep`."""
    rows, cols = score.shape
    if cols % bank:
        raise ConfigError(f"a row of {cols} weights does not split into banks of {bank}")
    s = score.reshape(rows * cols // bank, bank)
    return _keep_top(s, keep).reshape(rows, cols)


def bank_counts(m: np.ndarray, pattern: Pattern) -> np.ndarray:
    """Kept units per bank (blocks for block patterns, weights otherwise): the balance invariant
    says all entries are equal."""
    rows, cols = m.shape
    if pattern.kind == "block":
        br, bc = pattern.block
        kb = m.reshape(rows // br, br, cols // bc, bc).any(axis=(1, 3))
        return kb.sum(axis=0 if pattern.column_balanced else 1)
    if pattern.kind in ("nm", "bbs"):
        return m.reshape(-1, pattern.m).sum(axis=1)
    if pattern.kind == "filter":
        return np.array([int(m.any(axis=1).sum())])
    return np.array([int(m.sum())])


def conv_matrix(w: np.ndarray) -> np.ndarray:
    """(out, in, *k) -> (out, in * prod(k))."""
    return np.asarray(w).reshape(w.shape[0], -1)


def sparsity_of(m: np.ndarray) -> float:
    return 1.0 - float(np.mean(m)) if m.size else 0.0


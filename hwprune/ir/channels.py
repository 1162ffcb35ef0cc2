"""Constant channels: positions along one axis of a tensor whose values do not depend on the input.

A Dense/Conv output channel whose weights are all zero holds its bias everywhere; what reads it
only per channel (an activation, a batch norm, a pool, a concat, a flatten) passes a constant on;
a Dense or Conv that reads it can fold the constant into its bias and drop those input channels.
`passes/dead_channels.py` walks these chains; every op says in its own module how it carries or
absorbs constants (`OpMixin` declares the hooks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConstantChannels:
    axis: int  # logical axis of the per-sample tensor (no batch axis)
    index: np.ndarray  # sorted positions along `axis` that hold a constant
    value: np.ndarray  # float value of each position (the same at every other coordinate)

    def __post_init__(self) -> None:
        idx = np.asarray(self.index, dtype=np.int64)
        val = np.asarray(self.value, dtype=np.float64)
        if idx.shape != val.shape or idx.ndim != 1:
            raise ValueError("ConstantChannels: index and value must be 1-D arrays of one length")
        order = np.argsort(idx)
        object.__setattr__(self, "index", idx[order])
        object.__setattr__(self, "value", val[order])

    def __len__(self) -> int:
        return int(self.index.size)

    def with_values(self, value: np.ndarray) -> "ConstantChannels":
        return ConstantChannels(self.axis, self.index, np.asarray(value, dtype=np.float64))

    def shifted(self, offset: int) -> "ConstantChannels":
        return ConstantChannels(self.axis, self.index + offset, self.value)

    def keep_mask(self, n: int) -> np.ndarray:
        keep = np.ones(n, dtype=bool)
        keep[self.index] = False
        return keep


def drop_axis(shape: tuple[int, ...], cc: ConstantChannels) -> tuple[int, ...]:
    """A shape with the constant positions of `cc` removed along its axis."""
    s = list(shape)
    s[cc.axis] -= len(cc)
    return tuple(s)


def through_reshape(src: tuple[int, ...], dst: tuple[int, ...], cc: ConstantChannels) -> ConstantChannels | None:
    """The constant positions after a row-major reshape `src -> dst`, when they again form whole
    slices along one axis of `dst` with one value per slice (a flatten of channels-first data,
    adding or removing unit axes); None otherwise."""
    if math.prod(src) != math.prod(dst):
        return None
    value = np.full(src[cc.axis], np.nan)
    value[cc.index] = cc.value
    shape = [1] * len(src)
    shape[cc.axis] = src[cc.axis]
    flat = np.broadcast_to(value.reshape(shape), src).reshape(-1)
    const = ~np.isnan(flat)
    for b in range(len(dst)):
        outer, inner = math.prod(dst[:b]), math.prod(dst[b + 1:])
        m = const.reshape(outer, dst[b], inner)
        sel = m[0, :, 0]
        if not (m == sel[None, :, None]).all():
            continue
        v = flat.reshape(outer, dst[b], inner)[:, sel, :]
        first = v[:1, :, :1]
        if sel.any() and not np.array_equal(v, np.broadcast_to(first, v.shape)):
            continue
        return ConstantChannels(b, np.flatnonzero(sel), first.reshape(-1))
    return None

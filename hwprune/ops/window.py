"""Sliding-window geometry shared by convolution and pooling (C++: hls/hwprune/window.h).

Physical tensors are channels-last; a 1-D layer is a 2-D one with height 1. `patches`
gathers every output pixel's window from a (batch, H, W, C) array, with a validity mask for
padding, so the float and fixed semantics of conv and pooling are a few numpy lines each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    in_h: int
    in_w: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    dh: int = 1
    dw: int = 1
    pt: int = 0
    pl: int = 0
    pb: int = 0
    pr: int = 0
    ceil_mode: bool = False

    @property
    def out_h(self) -> int:
        return _out(self.in_h, self.kh, self.sh, self.dh, self.pt, self.pb, self.ceil_mode)

    @property
    def out_w(self) -> int:
        return _out(self.in_w, self.kw, self.sw, self.dw, self.pl, self.pr, self.ceil_mode)

    @property
    def span(self) -> int:
        """Input rows a line buffer must hold."""
        return self.dh * (self.kh - 1) + 1

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Input row/col index of every (output pixel, kernel tap): shapes (OH,1,KH,1), (1,OW,1,KW)."""
        oh = np.arange(self.out_h)[:, None, None, None]
        ow = np.arange(self.out_w)[None, :, None, None]
        i = np.arange(self.kh)[None, None, :, None]
        j = np.arange(self.kw)[None, None, None, :]
        return oh * self.sh - self.pt + i * self.dh, ow * self.sw - self.pl + j * self.dw

    def empty_windows(self) -> int:
        """Output pixels whose window holds no input element (only padding taps)."""
        ih, iw = self.rows_cols()
        rows = ((ih >= 0) & (ih < self.in_h)).any(axis=2)  # (OH, 1, 1)
        cols = ((iw >= 0) & (iw < self.in_w)).any(axis=3)  # (1, OW, 1)
        return int((~(rows & cols)).sum())

    def patches(self, x: np.ndarray, fill: float | int = 0) -> tuple[np.ndarray, np.ndarray]:
        """x (B, H, W, C) -> (B, OH, OW, KH, KW, C) windows and the (OH, OW, KH, KW) mask of
        taps inside the image (outside ones hold `fill`)."""
        ih, iw = self.rows_cols()
        ih, iw = np.broadcast_arrays(ih, iw)
        valid = (ih >= 0) & (ih < self.in_h) & (iw >= 0) & (iw < self.in_w)
        p = x[:, np.clip(ih, 0, self.in_h - 1), np.clip(iw, 0, self.in_w - 1), :]
        p = np.where(valid[None, ..., None], p, np.asarray(fill, dtype=x.dtype))
        return p, valid


def stream_steps(win: Window, reuse_factor: int, delay: int) -> list["Step"]:
    """The io_stream window engine's loop trips (hls/hwprune/window.h), in its order: each
    input row is read a word per cycle, then every output row whose last needed input row has
    arrived is emitted, `reuse_factor` cycles per pixel (the rows that need only bottom padding
    after the last input row). Reads and emits alternate in the one process."""
    from hwprune.ops.base import Step

    in_h, out_h = win.in_h, win.out_h
    read = Step(win.in_w, 1, reads=(0,))
    emit = Step(win.out_w, reuse_factor, writes=(0,), latency=reuse_factor - 1 + delay)
    steps: list[Step] = []
    nxt = 0
    for r in range(in_h + 1):
        if r < in_h:
            steps.append(read)
        while nxt < out_h:
            last = min(nxt * win.sh - win.pt + win.dh * (win.kh - 1), in_h - 1)
            if r < in_h and last > r:
                break
            steps.append(emit)
            nxt += 1
    return steps


def _out(n: int, k: int, s: int, d: int, p0: int, p1: int, ceil_mode: bool) -> int:
    span = d * (k - 1) + 1
    if ceil_mode:
        out = int(math.ceil((n + p0 + p1 - span) / s)) + 1
        # The last window must start inside the image or the leading padding (PyTorch/ONNX rule).
        if (out - 1) * s >= n + p0:
            out -= 1
        return out
    return (n + p0 + p1 - span) // s + 1


def spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    """(H, W) of a logical [C, L] or [C, H, W] tensor (1-D: H = 1)."""
    return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])


def channels_last(rank: int) -> tuple[int, ...]:
    return tuple(range(1, rank)) + (0,)


def as_4d(x: np.ndarray) -> np.ndarray:
    """Physical (B, L, C) or (B, H, W, C) -> (B, H, W, C)."""
    return x[:, None] if x.ndim == 3 else x


def window_attrs(ctx: Any, node: Any, in_spatial: tuple[int, ...], kernel: tuple[int, ...]) -> Window:
    """ONNX kernel/stride/dilation/pads/auto_pad/ceil_mode for a 1-D or 2-D op -> Window."""
    from hwprune.frontend.onnx_import import attrs

    a = attrs(node)
    nd = len(kernel)
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    pads = list(a.get("pads", [0] * (2 * nd)))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if len(strides) != nd or len(dil) != nd or len(pads) != 2 * nd:
        raise ctx.error(node, f"strides {strides}, dilations {dil} or pads {pads} do not match a {nd}-D kernel")
    if min(strides) < 1 or min(dil) < 1 or min(pads) < 0:
        raise ctx.error(node, f"strides {strides} and dilations {dil} must be >= 1 and pads {pads} >= 0")
    if auto in ("SAME_UPPER", "SAME_LOWER") and max(dil) > 1:
        # The ONNX reference and onnxruntime disagree on dilated SAME padding (onnxruntime
        # refuses it for Conv and sizes pools differently): there is no single meaning to match.
        raise ctx.error(node, f"auto_pad={auto} with dilations {dil} is ambiguous; export with explicit pads")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for d in range(nd):
            out = -(-in_spatial[d] // strides[d])
            total = max((out - 1) * strides[d] + dil[d] * (kernel[d] - 1) + 1 - in_spatial[d], 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[d], pads[d + nd] = lo, total - lo
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    elif auto != "NOTSET":
        raise ctx.error(node, f"auto_pad={auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    ceil_mode = bool(a.get("ceil_mode", 0))
    if nd == 1:
        return Window(1, in_spatial[0], 1, kernel[0], 1, strides[0], 1, dil[0], 0, pads[0], 0, pads[1], ceil_mode)
    return Window(in_spatial[0], in_spatial[1], kernel[0], kernel[1], strides[0], strides[1], dil[0], dil[1],
                  pads[0], pads[1], pads[2], pads[3], ceil_mode)

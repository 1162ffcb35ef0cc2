"""Bit-exact numpy model of Xilinx `ap_fixed` / `ap_ufixed`.

Values are int64 arrays of raw mantissas: value = raw * 2**-frac. `quantize` models
constructing a type from a C++ double; `requantize` models assigning an exact fixed-point
value (any number of fractional bits) to a type, with its rounding and overflow modes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

import numpy as np


class FixedTypeError(ValueError):
    """A fixed-point type is malformed or does not parse."""


class Rounding(enum.Enum):
    TRN = "AP_TRN"  # toward -inf
    TRN_ZERO = "AP_TRN_ZERO"  # toward 0
    RND = "AP_RND"  # nearest, ties toward +inf
    RND_ZERO = "AP_RND_ZERO"  # nearest, ties toward 0
    RND_MIN_INF = "AP_RND_MIN_INF"  # nearest, ties toward -inf
    RND_INF = "AP_RND_INF"  # nearest, ties away from 0
    RND_CONV = "AP_RND_CONV"  # nearest, ties to even


class Overflow(enum.Enum):
    WRAP = "AP_WRAP"
    SAT = "AP_SAT"
    SAT_ZERO = "AP_SAT_ZERO"
    SAT_SYM = "AP_SAT_SYM"


_MAX_WIDTH = 64


@dataclass(frozen=True)
class FixedType:
    width: int
    integer: int
    signed: bool = True
    rounding: Rounding = Rounding.TRN
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self) -> None:
        if not isinstance(self.width, int) or not 1 <= self.width <= _MAX_WIDTH:
            raise FixedTypeError(f"fixed-point width {self.width} is out of range 1..{_MAX_WIDTH}")
        if self.signed and self.width < 1:
            raise FixedTypeError("a signed type needs at least one bit")

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return self.min_raw * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_raw * self.lsb

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if self.rounding == Rounding.TRN and self.overflow == Overflow.WRAP:
            return f"{base}<{self.width},{self.integer}>"
        if self.overflow == Overflow.WRAP:
            return f"{base}<{self.width},{self.integer},{self.rounding.value}>"
        return f"{base}<{self.width},{self.integer},{self.rounding.value},{self.overflow.value}>"

    def __str__(self) -> str:
        return self.cpp()

    def with_modes(self, rounding: Rounding | None = None, overflow: Overflow | None = None) -> "FixedType":
        return replace(self, rounding=rounding or self.rounding, overflow=overflow or self.overflow)

    @classmethod
    def parse(cls, text: str) -> "FixedType":
        s = re.sub(r"\s+", "", str(text))
        m = re.fullmatch(r"(ap_)?(u?)(fixed|int)<(-?\d+)(?:,(-?\d+))?(?:,(AP_\w+))?(?:,(AP_\w+))?(?:,(\d+))?>", s)
        example = "e.g. ap_fixed<16,6> or ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
        if not m:
            raise FixedTypeError(f"cannot parse fixed-point type {text!r}; {example}")
        _, u, kind, w, i, q, o, _n = m.groups()
        width = int(w)
        if kind == "int":
            if i is not None or q is not None:
                raise FixedTypeError(f"cannot parse fixed-point type {text!r}: ap_int takes one width; {example}")
            integer = width
        else:
            if i is None:
                raise FixedTypeError(f"fixed-point type {text!r} needs width and integer bits; {example}")
            integer = int(i)
        try:
            rounding = Rounding(q) if q else Rounding.TRN
            overflow = Overflow(o) if o else Overflow.WRAP
        except ValueError:
            raise FixedTypeError(f"unknown rounding/overflow mode in {text!r}; rounding: "
                                 f"{', '.join(r.value for r in Rounding)}; overflow: {', '.join(v.value for v in Overflow)}") from None
        return cls(width, integer, not u, rounding, overflow)


def _round_shift(raw: np.ndarray, shift: int, mode: Rounding) -> np.ndarray:
    """raw * 2**-shift rounded to an integer (shift > 0), exactly."""
    raw = raw.astype(np.int64)
    if shift >= 63:
        # Everything is a fraction of one lsb: only the sign and the exact-half case matter.
        q = np.where(raw < 0, -1, 0).astype(np.int64)
        rem_neg = raw < 0
        if mode == Rounding.TRN:
            return q
        if mode == Rounding.TRN_ZERO:
            return np.zeros_like(raw)
        return np.zeros_like(raw)  # |raw| < 2**62 < half of 2**63: rounds to zero
    q = raw >> shift  # floor
    rem = raw - (q << shift)  # in [0, 2**shift)
    half = np.int64(1) << (shift - 1)
    nonzero = rem != 0
    if mode == Rounding.TRN:
        return q
    if mode == Rounding.TRN_ZERO:
        return q + ((raw < 0) & nonzero)
    above = rem > half
    tie = rem == half
    if mode == Rounding.RND:
        return q + (above | tie)
    if mode == Rounding.RND_MIN_INF:
        return q + above
    if mode == Rounding.RND_ZERO:
        return q + (above | (tie & (raw < 0)))
    if mode == Rounding.RND_INF:
        return q + (above | (tie & (raw >= 0)))
    if mode == Rounding.RND_CONV:
        return q + (above | (tie & ((q & 1) == 1)))
    raise AssertionError(mode)


def _overflow(q: np.ndarray, t: FixedType) -> np.ndarray:
    lo, hi = t.min_raw, t.max_raw
    if t.overflow == Overflow.WRAP:
        mod = np.uint64(1) << np.uint64(t.width) if t.width < 64 else None
        if mod is None:
            return q.astype(np.int64)
        u = q.astype(np.uint64) & (mod - np.uint64(1))
        v = u.astype(np.int64)
        if t.signed:
            v = np.where(v > hi, v - (np.int64(1) << np.int64(t.width)) if t.width < 63 else v, v)
        return v.astype(np.int64)
    over = q > hi
    under = q < lo
    if t.overflow == Overflow.SAT:
        return np.clip(q, lo, hi).astype(np.int64)
    if t.overflow == Overflow.SAT_ZERO:
        return np.where(over | under, 0, q).astype(np.int64)
    if t.overflow == Overflow.SAT_SYM:
        if t.signed:
            return np.clip(q, -hi, hi).astype(np.int64)
        return np.clip(q, lo, hi).astype(np.int64)
    raise AssertionError(t.overflow)


def _rounded(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    shift = frac - t.frac
    raw = np.asarray(raw, dtype=np.int64)
    if shift > 0:
        return _round_shift(raw, shift, t.rounding)
    if shift < 0:
        if -shift >= 63:
            return np.where(raw == 0, 0, np.where(raw > 0, np.int64(2**62), np.int64(-(2**62))))
        # Saturate before shifting so huge left shifts cannot wrap int64 silently.
        limit = np.int64(1) << np.int64(max(62 + shift, 0))
        clipped = np.clip(raw, -limit, limit)
        return clipped << (-shift)
    return raw


def requantize(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Assign exact values raw*2**-frac to type t (rounding, then overflow handling)."""
    return _overflow(_rounded(raw, frac, t), t)


def overflow_count(raw: np.ndarray, frac: int, t: FixedType) -> int:
    q = _rounded(raw, frac, t)
    return int(np.count_nonzero((q > t.max_raw) | (q < t.min_raw)))


def quantize(x: np.ndarray | float, t: FixedType) -> np.ndarray:
    """Model of `t v = (double)x;` returning raw integers."""
    v = np.asarray(x, dtype=np.float64) * (2.0 ** t.frac)
    v = np.where(np.isnan(v), 0.0, v)
    big = 2.0 ** 62
    v = np.clip(v, -big, big)
    fl = np.floor(v)
    r = v - fl  # exact
    q = fl.astype(np.int64)
    mode = t.rounding
    if mode == Rounding.TRN:
        pass
    elif mode == Rounding.TRN_ZERO:
        q = q + ((v < 0) & (r != 0))
    else:
        above, tie = r > 0.5, r == 0.5
        if mode == Rounding.RND:
            q = q + (above | tie)
        elif mode == Rounding.RND_MIN_INF:
            q = q + above
        elif mode == Rounding.RND_ZERO:
            q = q + (above | (tie & (v < 0)))
        elif mode == Rounding.RND_INF:
            q = q + (above | (tie & (v >= 0)))
        elif mode == Rounding.RND_CONV:
            q = q + (above | (tie & ((q & 1) == 1)))
    return _overflow(q.astype(np.int64), t)


def to_float(raw: np.ndarray, t_or_frac: FixedType | int) -> np.ndarray:
    frac = t_or_frac.frac if isinstance(t_or_frac, FixedType) else int(t_or_frac)
    return np.asarray(raw, dtype=np.float64) * (2.0 ** -frac)

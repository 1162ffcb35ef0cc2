"""Bit-exact numpy model of Xilinx `ap_fixed` / `ap_ufixed` arithmetic.

Values are int64 numpy arrays of raw mantissas: value = raw * 2**-frac.

* `quantize(x, t)` models `t v = (double)x;` (the headers' double constructor, which does
  apply t's rounding and overflow modes);
* `requantize(raw, frac, t)` models assigning an exact fixed-point value with `frac`
  fractional bits (i.e. a wider `ap_fixed`) to t.

Both reduce to one exact step: scale an integer by a power of two, round it by t's
rounding mode, then apply t's overflow mode. It is done in int64/uint64 arithmetic with
every shift clamped below 64 (numpy, like C, leaves shifts by >= 64 undefined), and the
rounded value is carried as (bits mod 2**64, sign, "beyond 64 bits") so that results far
outside the int64 range still saturate and wrap exactly as the C++ does.

ap_fixed behaviours this reproduces, checked against the headers with g++ in
tests/test_fixed.py:

* AP_RND rounds ties toward +inf (-2.5 -> -2), AP_RND_INF away from zero, AP_RND_ZERO
  toward zero, AP_RND_MIN_INF toward -inf, AP_RND_CONV to even; AP_TRN floors, AP_TRN_ZERO
  truncates toward zero.
* Rounding happens before the overflow check, so a carry out of the rounding can overflow
  (ap_fixed<4,2,AP_RND,AP_SAT> from 1.9 is 1.75; with AP_WRAP it is -2.0).
* AP_SAT_SYM turns the signed minimum into -max, also for a value that is exactly the
  minimum; for unsigned types it equals AP_SAT. A 1-bit signed type has no -max (max is 0):
  the headers saturate to -1 there, i.e. AP_SAT_SYM == AP_SAT.
* AP_WRAP keeps the low `width` bits of the rounded value (two's complement for signed).
* The double constructor decodes the IEEE bits itself and always sets the hidden mantissa
  bit: a subnormal d becomes (1.m) * 2**-1023 instead of (0.m) * 2**-1022, +-inf becomes
  +-2**1024 and NaN +-(1.m) * 2**1024 (the headers warn on stderr). Those are modelled too,
  so NaN saturates by its sign bit under AP_SAT and usually wraps to 0 under AP_WRAP.
* Assigning a signed ap_fixed whose lsb lies more than its width below t's lsb trips an
  assertion in the headers (a bit read past the MSB) unless t rounds with AP_TRN; the model
  returns the exactly rounded value there (what the C++ computes with assertions off).

Raws of 64-bit unsigned types do not fit int64: they are returned as their 64-bit pattern
viewed as int64 (`to_float` given the type reads them back as unsigned).

Wide values. Types go up to 1024 bits (ap_fixed's default AP_INT_MAX_W). Raws of types of at
most 64 bits are int64 arrays; raws of wider types, and exact intermediate values that may not
fit int64 (the accumulators of layers with wide operands), are numpy object arrays of Python
ints. Every function here accepts both; an object array (or a type wider than 64 bits) takes an
exact path on Python integers, everything else the int64 path above, whose speed is unchanged.
`exact_ints` and `exact_matmul` give the ops the right representation for a bit width.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

__all__ = [
    "FixedType",
    "FixedTypeError",
    "Overflow",
    "Rounding",
    "exact_ints",
    "exact_matmul",
    "is_wide",
    "overflow_count",
    "overflow_mask",
    "quantize",
    "quantize_overflow_count",
    "requantize",
    "round_exact",
    "wrap_or_saturate",
    "to_float",
]


class FixedTypeError(ValueError):
    """A fixed-point type is malformed or does not parse."""


class Rounding(enum.Enum):
    """ap_q_mode: how bits below the target lsb are dropped."""

    TRN = "AP_TRN"  # toward -inf (floor)
    TRN_ZERO = "AP_TRN_ZERO"  # toward 0
    RND = "AP_RND"  # nearest, ties toward +inf
    RND_ZERO = "AP_RND_ZERO"  # nearest, ties toward 0
    RND_MIN_INF = "AP_RND_MIN_INF"  # nearest, ties toward -inf
    RND_INF = "AP_RND_INF"  # nearest, ties away from 0
    RND_CONV = "AP_RND_CONV"  # nearest, ties to even


class Overflow(enum.Enum):
    """ap_o_mode: what happens to values beyond the type's range (with N = 0 saturation bits)."""

    WRAP = "AP_WRAP"
    SAT = "AP_SAT"
    SAT_ZERO = "AP_SAT_ZERO"
    SAT_SYM = "AP_SAT_SYM"


# ap_fixed's widest type with the headers' default AP_INT_MAX_W (the C++ refuses wider ones).
MAX_WIDTH = 1024
_MAX_WIDTH = MAX_WIDTH
# Exact integer values of at most this many bits (sign included) take the int64 fast path.
FAST_BITS = 62
_EXAMPLE = "e.g. 'ap_fixed<16,6,AP_RND_CONV,AP_SAT>', 'ap_ufixed<8,0,AP_RND,AP_SAT>' or 'ap_int<8>'"
_TYPE_RE = re.compile(r"(?:ap_)?(u?)(fixed|int)<([^<>]*)>")
_INT_RE = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class FixedType:
    """An `ap_fixed<width, integer, rounding, overflow>` (`ap_ufixed` when unsigned).

    `integer` may be negative or exceed `width`, as in ap_fixed: the binary point then lies
    outside the stored bits (ap_fixed<8,-2> holds multiples of 2**-10 below 2**-3).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: Rounding = Rounding.TRN
    overflow: Overflow = Overflow.WRAP

    def __post_init__(self) -> None:
        try:
            width = operator.index(self.width)
            integer = operator.index(self.integer)
        except TypeError:
            raise FixedTypeError(
                f"fixed-point width and integer bits must be integers, got {self.width!r}, {self.integer!r}"
            ) from None
        if not 1 <= width <= _MAX_WIDTH:
            raise FixedTypeError(f"fixed-point width {width} is out of range 1..{_MAX_WIDTH}")
        try:
            rounding = Rounding(self.rounding)
            overflow = Overflow(self.overflow)
        except ValueError as e:
            raise FixedTypeError(
                f"{e}; rounding modes: {_modes(Rounding)}; overflow modes: {_modes(Overflow)}"
            ) from None
        # Normalise numpy ints and mode spellings so equal types compare and hash equal.
        object.__setattr__(self, "width", int(width))
        object.__setattr__(self, "integer", int(integer))
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "rounding", rounding)
        object.__setattr__(self, "overflow", overflow)

    @property
    def frac(self) -> int:
        """Fractional bits: value = raw * 2**-frac (negative when integer > width)."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return math.ldexp(1.0, -self.frac)

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min_value(self) -> float:
        return math.ldexp(float(self.min_raw), -self.frac)

    @property
    def max_value(self) -> float:
        return math.ldexp(float(self.max_raw), -self.frac)

    def cpp(self) -> str:
        """The C++ spelling; modes are left out only when both are the defaults."""
        base = "ap_fixed" if self.signed else "ap_ufixed"
        args = [str(self.width), str(self.integer)]
        if self.overflow != Overflow.WRAP:
            args += [self.rounding.value, self.overflow.value]  # O needs Q spelled before it
        elif self.rounding != Rounding.TRN:
            args.append(self.rounding.value)
        return f"{base}<{','.join(args)}>"

    def __str__(self) -> str:
        return self.cpp()

    def with_modes(self, rounding: Rounding | None = None, overflow: Overflow | None = None) -> FixedType:
        """The same bits with other rounding and/or overflow modes."""
        return replace(
            self,
            rounding=self.rounding if rounding is None else rounding,
            overflow=self.overflow if overflow is None else overflow,
        )

    @classmethod
    def parse(cls, text: str) -> FixedType:
        """Parse ap_fixed/ap_ufixed/ap_int/ap_uint spellings (the `ap_` prefix is optional)."""

        def bad(why: str) -> FixedTypeError:
            return FixedTypeError(f"cannot parse fixed-point type {text!r}: {why}; {_EXAMPLE}")

        if not isinstance(text, str):
            raise bad("not a string")
        m = _TYPE_RE.fullmatch(re.sub(r"\s+", "", text))
        if not m:
            raise bad("expected ap_fixed<W,I[,Q[,O]]>, ap_ufixed<...>, ap_int<W> or ap_uint<W>")
        unsigned, kind, body = m.groups()
        args = body.split(",")
        if kind == "int":
            if len(args) != 1 or not _INT_RE.fullmatch(args[0]):
                raise bad("ap_int/ap_uint take exactly one width")
            width = integer = int(args[0])
            rounding, overflow = Rounding.TRN, Overflow.WRAP
        else:
            if not 2 <= len(args) <= 5:
                raise bad("ap_fixed takes 2 to 5 parameters")
            if not (_INT_RE.fullmatch(args[0]) and _INT_RE.fullmatch(args[1])):
                raise bad("width and integer bits must be integers")
            width, integer = int(args[0]), int(args[1])
            try:
                rounding = Rounding(args[2]) if len(args) > 2 else Rounding.TRN
                overflow = Overflow(args[3]) if len(args) > 3 else Overflow.WRAP
            except ValueError:
                modes = f"rounding must be one of {_modes(Rounding)} and overflow one of {_modes(Overflow)}"
                raise bad(modes) from None
            if len(args) == 5 and not (_INT_RE.fullmatch(args[4]) and int(args[4]) == 0):
                raise bad("only N=0 saturation bits are modelled")
        if not 1 <= width <= _MAX_WIDTH:
            raise bad(f"width {width} is out of range 1..{_MAX_WIDTH}")
        return cls(width, integer, not unsigned, rounding, overflow)


def _modes(enum_cls: type[enum.Enum]) -> str:
    return ", ".join(str(m.value) for m in enum_cls)


# --------------------------------------------------------------------------- exact core

_U1 = np.uint64(1)
_I64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class _Rounded:
    """An exact integer q that may not fit int64: q mod 2**64, q < 0, and |q| beyond 64 bits.

    `huge` means q >= 2**64 or q < -2**63: out of range for every type of width <= 64.
    Otherwise q is `bits` read as uint64 (q >= 0) or as int64 (q < 0).
    """

    bits: np.ndarray  # uint64
    neg: np.ndarray  # bool
    huge: np.ndarray  # bool


def _round_right(raw: np.ndarray, shift: np.ndarray, mode: Rounding) -> np.ndarray:
    """raw * 2**-shift rounded by `mode` (shift >= 1, any int64 raw); |result| <= 2**62."""
    # Past 63 bits only the sign of raw matters: |raw| / 2**shift <= 1/2, with equality only for
    # raw = -2**63, shift = 64. Map those to equivalent small cases before shifting.
    far = shift > 63
    raw = np.where(far, np.sign(raw) * np.where((raw == _I64_MIN) & (shift == 64), 2, 1), raw)
    shift = np.where(far, 2, shift)
    q = raw >> shift  # floor
    if mode == Rounding.TRN:
        return q
    ushift = shift.astype(np.uint64)
    rem = raw.view(np.uint64) & ((_U1 << ushift) - _U1)  # raw - q * 2**shift, in [0, 2**shift)
    half = _U1 << (ushift - _U1)
    neg = raw < 0
    if mode == Rounding.TRN_ZERO:
        inc = neg & (rem != 0)
    else:
        above, tie = rem > half, rem == half
        if mode == Rounding.RND:
            inc = above | tie
        elif mode == Rounding.RND_MIN_INF:
            inc = above
        elif mode == Rounding.RND_ZERO:
            inc = above | (tie & neg)
        elif mode == Rounding.RND_INF:
            inc = above | (tie & ~neg)
        elif mode == Rounding.RND_CONV:
            inc = above | (tie & ((q & 1) == 1))
        else:  # pragma: no cover - the enum is closed
            raise AssertionError(mode)
    return q + inc


def _scale_left(raw: np.ndarray, left: np.ndarray) -> _Rounded:
    """raw * 2**left exactly (left >= 0)."""
    far = left >= 64
    sh = np.minimum(left, 63)
    bits = np.where(far, np.uint64(0), raw.view(np.uint64) << sh.astype(np.uint64))
    # raw > 0: q >= 2**64 <=> raw >= 2**(64-left); raw < 0: q < -2**63 <=> raw < -2**(63-left).
    huge_pos = (raw > 0) & (far | ((raw >> np.minimum(64 - sh, 63)) != 0))
    huge_neg = (raw < 0) & (far | ((raw >> (63 - sh)) < -1))
    return _Rounded(bits, raw < 0, huge_pos | huge_neg)


def _scale_round(raw: np.ndarray, shift: np.ndarray, mode: Rounding) -> _Rounded:
    """raw * 2**-shift rounded by `mode`, exactly; raw and shift are 1-d int64 arrays."""
    right = shift > 0
    if right.all():
        q = _round_right(raw, shift, mode)
        return _Rounded(q.view(np.uint64), q < 0, np.zeros(q.shape, bool))
    if not right.any():
        return _scale_left(raw, -shift)
    q = _round_right(raw, np.where(right, shift, 1), mode)
    left = _scale_left(raw, np.where(right, 0, -shift))
    return _Rounded(
        np.where(right, q.view(np.uint64), left.bits),
        np.where(right, q < 0, left.neg),
        ~right & left.huge,
    )


def _rounded(raw: np.ndarray, shift: np.ndarray, mode: Rounding) -> tuple[_Rounded, tuple[int, ...]]:
    """Broadcast raw against shift, flatten (numpy turns 0-d results into scalars), round."""
    shape = np.broadcast_shapes(raw.shape, shift.shape)
    flat_raw = np.ascontiguousarray(np.broadcast_to(raw, shape), dtype=np.int64).reshape(-1)
    flat_shift = np.ascontiguousarray(np.broadcast_to(shift, shape), dtype=np.int64).reshape(-1)
    return _scale_round(flat_raw, flat_shift, mode), shape


def _to_int64(v: int) -> np.int64:
    """A raw of up to 64 bits as the int64 holding the same bit pattern."""
    return np.int64(v - (1 << 64) if v >= 1 << 63 else v)


def _out_of_range(r: _Rounded, t: FixedType) -> np.ndarray:
    """Where the rounded value needs t's overflow mode (including -2**(W-1) under AP_SAT_SYM)."""
    if t.signed:
        low = t.min_raw + 1 if t.overflow == Overflow.SAT_SYM and t.width > 1 else t.min_raw
        inside = np.where(r.neg, r.bits.view(np.int64) >= low, r.bits <= np.uint64(t.max_raw))
    else:
        inside = ~r.neg & (r.bits <= np.uint64(t.max_raw))
    return r.huge | ~inside


def _overflow(r: _Rounded, t: FixedType) -> np.ndarray:
    """Apply t's overflow mode to a rounded value; the raw as int64."""
    if t.overflow == Overflow.WRAP:
        if t.signed:  # sign-extend the low W bits
            up = np.uint64(64 - t.width)
            return (r.bits << up).view(np.int64) >> up.astype(np.int64)
        return (r.bits & np.uint64(t.max_raw)).view(np.int64)
    bad = _out_of_range(r, t)
    kept = r.bits.view(np.int64)
    if t.overflow == Overflow.SAT_ZERO:
        return np.where(bad, np.int64(0), kept)
    lo = -t.max_raw if t.overflow == Overflow.SAT_SYM and t.signed and t.width > 1 else t.min_raw
    return np.where(bad, np.where(r.neg, _to_int64(lo), _to_int64(t.max_raw)), kept)


def _as_raw(raw: np.ndarray | int) -> np.ndarray:
    a = np.asarray(raw)
    if a.dtype == object:
        return _py_ints(a)
    if a.dtype.kind not in "iub":
        raise TypeError(f"raw fixed-point values must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def is_wide(raw: np.ndarray) -> bool:
    """Whether a raw array is on the exact (object, Python int) path."""
    return isinstance(raw, np.ndarray) and raw.dtype == object


def requantize(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Assign exact values raw * 2**-frac to type t: round by t.rounding, then t.overflow.

    Models C++ `t v = src;` for a source ap_fixed with `frac` fractional bits holding raw.
    `frac` may be any int (or an int array broadcast against raw); raw any int64, or any
    integers as an object array. The result is int64 for types of up to 64 bits, else object.
    """
    a = _as_raw(raw)
    if a.dtype == object or t.width > 64:
        return _wide_overflow(_wide_round(a, frac, t), t)
    shift = np.asarray(frac, dtype=np.int64) - np.int64(t.frac)
    r, shape = _rounded(a, shift, t.rounding)
    return _overflow(r, t).reshape(shape)


def overflow_count(raw: np.ndarray, frac: int, t: FixedType) -> int:
    """How many elements `requantize(raw, frac, t)` saturates or wraps.

    Counted after rounding (a round-up carry can overflow). Under AP_SAT_SYM an element that
    rounds to exactly -2**(W-1) counts too, since it is clipped to -max.
    """
    return int(np.count_nonzero(overflow_mask(raw, frac, t)))


def overflow_mask(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Where `requantize(raw, frac, t)` saturates or wraps (see `overflow_count`); bool array."""
    a = _as_raw(raw)
    if a.dtype == object or t.width > 64:
        return _wide_out_of_range(_wide_round(a, frac, t), t)
    shift = np.asarray(frac, dtype=np.int64) - np.int64(t.frac)
    r, shape = _rounded(a, shift, t.rounding)
    return _out_of_range(r, t).reshape(shape)


# --------------------------------------------------------------------------- exact wide path

def _py_ints(a: np.ndarray) -> np.ndarray:
    """An object array of Python ints (numpy integer scalars inside would overflow)."""
    a = np.asarray(a)
    if a.dtype != object:
        return a.astype(object)  # int64 -> Python int
    if a.size and not all(type(v) is int for v in a.flat):
        return np.frompyfunc(operator.index, 1, 1)(a).astype(object).reshape(a.shape)
    return a


def _round_int(v: int, s: int, mode: Rounding) -> int:
    """v * 2**-s rounded by `mode`, on Python ints (any s)."""
    if s <= 0:
        return v << -s
    fl = v >> s
    if mode == Rounding.TRN:
        return fl
    rem, half = v & ((1 << s) - 1), 1 << (s - 1)
    if mode == Rounding.TRN_ZERO:
        up = v < 0 and rem != 0
    elif mode == Rounding.RND:
        up = rem >= half
    elif mode == Rounding.RND_MIN_INF:
        up = rem > half
    elif mode == Rounding.RND_ZERO:
        up = rem > half or (rem == half and v < 0)
    elif mode == Rounding.RND_INF:
        up = rem > half or (rem == half and v >= 0)
    else:  # RND_CONV
        up = rem > half or (rem == half and fl & 1 == 1)
    return fl + 1 if up else fl


def _wide_round(a: np.ndarray, frac: int | np.ndarray, t: FixedType) -> np.ndarray:
    """Exactly rounded raws (object array of Python ints) of a * 2**-frac in t's lsb."""
    v = _py_ints(a)
    f = np.asarray(frac)
    if f.ndim == 0:
        s = int(f) - t.frac
        if s <= 0:
            return v << -s
        fl = v >> s
        if t.rounding == Rounding.TRN:
            return fl
        rem = v & ((1 << s) - 1)
        half = 1 << (s - 1)
        mode = t.rounding
        neg = v < 0
        if mode == Rounding.TRN_ZERO:
            up = neg & (rem != 0)
        else:
            above, tie = rem > half, rem == half
            if mode == Rounding.RND:
                up = above | tie
            elif mode == Rounding.RND_MIN_INF:
                up = above
            elif mode == Rounding.RND_ZERO:
                up = above | (tie & neg)
            elif mode == Rounding.RND_INF:
                up = above | (tie & ~neg)
            else:  # RND_CONV
                up = above | (tie & ((fl & 1) == 1))
        return np.where(up, fl + 1, fl).astype(object)
    shifts = _py_ints(f) - t.frac
    v, shifts = np.broadcast_arrays(v, shifts)
    out = np.frompyfunc(lambda x, sh: _round_int(x, sh, t.rounding), 2, 1)(v, shifts)
    return np.asarray(out, dtype=object).reshape(v.shape)


def _wide_limits(t: FixedType) -> tuple[int, int]:
    lo = -t.max_raw if t.overflow == Overflow.SAT_SYM and t.signed and t.width > 1 else t.min_raw
    return lo, t.max_raw


def _wide_out_of_range(q: np.ndarray, t: FixedType) -> np.ndarray:
    lo, hi = _wide_limits(t)
    return np.asarray((q < lo) | (q > hi), dtype=bool)


def _wide_overflow(q: np.ndarray, t: FixedType) -> np.ndarray:
    """Apply t's overflow mode to exactly rounded raws; int64 for types of <= 64 bits."""
    if t.overflow == Overflow.WRAP:
        mask = (1 << t.width) - 1
        if t.signed:
            half = 1 << (t.width - 1)
            q = ((q + half) & mask) - half
        else:
            q = q & mask
    else:
        lo, hi = _wide_limits(t)
        bad = _wide_out_of_range(q, t)
        if bad.any():
            if t.overflow == Overflow.SAT_ZERO:
                q = np.where(bad, 0, q)
            else:
                lo_o, hi_o = np.array(lo, dtype=object), np.array(hi, dtype=object)
                q = np.where(bad, np.where(q < 0, lo_o, hi_o), q)
    q = np.asarray(q, dtype=object)
    if t.width > 64:
        return q
    if not t.signed and t.width == 64:
        q = np.where(q > np.iinfo(np.int64).max, q - (1 << 64), q)
    return q.astype(np.int64)


def round_exact(raw: np.ndarray, frac: int | np.ndarray, t: FixedType) -> np.ndarray:
    """raw * 2**-frac rounded by t's rounding mode into t's lsb, before any overflow mode:
    exact integers (an object array of Python ints)."""
    return _wide_round(_as_raw(raw), frac, t)


def wrap_or_saturate(rounded: np.ndarray, t: FixedType) -> np.ndarray:
    """t's overflow mode applied to raws already in t's lsb (`round_exact`'s result)."""
    return _wide_overflow(_py_ints(np.asarray(rounded)), t)


def exact_ints(a: np.ndarray, bits: int) -> np.ndarray:
    """Integers `a` in the representation exact for values of `bits` bits (sign included):
    int64 up to FAST_BITS, else an object array of Python ints."""
    a = np.asarray(a)
    if bits <= FAST_BITS and a.dtype != object:
        return a if a.dtype == np.int64 else a.astype(np.int64)  # no copy on the fast path
    return _py_ints(a)


def _bits_of(a: np.ndarray) -> int:
    """Bits (sign included) that hold every element of an integer array."""
    if a.size == 0:
        return 1
    if a.dtype == object:
        return max(int(v).bit_length() for v in a.flat) + 1
    hi, lo = int(a.max()), int(a.min())
    return max(hi.bit_length(), (-lo - 1).bit_length() if lo < 0 else 0) + 1


def exact_matmul(a: np.ndarray, b: np.ndarray, out_bits: int) -> np.ndarray:
    """a @ b (matmul broadcasting) exactly, for integer arrays whose every partial sum needs at
    most `out_bits` bits. Within int64 that is numpy's integer matmul (wrap-around in between
    cannot change a result that fits). Beyond, the operands are split into limbs small enough
    that each limb product sums exactly in int64, and the limb results are combined on Python
    ints: a few int64 matmuls instead of an object-array one."""
    if out_bits <= 63 and not is_wide(a) and not is_wide(b):
        return np.asarray(a, dtype=np.int64) @ np.asarray(b, dtype=np.int64)
    k = max(int(np.shape(a)[-1]), 1)
    limb = max((61 - k.bit_length()) // 2, 1)

    def limbs(x: np.ndarray) -> list[np.ndarray]:
        n = max(-(-_bits_of(x) // limb), 1)
        x = _py_ints(x) if n > 1 or is_wide(x) else x.astype(np.int64)
        if n == 1:
            return [np.asarray(x).astype(np.int64)]
        mask = (1 << limb) - 1
        out = [np.asarray((x >> (i * limb)) & mask).astype(np.int64) for i in range(n - 1)]
        return out + [np.asarray(x >> ((n - 1) * limb)).astype(np.int64)]

    la, lb = limbs(np.asarray(a)), limbs(np.asarray(b))
    acc: np.ndarray | None = None
    for i, ai in enumerate(la):
        for j, bj in enumerate(lb):
            part = (ai @ bj).astype(object)
            if i + j:
                part = part << ((i + j) * limb)
            acc = part if acc is None else acc + part
    assert acc is not None
    return acc


_DOUBLE_MAN_BITS = 52
_DOUBLE_BIAS = 1023


def _double_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mantissa, frac, is_zero) with x = mantissa * 2**-frac as the ap_fixed ctor decodes x.

    The header always sets the hidden bit and never special-cases exponent 0 or 2047, so
    subnormals, infinities and NaNs get the values described in the module docstring.
    """
    bits = x.view(np.uint64)
    exp_field = ((bits >> np.uint64(_DOUBLE_MAN_BITS)) & np.uint64(0x7FF)).astype(np.int64)
    man = ((bits & np.uint64((1 << _DOUBLE_MAN_BITS) - 1)) | np.uint64(1 << _DOUBLE_MAN_BITS)).astype(np.int64)
    man = np.where((bits >> np.uint64(63)) != 0, -man, man)
    frac = np.int64(_DOUBLE_BIAS + _DOUBLE_MAN_BITS) - exp_field
    is_zero = (bits << _U1) == 0
    return man, frac, is_zero


def quantize(x: np.ndarray | float, t: FixedType) -> np.ndarray:
    """Model of `t v = (double)x;` (rounding and overflow modes applied); raw int64 array
    (object for types wider than 64 bits).

    The result has x's shape (0-d for a scalar).
    """
    xd = np.asarray(x, dtype=np.float64)
    man, frac, is_zero = _double_parts(np.ascontiguousarray(xd).reshape(-1))
    if t.width > 64:
        q = _wide_overflow(_wide_round(man, frac, t), t)
        return np.where(is_zero, 0, q).astype(object).reshape(xd.shape)
    r, _ = _rounded(man, frac - np.int64(t.frac), t.rounding)
    return np.where(is_zero, np.int64(0), _overflow(r, t)).reshape(xd.shape)


def quantize_overflow_count(x: np.ndarray | float, t: FixedType) -> int:
    """How many elements `quantize(x, t)` saturates or wraps (counted after rounding, as
    `overflow_count`), exactly for any double and any type."""
    xd = np.ascontiguousarray(np.asarray(x, dtype=np.float64)).reshape(-1)
    man, frac, is_zero = _double_parts(xd)
    return int(np.count_nonzero(overflow_mask(man, frac, t) & ~is_zero))


def _int_ldexp(v: int, e: int) -> float:
    """v * 2**e as the nearest float (inf beyond the range), for a Python int v of any size."""
    n = v.bit_length()
    if n > 1000:  # float(v) would overflow: keep the top bits (well beyond double precision)
        v, e = v >> (n - 64), e + n - 64
    try:
        return math.ldexp(float(v), e)
    except OverflowError:
        return math.copysign(math.inf, v)


def to_float(raw: np.ndarray, t_or_frac: Union[FixedType, int]) -> np.ndarray:
    """raw * 2**-frac as float64 (exact whenever the raw has <= 53 significant bits).

    Given a 64-bit unsigned FixedType, raws are read as the uint64 bit patterns they hold.
    Object arrays (wide raws) are converted with one rounding to the nearest double.
    """
    a = np.asarray(raw)
    if isinstance(t_or_frac, FixedType):
        frac = t_or_frac.frac
        if not t_or_frac.signed and t_or_frac.width == 64 and a.dtype.kind == "i":
            a = a.astype(np.int64).view(np.uint64)
    else:
        frac = operator.index(t_or_frac)
    if a.dtype == object:
        conv = np.frompyfunc(lambda v: _int_ldexp(operator.index(v), -frac), 1, 1)
        return np.asarray(conv(a), dtype=np.float64).reshape(a.shape)
    return np.ldexp(a.astype(np.float64), -frac)

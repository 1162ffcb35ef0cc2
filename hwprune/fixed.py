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
    "overflow_count",
    "quantize",
    "requantize",
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


_MAX_WIDTH = 64
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
    if a.dtype.kind not in "iub":
        raise TypeError(f"raw fixed-point values must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def requantize(raw: np.ndarray, frac: int, t: FixedType) -> np.ndarray:
    """Assign exact values raw * 2**-frac to type t: round by t.rounding, then t.overflow.

    Models C++ `t v = src;` for a source ap_fixed with `frac` fractional bits holding raw.
    `frac` may be any int (or an int array broadcast against raw); raw any int64.
    """
    shift = np.asarray(frac, dtype=np.int64) - np.int64(t.frac)
    r, shape = _rounded(_as_raw(raw), shift, t.rounding)
    return _overflow(r, t).reshape(shape)


def overflow_count(raw: np.ndarray, frac: int, t: FixedType) -> int:
    """How many elements `requantize(raw, frac, t)` saturates or wraps.

    Counted after rounding (a round-up carry can overflow). Under AP_SAT_SYM an element that
    rounds to exactly -2**(W-1) counts too, since it is clipped to -max.
    """
    shift = np.asarray(frac, dtype=np.int64) - np.int64(t.frac)
    r, _ = _rounded(_as_raw(raw), shift, t.rounding)
    return int(np.count_nonzero(_out_of_range(r, t)))


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
    """Model of `t v = (double)x;` (rounding and overflow modes applied); raw int64 array.

    The result has x's shape (0-d for a scalar).
    """
    xd = np.asarray(x, dtype=np.float64)
    man, frac, is_zero = _double_parts(np.ascontiguousarray(xd).reshape(-1))
    r, _ = _rounded(man, frac - np.int64(t.frac), t.rounding)
    return np.where(is_zero, np.int64(0), _overflow(r, t)).reshape(xd.shape)


def to_float(raw: np.ndarray, t_or_frac: Union[FixedType, int]) -> np.ndarray:
    """raw * 2**-frac as float64 (exact whenever the raw has <= 53 significant bits).

    Given a 64-bit unsigned FixedType, raws are read as the uint64 bit patterns they hold.
    """
    a = np.asarray(raw)
    if isinstance(t_or_frac, FixedType):
        frac = t_or_frac.frac
        if not t_or_frac.signed and t_or_frac.width == 64 and a.dtype.kind == "i":
            a = a.astype(np.int64).view(np.uint64)
    else:
        frac = operator.index(t_or_frac)
    return np.ldexp(a.astype(np.float64), -frac)

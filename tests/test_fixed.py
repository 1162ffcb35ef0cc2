"""hwprune.fixed is bit-exact with the Xilinx ap_fixed headers.

One C++ program, compiled once per module, holds an instantiation per (type, source
fraction) under test and answers lines

    "W I signed Q O frac 0xRAW"      -> raw of `T v = ap_fixed<64, 64-frac>(raw bits)`
    "W I signed Q O double 0xBITS"   -> raw of `T v = (double with those IEEE bits)`

with the 64-bit pattern of the result. The numpy model must agree on every line: small
types are covered exhaustively around their range, wide ones at the boundaries, ties and
random 64-bit inputs. Without g++ or the headers (found through the installed hls4ml) those
tests skip; the pure-Python reference, hand-computed and parsing tests always run.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwprune.fixed import (
    FixedType,
    FixedTypeError,
    Overflow,
    Rounding,
    overflow_count,
    quantize,
    requantize,
    to_float,
)

R, O = Rounding, Overflow
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _ap_types_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    return d if (d / "ap_fixed.h").is_file() else None


CXX = shutil.which("g++")
AP_TYPES = _ap_types_dir()
NO_CPP_REASON = "needs g++ and the ap_types headers of an installed hls4ml (hls4ml/templates/vivado/ap_types)"
needs_cpp = pytest.mark.skipif(CXX is None or AP_TYPES is None, reason=NO_CPP_REASON)

# ----------------------------------------------------------------------------- types under test


def _fx(w: int, i: int, s: bool = True, q: Rounding = R.TRN, o: Overflow = O.WRAP) -> FixedType:
    return FixedType(w, i, s, q, o)


# Every rounding with AP_SAT on one small signed shape; the other overflow modes with the
# roundings whose carries and ties matter; unsigned; then odd shapes: 1-bit, negative and
# over-wide integer bits, integer-only, and widths up to 64 (where raws leave int64).
TYPES: list[FixedType] = (
    [_fx(5, 2, True, q, O.SAT) for q in R]
    + [_fx(5, 2, True, q, O.WRAP) for q in (R.TRN, R.RND, R.RND_CONV, R.TRN_ZERO)]
    + [_fx(5, 2, True, q, O.SAT_ZERO) for q in (R.TRN, R.RND_INF, R.RND_ZERO)]
    + [_fx(5, 2, True, q, O.SAT_SYM) for q in (R.TRN, R.RND, R.RND_MIN_INF, R.RND_CONV, R.TRN_ZERO)]
    + [
        _fx(5, 2, False, R.RND, O.SAT),
        _fx(5, 2, False, R.TRN_ZERO, O.SAT),
        _fx(5, 2, False, R.RND_INF, O.WRAP),
        _fx(5, 2, False, R.RND_ZERO, O.SAT_ZERO),
        _fx(5, 2, False, R.RND_CONV, O.SAT_SYM),
        _fx(5, 2, False, R.TRN, O.WRAP),
        _fx(5, 2, False, R.RND_MIN_INF, O.SAT),
        _fx(1, 1, True, R.RND, O.SAT_SYM),
        _fx(1, 1),
        _fx(1, 0, False, R.RND_CONV, O.SAT),
        _fx(2, -1, True, R.RND_INF, O.SAT_SYM),
        _fx(8, -2, True, R.RND, O.SAT),
        _fx(8, -2, False, R.RND_CONV, O.WRAP),
        _fx(8, 12, True, R.RND_ZERO, O.SAT_SYM),
        _fx(8, 12, False, R.TRN_ZERO, O.SAT_ZERO),
        _fx(6, 0, True, R.RND_MIN_INF, O.WRAP),
        _fx(16, 6),
        _fx(18, 8, True, R.RND_CONV, O.SAT),
        _fx(24, 24, False, R.RND, O.SAT),
        _fx(32, 1, True, R.RND_INF, O.SAT_ZERO),
        _fx(40, 10, False, R.RND_MIN_INF, O.SAT_SYM),
        _fx(40, 40, True, R.TRN_ZERO, O.WRAP),
        _fx(63, 63, True, R.RND_ZERO, O.SAT_SYM),
        _fx(64, 32, True, R.RND, O.SAT),
        _fx(64, -5, True, R.RND_INF, O.WRAP),
        _fx(64, 64, False),
        _fx(64, 10, False, R.RND_CONV, O.SAT),
    ]
)


def _source_shifts(k: int, t: FixedType) -> list[int]:
    """Source fraction minus t.frac: equal, tie bit only, tie + sticky bits, a left shift, a
    shift by the whole 64-bit source, and (rotating over types) the headers' edge cases where
    t's top bit lands at, just below or just above the source's top bit, or below its lsb.

    Not beyond 64: for shifts > 64 the headers read a bit past the source's MSB and abort
    (assertion in ap_private::get_bit) unless the rounding is AP_TRN.
    """
    extra = (63 - t.width, -(t.width + 2), 64 - t.width, 62 - t.width)[k % 4]
    return sorted({0, 1, 3, -3, 64, extra})


def _key(t: FixedType, src: str) -> str:
    return f"{t.width} {t.integer} {int(t.signed)} {t.rounding.value} {t.overflow.value} {src}"


# ----------------------------------------------------------------------------- inputs


def _clip64(values: Iterable[int]) -> np.ndarray:
    return np.array(sorted({v for v in values if I64_MIN <= v <= I64_MAX}), dtype=np.int64)


def _random_int64(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random int64 of every magnitude (uniform bit length)."""
    return rng.integers(I64_MIN, I64_MAX, n, dtype=np.int64, endpoint=True) >> rng.integers(0, 64, n)


def _raw_inputs(t: FixedType, d: int, rng: np.random.Generator) -> np.ndarray:
    """Source raws (frac = t.frac + d): exhaustive around t's range when small, else its edges."""
    lo, hi = t.min_raw, t.max_raw
    vals: set[int] = {0, 1, -1, 2, -2, I64_MIN, I64_MAX, I64_MIN + 1, 2**62, -(2**62)}
    if d >= 0:
        a, b = (lo - 3) << d, (hi + 4) << d
        if b - a <= 4096:
            vals.update(range(a, b))
        else:
            half = 1 << (d - 1) if d else 0
            for edge in (lo, hi, 0, 1, -1, hi + 1, lo - 1, (hi + 1) // 2):
                for j in range(-2, 3):
                    base = (edge + j) << d
                    vals.update(base + o for o in (0, 1, -1, half, half + 1, half - 1, -half))
    else:
        a, b = (lo >> -d) - 3, (hi >> -d) + 4
        if b - a <= 4096:
            vals.update(range(a, b))
        else:
            for edge in (lo >> -d, hi >> -d, 0):
                vals.update(range(edge - 3, edge + 4))
    vals.update(int(v) for v in _random_int64(rng, 300))
    return _clip64(vals)


def _double_inputs(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    """Doubles: ties and off-grid values near zero and both bounds, random in and beyond
    range, every exponent region, and IEEE specials (the ctor decodes those by hand)."""
    k = np.arange(-70, 71, dtype=np.float64)
    grid = [np.ldexp(k + 0.5, -t.frac), np.ldexp(k, -t.frac - 1), np.ldexp(k, -t.frac - 3)]
    j = np.arange(-16, 17) / 8.0
    edges = [np.ldexp(float(e) + j, -t.frac) for e in (t.min_raw, t.max_raw, t.max_raw + 1)]
    bound = max(abs(t.min_value), t.max_value, t.lsb)
    spread = [rng.uniform(-4 * bound, 4 * bound, 200)]
    mags = [np.ldexp(rng.uniform(-1, 1, 200), rng.integers(-t.frac - 70, -t.frac + t.width + 70, 200))]
    anything = [rng.integers(0, 2**64, 200, dtype=np.uint64).view(np.float64)]
    pows = [np.ldexp(1.0, np.arange(-1074, 1024, 13)), -np.ldexp(1.0, np.arange(-1074, 1024, 17))]
    specials = [
        np.array([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]),
        np.array([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0x000FFFFFFFFFFFFF],
                 dtype=np.uint64).view(np.float64),
    ]
    return np.concatenate(grid + edges + spread + mags + anything + pows + specials)


def _cases() -> list[tuple[FixedType, str, np.ndarray]]:
    """(type, source spelling, inputs): int64 raws for a source frac, float64 for 'double'."""
    rng = np.random.default_rng(20240611)
    out: list[tuple[FixedType, str, np.ndarray]] = []
    for k, t in enumerate(TYPES):
        for d in _source_shifts(k, t):
            out.append((t, str(t.frac + d), _raw_inputs(t, d, rng)))
        out.append((t, "double", _double_inputs(t, rng)))
    return out


CASES = _cases()

# ----------------------------------------------------------------------------- the C++ oracle

_PRELUDE = """\
#include <ap_fixed.h>
#include <cstring>
#include <map>
#include <string>
typedef unsigned long long ull;
typedef ull (*conv_t)(ull);
template <class T> ull bits(const T &v) { return (ull)v.V.to_uint64(); }
template <class T, int F> ull from_raw(ull raw) { ap_fixed<64, 64 - F> s; s.setBits(raw); T v = s; return bits(v); }
template <class T> ull from_double(ull b) { double d; std::memcpy(&d, &b, 8); T v = d; return bits(v); }
"""

_MAIN = """\
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
typedef unsigned long long ull;
typedef ull (*conv_t)(ull);
%(decls)s
int main() {
  std::map<std::string, conv_t> table;
%(calls)s
  std::string line;
  while (std::getline(std::cin, line)) {
    size_t cut = line.rfind(' ');
    if (cut == std::string::npos) { std::printf("?\\n"); continue; }
    auto it = table.find(line.substr(0, cut));
    if (it == table.end()) { std::printf("?\\n"); continue; }
    std::printf("%%llu\\n", it->second(std::stoull(line.substr(cut + 1), nullptr, 16)));
  }
  return 0;
}
"""


def _write_sources(d: Path, parts: int) -> list[Path]:
    """main.cpp plus the registry split over `parts` translation units, compiled in parallel."""
    chunks: list[list[str]] = [[] for _ in range(parts)]
    for t, src, _ in CASES:  # one type's instantiations together: they share its class's code
        fn = f"from_double<{t.cpp()}>" if src == "double" else f"from_raw<{t.cpp()}, {src}>"
        chunks[TYPES.index(t) % parts].append(f'  m["{_key(t, src)}"] = &{fn};')
    files = [d / "main.cpp"]
    decls = "\n".join(f"void reg{p}(std::map<std::string, conv_t> &m);" for p in range(parts))
    calls = "\n".join(f"  reg{p}(table);" for p in range(parts))
    files[0].write_text(_MAIN % {"decls": decls, "calls": calls})
    for p, lines in enumerate(chunks):
        f = d / f"reg{p}.cpp"
        f.write_text(_PRELUDE + f"void reg{p}(std::map<std::string, conv_t> &m) {{\n" + "\n".join(lines) + "\n}\n")
        files.append(f)
    return files


def _from_bits(bits: int, t: FixedType) -> int:
    """A C++ result's low W bits in the module's convention (int64; 64-bit unsigned as its pattern)."""
    v = bits & ((1 << t.width) - 1)
    if t.signed and v >> (t.width - 1):
        v -= 1 << t.width
    return v - (1 << 64) if v > I64_MAX else v


@pytest.fixture(scope="module")
def cpp_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    """Compile the oracle (-O1, as HLS C simulation does) and feed it every case, once."""
    if CXX is None or AP_TYPES is None:
        pytest.skip(NO_CPP_REASON)
    d = tmp_path_factory.mktemp("ap_fixed_oracle")

    def compile_one(src: Path) -> Path:
        obj = src.with_suffix(".o")
        cmd = [CXX, "-std=c++14", "-O1", "-w", f"-I{AP_TYPES}", "-c", str(src), "-o", str(obj)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return obj

    with ThreadPoolExecutor(max_workers=3) as pool:
        objs = list(pool.map(compile_one, _write_sources(d, parts=2)))
    exe = d / "oracle"
    subprocess.run([CXX, *map(str, objs), "-o", str(exe)], check=True, capture_output=True, text=True)

    lines = []
    for t, src, inputs in CASES:
        k = _key(t, src)
        lines.extend(f"{k} {v:x}" for v in inputs.view(np.uint64).tolist())
    run = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    got = run.stdout.split()
    assert len(got) == len(lines) and "?" not in got, "the oracle did not answer every line"
    results: dict[str, list[int]] = {}
    pos = 0
    for t, src, inputs in CASES:
        results[_key(t, src)] = [_from_bits(int(b), t) for b in got[pos : pos + len(inputs)]]
        pos += len(inputs)
    return results


def _model(t: FixedType, src: str, inputs: np.ndarray) -> np.ndarray:
    return quantize(inputs, t) if src == "double" else requantize(inputs, int(src), t)


@needs_cpp
@pytest.mark.parametrize("t", TYPES, ids=str)
def test_model_matches_ap_fixed_headers(t: FixedType, cpp_results: dict[str, list[int]]) -> None:
    """Every type under test, from wider fixed point (several source fractions) and from double."""
    bad = []
    for tc, src, inputs in CASES:
        if tc != t:
            continue
        got = _model(t, src, inputs).tolist()
        for x, g, e in zip(inputs.tolist(), got, cpp_results[_key(t, src)]):
            if g != e:
                shown = float(x).hex() if src == "double" else f"{x} * 2**-{src}"
                bad.append(f"{shown}: model {g}, C++ {e}")
    assert not bad, f"{t}: {len(bad)} mismatches, e.g.\n" + "\n".join(bad[:8])


# ----------------------------------------------------------------------------- pure-Python reference


def _round_exact(raw: int, frac: int, t: FixedType) -> int:
    """raw * 2**(t.frac - frac) rounded by t's mode, with unbounded Python ints."""
    s = frac - t.frac
    if s <= 0:
        return raw << -s
    fl, rem, half = raw >> s, raw & ((1 << s) - 1), 1 << (s - 1)
    neg = raw < 0
    up = {
        R.TRN: False,
        R.TRN_ZERO: neg and rem != 0,
        R.RND: rem >= half,
        R.RND_MIN_INF: rem > half,
        R.RND_ZERO: rem > half or (rem == half and neg),
        R.RND_INF: rem > half or (rem == half and not neg),
        R.RND_CONV: rem > half or (rem == half and fl % 2 == 1),
    }[t.rounding]
    return fl + int(up)


def _to_int64_convention(q: int, t: FixedType) -> int:
    """64-bit unsigned raws are held as their bit pattern; anything else as is."""
    return q - (1 << 64) if not t.signed and t.width == 64 and I64_MAX < q < 1 << 64 else q


def _sat_sym_clips_min(t: FixedType) -> bool:
    return t.overflow == O.SAT_SYM and t.signed and t.width > 1


def _reference(raw: int, frac: int, t: FixedType) -> int:
    """The intended semantics, written plainly: round exactly, then apply the overflow mode."""
    q = _round_exact(raw, frac, t)
    lo, hi = t.min_raw, t.max_raw
    if _sat_sym_clips_min(t):
        lo = -hi
    if t.overflow == O.WRAP:
        q %= 1 << t.width
        if t.signed and q > hi:
            q -= 1 << t.width
    elif not lo <= q <= hi:
        q = 0 if t.overflow == O.SAT_ZERO else (lo if q < 0 else hi)
    return _to_int64_convention(q, t)


@needs_cpp
def test_overflow_count_is_what_the_headers_change(cpp_results: dict[str, list[int]]) -> None:
    """An element counts as overflowing exactly when the C++ result is not the exactly rounded value."""
    for t, src, inputs in CASES:
        if src == "double":
            continue
        exact = [_round_exact(r, int(src), t) for r in inputs.tolist()]
        unsigned64 = not t.signed and t.width == 64  # results held as bit patterns: read them back
        cpp = [c + (1 << 64) if unsigned64 and c < 0 else c for c in cpp_results[_key(t, src)]]
        changed = sum(e != c for e, c in zip(exact, cpp))
        assert overflow_count(inputs, int(src), t) == changed, (t, src)


fixed_types = st.builds(
    FixedType,
    width=st.integers(1, 64),
    integer=st.integers(-80, 140),
    signed=st.booleans(),
    rounding=st.sampled_from(list(R)),
    overflow=st.sampled_from(list(O)),
)
int64s = st.one_of(
    st.integers(I64_MIN, I64_MAX),
    st.integers(-300, 300),
    st.integers(0, 63).flatmap(lambda b: st.integers(-(2**b), 2**b)),
)


@settings(max_examples=400, deadline=None)
@given(t=fixed_types, raws=st.lists(int64s, min_size=1, max_size=8), frac=st.integers(-150, 220))
def test_requantize_equals_unbounded_reference(t: FixedType, raws: list[int], frac: int) -> None:
    """The int64 machinery (clamped shifts, results beyond 64 bits) changes nothing."""
    got = requantize(np.array(raws, dtype=np.int64), frac, t).tolist()
    assert got == [_reference(r, frac, t) for r in raws]
    exact = [_round_exact(r, frac, t) for r in raws]
    assert overflow_count(np.array(raws, dtype=np.int64), frac, t) == sum(
        not (t.min_raw <= q <= t.max_raw) or (q == t.min_raw and _sat_sym_clips_min(t)) for q in exact
    )


@settings(max_examples=300, deadline=None)
@given(t=fixed_types, x=st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False))
def test_quantize_of_a_normal_double_is_requantize_of_its_exact_value(t: FixedType, x: float) -> None:
    m, e = math.frexp(x)
    raw, frac = int(m * 2**53), 53 - e
    assert int(quantize(x, t)) == int(requantize(np.array([raw]), frac, t)[0])


# ----------------------------------------------------------------------------- hand-computed

T16 = FixedType(16, 6)  # frac 10: 0.5 + 2**-11 is a tie between raws 512 and 513


@pytest.mark.parametrize("q,pos,neg", [
    (R.TRN, 512, -513),
    (R.TRN_ZERO, 512, -512),
    (R.RND, 513, -512),  # ties toward +inf, also for negatives
    (R.RND_ZERO, 512, -512),
    (R.RND_MIN_INF, 512, -513),
    (R.RND_INF, 513, -513),
    (R.RND_CONV, 512, -512),  # 512 is even
])
def test_rounding_of_ties(q: Rounding, pos: int, neg: int) -> None:
    t = T16.with_modes(rounding=q)
    x = 0.5 + 2**-11
    assert quantize(np.array([x, -x]), t).tolist() == [pos, neg]
    assert requantize(np.array([1025, -1025]), 11, t).tolist() == [pos, neg]
    # the next tie up, 513.5, has an odd floor: ties-to-even now rounds up
    up = q in (R.RND, R.RND_INF, R.RND_CONV)
    assert int(quantize(0.5 + 3 * 2**-11, t)) == 513 + up


@pytest.mark.parametrize("t,x,raw", [
    (FixedType(4, 2, True, R.RND, O.SAT), 1.9, 7),  # rounds up to 2.0, saturates at 1.75
    (FixedType(4, 2, True, R.RND, O.WRAP), 1.9, -8),  # the rounding carry wraps to -2.0
    (FixedType(4, 2, True, R.TRN, O.SAT_SYM), -2.0, -7),  # the minimum itself becomes -max
    (FixedType(4, 2, True, R.TRN, O.SAT_SYM), -5.0, -7),
    (FixedType(4, 2, True, R.TRN, O.SAT), -5.0, -8),
    (FixedType(4, 2, True, R.TRN, O.SAT_ZERO), 5.0, 0),
    (FixedType(4, 2, True, R.TRN, O.WRAP), 2.5, -6),  # 2.5 wraps to -1.5
    (FixedType(4, 2, False, R.TRN, O.SAT), -1.0, 0),
    (FixedType(4, 2, False, R.TRN, O.WRAP), -0.25, 15),  # 3.75
    (FixedType(4, 2, False, R.RND, O.SAT_SYM), 9.0, 15),  # unsigned SAT_SYM is SAT
    (FixedType(1, 1, True, R.RND, O.SAT_SYM), -3.0, -1),  # 1 bit: no -max (0), stays -1
    (FixedType(8, -2), 0.1, 102),  # frac 10: 102.4 -> 102
    (FixedType(8, -2), 0.2, -52),  # 204.8 -> 204 wraps
    (FixedType(8, 12, True, R.RND), 24.0, 2),  # frac -4: 1.5 lsb -> 2
    (FixedType(8, 12, True, R.RND_CONV), 40.0, 2),  # 2.5 lsb -> 2 (even)
    (FixedType(8, 12, True, R.RND, O.SAT), 1e6, 127),
    (FixedType(8, 4, True, R.TRN, O.SAT), float("inf"), 127),
    (FixedType(8, 4, True, R.TRN, O.SAT), float("-inf"), -128),
    (FixedType(8, 4), float("inf"), 0),  # 2**1024 wraps to 0
    (FixedType(8, 4, True, R.RND, O.SAT), -0.0, 0),
])
def test_hand_computed(t: FixedType, x: float, raw: int) -> None:
    assert int(quantize(x, t)) == raw
    assert to_float(np.array(raw), t) == raw * t.lsb


def test_requantize_edges() -> None:
    t = FixedType(8, 4, True, R.RND, O.SAT)
    big = np.array([2**62 - 1, -(2**62), 1, -1, 0], dtype=np.int64)
    assert requantize(big, -100, t).tolist() == [127, -128, 127, -128, 0]  # a 104-bit left shift saturates
    assert requantize(big, 300, t).tolist() == [0, 0, 0, 0, 0]  # everything rounds to 0
    assert requantize(big, 300, t.with_modes(rounding=R.TRN)).tolist() == [0, -1, 0, -1, 0]
    assert requantize(big, -100, t.with_modes(overflow=O.WRAP)).tolist() == [0, 0, 0, 0, 0]
    assert overflow_count(big, -100, t) == 4
    assert overflow_count(np.array([7, 8, -8, -9]), 2, FixedType(4, 2, True, R.TRN, O.SAT)) == 2
    # -2.0 is in range, but AP_SAT_SYM clips it
    assert overflow_count(np.array([-8]), 2, FixedType(4, 2, True, R.TRN, O.SAT_SYM)) == 1
    # 64-bit unsigned raws are bit patterns
    u64 = FixedType(64, 64, False, R.TRN, O.SAT)
    assert requantize(np.array([-5, 5, 3]), -62, u64).tolist() == [0, -1, 3 * 2**62 - 2**64]
    assert to_float(quantize(2.0**63 + 2**12, u64), u64) == 2.0**63 + 2**12


def test_shapes_and_dtypes() -> None:
    t = FixedType(8, 4, True, R.RND, O.SAT)
    s = quantize(1.25, t)
    assert s.shape == () and s.dtype == np.int64 and int(s) == 20
    m = quantize(np.ones((2, 3)), t)
    assert m.shape == (2, 3) and m.dtype == np.int64
    r = requantize(np.arange(6, dtype=np.int32).reshape(2, 3), np.array([4, 5, 6]), t)
    assert r.dtype == np.int64 and r.tolist() == [[0, 1, 1], [3, 2, 1]]
    assert quantize(np.array([]), t).shape == (0,)
    assert requantize(np.int64(48), 5, t).shape == ()
    with pytest.raises(TypeError):
        requantize(np.array([0.5]), 3, t)


# ----------------------------------------------------------------------------- the type


def test_type_properties() -> None:
    t = FixedType(8, -2)
    assert (t.frac, t.lsb, t.min_raw, t.max_raw) == (10, 2**-10, -128, 127)
    assert (t.min_value, t.max_value) == (-0.125, 127 / 1024)
    u = FixedType(8, 12, False)
    assert (u.frac, u.lsb, u.min_raw, u.max_raw, u.max_value) == (-4, 16.0, 0, 255, 4080.0)
    assert FixedType(64, 64, False).max_raw == 2**64 - 1
    assert FixedType(np.int64(8), np.int32(3)) == FixedType(8, 3)
    assert FixedType(8, 3, rounding="AP_RND") == FixedType(8, 3, rounding=R.RND)
    assert T16.with_modes(overflow=O.SAT) == FixedType(16, 6, True, R.TRN, O.SAT)
    assert T16.with_modes() == T16
    assert hash(FixedType(8, 3)) == hash(FixedType(8, 3))


@pytest.mark.parametrize("args", [(0, 0), (1025, 3), (-1, 0), (8.5, 3), (8, "3"), (8, 3, True, "AP_FOO")])
def test_bad_types_are_refused(args: tuple) -> None:
    with pytest.raises(FixedTypeError):
        FixedType(*args)
    assert issubclass(FixedTypeError, ValueError)


@pytest.mark.parametrize("t,text", [
    (FixedType(16, 6), "ap_fixed<16,6>"),
    (FixedType(8, 0, False, R.RND, O.SAT), "ap_ufixed<8,0,AP_RND,AP_SAT>"),
    (FixedType(8, 3, True, R.TRN, O.SAT), "ap_fixed<8,3,AP_TRN,AP_SAT>"),  # O needs Q spelled
    (FixedType(8, 3, True, R.RND_CONV), "ap_fixed<8,3,AP_RND_CONV>"),
    (FixedType(8, -2, False), "ap_ufixed<8,-2>"),
])
def test_cpp_spelling(t: FixedType, text: str) -> None:
    assert t.cpp() == text == str(t)
    assert FixedType.parse(text) == t


@pytest.mark.parametrize("text,expected", [
    ("ap_fixed<16,6>", FixedType(16, 6)),
    ("fixed<16,6>", FixedType(16, 6)),
    ("ap_ufixed<8,3>", FixedType(8, 3, False)),
    ("ufixed<8,3>", FixedType(8, 3, False)),
    ("ap_fixed<16,6,AP_RND,AP_SAT>", FixedType(16, 6, True, R.RND, O.SAT)),
    ("ap_fixed<16, 6, AP_RND_CONV, AP_SAT>", FixedType(16, 6, True, R.RND_CONV, O.SAT)),
    ("  ap_fixed < 18 ,8 ,AP_TRN_ZERO,AP_SAT_SYM >  ", FixedType(18, 8, True, R.TRN_ZERO, O.SAT_SYM)),
    ("ap_fixed<16,6,AP_RND,AP_SAT,0>", FixedType(16, 6, True, R.RND, O.SAT)),
    ("ap_fixed<8,-2>", FixedType(8, -2)),
    ("ap_int<8>", FixedType(8, 8)),
    ("int<8>", FixedType(8, 8)),
    ("ap_uint<8>", FixedType(8, 8, False)),
    ("uint<1>", FixedType(1, 1, False)),
])
def test_parse_round_trips(text: str, expected: FixedType) -> None:
    t = FixedType.parse(text)
    assert t == expected
    assert FixedType.parse(t.cpp()) == t


@pytest.mark.parametrize("text", [
    "", "float", "ap_fixed", "ap_fixed<16>", "ap_fixed<0,0>", "ap_fixed<1025,6>", "ap_fixed<a,6>",
    "ap_fixed<16,6,AP_FOO>", "ap_fixed<16,6,AP_RND,AP_WRAP_SM>", "ap_fixed<16,6,AP_SAT,AP_RND>",
    "ap_fixed<16,6,AP_RND,AP_SAT,2>", "ap_int<8,3>", "ap_int<0>", "ap_fixed<16,6>x", "ap_fixed<16,6,>",
    "ap_fixed<<16,6>>", "sfixed<16,6>",
])
def test_bad_strings_give_a_one_line_message(text: str) -> None:
    with pytest.raises(FixedTypeError) as e:
        FixedType.parse(text)
    msg = str(e.value)
    assert repr(text) in msg and "ap_fixed<16,6,AP_RND_CONV,AP_SAT>" in msg and "\n" not in msg

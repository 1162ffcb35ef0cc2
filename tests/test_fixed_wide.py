"""hwprune.fixed is bit-exact with the Xilinx ap_fixed headers beyond 64 bits.

The exact path (object arrays of Python ints) models assignments from wide sources (the
accumulators of layers with wide operands, up to 1024 bits) to any type, and into wide types.
Like tests/test_fixed.py, one C++ oracle answers lines

    "W I signed Q O frac HEX"      -> bits of `T v = ap_fixed<SW, SW-frac>(HEX)` (SW-bit two's complement)
    "W I signed Q O double HEX"    -> bits of `T v = (double with those IEEE bits)`

with the W-bit pattern of the result in hex. Without g++ or the headers the C++ tests skip; the
pure-Python reference tests always run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwprune.fixed import (
    FixedType,
    Overflow,
    Rounding,
    exact_ints,
    exact_matmul,
    overflow_count,
    quantize,
    requantize,
    to_float,
)
from test_fixed import AP_TYPES, CXX, NO_CPP_REASON, _reference, _round_exact, _sat_sym_clips_min, needs_cpp

R, O = Rounding, Overflow


def _fx(w: int, i: int, s: bool = True, q: Rounding = R.TRN, o: Overflow = O.WRAP) -> FixedType:
    return FixedType(w, i, s, q, o)


# Wide targets (every overflow mode, ties and carries), and the narrow tensor types wide
# accumulators are assigned to.
TYPES: list[FixedType] = [
    _fx(65, 1),
    _fx(65, 65, False),
    _fx(80, 20, True, R.RND_CONV, O.SAT),
    _fx(100, -10, True, R.RND, O.SAT_SYM),
    _fx(128, 64),
    _fx(128, 64, True, R.RND_INF, O.SAT_ZERO),
    _fx(130, 129, False, R.RND_ZERO, O.SAT),
    _fx(200, 100, True, R.RND_ZERO, O.WRAP),
    _fx(256, 0, False, R.RND_MIN_INF, O.SAT),
    _fx(1024, 512, True, R.RND_CONV, O.SAT),
    _fx(16, 6, True, R.RND_CONV, O.SAT),
    _fx(16, 6),
    _fx(18, 8, True, R.TRN_ZERO, O.SAT_SYM),
    _fx(32, 16, True, R.RND, O.WRAP),
    _fx(33, 3, False, R.RND_INF, O.SAT_ZERO),
    _fx(64, 32, True, R.RND, O.SAT),
    _fx(64, 64, False, R.TRN, O.SAT),
    _fx(64, 10, False, R.RND_CONV, O.WRAP),
    _fx(8, 12, True, R.RND, O.SAT),
]
SOURCE_WIDTHS = (128, 256)


def _shifts(k: int, t: FixedType, sw: int) -> list[int]:
    """Source fraction minus t.frac: equal, a tie bit, tie + sticky, a left shift, and shifts
    that put t's top bit at/around the source's. Never more than the source width (the
    headers assert there unless t truncates; the kernels never assign like that)."""
    extra = (sw - 1 - t.width, sw - t.width, sw - t.width - 2)[k % 3]
    return sorted(d for d in {0, 1, 5, -3, sw // 2, extra} if -sw <= d <= sw)


def _key(t: FixedType, src: str) -> str:
    return f"{t.width} {t.integer} {int(t.signed)} {t.rounding.value} {t.overflow.value} {src}"


def _wide_raws(t: FixedType, d: int, sw: int, rng: np.random.Generator) -> list[int]:
    lo_s, hi_s = -(1 << (sw - 1)), (1 << (sw - 1)) - 1
    vals = {0, 1, -1, 2, -2, lo_s, hi_s, lo_s + 1}
    for edge in (t.min_raw, t.max_raw, 0, 1, -1, t.max_raw + 1, t.min_raw - 1, (t.max_raw + 1) // 2):
        for j in (-2, -1, 0, 1, 2):
            if d >= 0:
                base, half = (edge + j) << d, (1 << (d - 1)) if d else 0
                vals.update(base + o for o in (0, 1, -1, half, half + 1, half - 1, -half))
            else:
                vals.add((edge + j) >> -d)
    for _ in range(200):  # every magnitude
        bits = int(rng.integers(1, sw))
        v = int.from_bytes(rng.bytes(sw // 8), "little") >> (sw - bits)
        vals.add(v if rng.integers(2) else -v)
    return sorted(v for v in vals if lo_s <= v <= hi_s)


def _doubles(t: FixedType, rng: np.random.Generator) -> np.ndarray:
    k = np.arange(-40, 41, dtype=np.float64)
    grid = [np.ldexp(k + 0.5, -t.frac), np.ldexp(k, -t.frac - 1)]
    mags = [np.ldexp(rng.uniform(-1, 1, 200), rng.integers(-t.frac - 70, -t.frac + t.width + 70, 200))]
    specials = [np.array([0.0, -0.0, 1.0, -1.0, 1e300, -1e300, 5e-324])]
    return np.concatenate(grid + mags + specials)


def _cases() -> list[tuple[FixedType, int, str, list[int] | np.ndarray]]:
    rng = np.random.default_rng(7)
    out: list[tuple[FixedType, int, str, list[int] | np.ndarray]] = []
    for k, t in enumerate(TYPES):
        sw = SOURCE_WIDTHS[k % 2]
        for d in _shifts(k, t, sw):
            out.append((t, sw, str(t.frac + d), _wide_raws(t, d, sw, rng)))
        out.append((t, 64, "double", _doubles(t, rng)))
    return out


CASES = _cases()

_PROGRAM = r"""
#include <ap_fixed.h>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
typedef std::string (*conv_t)(const std::string &);
static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }
template <class T> std::string hex_bits(const T &v) {
  const int W4 = (T::width + 3) / 4 * 4;
  ap_uint<T::width> b; b.range(T::width - 1, 0) = v.range(T::width - 1, 0);
  ap_uint<W4> z = b;
  std::string s;
  for (int i = W4 / 4 - 1; i >= 0; i--) s += "0123456789abcdef"[(unsigned)z.range(4 * i + 3, 4 * i).to_uint()];
  return s;
}
template <class T, int SW, int F> std::string from_raw(const std::string &hex) {
  ap_uint<SW> r = 0;
  for (size_t i = 0; i < hex.size(); i++) r = (r << 4) | ap_uint<SW>(hexval(hex[i]));
  ap_fixed<SW, SW - F> s; s.range(SW - 1, 0) = r;
  T v = s;
  return hex_bits(v);
}
template <class T> std::string from_double(const std::string &hex) {
  unsigned long long b = std::stoull(hex, nullptr, 16); double d; std::memcpy(&d, &b, 8);
  T v = d;
  return hex_bits(v);
}
int main() {
  std::map<std::string, conv_t> m;
%(calls)s
  std::string line;
  while (std::getline(std::cin, line)) {
    size_t cut = line.rfind(' ');
    std::map<std::string, conv_t>::iterator it = m.find(line.substr(0, cut));
    std::cout << (it == m.end() ? std::string("?") : it->second(line.substr(cut + 1))) << "\n";
  }
  return 0;
}
"""


def _source_hex(v: int, sw: int) -> str:
    return format(v & ((1 << sw) - 1), f"0{sw // 4}x")


def _convention(bits: int, t: FixedType) -> int:
    """A C++ result's W bits as the model holds them (int64 convention up to 64 bits)."""
    v = bits & ((1 << t.width) - 1)
    if t.signed and v >> (t.width - 1):
        v -= 1 << t.width
    if t.width == 64 and not t.signed and v >= 1 << 63:
        v -= 1 << 64
    return v


@pytest.fixture(scope="module")
def cpp_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    if CXX is None or AP_TYPES is None:
        pytest.skip(NO_CPP_REASON)
    d = tmp_path_factory.mktemp("ap_fixed_wide_oracle")
    calls = []
    for t, sw, src, _ in CASES:
        fn = f"from_double<{t.cpp()} >" if src == "double" else f"from_raw<{t.cpp()}, {sw}, {src}>"
        calls.append(f'  m["{_key(t, src)}"] = &{fn};')
    (d / "oracle.cpp").write_text(_PROGRAM % {"calls": "\n".join(calls)})
    subprocess.run([CXX, "-std=c++14", "-O1", "-w", f"-I{AP_TYPES}", str(d / "oracle.cpp"), "-o", str(d / "oracle")],
                   check=True, capture_output=True, text=True)
    lines = []
    for t, sw, src, inputs in CASES:
        k = _key(t, src)
        if src == "double":
            lines.extend(f"{k} {v:x}" for v in np.asarray(inputs).view(np.uint64).tolist())
        else:
            lines.extend(f"{k} {_source_hex(v, sw)}" for v in inputs)
    run = subprocess.run([str(d / "oracle")], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    got = run.stdout.split()
    assert len(got) == len(lines) and "?" not in got
    out: dict[str, list[int]] = {}
    pos = 0
    for t, _, src, inputs in CASES:
        out[_key(t, src)] = [_convention(int(h, 16), t) for h in got[pos:pos + len(inputs)]]
        pos += len(inputs)
    return out


@needs_cpp
@pytest.mark.parametrize("t", TYPES, ids=str)
def test_wide_model_matches_ap_fixed_headers(t: FixedType, cpp_results: dict[str, list[int]]) -> None:
    bad = []
    for tc, _, src, inputs in CASES:
        if tc != t:
            continue
        if src == "double":
            got = quantize(np.asarray(inputs), t).tolist()
        else:
            got = requantize(np.array(inputs, dtype=object), int(src), t).tolist()
        for x, g, e in zip(list(inputs), got, cpp_results[_key(t, src)]):
            if int(g) != e:
                bad.append(f"{x} * 2**-{src}: model {g}, C++ {e}")
    assert not bad, f"{t}: {len(bad)} mismatches, e.g.\n" + "\n".join(bad[:8])


@needs_cpp
def test_wide_overflow_count_is_what_the_headers_change(cpp_results: dict[str, list[int]]) -> None:
    for t, _, src, inputs in CASES:
        if src == "double":
            continue
        exact = [_round_exact(r, int(src), t) for r in inputs]
        u64 = not t.signed and t.width == 64
        cpp = [c + (1 << 64) if u64 and c < 0 else c for c in cpp_results[_key(t, src)]]
        assert overflow_count(np.array(inputs, dtype=object), int(src), t) == sum(e != c for e, c in zip(exact, cpp))


# ----------------------------------------------------------------------------- pure Python

wide_types = st.builds(FixedType, width=st.integers(1, 300), integer=st.integers(-200, 400), signed=st.booleans(),
                       rounding=st.sampled_from(list(R)), overflow=st.sampled_from(list(O)))
wide_ints = st.one_of(st.integers(-(2**400), 2**400), st.integers(-300, 300),
                      st.integers(0, 399).flatmap(lambda b: st.integers(-(2**b), 2**b)))


def _ref(raw: int, frac: int, t: FixedType) -> int:
    q = _reference(raw, frac, t)
    return q


@settings(max_examples=400, deadline=None)
@given(t=wide_types, raws=st.lists(wide_ints, min_size=1, max_size=8), frac=st.integers(-300, 500))
def test_wide_requantize_equals_unbounded_reference(t: FixedType, raws: list[int], frac: int) -> None:
    got = requantize(np.array(raws, dtype=object), frac, t)
    assert got.dtype == (object if t.width > 64 else np.int64)
    assert [int(v) for v in got.tolist()] == [_ref(r, frac, t) for r in raws]
    exact = [_round_exact(r, frac, t) for r in raws]
    assert overflow_count(np.array(raws, dtype=object), frac, t) == sum(
        not (t.min_raw <= q <= t.max_raw) or (q == t.min_raw and _sat_sym_clips_min(t)) for q in exact)


@settings(max_examples=200, deadline=None)
@given(t=wide_types, raws=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=6), frac=st.integers(-100, 200))
def test_int64_and_object_inputs_agree(t: FixedType, raws: list[int], frac: int) -> None:
    a = requantize(np.array(raws, dtype=np.int64), frac, t).tolist()
    b = requantize(np.array(raws, dtype=object), frac, t).tolist()
    assert [int(v) for v in a] == [int(v) for v in b]


def test_wide_quantize_and_to_float() -> None:
    t = FixedType(128, 64, True, R.RND_CONV, O.SAT)
    q = quantize(np.array([1.5, -2.0**62, 2.0**70, 1e-30]), t)
    assert q.dtype == object
    assert q.tolist() == [3 << 63, -(1 << 126), (1 << 127) - 1, 0]
    assert to_float(q, t).tolist() == [1.5, -2.0**62, 2.0**63, 0.0]
    assert to_float(np.array([(1 << 1100) + 1, -5], dtype=object), 1000).tolist() == [2.0**100, -5 * 2.0**-1000]


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 70), bits=st.integers(2, 64))
def test_exact_matmul_is_exact(seed: int, k: int, bits: int) -> None:
    rng = np.random.default_rng(seed)
    lim = 1 << (bits - 1)
    a = [[int(rng.integers(-lim, lim)) for _ in range(k)] for _ in range(3)]
    b = [[int(rng.integers(-lim, lim)) for _ in range(2)] for _ in range(k)]
    want = [[sum(a[i][j] * b[j][n] for j in range(k)) for n in range(2)] for i in range(3)]
    ai, bi = np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)
    got = exact_matmul(ai, bi, 2 * bits + k.bit_length())
    assert [[int(v) for v in row] for row in got.tolist()] == want
    assert [[int(v) for v in row] for row in exact_matmul(exact_ints(ai, 200), bi, 200).tolist()] == want

"""The numpy fixed-point model equals the Xilinx ap_fixed headers bit for bit: every rounding
and overflow mode, signed and unsigned, negative and over-wide integer bits, from a wider
fixed-point value and from a double."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwprune.backend.csim import CXX, ap_types_dir
from hwprune.errors import ConfigError
from hwprune.fixed import FixedType, FixedTypeError, Overflow, Rounding, quantize, requantize
from hwprune.precision import parse_type

# Every mode pair on one shape; the other shapes (negative or over-wide integer bits, tiny and
# integer-only types) with a spread of modes. One instantiation each keeps the g++ build short.
TYPES = [FixedType(8, 3, s, q, o) for s in (True, False) for q in Rounding for o in Overflow] + [
    FixedType(w, i, s, q, o)
    for (w, i) in ((6, 0), (5, -2), (7, 9), (16, 6), (2, 1), (12, 12))
    for s in (True, False)
    for q, o in ((Rounding.TRN, Overflow.WRAP), (Rounding.RND, Overflow.SAT), (Rounding.RND_CONV, Overflow.SAT_SYM),
                 (Rounding.RND_ZERO, Overflow.SAT_ZERO), (Rounding.RND_MIN_INF, Overflow.WRAP),
                 (Rounding.TRN_ZERO, Overflow.SAT), (Rounding.RND_INF, Overflow.WRAP))
]
SRC_FRAC = 20  # inputs are exact values with 20 fractional bits held in ap_fixed<60,40>


@pytest.fixture(scope="module")
def cpp_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("apfixed")
    cases = []
    for k, t in enumerate(TYPES):
        cases.append(f"    case {k}: {{ {t.cpp()} v = src; {t.cpp()} u = dv; out = hwp_raw(v); outd = hwp_raw(u); break; }}")
    (d / "m.cpp").write_text(
        '#include "ap_fixed.h"\n#include <cstdio>\n'
        "template <class T> long long hwp_raw(const T &v) { ap_fixed<T::width + 1, T::iwidth + 1> w = v;"
        " ap_int<T::width + 1> b; b.range(T::width, 0) = w.range(T::width, 0); return b.to_int64(); }\n"
        "int main() { int k; long long raw; double d;\n"
        "  while (std::scanf(\"%d %lld %lf\", &k, &raw, &d) == 3) {\n"
        "    ap_fixed<60, 40> src; src.range(59, 0) = raw; double dv = d; long long out = 0, outd = 0;\n"
        "    switch (k) {\n" + "\n".join(cases) + "\n    }\n"
        "    std::printf(\"%lld %lld\\n\", out, outd); }\n  return 0; }\n")
    subprocess.run([CXX, "-std=c++14", "-O0", "-w", f"-I{ap_types_dir()}", "m.cpp", "-o", "m"], cwd=d, check=True)
    return d / "m"


def test_requantize_and_quantize_match_ap_fixed(cpp_model):
    rng = np.random.default_rng(0)
    lines, expected = [], []
    for k, t in enumerate(TYPES):
        lim = max(abs(t.min_value), t.max_value) * 3 + 2.0 ** -t.frac * 8
        vals = np.concatenate([rng.uniform(-lim, lim, 60), (np.arange(-40, 41) + 0.5) * 2.0 ** -t.frac,
                               np.arange(-40, 41) * 2.0 ** -(t.frac + 1), [0.0, t.max_value, t.min_value]])
        raw = np.round(vals * 2**SRC_FRAC).astype(np.int64)
        exact = raw / 2**SRC_FRAC
        r1 = requantize(raw, SRC_FRAC, t)
        r2 = quantize(exact, t)
        for a, v, e1, e2 in zip(raw, exact, r1, r2):
            lines.append(f"{k} {int(a)} {float(v)!r}")
            expected.append((k, int(a), int(e1), int(e2)))
    out = subprocess.run([str(cpp_model)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    got = [tuple(int(v) for v in l.split()) for l in out.stdout.split("\n") if l]
    assert len(got) == len(expected)
    bad = [(TYPES[k].cpp(), raw, e1, e2, g) for (k, raw, e1, e2), g in zip(expected, got) if (e1, e2) != g]
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:5]}"


@pytest.mark.parametrize("text,expected", [
    ("ap_fixed<16,6>", FixedType(16, 6)),
    ("fixed<16, 6>", FixedType(16, 6)),
    ("ap_ufixed<8,0,AP_RND,AP_SAT>", FixedType(8, 0, False, Rounding.RND, Overflow.SAT)),
    ("ap_fixed<18,8,AP_RND_CONV,AP_SAT_SYM>", FixedType(18, 8, True, Rounding.RND_CONV, Overflow.SAT_SYM)),
    ("ap_int<8>", FixedType(8, 8)),
    ("ap_uint<4>", FixedType(4, 4, False)),
])
def test_parse_and_print_round_trip(text, expected):
    t = FixedType.parse(text)
    assert t == expected
    assert FixedType.parse(t.cpp()) == t


@pytest.mark.parametrize("text", ["ap_fixed<16>", "float", "ap_fixed<0,0>", "ap_fixed<16,6,AP_FOO>", "ap_fixed<99,6>", ""])
def test_bad_types_are_refused_with_a_message(text):
    with pytest.raises(FixedTypeError):
        FixedType.parse(text)
    with pytest.raises(ConfigError, match="precision"):
        parse_type(text, "--precision")

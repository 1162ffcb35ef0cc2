"""Main's transformer op kinds at wide precisions: an attention block (MatMul of activations,
softmax over the last axis, residual Add, LayerNorm, GELU and Erf tables) at 32- and 64-bit
activations, where the products and the MatMul accumulators pass 64 bits.

`fixed` must equal the C simulation bit for bit, and follow the float model within the
propagated error bound. LayerNorm's sums (S, Q, the variance) take 74 bits at 32-bit inputs
and 138 at 64-bit ones: Python integers in numpy, ap_int in the kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.cli import main
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, run_float, saturation_report, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig

SEQ, DIM = 4, 8


def attention_block():
    rng = np.random.default_rng(11)
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "wq"], ["q"]), n("MatMul", ["x", "wk"], ["k"]), n("MatMul", ["x", "wv"], ["v"]),
        n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), n("MatMul", ["q", "kt"], ["s"], name="qk"),
        n("Softmax", ["s"], ["a"], axis=-1), n("MatMul", ["a", "v"], ["o"], name="av"),
        n("Add", ["o", "x"], ["r"], name="residual"),
        n("LayerNormalization", ["r", "gamma", "beta"], ["ln"], axis=-1, name="ln"),
        n("Gelu", ["ln"], ["y1"]), n("Erf", ["o"], ["y2"]),
    ]
    inits = [("wq", rng.normal(size=(DIM, DIM)) / 3), ("wk", rng.normal(size=(DIM, DIM)) / 3),
             ("wv", rng.normal(size=(DIM, DIM)) / 3), ("gamma", rng.uniform(0.5, 1.5, DIM)),
             ("beta", rng.normal(size=DIM) * 0.1)]
    model = make_model(nodes, [fin("x", SEQ, DIM)], [fin("y1", SEQ, DIM), fin("y2", SEQ, DIM)], inits, opset=20)
    x = rng.uniform(-2, 2, size=(3, SEQ, DIM)).astype(np.float32)
    return model, x


MODEL, X = attention_block()


def precision(text: str) -> PrecisionConfig:
    return PrecisionConfig(LayerPrecision(result=FixedType.parse(text)))


@pytest.mark.parametrize("text,io", [("ap_fixed<32,16>", "parallel"), ("ap_fixed<32,16>", "stream"),
                                     ("ap_fixed<64,32>", "parallel")])
def test_attention_block_is_bit_exact_at_wide_precisions(text, io, tmp_path):
    prec = precision(text)
    g = compile_graph(MODEL, prec, io)
    assert g.layer("qk").accum_t.width > 64 and g.layer("ln").sums_bits(g) > 62  # the exact paths
    assert saturation_report(g, [X]) == {}
    prj = hwprune.export(MODEL, tmp_path / "prj", io_type=io, precision=prec)
    got = raw_outputs(prj, [X])
    ref = trace_fixed(g, [X]).values
    for out, r in zip(g.outputs, got):
        np.testing.assert_array_equal(r, ref[out], err_msg=f"{text} {io}: output {out}")
    # fixed follows float within the propagated bound (an independent float model).
    fixed = hwprune.run(MODEL, [X], engine="fixed", precision=prec)
    for y, f, b in zip(run_float(g, [X]), fixed, error_bounds(g, [X])):
        assert np.all(np.abs(f - y) <= b + 1e-9), (np.max(np.abs(f - y)), np.max(b))


def test_every_width_imports(tmp_path, capsys):
    """LayerNorm's epsilon on the grid of a 64-bit input with 54 fractional bits is a 115-bit
    constant: it imports (exit 0)."""
    import onnx

    onnx.save(MODEL, tmp_path / "m.onnx")
    code = main(["estimate", str(tmp_path / "m.onnx"), "--board", "zcu104", "--precision", "ap_fixed<64,10>"])
    err = capsys.readouterr().err
    assert code == 0, err

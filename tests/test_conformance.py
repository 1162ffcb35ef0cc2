"""ONNX backend conformance: the PyTorch-converted cases shipped in the onnx wheel.

Every case whose ops hwprune supports goes through export + C simulation (both io types) and
must (1) equal the numpy fixed-point reference bit for bit and (2) match the expected output
within the error bound the chosen precision implies (propagated layer by layer, see
`hwprune.pipeline.error_bounds`), with no saturation. Every other case must be refused with
a clear UnsupportedOpError naming the node and its op type.

The same holds at wide and wrapping precisions (PRECISIONS): ap_fixed<32,16> (accumulators past 64
bits, the exact path) and ap_fixed<16,6> (AP_TRN/AP_WRAP, the ap_fixed default); 64-bit types
(128-bit products) run in test_wide_ops.py and test_precision_strings.py. There the cases run batched: every case of the same opset is one model
with one input and one output per case (prefixed names; the samples of each case repeated up
to the largest batch), so one export and one C build serve them all — about a sixth of the
compile time of one project per case; each output is checked against its own case, and the
batched graph's reference against the case's own. The error bound is first order and assumes no value overflows; under AP_WRAP an overflow
would wrap instead of saturating, which is why "nothing overflowed on this data" (the
saturation report counts wraps too) is asserted before the bound is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hwprune
from conftest import merge_models, repeat_batch
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, output_float, saturation_report, trace_fixed
from hwprune.precision import PrecisionConfig

DATA = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "pytorch-converted"
CASES = sorted(p.name for p in DATA.iterdir() if p.is_dir())

# Cases outside the supported list: ops hwprune does not implement, or 3-D (5-D tensor)
# convolution, pooling and batch norm.
UNSUPPORTED_OPS = {"Pad", "ConvTranspose", "Split", "Mul", "LogSoftmax", "Exp", "Selu", "Neg", "Softplus", "Abs",
                   "Div"}
THREE_D = {c for c in CASES if re.search(r"(Conv|Pool|Norm)3d", c)}
RANK_LIMIT = {"test_PixelShuffle"}  # reshapes to a 6-D tensor

# Precision per case: the default, widened where the data needs more integer bits.
PRECISION = {"default": "ap_fixed<18,8,AP_RND_CONV,AP_SAT>"}
# Every supported case runs batched (see the module docstring) at the default and at wide and
# wrapping precisions.
PRECISIONS = [PRECISION["default"], "ap_fixed<32,16>", "ap_fixed<16,6>"]


def _ops(case: str) -> set[str]:
    return {n.op_type for n in onnx.load(str(DATA / case / "model.onnx")).graph.node}


def expected_refusal(case: str) -> bool:
    return bool(_ops(case) & UNSUPPORTED_OPS) or case in THREE_D or case in RANK_LIMIT


def _load(case: str) -> tuple[np.ndarray, np.ndarray]:
    d = DATA / case / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(d / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(d / "output_0.pb")))
    return x, y


def test_the_wheel_ships_the_cases():
    assert len(CASES) > 60
    supported = [c for c in CASES if not expected_refusal(c)]
    assert len(supported) >= 45, supported


# The user's path, one project per case, for one case per op family; every supported case runs
# batched at every precision below (one C build per opset serves all its cases).
USER_PATH_CASES = ["test_Conv2d", "test_Linear", "test_MaxPool2d"]


@pytest.mark.parametrize("case", USER_PATH_CASES)
@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_supported_case_matches_expected(case, io, tmp_path):
    assert not expected_refusal(case)
    x, y = _load(case)
    prec = PrecisionConfig().with_overrides(result=FixedType.parse(PRECISION["default"]))
    model = DATA / case / "model.onnx"
    g = compile_graph(model, prec, io)
    assert saturation_report(g, [x]) == {}, "the chosen precision saturates on this data"
    prj = hwprune.export(model, tmp_path / "prj", board="zcu104", io_type=io, precision=prec)
    got_raw = raw_outputs(prj, [x])[0]
    ref_raw = trace_fixed(g, [x]).values[g.outputs[0]]
    np.testing.assert_array_equal(got_raw, ref_raw, err_msg="C simulation differs from the fixed-point reference")
    got = hwprune.run(prj, [x], engine="csim")[0]
    bound = error_bounds(g, [x])[0]
    assert got.shape == y.shape
    slack = 1e-5 * (1 + np.abs(y))  # the expected outputs are float32
    excess = np.abs(got - y) - bound - slack
    assert np.all(excess <= 0), f"max |err| {np.max(np.abs(got - y)):.3g} exceeds the bound (max {np.max(bound):.3g})"
    # The bound is meaningful: a few lsb of the output type, not a blanket tolerance.
    assert np.max(bound) < 0.05


@pytest.mark.parametrize("case", [c for c in CASES if expected_refusal(c)])
def test_unsupported_case_is_refused_clearly(case):
    with pytest.raises(UnsupportedOpError) as e:
        compile_graph(DATA / case / "model.onnx")
    msg = str(e.value)
    assert "\n" not in msg
    assert "node" in msg
    ops = _ops(case)
    assert any(op in msg for op in ops), msg


# ----------------------------------------------------------------------------- batched cases

def _batches() -> dict[str, list[str]]:
    """Supported cases grouped by opset: the cases of a group share one model."""
    groups: dict[str, list[str]] = {}
    for case in CASES:
        if expected_refusal(case):
            continue
        opset = onnx.load(str(DATA / case / "model.onnx")).opset_import[0].version
        groups.setdefault(f"opset{opset}", []).append(case)
    return groups


BATCHES = _batches()


def batched_model(cases: list[str]) -> onnx.ModelProto:
    """One model running `cases` side by side (conftest.merge_models). The cases of a batch
    share their opset and IR version: no conversion, as hwprune's importer upgrades old opsets
    itself and reads some old-opset semantics (opset-6 PRelu slopes) from the source opset."""
    return merge_models([onnx.load(str(DATA / c / "model.onnx")) for c in cases], "conformance_batch")


def test_batches_cover_every_supported_case():
    supported = [c for c in CASES if not expected_refusal(c)]
    assert sorted(c for cs in BATCHES.values() for c in cs) == sorted(supported)


@pytest.mark.slow
@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("io", ["parallel", "stream"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_supported_cases_match_batched(batch, io, precision, tmp_path):
    cases = BATCHES[batch]
    data = [_load(c) for c in cases]
    n = max(x.shape[0] for x, _ in data)
    xs = [repeat_batch(x, n) for x, _ in data]  # each case's samples, repeated up to the largest batch
    prec = PrecisionConfig().with_overrides(result=FixedType.parse(precision))
    model = batched_model(cases)
    g = compile_graph(model, prec, io)
    assert len(g.outputs) == len(cases)
    sat = saturation_report(g, xs)
    assert sat == {}, f"{precision} saturates or wraps on this data: {sat}"
    prj = hwprune.export(model, tmp_path / "prj", board="zcu104", io_type=io, precision=prec)
    got_raw = raw_outputs(prj, xs)
    ref = trace_fixed(g, xs).values
    bounds = error_bounds(g, xs)
    for k, (case, (x, y)) in enumerate(zip(cases, data)):
        out, m = g.outputs[k], x.shape[0]
        np.testing.assert_array_equal(got_raw[k], ref[out], err_msg=f"{case}: C simulation differs from the reference")
        alone = compile_graph(DATA / case / "model.onnx", prec, io)  # batching changes nothing
        np.testing.assert_array_equal(trace_fixed(alone, [x]).values[alone.outputs[0]], ref[out][:m], err_msg=case)
        got = output_float(g, out, got_raw[k][:m])
        assert got.shape == y.shape, case
        bound = bounds[k][:m]
        excess = np.abs(got - y) - bound - 1e-5 * (1 + np.abs(y))
        assert np.all(excess <= 0), f"{case}: max |err| {np.max(np.abs(got - y)):.3g} exceeds the bound"
        assert np.max(bound) < 0.05, case

"""ONNX backend conformance: the PyTorch-converted cases shipped in the onnx wheel.

Every case whose ops hwprune supports goes through export + C simulation (both io types) and
must (1) equal the numpy fixed-point reference bit for bit and (2) match the expected output
within the error bound the chosen precision implies (propagated layer by layer, see
`hwprune.pipeline.error_bounds`), with no saturation. Every other case must be refused with
a clear UnsupportedOpError naming the node and its op type.
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
from hwprune.backend.csim import raw_outputs
from hwprune.errors import UnsupportedOpError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, saturation_report, trace_fixed
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


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if not expected_refusal(c)])
@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_supported_case_matches_expected(case, io, tmp_path):
    x, y = _load(case)
    prec = PrecisionConfig().with_overrides(result=FixedType.parse(PRECISION.get(case, PRECISION["default"])))
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

"""ONNX's Gemm, MatMul and Conv node tests: every one imports and runs, or gets the clear error.

The node tests (onnx.backend.test.case.node.collect_testcases: test_gemm_*, test_matmul_*, the
Conv cases) feed every operand as a graph input; hwprune builds hardware for activation x
constant weights, and for products of two activations with per-sample matrices (MatMul), so:

* as published: `hwprune export` exits 2 with one line naming the node — never 1 (an internal
  error) — except the MatMuls of two per-sample matrices, which run (fixed and the C
  simulation against the expected output);
* with the weights and biases made constants from the test's own data (what an exported
  network has): the model imports, and `fixed` and the C simulation (both io types, one
  batched build each) equal each other bit for bit and the expected output within the error
  bound — or, where the operation is not a per-sample layer (transA, a bias that differs
  between samples, per-sample weights), the same clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import hwprune
from conftest import merge_models, onnx_node_cases, repeat_batch
from hwprune.backend.csim import raw_outputs
from hwprune.cli import main
from hwprune.errors import HwpruneInputError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, error_bounds, output_float, run_fixed, trace_fixed
from hwprune.precision import PrecisionConfig

OPS = ("Gemm", "MatMul", "Conv")


def _node_cases() -> dict[str, tuple[onnx.ModelProto, list[np.ndarray], np.ndarray]]:
    out = {}
    cases = onnx_node_cases("gemm", "matmul", "conv")
    for t in cases:
        if t.kind == "node" and t.model.graph.node[0].op_type in OPS:
            ins, outs = t.data_sets[0]
            out[t.name] = (t.model, [np.asarray(a) for a in ins], np.asarray(outs[0]))
    return out


CASES = _node_cases()
# Products of two per-sample matrices: they import as published.
PUBLISHED_RUNS = {"test_matmul_3d", "test_matmul_4d"}
# With constant weights and biases: what is not a per-sample layer, and the clear error it gets.
REFUSED = {
    "test_gemm_transposeA": "transA",
    "test_gemm_all_attributes": "transA",
    "test_gemm_default_matrix_bias": "differs from row to row",
    "test_matmul_3d": "2-D",
    "test_matmul_4d": "2-D",
    "test_matmul_bcast": "2-D",
    "test_matmul_4d_1d": "2-D",
    "test_matmul_1d_3d": "2-D",
    "test_matmul_1d_1d": "2-D",
}
PASSING = sorted(c for c in CASES if c not in REFUSED)
# The Conv cases sum up to 9 inputs of up to 48: outputs need 9 integer bits.
PRECISION = PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<24,10,AP_RND_CONV,AP_SAT>"))


def constant_operands(model: onnx.ModelProto, inputs: list[np.ndarray]) -> onnx.ModelProto:
    """The model with every input but the first turned into an initializer holding the test's data."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    keep = g.input[0]
    for vi, value in zip(list(g.input)[1:], inputs[1:]):
        g.initializer.append(numpy_helper.from_array(value, vi.name))
    del g.input[:]
    g.input.append(keep)
    return m


def test_the_generators_give_every_gemm_matmul_and_conv_case():
    gemm = [c for c in CASES if c.startswith("test_gemm_")]
    assert len(gemm) >= 11 and "test_gemm_default_matrix_bias" in gemm, sorted(CASES)
    assert len([c for c in CASES if c.startswith("test_matmul_")]) >= 7
    assert len([c for c in CASES if CASES[c][0].graph.node[0].op_type == "Conv"]) >= 6
    assert set(REFUSED) | PUBLISHED_RUNS <= set(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_published_case_exits_2_with_one_line_or_runs(case, tmp_path, capsys):
    model, inputs, y = CASES[case]
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    code = main(["export", str(path), "--board", "pynq-z2", "--out", str(tmp_path / "prj")])
    err = capsys.readouterr().err
    if case in PUBLISHED_RUNS:
        assert code == 0, err
        g = compile_graph(model, PRECISION)
        got = run_fixed(g, inputs)[0]
        assert np.all(np.abs(got - y) <= error_bounds(g, inputs)[0] + 1e-5 * (1 + np.abs(y)))
        return
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    # The operand that is no constant, or (a scalar C) the input without a batch axis.
    assert ("node" in lines[0] and any(op in lines[0] for op in OPS)) or "input" in lines[0], lines[0]


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_constant_operands_that_are_no_dense_layer_get_the_clear_error(case, tmp_path, capsys):
    model, inputs, _ = CASES[case]
    m = constant_operands(model, inputs)
    with pytest.raises(HwpruneInputError) as e:
        compile_graph(m)
    msg = str(e.value)
    assert "\n" not in msg and "node" in msg and REFUSED[case] in msg, msg
    onnx.save(m, tmp_path / "model.onnx")
    assert main(["export", str(tmp_path / "model.onnx"), "--board", "pynq-z2", "--out", str(tmp_path / "prj")]) == 2
    capsys.readouterr()


@pytest.mark.parametrize("case", PASSING)
def test_constant_operands_run_within_the_bound(case):
    model, inputs, y = CASES[case]
    g = compile_graph(constant_operands(model, inputs), PRECISION)
    x = inputs[0]
    got = run_fixed(g, [x])[0]
    bound = error_bounds(g, [x])[0]
    assert got.shape == y.shape
    assert np.all(np.abs(got - y) <= bound + 1e-5 * (1 + np.abs(y))), (np.max(np.abs(got - y)), np.max(bound))
    assert np.max(bound) < 0.02


@pytest.mark.parametrize("io", ["parallel", "stream"])
def test_csim_equals_fixed(io, tmp_path):
    """Every passing case (constant operands) and the published products of two activations,
    side by side in one build."""
    names = PASSING + sorted(PUBLISHED_RUNS)
    models = [constant_operands(*CASES[c][:2]) for c in PASSING] + [CASES[c][0] for c in sorted(PUBLISHED_RUNS)]
    inputs = [CASES[c][1][:1] for c in PASSING] + [CASES[c][1] for c in sorted(PUBLISHED_RUNS)]
    n = max(x.shape[0] for ins in inputs for x in ins)
    xs = [repeat_batch(x, n) for ins in inputs for x in ins]
    # The generators write Gemm/MatMul at opset 13 and Conv at 22; lifting all to the newest
    # opset changes no semantics where each op's newest schema is the one its case was written for.
    opset, ir = max(m.opset_import[0].version for m in models), max(m.ir_version for m in models)
    for m in models:
        op = m.graph.node[0].op_type
        assert onnx.defs.get_schema(op, opset).since_version == onnx.defs.get_schema(op, m.opset_import[0].version).since_version
        m.opset_import[0].version, m.ir_version = opset, ir
    batch = merge_models(models, "node_cases")
    g = compile_graph(batch, PRECISION, io)
    prj = hwprune.export(batch, Path(tmp_path) / "prj", io_type=io, precision=PRECISION)
    got = raw_outputs(prj, xs)
    ref = trace_fixed(g, xs).values
    bounds = error_bounds(g, xs)
    for k, case in enumerate(names):
        np.testing.assert_array_equal(got[k], ref[g.outputs[k]], err_msg=case)
        y = CASES[case][2]
        m = y.shape[0]
        yk = output_float(g, g.outputs[k], got[k][:m])
        assert np.all(np.abs(yk - y) <= bounds[k][:m] + 1e-5 * (1 + np.abs(y))), case


def test_every_conv_form_onnxruntime_runs_imports_within_the_bound():
    """Conv with constant weights: 1-D and 2-D, groups, dilations, strides, no / symmetric /
    asymmetric pads and every auto_pad, with and without a bias and kernel_shape — each form
    onnxruntime runs imports and follows it within the error bound (none is refused)."""
    import itertools

    import onnxruntime as ort
    from onnx import TensorProto, helper
    from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

    from conftest import fin, make_model

    rng = np.random.default_rng(0)
    checked = 0
    for two_d, group, dil, stride, pad, bias in itertools.product(
            [False, True], [1, 2], [1, 2], [1, 2], ["none", "sym", "asym", "SAME_UPPER", "SAME_LOWER", "VALID"],
            [True, False]):
        k, sp = ([3, 2], [7, 6]) if two_d else ([3], [9])
        attrs = dict(group=group, dilations=[dil] * len(k), strides=[stride] * len(k))
        if bias:
            attrs["kernel_shape"] = k
        if pad == "sym":
            attrs["pads"] = [1] * 2 * len(k)
        elif pad == "asym":
            attrs["pads"] = [0] * len(k) + [1] * len(k)
        elif pad != "none":
            attrs["auto_pad"] = pad
        inits = [("w", rng.normal(size=(4, 4 // group, *k)))] + ([("b", rng.normal(size=4))] if bias else [])
        y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4] + [f"s{i}" for i in range(len(k))])
        m = make_model([helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], **attrs)],
                       [fin("x", 4, *sp)], [y_info], inits)
        x = rng.uniform(-1, 1, size=(2, 4, *sp)).astype(np.float32)
        try:
            y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
        except InvalidArgument:  # onnxruntime refuses SAME padding with a dilation or stride > 1
            continue
        g = compile_graph(m, PRECISION)
        got = run_fixed(g, [x])[0]
        assert got.shape == y.shape, attrs
        assert np.all(np.abs(got - y) <= error_bounds(g, [x])[0] + 1e-5), attrs
        checked += 1
    assert checked >= 120, checked

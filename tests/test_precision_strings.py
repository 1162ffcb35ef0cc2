"""No internal error is reachable from a precision string that parses.

Supported range (docs/precision.md): activation, weight and bias types of 1..64 bits signed,
1..63 unsigned, any integer bits; accumulators up to 1024 bits (ap_fixed's limit). Anything
else is a clear one-line error (exit 2). Every string below goes through `hwprune estimate`
(exit 0 or 2) and the `fixed` engine on a model using every op kind, and through the C
simulation (one build per string, the io type alternating), which must equal `fixed` bit for
bit (on the extremes, CSIM_STRINGS). The attention block of test_wide_ops.py (MatMul of
activations, softmax, LayerNorm, GELU, Erf) takes the same strings through `estimate`. Extreme binary points (ap_fixed<3,300>, ap_fixed<16,-100>) are supported, not refused:
the kernels sign-extend where the Xilinx headers would otherwise abort (hwp::cast).
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import hwprune
from conftest import fin, make_model
from hwprune.backend.csim import raw_outputs
from hwprune.cli import main
from hwprune.errors import HwpruneInputError
from hwprune.fixed import FixedType
from hwprune.pipeline import compile_graph, trace_fixed
from hwprune.precision import LayerPrecision, PrecisionConfig

STRINGS = [
    "ap_fixed<64,32>", "ap_fixed<32,16>", "ap_fixed<16,6>", "ap_fixed<18,8,AP_RND_CONV,AP_SAT>",
    "ap_fixed<64,64>", "ap_fixed<64,-20,AP_RND_CONV,AP_SAT>", "ap_fixed<64,4,AP_RND,AP_SAT_SYM>",
    "ap_ufixed<63,10,AP_RND_INF,AP_SAT_ZERO>", "ap_fixed<1,1>", "ap_ufixed<1,0,AP_RND,AP_SAT>",
    "ap_fixed<2,-4,AP_RND,AP_SAT>", "ap_fixed<8,12,AP_RND>", "ap_fixed<40,100,AP_TRN_ZERO,AP_SAT_SYM>",
    "ap_fixed<16,-100>", "ap_fixed<3,300,AP_RND_ZERO,AP_SAT>", "ap_int<16>", "ap_uint<8>",
    "ap_fixed<24,4,AP_RND_MIN_INF,AP_WRAP>", "ap_fixed<33,1,AP_RND_ZERO,AP_SAT_SYM>",
]
# The C simulation runs on the extremes (the everyday widths run in test_conformance.py).
CSIM_STRINGS = ["ap_fixed<64,-20,AP_RND_CONV,AP_SAT>", "ap_ufixed<63,10,AP_RND_INF,AP_SAT_ZERO>",
                "ap_fixed<2,-4,AP_RND,AP_SAT>", "ap_fixed<3,300,AP_RND_ZERO,AP_SAT>",
                "ap_fixed<24,4,AP_RND_MIN_INF,AP_WRAP>", "ap_fixed<16,-100>"]
REFUSED = ["ap_fixed<128,64>", "ap_fixed<65,32>", "ap_ufixed<64,32>", "ap_fixed<1024,512>"]


def every_op_model():
    """Conv, ReLU, max/average/global pools, residual Add, batch norm, sigmoid, flatten, Gemm,
    LeakyReLU, softmax; a second input through Gemm, tanh, ELU, Concat, PReLU; token ids
    through an embedding."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "cw", "cb"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Relu", ["c1"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "cw2", "cb2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Add", ["c2", "p1"], ["a1"]),
        n("BatchNormalization", ["a1", "s", "bb", "mu", "var"], ["bn"]), n("Sigmoid", ["bn"], ["sg"]),
        n("AveragePool", ["sg"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]), n("Flatten", ["p2"], ["f"]),
        n("Gemm", ["f", "w1", "b1"], ["g1"], transB=1), n("LeakyRelu", ["g1"], ["l1"], alpha=0.1),
        n("Gemm", ["l1", "w2", "b2"], ["g2"], transB=1), n("Softmax", ["g2"], ["y1"], axis=1),
        n("GlobalAveragePool", ["c1"], ["gp"]), n("Flatten", ["gp"], ["y4"]),
        n("Gemm", ["x2", "w3", "b3"], ["g3"], transB=1), n("Tanh", ["g3"], ["t3"]), n("Elu", ["g3"], ["e3"]),
        n("Concat", ["t3", "e3"], ["cc"], axis=1), n("PRelu", ["cc", "slope"], ["y2"]),
        n("Gather", ["emb", "ids"], ["y3"], axis=0),
    ]
    inits = [("cw", rng.normal(size=(4, 3, 3, 3)) / 4), ("cb", rng.normal(size=4) * 0.1),
             ("cw2", rng.normal(size=(4, 4, 3, 3)) / 5), ("cb2", rng.normal(size=4) * 0.1),
             ("s", rng.uniform(0.5, 1.5, 4)), ("bb", rng.normal(size=4) * 0.1), ("mu", rng.normal(size=4) * 0.1),
             ("var", rng.uniform(0.5, 1.5, 4)), ("w1", rng.normal(size=(8, 16)) / 4), ("b1", rng.normal(size=8) * 0.1),
             ("w2", rng.normal(size=(5, 8)) / 3), ("b2", rng.normal(size=5) * 0.1),
             ("w3", rng.normal(size=(6, 5)) / 2), ("b3", rng.normal(size=6) * 0.1), ("slope", rng.uniform(0, 0.5, 12)),
             ("emb", rng.normal(size=(10, 3)))]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])
    model = make_model(nodes, [fin("x", 3, 8, 8), fin("x2", 5), ids],
                       [fin("y1", 5), fin("y2", 12), fin("y3", 4, 3), fin("y4", 4)], inits)
    xs = [rng.uniform(-1, 1, size=(2, 3, 8, 8)).astype(np.float32), rng.uniform(-2, 2, size=(2, 5)).astype(np.float32),
          rng.integers(0, 10, size=(2, 4))]
    return model, xs


MODEL, XS = every_op_model()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("every_op")
    import onnx

    onnx.save(MODEL, d / "model.onnx")
    for k, x in enumerate(XS):
        np.save(d / f"x{k}.npy", x)
    return d


def _run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("text", STRINGS + REFUSED)
def test_fixed_engine_exits_0_or_2(text, model_file, tmp_path, capsys):
    # The CLI takes one input file: the MLP branch alone gets the run; the API runs all of them.
    code, err = _run_cli(capsys, "estimate", model_file / "model.onnx", "--board", "zcu104", "--precision", text)
    assert code in (0, 2), err
    if text in REFUSED:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return
    prec = PrecisionConfig().with_overrides(result=FixedType.parse(text))
    try:
        g = compile_graph(MODEL, prec)
    except HwpruneInputError as e:
        assert "\n" not in str(e)
        assert code == 2
        return
    assert code == 0, err
    out = hwprune.run(MODEL, XS, engine="fixed", precision=prec)
    assert len(out) == 4 and all(np.all(np.isfinite(y)) for y in out)


@pytest.mark.parametrize("text", STRINGS + REFUSED)
def test_attention_block_exits_0_or_2(text, tmp_path, capsys):
    import onnx

    from test_wide_ops import MODEL as ATTENTION

    onnx.save(ATTENTION, tmp_path / "m.onnx")
    code, err = _run_cli(capsys, "estimate", tmp_path / "m.onnx", "--board", "zcu104", "--precision", text)
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("k,text", list(enumerate(CSIM_STRINGS)))
def test_csim_equals_fixed_or_refuses(k, text, tmp_path):
    io = ("parallel", "stream")[k % 2]
    prec = PrecisionConfig().with_overrides(result=FixedType.parse(text))
    try:
        g = compile_graph(MODEL, prec, io)
    except HwpruneInputError as e:
        assert "\n" not in str(e)
        return
    prj = hwprune.export(MODEL, tmp_path / "prj", io_type=io, precision=prec)
    got = raw_outputs(prj, XS)
    ref = trace_fixed(g, XS).values
    for o, r in zip(g.outputs, got):
        np.testing.assert_array_equal(r, ref[o], err_msg=f"{text}: output {o}")


@pytest.mark.parametrize("layer", [
    {"weight": "ap_fixed<64,-10,AP_RND,AP_SAT>"}, {"bias": "ap_fixed<64,40>"}, {"accum": "ap_fixed<1024,512>"},
    {"accum": "ap_fixed<2,-40,AP_RND,AP_SAT>"}, {"accum": "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"},
    {"weight": "ap_ufixed<64,2>"}, {"weight_width": 64}, {"weight_width": 65}, {"result": "ap_fixed<64,32>", "weight_width": 3},
])
def test_yaml_types_exit_0_or_2(layer, model_file, tmp_path, capsys):
    import yaml

    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump({"model": layer}))
    code, err = _run_cli(capsys, "estimate", model_file / "model.onnx", "--board", "zcu104", "--config", cfg)
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    else:
        prec = PrecisionConfig.from_yaml(cfg)
        hwprune.run(MODEL, XS, engine="fixed", precision=prec)


def test_the_supported_range_is_what_the_docs_say():
    from hwprune.errors import ConfigError
    from hwprune.precision import parse_type

    assert parse_type("ap_fixed<64,32>").width == 64
    assert parse_type("ap_ufixed<63,0>").width == 63
    for bad in REFUSED:
        with pytest.raises(ConfigError):
            parse_type(bad)
    assert PrecisionConfig(LayerPrecision(accum=FixedType(1024, 512))).resolve("a", "Dense").accum.width == 1024

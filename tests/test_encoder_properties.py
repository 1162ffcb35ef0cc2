"""Property tests over random small encoders (nn.TransformerEncoderLayer and the BERT-style
classifier of tests/encoders.py), from both exporters: random width, heads, sequence length, FFN
width, padding masks, precisions, io types and reuse factors. For every generated design:
  * the IR's float semantics equals onnxruntime;
  * |fixed - float| stays within the propagated quantization bound (when nothing saturates);
  * `fixed` (numpy) equals `csim` (g++) bit for bit.
A C simulation build costs ~20 s here, so the CI property draws few designs; the larger sweep
is marked slow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwprune
from conftest import torch_onnx
from hwprune.backend.csim import raw_outputs
from hwprune.fixed import FixedType, Overflow, Rounding
from hwprune.pipeline import compile_graph, error_bounds, run_fixed, run_float, run_onnx, saturation_report, trace_fixed
from hwprune.precision import PrecisionConfig

torch = pytest.importorskip("torch")
from encoders import TinyBert, transformer_layer  # noqa: E402

VOCAB = 20


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def encoders(draw):
    seed = draw(st.integers(0, 2**16))
    width = draw(st.sampled_from([8, 16]))
    heads = draw(st.sampled_from([h for h in (1, 2, 4) if width % h == 0]))
    seq = draw(st.integers(2, 6))
    ffn = draw(st.sampled_from([8, 16, 24]))
    dynamo = draw(st.booleans())
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 3))
    if draw(st.booleans()):
        module = transformer_layer(width, heads, ffn, draw(st.booleans()), draw(st.sampled_from(["relu", "gelu"])), seed)
        model = torch_onnx(module, torch.zeros(1, seq, width), dynamo=dynamo)
        xs = [rng.normal(size=(n, seq, width)).astype(np.float32)]
    else:
        module = TinyBert(VOCAB, seq, width, heads, ffn, 1, 3, draw(st.sampled_from(["additive", "where"])), seed)
        example = (torch.zeros(2, seq, dtype=torch.long), torch.ones(2, seq, dtype=torch.long))
        model = torch_onnx(module, example, dynamo=dynamo)
        # Padding at the end, at least one real token (the CLS) per sample.
        mask = (np.arange(seq)[None] < rng.integers(1, seq + 1, size=(n, 1))).astype(np.int64)
        xs = [rng.integers(0, VOCAB, size=(n, seq)), mask]
    return model, xs


@st.composite
def precisions(draw) -> FixedType:
    width = draw(st.integers(12, 24))
    integer = draw(st.integers(5, 8))
    return FixedType(width, integer, True, draw(st.sampled_from([Rounding.TRN, Rounding.RND_CONV])), Overflow.SAT)


def _check(case, io, prec_t, rf, tmp_path, csim: bool) -> None:
    model, xs = case
    prec = PrecisionConfig().with_overrides(result=prec_t, reuse_factor=rf)
    g = compile_graph(model, prec, io)
    np.testing.assert_allclose(run_float(g, xs)[0], run_onnx(model, xs)[0], rtol=1e-4, atol=1e-5)
    if not saturation_report(g, xs):
        err = np.abs(run_fixed(g, xs)[0] - run_float(g, xs)[0])
        assert np.all(err <= error_bounds(g, xs)[0] + 1e-9)
    if csim:
        prj = hwprune.export(model, tmp_path / "prj", io_type=io, precision=prec, force=True)
        np.testing.assert_array_equal(raw_outputs(prj, xs)[0], trace_fixed(g, xs).values[g.outputs[0]])


@_settings(10)
@given(case=encoders(), io=st.sampled_from(["parallel", "stream"]), prec_t=precisions(), rf=st.integers(1, 4))
def test_random_encoders_float_and_bound(tmp_path, case, io, prec_t, rf):
    _check(case, io, prec_t, rf, tmp_path, csim=False)


@_settings(3)
@given(case=encoders(), io=st.sampled_from(["parallel", "stream"]), prec_t=precisions(), rf=st.integers(1, 4))
def test_random_encoders_fixed_equals_csim(tmp_path, case, io, prec_t, rf):
    _check(case, io, prec_t, rf, tmp_path, csim=True)


@pytest.mark.slow
@_settings(10)
@given(case=encoders(), io=st.sampled_from(["parallel", "stream"]), prec_t=precisions(), rf=st.integers(1, 8))
def test_random_encoders_fixed_equals_csim_sweep(tmp_path, case, io, prec_t, rf):
    _check(case, io, prec_t, rf, tmp_path, csim=True)

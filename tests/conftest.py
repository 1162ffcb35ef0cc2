"""Shared fixtures: small ONNX models built with onnx.helper or exported from torch."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import pytest
from onnx import TensorProto, helper, numpy_helper


CACHE_ENV = "HWPRUNE_CACHE_DIR"


def pytest_configure(config):
    """One C-simulation build cache for the session, shared by every xdist worker (they inherit
    the environment): hermetic — nothing from ~/.cache/hwprune — yet a design exported by
    several tests compiles once. A HWPRUNE_CACHE_DIR set by the caller is used as it is."""
    if not os.environ.get(CACHE_ENV):
        d = tempfile.mkdtemp(prefix="hwprune-test-cache-")
        os.environ[CACHE_ENV] = d
        config._hwprune_test_cache = d


def pytest_unconfigure(config):
    d = getattr(config, "_hwprune_test_cache", None)
    if d is not None:
        shutil.rmtree(d, ignore_errors=True)
        os.environ.pop(CACHE_ENV, None)


def onnx_node_cases(*modules: str) -> list:
    """ONNX's own node test cases (model + inputs + expected outputs) of the given modules of
    onnx.backend.test.case.node (e.g. "gelu", "softmax"). Importing a module runs its case
    generators; importing only these takes ~0.2 s where collect_testcases() runs the
    generators of every op (6-10 s in each test process). Cases accumulate per process: filter
    by name."""
    import importlib

    import onnx.backend.test.case.node as node

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in modules:
            importlib.import_module(f"{node.__name__}.{m}")
        cases = getattr(node, "_NodeTestCases", None)
        return list(cases) if cases is not None else list(node.collect_testcases())  # a future onnx without it


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17, name: str = "m") -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v), k) for k, v in initializers])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def merge_models(models: list[onnx.ModelProto], name: str = "batch") -> onnx.ModelProto:
    """One model running `models` side by side: model k's tensors and nodes prefixed `c{k}_`,
    its inputs and outputs in order. The models must share their opset and IR version."""
    nodes, inputs, outputs, inits, infos, meta = [], [], [], [], [], {}
    opsets = {(m.opset_import[0].version, m.ir_version) for m in models}
    assert len(opsets) == 1, f"models of different opsets/IR versions: {opsets}"
    for k, model in enumerate(models):
        m = onnx.compose.add_prefix(model, f"c{k}_")
        nodes += m.graph.node
        inputs += m.graph.input  # IR 3 lists the initializers as inputs too
        outputs += m.graph.output
        inits += m.graph.initializer
        infos += m.graph.value_info
        for p in model.metadata_props:  # per-initializer metadata: the declared sparsity patterns
            tensor = p.key.removeprefix("hwprune.sparsity.")
            meta[f"hwprune.sparsity.c{k}_{tensor}" if tensor != p.key else p.key] = p.value
    (opset, ir), = opsets
    g = helper.make_graph(nodes, name, inputs, outputs, inits, value_info=infos)
    merged = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    merged.ir_version = ir
    onnx.helper.set_model_props(merged, meta)
    return merged


def repeat_batch(x: np.ndarray, n: int) -> np.ndarray:
    """x's samples repeated (cyclically) up to a batch of n."""
    return np.concatenate([x] * -(-n // x.shape[0]))[:n]


def fin(name: str, *dims: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *dims])


def iin(name: str, *dims: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.INT64, ["N", *dims])


def torch_onnx(module, example, dynamo: bool = False) -> onnx.ModelProto:
    from hwprune.frontend.torch_export import export_torch

    return export_torch(module, example, dynamo=dynamo)


@pytest.fixture
def mlp_model(tmp_path: Path) -> Path:
    """Linear 16->8 -> Linear 8->4 (two Gemm), saved to a file."""
    rng = np.random.default_rng(0)
    m = make_model(
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
         helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1, name="fc2")],
        [fin("x", 16)], [fin("y", 4)],
        [("w1", rng.normal(size=(8, 16)) * 0.3), ("b1", rng.normal(size=8) * 0.1),
         ("w2", rng.normal(size=(4, 8)) * 0.3), ("b2", rng.normal(size=4) * 0.1)],
    )
    p = tmp_path / "mlp.onnx"
    onnx.save(m, p)
    return p

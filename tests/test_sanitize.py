"""Names from a model never reach generated C++ or Tcl verbatim."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from conftest import fin, make_model
import hwprune
from hwprune.backend.csim import raw_outputs
from hwprune.pipeline import trace_fixed
from hwprune.project import load_project_graph

EVIL = [
    'x"); system("touch /tmp/pwned"); //',
    "h]\nexec touch /tmp/pwned\n#",
    "y*/ #define int float /*",
    "$(touch /tmp/pwned) {puts x}",
]


def test_hostile_names_are_sanitised(tmp_path):
    rng = np.random.default_rng(0)
    x, h, y, n = EVIL
    m = make_model(
        [helper.make_node("Gemm", [x, "w1"], [h], transB=1, name=n),
         helper.make_node("Gemm", [h, "w2"], [y], transB=1, name=n + "2")],
        [fin(x, 5)], [fin(y, 3)], [("w1", rng.normal(size=(4, 5))), ("w2", rng.normal(size=(3, 4)))],
        name='g"; exec rm -rf /; "',
    )
    path = tmp_path / "evil[exec touch pwned].onnx"
    onnx.save(m, path)
    for io in ("parallel", "stream"):
        prj = hwprune.export(path, tmp_path / f"prj_{io}", io_type=io)
        generated = [p for p in prj.rglob("*") if p.is_file() and p.suffix in (".h", ".cpp", ".tcl", ".sh")]
        for f in generated:
            text = f.read_text()
            for bad in EVIL + ["exec touch", "system(", "#define int", "rm -rf"]:
                assert bad not in text, (f, bad)
        xs = rng.normal(size=(3, 5)).astype(np.float32)
        g = load_project_graph(prj)
        np.testing.assert_array_equal(raw_outputs(prj, [xs])[0], trace_fixed(g, [xs]).values[g.outputs[0]])

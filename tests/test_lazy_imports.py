"""Fast commands: `hwprune --help` and the ONNX-only paths (export, estimate, run --engine fixed)
never import the heavy packages; each is loaded only by the command and path that uses it.
Checked in a fresh interpreter (sys.modules), as a user runs the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

HEAVY = ("torch", "brevitas", "qonnx", "onnxruntime", "ortools", "ray")

PROBE = """
import json, sys
from hwprune.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
loaded = sorted({m.split(".")[0] for m in sys.modules})
print("PROBE " + json.dumps(dict(code=code, loaded=loaded)))
"""


def loaded_by(*args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, timeout=300)
    line = next((l for l in r.stdout.splitlines() if l.startswith("PROBE ")), None)
    assert line is not None, r.stderr[-2000:]
    d = json.loads(line[len("PROBE "):])
    assert d["code"] == 0, r.stderr[-2000:]
    return set(d["loaded"])


def test_help_loads_nothing_heavy():
    loaded = loaded_by("--help")
    assert not loaded & {*HEAVY, "numpy", "onnx"}, sorted(loaded & {*HEAVY, "numpy", "onnx"})


@pytest.mark.parametrize("what", ["export", "estimate", "run fixed", "run csim", "run float"])
def test_onnx_commands_load_only_what_they_use(mlp_model, tmp_path, what):
    np.save(tmp_path / "x.npy", np.zeros((2, 16), np.float32))
    args = {"export": ["export", mlp_model, "--board", "pynq-z2", "--out", tmp_path / "prj"],
            "estimate": ["estimate", mlp_model, "--board", "pynq-z2"],
            "run fixed": ["run", mlp_model, "--engine", "fixed", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
            "run csim": ["run", mlp_model, "--engine", "csim", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
            "run float": ["run", mlp_model, "--engine", "float", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
            }[what]
    loaded = loaded_by(*args)
    allowed = {"onnxruntime"} if what == "run float" else set()
    assert not (loaded & set(HEAVY)) - allowed, sorted((loaded & set(HEAVY)) - allowed)
    if what == "run float":
        assert "onnxruntime" in loaded  # the probe sees what a command loads

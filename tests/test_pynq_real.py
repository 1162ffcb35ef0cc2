"""The PYNQ driver against the real pynq package (3.0.1, as the PYNQ 3.0 board images ship it,
and 4.0.0), each installed in a virtualenv of its own (tests/pynq_env.py) — never in hwprune's
environment. tests/pynq_driver_check.py runs there: it checks every pynq name and signature the
driver uses and runs the driver's board path (HwpruneOverlay -> pynq.allocate, pynq.Clocks,
pynq's DefaultIP and DMA drivers) on a fake pynq device, against what the project's AXI-Stream
C simulation produces. Slow only the first time (the virtualenvs are created once)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hwprune
from hwprune.backend import pynq_driver as drv
from hwprune.backend.axis import run_axis
from hwprune.backend.deploy import DRIVER_NAME, write_package
from hwprune.backend.vivado import VIVADO_TCL

import pynq_env
from test_bitstream import ODD, _mlp

HERE = Path(__file__).resolve().parent
CHECKER = HERE / "pynq_driver_check.py"


def dma_parameters(project: Path) -> dict[str, str]:
    """The AXI DMA's configuration as the generated block design sets it (what the .hwh, and
    so pynq's DMA driver, would see)."""
    tcl = (project / VIVADO_TCL).read_text()
    block = re.search(r"create_bd_cell -type ip -vlnv \[hwp_ip axi_dma [\d.]+\].*?\n(set_property -dict \[list.*?\] \$dma)",
                      tcl, re.S)
    assert block, "no AXI DMA in the block design"
    params = dict(re.findall(r"CONFIG\.(\w+) \{([^}]*)\}", block.group(1)))
    assert params.get("c_include_sg") == "0" and params.get("c_m_axi_mm2s_data_width") == "64", params
    return params


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A pynq-z2 package of an io_stream MLP with odd widths (7-bit inputs, 13-bit outputs:
    several fields per bus word), with placeholder .bit/.hwh so the overlay reaches pynq, and
    the words the AXI-Stream C simulation returns for a batch."""
    d = tmp_path_factory.mktemp("pynq_real")
    prj = hwprune.export(_mlp(d / "mlp.onnx"), d / "prj", board="pynq-z2", io_type="stream", precision=ODD)
    pkg = write_package(prj, "pynq-z2", d / "pkg")
    spec = drv.AcceleratorSpec.load(pkg)
    for f in (spec.overlay["bitfile"], spec.overlay["hwh"]):
        (pkg / f).write_bytes(b"placeholder: the fake device never downloads it")
    n = 7
    x = np.random.default_rng(0).uniform(-8, 8, size=(n, 16)).astype(np.float32)
    words_in = drv.pack_inputs(spec, [x])
    out, last = run_axis(prj, words_in, n)
    assert last[-1] == 1 and last[:-1].sum() == 0
    words_out = out.reshape(n, spec.words_out)
    raw_in = drv.input_raw(drv.check_input(x, spec.inputs[0]), spec.inputs[0])
    y = hwprune.run(prj, [x], engine="csim")[0]
    np.savez(d / "case.npz", words_in=words_in, words_out=words_out, x0=x, y0=y, raw_in0=raw_in,
             raw_out0=drv.unpack_outputs(spec, words_out)[0], max_batch=3, n_inputs=1)
    (d / "dma.json").write_text(json.dumps(dma_parameters(prj)))
    return pkg, d / "case.npz", d / "dma.json"


def test_the_checker_covers_every_pynq_call_of_the_driver():
    """The attributes the driver uses on pynq and on the objects pynq hands it are the ones
    pynq_driver_check.py verifies: a new call in the driver must be checked there too."""
    tree = ast.parse((HERE.parent / "hwprune" / "backend" / "pynq_driver.py").read_text())
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = ast.unparse(node.value)
            if base in ("_pynq", "self.ip", "self.dma", "self.dma.sendchannel", "self.dma.recvchannel", "ch", "inbuf",
                        "outbuf", "clocks", "b", "self.dma.recvchannel"):
                used.add(f"{base}.{node.attr}")
    checked = {"_pynq.Overlay", "_pynq.allocate", "_pynq.Clocks", "self.ip.read", "self.ip.write",
               "self.dma.sendchannel", "self.dma.recvchannel", "self.dma.sendchannel.transfer",
               "self.dma.recvchannel.transfer", "self.dma.recvchannel.transferred", "ch.error", "ch.idle", "ch.wait",
               "inbuf.flush", "outbuf.invalidate", "clocks.fclk0_mhz"}
    assert used <= checked, f"unchecked pynq calls in the driver: {sorted(used - checked)}"
    text = CHECKER.read_text()
    for name in ("fclk0_mhz", "allocate", "transfer", "wait", "idle", "error", "flush", "invalidate", "freebuffer",
                 "DefaultIP.read", "DefaultIP.write", "Overlay.__init__"):
        assert name in text, name


@pytest.mark.slow
@pytest.mark.parametrize("version", pynq_env.VERSIONS)
def test_driver_against_real_pynq(case, version):
    try:
        py = pynq_env.ensure(version)
    except RuntimeError as e:  # no index reachable: say so plainly (CI creates them in .ci/run)
        pytest.fail(f"could not create the pynq {version} virtualenv: {str(e)[:2000]}")
    pkg, npz, dma = case
    # -I: isolated from this environment (no PYTHONPATH, no user site): hwprune is not importable there.
    r = subprocess.run([str(py), "-I", str(CHECKER), str(pkg), str(npz), str(dma)], capture_output=True, text=True,
                       timeout=600)
    line = next((l for l in r.stdout.splitlines() if l.startswith("{")), None)
    assert line is not None, r.stderr[-3000:]
    report = json.loads(line)
    assert report["pynq"] == version
    failed = {k: v for k, v in report["checks"].items() if v != "ok"}
    assert not failed and r.returncode == 0, "\n".join(f"{k}: {v}" for k, v in failed.items()) or r.stderr[-3000:]
    assert set(report["checks"]) == {"names", "signatures", "board path on a fake device"}
    assert (pkg / DRIVER_NAME).is_file()


def test_hwprune_is_not_importable_in_the_pynq_environment():
    """The check runs with -I in its own virtualenv; make sure that really isolates it (when the
    virtualenv exists already; creating it is the slow test's job)."""
    py = pynq_env.venv_python(pynq_env.VERSIONS[-1])
    if not py.exists():
        pytest.skip("the pynq virtualenv is created by test_driver_against_real_pynq")
    r = subprocess.run([str(py), "-I", "-c", "import importlib.util, sys; print(importlib.util.find_spec('hwprune') is None,"
                        " importlib.util.find_spec('onnx') is None)"], capture_output=True, text=True, cwd=HERE.parent)
    assert r.stdout.split() == ["True", "True"], (r.stdout, r.stderr)

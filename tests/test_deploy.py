"""`hwprune deploy` and the PYNQ driver, run board-free on the simulated overlay (the project's
AXI-Stream C simulation): outputs equal the csim engine bit for bit, bad inputs are refused
clearly, the package scripts run with --sim, and bad deploy requests write nothing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import hwprune
from hwprune import cli
from hwprune.backend import pynq_driver as drv
from hwprune.backend import pynq_sim
from hwprune.backend.csim import raw_outputs
from hwprune.backend.deploy import write_package
from hwprune.backend.project_dir import ProjectDir

from test_bitstream import ODD, _mlp, _two_in_two_out

PY = sys.executable


@pytest.fixture(scope="module")
def mlp_pkg(tmp_path_factory):
    """A 7-bit-in, 13-bit-out io_stream MLP for zcu104 (200 MHz) and its package."""
    d = tmp_path_factory.mktemp("mlp")
    prj = hwprune.export(_mlp(d / "mlp.onnx"), d / "prj", board="zcu104", io_type="stream", precision=ODD)
    return prj, write_package(prj, "zcu104", d / "pkg")


@pytest.fixture(scope="module")
def textcnn_pkg(tmp_path_factory):
    """The bundled TextCNN (token-id input, embedding, convs, pool, dense), io_stream, pynq-z2."""
    d = tmp_path_factory.mktemp("textcnn")
    data = resources.files("hwprune.data")
    prj = hwprune.export(str(data / "textcnn_small.onnx"), d / "prj", board="pynq-z2", io_type="stream")
    tokens = np.load(str(data / "textcnn_small_tokens.npy"))
    return prj, write_package(prj, "pynq-z2", d / "pkg"), tokens


def test_package_contents(mlp_pkg):
    prj, pkg = mlp_pkg
    names = sorted(p.name for p in pkg.iterdir())
    assert names == [".hwprune-output.json", "README.md", "accelerator.json", "hwprune_driver.py", "throughput.py", "validate.py"]
    spec = json.loads((pkg / "accelerator.json").read_text())
    top = ProjectDir(prj).top
    assert spec["format"] == drv.FORMAT and spec["board"] == "zcu104" and spec["clock_mhz"] == 200.0
    assert spec["overlay"] == dict(bitfile=f"{top}.bit", hwh=f"{top}.hwh", accel="hwp_accel", dma="hwp_dma")
    assert spec["registers"] == dict(ctrl=0, batch=16)
    assert spec["bus"]["width_bits"] == 64
    (x,), (y,) = spec["inputs"], spec["outputs"]
    assert (x["shape"], x["type"], x["width"], x["fields_per_word"], x["words_per_sample"]) == ([16], "ap_fixed<7,3>", 7, 9, 2)
    assert (y["shape"], y["width"], y["fields_per_word"], y["words_per_sample"]) == ([5], 13, 4, 2)
    assert spec["words_in_per_sample"] == 2 and spec["words_out_per_sample"] == 2
    readme = (pkg / "README.md").read_text()
    assert "zcu104" in readme and "scp -r pkg" in readme and "hwprune build" in readme  # no bitstream yet
    assert "PYNQ v3.0.1" in readme


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside functions): what the board must have."""
    mods: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(n, ast.Import):
                mods |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.module:
                mods.add(n.module.split(".")[0])
            stack.extend(ast.iter_child_nodes(n))
    return mods


def test_package_needs_only_pynq_and_numpy_on_the_board(mlp_pkg):
    _, pkg = mlp_pkg
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for script in ("hwprune_driver.py", "validate.py", "throughput.py"):
        assert _top_level_imports(pkg / script) - stdlib <= {"numpy", "pynq", "hwprune_driver"}, script
    # Importing and using it with hwprune (and pynq) unavailable: only the --sim path needs hwprune.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('hwprune', 'pynq', 'onnx', 'torch'): raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            f"sys.path.insert(0, {str(pkg)!r})\n"
            "import numpy as np, hwprune_driver as d\n"
            "spec = d.AcceleratorSpec.load(d.Path(sys.path[0]))\n"
            "print(d.pack_inputs(spec, [np.zeros((2, 16))]).shape)\n"
            "try:\n"
            "    d.open_accelerator(sys.path[0])\n"
            "except d.DriverError as e:\n"
            "    print(e)\n")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["(2, 2)", "pynq is not installed here: run on the board's PYNQ image, or pass "
                                               "--sim on a host with hwprune"]


def test_driver_on_the_simulated_overlay_equals_csim(mlp_pkg):
    prj, pkg = mlp_pkg
    x = np.random.default_rng(0).normal(size=(8, 16)) * 5
    ref = hwprune.run(prj, [x], engine="csim")[0]
    acc, ov = drv.open_accelerator(pkg, sim=True, max_batch=3)
    assert ov.clocks.fclk0_mhz == 200.0  # the driver set the PL clock to the design's
    y = acc.predict(x)
    np.testing.assert_array_equal(y, ref)
    assert (ov.batches, ov.samples) == (3, 8)  # 3 + 3 + 2: large inputs are split into DMA transfers
    np.testing.assert_array_equal(acc.run([x.astype(np.float32)])[0], hwprune.run(prj, [x.astype(np.float32)], engine="csim")[0])
    raw = acc.run_raw([drv.input_raw(x, acc.spec.inputs[0])])[0]
    np.testing.assert_array_equal(raw, raw_outputs(prj, [x])[0])
    one = acc.predict(x[:1])
    np.testing.assert_array_equal(one, ref[:1])
    acc.close()


def test_driver_runs_token_ids_through_the_text_cnn(textcnn_pkg):
    prj, pkg, tokens = textcnn_pkg
    acc, ov = drv.open_accelerator(pkg, sim=True)
    assert acc.spec.inputs[0].kind == "index" and acc.spec.inputs[0].width == 8
    np.testing.assert_array_equal(acc.predict(tokens[:20]), hwprune.run(prj, [tokens[:20]], engine="csim")[0])
    np.testing.assert_array_equal(acc.predict(tokens[:20].astype(np.int32)), hwprune.run(prj, [tokens[:20]], engine="csim")[0])
    with pytest.raises(drv.InputError, match="holds token ids: expected an integer array, got float64"):
        acc.predict(tokens[:2].astype(np.float64))
    bad = tokens[:2].copy()
    bad[0, 0] = 200
    with pytest.raises(drv.InputError, match=r"token ids must lie in \[0, 200\); got \[\d+, 200\]"):
        acc.predict(bad)


@pytest.mark.parametrize("x,words", [
    (np.zeros((4, 15)), r"got shape \(4, 15\); expected \(N, 16\) with the batch first"),
    (np.zeros(16), r"got shape \(16,\), which lacks the batch axis; use shape \(N, 16\)"),
    (np.zeros((2, 4, 4)), r"expected \(N, 16\)"),
    (np.zeros((2, 16), dtype=complex), "expected a numeric array, got dtype complex128"),
    (np.array([["a"] * 16]), "expected a numeric array"),
    (np.zeros((2, 16), dtype=bool), "got a boolean array"),
    (np.full((2, 16), np.nan), "NaN or infinite"),
])
def test_driver_rejects_wrong_shapes_and_dtypes(mlp_pkg, x, words):
    _, pkg = mlp_pkg
    acc, ov = drv.open_accelerator(pkg, sim=True)
    with pytest.raises(drv.InputError, match=words):
        acc.predict(x)
    assert ov.batches == 0  # nothing reached the accelerator


def test_driver_checks_the_number_of_inputs(tmp_path):
    prj = hwprune.export(_two_in_two_out(tmp_path / "two.onnx"), tmp_path / "prj", board="kv260")
    acc, _ = drv.open_accelerator(write_package(prj, "kv260", tmp_path / "pkg"), sim=True)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    for got, ref in zip(acc.run([a, b]), hwprune.run(prj, [a, b], engine="csim")):
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(drv.InputError, match=r"has 2 input\(s\) \(a, b\); got 1 array"):
        acc.run([a])
    with pytest.raises(drv.InputError, match="input 'b' has 2 samples, input 'a' 3"):
        acc.run([a, b[:2]])
    with pytest.raises(drv.InputError, match="predict\\(\\) is for one input and one output"):
        acc.predict(a)


def test_cache_maintenance_is_what_makes_the_results_right(mlp_pkg, monkeypatch):
    """The simulated buffers only show the device what was flushed: skip the flush and the
    accelerator computes on stale memory."""
    prj, pkg = mlp_pkg
    x = np.random.default_rng(2).normal(size=(4, 16)) * 3
    ref = hwprune.run(prj, [x], engine="csim")[0]
    acc, _ = drv.open_accelerator(pkg, sim=True)
    np.testing.assert_array_equal(acc.predict(x), ref)
    monkeypatch.setattr(pynq_sim.SimBuffer, "flush", lambda self: None)
    acc2, _ = drv.open_accelerator(pkg, sim=True)
    assert not np.array_equal(acc2.predict(x), ref)


class _OffByOne:
    """An IP whose batch register receives one sample more than is sent."""

    def __init__(self, ip):
        self.ip = ip

    def read(self, offset):
        return self.ip.read(offset)

    def write(self, offset, value):
        self.ip.write(offset, value + 1 if offset == drv.REG_BATCH else value)


def test_a_stuck_transfer_times_out_with_a_clear_error(mlp_pkg):
    _, pkg = mlp_pkg
    spec = drv.AcceleratorSpec.load(pkg)
    ov = pynq_sim.SimulatedOverlay(spec, spec.extra["project_dir"])
    acc = drv.Accelerator(spec, _OffByOne(ov.ip), ov.dma, ov.allocate, ov.clocks, timeout_s=0.2)
    with pytest.raises(drv.AcceleratorTimeout, match=r"DMA receive \(S2MM\) did not complete within 0.2 s for a batch of 2"):
        acc.predict(np.zeros((2, 16)))


def test_a_short_receive_buffer_is_a_dma_error(mlp_pkg):
    _, pkg = mlp_pkg
    spec = drv.AcceleratorSpec.load(pkg)
    ov = pynq_sim.SimulatedOverlay(spec, spec.extra["project_dir"])

    calls = []

    def allocate(shape, dtype):  # the second buffer (the receive side) one word short
        calls.append(shape)
        return ov.allocate(shape=(shape[0] - 1,) if len(calls) == 2 else shape, dtype=dtype)

    acc = drv.Accelerator(spec, ov.ip, ov.dma, allocate, ov.clocks, timeout_s=1.0)
    with pytest.raises(drv.AcceleratorError, match=r"DMA receive \(S2MM\) reports an error"):
        acc.predict(np.zeros((2, 16)))


def test_no_clock_control_is_logged(mlp_pkg, caplog):
    _, pkg = mlp_pkg
    spec = drv.AcceleratorSpec.load(pkg)
    ov = pynq_sim.SimulatedOverlay(spec, spec.extra["project_dir"])
    with caplog.at_level("WARNING", logger="hwprune_driver"):
        drv.Accelerator(spec, ov.ip, ov.dma, ov.allocate, clocks=None)
    assert "design: 200.000 MHz" in caplog.text


# ---------------------------------------------------------------- the package scripts

def _script(pkg: Path, name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(pkg / name), *args], capture_output=True, text=True, cwd=cwd or pkg.parent)


def test_validate_with_sim_reproduces_the_csim_run(textcnn_pkg, tmp_path):
    prj, pkg, tokens = textcnn_pkg
    np.save(tmp_path / "x.npy", tokens)
    assert cli.main(["run", str(prj), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "ref.npy"),
                     "--engine", "csim"]) == 0
    ref = np.load(tmp_path / "ref.npy")
    labels = ref.argmax(axis=1)
    labels[:16] = 1 - labels[:16]  # a quarter wrong
    np.save(tmp_path / "labels.npy", labels)
    r = _script(pkg, "validate.py", "--sim", "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "labels.npy"),
                "--reference", str(tmp_path / "ref.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref)
    assert "accuracy: 0.7500" in r.stdout
    assert "agreement: 1.0000 of samples bit-exact, argmax 1.0000, max |difference| 0" in r.stdout
    assert "modelled hardware time for the batch" in r.stdout


def test_validate_errors_are_one_line(textcnn_pkg, tmp_path):
    _, pkg, tokens = textcnn_pkg
    np.save(tmp_path / "bad.npy", tokens[:, :10])
    r = _script(pkg, "validate.py", "--sim", "--input", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("validate.py: error: input 'tokens': got shape (64, 10); expected (N, 24) with the batch first")
    r = _script(pkg, "validate.py", "--sim", "--input", str(tmp_path / "missing.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and r.stderr.strip() == f"validate.py: error: --input file {tmp_path / 'missing.npy'} does not exist"
    r = _script(pkg, "validate.py", "--input", str(tmp_path / "bad.npy"), "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "pynq is not installed here" in r.stderr  # no board, no --sim
    r = _script(pkg, "validate.py", "--sim", "--project", str(tmp_path), "--input", str(tmp_path / "bad.npy"),
                "--output", str(tmp_path / "y.npy"))
    assert r.returncode == 2 and "not an hwprune project" in r.stderr
    assert not (tmp_path / "y.npy").exists()


def test_throughput_with_sim(mlp_pkg):
    _, pkg = mlp_pkg
    r = _script(pkg, "throughput.py", "--sim", "--batch", "10", "--repeats", "1", "--max-batch", "4")
    assert r.returncode == 0, r.stderr
    assert "throughput (C simulation on the host): batch 10 x 1" in r.stdout
    assert "modelled hardware: latency" in r.stdout and "at 200 MHz" in r.stdout and "hwprune.simulate" in r.stdout


def test_modelled_timing_adds_the_bus_beats(mlp_pkg):
    prj, pkg = mlp_pkg
    spec = drv.AcceleratorSpec.load(pkg)
    sim = hwprune.simulate(prj, "zcu104", batch=4)
    t = pynq_sim.modelled_timing(prj, spec)
    assert t["latency_cycles"] == sim.latency_cycles + spec.words_in + spec.words_out
    assert t["interval_cycles"] == max(sim.interval_cycles, spec.words_in, spec.words_out)


# ---------------------------------------------------------------- hwprune deploy

def test_deploy_command(mlp_pkg, tmp_path, capsys):
    prj, _ = mlp_pkg
    out = tmp_path / "pkg"
    assert cli.main(["deploy", str(prj), "--board", "zcu-104", "--out", str(out)]) == 0  # aliases work
    assert "without the bitstream" in capsys.readouterr().out
    assert (out / "hwprune_driver.py").read_text() == Path(drv.__file__).read_text()


def test_deploy_copies_a_built_bitstream(tmp_path):
    prj = hwprune.export(_mlp(tmp_path / "mlp.onnx"), tmp_path / "prj", board="pynq-z1")
    top = ProjectDir(prj).top
    (prj / "bitstream").mkdir()
    (prj / "bitstream" / f"{top}.bit").write_bytes(b"BIT")
    (prj / "bitstream" / f"{top}.hwh").write_text("HWH")
    pkg = write_package(prj, "pynq-z1", tmp_path / "pkg")
    assert (pkg / f"{top}.bit").read_bytes() == b"BIT" and (pkg / f"{top}.hwh").read_text() == "HWH"
    assert "**missing**" not in (pkg / "README.md").read_text()


def _deploy_error(args: list[str], capsys) -> str:
    assert cli.main(["deploy", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_deploy_refuses_bad_requests_and_writes_nothing(mlp_pkg, tmp_path, capsys):
    prj, _ = mlp_pkg
    out = tmp_path / "pkg"
    assert "not an hwprune project" in _deploy_error([str(tmp_path), "--board", "zcu104", "--out", str(out)], capsys)
    assert not out.exists()
    err = _deploy_error([str(prj), "--board", "pynq-z2", "--out", str(out)], capsys)
    assert "was exported for zcu104, not pynq-z2" in err and not out.exists()
    assert "unknown board" in _deploy_error([str(prj), "--board", "zcu999", "--out", str(out)], capsys)
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert "exists and is not empty" in _deploy_error([str(prj), "--board", "zcu104", "--out", str(out)], capsys)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert "inside the project" in _deploy_error([str(prj), "--board", "zcu104", "--out", str(prj / "pkg")], capsys)
    # --force replaces only hwprune's own output, never the user's files.
    assert "not written by hwprune" in _deploy_error([str(prj), "--board", "zcu104", "--out", str(out), "--force"], capsys)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    (out / "mine.txt").unlink()
    assert cli.main(["deploy", str(prj), "--out", str(out)]) == 0  # the board comes from the project
    assert cli.main(["deploy", str(prj), "--board", "zcu104", "--out", str(out), "--force"]) == 0
    assert (out / "accelerator.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary directories left


def test_a_failure_while_writing_leaves_nothing(mlp_pkg, tmp_path, monkeypatch):
    prj, _ = mlp_pkg
    import hwprune.backend.deploy as deploy

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(deploy.shutil, "copyfile", boom)
    with pytest.raises(OSError, match="disk full"):
        write_package(prj, "zcu104", tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []

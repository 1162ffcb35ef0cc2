"""A fit verdict wherever a design is written, the routing headroom, and the deployment shell.

Issue 13: `hwprune export` of a design at 1720% of the DSPs printed "wrote prj" and exited 0;
`deploy` was as silent. Issue 9: the demo's design used 99.9% of the LUTs, which Vivado will not
route at 100 MHz. Now every command that writes a design prints one line — fits / does not fit,
the binding resource and its share, the headroom rule, a suggestion — `--json` carries it, the
budgets keep the headroom, and the estimate counts the shell a bitstream project adds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import helper

import hwprune
from conftest import fin, iin, make_model
from hwprune.board import DEFAULT_HEADROOM, Headroom, HeadroomError, Resources, load_board
from hwprune.cli import main
from hwprune.codesign.budget import Budget
from hwprune.fixed import FixedType
from hwprune.precision import PrecisionConfig
from hwprune.verdict import fit_verdict

Z2 = load_board("pynq-z2")
RNG = np.random.default_rng(0)


def wide_mlp(n: int = 96):
    """Linear(n, n) on 16 bits: n*n DSP multipliers at reuse factor 1 (n=96: 9216 = 4189% of 220)."""
    return make_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")], [fin("x", n)],
                      [fin("y", n)], [("w", RNG.normal(size=(n, n)) * 0.1), ("b", RNG.normal(size=n) * 0.1)])


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_of_a_design_that_does_not_fit_prints_the_verdict(tmp_path, capsys):
    m = tmp_path / "wide.onnx"
    import onnx

    onnx.save(wide_mlp(), m)
    code, out, err = run_cli(capsys, "export", m, "--board", "pynq-z2", "--out", tmp_path / "prj", "--precision",
                             "ap_fixed<16,6,AP_RND_CONV,AP_SAT>")
    assert code == 0, err  # the user's choice: the project is written
    assert (tmp_path / "prj" / "hwprune_project.json").is_file()
    lines = [l for l in out.splitlines() if l.startswith("fit: ")]
    assert len(lines) == 1
    v = lines[0]
    assert "does not fit pynq-z2" in v and "DSP" in v and "limit 85%" in v
    assert "LUT/FF <= 80%, DSP/BRAM/URAM <= 85% of the device" in v and "deployment shell counted" in v
    rf = int(v.split("--reuse-factor ")[1].split()[0])
    # The suggestion is the smallest power-of-two reuse factor that fits, and it does fit.
    code, out, _ = run_cli(capsys, "export", m, "--board", "pynq-z2", "--out", tmp_path / "prj2", "--precision",
                           "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", "--reuse-factor", rf, "--json")
    d = json.loads(out)
    assert code == 0 and d["verdict"]["fits"] and d["out"] == str(tmp_path / "prj2")
    half = hwprune.fit(m, "pynq-z2", precision=PrecisionConfig().with_overrides(
        result=FixedType.parse("ap_fixed<16,6,AP_RND_CONV,AP_SAT>"), reuse_factor=rf // 2))
    assert not half.fits


def test_verdict_json_of_estimate_export_and_the_project(tmp_path, capsys, mlp_model):
    code, out, _ = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--json")
    d = json.loads(out)
    v = d["verdict"]
    assert code == 0 and v["fits"] and v["binding"] in ("lut", "ff", "dsp", "bram18", "uram")
    assert v["headroom"] == DEFAULT_HEADROOM.as_dict() and v["shell"] and v["message"].startswith("fits pynq-z2")
    assert d["shell"]["parts"] and d["resources"]["lut"] >= d["network_resources"]["lut"] + 4000
    code, out, _ = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", tmp_path / "p", "--json")
    assert code == 0 and json.loads(out)["verdict"]["message"] == v["message"]
    assert hwprune.fit(tmp_path / "p").message == v["message"]  # a project's own board


def test_deploy_and_build_say_the_verdict(tmp_path, capsys, mlp_model):
    assert main(["export", str(mlp_model), "--board", "pynq-z2", "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    code, out, err = run_cli(capsys, "deploy", tmp_path / "p", "--board", "pynq-z2", "--out", tmp_path / "pkg")
    assert code == 0, err
    assert sum(l.startswith("fit: fits pynq-z2") for l in out.splitlines()) == 1
    code, out, _ = run_cli(capsys, "deploy", tmp_path / "p", "--board", "pynq-z2", "--out", tmp_path / "pkg2", "--json")
    assert code == 0 and json.loads(out)["verdict"]["fits"]
    # build: the verdict comes before the vendor tools (missing here: exit 2, one line).
    code, out, err = run_cli(capsys, "build", tmp_path / "p")
    assert out.startswith("fit: fits pynq-z2")
    if code == 2:
        assert "vitis_hls" in err and len(err.strip().splitlines()) == 1


def test_a_design_over_the_headroom_is_flagged_even_when_it_fits_the_device():
    class Est:  # what fit_verdict reads of a DesignEstimate
        board, clock_mhz, shell, fifo = "pynq-z2", 100.0, None, {}

        def __init__(self, lut):
            self.lut = lut

        def utilization(self):
            return dict(dsp=0.1, lut=self.lut / 53200, ff=0.2, bram18=0.3, uram=0.0)

    v = fit_verdict(Est(53150), suggest=False)  # the demo's design: 99.9% of the LUTs
    assert not v.fits and v.fits_device and v.binding == "lut" and v.over == ["lut"]
    assert "does not fit pynq-z2: LUT 99.9% (limit 80%)" in v.message and "HLS IP only" in v.message
    assert fit_verdict(Est(53150), Headroom.parse("lut=1"), suggest=False).fits
    assert fit_verdict(Est(40000), suggest=False).fits  # 75%


def test_headroom_parses_and_refuses_nonsense(capsys, mlp_model):
    assert Headroom.parse(None) == DEFAULT_HEADROOM and Headroom.parse("none").as_dict() == dict.fromkeys(
        ("dsp", "lut", "ff", "bram18", "uram"), 1.0)
    assert Headroom.parse("lut=0.85,bram=0.9").as_dict() == dict(dsp=0.85, lut=0.85, ff=0.8, bram18=0.9, uram=0.85)
    assert Headroom.parse("0.7").lut == 0.7
    for bad in ("lut=1.5", "lot=0.8", "lut", "0", "lut=x"):
        with pytest.raises(HeadroomError):
            Headroom.parse(bad)
        code, _, err = run_cli(capsys, "estimate", mlp_model, "--board", "pynq-z2", "--headroom", bad)
        assert code == 2 and "--headroom" in err and len(err.strip().splitlines()) == 1


def test_budgets_keep_the_headroom():
    caps = Budget(latency_us=100).caps(Z2)
    assert caps["lut"] == math.floor(0.8 * 53200) and caps["ff"] == math.floor(0.8 * 106400)
    assert caps["dsp"] == math.floor(0.85 * 220) and caps["bram18"] == math.floor(0.85 * 280)
    assert Budget(lut=0.9).caps(Z2)["lut"] == caps["lut"]  # the headroom caps a looser budget
    assert Budget(lut=0.5).caps(Z2)["lut"] == 26600  # a tighter budget stays
    assert Budget(latency_us=100, headroom=Headroom.parse("none")).caps(Z2)["lut"] == 53200
    assert "routing headroom" in Budget(lut=0.9).describe_limit("lut", Z2)


def test_the_solver_never_goes_over_the_headroom():
    from hwprune.codesign.solver import solve
    from hwprune.codesign.space import Choice, DesignSpace, Option, Site
    from hwprune.ops.base import LayerCost

    # Two sites: the exact options (no loss) take 45% of the LUTs each, the pruned ones 30%.
    sites = [Site(f"m{i}", f"L{i}", "conv", [
        Option(Choice("dense", 0.0, 8, 1), 0.0, LayerCost(latency=100, ii=90, lut=0.45 * 53200)),
        Option(Choice("block:4x4", 0.5, 8, 1), 0.01, LayerCost(latency=100, ii=90, lut=0.30 * 53200))]) for i in range(2)]
    from hwprune.sim.compose import LatencyDag

    chain = LatencyDag(("L0", "L1"), ((), (0,)), (1,))  # L0 -> L1
    space = DesignSpace(sites, dict(dsp=0.0, lut=0.0, ff=0.0, bram18=0.0, uram=0.0), chain, {}, 1, Z2, 100.0, "stream")
    free = solve(space, Budget(latency_us=1000, headroom=Headroom.parse("none")))
    kept = solve(space, Budget(latency_us=1000))
    assert free.predicted["lut"] == pytest.approx(0.9 * 53200)  # the least-loss design would not route
    assert kept.predicted["lut"] <= 0.8 * 53200 and kept.predicted_loss > free.predicted_loss


def test_the_estimate_counts_the_deployment_shell(mlp_model):
    with_shell = hwprune.estimate(mlp_model, "pynq-z2")
    ip = hwprune.estimate(mlp_model, "pynq-z2", shell=False)
    names = [p.name for p in with_shell.shell]
    assert names == ["AXI-Stream top", "AXI DMA", "SmartConnect (control)", "SmartConnect (memory)", "processor system reset"]
    shell = sum((p.resources for p in with_shell.shell), Resources())
    assert with_shell.resources.lut == ip.resources.lut + shell.lut and with_shell.resources.ff == ip.resources.ff + shell.ff
    assert with_shell.resources.bram18 >= ip.resources.bram18 + 2 and ip.shell is None
    # The parts add up to the total.
    parts = with_shell.parts()
    for k in ("lut", "ff", "dsp"):
        assert sum(r[k] for _, _, r in parts) == pytest.approx(getattr(with_shell.resources, k), abs=1)
    assert "not counted" in fit_verdict(ip).message and "counted" in fit_verdict(with_shell).message


def test_a_model_no_reuse_factor_saves_gets_a_larger_board():
    """An embedding table of 16000 x 64 at 8 bits (8.2 Mbit) is more BRAM than the pynq-z2 has
    at any reuse factor; the verdict names a board it fits."""
    m = make_model([helper.make_node("Gather", ["t", "ids"], ["y"], name="emb")], [iin("ids", 4)], [fin("y", 4, 64)],
                   [("t", RNG.normal(size=(16000, 64)))])
    v = hwprune.fit(m, "pynq-z2", io_type="stream",
                    precision=PrecisionConfig().with_overrides(result=FixedType.parse("ap_fixed<8,3>")))
    assert not v.fits and v.binding == "bram18" and v.larger_board in ("zcu104", "zcu102", "kv260", "ultra96-v2")
    assert f"it fits {v.larger_board}" in v.message


def test_the_report_flags_any_resource_over_the_headroom():
    """Issue 9: the report flags any resource over the headroom (the summary rows and red bars)."""
    from hwprune.report.design import summary_rows
    from hwprune.report.svg import bars

    class V:
        headroom = DEFAULT_HEADROOM.as_dict()
        shell = True
        message = "does not fit pynq-z2: LUT 99.9% (limit 80%)"

    report = dict(board="pynq-z2", clock_mhz=100.0, io_type="stream", budget=dict(latency_us=80.0), accuracy_before=0.77,
                  accuracy_after=0.74, latency_cycles=6000, latency_us=60.0, timing_source="simulation",
                  throughput_per_s=20000.0, interval_cycles=5000, meets_budget=False,
                  resources=dict(dsp=10, lut=53150, ff=50000, bram18=100, uram=0),
                  utilization=dict(dsp=10 / 220, lut=53150 / 53200, ff=50000 / 106400, bram18=100 / 280, uram=0.0))
    rows = dict(summary_rows(report, None, V()))
    assert "OVER the 80% routing headroom" in rows["LUT"] and "OVER" not in rows["FF"] and "(headroom 85%)" in rows["DSP"]
    assert rows["fit"].startswith("does not fit") and rows["deployment shell (AXI DMA, SmartConnect, AXI-Stream top)"]
    svg = bars([("fc", 45000.0), ("shell", 8150.0)], 53200, "LUT", limit=0.8 * 53200, total=53150.0)
    assert svg.count('fill="#d62728" class="bar"') == 1 and 'fill="#d62728" class="total"' in svg

"""`hwprune compare` end to end on a small synthetic text task: the rows, their invariants
(patterns the kernel skips save cycles and memory at an equal multiplier budget, those it
cannot skip save nothing, N:M appears once at its own sparsity), the JSON keys, the
fixed-point accuracy agreeing with the quantized torch model, and the one-line errors."""

from __future__ import annotations

import json

import pytest

from hwprune.cli import main
from test_text import synthetic_csv

KEYS = {"pattern", "sparsity", "bits", "accuracy", "params", "memory_bits", "macs", "latency_cycles", "dsp", "lut", "bram18"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    csv = synthetic_csv(d / "d.csv", n=600)
    code = main(["train", "--data", str(csv), "--text-column", "review", "--label-column", "sentiment", "--epochs", "3",
                 "--seq-len", "12", "--embeddings", "random", "--out", str(d / "model")])
    assert code == 0
    return d / "model"


@pytest.mark.slow
def test_compare_rows_and_json(model_dir, tmp_path, capsys):
    out = tmp_path / "rows.json"
    code = main(["compare", str(model_dir), "--board", "pynq-z2", "--patterns", "unstructured,block:4x4,nm:2:4,filter",
                 "--sparsity", "0.5,0.75", "--epochs", "1", "--qat-epochs", "1", "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["pattern"], r["sparsity"]) for r in rows] == [
        ("dense", 0.0), ("dense", 0.0), ("unstructured", 0.5), ("unstructured", 0.75), ("block:4x4", 0.5),
        ("block:4x4", 0.75), ("nm:2:4", 0.5), ("filter", 0.5), ("filter", 0.75)]
    assert all(KEYS <= set(r) for r in rows)
    assert "speed-up" in text and "block:4x4" in text
    dense_f, dense_q = rows[0], rows[1]
    assert dense_f["bits"] == 32 and dense_q["bits"] == 8
    by = {(r["pattern"], r["sparsity"]): r for r in rows[2:]}
    for r in rows[1:]:
        assert r["accuracy"] == pytest.approx(r["torch_accuracy"], abs=0.011)  # fixed engine vs quantized torch
        assert r["multipliers"] <= dense_q["multipliers"] * 1.02 + 2  # the equal-multiplier budget
    # The task is easy: every model stays far above chance.
    assert min(r["accuracy"] for r in rows) > 0.75
    # Unstructured zeros: nominal sparsity, but the dense kernel executes and stores everything.
    u = by[("unstructured", 0.75)]
    assert u["nominal_sparsity"] > 0.7 and u["macs"] == dense_q["macs"] and u["memory_bits"] == dense_q["memory_bits"]
    assert u["latency_cycles"] == pytest.approx(dense_q["latency_cycles"], rel=0.02)
    # Balanced blocks: a quarter of the conv work at 75%, fewer cycles at the same multipliers.
    b = by[("block:4x4", 0.75)]
    assert b["macs"] < 0.3 * dense_q["macs"] + 1000 and b["latency_cycles"] < 0.5 * dense_q["latency_cycles"]
    assert b["memory_bits"] < dense_q["memory_bits"] and b["index_bits"] > 0
    assert by[("block:4x4", 0.5)]["latency_cycles"] > b["latency_cycles"]
    # Filter pruning: a physically smaller network.
    f = by[("filter", 0.75)]
    assert f["macs"] < 0.3 * dense_q["macs"] + 1000 and f["index_bits"] == 0 and f["params"] < dense_q["params"]


@pytest.mark.parametrize("args,msg", [
    (["--patterns", "block:3"], "pattern"),
    (["--sparsity", "0.5,x"], "comma-separated"),
    (["--sparsity", "1.5"], "sparsity"),
    (["--bits", "1"], "--bits"),
])
def test_compare_bad_input_is_one_line(model_dir, capsys, args, msg):
    code = main(["compare", str(model_dir), "--board", "pynq-z2", *args])
    err = capsys.readouterr().err
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_compare_refuses_a_missing_model_dir_and_an_existing_json(model_dir, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), "--board", "pynq-z2"]) == 2
    assert "hwprune train" in capsys.readouterr().err
    j = tmp_path / "x.json"
    j.write_text("{}")
    assert main(["compare", str(model_dir), "--board", "pynq-z2", "--json", str(j)]) == 2
    assert "--force" in capsys.readouterr().err and j.read_text() == "{}"

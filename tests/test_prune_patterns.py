"""Pruning patterns: the invariants every mask must satisfy, and one-shot ONNX pruning that
keeps the model runnable with unchanged output shapes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from conftest import fin, make_model
from hwprune.cli import main
from hwprune.errors import ConfigError
from hwprune.pipeline import run_onnx
from hwprune.prune.onnx_prune import META_PREFIX, prune_onnx
from hwprune.prune.patterns import Pattern, bank_counts, kept_count, mask, sparsity_of

RNG = np.random.default_rng(0)
W = RNG.normal(size=(16, 32))


@pytest.mark.parametrize("s", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("text", ["block:4x4", "block:2x8", "block:4x4:col", "block:1x1"])
def test_every_bank_keeps_exactly_k_blocks(text, s):
    p = Pattern.parse(text)
    m = mask(W, p, s)
    counts = bank_counts(m, p)
    br, bc = p.block
    per_bank = (W.shape[0] // br) if p.column_balanced else (W.shape[1] // bc)
    assert np.all(counts == kept_count(per_bank, s))
    # Blocks are all-or-nothing.
    blocks = m.reshape(W.shape[0] // br, br, W.shape[1] // bc, bc)
    assert np.all(blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3)))


def test_block_choice_follows_l2_norm():
    w = np.zeros((4, 8))
    w[:, 4:] = 1.0  # the second 4x4 block of every bank dominates
    m = mask(w, Pattern.parse("block:4x4"), 0.5)
    assert m[:, 4:].all() and not m[:, :4].any()


@pytest.mark.parametrize("n,m_", [(2, 4), (1, 4), (4, 8)])
def test_every_nm_group_holds(n, m_):
    p = Pattern.parse(f"nm:{n}:{m_}")
    m = mask(W, p, 1 - n / m_)
    assert np.all(m.reshape(-1, m_).sum(axis=1) == n)
    assert sparsity_of(m) == pytest.approx(1 - n / m_)


@pytest.mark.parametrize("bank,s", [(8, 0.5), (8, 0.75), (16, 0.9)])
def test_bank_balanced_rows(bank, s):
    m = mask(W, Pattern.parse(f"bbs:{bank}"), s)
    per_bank = m.reshape(W.shape[0], -1, bank).sum(axis=2)
    assert np.all(per_bank == kept_count(bank, s))
    # Within a bank the largest magnitudes are kept.
    seg = np.abs(W[0, :bank])
    assert set(np.flatnonzero(m[0, :bank])) == set(np.argsort(-seg)[: kept_count(bank, s)])


def test_unstructured_and_filter():
    m = mask(W, Pattern.parse("unstructured"), 0.75)
    assert m.sum() == kept_count(W.size, 0.75)
    assert np.abs(W[m]).min() >= np.abs(W[~m]).max()
    f = mask(W, Pattern.parse("filter"), 0.5)
    rows = f.all(axis=1)
    assert rows.sum() == 8 and np.all(f.any(axis=1) == rows)


@pytest.mark.parametrize("text", ["block:3", "bbs:1", "nm:4:2", "diagonal", "block:0x4"])
def test_bad_patterns_are_refused(text):
    with pytest.raises(ConfigError):
        Pattern.parse(text)


def _cnn():
    rng = np.random.default_rng(1)
    return make_model(
        [helper.make_node("Conv", ["x", "wc", "bc"], ["c"], kernel_shape=[3], pads=[1, 1]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
         helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
         helper.make_node("MatMul", ["h", "w2"], ["y"])],
        [fin("x", 4, 8)], [fin("y", 2)],
        [("wc", rng.normal(size=(8, 4, 3))), ("bc", rng.normal(size=8)), ("w1", rng.normal(size=(16, 64))),
         ("b1", rng.normal(size=16)), ("w2", rng.normal(size=(16, 2)))])


@pytest.mark.parametrize("text,s", [("unstructured", 0.9), ("block:4x4", 0.75), ("block:4x4:col", 0.5),
                                    ("bbs:8", 0.75), ("nm:2:4", 0.5), ("filter", 0.5)])
def test_pruned_onnx_runs_with_unchanged_shapes(tmp_path, text, s):
    model = _cnn()
    x = RNG.normal(size=(3, 4, 8)).astype(np.float32)
    proto, report = prune_onnx(model, Pattern.parse(text), s)
    y0, y1 = run_onnx(model, [x])[0], run_onnx(proto, [x])[0]
    assert y0.shape == y1.shape
    pruned = [r for r in report if not r.skipped]
    assert pruned and all(abs(r.sparsity - s) < 0.1 for r in pruned)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert all(meta[META_PREFIX + r.weight] == str(Pattern.parse(text)) for r in pruned)
    if text == "filter":
        # The classifier (its rows are the 2 classes) is never filter-pruned.
        assert any(r.weight == "w2" and r.skipped for r in report)
        w1 = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == "w1"))
        b1 = numpy_helper.to_array(next(i for i in proto.graph.initializer if i.name == "b1"))
        dead = ~w1.any(axis=1)
        assert dead.sum() == 8 and np.all(b1[dead] == 0)


def test_prune_cli(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save(_cnn(), src)
    out = tmp_path / "p.onnx"
    assert main(["prune", str(src), "--pattern", "block:4x4", "--sparsity", "0.75", "--out", str(out)]) == 0
    w1 = numpy_helper.to_array(next(i for i in onnx.load(out).graph.initializer if i.name == "w1"))
    assert sparsity_of(w1 != 0) == pytest.approx(0.75)
    # Occupied --out without --force, and a bad pattern: exit 2, one line.
    assert main(["prune", str(src), "--pattern", "block:4x4", "--sparsity", "0.75", "--out", str(out)]) == 2
    assert main(["prune", str(src), "--pattern", "zigzag", "--sparsity", "0.5", "--out", str(tmp_path / "q.onnx")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any("left dense" in l and "4x4" in l for l in lines)  # the 2-class output layer cannot be blocked
    err = [l for l in lines if "error:" in l]
    assert len(err) == 2 and "--force" in err[0] and "zigzag" in err[1]
    assert not (tmp_path / "q.onnx").exists()

"""The deployment package of a text design takes real text (issue 13): the demo's design keeps
a cut vocabulary, but neither design/ nor deploy/ shipped it, ids of the trained model's
vocab.json were refused, and the X.npy the report suggested did not exist. Now the design's
vocabulary and remap (text.json) and samples (x.npy, y.npy, texts.txt) ship with design/ and
deploy/, and validate.py and the driver accept raw text or the original ids."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import hwprune
from hwprune.backend import pynq_driver as drv
from hwprune.backend.deploy import write_package
from hwprune.cli import main

PY = sys.executable
KEEP = 40


@pytest.fixture(scope="module")
def text_design(tmp_path_factory):
    """A trained TextCNN whose vocabulary is cut to KEEP tokens, exported as a design directory
    (DIR/project beside DIR/text.json, x.npy, y.npy, texts.txt, as the demo writes it)."""
    from test_text import synthetic_csv

    from hwprune.demo import text_spec
    from hwprune.frontend.torch_export import export_torch
    from hwprune.prune.vocab import prune_vocabulary
    from hwprune.text.train import load_model_dir

    d = tmp_path_factory.mktemp("textpkg")
    csv = synthetic_csv(d / "d.csv", n=300)
    assert main(["train", "--data", str(csv), "--text-column", "review", "--label-column", "sentiment", "--epochs", "1",
                 "--seq-len", "10", "--embeddings", "random", "--out", str(d / "model")]) == 0
    md = load_model_dir(d / "model")
    texts = md.data.load().texts
    train = [texts[i] for i in md.splits["train"]]
    model = copy.deepcopy(md.model).eval()
    model.embedding, small = prune_vocabulary(model.embedding, md.vocab, train, KEEP)
    design = d / "design"
    prj = hwprune.export(export_torch(model, torch.zeros((1, 10), dtype=torch.long)), design / "project",
                         board="pynq-z2", io_type="stream")
    # The id map the budget pruner writes beside a design whose vocabulary it cut.
    index = {t: i for i, t in enumerate(small.tokens)}
    unk = index.get("<unk>", 1)
    np.save(design / "input_map.npy", np.array([index.get(t, unk) for t in md.vocab.tokens], dtype=np.int64))
    spec = text_spec(md, design, KEEP)
    (design / "text.json").write_text(json.dumps(spec))
    test = md.splits["test"][:6]
    remap = np.asarray(spec["remap"])
    x_orig = md.vocab.encode([texts[i] for i in test], 10)
    np.save(design / "x.npy", remap[x_orig])
    np.save(design / "y.npy", md.data.load().labels[test])
    (design / "texts.txt").write_text("".join(texts[i] + "\n" for i in test))
    pkg = write_package(prj, "pynq-z2", d / "pkg")
    return md, prj, pkg, [texts[i] for i in test], x_orig, remap


def test_text_json_holds_the_design_vocabulary_and_remap(text_design):
    md, prj, pkg, texts, x_orig, remap = text_design
    for name in ("text.json", "x.npy", "y.npy", "texts.txt"):
        assert (pkg / name).is_file(), name
    enc = drv.TextEncoder.load(pkg)
    g = hwprune.project.load_project_graph(prj)
    assert len(enc.tokens) == KEEP == g.tensor(g.inputs[0]).index_range
    assert enc.original_vocab_size == len(md.vocab) > KEEP and enc.classes == ["neg", "pos"]
    # Raw text through the package's tokenizer = the trained model's encoding mapped to the design.
    np.testing.assert_array_equal(enc.encode(texts), remap[x_orig])
    np.testing.assert_array_equal(enc.from_original(x_orig), remap[x_orig])
    np.testing.assert_array_equal(np.load(pkg / "x.npy"), remap[x_orig])
    assert "validate.py --text" in (pkg / "README.md").read_text()


def _validate(pkg, tmp_path, *args):
    return subprocess.run([PY, str(pkg / "validate.py"), "--sim", *map(str, args), "--output", str(tmp_path / "y.npy")],
                          capture_output=True, text=True)


def test_validate_takes_raw_text_or_the_original_ids(text_design, tmp_path):
    md, prj, pkg, texts, x_orig, remap = text_design
    want = hwprune.run(prj, [remap[x_orig]], engine="csim")[0]
    r = _validate(pkg, tmp_path, "--text", pkg / "texts.txt", "--labels", pkg / "y.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    assert "accuracy:" in r.stdout and ("neg:" in r.stdout or "pos:" in r.stdout)
    np.save(tmp_path / "orig.npy", x_orig)
    r = _validate(pkg, tmp_path, "--input", tmp_path / "orig.npy", "--original-ids")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)
    r = _validate(pkg, tmp_path, "--input", pkg / "x.npy", "--labels", pkg / "y.npy")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)


def test_original_ids_without_the_flag_get_a_hint(text_design, tmp_path):
    md, prj, pkg, texts, x_orig, remap = text_design
    big = np.full((2, 10), len(md.vocab) - 1)
    np.save(tmp_path / "orig.npy", big)
    r = _validate(pkg, tmp_path, "--input", tmp_path / "orig.npy")
    assert r.returncode == 2 and "--original-ids" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _validate(pkg, tmp_path)
    assert r.returncode == 2 and "--text" in r.stderr

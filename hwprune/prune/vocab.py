"""Vocabulary pruning: keep the embedding rows of the tokens the task uses.

The embedding dominates a text model's parameters (96% of the TextCNN's), and whether it fits
in BRAM/URAM is the first hardware decision. Tokens are ranked by their count in the training
texts; the kept ones keep their vectors, the rest map to <unk>. <pad> and <unk> always stay.
"""

from __future__ import annotations

from collections import Counter

import torch

from hwprune.errors import ConfigError
from hwprune.text.data import PAD, UNK, Vocabulary, tokenize


def prune_vocabulary(embedding: torch.nn.Embedding, vocab: Vocabulary, texts: list[str], keep: int,
                     min_count: int = 1) -> tuple[torch.nn.Embedding, Vocabulary]:
    """A smaller embedding and vocabulary holding the `keep` most frequent tokens of `texts`
    (those seen at least `min_count` times), plus <pad> and <unk>."""
    if keep < 2:
        raise ConfigError(f"keep={keep}: the vocabulary needs at least <pad> and <unk>")
    index = {t: i for i, t in enumerate(vocab.tokens)}
    counts = Counter(t for text in texts for t in tokenize(text) if t in index)
    ranked = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count
              and index[t] not in (PAD, UNK)]
    tokens = [vocab.tokens[PAD], vocab.tokens[UNK]] + ranked[: keep - 2]
    rows = torch.tensor([index[t] for t in tokens], dtype=torch.long)
    new = torch.nn.Embedding(len(tokens), embedding.embedding_dim, padding_idx=embedding.padding_idx)
    with torch.no_grad():
        new.weight.copy_(embedding.weight[rows])
    return new, Vocabulary(tokens)

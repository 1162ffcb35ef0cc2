"""Row pruning of an Embedding that reads the model input (the vocabulary of a text model, the
categories of a tabular one): keep the rows of the ids the training data uses most, map every
other id onto one `unknown_id` row. The host applies the id map before the hardware.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from hwprune.errors import ConfigError


def frequent_rows(ids: np.ndarray, n_rows: int, keep: int, keep_ids: Sequence[int] = (),
                  unknown_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For a table cut to `keep` rows: (old id -> new id, and for every new id the old row it
    keeps). `keep_ids` (and `unknown_id`) come first, in order, then the ids most frequent in
    `ids` (ties by id; ids never seen are dropped); dropped ids map onto `unknown_id`'s row."""
    if unknown_id is None:
        raise ConfigError("cutting an embedding's rows needs an unknown id for the dropped ones")
    first = list(dict.fromkeys([*(int(i) for i in keep_ids), int(unknown_id)]))
    if keep < len(first):
        raise ConfigError(f"keep={keep}: the table needs at least its {len(first)} reserved rows {first}")
    counts = np.bincount(np.asarray(ids, dtype=np.int64).ravel(), minlength=n_rows)[:n_rows]
    order = np.lexsort((np.arange(n_rows), -counts))
    reserved = set(first)
    ranked = [int(i) for i in order if counts[i] > 0 and int(i) not in reserved]
    rows = np.array(first + ranked[: keep - len(first)], dtype=np.int64)
    new = {int(o): k for k, o in enumerate(rows)}
    unk = new[int(unknown_id)]
    remap = np.array([new.get(i, unk) for i in range(n_rows)], dtype=np.int64)
    return remap, rows


def cut_rows(embedding: torch.nn.Embedding, rows: np.ndarray) -> torch.nn.Embedding:
    """An Embedding holding only `rows` of the table (in that order)."""
    idx = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    pad = embedding.padding_idx
    new_pad = None
    if pad is not None and int(pad) in set(int(r) for r in rows):
        new_pad = [int(r) for r in rows].index(int(pad))
    new = torch.nn.Embedding(len(rows), embedding.embedding_dim, padding_idx=new_pad)
    with torch.no_grad():
        new.weight.copy_(embedding.weight.detach()[idx])
    return new


class RemappedTeacher(torch.nn.Module):
    """A model with the whole table reading the ids of a cut one: every new id maps back to
    the old id of its row (distillation after the cut)."""

    def __init__(self, teacher: torch.nn.Module, rows: np.ndarray) -> None:
        super().__init__()
        self.teacher = teacher
        self.register_buffer("back", torch.from_numpy(np.asarray(rows, dtype=np.int64)))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.teacher(self.back[ids])


def input_embeddings(model: torch.nn.Module) -> list[str]:
    """Names of the Embedding modules that read a model input directly (whose ids the host can
    map), found by tracing with torch.fx; [] when the model cannot be traced."""
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:
        return []
    mods = dict(gm.named_modules())
    return [n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(mods.get(n.target), torch.nn.Embedding)
            and n.args and getattr(n.args[0], "op", None) == "placeholder"]

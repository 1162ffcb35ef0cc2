"""The text task as an instance of the task contract (hwprune.task): a trained TextCNN model
directory, its token ids and labels, the split it was trained with; dropped tokens map onto
<unk>, and <pad> and <unk> keep their embedding rows."""

from __future__ import annotations

from typing import Any

from hwprune.task import Task
from hwprune.text.data import PAD, UNK


def text_task(md: Any) -> Task:
    """The Task of a loaded model directory (`hwprune.text.train.load_model_dir`)."""
    x, y = md.encoded()
    return Task.from_split(md.model, x, y, md.splits["train"], md.splits["val"], md.splits["test"],
                           batch_size=md.cfg.batch_size, name=md.path.name, unknown_id=UNK, keep_ids=(PAD, UNK),
                           rewind_state=md.rewind_state, source=dict(model_dir=str(md.path)))

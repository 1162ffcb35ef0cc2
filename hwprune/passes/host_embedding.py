"""The embedding on the ARM side: token (+ position) lookups move from the accelerator to the
host, which sends the embedded sequence instead of the token ids.

A vocabulary of tens of thousands of rows does not fit a small board's BRAM, while the lookup
costs the ARM core a few microseconds. After this pass the Embedding layer is a host layer
(`Graph.host_layers`): the pipeline's references run it before the accelerator's layers, and
its output — typed as the lookup's output was — becomes a fixed-point input of the
accelerator. The deployment driver does the same lookup in numpy (pynq_driver.HostEmbedding).
"""

from __future__ import annotations

from hwprune.errors import HwpruneInputError
from hwprune.ir.graph import Graph, TensorKind
from hwprune.ops.embedding import Embedding


def move_embeddings_to_host(g: Graph) -> list[str]:
    """Move every Embedding that reads a model input to the host; returns their names.
    Runs after the types pass (the accelerator's new input keeps the lookup's output type).
    A model without such an embedding is refused: the option would change nothing."""
    moved = []
    for layer in list(g.layers):
        if not isinstance(layer, Embedding) or layer.inputs[0] not in g.inputs:
            continue
        ids, out = layer.inputs[0], layer.output
        if any(ids in other.inputs for other in g.layers if other is not layer):
            continue  # the ids are read on the accelerator too: they must still be sent
        if out in g.outputs:
            continue  # an accelerator that only passes the lookup through would do nothing
        g.layers.remove(layer)
        g.host_layers.append(layer)
        g.inputs[g.inputs.index(ids)] = out
        assert g.tensor(out).kind == TensorKind.FIXED and g.tensor(out).type is not None
        moved.append(layer.name)
    if not moved:
        raise HwpruneInputError(f"--embedding-on-ps: model {g.name} has no embedding lookup of a model input "
                                "to move to the host; drop the option")
    return moved

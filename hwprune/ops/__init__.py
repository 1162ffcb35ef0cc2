"""One module per op kind; importing this package registers every op's ONNX importer."""

from hwprune.ops import (  # noqa: F401
    activation, batchnorm, conv, dense, embedding, layernorm, layout, matmul, merge, pool, quant, rescale, threshold,
)

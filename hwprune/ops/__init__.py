"""One module per op kind; importing this package registers every op's ONNX importer."""

from hwprune.ops import activation, batchnorm, conv, dense, embedding, layernorm, layout, merge, pool, quant  # noqa: F401

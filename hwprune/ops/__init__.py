"""One module per op kind; importing this package registers every op's ONNX importer."""

from hwprune.ops import activation, batchnorm, dense, embedding, layout, merge  # noqa: F401

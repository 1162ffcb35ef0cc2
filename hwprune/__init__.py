"""hwprune: hardware-aware pruning, quantization and HLS export of neural networks for edge FPGAs.

Python API (see docs/api.md): `export`, `run`, `estimate`, `fit`, `simulate`, `build_graph`.
"""

__version__ = "0.1.0"

from hwprune.project import build_graph, estimate, export, fit, run, simulate  # noqa: E402,F401

__all__ = ["__version__", "build_graph", "estimate", "export", "fit", "run", "simulate"]

"""hwprune: hardware-aware pruning, quantization and HLS export of neural networks for edge FPGAs.

Python API (see docs/api.md): `export`, `run`, `estimate`, `fit`, `simulate`, `build_graph`.
They load on first use, so that `import hwprune` (and `hwprune --help`) stays instant.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "build_graph", "estimate", "export", "fit", "run", "simulate"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from hwprune import project

        return getattr(project, name)
    if name == "project":
        import importlib

        return importlib.import_module("hwprune.project")
    raise AttributeError(f"module 'hwprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})

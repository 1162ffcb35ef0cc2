"""Typed errors. The CLI maps `HwpruneInputError` to exit code 2 and a one-line message;
anything else escaping is an internal error (exit code 1)."""


class HwpruneError(Exception):
    """Base class of every error hwprune raises on purpose."""


class HwpruneInputError(HwpruneError):
    """The user's input (model, option, file, board) is wrong; the message says how to fix it."""


class ModelLoadError(HwpruneInputError):
    """A model file is missing, truncated or not ONNX."""


class UnsupportedOpError(HwpruneInputError):
    """The model uses an operator (or an operator configuration) hwprune cannot implement."""


class ConfigError(HwpruneInputError):
    """A precision/reuse/config value does not parse or is out of range."""


class ShapeError(HwpruneInputError):
    """An input array does not match the model's input shape or dtype."""


class OutputDirError(HwpruneInputError):
    """An output directory exists and is not empty, and --force was not given."""


class BuildError(HwpruneError):
    """The host C++ build or run failed: an internal error, since hwprune wrote the code."""

"""Virtualenvs holding the real pynq package, for tests/test_pynq_real.py.

pynq never enters hwprune's own environment (its dependencies pin an old protobuf that breaks
onnx). Each version gets a virtualenv of its own, created once and reused, under
$HWPRUNE_PYNQ_VENVS, else the user's cache home ($XDG_CACHE_HOME or ~/.cache)/hwprune/pynq-venvs.
pynq is installed without its dependencies (grpcio-tools, the full IPython, ... are large and
unused off the board), plus exactly what `import pynq` and `import pynq.lib.dma` need, pinned.

    python tests/pynq_env.py [VERSION ...]     # create them ahead (.ci/run does)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# PYNQ 3.0.x is what the PYNQ 3.0 board images ship (pynq-z2, Ultra96, ZCU104, KV260); 4.0 the newest.
VERSIONS = ("3.0.1", "4.0.0")
# What importing pynq and its DMA driver needs on a host (found by importing until nothing was
# missing), at versions that work with both releases. numpy < 2 and pycparser < 3 as pynq requires.
IMPORT_DEPS = (
    "numpy==1.26.4", "cffi==2.1.1", "pycparser==2.23", "pydantic==2.14.4", "pydantic_core==2.50.5",
    "typing_extensions==4.16.0", "typing-inspection==0.4.5", "annotated-types==0.8.0", "pynqutils==0.1.3",
    "pynqmetadata==0.2.0", "tqdm==4.70.1", "ipython==9.18.1", "traitlets==5.16.1", "Pygments==2.21.0",
    "setuptools==65.5.0",  # pynqutils imports setuptools.command.build_py
)
READY = ".hwprune-ready"


def venv_root() -> Path:
    env = os.environ.get("HWPRUNE_PYNQ_VENVS")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "hwprune" / "pynq-venvs"


def requirements(version: str) -> list[str]:
    return [f"pynq=={version}", *IMPORT_DEPS]


def venv_python(version: str) -> Path:
    return venv_root() / f"pynq-{version}-py{sys.version_info[0]}{sys.version_info[1]}" / "bin" / "python"


def ensure(version: str, timeout_s: float = 1800.0) -> Path:
    """The python of a virtualenv with pynq `version` importable (created if missing)."""
    py = venv_python(version)
    d = py.parent.parent
    want = "\n".join(requirements(version))
    if (d / READY).is_file() and (d / READY).read_text() == want and py.exists():
        return py
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(d.parent / f"{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers and concurrent runs create it once
        if (d / READY).is_file() and (d / READY).read_text() == want and py.exists():
            return py
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(d)], check=True, capture_output=True)
        r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet",
                            "--disable-pip-version-check", *requirements(version)],
                           capture_output=True, text=True, timeout=timeout_s)
        if r.returncode != 0:
            shutil.rmtree(d, ignore_errors=True)
            raise RuntimeError(f"installing pynq {version} into {d} failed:\n{r.stderr[-3000:]}")
        (d / READY).write_text(want)
    return py


if __name__ == "__main__":
    for v in sys.argv[1:] or VERSIONS:
        print(ensure(v))

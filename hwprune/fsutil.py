"""Writing output directories safely: all or nothing, never over a user's files unasked."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from hwprune.errors import OutputDirError


def check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {out} exists and is a file; choose a directory path")
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputDirError(f"--out {out} exists and is not empty; choose another directory or pass --force to replace it")


@contextlib.contextmanager
def atomic_directory(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `out` only when the block succeeds;
    on any failure it is removed and `out` is untouched."""
    out = Path(out)
    check_out_dir(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

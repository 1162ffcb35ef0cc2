"""Writing output directories safely: all or nothing, never over a user's files unasked.

Every directory hwprune writes (`atomic_directory`) carries a marker, `.hwprune-output.json`,
listing the files hwprune wrote there and the scratch files its own tools add later (the C
simulation's `build/`, Vitis and Vivado projects and logs). `--force` replaces a directory only
when every file in it is accounted for by a marker; it never replaces the current directory
(or one holding it), the home directory (or one holding it), the filesystem root, or a
directory holding one of the command's inputs. The new content is written to a temporary
directory beside `out` (never inside it) and swapped in atomically (`renameat2(RENAME_EXCHANGE)`
where the kernel has it, else two renames that never leave `out` half removed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from hwprune.errors import OutputDirError

MARKER = ".hwprune-output.json"
TMP_TAG = ".hwprune-tmp."
# What hwprune's own later steps add to a directory it wrote (relative glob patterns; a pattern
# ending in "/" covers the whole sub-tree). Anything else found there is the user's.
SCRATCH: tuple[str, ...] = (
    "__pycache__/", "build/", "bitstream/", "*_prj/", "*_vivado/", ".Xil/", "*.log", "*.jou", "*.str",
    "tb_data/output_*.bin", "tb_data/axis_out.bin", "tb_data/axis_last.bin", "tb_data/counts.json",
)
_MAX_LISTED = 3


def _abs(p: str | Path) -> Path:
    """Absolute, normalised, symlinks resolved (so "." and "a/.." name what they mean)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def _iter_files(root: Path) -> Iterator[Path]:
    """Every non-directory entry below `root` (symlinks are not followed), relative to it."""
    for d, dirs, files in os.walk(root, followlinks=False):
        base = Path(d)
        for name in files:
            yield (base / name).relative_to(root)
        for name in list(dirs):
            if (base / name).is_symlink():
                dirs.remove(name)
                yield (base / name).relative_to(root)


def _scratch_match(rel: str, patterns: Iterable[str]) -> bool:
    """Does `rel` (relative to the marker's directory) match a scratch pattern? Patterns apply
    at the top of that directory (a nested output has its own marker)."""
    top = rel.split("/", 1)[0]
    for pat in patterns:
        if pat.endswith("/"):
            if "/" in rel and fnmatch.fnmatchcase(top, pat[:-1]):
                return True
        elif rel.count("/") == pat.count("/") and fnmatch.fnmatchcase(rel, pat):
            return True
    return False


def _load_marker(d: Path) -> dict | None:
    try:
        m = json.loads((d / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("tool") == "hwprune" and isinstance(m.get("files"), list) else None


def foreign_files(out: str | Path) -> list[str] | None:
    """Files in `out` that no hwprune marker accounts for (relative paths, sorted), or None if
    `out` has no marker at all (then hwprune cannot tell which files are its own)."""
    root = Path(out)
    markers: dict[Path, tuple[set[str], tuple[str, ...]]] = {}
    for d, _dirs, files in os.walk(root, followlinks=False):
        if MARKER in files:
            m = _load_marker(Path(d))
            if m is not None:
                rel = Path(d).relative_to(root)
                markers[rel] = ({str(f) for f in m["files"]}, tuple(m.get("scratch", SCRATCH)))
    if Path() not in markers:
        return None
    foreign = []
    for f in _iter_files(root):
        owned = False
        for base, (listed, scratch) in markers.items():
            if base != Path() and base not in f.parents:
                continue
            rel = f.relative_to(base).as_posix()
            if rel == MARKER or rel in listed or _scratch_match(rel, scratch):
                owned = True
                break
        if not owned:
            foreign.append(f.as_posix())
    return sorted(foreign)


def _name(out: Path) -> str:
    return os.fspath(out) or "."


def check_out_dir(out: str | Path, force: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse (OutputDirError, exit code 2) an --out that cannot be written, or that --force
    must not replace. `inputs`: the command's input files/directories, which must survive."""
    out = Path(out)
    shown = _name(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {shown} exists and is a file; choose a directory path")
    if not out.exists():
        return
    target = _abs(out)
    for p in inputs:
        if p is not None and _is_within(_abs(p), target):
            raise OutputDirError(f"--out {shown} holds the input {p}; write to a new directory (hwprune never replaces "
                                 "the directory its input lives in)")
    if not any(out.iterdir()):
        return
    if not force:
        raise OutputDirError(f"--out {shown} exists and is not empty; choose another directory or pass --force to replace it")
    if _is_within(_abs(os.getcwd()), target):
        what = "the current directory" if target == _abs(os.getcwd()) else "a directory holding the current directory"
        raise OutputDirError(f"--out {shown} is {what}; --force never replaces it: give a new directory, e.g. --out prj")
    home = _abs(Path.home())
    if _is_within(home, target) or target == Path(target.anchor):
        raise OutputDirError(f"--out {shown} is the home directory or holds it; --force never replaces it: "
                             "give a new directory, e.g. --out prj")
    foreign = foreign_files(out)
    if foreign is None:
        raise OutputDirError(f"--out {shown} was not written by hwprune (no {MARKER}); --force only replaces hwprune's "
                             "own output: choose another directory or remove it yourself")
    if foreign:
        listed = ", ".join(foreign[:_MAX_LISTED]) + (f" and {len(foreign) - _MAX_LISTED} more" if len(foreign) > _MAX_LISTED else "")
        raise OutputDirError(f"--out {shown} holds files hwprune did not write ({listed}); --force only replaces "
                             "hwprune's own output: move them or choose another directory")


def write_marker(d: Path, kind: str, scratch: Sequence[str] = SCRATCH) -> None:
    """Record every file now in `d` as written by hwprune (the marker itself included)."""
    files = sorted({f.as_posix() for f in _iter_files(d)} | {MARKER})
    (d / MARKER).write_text(json.dumps(dict(tool="hwprune", kind=kind, files=files, scratch=list(scratch)), indent=1))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _make_tmp(parent: Path, name: str, tag: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        p = parent / f".{name}{tag}{secrets.token_hex(4)}"
        try:
            os.mkdir(p)  # mode 0777 & ~umask, as any directory the user makes
            return p
        except FileExistsError:
            continue


def replace_directory(tmp: Path, out: Path) -> None:
    """Put `tmp` at `out`: a plain rename when `out` is absent or empty, else an atomic swap
    (the old content is removed only once the new one is in place)."""
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):
        try:
            os.rmdir(out)
        except OSError:
            pass
        else:
            tmp.rename(out)
            return
    if _exchange(tmp, out):
        shutil.rmtree(tmp)  # now holds the old content
        return
    old = _make_tmp(out.parent, out.name, ".hwprune-old.")
    os.rmdir(old)
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fill_in_place(tmp: Path, out: Path) -> None:
    """`out` is the (empty) current directory: move the new entries into it instead of renaming
    over it (the user's shell would be left in a deleted directory)."""
    moved = []
    try:
        for entry in sorted(tmp.iterdir()):
            dst = out / entry.name
            entry.rename(dst)
            moved.append(dst)
    except BaseException:
        for p in moved:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
        raise
    tmp.rmdir()


@contextlib.contextmanager
def atomic_directory(out: str | Path, force: bool = False, inputs: Sequence[str | Path] = (),
                     kind: str = "output", scratch: Sequence[str] = SCRATCH) -> Iterator[Path]:
    """Yield a temporary directory beside `out` that replaces `out` only when the block
    succeeds (marked as hwprune's, see `MARKER`); on any failure or interruption it is removed
    and `out` is untouched. `inputs` must not lie inside `out` (check_out_dir)."""
    out = Path(out)
    check_out_dir(out, force, inputs)
    target = _abs(out)
    in_place = target == _abs(os.getcwd())  # only possible while it is empty (check_out_dir)
    tmp = _make_tmp(target.parent, target.name, TMP_TAG)
    try:
        yield tmp
        write_marker(tmp, kind, scratch)
        if in_place:
            _fill_in_place(tmp, target)
        else:
            replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

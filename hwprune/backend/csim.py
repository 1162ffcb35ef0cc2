"""Host C simulation: compile a generated project with g++ and run it.

Speed matters (users iterate, tests compile hundreds of designs):
* weights are raw integer arrays (g++ initialises class-type arrays very slowly);
* the Xilinx headers and our kernels are parsed once into a precompiled header (keyed by
  header contents, compiler and flags);
* the compiled binaries live in a content-addressed build cache: keyed by the hash of the
  generated sources, the flags and the compiler's identity (`g++ --version`), shared by every
  project directory, so exporting an unchanged design again (anywhere) never runs g++.

The cache directory is $HWPRUNE_CACHE_DIR, else $XDG_CACHE_HOME/hwprune, else ~/.cache/hwprune.
Entries are written to a temporary file and renamed into place, so processes building the same
key at once each produce a complete binary and the last rename wins; the cache is bounded
($HWPRUNE_CACHE_MAX_MB, default 1024) by evicting the least recently used entries.

`count_loops` builds a second binary of the same sources with -DHWP_COUNT (cached beside the
normal one as build/csim_count): the kernels then count, per layer, the cycles their scheduling
loops execute and the stream words they move, so the estimate can be checked against them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwprune.errors import BuildError, HwpruneInputError, ShapeError

CXXFLAGS = ["-std=c++14", "-O1", "-w"]
PCH_STALE_S = 300.0
# The counting build: the kernels' HWP_COUNT_* macros become counters (hls/hwprune/common.h).
COUNT_DEFINES = ("-DHWP_COUNT",)
CACHE_ENV = "HWPRUNE_CACHE_DIR"
CACHE_MAX_ENV = "HWPRUNE_CACHE_MAX_MB"
DEFAULT_CACHE_MAX_MB = 1024
TMP_STALE_S = 3600.0  # a build directory this old belongs to a process that died


def cxx() -> str:
    """The C++ compiler: $CXX, else g++ (read at every build)."""
    return os.environ.get("CXX") or "g++"


@functools.lru_cache(maxsize=None)
def ap_types_dir() -> str:
    env = os.environ.get("HWPRUNE_AP_TYPES")
    if env:
        return env
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise HwpruneInputError("the Xilinx ap_types headers were not found: pip install hls4ml==1.3.0 or set HWPRUNE_AP_TYPES")
    d = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
    if not (d / "ap_fixed.h").exists():
        raise HwpruneInputError(f"ap_fixed.h not found in {d}; set HWPRUNE_AP_TYPES to a directory holding it")
    return str(d)


def host_compile_command(top: str, ap_types: str, pch_header: str | None) -> str:
    """The g++ command line (run from the project directory); written into build_host.sh."""
    pch = f" -include {pch_header}" if pch_header else ""
    return (f"${{CXX:-g++}} {' '.join(CXXFLAGS)}{pch} -Ifirmware -I{ap_types} "
            f"firmware/{top}.cpp tb/{top}_test.cpp -o build/csim")


def cache_dir() -> Path:
    """The build cache: $HWPRUNE_CACHE_DIR, else $XDG_CACHE_HOME/hwprune, else ~/.cache/hwprune."""
    env = os.environ.get(CACHE_ENV) or os.environ.get("HWPRUNE_CACHE")  # HWPRUNE_CACHE: the former name
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # a relative one is invalid (XDG)
    return base / "hwprune"


def cache_max_bytes() -> int:
    text = os.environ.get(CACHE_MAX_ENV)
    try:
        mb = float(text) if text else DEFAULT_CACHE_MAX_MB
    except ValueError:
        raise HwpruneInputError(f"{CACHE_MAX_ENV}={text!r} is not a number of megabytes, e.g. 1024") from None
    return int(mb * 1024 * 1024)


@functools.lru_cache(maxsize=None)
def compiler_identity(compiler: str) -> str:
    """What identifies the compiler in the cache keys: its `--version` text."""
    try:
        return subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise HwpruneInputError(f"the C++ compiler '{compiler}' is not available; install g++ (apt-get install g++) "
                                "or set CXX") from None


def _compiler_id() -> str:
    return compiler_identity(cxx())


@functools.lru_cache(maxsize=None)
def _tree_hash(directory: str) -> str:
    h = hashlib.sha256()
    root = Path(directory)
    for f in sorted(root.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _kernel_files() -> list[Path]:
    from hwprune.backend.hls_project import kernel_dir

    return sorted(kernel_dir().glob("*.h"))


def precompiled_header(start: bool = True, defines: tuple[str, ...] = ()) -> str | None:
    """Path of an umbrella header whose .gch holds ap_types + all kernels, or None while it
    does not exist yet. With `start`, a missing PCH is built in the background (once per
    machine, guarded by a lock file): no build ever waits for it. `defines` (the counting
    build's) change what the kernels contain, so they get a PCH of their own."""
    compiler = cxx()
    h = hashlib.sha256()
    h.update(compiler_identity(compiler).encode())
    h.update(" ".join([*CXXFLAGS, *defines]).encode())
    h.update(ap_types_dir().encode())
    for f in _kernel_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    d = cache_dir() / "pch" / h.hexdigest()[:16]
    header = d / "hwprune_all.h"
    gch = d / "hwprune_all.h.gch"
    if gch.exists():
        _touch(d)  # least recently used goes first
        return str(header)
    if not start:
        return None
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # no writable cache: builds just go without the PCH
    lock = d / ".building"
    if lock.exists() and time.time() - lock.stat().st_mtime > PCH_STALE_S:
        lock.unlink(missing_ok=True)  # a build that died long ago
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None  # another process is building it
    os.close(fd)
    kd = _kernel_files()[0].parent
    header.write_text("#include \"ap_fixed.h\"\n#include \"ap_int.h\"\n#include \"hls_stream.h\"\n"
                      + "".join(f"#include \"{kd / f.name}\"\n" for f in _kernel_files()))
    tmp = d / f".tmp{os.getpid()}.gch"
    cmd = " ".join(shlex.quote(a) for a in [compiler, *CXXFLAGS, *defines, f"-I{ap_types_dir()}", "-x", "c++-header",
                                             str(header), "-o", str(tmp)])
    script = f"{cmd} && mv {shlex.quote(str(tmp))} {shlex.quote(str(gch))}; rm -f {shlex.quote(str(tmp))} {shlex.quote(str(lock))}"
    subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    return None


def precompiled_header_building() -> bool:
    """True while a background PCH build holds its lock (benchmarks wait for it to end)."""
    return any(cache_dir().glob("pch/*/.building"))


def wait_for_precompiled_header(timeout_s: float = 60.0) -> str | None:
    """Block until the PCH exists (benchmarks and CI warm-up use it)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        p = precompiled_header()
        if p:
            return p
        time.sleep(0.1)
    return None


def _project_kernels_match(project: Path) -> bool:
    """The PCH may only stand in for the project's kernel copies when they are identical."""
    for f in _kernel_files():
        p = project / "firmware" / "hwprune" / f.name
        if not p.exists() or p.read_bytes() != f.read_bytes():
            return False
    return True


def _source_hash(project: Path, key_text: str) -> str:
    h = hashlib.sha256(key_text.encode())
    for sub in ("firmware", "tb"):
        for f in sorted((project / sub).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(project)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def build_key(project: str | Path, units: list[tuple[str, str]], name: str, defines: tuple[str, ...] = ()) -> str:
    """The cache key of a host program: its sources (firmware/ and tb/, by content), the flags,
    the translation units and the compiler's identity. Where the project lives does not count."""
    ap = ap_types_dir()
    key_text = "\n".join([f"name={name}", f"flags={' '.join([*CXXFLAGS, *defines])}",
                          f"units={' '.join(src for src, _ in units)}", f"compiler={compiler_identity(cxx())}",
                          f"ap_types={_tree_hash(ap)}"])
    return _source_hash(Path(project), key_text)


def build(project: str | Path, count: bool = False) -> Path:
    """Compile the project's C simulation (cached). Returns the binary. With `count`, the
    counting variant (-DHWP_COUNT, build/csim_count), cached separately."""
    from hwprune.backend.project_dir import ProjectDir

    project = Path(project)
    top = ProjectDir.open(project).top
    defines = COUNT_DEFINES if count else ()
    suffix = "_count" if count else ""
    units = [(f"firmware/{top}.cpp", f"firmware{suffix}.o"), (f"tb/{top}_test.cpp", f"testbench{suffix}.o")]
    return build_units(project, units, "csim_count" if count else "csim", defines)


def build_units(project: str | Path, units: list[tuple[str, str]], name: str, defines: tuple[str, ...] = ()) -> Path:
    """Compile `units` ((source relative to the project, object file name) pairs) side by side
    and link them into build/<name>. The binary comes from the build cache when an identical
    program (same sources, flags, compiler) was built before, in any project directory; g++
    runs only on a miss. Other host programs of a project (the AXI-Stream wrapper's testbench)
    share this machinery and the precompiled header."""
    project = Path(project)
    key = build_key(project, units, name, defines)
    binary = project / "build" / name
    stamp = project / "build" / f"{name}.key"
    if binary.is_file() and stamp.is_file() and stamp.read_text() == key:
        return binary
    (project / "build").mkdir(exist_ok=True)
    for _ in range(3):  # an entry evicted by another process between lookup and link is built again
        cached = _cache_lookup(key) or _compile(project, units, defines, key)
        try:
            _install(cached, binary)
            break
        except FileNotFoundError:
            continue
    else:  # pragma: no cover - the cache keeps losing the entry
        raise BuildError(f"the build cache {cache_dir()} keeps losing the C simulation of {project}; "
                         f"set {CACHE_ENV} to a directory of its own")
    _write_atomic(stamp, key)
    return binary


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _cache_lookup(key: str) -> Path | None:
    p = cache_dir() / "bin" / key
    if p.is_file():
        _touch(p)
        return p
    return None


def _install(src: Path, dst: Path) -> None:
    """Put `src` at `dst` atomically: a hard link when they share a file system, else a copy."""
    if src.parent == dst.parent:  # built in the project (no writable cache)
        os.replace(src, dst)
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except FileNotFoundError:
        raise
    except OSError:  # another file system, or no hard links there
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _work_root(project: Path) -> tuple[Path, bool]:
    """Where to compile: inside the cache (so the result is renamed into it atomically), or,
    when the cache directory cannot be written, inside the project (then nothing is cached)."""
    root = cache_dir()
    try:
        (root / "bin").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        return root / "tmp", True
    except OSError:
        return project / "build", False


def _compile(project: Path, units: list[tuple[str, str]], defines: tuple[str, ...], key: str) -> Path:
    compiler = cxx()
    kernels_match = _project_kernels_match(project)
    pch = precompiled_header(start=False, defines=defines) if kernels_match else None
    work_root, cached = _work_root(project)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=work_root))
    try:
        try:
            out = _compile_in(project, work, units, defines, compiler, pch)
        except BuildError:
            if pch is None:
                raise
            out = _compile_in(project, work, units, defines, compiler, None)  # the PCH vanished (evicted)
        if cached:
            dst = cache_dir() / "bin" / key
            os.replace(out, dst)  # atomic: a concurrent build of the same key renames an identical binary
        else:
            dst = project / "build" / f".{key}"
            os.replace(out, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if kernels_match and pch is None:
        precompiled_header(start=True, defines=defines)  # after this build, so it does not compete for the cores
    if cached:
        evict(keep=dst)
    return dst


def _compile_in(project: Path, work: Path, units: list[tuple[str, str]], defines: tuple[str, ...], compiler: str,
                pch: str | None) -> Path:
    flags = [*CXXFLAGS, *defines, *(["-include", pch] if pch else []), "-Ifirmware", f"-I{ap_types_dir()}"]
    objs = [str(work / Path(obj).name) for _, obj in units]
    # The translation units compile side by side (2 cores), then link.
    procs = [subprocess.Popen([compiler, *flags, "-c", src, "-o", obj], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for (src, _), obj in zip(units, objs)]
    errors = [p.communicate()[1] for p in procs]
    if any(p.returncode for p in procs):
        raise BuildError(f"g++ failed for {project}:\n{''.join(errors)[-4000:]}")
    out = work / "a.out"
    r = subprocess.run([compiler, *objs, "-o", str(out)], cwd=project, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"linking the C simulation of {project} failed:\n{r.stderr[-4000:]}")
    return out


def _entry_size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def evict(keep: Path | None = None, max_bytes: int | None = None) -> list[Path]:
    """Bound the cache: remove least recently used entries (binaries and precompiled headers)
    until the total is within `max_bytes` ($HWPRUNE_CACHE_MAX_MB); `keep` is never removed.
    Also clears build directories left by processes that died. Returns what was removed."""
    root = cache_dir()
    limit = cache_max_bytes() if max_bytes is None else max_bytes
    now = time.time()
    removed: list[Path] = []
    for d in (root / "tmp").glob("build-*") if (root / "tmp").is_dir() else ():
        try:
            if now - d.stat().st_mtime > TMP_STALE_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass
    entries: list[tuple[float, int, Path]] = []
    for sub in ("bin", "pch"):
        if not (root / sub).is_dir():
            continue
        for p in (root / sub).iterdir():
            if p.name.startswith("."):
                continue  # a file being renamed into place
            try:
                if (p / ".building").exists():
                    continue  # a PCH being built
                entries.append((p.stat().st_mtime, _entry_size(p), p))
            except OSError:
                continue  # removed by another process meanwhile
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        if keep is not None and p == keep:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        total -= size
        removed.append(p)
    return removed


def write_inputs(g_or_manifest: object, inputs: list[np.ndarray], out_dir: Path) -> None:
    from hwprune.pipeline import accelerator_inputs_raw

    g = g_or_manifest
    raws = accelerator_inputs_raw(g, inputs)  # type: ignore[arg-type]
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, raw in enumerate(raws):
        np.ascontiguousarray(raw, dtype="<i8").tofile(out_dir / f"input_{k}.bin")


def _execute(project: Path, inputs: list[np.ndarray], count: bool = False) -> tuple[object, list[np.ndarray], dict]:
    """Build (cached) and run the C simulation; raw outputs in physical layout and, for the
    counting build, the parsed counts.json (else {})."""
    from hwprune.project import load_project_graph

    g = load_project_graph(project)
    binary = build(project, count=count)
    with tempfile.TemporaryDirectory(prefix="hwp_csim_") as d:
        dd = Path(d)
        write_inputs(g, inputs, dd)
        # --no-check: these are the caller's inputs, with no golden outputs to compare against.
        r = subprocess.run([str(binary.resolve()), str(dd), "--no-check"], capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"C simulation of {project} failed (exit {r.returncode}): {r.stderr[-2000:]}")
        n = np.asarray(inputs[0]).shape[0]
        raws = [np.fromfile(dd / f"output_{k}.bin", dtype="<i8").reshape((n, *g.tensor(o).physical_shape))
                for k, o in enumerate(g.outputs)]
        counts = json.loads((dd / "counts.json").read_text()) if count else {}
    return g, raws, counts


def run_csim(project: str | Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run the project's C simulation on a batch; returns logical-layout float outputs."""
    from hwprune.pipeline import output_float

    g, raws, _ = _execute(Path(project), inputs)
    return [output_float(g, o, raw) for o, raw in zip(g.outputs, raws)]


def raw_outputs(project: str | Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Raw integer outputs in physical layout (for bit-exact comparisons)."""
    return _execute(Path(project), inputs)[1]


@dataclass(frozen=True)
class LoopCounts:
    """What one layer's kernel executed over a batch (hls/hwprune/common.h, HWP_COUNT_*).

    cycles: each trip of the loop that sets the kernel's schedule adds its II (a fully unrolled
    io_parallel kernel adds what the estimate charges per call); reads/writes: stream words
    (io_stream; 0 in io_parallel); calls: kernel invocations (one per sample)."""

    cycles: int
    reads: int
    writes: int
    calls: int


def count_loops(project: str | Path, inputs: list[np.ndarray]) -> dict[str, LoopCounts]:
    """Run the counting build of the project's C simulation on a batch. Keyed by IR layer
    name; layers without a kernel (free reshapes that alias their input) are absent."""
    project = Path(project)
    g, _, raw = _execute(project, inputs, count=True)
    by_c_name = {c: n[2:] for n, c in g.c_names().items() if n.startswith("L:")}  # type: ignore[attr-defined]
    out: dict[str, LoopCounts] = {}
    for c_name, v in raw.items():
        if c_name not in by_c_name:
            raise BuildError(f"counts.json of {project} names an unknown layer {c_name!r}")
        out[by_c_name[c_name]] = LoopCounts(int(v["cycles"]), int(v["reads"]), int(v["writes"]), int(v["calls"]))
    return out

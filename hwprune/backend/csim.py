"""Host C simulation: compile a generated project with g++ and run it.

Speed matters (users iterate, tests compile hundreds of designs):
* weights are raw integer arrays (g++ initialises class-type arrays very slowly);
* the Xilinx headers and our kernels are parsed once into a precompiled header cached under
  ~/.cache/hwprune (keyed by header contents, compiler and flags);
* a project's binary is cached by the hash of its sources: an unchanged project is not rebuilt.

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
from hwprune.fixed import to_float

CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ["-std=c++14", "-O1", "-w"]
PCH_STALE_S = 300.0
# The counting build: the kernels' HWP_COUNT_* macros become counters (hls/hwprune/common.h).
COUNT_DEFINES = ("-DHWP_COUNT",)


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
    return (f"{CXX} {' '.join(CXXFLAGS)}{pch} -Ifirmware -I{ap_types} "
            f"firmware/{top}.cpp tb/{top}_test.cpp -o build/csim")


def _cache_root() -> Path:
    return Path(os.environ.get("HWPRUNE_CACHE", Path.home() / ".cache" / "hwprune"))


@functools.lru_cache(maxsize=None)
def _compiler_id() -> str:
    try:
        return subprocess.run([CXX, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError):
        raise HwpruneInputError(f"the C++ compiler '{CXX}' is not available; install g++ (apt-get install g++)") from None


def _kernel_files() -> list[Path]:
    from hwprune.backend.hls_project import kernel_dir

    return sorted(kernel_dir().glob("*.h"))


def precompiled_header(start: bool = True, defines: tuple[str, ...] = ()) -> str | None:
    """Path of an umbrella header whose .gch holds ap_types + all kernels, or None while it
    does not exist yet. With `start`, a missing PCH is built in the background (once per
    machine, guarded by a lock file): no build ever waits for it. `defines` (the counting
    build's) change what the kernels contain, so they get a PCH of their own."""
    h = hashlib.sha256()
    h.update(_compiler_id().encode())
    h.update(" ".join([*CXXFLAGS, *defines]).encode())
    h.update(ap_types_dir().encode())
    for f in _kernel_files():
        h.update(f.name.encode())
        h.update(f.read_bytes())
    d = _cache_root() / "pch" / h.hexdigest()[:16]
    header = d / "hwprune_all.h"
    gch = d / "hwprune_all.h.gch"
    if gch.exists():
        return str(header)
    if not start:
        return None
    d.mkdir(parents=True, exist_ok=True)
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
    cmd = " ".join(shlex.quote(a) for a in [CXX, *CXXFLAGS, *defines, f"-I{ap_types_dir()}", "-x", "c++-header", str(header),
                                             "-o", str(tmp)])
    script = f"{cmd} && mv {shlex.quote(str(tmp))} {shlex.quote(str(gch))}; rm -f {shlex.quote(str(lock))}"
    subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    return None


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


def _source_hash(project: Path, cmd: str) -> str:
    h = hashlib.sha256(cmd.encode())
    for sub in ("firmware", "tb"):
        for f in sorted((project / sub).rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(project)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def build(project: str | Path, count: bool = False) -> Path:
    """Compile the project's C simulation (cached). Returns the binary. With `count`, the
    counting variant (-DHWP_COUNT, build/csim_count), cached separately."""
    project = Path(project)
    man = json.loads((project / "hwprune_project.json").read_text())
    top = man["top"]
    defines = COUNT_DEFINES if count else ()
    suffix = "_count" if count else ""
    units = [(f"firmware/{top}.cpp", f"build/firmware{suffix}.o"), (f"tb/{top}_test.cpp", f"build/testbench{suffix}.o")]
    # The key ignores the PCH: it only speeds the build up, the binary is the same.
    key = " ".join([host_compile_command(top, ap_types_dir(), None), *defines])
    return build_units(project, units, "csim_count" if count else "csim", defines, key)


def build_units(project: Path, units: list[tuple[str, str]], name: str, defines: tuple[str, ...] = (),
                key_text: str | None = None) -> Path:
    """Compile `units` ((source, object) pairs relative to the project) side by side and link
    them into build/<name>, cached by the hash of the project's sources and `key_text` (the
    command line by default). Other host programs of a project (the AXI-Stream wrapper's
    testbench) share this machinery and the precompiled header."""
    kernels_match = _project_kernels_match(project)
    pch = precompiled_header(start=False, defines=defines) if kernels_match else None
    if key_text is None:
        key_text = " ".join([CXX, *CXXFLAGS, *defines, f"-I{ap_types_dir()}", *(src for src, _ in units)])
    key = _source_hash(project, key_text)
    binary = project / "build" / name
    stamp = project / "build" / f"{name}.key"
    if binary.exists() and stamp.exists() and stamp.read_text() == key:
        return binary
    (project / "build").mkdir(exist_ok=True)
    flags = [*CXXFLAGS, *defines, *(["-include", pch] if pch else []), "-Ifirmware", f"-I{ap_types_dir()}"]
    # The translation units compile side by side (2 cores), then link.
    procs = [subprocess.Popen([CXX, *flags, "-c", src, "-o", obj], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for src, obj in units]
    errors = [p.communicate()[1] for p in procs]
    if any(p.returncode for p in procs):
        raise BuildError(f"g++ failed for {project}:\n{''.join(errors)[-4000:]}")
    r = subprocess.run([CXX, *[o for _, o in units], "-o", f"build/{name}"], cwd=project, capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"linking the C simulation of {project} failed:\n{r.stderr[-4000:]}")
    stamp.write_text(key)
    if kernels_match and pch is None:
        precompiled_header(start=True, defines=defines)  # after this build, so it does not compete for the cores
    return binary


def write_inputs(g_or_manifest: object, inputs: list[np.ndarray], out_dir: Path) -> None:
    from hwprune.pipeline import check_inputs, input_raw

    g = g_or_manifest
    inputs = check_inputs(g, inputs)  # type: ignore[arg-type]
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, (name, x) in enumerate(zip(g.inputs, inputs)):  # type: ignore[attr-defined]
        np.ascontiguousarray(input_raw(g, name, x), dtype="<i8").tofile(out_dir / f"input_{k}.bin")  # type: ignore[arg-type]


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
    g, raws, _ = _execute(Path(project), inputs)
    return [g.tensor(o).to_logical(to_float(raw, g.tensor(o).type)) for o, raw in zip(g.outputs, raws)]


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

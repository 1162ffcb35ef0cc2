"""Run RTL engines in Verilator: one build for a batch of engines (a wrapper top instantiates
them side by side, a generated C++ testbench drives each from its own input words).

Each engine is run twice: streaming (input always valid, output always ready) for the cycle
counts, then from reset with pseudo-random stalls on both handshakes for the valid/ready logic.
Cycles are counted in clock edges: an input word is taken at the edge where in_valid and
in_ready are both high, an output word at the edge where out_valid and out_ready are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwprune.rtl.engine import EngineSpec, verilog
from hwprune.sim.calibrate import ToolMissing


@dataclass
class RunResult:
    outputs: np.ndarray  # (words, N) raw, streaming run
    stalled_outputs: np.ndarray  # (words, N) raw, run with random stalls
    in_cycles: np.ndarray  # edge at which each input word was taken (streaming)
    out_cycles: np.ndarray  # edge at which each output word was taken (streaming)

    @property
    def latency(self) -> int:
        """Edges from the first input word taken to the last output word taken."""
        return int(self.out_cycles[-1] - self.in_cycles[0])

    @property
    def interval(self) -> int:
        """Edges between consecutive input words (streaming)."""
        d = np.diff(self.in_cycles)
        return int(d.max()) if d.size else 0


def verilator_binary() -> str | None:
    return shutil.which(os.environ.get("HWPRUNE_VERILATOR", "verilator"))


def require_verilator() -> str:
    exe = verilator_binary()
    if exe is None:
        raise ToolMissing("verilator not found: install it (Debian: apt-get install verilator)")
    return exe


def _cpp_width_type(width: int) -> str:
    return "scalar" if width <= 64 else "wide"


_HELPERS = r"""
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "verilated.h"
template <class T> static void put(T &p, int lo, int w, uint64_t v) {
    for (int b = 0; b < w; b++) { uint64_t bit = (v >> b) & 1; p = (T)((p & ~((T)1 << (lo + b))) | ((T)bit << (lo + b))); }
}
template <std::size_t N> static void put(VlWide<N> &p, int lo, int w, uint64_t v) {
    for (int b = 0; b < w; b++) { int i = lo + b; uint32_t bit = (v >> b) & 1; p[i / 32] = (p[i / 32] & ~(1u << (i % 32))) | (bit << (i % 32)); }
}
template <class T> static long long get(const T &p, int lo, int w, bool sgn) {
    uint64_t v = 0;
    for (int b = 0; b < w; b++) v |= (uint64_t)((p >> (lo + b)) & 1) << b;
    if (sgn && w < 64 && ((v >> (w - 1)) & 1)) v |= ~0ull << w;
    return (long long)v;
}
template <std::size_t N> static long long get(const VlWide<N> &p, int lo, int w, bool sgn) {
    uint64_t v = 0;
    for (int b = 0; b < w; b++) { int i = lo + b; v |= (uint64_t)((p[i / 32] >> (i % 32)) & 1) << b; }
    if (sgn && w < 64 && ((v >> (w - 1)) & 1)) v |= ~0ull << w;
    return (long long)v;
}
static uint32_t lcg = 12345;
static bool coin(int pct) { lcg = lcg * 1103515245u + 12345u; return ((lcg >> 16) % 100) < (unsigned)pct; }
"""


def _wrapper(specs: list[EngineSpec]) -> str:
    ports = ["input clk", "input rst"]
    body = []
    for j, s in enumerate(specs):
        iw, ow = s.n_in * s.x_t.width, s.n_out * s.out_t.width
        ports += [f"input e{j}_iv", f"output e{j}_ir", f"input [{iw - 1}:0] e{j}_id",
                  f"output e{j}_ov", f"input e{j}_or", f"output [{ow - 1}:0] e{j}_od"]
        body.append(f"    {s.name} u{j} (.clk(clk), .rst(rst), .in_valid(e{j}_iv), .in_ready(e{j}_ir), .in_data(e{j}_id),"
                    f" .out_valid(e{j}_ov), .out_ready(e{j}_or), .out_data(e{j}_od));")
    return "module hwp_tb_top (\n    " + ",\n    ".join(ports) + ");\n" + "\n".join(body) + "\nendmodule\n"


def _testbench(specs: list[EngineSpec]) -> str:
    L = [_HELPERS, '#include "Vhwp_tb_top.h"', "int main(int argc, char **argv) {",
         "    Verilated::commandArgs(argc, argv);", "    Vhwp_tb_top *t = new Vhwp_tb_top;",
         "    const char *dir = argc > 1 ? argv[1] : \".\";", "    char path[4096];"]
    n = len(specs)
    L += [f"    std::vector<std::vector<long long>> X({n});", f"    int words[{n}];"]
    for j, s in enumerate(specs):
        L += [f"    {{ snprintf(path, sizeof path, \"%s/in{j}.txt\", dir); FILE *f = fopen(path, \"r\"); if (!f) return 2;",
              f"      if (fscanf(f, \"%d\", &words[{j}]) != 1) return 2; X[{j}].resize((size_t)words[{j}] * {s.n_in});",
              f"      for (auto &v : X[{j}]) if (fscanf(f, \"%lld\", &v) != 1) return 2; fclose(f); }}"]
    L += ["    for (int pass = 0; pass < 2; pass++) {",
          f"        int wi[{n}] = {{0}}, wo[{n}] = {{0}};",
          f"        FILE *out[{n}];"]
    for j in range(n):
        L += [f"        snprintf(path, sizeof path, \"%s/out{j}_%d.txt\", dir, pass); out[{j}] = fopen(path, \"w\");"]
    L += ["        lcg = 777;",
          "        t->rst = 1; for (int c = 0; c < 3; c++) { t->clk = 0; t->eval(); t->clk = 1; t->eval(); } t->rst = 0;",
          "        long long budget = 1000;"]
    for j, s in enumerate(specs):
        L.append(f"        budget += (long long)words[{j}] * ({s.rf} + 8) * 4 + 200;")
    L += ["        for (long long c = 0; c < budget; c++) {", "            bool done = true;"]
    for j, s in enumerate(specs):
        xw, ow = s.x_t.width, s.out_t.width
        L += [f"            {{ bool have = wi[{j}] < words[{j}]; t->e{j}_iv = have && (pass == 0 || coin(60));",
              f"              if (have) for (int i = 0; i < {s.n_in}; i++) put(t->e{j}_id, i * {xw}, {xw}, (uint64_t)X[{j}][(size_t)wi[{j}] * {s.n_in} + i]);",
              f"              t->e{j}_or = pass == 0 || coin(60); if (wo[{j}] < words[{j}]) done = false; }}"]
    L += ["            if (done) break;", "            t->clk = 0; t->eval();"]
    for j, s in enumerate(specs):
        ow = s.out_t.width
        sg = "true" if s.out_t.signed else "false"
        L += [f"            if (t->e{j}_iv && t->e{j}_ir) {{ fprintf(out[{j}], \"i %lld\\n\", c); wi[{j}]++; }}",
              f"            if (t->e{j}_ov && t->e{j}_or) {{ fprintf(out[{j}], \"o %lld\", c);",
              f"                for (int o = 0; o < {s.n_out}; o++) fprintf(out[{j}], \" %lld\", get(t->e{j}_od, o * {ow}, {ow}, {sg}));",
              f"                fprintf(out[{j}], \"\\n\"); wo[{j}]++; }}"]
    L += ["            t->clk = 1; t->eval();", "        }"]
    for j in range(n):
        L.append(f"        fclose(out[{j}]);")
    L += ["    }", "    t->final(); delete t; return 0;", "}"]
    return "\n".join(L) + "\n"


def build(specs: list[EngineSpec], workdir: Path) -> Path:
    """Verilate and compile a batch; returns the simulator executable (cached by content)."""
    exe = require_verilator()
    src = "".join(verilog(s) for s in specs) + _wrapper(specs)
    tb = _testbench(specs)
    key = hashlib.sha256((src + tb).encode()).hexdigest()[:16]
    out = workdir / f"vl_{key}"
    binary = out / "obj" / "Vhwp_tb_top"
    if binary.exists():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.v").write_text(src)
    (out / "tb.cpp").write_text(tb)
    cmd = [exe, "--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "hwp_tb_top",
           "--Mdir", str(out / "obj"), "-O1", "--x-assign", "fast", "--x-initial", "fast",
           "-CFLAGS", "-O1", str(out / "engines.v"), str(out / "tb.cpp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not binary.exists():
        raise RuntimeError(f"verilator failed:\n{(proc.stderr or proc.stdout)[-4000:]}")
    return binary


def run(specs: list[EngineSpec], inputs: list[np.ndarray], workdir: Path | None = None) -> list[RunResult]:
    """Simulate each engine on its (words, n_in) raw input words."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hwp_vl_")
        workdir = Path(tmp.name)
    try:
        binary = build(specs, workdir)
        rundir = Path(tempfile.mkdtemp(prefix="run_", dir=workdir))
        for j, x in enumerate(inputs):
            x = np.asarray(x, dtype=np.int64).reshape(-1, specs[j].n_in)
            (rundir / f"in{j}.txt").write_text(f"{x.shape[0]}\n" + "\n".join(" ".join(map(str, row)) for row in x) + "\n")
        proc = subprocess.run([str(binary), str(rundir)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"simulation failed ({proc.returncode}): {proc.stderr[-2000:]}")
        results = []
        for j, s in enumerate(specs):
            words = np.asarray(inputs[j]).reshape(-1, s.n_in).shape[0]
            parsed = [_parse(rundir / f"out{j}_{p}.txt", s.n_out) for p in (0, 1)]
            (ic, oc, y), (_, _, ys) = parsed
            if len(y) != words or len(ys) != words:
                raise RuntimeError(f"engine {s.name}: {len(y)}/{len(ys)} of {words} output words (stuck?)")
            results.append(RunResult(y, ys, ic, oc))
        shutil.rmtree(rundir, ignore_errors=True)
        return results
    finally:
        if tmp is not None:
            tmp.cleanup()


def _parse(path: Path, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ic, oc, ys = [], [], []
    for line in path.read_text().splitlines():
        f = line.split()
        if f[0] == "i":
            ic.append(int(f[1]))
        else:
            oc.append(int(f[1]))
            ys.append([int(v) for v in f[2:2 + n_out]])
    return np.array(ic, dtype=np.int64), np.array(oc, dtype=np.int64), np.array(ys, dtype=np.int64).reshape(-1, n_out)

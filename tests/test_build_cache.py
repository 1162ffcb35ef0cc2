"""The content-addressed build cache of the C simulation (hwprune/backend/csim.py): an
unchanged design exported anywhere else runs without the compiler; concurrent builds of one
key are safe; the cache is bounded (least recently used entries go first)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import hwprune
from hwprune.backend import csim
from hwprune.errors import HwpruneInputError

REAL_CXX = os.environ.get("CXX") or "g++"


def compiler_wrapper(tmp_path: Path, name: str = "cxx", version: str | None = None, sleep_s: float = 0.0) -> tuple[Path, Path]:
    """A compiler that logs every invocation (one line of arguments) and runs the real one."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / name
    fake_version = (f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n' if version else "")
    script.write_text(f"#!/bin/sh\necho \"$*\" >> '{log}'\n{fake_version}"
                      + (f"sleep {sleep_s}\n" if sleep_s else "") + f"exec {REAL_CXX} \"$@\"\n")
    script.chmod(0o755)
    return script, log


def invocations(log: Path) -> list[str]:
    """The compiler runs that build programs: not `--version`, nor the precompiled header a
    first build starts in the background (it may still be running during a later build)."""
    if not log.exists():
        return []
    return [l for l in log.read_text().splitlines() if l.strip() != "--version" and "c++-header" not in l]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty build cache of the test's own — but for a copy of the session's precompiled
    headers, when they are built: without them every build here would take twice as long and
    start a PCH build of its own (the PCH is not what these tests are about; a copy, because
    eviction may delete it)."""
    d = tmp_path / "cache"
    session_pch = csim.cache_dir() / "pch"
    if session_pch.is_dir():
        for entry in session_pch.iterdir():
            if entry.is_dir() and (entry / "hwprune_all.h.gch").is_file() and not (entry / ".building").exists():
                shutil.copytree(entry, d / "pch" / entry.name)
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(d))
    return d


@pytest.fixture
def bare_cache(tmp_path, monkeypatch) -> Path:
    """An empty build cache, nothing copied in (for the tests that list what it holds)."""
    d = tmp_path / "bare_cache"
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(d))
    return d


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HWPRUNE_CACHE_DIR", raising=False)
    monkeypatch.delenv("HWPRUNE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert csim.cache_dir() == tmp_path / "xdg" / "hwprune"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert csim.cache_dir() == tmp_path / "home" / ".cache" / "hwprune"
    monkeypatch.setenv("HWPRUNE_CACHE_DIR", str(tmp_path / "mine"))
    assert csim.cache_dir() == tmp_path / "mine"


def test_second_export_elsewhere_runs_without_the_compiler(mlp_model, tmp_path, cache, monkeypatch):
    cxx, log = compiler_wrapper(tmp_path)
    monkeypatch.setenv("CXX", str(cxx))
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    y1 = hwprune.run(hwprune.export(mlp_model, tmp_path / "a" / "prj"), [x], engine="csim")[0]
    assert invocations(log), "the first build must run the compiler"
    before = invocations(log)
    prj2 = hwprune.export(mlp_model, tmp_path / "b" / "prj")
    y2 = hwprune.run(prj2, [x], engine="csim")[0]
    assert invocations(log) == before, "an unchanged design in another directory must not invoke the compiler"
    np.testing.assert_array_equal(y1, y2)
    assert (prj2 / "build" / "csim").is_file()
    # The counting build is another program: its own key, built once, then shared too.
    csim.count_loops(tmp_path / "a" / "prj", [x])
    before = invocations(log)
    csim.count_loops(prj2, [x])
    assert invocations(log) == before
    # A different compiler (another `--version`) is another key: it builds.
    other, other_log = compiler_wrapper(tmp_path, "cxx2", version="g++ (Fake) 99.0")
    monkeypatch.setenv("CXX", str(other))
    hwprune.run(hwprune.export(mlp_model, tmp_path / "c" / "prj"), [x], engine="csim")
    assert invocations(other_log)


def test_changed_sources_rebuild(mlp_model, tmp_path, monkeypatch, cache):
    cxx, log = compiler_wrapper(tmp_path)
    monkeypatch.setenv("CXX", str(cxx))
    prj = hwprune.export(mlp_model, tmp_path / "prj")
    csim.build(prj)
    n = len(invocations(log))
    header = prj / "firmware" / "defines.h"
    header.write_text(header.read_text() + "\n// touched\n")
    csim.build(prj)
    assert len(invocations(log)) > n


BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hwprune.backend import csim
    prj, ready, go = map(Path, sys.argv[1:4])
    csim.build_key(prj, [("firmware/x.cpp", "x.o")], "warm")  # imports and the compiler identity first
    ready.write_text("ready")
    while not go.exists():
        time.sleep(0.01)
    print(csim.build(prj).resolve())
""")


def test_two_processes_building_one_key_at_once(mlp_model, tmp_path, cache):
    """Both processes miss the cache (the compiler wrapper sleeps so that they overlap), build
    into temporary files and rename: both get a working binary, the cache holds one entry and
    no temporary file."""
    cxx, log = compiler_wrapper(tmp_path, sleep_s=0.5)
    prjs = [hwprune.export(mlp_model, tmp_path / f"p{k}" / "prj") for k in range(2)]
    go = tmp_path / "go"
    env = dict(os.environ, CXX=str(cxx))
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(p), str(tmp_path / f"ready{k}"), str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k, p in enumerate(prjs)]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready{k}").exists() for k in range(2)) and time.time() < deadline:
        time.sleep(0.05)
    go.write_text("go")
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    links = [l for l in invocations(log) if " -c " not in f" {l} " and "c++-header" not in l]
    assert len(links) == 2, f"both processes were to miss the cache and link: {links}"
    entries = sorted((cache / "bin").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    assert not list((cache / "tmp").glob("build-*"))
    x = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    ys = [csim.raw_outputs(p, [x])[0] for p in prjs]
    np.testing.assert_array_equal(ys[0], ys[1])


def test_eviction_removes_the_least_recently_used(bare_cache):
    bins = bare_cache / "bin"
    bins.mkdir(parents=True)
    now = time.time()
    for k in range(5):
        f = bins / f"{k:064x}"
        f.write_bytes(b"\0" * 1000)
        os.utime(f, (now - 100 + k, now - 100 + k))  # 0 is the oldest
    # Using an entry makes it the most recent.
    assert csim._cache_lookup(f"{0:064x}") is not None
    removed = csim.evict(max_bytes=2500)
    assert sorted(p.name for p in removed) == [f"{1:064x}", f"{2:064x}", f"{3:064x}"]
    assert sorted(p.name for p in bins.iterdir()) == [f"{0:064x}", f"{4:064x}"]


def test_builds_keep_the_cache_within_its_bound(mlp_model, tmp_path, cache, monkeypatch):
    monkeypatch.setenv("HWPRUNE_CACHE_MAX_MB", "0")  # everything but the entry just built goes
    prj = hwprune.export(mlp_model, tmp_path / "prj")
    csim.build(prj)
    csim.build(prj, count=True)
    assert len(list((cache / "bin").iterdir())) == 1
    assert (prj / "build" / "csim").is_file() and (prj / "build" / "csim_count").is_file()  # the projects keep theirs
    monkeypatch.setenv("HWPRUNE_CACHE_MAX_MB", "a lot")
    with pytest.raises(HwpruneInputError, match="HWPRUNE_CACHE_MAX_MB"):
        csim.cache_max_bytes()

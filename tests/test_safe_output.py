"""Output directories: --force replaces only what hwprune wrote, never the current or home
directory or a directory holding the input; the new content is built beside `out` and swapped
in atomically; directories get the user's normal modes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import hwprune
import hwprune.fsutil as fsutil
from hwprune.cli import main
from hwprune.errors import OutputDirError
from hwprune.fsutil import MARKER, atomic_directory


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def no_temporaries(d: Path) -> None:
    left = [p.name for p in d.iterdir() if fsutil.TMP_TAG in p.name or ".hwprune-old." in p.name]
    assert left == [], left


def test_force_never_replaces_the_current_directory(capsys, mlp_model, tmp_path, monkeypatch):
    """The issue's case: the model and the user's notes in `.`, `--out . --force`."""
    s = tmp_path / "s"
    s.mkdir()
    (s / "mlp.onnx").write_bytes(mlp_model.read_bytes())
    (s / "notes.txt").write_text("x\n")
    before = snapshot(s)
    monkeypatch.chdir(s)
    code, _, err = run_cli(capsys, "export", "mlp.onnx", "--board", "pynq-z2", "--out", ".", "--force")
    one_line_error(code, err, "--out .")
    assert snapshot(s) == before
    no_temporaries(tmp_path)
    no_temporaries(s)
    # Nor a directory holding the current one.
    monkeypatch.chdir(s)
    (tmp_path / "other.txt").write_text("y")
    code, _, err = run_cli(capsys, "export", str(s / "mlp.onnx"), "--board", "pynq-z2", "--out", "..", "--force")
    one_line_error(code, err, "--out ..")
    assert snapshot(s) == before and (tmp_path / "other.txt").read_text() == "y"


def test_an_empty_current_directory_is_filled_in_place(capsys, mlp_model, tmp_path, monkeypatch):
    d = tmp_path / "prj"
    d.mkdir()
    inode = d.stat().st_ino
    monkeypatch.chdir(d)
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", ".")
    assert code == 0, err
    assert d.stat().st_ino == inode  # the user's shell is still in the directory it sees
    assert (d / "hwprune_project.json").is_file() and (d / MARKER).is_file()
    no_temporaries(tmp_path)


@pytest.mark.parametrize("where", ["beside", "below"])
def test_force_never_replaces_a_directory_holding_the_input(capsys, mlp_model, tmp_path, where):
    out = tmp_path / "dir"
    inp = out / "mlp.onnx" if where == "beside" else out / "models" / "v1" / "mlp.onnx"
    inp.parent.mkdir(parents=True)
    inp.write_bytes(mlp_model.read_bytes())
    before = snapshot(out)
    code, _, err = run_cli(capsys, "export", inp, "--board", "pynq-z2", "--out", out, "--force")
    one_line_error(code, err, "holds the input")
    assert snapshot(out) == before
    no_temporaries(tmp_path)


def test_force_never_replaces_the_input_project(capsys, mlp_model, tmp_path):
    """Re-exporting a project's own model over the project, or packaging a project over a
    directory that holds it, would delete the input."""
    prj = hwprune.export(mlp_model, tmp_path / "work" / "prj")
    before = snapshot(prj)
    code, _, err = run_cli(capsys, "export", prj / "model.onnx", "--board", "pynq-z2", "--out", prj, "--force")
    one_line_error(code, err, "holds the input")
    code, _, err = run_cli(capsys, "deploy", prj, "--out", tmp_path / "work", "--force")
    one_line_error(code, err, "holds the input")
    assert snapshot(prj) == before


def test_force_never_replaces_the_home_directory(capsys, mlp_model, tmp_path, monkeypatch):
    home = tmp_path / "h" / "home"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("# mine")
    monkeypatch.setenv("HOME", str(home))
    for out in (home, home.parent):  # home itself, and a directory holding it
        code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--force")
        one_line_error(code, err, "home directory")
    assert (home / ".bashrc").read_text() == "# mine"


def test_force_never_replaces_files_hwprune_did_not_write(capsys, mlp_model, tmp_path):
    out = tmp_path / "prj"
    hwprune.export(mlp_model, out)
    (out / "firmware" / "my_notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--force")
    one_line_error(code, err, "did not write", "firmware/my_notes.txt")
    assert (out / "firmware" / "my_notes.txt").read_text() == "mine"
    # A directory without hwprune's marker is the user's as a whole.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("a")
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", plain, "--force")
    one_line_error(code, err, "not written by hwprune")
    assert (plain / "a.txt").read_text() == "a"
    no_temporaries(tmp_path)


def test_force_replaces_hwprunes_own_output_and_its_build_products(capsys, mlp_model, tmp_path):
    out = tmp_path / "prj"
    hwprune.export(mlp_model, out)
    r = subprocess.run(["sh", "build_host.sh"], cwd=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (out / "hwp_mlp_prj" / "solution1").mkdir(parents=True)  # what vitis_hls leaves
    (out / "hwp_mlp_prj" / "solution1" / "csim.log").write_text("log")
    (out / "vitis_hls.log").write_text("log")
    assert (out / "build").is_dir() and (out / "tb_data" / "output_0.bin").is_file()
    code, _, err = run_cli(capsys, "export", mlp_model, "--board", "pynq-z2", "--out", out, "--force", "--io", "stream")
    assert code == 0, err
    assert json.loads((out / "hwprune_project.json").read_text())["io_type"] == "stream"
    assert not (out / "build").exists() and not (out / "vitis_hls.log").exists()
    no_temporaries(tmp_path)


def test_nested_outputs_are_accounted_for_by_their_own_markers(tmp_path):
    """A demo-like tree: an outer output holding inner ones, each with its scratch files."""
    out = tmp_path / "outer"
    with atomic_directory(out, kind="demo") as t:
        with atomic_directory(t / "design" / "project", kind="project") as p:
            (p / "a.h").write_text("a")
        (t / "report.html").write_text("r")
    (out / "design" / "project" / "build").mkdir()
    (out / "design" / "project" / "build" / "csim").write_text("bin")
    assert fsutil.foreign_files(out) == []
    (out / "design" / "stray.txt").write_text("mine")
    assert fsutil.foreign_files(out) == ["design/stray.txt"]


def test_the_temporary_directory_lives_beside_out(tmp_path, monkeypatch):
    seen = []
    for out, cwd in ((tmp_path / "a" / "out", tmp_path), (Path("."), tmp_path / "empty")):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        target = Path(os.path.realpath(out))
        with atomic_directory(out) as t:
            seen.append(t)
            assert t.parent == target.parent and not fsutil._is_within(t, target)
            (t / "f").write_text("x")
        assert (target / "f").read_text() == "x"
    assert all(not t.exists() for t in seen)


@pytest.mark.parametrize("exchange", [True, False])
def test_replacement_is_atomic_and_a_failure_keeps_the_old_content(tmp_path, monkeypatch, exchange):
    if not exchange:  # a kernel without renameat2(RENAME_EXCHANGE): two renames
        monkeypatch.setattr(fsutil, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    with atomic_directory(out) as t:
        (t / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_directory(out, force=True) as t:
            (t / "new.txt").write_text("new")
            raise RuntimeError("half way")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "old.txt"]
    swaps = []
    real = fsutil.replace_directory
    monkeypatch.setattr(fsutil, "replace_directory", lambda a, b: (swaps.append(sorted(p.name for p in b.iterdir())), real(a, b)))
    with atomic_directory(out, force=True) as t:
        (t / "new.txt").write_text("new")
    assert swaps == [[MARKER, "old.txt"]]  # the old content was whole until the swap
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    no_temporaries(tmp_path)


def test_output_directories_have_normal_modes(mlp_model, tmp_path):
    old = os.umask(0o022)
    try:
        prj = hwprune.export(mlp_model, tmp_path / "prj")
    finally:
        os.umask(old)
    for d in [prj, *(p for p in prj.rglob("*") if p.is_dir())]:
        assert d.stat().st_mode & 0o777 == 0o755, d


def test_check_out_dir_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="is a file"):
        fsutil.check_out_dir(f, force=True)

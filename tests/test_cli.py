"""The hack-model command line: outputs, and errors as one line with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import trimesh

from hack_model.io.mesh import read_obj


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "hack_model.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


def assert_one_line_error(result, fragment):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and fragment in lines[0], lines[0]


def test_info_lists_counts_and_names(release_dir):
    result = run("info", release_dir)
    assert result.returncode == 0, result.stderr
    assert "vertices:    14062" in result.stdout and "oc1" in result.stdout and "AU12" in result.stdout


def test_convert_then_export_with_official_symbols(release_dir, tmp_path):
    out = tmp_path / "release.npz"
    assert run("convert", release_dir, "-o", out).returncode == 0
    golden = np.load(release_dir / "golden_forward.npz")
    np.savez(tmp_path / "p.npz", beta=golden["beta"], bsw=golden["bsw"][:1], theta=golden["theta"][:1],
             tau=golden["tau"][:1], alpha=golden["alpha"][:1])  # fmt: skip
    result = run("export", "--model", out, "--params", tmp_path / "p.npz", "-o", tmp_path / "head.obj")
    assert result.returncode == 0, result.stderr
    mesh = read_obj(tmp_path / "head.obj")
    assert np.abs(mesh.vertices - golden["vertices"][0]).max() < 2e-4  # 6 decimals in the file
    assert mesh.uv_coords is not None and (mesh.polygon_sizes == 4).all()
    result = run("export", "--model", out, "-o", tmp_path / "head.ply")
    assert result.returncode == 0, result.stderr
    assert len(trimesh.load(tmp_path / "head.ply", process=False).vertices) == 14062


def test_export_multi_frame_writes_numbered_files(release_dir, tmp_path):
    np.savez(tmp_path / "seq.npz", theta_list=np.zeros((3, 8, 3), np.float32))
    result = run("export", "--model", release_dir, "--params", tmp_path / "seq.npz", "-o", tmp_path / "f.obj")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("f_*.obj")) == ["f_0000.obj", "f_0001.obj", "f_0002.obj"]


def test_existing_output_is_kept_without_overwrite(release_dir, tmp_path):
    target = tmp_path / "head.obj"
    target.write_text("mine")
    result = run("export", "--model", release_dir, "-o", target)
    assert result.returncode == 0 and f"skipped {target}" in result.stdout, result.stdout + result.stderr
    assert target.read_text() == "mine" and not (tmp_path / "head.mtl").exists()  # the group is kept
    assert run("export", "--model", release_dir, "-o", target, "--overwrite").returncode == 0
    assert target.read_text().startswith("mtllib head.mtl\n")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["info", "/nonexistent/model.npz"], "no such model"),
        (
            ["export", "--model", "{release}", "--params", "{bad_params}", "-o", "{tmp}/x.obj"],
            "unknown parameter 'bogus'",
        ),
        (["export", "--model", "{release}", "-o", "{tmp}/x.stl"], "unsupported mesh format"),
        (["convert", "{release}", "-o", "{tmp}/nofolder/x.npz"], "output folder does not exist"),
        (["convert", "{garbage}", "-o", "{tmp}/x.npz"], "not a readable .npz model file"),
        (["export", "--model", "{release}", "--params", "{nan_params}", "-o", "{tmp}/x.obj"], "contains NaN"),
    ],
)
def test_errors_are_one_line_and_write_nothing(release_dir, tmp_path, args, fragment):
    np.savez(tmp_path / "bad_params.npz", bogus=np.zeros(3))
    np.savez(tmp_path / "nan_params.npz", shape=np.full(10, np.nan))
    (tmp_path / "garbage.npz").write_bytes(b"\x00garbage")
    before = set(tmp_path.iterdir())
    values = {"release": release_dir, "bad_params": tmp_path / "bad_params.npz", "tmp": tmp_path,
              "garbage": tmp_path / "garbage.npz", "nan_params": tmp_path / "nan_params.npz"}  # fmt: skip
    assert_one_line_error(run(*[a.format(**values) for a in args]), fragment)
    assert set(tmp_path.iterdir()) == before

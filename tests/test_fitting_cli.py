"""`hack-fit` end to end on a small synthetic scan: outputs, overwrite rules, failures, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from fitting.cli import main
from fitting.fit import evaluator_for
from fitting.synthetic_scans import make_scan
from hack_model import HACK
from hack_model.io.mesh import read_obj
from hack_model.params import forward_arguments, load_params


@pytest.fixture(scope="module")
def scan_dir(tmp_path_factory):
    model = HACK()
    ev = evaluator_for(model)
    scan = make_scan(ev, np.random.default_rng(11), points=1000, units="mm", outliers=0.0)
    folder = tmp_path_factory.mktemp("scans")
    # A scanner-style mesh: the true surface in mm, with the holes cut out, as binary PLY.
    tris = ev.triangles[scan.kept_triangles]
    trimesh.Trimesh(scan.true_vertices, tris, process=False).export(folder / "head.ply")
    (folder / "notes.obj").write_text("this is not a mesh\n")
    return folder, scan, model


def test_cli_fits_writes_outputs_and_keeps_going(scan_dir, tmp_path, capsys):
    folder, scan, model = scan_dir
    out = tmp_path / "out"
    code = main([str(folder), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # notes.obj failed; head.npy was still fitted
    assert "notes" in captured.out and "FAILED" in captured.out and "1 of 2 scans fitted" in captured.out
    report = json.loads((out / "head_report.json").read_text())
    assert report["units"] == "mm" and not report["failed"]
    assert set(report["regions"]) == {"face", "neck", "back_of_head"}
    assert report["scan_to_model_mm"]["median"] < 1.0
    # The OBJ is the model's topology with UVs, in the scan's coordinates and units.
    mesh = read_obj(out / "head_fit.obj")
    assert len(mesh.vertices) == model.num_vertices and mesh.uv_coords is not None
    assert np.median(np.linalg.norm(mesh.vertices - scan.true_vertices, axis=1)) < 2.0  # mm
    # The parameter file reproduces the OBJ through forward() and the saved similarity.
    params = load_params(out / "head_params.npz")
    with torch.no_grad():
        args = {k: torch.as_tensor(v) for k, v in forward_arguments(params).items()}
        v = model(**args).vertices[0].double().numpy()
    posed = float(params["scale"]) * v @ params["rotation"].T + params["translation"]
    assert np.abs(posed - mesh.vertices).max() < 0.01
    # A second run skips the complete scan (not a failure) and leaves the files alone.
    before = (out / "head_report.json").read_bytes()
    assert main([str(folder / "head.ply"), "--out", str(out)]) == 0
    assert "0 of 1 scans fitted, 1 skipped" in capsys.readouterr().out
    assert (out / "head_report.json").read_bytes() == before


def test_cli_command_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.ply")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hack-fit: error:") and "no such file" in err and "\n" not in err
    lm = tmp_path / "lm.txt"
    lm.write_text("1 2 3\n")
    (tmp_path / "a.xyz").write_text("0 0 0\n")
    assert main([str(tmp_path / "a.xyz"), "--landmarks", str(lm)]) == 2
    assert "68" in capsys.readouterr().err

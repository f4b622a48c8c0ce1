"""Sequence fitting end to end: one identity, per-frame motion, the output files, a bad frame skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fitting.cli import main
from fitting.evaluator import ModelParams
from fitting.fit import evaluator_for
from fitting.geometry import MeshProximity
from fitting.sequence import natural_key
from fitting.synthetic_scans import make_scan
from hack_model import HACK
from hack_model.io.mesh import read_obj
from hack_model.params import forward_arguments, load_params


def test_natural_order():
    names = ["f10.npy", "f2.npy", "F1.npy", "f2b.npy"]
    assert sorted(names, key=natural_key) == ["F1.npy", "f2.npy", "f2b.npy", "f10.npy"]


@pytest.mark.slow
def test_sequence_cli_one_identity_and_a_bad_frame_skipped(tmp_path, capsys):
    model = HACK()
    ev = evaluator_for(model)
    rng = np.random.default_rng(5)
    shape = np.clip(rng.normal(size=ev.S), -1.5, 1.5)
    frames = tmp_path / "frames"
    frames.mkdir()
    truth = []
    for t in range(3):
        pose = np.zeros((ev.J, 3))
        pose[1:, 1] = 0.04 * t  # the head turning a little, frame by frame
        p = ModelParams(shape, np.zeros(ev.E), pose, 0.0, 1.0)
        scan = make_scan(ev, rng, points=6000, units="mm", outliers=0.0, rotate=False, params=p)
        # One scanner pose for the whole sequence (make_scan moves every scan somewhere else).
        t_scan = scan.transform.translation
        np.save(frames / f"f{2 * t}.npy", scan.points - t_scan)
        truth.append(scan.true_vertices - t_scan)
    (frames / "f3.npy").write_bytes(b"not an array")  # between f2 and f4 in natural order
    out = tmp_path / "out"
    code = main(["--sequence", str(frames), "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1 and "3 of 4 frames fitted" in text and "f3" in text and "SKIPPED" in text
    report = json.loads((out / "sequence_report.json").read_text())
    assert [f["frame"] for f in report["frames"]] == ["f0", "f2", "f4"]
    assert set(report["skipped"]) == {"f3"}
    params = load_params(out / "sequence_params.npz")
    assert params["shape"].shape == (1, ev.S)  # one identity, [S] in the file
    assert params["expression"].shape == (3, ev.E) and params["neck_pose"].shape == (3, ev.J, 3)
    assert params["larynx_height"].shape == (3, 1) and params["larynx_scale"].shape == (3, 1)
    assert params["scale"].shape == (3,) and params["rotation"].shape == (3, 3, 3)
    assert params["translation"].shape == (3, 3)
    # Each frame's parameters reproduce its OBJ, and the OBJ is within 0.5 mm of the truth.
    with torch.no_grad():
        args = {k: torch.as_tensor(v) for k, v in forward_arguments(params).items()}
        verts = model(**args).vertices.double().numpy()  # [3, V, 3], shape broadcast over frames
    for i, name in enumerate(["f0", "f2", "f4"]):
        mesh = read_obj(out / f"{name}_fit.obj")
        posed = params["scale"][i] * verts[i] @ params["rotation"][i].T + params["translation"][i]
        assert np.abs(posed - mesh.vertices).max() < 0.01
        d = MeshProximity(truth[i], ev.triangles).query(mesh.vertices).distance
        assert np.median(d) < 0.5  # mm
    # The neck turns the way the truth does, frame by frame.
    yaw = params["neck_pose"][:, 1:, 1].sum(1)
    assert yaw[0] < yaw[1] < yaw[2]
    # A second run refuses to overwrite.
    assert main(["--sequence", str(frames), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err

"""Sequence fitting end to end: one identity, per-frame motion, the output files, a bad frame skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fitting.batch import quick_options
from fitting.cli import main
from fitting.evaluator import ModelParams
from fitting.fit import FitOptions, evaluator_for
from fitting.geometry import MeshProximity
from fitting.sequence import fit_sequence, natural_key
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
    # The outputs are committed with a manifest: a second run skips the sequence.
    assert (out / "sequence_manifest.json").is_file()
    assert main(["--sequence", str(frames), "--out", str(out)]) == 0
    assert "0 of 1 sequences fitted, 1 skipped" in capsys.readouterr().out


def _mild_frames(ev, rng, count: int, turn: float = 0.01, points: int = 2500):
    """Frames of one mild person (0.5 SD, neutral face) turning 4 degrees a frame, in one scanner pose
    (mm): [(points [N, 3], true vertices [V, 3])]."""
    shape = rng.normal(0.0, 0.5, ev.S)
    frames = []
    for t in range(count):
        pose = np.zeros((ev.J, 3))
        pose[1:, 1] = turn * t
        p = ModelParams(shape, np.zeros(ev.E), pose, 0.0, 1.0)
        scan = make_scan(ev, rng, points=points, units="mm", outliers=0.0, rotate=False, params=p)
        t_scan = scan.transform.translation
        frames.append((scan.points - t_scan, scan.true_vertices - t_scan))
    return frames


def _truth_mm(ev, fitted: np.ndarray, truth: np.ndarray) -> float:
    return float(np.median(MeshProximity(truth, ev.triangles).query(fitted).distance))


@pytest.mark.slow
def test_tracking_lost_runs_the_global_search_again():
    """The scanner moves between frames 0 and 1 (a quarter turn and 30 cm): the tracked fit of
    frame 1 cannot follow, the frame is reported as tracking lost and fitted with the global
    search, and frame 2 is tracked from it. Every frame still lands on its truth."""
    model = HACK()
    ev = evaluator_for(model)
    rng = np.random.default_rng(21)
    frames = _mild_frames(ev, rng, 3)
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 degrees about y
    moved = [frames[0]] + [
        (pts @ turn.T + [300.0, 0, 0], v @ turn.T + [300.0, 0, 0]) for pts, v in frames[1:]
    ]
    seq = fit_sequence(
        model, [pts for pts, _ in moved], quick_options(FitOptions(units="mm")), names=["f0", "f1", "f2"]
    )
    assert seq.relocked == ["f1"]
    for result, (_, truth) in zip(seq.frames, moved):
        assert _truth_mm(ev, result.vertices, truth) < 0.5


def test_frames_before_the_first_fit_are_tracked_back():
    """Frame 0 shows only a patch of the face around the nose tip: fitted alone it is doubted
    (the global search cannot place a patch), so frame 1 is the first fit and frame 0 is
    tracked back from it. All three frames are fitted and land on their truth; a frame of
    noise before them is doubted alone and not tracked either, and says so."""
    model = HACK()
    ev = evaluator_for(model)
    frames = _mild_frames(ev, np.random.default_rng(21), 3, points=8000)
    points, truth = frames[0]
    patch = points[np.linalg.norm(points - points[np.argmax(points[:, 2])], axis=1) < 45.0]
    options = quick_options(FitOptions(units="mm"))
    from fitting.fit import fit_scan

    assert fit_scan(model, patch, options=options).failed  # alone, a patch cannot be placed
    noise = np.random.default_rng(3).uniform(-150.0, 150.0, (3000, 3))
    scans = [noise, patch] + [p for p, _ in frames[1:]]
    seq = fit_sequence(model, scans, options, names=["noise", "f0", "f1", "f2"])
    assert seq.names == ["f0", "f1", "f2"] and list(seq.failed) == ["noise"]
    assert "not tracked back either" in seq.failed["noise"]
    for result, (_, truth) in zip(seq.frames, frames):
        assert _truth_mm(ev, result.vertices, truth) < 0.5


@pytest.mark.slow
def test_sequences_as_tasks_on_a_dask_cluster(tmp_path, capsys):
    """Two sequences (one folder each) through a real LocalCluster on the loopback interface:
    each is one task, committed with its manifest in OUT/NAME; a re-run skips both."""
    distributed = pytest.importorskip("distributed")
    model = HACK()
    ev = evaluator_for(model)
    rng = np.random.default_rng(8)
    truths = {}
    for name in ("walk", "nod"):
        folder = tmp_path / "capture" / name
        folder.mkdir(parents=True)
        for t, (pts, verts) in enumerate(_mild_frames(ev, rng, 2, points=1500)):
            np.save(folder / f"frame{t}.npy", pts)
            truths[name, f"frame{t}"] = verts
    out = tmp_path / "out"
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        args = ["--sequence", *(str(tmp_path / "capture" / n) for n in ("walk", "nod"))]
        args += ["--out", str(out), "--quick", "--no-meshes", "--scheduler", cluster.scheduler_address]
        code = main(args)
        text = capsys.readouterr().out
        assert code == 0, text
        rows = {r["scan"]: r for r in json.loads((out / "summary.json").read_text())["scans"]}
        assert sorted(rows) == ["nod", "walk"]
        assert all(r["status"] == "ok" and r["attempts"] == 1 for r in rows.values())
        for name in ("walk", "nod"):
            assert (out / name / "sequence_manifest.json").is_file()
            assert not list((out / name).glob("*_fit.obj"))  # --no-meshes
            params = load_params(out / name / "sequence_params.npz")
            with torch.no_grad():
                args_t = {k: torch.as_tensor(v) for k, v in forward_arguments(params).items()}
                verts = model(**args_t).vertices.double().numpy()
            for i in range(2):
                posed = params["scale"][i] * verts[i] @ params["rotation"][i].T + params["translation"][i]
                assert _truth_mm(ev, posed, truths[name, f"frame{i}"]) < 0.5
        code = main(args)
        assert code == 0 and "0 of 2 sequences fitted, 2 skipped" in capsys.readouterr().out
    finally:
        cluster.close(timeout=10)

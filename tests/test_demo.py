"""The demo sheets, the render/demo commands and sequence animation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.render
render = pytest.importorskip("hack_model.render")
try:
    render.render_mesh(np.eye(3), np.array([[0, 1, 2]]), size=16)
except Exception as err:  # noqa: BLE001 - any GL failure means no renderer here
    pytest.skip(f"offscreen EGL rendering unavailable: {err}", allow_module_level=True)

from hack_model.demo import SHEETS, animate, load_sequence, make_demo  # noqa: E402
from hack_model.images import load_png  # noqa: E402


def changed_rows(model, expression_name):
    """Image rows (top to bottom, 0..1 of the face's height) where an expression changes the render."""
    E = model.num_expression
    weights = np.zeros((2, E), np.float32)
    weights[1, model.expression_names.index(expression_name)] = 1.0
    with torch.no_grad():
        vertices = model(expression=weights).vertices.numpy()
    # Frame the front half of the head (the vertices the top bone carries rigidly).
    rigid = np.nonzero(model.data.skinning_weights[:, -1] > 0.99)[0]
    front = rigid[vertices[0, rigid, 2] > np.median(vertices[0, rigid, 2])]
    box = render.bounding_box(vertices[0, front])
    neutral, posed = render.render_frames(vertices, model.data.triangles(), frame=box, size=256)
    mask = np.abs(neutral.astype(int) - posed.astype(int)).sum(-1) > 30
    # Rows covered by the face in the neutral render (non-background).
    face_rows = np.nonzero((neutral < 250).any(-1).any(1))[0]
    top, bottom = face_rows.min(), face_rows.max()
    rows = np.nonzero(mask)[0]  # one entry per changed pixel
    return (rows - top) / (bottom - top), mask.sum()


def test_jaw_open_changes_the_lower_face_not_the_forehead(release_model):
    rows, count = changed_rows(release_model, "jawOpen")
    assert count > 500
    assert rows.min() > 0.3  # nothing changes on the forehead (top 30% of the head)
    assert (rows > 0.5).mean() > 0.8  # the lower face is where it acts


def test_brow_raise_changes_the_upper_face_not_the_chin(release_model):
    rows, count = changed_rows(release_model, "browInnerUp_L")
    assert count > 50
    assert rows.max() < 0.7  # nothing changes around the mouth and chin


def test_demo_writes_five_nonblank_sheets(tmp_path, release_model):
    paths = make_demo(release_model, tmp_path, log=lambda _: None)
    assert [p.name for p in paths] == [f"{name}.png" for name in SHEETS]
    for path in paths:
        image = load_png(path)
        assert image.shape[0] > 400 and image.shape[1] > 800
        assert image.std() > 10, f"{path.name} looks blank"


def test_sequence_animation_writes_all_frames(tmp_path, release_model, release_dir):
    params = load_sequence(release_dir / "data")
    assert params["neck_pose"].shape[1:] == (8, 3) and params["expression"].shape[0] == 500
    path = animate(release_model, params, tmp_path / "seq.mp4", max_frames=12, size=128, progress=False)
    import imageio.v2 as imageio

    frames = [frame for frame in imageio.get_reader(path)]
    assert len(frames) == 12 and frames[0].shape[:2] == (128, 128)
    assert not np.array_equal(frames[0], frames[-1])


def test_render_command_and_bad_sequence(tmp_path, release_dir):
    out = tmp_path / "head.png"
    run = [sys.executable, "-m", "hack_model.cli"]
    result = subprocess.run(
        run + ["render", "--model", str(release_dir), "--size", "96", "--view", "side", "-o", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert load_png(out).shape == (96, 96, 3)
    result = subprocess.run(
        run + ["demo", "--model", str(release_dir), "--out", str(tmp_path / "d"), "--sequence", str(tmp_path)],  # noqa: E501
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1 and "no parameter .npy files" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # failed before writing anything


def test_sheet_framing_keeps_the_whole_head_in_the_tile():
    """The action-unit and shape tiles used to cut through the ear (a zoom on the face box):
    now the camera frames the whole head; only the neck may leave the tile, at the bottom."""
    from hack_model import HACK
    from hack_model.demo import head_points

    model = HACK()
    with torch.no_grad():
        vertices = model(action_units={"AU27": torch.tensor([0.0, 1.0])}).vertices.numpy()
    box = render.bounding_box(head_points(vertices, model))
    for view, yaw in (("three-quarter", 25.0), ("side", None), ("front", None)):
        images = render.render_frames(vertices, model, view=view, yaw=yaw, frame=box, size=128)
        for image in images:
            head = (image < 245).any(-1)
            assert not head[:, :3].any() and not head[:, -3:].any() and not head[:3].any(), view
            assert head.any(0).mean() > 0.3  # and it fills the tile, not lost in the middle


def test_demo_keeps_existing_sheets_unless_overwrite(tmp_path):
    from hack_model.cli import main

    (tmp_path / "shapes.png").write_bytes(b"mine")
    names = list(SHEETS)
    for name in names[1:]:
        (tmp_path / f"{name}.png").write_bytes(b"mine")
    logs = []
    from hack_model import HACK

    make_demo(HACK(), tmp_path, log=logs.append)
    assert all(line.startswith("skipped") for line in logs) and len(logs) == len(names)
    assert all((tmp_path / f"{n}.png").read_bytes() == b"mine" for n in names)
    assert main(["demo", "--out", str(tmp_path)]) == 0  # nothing to do, nothing replaced
    assert (tmp_path / "shapes.png").read_bytes() == b"mine"


def test_render_writes_every_frame_or_a_video(tmp_path):
    import imageio.v2 as imageio

    from hack_model.cli import main

    pose = np.zeros((3, 8, 3), np.float32)
    pose[:, 7, 1] = [0.0, 0.3, 0.6]  # the head turns
    np.savez(tmp_path / "seq.npz", neck_pose=pose)
    args = ["render", "--params", str(tmp_path / "seq.npz"), "--size", "64"]
    assert main([*args, "-o", str(tmp_path / "f.png"), "--video", str(tmp_path / "f.mp4")]) == 0
    stills = [load_png(tmp_path / f"f_{i:04d}.png") for i in range(3)]
    assert not np.array_equal(stills[0], stills[2])
    video = [frame for frame in imageio.get_reader(tmp_path / "f.mp4")]
    assert len(video) == 3
    assert main([*args, "--frame", "1", "-o", str(tmp_path / "one.png")]) == 0
    assert np.array_equal(load_png(tmp_path / "one.png"), stills[1])  # one camera for all frames


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capfd):
    from hack_model import HACK

    pose = np.zeros((4, 8, 3), np.float32)
    animate(HACK(), {"neck_pose": pose}, tmp_path / "a.gif", size=32, progress=True)
    assert capfd.readouterr().err == ""  # pytest's captured stderr is no terminal

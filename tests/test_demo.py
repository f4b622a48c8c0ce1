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

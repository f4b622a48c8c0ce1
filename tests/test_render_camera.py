"""Camera framing without GL: every framed point projects inside the image with the margin."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from hack_model.render.camera import frame_camera, view_angles


def project(camera, points, aspect):
    """Pixel coordinates in 0..1 (x right, y up) of points [N, 3] through a perspective camera."""
    pose = camera.pose
    local = (points - pose[:3, 3]) @ pose[:3, :3]  # camera axes; it looks along -z
    depth = -local[:, 2]
    tan_y = np.tan(camera.yfov / 2)
    x = local[:, 0] / (depth * tan_y * aspect)
    y = local[:, 1] / (depth * tan_y)
    return 0.5 + 0.5 * x, 0.5 + 0.5 * y, depth


@pytest.mark.parametrize("view", ["front", "side", "three-quarter", (30.0, 25.0)])
@pytest.mark.parametrize("aspect", [1.0, 1.6, 0.6])
def test_framed_points_fill_the_image_inside_the_margin(view, aspect):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)) * [8.0, 12.0, 9.0] + [1.0, 5.0, -2.0]
    yaw, pitch = view_angles(view, None, None)
    camera = frame_camera(points, yaw, pitch, aspect, margin=0.1)
    x, y, depth = project(camera, points, aspect)
    assert (depth > camera.znear).all() and (depth < camera.zfar).all()
    assert x.min() >= 0.1 - 1e-6 and x.max() <= 0.9 + 1e-6
    assert y.min() >= 0.1 - 1e-6 and y.max() <= 0.9 + 1e-6
    # tight: the most demanding point touches the margin
    assert min(x.min() - 0.1, 0.9 - x.max(), y.min() - 0.1, 0.9 - y.max()) < 1e-3


def test_near_and_far_planes_keep_everything_drawn():
    face = np.array([[-5.0, -5.0, 5.0], [5.0, 5.0, 8.0]])
    head = np.random.default_rng(1).normal(size=(300, 3)) * [8.0, 12.0, 10.0]
    camera = frame_camera(face, 25.0, 0.0, 1.0, zoom=1.3, visible=head)
    _, _, depth = project(camera, head, 1.0)
    assert (depth > 0).mean() > 0.9  # the head is in front of the camera
    in_front = depth[depth > 0]
    assert (in_front > camera.znear).all() and (in_front < camera.zfar).all()
    cut = frame_camera(face, 25.0, 0.0, 1.0, zoom=1.3)  # framing the face alone would cut the head
    assert (in_front < cut.znear).any() or (in_front > cut.zfar).any()


def test_camera_module_needs_no_gl():
    import subprocess

    code = (
        "import sys, hack_model.render.camera\n"
        "assert 'pyrender' not in sys.modules and 'OpenGL' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

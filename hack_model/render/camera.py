"""Camera framing: where the camera sits so a box or points fill the image (no GL).

Views: the camera orbits the framed box's centre; yaw turns it about +y, pitch raises it
(see hack_model.render)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VIEWS: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0),
    "three-quarter": (45.0, 0.0),
    "side": (90.0, 0.0),
    "back": (180.0, 0.0),
}
DEFAULT_YFOV_DEG = 22.0  # a portrait lens: little perspective distortion of the face
DEFAULT_MARGIN = 0.08  # fraction of the image kept free on every side


def camera_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera-to-world rotation [3, 3]: yaw about +y, then the camera raised by pitch."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(-pitch), math.sin(-pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


@dataclass
class Camera:
    pose: np.ndarray  # [4, 4] camera-to-world (pyrender: looks along its -z)
    yfov: float  # radians
    znear: float
    zfar: float


def frame_camera(
    points: np.ndarray,
    yaw: float,
    pitch: float,
    aspect: float,
    *,
    yfov_deg: float = DEFAULT_YFOV_DEG,
    margin: float = DEFAULT_MARGIN,
    zoom: float = 1.0,
    focus: np.ndarray | None = None,
    visible: np.ndarray | None = None,
) -> Camera:
    """Perspective camera that fits every point of [N, 3] inside the image with `margin`
    (fraction of the width/height) on each side; then zoom narrows the field of view
    around the target (the framed centre, or `focus`). `visible` [M, 3]: everything that will be
    drawn; the near and far planes keep all of it (framing part of a mesh must not cut the rest)."""
    rot = camera_rotation(yaw, pitch)
    centre = 0.5 * (points.min(0) + points.max(0))
    local = (points - centre) @ rot  # camera axes: x right, y up, z towards the camera
    # Centre the projected extents, not the 3D box centre: matters for rotated views.
    mid = 0.5 * (local.min(0) + local.max(0))
    mid[2] = 0.0
    centre = centre + rot @ mid
    local = local - mid

    fill = max(1.0 - 2.0 * margin, 0.05)
    tan_y = math.tan(math.radians(yfov_deg) / 2.0)
    tan_x = tan_y * aspect
    # Point (x, y, z) at depth d - z projects to x / (d - z); it must stay within tan * fill.
    lateral = np.maximum(np.abs(local[:, 0]) / (tan_x * fill), np.abs(local[:, 1]) / (tan_y * fill))
    need = local[:, 2] + lateral
    extent = float(np.ptp(local, axis=0).max()) or 1.0
    distance = max(float(need.max()), float(local[:, 2].max()) + 0.05 * extent)

    target = centre if focus is None else np.asarray(focus, np.float64).reshape(3)
    eye = target + rot[:, 2] * distance
    drawn = points if visible is None else np.concatenate([points, np.asarray(visible, np.float64)])
    depth = (eye - drawn) @ rot[:, 2]
    znear = max(float(depth.min()) * 0.5, distance * 1e-3)
    zfar = float(depth.max()) * 2.0 + extent
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = eye
    yfov = 2.0 * math.atan(tan_y / max(zoom, 1e-6))
    return Camera(pose=pose, yfov=yfov, znear=znear, zfar=zfar)


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        width = height = int(size)
    else:
        width, height = (int(s) for s in size)
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    return width, height


def view_angles(view: str | tuple[float, float], yaw, pitch) -> tuple[float, float]:
    if isinstance(view, str):
        try:
            base_yaw, base_pitch = VIEWS[view]
        except KeyError:
            raise ValueError(f"unknown view {view!r}; choose from {list(VIEWS)}") from None
    else:
        base_yaw, base_pitch = (float(a) for a in view)
    return (
        base_yaw if yaw is None else float(yaw),
        base_pitch if pitch is None else float(pitch),
    )

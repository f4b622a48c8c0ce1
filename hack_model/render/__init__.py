"""Offscreen rendering of head-and-neck meshes (pyrender through Mesa's EGL, no display).

Meshes are numpy vertices [V, 3] (centimetres, +y up, the face looking along +z) with
triangles [F, 3], or a batch of vertices [B, V, 3] sharing one triangle list.

Views: the camera orbits the framed box's centre. yaw turns the camera about +y,
pitch raises it:
    "front"          yaw   0: camera on +z, looking at the face
    "three-quarter"  yaw  45: between the face and the model's left side
    "side"           yaw  90: camera on +x, showing the model's LEFT side (its left ear;
                              the face points to the image's left). yaw -90 shows the right.
    "back"           yaw 180
pitch > 0 puts the camera above the model looking down.

Modules by job: `camera` (framing, no GL), `geometry` (normals, boxes), `context` (the one
pyrender OffscreenRenderer per process: created lazily, resized in place, forgotten in a
forked child; close_renderer() frees it), `scene` (mesh, camera, lights), `api` (the
functions below, with one RenderOptions). Colour maps live in hack_model.colormaps.
pyrender is imported lazily, so importing this package needs no GL.
"""

from __future__ import annotations

from ..colormaps import colormap, heatmap_colors
from .api import RenderOptions, render_frames, render_heatmap, render_mesh
from .camera import DEFAULT_MARGIN, DEFAULT_YFOV_DEG, VIEWS
from .context import RenderUnavailableError, close_renderer, renderer_info
from .geometry import bounding_box, vertex_normals
from .scene import SKIN_SRGB

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_YFOV_DEG",
    "RenderOptions",
    "RenderUnavailableError",
    "SKIN_SRGB",
    "VIEWS",
    "bounding_box",
    "close_renderer",
    "colormap",
    "heatmap_colors",
    "render_frames",
    "render_heatmap",
    "render_mesh",
    "renderer_info",
    "vertex_normals",
]

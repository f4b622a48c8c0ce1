"""render_mesh / render_frames / render_heatmap: the public rendering API.

Every look-and-framing option lives in one `RenderOptions`; the functions take it as
`options=` and also accept its fields as keywords (which win), so older calls such as
`render_mesh(v, f, view="side", size=256)` keep working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import images
from ..colormaps import heatmap_colors, value_range
from ..keywords import suggestion
from .camera import DEFAULT_MARGIN, DEFAULT_YFOV_DEG, as_size, frame_camera, view_angles
from .context import get_renderer, lock
from .geometry import bounding_box, box_corners
from .scene import Stage, rgba_colors


@dataclass(frozen=True)
class RenderOptions:
    """How to render. view: "front" | "three-quarter" | "side" | "back" or (yaw, pitch) in
    degrees; yaw/pitch override the view's angles. size: 512 or (width, height).
    transparent: RGBA output, alpha 0 on the background. frame: box [2, 3] (min, max) or
    points [N, 3] to fit in the image instead of the mesh (one box for all frames of a
    sequence: see bounding_box). zoom > 1 narrows the field of view around the target (the
    framed centre, or focus [3]). background: RGB 0..1. lighting: "studio" (key/fill/rim,
    fixed to the camera) or "soft". roughness: 0 glossy .. 1 matte. margin: free border per
    side as a fraction of the image. yfov_deg: vertical field of view before zoom.
    backfaces: draw back faces (open meshes look solid from behind); False culls them."""

    view: str | tuple[float, float] = "front"
    yaw: float | None = None
    pitch: float | None = None
    size: int | tuple[int, int] = 512
    transparent: bool = False
    frame: np.ndarray | None = None
    zoom: float = 1.0
    focus: Sequence[float] | None = None
    background: Sequence[float] = (1.0, 1.0, 1.0)
    lighting: str = "studio"
    roughness: float = 0.6
    margin: float = DEFAULT_MARGIN
    yfov_deg: float = DEFAULT_YFOV_DEG
    backfaces: bool = True

    def updated(self, **changes) -> RenderOptions:
        """A copy with `changes`; an unknown name is a TypeError with a did-you-mean."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in changes:
            if key not in names:
                raise TypeError(
                    f"unknown render option {key!r}{suggestion(key, names)}; known: {', '.join(names)}"
                )
        return dataclasses.replace(self, **changes)


def _as_mesh(vertices, triangles, vertex_colors):
    """Accept numpy/torch vertices or a HACKOutput, and triangles or a HACK / ModelData (whose
    preview colours are then used unless vertex_colors is given)."""
    if hasattr(vertices, "vertices") and hasattr(vertices, "joints"):  # a HACKOutput
        vertices = vertices.vertices
    if hasattr(vertices, "detach"):
        vertices = vertices.detach().cpu().numpy()
    data = getattr(triangles, "data", triangles)  # HACK -> ModelData
    if hasattr(data, "triangles") and callable(data.triangles):
        if vertex_colors is None:
            from ..texture import preview_albedo

            vertex_colors = preview_albedo(data)
        triangles = data.triangles()
    if triangles is None:
        raise ValueError("triangles are needed: pass [F, 3] indices, a HACK model or its ModelData")
    if hasattr(triangles, "detach"):
        triangles = triangles.detach().cpu().numpy()
    return vertices, triangles, vertex_colors


def render_frames(
    vertices_batch,
    triangles=None,
    *,
    vertex_colors: np.ndarray | None = None,
    options: RenderOptions | None = None,
    **option_keywords,
) -> list[np.ndarray]:
    """Render B frames of one mesh topology with one fixed camera and one scene.

    vertices_batch [B, V, 3] (cm; numpy, torch or a HACKOutput); triangles [F, 3] shared by
    all frames, or a HACK / ModelData (then its preview colours are used).
    vertex_colors: [V, 3|4] for all frames or [B, V, 3|4] per frame, floats 0..1 (sRGB).
    options / keywords: see RenderOptions; the default frame is the box of the whole batch,
    so the camera does not move between frames. Returns B images uint8 [H, W, 3]
    ([H, W, 4] when transparent).
    """
    opts = (options or RenderOptions()).updated(**option_keywords)
    vertices_batch, triangles, vertex_colors = _as_mesh(vertices_batch, triangles, vertex_colors)
    batch = np.asarray(vertices_batch, np.float64)
    if batch.ndim != 3 or batch.shape[-1] != 3:
        raise ValueError(f"vertices_batch must be [B, V, 3], got {batch.shape}")
    tri = np.asarray(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must be [F, 3], got {tri.shape}")
    num_frames, num_vertices = batch.shape[:2]
    if tri.size and (tri.min() < 0 or tri.max() >= num_vertices):
        raise ValueError(f"triangle indices must lie in 0..{num_vertices - 1}")
    if not np.isfinite(batch).all():
        raise ValueError("vertices contain NaN or inf")
    colors = rgba_colors(vertex_colors, num_vertices)
    if colors is not None and colors.ndim == 3 and colors.shape[0] != num_frames:
        raise ValueError(f"{colors.shape[0]} colour frames for {num_frames} vertex frames")
    width, height = as_size(opts.size)
    aspect = width / height
    yaw_deg, pitch_deg = view_angles(opts.view, opts.yaw, opts.pitch)

    if opts.frame is None:
        points = box_corners(bounding_box(batch)) if num_frames > 1 else batch[0]
    else:
        points = np.asarray(opts.frame, np.float64).reshape(-1, 3)
        if points.shape[0] == 2:
            points = box_corners(points)
    camera = frame_camera(
        points,
        yaw_deg,
        pitch_deg,
        aspect,
        yfov_deg=opts.yfov_deg,
        margin=opts.margin,
        zoom=opts.zoom,
        focus=None if opts.focus is None else np.asarray(opts.focus, np.float64),
        # the camera must not cut what it shows, even when framing only part of it
        visible=batch.reshape(-1, 3) if opts.frame is not None else None,
    )

    out: list[np.ndarray] = []
    with lock:
        renderer = get_renderer(width, height)
        stage = Stage(
            tri,
            num_vertices,
            colors is not None,
            opts.background,
            opts.transparent,
            opts.lighting,
            opts.roughness,
            opts.backfaces,
        )
        stage.set_camera(camera, aspect)
        for i in range(num_frames):
            frame_colors = colors[i] if colors is not None and colors.ndim == 3 else colors
            stage.set_mesh(batch[i], frame_colors, renderer)
            out.append(stage.render(renderer))
    return out


def render_mesh(
    vertices,
    triangles=None,
    *,
    vertex_colors: np.ndarray | None = None,
    options: RenderOptions | None = None,
    **option_keywords,
) -> np.ndarray:
    """Render one mesh to an image uint8 [H, W, 3] (or [H, W, 4] when transparent).

    vertices [V, 3] (cm, +y up, face towards +z; numpy, torch, or a HACKOutput whose first
    frame is drawn); triangles [F, 3], or a HACK / ModelData, whose preview colours are then
    used. vertex_colors: [V, 3|4] floats 0..1 (sRGB), replaces the skin colour.
    options / keywords: see RenderOptions (view, size, zoom, ...).
    """
    vertices, triangles, vertex_colors = _as_mesh(vertices, triangles, vertex_colors)
    v = np.asarray(vertices, np.float64)
    if v.ndim == 3 and v.shape[0] >= 1:
        v = v[0]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {v.shape}")
    return render_frames(v[None], triangles, vertex_colors=vertex_colors, options=options, **option_keywords)[
        0
    ]


def render_heatmap(
    vertices,
    triangles,
    values: np.ndarray,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    unit: str = "mm",
    label: str | None = None,
    colorbar: bool = True,
    options: RenderOptions | None = None,
    **option_keywords,
) -> np.ndarray:
    """Render per-vertex scalars [V] as colours with a colour bar; returns uint8 [H, W, 3|4].

    vertices [V, 3], triangles [F, 3], values [V] (e.g. distances in `unit`).
    The mesh is rendered in the left part of a `size` image and a colour bar panel
    (min, mid and max ticks, the unit above) fills the right part, so the output has
    exactly the requested size. `label` is written in the top-left corner. Options as in
    render_mesh; lighting defaults to "soft" here.
    """
    opts = (options or RenderOptions(lighting="soft")).updated(**option_keywords)
    vertices, triangles, _ = _as_mesh(vertices, triangles, None)
    values = np.asarray(values, np.float64).reshape(-1)
    v = np.asarray(vertices)
    if values.shape[0] != v.shape[0]:
        raise ValueError(f"{values.shape[0]} values for {v.shape[0]} vertices")
    lo, hi = value_range(values, vmin, vmax, cmap)
    colors = heatmap_colors(values, lo, hi, cmap)
    width, height = as_size(opts.size)
    bar_w = images.colorbar_width(height) if colorbar else 0
    image = render_mesh(
        v, triangles, vertex_colors=colors, options=opts.updated(size=(width - bar_w, height))
    )
    if colorbar:
        image = images.draw_colorbar(image, lo, hi, cmap, unit, width=bar_w)
    if label:
        image = images.add_label(image, label, position="top-left")
    return image

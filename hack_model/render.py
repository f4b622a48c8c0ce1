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

One pyrender OffscreenRenderer per process is kept in this module (created lazily,
resized in place when the image size changes); close_renderer() frees it.
pyrender is imported lazily, so importing this module needs no GL.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hack_model import images

__all__ = [
    "RenderUnavailableError",
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

VIEWS: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0),
    "three-quarter": (45.0, 0.0),
    "side": (90.0, 0.0),
    "back": (180.0, 0.0),
}

# Warm light skin, slightly desaturated so it reads as a neutral sculpture (sRGB).
SKIN_SRGB = (0.80, 0.73, 0.68)
DEFAULT_YFOV_DEG = 22.0  # a portrait lens: little perspective distortion of the face
DEFAULT_MARGIN = 0.08  # fraction of the image kept free on every side


class RenderUnavailableError(RuntimeError):
    """pyrender or an EGL OpenGL context is not available in this process."""


# --------------------------------------------------------------------------- colour maps

# 17 evenly spaced control colours sampled from matplotlib's published 256-entry tables
# (viridis/magma/inferno/plasma/cividis: van der Walt & Smith, CC0; turbo: Google, Apache
# 2.0; coolwarm: Moreland's CoolWarmFloat33). Linear interpolation of 17 stops stays within
# ~0.03 of the originals.
# fmt: off
_COLORMAP_STOPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.2670, 0.0049, 0.3294), (0.2823, 0.0950, 0.4173), (0.2788, 0.1755, 0.4834),
        (0.2590, 0.2515, 0.5247), (0.2297, 0.3224, 0.5457), (0.1994, 0.3876, 0.5546),
        (0.1727, 0.4488, 0.5579), (0.1490, 0.5081, 0.5573), (0.1276, 0.5669, 0.5506),
        (0.1201, 0.6222, 0.5349), (0.1539, 0.6802, 0.5042), (0.2394, 0.7356, 0.4557),
        (0.3607, 0.7860, 0.3878), (0.5063, 0.8288, 0.3004), (0.6681, 0.8620, 0.1963),
        (0.8353, 0.8860, 0.1026), (0.9932, 0.9062, 0.1439),
    ),
    "magma": (
        (0.0015, 0.0005, 0.0139), (0.0396, 0.0311, 0.1335), (0.1131, 0.0655, 0.2768),
        (0.2117, 0.0620, 0.4186), (0.3167, 0.0717, 0.4854), (0.4147, 0.1104, 0.5047),
        (0.5128, 0.1482, 0.5076), (0.6136, 0.1818, 0.4985), (0.7164, 0.2150, 0.4753),
        (0.8109, 0.2529, 0.4393), (0.8996, 0.3146, 0.3910), (0.9585, 0.4113, 0.3600),
        (0.9857, 0.5281, 0.3794), (0.9958, 0.6463, 0.4414), (0.9970, 0.7624, 0.5288),
        (0.9928, 0.8772, 0.6331), (0.9871, 0.9914, 0.7495),
    ),
    "inferno": (
        (0.0015, 0.0005, 0.0139), (0.0423, 0.0281, 0.1411), (0.1293, 0.0473, 0.2908),
        (0.2383, 0.0366, 0.3964), (0.3415, 0.0623, 0.4294), (0.4412, 0.0993, 0.4316),
        (0.5409, 0.1347, 0.4151), (0.6401, 0.1714, 0.3811), (0.7357, 0.2159, 0.3302),
        (0.8173, 0.2710, 0.2704), (0.8903, 0.3480, 0.1983), (0.9443, 0.4428, 0.1204),
        (0.9771, 0.5508, 0.0391), (0.9879, 0.6677, 0.0583), (0.9761, 0.7900, 0.1960),
        (0.9487, 0.9105, 0.3953), (0.9884, 0.9984, 0.6449),
    ),
    "plasma": (
        (0.0504, 0.0298, 0.5280), (0.1934, 0.0184, 0.5903), (0.2999, 0.0096, 0.6316),
        (0.3994, 0.0009, 0.6561), (0.4949, 0.0120, 0.6579), (0.5844, 0.0686, 0.6328),
        (0.6651, 0.1386, 0.5856), (0.7360, 0.2094, 0.5279), (0.7982, 0.2802, 0.4695),
        (0.8501, 0.3470, 0.4172), (0.8990, 0.4204, 0.3630), (0.9403, 0.4976, 0.3092),
        (0.9718, 0.5804, 0.2549), (0.9907, 0.6696, 0.2016), (0.9935, 0.7655, 0.1569),
        (0.9763, 0.8680, 0.1434), (0.9400, 0.9752, 0.1313),
    ),
    "cividis": (
        (0.0000, 0.1351, 0.3048), (0.0000, 0.1788, 0.4148), (0.1034, 0.2204, 0.4358),
        (0.1951, 0.2644, 0.4259), (0.2637, 0.3078, 0.4228), (0.3242, 0.3513, 0.4263),
        (0.3808, 0.3952, 0.4357), (0.4352, 0.4398, 0.4511), (0.4887, 0.4853, 0.4710),
        (0.5441, 0.5289, 0.4719), (0.6052, 0.5768, 0.4644), (0.6680, 0.6262, 0.4493),
        (0.7324, 0.6774, 0.4257), (0.7985, 0.7306, 0.3926), (0.8664, 0.7860, 0.3466),
        (0.9367, 0.8438, 0.2809), (0.9957, 0.9093, 0.2178),
    ),
    "turbo": (
        (0.1900, 0.0718, 0.2322), (0.2511, 0.2524, 0.6337), (0.2763, 0.4212, 0.8912),
        (0.2586, 0.5796, 0.9988), (0.1584, 0.7355, 0.9231), (0.0927, 0.8655, 0.7623),
        (0.1966, 0.9490, 0.5947), (0.4278, 0.9942, 0.3857), (0.6436, 0.9900, 0.2336),
        (0.7952, 0.9303, 0.2039), (0.9267, 0.8203, 0.2257), (0.9916, 0.6841, 0.2071),
        (0.9859, 0.5048, 0.1337), (0.9262, 0.3247, 0.0584), (0.8240, 0.1918, 0.0197),
        (0.6754, 0.0898, 0.0045), (0.4796, 0.0158, 0.0106),
    ),
    "coolwarm": (
        (0.2298, 0.2987, 0.7537), (0.3042, 0.4069, 0.8453), (0.3837, 0.5102, 0.9178),
        (0.4677, 0.6056, 0.9685), (0.5543, 0.6901, 0.9955), (0.6408, 0.7608, 0.9978),
        (0.7240, 0.8149, 0.9757), (0.8006, 0.8504, 0.9300), (0.8674, 0.8644, 0.8626),
        (0.9227, 0.8286, 0.7771), (0.9582, 0.7712, 0.6803), (0.9699, 0.6958, 0.5813),
        (0.9583, 0.6043, 0.4833), (0.9244, 0.4986, 0.3891), (0.8697, 0.3793, 0.3009),
        (0.7959, 0.2418, 0.2208), (0.7057, 0.0156, 0.1502),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
# fmt: on
# Diverging maps get a symmetric default range around 0 in heatmap_colors.
DIVERGING = frozenset({"coolwarm"})


def colormap(name: str, n: int = 256) -> np.ndarray:
    """Colour table [n, 3] (floats 0..1) of a named map; a "_r" suffix reverses it.

    Names: viridis, magma, inferno, plasma, cividis, turbo, coolwarm, gray.
    """
    base, reverse = (name[:-2], True) if name.endswith("_r") else (name, False)
    try:
        stops = np.asarray(_COLORMAP_STOPS[base], np.float64)
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; choose from {sorted(_COLORMAP_STOPS)} (or '<name>_r')"
        ) from None
    x = np.linspace(0.0, 1.0, len(stops))
    t = np.linspace(0.0, 1.0, n)
    table = np.stack([np.interp(t, x, stops[:, c]) for c in range(3)], axis=1)
    return table[::-1].copy() if reverse else table


def _value_range(
    values: np.ndarray, vmin: float | None, vmax: float | None, cmap: str
) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        lo, hi = 0.0, 1.0
    elif cmap.removesuffix("_r") in DIVERGING and vmin is None and vmax is None:
        bound = float(np.abs(finite).max())
        lo, hi = -bound, bound
    else:
        lo, hi = float(finite.min()), float(finite.max())
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    return lo, hi


def heatmap_colors(
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    nan_color: Sequence[float] = (0.6, 0.6, 0.6),
) -> np.ndarray:
    """Map scalars [V] to colours [V, 3] (floats 0..1) through a colour map.

    vmin/vmax default to the values' finite min/max (symmetric around 0 for diverging
    maps such as "coolwarm"); values outside are clamped; NaN/inf get `nan_color`.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    lo, hi = _value_range(values, vmin, vmax, cmap)
    table = colormap(cmap)
    span = hi - lo
    t = (values - lo) / span if span > 0 else np.full_like(values, 0.5)
    t = np.clip(np.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    colors = np.stack([np.interp(t, np.linspace(0.0, 1.0, len(table)), table[:, c]) for c in range(3)], 1)
    colors[~np.isfinite(values)] = np.asarray(nan_color, np.float64)[:3]
    return colors


# ------------------------------------------------------------------------------ geometry


def _incidence(triangles: np.ndarray, num_vertices: int):
    """Sparse [V, F] vertex-face incidence (scipy CSR); sums face normals onto vertices."""
    from scipy import sparse

    rows = triangles.reshape(-1)
    cols = np.repeat(np.arange(len(triangles)), 3)
    data = np.ones(rows.shape[0], np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(num_vertices, len(triangles)))


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray, incidence=None) -> np.ndarray:
    """Area-weighted smooth vertex normals [V, 3] (unit; +z for unused vertices).

    vertices [V, 3], triangles [F, 3] counter-clockwise seen from outside.
    """
    v = np.asarray(vertices, np.float32)
    tri = np.asarray(triangles, np.int64)
    if incidence is None:
        incidence = _incidence(tri, len(v))
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    face = np.cross(b - a, c - a)  # length = 2 * area: area weighting for free
    normals = np.asarray(incidence @ face, np.float32)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    bad = length[:, 0] <= 1e-20
    normals[bad] = (0.0, 0.0, 1.0)
    length[bad] = 1.0
    return normals / length


def bounding_box(vertices: np.ndarray) -> np.ndarray:
    """Axis-aligned box [2, 3] (min corner, max corner) of [V, 3] or [B, V, 3] vertices;
    pass it as `frame=` to keep one camera for a whole sequence."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    return np.stack([v.min(0), v.max(0)])


def _box_corners(box: np.ndarray) -> np.ndarray:
    lo, hi = box
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Camera-to-world rotation [3, 3]: yaw about +y, then the camera raised by pitch."""
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(-pitch), math.sin(-pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


@dataclass
class _Camera:
    pose: np.ndarray  # [4, 4] camera-to-world (pyrender: looks along its -z)
    yfov: float  # radians
    znear: float
    zfar: float


def _frame_camera(
    points: np.ndarray,
    yaw: float,
    pitch: float,
    aspect: float,
    *,
    yfov_deg: float = DEFAULT_YFOV_DEG,
    margin: float = DEFAULT_MARGIN,
    zoom: float = 1.0,
    focus: np.ndarray | None = None,
) -> _Camera:
    """Perspective camera that fits every point of [N, 3] inside the image with `margin`
    (fraction of the width/height) on each side; then zoom narrows the field of view
    around the target (the framed centre, or `focus`)."""
    rot = _rotation(yaw, pitch)
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
    depth = (eye - points) @ rot[:, 2]
    znear = max(float(depth.min()) * 0.5, distance * 1e-3)
    zfar = float(depth.max()) * 2.0 + extent
    pose = np.eye(4)
    pose[:3, :3] = rot
    pose[:3, 3] = eye
    yfov = 2.0 * math.atan(tan_y / max(zoom, 1e-6))
    return _Camera(pose=pose, yfov=yfov, znear=znear, zfar=zfar)


# ------------------------------------------------------------------------------ lighting

# (direction towards the light in camera axes [x right, y up, z towards viewer], intensity).
# pyrender's PBR shader gives a white diffuse surface facing a directional light of
# intensity pi its full base colour, so the key is a bit below pi to keep highlights
# from clipping; ambient lifts the shadow side without flattening it.
_LIGHTING: dict[str, dict] = {
    "studio": {
        "key": ((-0.70, 0.55, 0.45), 3.3),  # upper camera-left, well to the side: form
        "fill": ((0.80, -0.10, 0.60), 0.7),  # camera-right, a little low: opens shadows
        "rim": ((0.30, 0.50, -0.80), 2.5),  # behind and above: outlines the silhouette
        "ambient": 0.06,
    },
    # For colour maps: flatter light so shaded colours stay close to the colour bar.
    "soft": {
        "key": ((-0.35, 0.35, 0.87), 1.7),
        "fill": ((0.55, 0.0, 0.83), 0.8),
        "rim": ((0.35, 0.55, -0.76), 0.8),
        "ambient": 0.45,
    },
}


def _light_rotation(direction: Sequence[float]) -> np.ndarray:
    """Rotation whose +z axis points towards the light (pyrender lights shine along -z)."""
    z = np.asarray(direction, np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


# ------------------------------------------------------------------------- GL / renderer

_lock = threading.RLock()
_renderer = None  # the process's single pyrender.OffscreenRenderer
_pyrender = None


def _import_pyrender():
    """Import pyrender with PyOpenGL on EGL (headless), or raise RenderUnavailableError."""
    global _pyrender
    if _pyrender is not None:
        return _pyrender
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault(
        "MESA_SHADER_CACHE_DIR", os.path.join(tempfile.gettempdir(), "hack_model_mesa_cache")
    )
    platform = os.environ["PYOPENGL_PLATFORM"]
    if platform != "egl":
        raise RenderUnavailableError(
            f"PYOPENGL_PLATFORM={platform!r}, but hack_model.render needs 'egl' for headless "
            "rendering: unset it or set it to 'egl' before anything imports OpenGL"
        )
    gl_platform = sys.modules.get("OpenGL.platform")
    if gl_platform is not None:
        current = type(getattr(gl_platform, "PLATFORM", None)).__name__
        if current != "EGLPlatform":
            raise RenderUnavailableError(
                f"OpenGL was already imported with the {current} platform; import "
                "hack_model.render (or set PYOPENGL_PLATFORM=egl) before anything imports "
                "OpenGL, pyrender or pyglet"
            )
    try:
        import pyrender
    except Exception as err:  # ImportError, or EGL libraries missing at import time
        raise RenderUnavailableError(
            f"cannot import pyrender ({type(err).__name__}: {err}); install the render extra "
            "(pip install pyrender-maintained) and the EGL libraries "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgl1)"
        ) from err
    _pyrender = pyrender
    return pyrender


def _get_renderer(width: int, height: int):
    """The module's OffscreenRenderer, created on first use and resized in place."""
    global _renderer
    pyrender = _import_pyrender()
    if _renderer is None:
        try:
            _renderer = pyrender.OffscreenRenderer(width, height)
        except Exception as err:
            raise RenderUnavailableError(
                f"cannot create an EGL OpenGL context ({type(err).__name__}: {err}); "
                "install libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"
            ) from err
        atexit.register(close_renderer)
    elif (_renderer.viewport_width, _renderer.viewport_height) != (width, height):
        # EGL renders into framebuffer objects: pyrender rebuilds them at the new size.
        _renderer.viewport_width = width
        _renderer.viewport_height = height
    return _renderer


def _forget_renderer_in_child() -> None:
    # A forked child cannot use the parent's EGL context; let it create its own.
    global _renderer
    _renderer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_renderer_in_child)


def close_renderer() -> None:
    """Free the module's GL context (a later render creates a new one)."""
    global _renderer
    with _lock:
        if _renderer is not None:
            try:
                _renderer.delete()
            finally:
                _renderer = None


def renderer_info() -> dict[str, str]:
    """GL vendor/renderer/version strings of the module's context (e.g. Mesa llvmpipe)."""
    with _lock:
        renderer = _get_renderer(8, 8)
        from OpenGL import GL

        renderer._platform.make_current()
        try:
            return {
                key: GL.glGetString(name).decode()
                for key, name in (
                    ("vendor", GL.GL_VENDOR),
                    ("renderer", GL.GL_RENDERER),
                    ("version", GL.GL_VERSION),
                )
            }
        finally:
            renderer._platform.make_uncurrent()


# ------------------------------------------------------------------------------ the stage


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        width = height = int(size)
    else:
        width, height = (int(s) for s in size)
    if width < 8 or height < 8:
        raise ValueError(f"image size must be at least 8x8, got {width}x{height}")
    return width, height


def _view_angles(view: str | tuple[float, float], yaw, pitch) -> tuple[float, float]:
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


def _srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    # pyrender's shader writes pow(linear, 1/2.2); invert exactly that so a colour given
    # here comes out as itself where the surface is fully lit.
    return np.power(np.clip(rgb, 0.0, 1.0), 2.2)


def _rgba_colors(colors: np.ndarray | None, num_vertices: int) -> np.ndarray | None:
    """[V, 3|4] or [B, V, 3|4] sRGB floats -> linear RGBA float32 of the same leading shape."""
    if colors is None:
        return None
    c = np.asarray(colors, np.float64)
    if c.dtype.kind in "ui" or (c.size and c.max() > 1.0 + 1e-6):
        raise ValueError("vertex_colors must be floats in 0..1")
    if c.shape[-2] != num_vertices or c.shape[-1] not in (3, 4):
        raise ValueError(f"vertex_colors must be [V, 3|4] with V={num_vertices}, got {c.shape}")
    rgb = _srgb_to_linear(c[..., :3])
    alpha = c[..., 3:4] if c.shape[-1] == 4 else np.ones(c.shape[:-1] + (1,))
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)


class _Stage:
    """One pyrender scene (mesh, camera, three lights) reused for a run of frames.

    The first frame uploads the mesh; later frames overwrite its vertex buffer in place
    (positions, normals, colours), which avoids rebuilding the scene and re-uploading
    the index buffer.
    """

    def __init__(
        self,
        triangles: np.ndarray,
        num_vertices: int,
        has_colors: bool,
        background: Sequence[float],
        transparent: bool,
        lighting: str,
        roughness: float,
        backfaces: bool = True,
    ) -> None:
        pyrender = _import_pyrender()
        self.pyrender = pyrender
        self.triangles = np.ascontiguousarray(triangles, np.uint32)
        self.incidence = _incidence(self.triangles.astype(np.int64), num_vertices)
        self.num_vertices = num_vertices
        self.has_colors = has_colors
        try:
            light = _LIGHTING[lighting]
        except KeyError:
            raise ValueError(f"unknown lighting {lighting!r}; choose from {list(_LIGHTING)}") from None
        base = (1.0, 1.0, 1.0) if has_colors else tuple(_srgb_to_linear(np.array(SKIN_SRGB)))
        self.material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(*base, 1.0),
            metallicFactor=0.0,
            roughnessFactor=roughness,
        )
        bg = np.ones(4)
        bg[: min(len(background), 4)] = np.asarray(background, np.float64)[:4]
        if transparent:
            bg = np.zeros(4)  # black so edge pixels can be un-premultiplied exactly
        self.transparent = transparent
        self.backfaces = backfaces
        self.scene = pyrender.Scene(bg_color=bg, ambient_light=np.full(3, light["ambient"]))
        self.camera = pyrender.PerspectiveCamera(yfov=0.5)
        self.camera_node = self.scene.add(self.camera, pose=np.eye(4))
        self.light_nodes = []
        for name in ("key", "fill", "rim"):
            direction, intensity = light[name]
            node = self.scene.add(
                pyrender.DirectionalLight(color=np.ones(3), intensity=intensity), pose=np.eye(4)
            )
            self.light_nodes.append((node, _light_rotation(direction)))
        self.primitive = None
        self.mesh_node = None
        self.fast_update = True

    def _interleaved(self, positions, normals, colors) -> np.ndarray:
        # Same layout pyrender's Primitive uploads: position, normal, [colour] per vertex.
        parts = [positions, normals] + ([colors] if colors is not None else [])
        return np.ascontiguousarray(np.hstack(parts), np.float32)

    def set_mesh(self, positions: np.ndarray, colors: np.ndarray | None, renderer) -> None:
        """positions [V, 3]; colors linear RGBA [V, 4] or None."""
        positions = np.ascontiguousarray(positions, np.float32)
        normals = vertex_normals(positions, self.triangles, self.incidence)
        prim = self.primitive
        if prim is not None and self.fast_update and prim._in_context():
            try:
                self._upload(renderer, prim, self._interleaved(positions, normals, colors))
                # Keep pyrender's CPU-side copy in step (bounds, transparency test).
                prim.positions = positions
                prim.normals = normals
                if colors is not None:
                    prim.color_0 = colors
                return
            except Exception:  # pyrender internals changed: rebuild the mesh instead
                self.fast_update = False
        prim = self.pyrender.Primitive(
            positions=positions,
            normals=normals,
            color_0=colors,
            indices=self.triangles,
            material=self.material,
            mode=self.pyrender.constants.GLTF.TRIANGLES,
        )
        if self.mesh_node is not None:
            self.scene.remove_node(self.mesh_node)
        self.primitive = prim
        self.mesh_node = self.scene.add(self.pyrender.Mesh(primitives=[prim]))

    @staticmethod
    def _upload(renderer, prim, data: np.ndarray) -> None:
        from OpenGL import GL

        renderer._platform.make_current()
        try:
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, prim._buffers[0])
            # A layout we did not predict would draw garbage: refuse, and rebuild instead.
            if GL.glGetBufferParameteriv(GL.GL_ARRAY_BUFFER, GL.GL_BUFFER_SIZE) != data.nbytes:
                raise RuntimeError("pyrender vertex buffer layout changed")
            GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        finally:
            renderer._platform.make_uncurrent()

    def set_camera(self, camera: _Camera, aspect: float) -> None:
        self.camera.yfov = camera.yfov
        self.camera.aspectRatio = aspect
        self.camera.znear = camera.znear
        self.camera.zfar = camera.zfar
        self.scene.set_pose(self.camera_node, camera.pose)
        for node, local in self.light_nodes:
            pose = np.eye(4)
            pose[:3, :3] = camera.pose[:3, :3] @ local  # lights move with the camera
            pose[:3, 3] = camera.pose[:3, 3]
            self.scene.set_pose(node, pose)

    def render(self, renderer) -> np.ndarray:
        flags = self.pyrender.RenderFlags.NONE
        if self.backfaces:
            flags |= self.pyrender.RenderFlags.SKIP_CULL_FACES
        if self.transparent:
            flags |= self.pyrender.RenderFlags.RGBA
        color, _ = renderer.render(self.scene, flags=flags)
        color = np.asarray(color)
        if self.transparent:
            color = _unpremultiply(color)
        return np.ascontiguousarray(color)


def _unpremultiply(rgba: np.ndarray) -> np.ndarray:
    """Anti-aliased edges were blended over transparent black; restore straight alpha."""
    out = rgba.copy()
    alpha = rgba[..., 3:4].astype(np.float32)
    edge = (alpha > 0) & (alpha < 255)
    rgb = rgba[..., :3].astype(np.float32) * 255.0 / np.maximum(alpha, 1.0)
    out[..., :3] = np.where(edge, np.clip(rgb + 0.5, 0, 255), rgba[..., :3]).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------ public API


def render_frames(
    vertices_batch: np.ndarray,
    triangles: np.ndarray,
    *,
    view: str | tuple[float, float] = "front",
    yaw: float | None = None,
    pitch: float | None = None,
    size: int | tuple[int, int] = 512,
    vertex_colors: np.ndarray | None = None,
    transparent: bool = False,
    frame: np.ndarray | None = None,
    zoom: float = 1.0,
    focus: Sequence[float] | None = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    lighting: str = "studio",
    roughness: float = 0.6,
    margin: float = DEFAULT_MARGIN,
    yfov_deg: float = DEFAULT_YFOV_DEG,
    backfaces: bool = True,
) -> list[np.ndarray]:
    """Render B frames of one mesh topology with one fixed camera and one scene.

    vertices_batch [B, V, 3] (cm); triangles [F, 3] shared by all frames.
    vertex_colors: [V, 3|4] for all frames or [B, V, 3|4] per frame, floats 0..1 (sRGB).
    frame: box [2, 3] (min, max) or points [N, 3] the camera must fit; default: the box
        of the whole batch, so the camera does not move between frames.
    Other keywords as in render_mesh. Returns B images uint8 [H, W, 3] ([H, W, 4] when
    transparent).
    """
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
    colors = _rgba_colors(vertex_colors, num_vertices)
    if colors is not None and colors.ndim == 3 and colors.shape[0] != num_frames:
        raise ValueError(f"{colors.shape[0]} colour frames for {num_frames} vertex frames")
    width, height = _as_size(size)
    aspect = width / height
    yaw_deg, pitch_deg = _view_angles(view, yaw, pitch)

    if frame is None:
        points = _box_corners(bounding_box(batch)) if num_frames > 1 else batch[0]
    else:
        points = np.asarray(frame, np.float64).reshape(-1, 3)
        if points.shape[0] == 2:
            points = _box_corners(points)
    camera = _frame_camera(
        points,
        yaw_deg,
        pitch_deg,
        aspect,
        yfov_deg=yfov_deg,
        margin=margin,
        zoom=zoom,
        focus=None if focus is None else np.asarray(focus, np.float64),
    )

    out: list[np.ndarray] = []
    with _lock:
        renderer = _get_renderer(width, height)
        stage = _Stage(
            tri,
            num_vertices,
            colors is not None,
            background,
            transparent,
            lighting,
            roughness,
            backfaces,
        )
        stage.set_camera(camera, aspect)
        for i in range(num_frames):
            frame_colors = colors[i] if colors is not None and colors.ndim == 3 else colors
            stage.set_mesh(batch[i], frame_colors, renderer)
            out.append(stage.render(renderer))
    return out


def render_mesh(
    vertices: np.ndarray,
    triangles: np.ndarray,
    *,
    view: str | tuple[float, float] = "front",
    yaw: float | None = None,
    pitch: float | None = None,
    size: int | tuple[int, int] = 512,
    vertex_colors: np.ndarray | None = None,
    transparent: bool = False,
    frame: np.ndarray | None = None,
    zoom: float = 1.0,
    focus: Sequence[float] | None = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    lighting: str = "studio",
    roughness: float = 0.6,
    margin: float = DEFAULT_MARGIN,
    yfov_deg: float = DEFAULT_YFOV_DEG,
    backfaces: bool = True,
) -> np.ndarray:
    """Render one mesh to an image uint8 [H, W, 3] (or [H, W, 4] when transparent).

    vertices [V, 3] (cm, +y up, face towards +z); triangles [F, 3] (int).
    view: "front" | "three-quarter" | "side" | "back" or (yaw, pitch) in degrees;
        yaw/pitch keywords override the view's angles (see the module docstring).
    size: 512 or (width, height).
    vertex_colors: [V, 3|4] floats 0..1 (sRGB); replaces the skin material's colour.
    transparent: RGBA output, alpha 0 on the background.
    frame: box [2, 3] (min, max) or points [N, 3] to fit in the image instead of this
        mesh's vertices; use one box (see bounding_box) for all frames of a sequence.
    zoom: > 1 narrows the field of view around the target (the framed centre or focus).
    focus: point [3] to centre on (e.g. the throat), usually with zoom > 1.
    background: RGB floats 0..1 (ignored when transparent).
    lighting: "studio" (three-point key/fill/rim, fixed to the camera) or "soft".
    margin: free border on each side as a fraction of the image (default 0.08).
    roughness: skin material roughness (0 glossy .. 1 matte).
    yfov_deg: vertical field of view before zoom (default 22 degrees, a portrait lens).
    backfaces: draw back faces too, so open meshes (the cut at the chest) look solid
        from behind; False culls them, ~30% faster on Mesa's llvmpipe.
    """
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {v.shape}")
    return render_frames(
        v[None],
        triangles,
        view=view,
        yaw=yaw,
        pitch=pitch,
        size=size,
        vertex_colors=vertex_colors,
        transparent=transparent,
        frame=frame,
        zoom=zoom,
        focus=focus,
        background=background,
        lighting=lighting,
        roughness=roughness,
        margin=margin,
        yfov_deg=yfov_deg,
        backfaces=backfaces,
    )[0]


def render_heatmap(
    vertices: np.ndarray,
    triangles: np.ndarray,
    values: np.ndarray,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    unit: str = "mm",
    label: str | None = None,
    size: int | tuple[int, int] = 512,
    colorbar: bool = True,
    lighting: str = "soft",
    **kw,
) -> np.ndarray:
    """Render per-vertex scalars [V] as colours with a colour bar; returns uint8 [H, W, 3|4].

    vertices [V, 3], triangles [F, 3], values [V] (e.g. distances in `unit`).
    The mesh is rendered in the left part of a `size` image and a colour bar panel
    (min, mid and max ticks, the unit above) fills the right part, so the output has
    exactly the requested size. `label` is written in the top-left corner. Other keywords
    go to render_mesh (view, yaw, pitch, transparent, frame, zoom, focus, background...).
    """
    values = np.asarray(values, np.float64).reshape(-1)
    v = np.asarray(vertices)
    if values.shape[0] != v.shape[0]:
        raise ValueError(f"{values.shape[0]} values for {v.shape[0]} vertices")
    lo, hi = _value_range(values, vmin, vmax, cmap)
    colors = heatmap_colors(values, lo, hi, cmap)
    width, height = _as_size(size)
    bar_w = images.colorbar_width(height) if colorbar else 0
    image = render_mesh(
        v, triangles, size=(width - bar_w, height), vertex_colors=colors, lighting=lighting, **kw
    )
    if colorbar:
        image = images.draw_colorbar(image, lo, hi, cmap, unit, width=bar_w)
    if label:
        image = images.add_label(image, label, position="top-left")
    return image

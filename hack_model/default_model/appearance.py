"""Preview colours of the default head: skin, lips, brows, eyes and mouth interior.

Per-vertex sRGB albedo [V, 3] (`ModelData.vertex_colors`), so renders read as a face at a
glance (white eyes with an iris, red lips, a dark mouth) without a texture. Every region is a
smooth mask on the rest mesh; the colours move with the vertices under any deformation.
"""

from __future__ import annotations

import numpy as np

from . import head_mesh as hm
from .sdf import HeadParams, eye_center, smoothstep

SKIN = np.array([0.80, 0.66, 0.58])
LIP = np.array([0.70, 0.42, 0.41])
BROW = np.array([0.42, 0.33, 0.28])
FLUSH = np.array([0.80, 0.55, 0.50])  # cheeks, nose, ears
BEARD = np.array([0.66, 0.56, 0.52])  # shaved beard shadow
PALE = np.array([0.85, 0.73, 0.66])  # under the jaw, throat
SCLERA = np.array([0.93, 0.91, 0.87])
IRIS = np.array([0.36, 0.27, 0.18])
LIMBUS = np.array([0.20, 0.15, 0.11])
PUPIL = np.array([0.04, 0.03, 0.03])
TEETH = np.array([0.93, 0.90, 0.82])
GUM = np.array([0.82, 0.47, 0.47])
TONGUE = np.array([0.78, 0.40, 0.42])
MOUTH_OUTER = np.array([0.55, 0.25, 0.25])
MOUTH_DEEP = np.array([0.22, 0.07, 0.08])
UPPER_VERMILION = 0.85  # cm above the lip line at the middle
LOWER_VERMILION = 0.95  # cm below it
EDGE = 0.18  # cm, soft edge of the lip mask (about half a grid cell)
BROW_EDGE = 0.6  # cm, soft edge of the brows (hair thins out, no hard outline)


def _mix(base: np.ndarray, colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = np.clip(weight, 0.0, 1.0)[:, None]
    return base * (1 - w) + colour[None] * w


def _lip_line(P: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Height of the lip margin at each vertex's x (interpolated along the margin). [V]"""
    order = np.argsort(P[margin, 0])
    return np.interp(P[:, 0], P[margin, 0][order], P[margin, 1][order])


def lip_weight(topo: hm.Topology, P: np.ndarray) -> np.ndarray:
    """1 on the vermilion of both lips, with a cupid's bow, narrowing to the corners. [V]"""
    up, lo = topo.upper_margin["mouth"], topo.lower_margin["mouth"]
    half_width = np.abs(P[up[[0, -1]], 0]).max()
    s = np.clip(np.abs(P[:, 0]) / half_width, 0.0, 1.0)
    taper = np.sqrt(np.clip(1.0 - s**2.2, 0.0, 1.0))
    # cupid's bow: two peaks either side of a shallow dip over the philtrum
    peaks = np.exp(-(((np.abs(P[:, 0]) - 0.55) / 0.35) ** 2))
    bow = 1.0 + 0.12 * peaks - 0.10 * np.exp(-((P[:, 0] / 0.2) ** 2))
    above = P[:, 1] - _lip_line(P, up)
    below = _lip_line(P, lo) - P[:, 1]
    h_up = UPPER_VERMILION * taper * bow
    w_up = 1.0 - smoothstep(above, h_up - EDGE, h_up + EDGE)
    w_lo = 1.0 - smoothstep(below, LOWER_VERMILION * taper - EDGE, LOWER_VERMILION * taper + EDGE)
    front = smoothstep(P[:, 2], 8.5, 9.5) * (s < 1.0)
    skin = topo.part == hm.PART_SKIN
    w = np.where(above >= -0.05, w_up, 0.0) + np.where(below >= -0.05, w_lo, 0.0)
    return np.clip(w, 0.0, 1.0) * front * skin * (topo.row >= 0)


def brow_weight(topo: hm.Topology, P: np.ndarray, hp: HeadParams) -> np.ndarray:
    """Density of the eyebrow hair: an arch over each eye, fullest over the inner third,
    feathering out at its head (towards the nose), thinning to the tail, and fading over a
    few millimetres at the edges (softer above than below, as hair thins out). [V]"""
    ec = eye_center(hp)
    x = np.abs(P[:, 0])
    t = (x - (ec[0] - 2.0)) / 3.9  # 0 at the inner end, 1 at the tail
    tc = np.clip(t, 0.0, 1.0)
    centre_y = ec[1] + 2.05 + 0.35 * np.sin(np.pi * tc * 0.9) - 0.1 * tc
    half_height = 0.3 - 0.17 * tc**1.5
    along = smoothstep(t, -0.15, 0.22) * (1.0 - smoothstep(t, 0.6, 1.05))
    dy = P[:, 1] - centre_y
    edge = np.where(dy > 0, BROW_EDGE, 0.6 * BROW_EDGE)
    across = 1.0 - smoothstep(np.abs(dy), half_height - 0.5 * edge, half_height + edge)
    density = 0.7 + 0.3 * (1.0 - smoothstep(t, 0.1, 0.9))  # denser at the body
    front = smoothstep(P[:, 2], ec[2] - 1.5, ec[2] - 0.5)
    return along * across * density * front * (topo.part == hm.PART_SKIN)


def _blob(P: np.ndarray, c, sigma) -> np.ndarray:
    q = (P - np.asarray(c, float)) / np.asarray(sigma, float)
    return np.exp(-0.5 * (q * q).sum(axis=1))


def skin_variation(topo: hm.Topology, P: np.ndarray) -> np.ndarray:
    """Skin albedo [V, 3] that varies as skin does: flushed cheeks, nose and ears, a faint
    beard shadow around the mouth and on the jaw, paler under the jaw. Smooth, symmetric."""
    A = P.copy()
    A[:, 0] = np.abs(P[:, 0])  # x folded onto x >= 0 (symmetric)
    x, y, z = A[:, 0], P[:, 1], P[:, 2]
    c = np.tile(SKIN, (len(P), 1))
    flush = 0.55 * _blob(A, [3.9, 0.9, 8.6], [1.5, 1.3, 1.6])
    flush += 0.45 * _blob(P, [0.0, 0.4, 12.4], [0.9, 1.4, 1.2])
    flush += 0.3 * _blob(A, [7.6, 1.7, -0.3], [1.2, 2.6, 1.6])
    c = _mix(c, FLUSH, flush)
    # beard: below the nose, around the mouth, chin and jaw, fading above the jaw's corner
    front = smoothstep(z, 1.5, 5.0)
    beard = smoothstep(-y, 0.8, 2.0) * (1.0 - smoothstep(-y, 8.0, 9.5)) * front
    beard *= 1.0 - smoothstep(x, 5.5, 7.0) * smoothstep(y, -5.5, -3.0)
    c = _mix(c, BEARD, 0.35 * beard)
    pale = smoothstep(-y, 7.0, 9.0) * (1.0 - smoothstep(-y, 10.0, 14.0)) * smoothstep(z, 1.0, 5.0)
    return _mix(c, PALE, 0.45 * pale)


def eye_colours(unit: np.ndarray) -> np.ndarray:
    """Colours of one eyeball's vertices from their unit directions [k, 3] (gaze +z)."""
    angle = np.degrees(np.arccos(np.clip(unit[:, 2], -1.0, 1.0)))
    c = np.tile(SCLERA, (len(unit), 1))
    c = _mix(c, LIMBUS, 1.0 - smoothstep(angle, 30.0, 38.0))
    c = _mix(c, IRIS, 1.0 - smoothstep(angle, 22.0, 30.0))
    return _mix(c, PUPIL, 1.0 - smoothstep(angle, 8.0, 13.0))


def preview_colours(topo: hm.Topology, P: np.ndarray, hp: HeadParams | None = None) -> np.ndarray:
    """sRGB albedo [V, 3] of the default head at rest positions P [V, 3]."""
    hp = hp or HeadParams()
    c = skin_variation(topo, P)
    c = _mix(c, LIP, lip_weight(topo, P))
    c = _mix(c, BROW, 0.5 * brow_weight(topo, P, hp))
    for side in ("L", "R"):
        c[topo.eye_ids[side]] = eye_colours(topo.eye_unit[side])
    bag = topo.bag_ids
    for k in range(bag.shape[0]):
        depth = (k + 1) / bag.shape[0]
        c[bag[k]] = MOUTH_OUTER * (1 - depth) + MOUTH_DEEP * depth
    part = topo.part
    c[(part == hm.PART_TEETH_UPPER) | (part == hm.PART_TEETH_LOWER)] = TEETH
    c[(part == hm.PART_GUM_UPPER) | (part == hm.PART_GUM_LOWER)] = GUM
    c[part == hm.PART_TONGUE] = TONGUE
    return np.clip(c, 0.0, 1.0)


def bake_texture(
    uv_coords: np.ndarray, corner_uv: np.ndarray, corners: np.ndarray, colours: np.ndarray,
    size: int = 512,
) -> np.ndarray:
    """Rasterise per-vertex colours [V, 3] into a UV texture uint8 [size, size, 3] (row 0 is
    v = 1, as images are stored): linear inside the UV layout, nearest colour in the gaps."""
    from scipy.interpolate import LinearNDInterpolator
    from scipy.spatial import cKDTree

    vert_of_uv = np.zeros(len(uv_coords), np.int64)
    vert_of_uv[corner_uv] = corners
    col = colours[vert_of_uv]
    s = (np.arange(size) + 0.5) / size
    U, Vv = np.meshgrid(s, 1.0 - s)
    pix = np.stack([U.ravel(), Vv.ravel()], 1)
    lin = LinearNDInterpolator(uv_coords, col)(pix)
    bad = ~np.isfinite(lin).all(axis=1)
    _, near = cKDTree(uv_coords).query(pix[bad])
    lin[bad] = col[near]
    return np.round(np.clip(lin, 0.0, 1.0) * 255).astype(np.uint8).reshape(size, size, 3)


def encode_png(image: np.ndarray) -> np.ndarray:
    """PNG file bytes of an RGB uint8 image, as a uint8 array [n] (deterministic)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", optimize=True)
    return np.frombuffer(buf.getvalue(), np.uint8).copy()

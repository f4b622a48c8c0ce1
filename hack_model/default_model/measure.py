"""Anthropometric measurements of a head on the default topology (cm)."""

from __future__ import annotations

import numpy as np

from ..model_data import ModelData
from .head_mesh import NECK_BASE_Y
from .pose_correctives import MID_NECK_POINT, outline_points, plane_outline
from .sdf import STERNAL_RECESS_Y

MID_NECK_Y = float(MID_NECK_POINT[1])
SHOULDER_Y = NECK_BASE_Y + 3.5  # across the trapezius, above the cut
# the ears on the template (the helix round its centre, sdf.head_sdf): (y, z) centre and radii
EAR_CENTER_YZ = np.array([1.8, -0.3])
EAR_RADII_YZ = np.array([3.2, 2.1])


def neck_circumference(
    P: np.ndarray, tris: np.ndarray, rest: np.ndarray | None = None, y: float = MID_NECK_Y
) -> float:
    """Perimeter of the ring of skin that lies at height y on the rest mesh (rest [V, 3],
    default P), measured where P has it: like a tape laid round the neck once, it stays on
    the same skin when a longer or shorter neck moves the middle of the neck up or down (a
    fixed height would slide into the trapezius on a short neck)."""
    rest = P if rest is None else rest
    E, t = plane_outline(rest, tris, np.array([0.0, y, 0.0]), np.array([0.0, 1.0, 0.0]), radius=40.0)
    ends = outline_points(P, E, t)
    return float(np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1).sum())


def larynx_prominence(
    T: np.ndarray, P: np.ndarray, low: float = STERNAL_RECESS_Y - 1.0, high: float = -9.0
) -> float:
    """How far the front midline of the neck bulges out of the straight line through its
    ends (the thyroid prominence; about 0 on the mean head). The midline vertices are the
    template's (T) between heights low and high, measured where they are in P. The lower
    end is 1 cm into the throat's recession towards the sternal notch (it has receded
    under 3 mm there): further down the midline curves back and forward again, and a chord
    down there made that curve (away from the larynx) the largest deviation; a shorter
    chord ends on the prominence's own slopes and sees little of it."""
    ids = np.nonzero((np.abs(T[:, 0]) < 1e-3) & (T[:, 2] > 2.0) & (T[:, 1] > low) & (T[:, 1] < high))[0]
    ids = ids[np.argsort(T[ids, 1])]
    Q = P[ids][:, 1:]  # (y, z)
    chord = Q[-1] - Q[0]
    normal = np.array([-chord[1], chord[0]]) / np.linalg.norm(chord)  # forward (+z) side
    normal *= np.sign(normal[1])
    d = (Q - Q[0]) @ normal
    return float(d[np.argmax(np.abs(d))])  # negative: a hollow


def measurements(data: ModelData, P: np.ndarray | None = None) -> dict[str, float]:
    """Head breadth, length, face height, eye, mouth and face widths, neck girth and placement.

    `head_breadth` and `head_length` look at fixed heights (above y = 5.5, glabella near
    y = 5.6), so they also change when the head moves up or down on a longer neck;
    `cranial_breadth` and `cranial_length` take the same heights relative to the eyes."""
    P = data.template_vertices.astype(np.float64) if P is None else P
    lm = P[data.landmark_indices]
    skin = data.extras.get("part")
    skin = np.ones(len(P), bool) if skin is None else skin == 0
    S = P[skin]
    # head breadth is the cranium's (euryon to euryon): never the ears, whose helix rises into
    # the measured heights when a longer neck or a bigger head lifts them
    T = data.template_vertices.astype(np.float64)[skin]
    q = (T[:, 1:] - EAR_CENTER_YZ) / EAR_RADII_YZ
    Sc = S[~((np.abs(T[:, 0]) > 7.0) & ((q * q).sum(1) < 1.0))]
    cranial = Sc[(Sc[:, 1] > 5.5) & (Sc[:, 2] < 4.0)]  # above the ears
    glabella = S[(np.abs(S[:, 0]) < 0.3) & (np.abs(S[:, 1] - 5.6) < 0.6)][:, 2].max()
    eyes = lm[36:48]
    eye_y = float(eyes[:, 1].mean())
    # the same regions as head_breadth / head_length, placed relative to the eyes
    cranial_rel = Sc[(Sc[:, 1] > eye_y + 2.1) & (Sc[:, 2] < 4.0)]
    glabella_rel = S[(np.abs(S[:, 0]) < 0.3) & (np.abs(S[:, 1] - eye_y - 2.2) < 0.6)][:, 2].max()
    def face_width(y0: float, y1: float, z0: float) -> float:  # of the skin in front of z0
        band = S[(S[:, 1] > y0) & (S[:, 1] < y1) & (S[:, 2] > z0)]
        return float(2 * np.abs(band[:, 0]).max())

    return {
        "head_breadth": float(2 * np.abs(cranial[:, 0]).max()),
        "head_length": float(glabella - S[S[:, 1] > 0.0, 2].min()),  # to the occiput, not the upper back
        "nasion_chin": float(np.linalg.norm(lm[27] - lm[8])),
        "outer_eye_corners": float(np.linalg.norm(lm[36] - lm[45])),
        "mouth_width": float(np.linalg.norm(lm[48] - lm[54])),
        "neck_circumference": neck_circumference(P, data.triangles(), data.template_vertices.astype(float)),
        "eye_level_y": float(eyes[:, 1].mean()),
        "chin_y": float(lm[8, 1]),
        "top_y": float(S[:, 1].max()),
        "neck_base_y": float(S[:, 1].min()),
        "front_z": float(S[:, 2].max()),
        "back_z": float(S[:, 2].min()),
        "cranial_breadth": float(2 * np.abs(cranial_rel[:, 0]).max()),
        "cranial_length": float(glabella_rel - S[:, 2].min()),
        "nose_length": float(np.linalg.norm(lm[27] - lm[33])),  # nasion - subnasale
        "nose_protrusion": float(lm[30, 2] - lm[33, 2]),  # tip in front of subnasale
        "nose_width": float(np.linalg.norm(lm[31] - lm[35])),
        "jaw_width": float(np.linalg.norm(lm[4] - lm[12])),  # near the gonial angles
        "cheekbone_width": face_width(0.0, 3.0, 3.0),  # in front of the ears
        "lower_face_width": face_width(-6.0, -4.0, 1.0),  # around the gonial angles
        "shoulder_width": float(2 * np.abs(S[np.abs(S[:, 1] - SHOULDER_Y) < 0.3, 0]).max()),
        "mid_neck_width": float(2 * np.abs(S[np.abs(S[:, 1] - MID_NECK_Y) < 0.3, 0]).max()),
        "brow_prominence": float(glabella_rel - lm[27, 2]),  # glabella in front of nasion
        "larynx_prominence": larynx_prominence(data.template_vertices.astype(np.float64), P),
    }

"""Signed-distance sculpt of the default head and neck (cm, +y up, +z forward).

The surface is the zero set of a smooth union of anatomical primitives
(cranium, forehead, face mass, jaw, nose, lips, brow ridge, cheekbones, eye
sockets with lid spheres, ears, neck with sternocleidomastoids). It is
star-shaped from `HEAD_CENTER` for the head and from the neck axis for the
neck, which is what the grid in `head_mesh.py` relies on. `HeadParams` holds
the few numbers the shape space varies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HEAD_CENTER = np.array([0.0, 1.0, 0.5])
# heights (cm) where the neck starts to flare into the trapezius at its sides, at the back
# and in front (below the lowest head rows there, head_mesh.E_JUNCTION and E_NAPE: the
# head's rays from HEAD_CENTER must leave through the plain tube); the flare widens the neck
# this many times
TRAPEZIUS_SIDE_Y = -10.4
TRAPEZIUS_BACK_Y = -10.2
TRAPEZIUS_FRONT_Y = -13.2
SHOULDER_FLARE = 1.1
FLARE_HEIGHT = 6.0  # cm from where the flare starts at the sides to where it is complete
SHOULDER_SLOPE = 0.4  # cm outwards per cm down, below the flare: shoulders, not a pedestal's wall
NAPE_LEAN = 0.15  # cm back per cm down
NECK_LEAN = 0.5  # cm the neck's axis lies further back at its base than under the skull
STERNAL_RECESS_Y = -12.0  # below this the throat recedes to the sternal notch


@dataclass
class HeadParams:
    """Proportions of one head. The defaults are the mean (adult, sex-neutral)."""

    skull_scale: np.ndarray = field(default_factory=lambda: np.array([7.3, 9.9, 9.3]))
    skull_center: np.ndarray = field(default_factory=lambda: np.array([0.0, 4.6, 0.0]))
    forehead_slope: float = 0.0  # >0 pushes the upper forehead back
    face_width: float = 6.7
    face_height: float = 6.6
    face_depth: float = 6.8
    jaw_width: float = 4.6  # half distance between the gonial angles
    jaw_drop: float = 0.0  # moves the chin and jaw line down (>0 longer face)
    chin_forward: float = 0.0
    chin_size: float = 1.0
    cheekbone: float = 1.0  # prominence factor
    brow_ridge: float = 1.0
    nose_length: float = 1.0
    nose_projection: float = 1.0
    nose_width: float = 1.0
    lip_fullness: float = 1.0
    mouth_width: float = 1.0
    eye_spacing: float = 1.0
    ear_size: float = 1.0
    neck_radius: np.ndarray = field(default_factory=lambda: np.array([5.7, 5.85]))
    neck_forward: float = 0.0
    scm: float = 1.0  # sternocleidomastoid prominence
    overall: float = 1.0  # uniform scale about the neck base / head centre


# ----------------------------------------------------------------- primitives
def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union) with blend radius k."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smin_exp(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum with a blend of the same depth as smin(a, b, k) but infinitely smooth:
    smin's blend ends with a jump in curvature, which a broad, gently curved surface such
    as the cranium shows as a line in its highlight."""
    ke = k / (4.0 * np.log(2.0))
    m = np.minimum(a, b)
    return m - ke * np.log1p(np.exp(-np.abs(a - b) / ke))


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -smin(-a, -b, k)


def ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (exact on the surface)."""
    r = np.asarray(r, float)
    q = (p - np.asarray(c, float)) / r
    k0 = np.linalg.norm(q, axis=-1)
    k1 = np.linalg.norm(q / r, axis=-1)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def capsule(p: np.ndarray, a, b, ra: float, rb: float) -> np.ndarray:
    """Distance to a segment a-b with a radius that varies linearly from ra to rb."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
    return d - (ra + (rb - ra) * t)


def smoothstep(x: np.ndarray, a: float = 0.0, b: float = 1.0) -> np.ndarray:
    """0 up to a, 1 from b, the smooth cubic in between (b < a runs it the other way)."""
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def smootherstep(x: np.ndarray) -> np.ndarray:
    """0 up to 0, 1 from 1, the quintic in between: unlike smoothstep, its curvature does not
    jump at the ends either (a surface bent by smoothstep shows a line in its highlight where
    the bend starts)."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * t * (t * (6 * t - 15) + 10)


def mirror_x(p: np.ndarray) -> np.ndarray:
    """Fold space onto x >= 0 so paired features are built once (exact symmetry)."""
    q = p.copy()
    q[..., 0] = np.abs(q[..., 0])
    return q


# ------------------------------------------------------------------- features
EYE_RADIUS = 1.2
JAW_LINE_SLOPE = 0.24  # the jaw line falls this much per cm forward, from the angle to the chin
LID_RADIUS = 1.36


def eye_center(hp: HeadParams) -> np.ndarray:
    """Centre of the left (+x) eyeball."""
    return np.array([3.15 * hp.eye_spacing, 3.45, 8.1])


def neck_axis_z(y: np.ndarray, hp: HeadParams) -> np.ndarray:
    """z of the neck's axis at height y: the neck leans forward from the shoulders up to the
    head (as the cervical spine does), so the throat recedes towards the sternal notch."""
    t = np.clip((-4.0 - y) / 15.0, 0.0, 1.4)
    return -0.7 + (hp.neck_forward - NECK_LEAN) * t


def head_sdf(p: np.ndarray, hp: HeadParams) -> np.ndarray:
    """Signed distance (negative inside) of the head and neck at points p [..., 3]."""
    q = mirror_x(p)
    x, y, z = q[..., 0], q[..., 1], q[..., 2]
    jd = hp.jaw_drop
    # Cranium and forehead.
    d = ellipsoid(p, hp.skull_center, hp.skull_scale)
    fore = ellipsoid(
        p, [0.0, 6.8, 3.6 - hp.forehead_slope], [6.3, 6.4, 6.9 - 0.5 * hp.forehead_slope]
    )
    d = smin_exp(d, fore, 2.0)
    # Parietal eminences and a rounded occiput (no bullet-shaped skull).
    parietal = ellipsoid(p, [0.0, 6.6, -0.8], [7.45, 7.5, 7.2])
    d = smin_exp(d, parietal, 2.5)
    occiput = ellipsoid(p, [0.0, 4.2, -4.4], [5.6, 4.8, 4.6])
    d = smin_exp(d, occiput, 2.5)
    # Face mass (maxilla, cheeks) and the muzzle around the mouth.
    face = ellipsoid(p, [0.0, -0.3, 3.9], [hp.face_width, hp.face_height, hp.face_depth])
    d = smin(d, face, 2.0)
    muzzle = ellipsoid(p, [0.0, -3.1, 7.6], [3.5 * hp.mouth_width, 3.0, 3.5])
    d = smin(d, muzzle, 2.0)  # (a wide blend: no snout-like crease from the cheeks)
    # Mandible: chin, body and ramus.
    chin_c = np.array([0.0, -6.3 - jd, 9.0 + hp.chin_forward])
    chin = ellipsoid(p, chin_c, np.array([2.8, 1.5, 1.7]) * hp.chin_size)
    d = smin(d, chin, 2.5)
    gon = np.array([hp.jaw_width, -4.6 - 0.6 * jd, 2.4])
    body = capsule(q, chin_c + [1.0, 0.25, -0.8], gon, 1.05 * hp.chin_size, 0.9)
    # (blends narrower than the face's: two wide blends over each other inflated the sides
    # of the lower face by over a centimetre, a heavy, jowly jaw)
    d = smin(d, body, 1.8)
    ramus = capsule(q, gon, [hp.jaw_width + 0.3, 0.4, 1.2], 0.8, 0.8)
    d = smin(d, ramus, 1.2)
    # the mandible's U seen from below: one convex section from the chin to the angles
    # (the chin, body and ramus alone leave a hollow between the chin and the angle)
    jaw_y = y + JAW_LINE_SLOPE * (z - gon[2]) + 0.4 * jd
    jaw_u = ellipsoid(
        np.stack([x, jaw_y, z], -1), [0.0, gon[1] + 0.6, gon[2] - 0.2],
        [hp.jaw_width - 0.1, 2.0, 8.1 + hp.chin_forward],
    )
    d = smin(d, jaw_u, 1.5)
    # Cheekbones.
    cheek = ellipsoid(q, [4.9, 2.1, 6.3], np.array([1.6, 1.05, 1.7]) * hp.cheekbone)
    d = smin(d, cheek, 2.0)
    # Cheek fat pads: the malar pad under the eye, filling the hollow beside the nose, and
    # the buccal fat down to the jaw.
    malar = ellipsoid(q, [2.75, 0.6, 8.0], [2.2, 1.9, 1.5])
    d = smin(d, malar, 1.6)
    buccal = ellipsoid(q, [3.3, -2.4, 7.6], [1.7, 2.0, 1.7])
    d = smin(d, buccal, 2.0)
    buccal = ellipsoid(q, [4.5, -0.6, 6.4], [1.7, 2.0, 2.2])
    d = smin(d, buccal, 2.0)
    # the cheek's lower half over the masseter, so the side of the face runs smoothly from
    # the cheekbone to the jaw line (no hollow cheek, no jowl)
    masseter = ellipsoid(q, [4.1, -2.9, 4.7], [1.4, 2.3, 2.6])
    d = smin(d, masseter, 2.0)
    # Brow ridge.
    brow = ellipsoid(q, [2.8, 5.4, 8.85], np.array([3.0, 1.4, 1.3]) * [1, 1, hp.brow_ridge])
    d = smin(d, brow, 2.4)
    # the temple behind the brow ridge's end, over the temporalis (no dent beside the brow)
    temple = ellipsoid(q, [5.0, 4.6, 5.5], [1.8, 2.0, 2.1])
    d = smin(d, temple, 1.8)
    # Eye sockets carved out, then the lid spheres around the eyeballs.
    ec = eye_center(hp)
    socket = ellipsoid(q, ec + [0.1, 0.15, 2.1], [2.0, 1.4, 1.6])
    d = smax(d, -socket, 1.5)
    lids = np.linalg.norm(q - ec, axis=-1) - LID_RADIUS
    d = smin(d, lids, 0.7)
    # Nose: bridge, tip, alae and columella.
    nl, npj, nw = hp.nose_length, hp.nose_projection, hp.nose_width
    root = np.array([0.0, 3.9, 10.25])
    tip = np.array([0.0, 3.9 - 3.45 * nl, 10.25 + 2.2 * npj])
    bridge = capsule(p, root + [0, 0, -0.25], tip + [0, 0.25, -0.45], 0.55 * nw, 0.8 * nw)
    d = smin(d, bridge, 1.3)
    wedge = capsule(p, root + [0, -0.6, -1.2], tip + [0, -0.2, -1.9], 0.8 * nw, 1.5 * nw)
    d = smin(d, wedge, 1.2)
    tipb = ellipsoid(p, tip, np.array([0.8, 0.7, 0.7]) * [nw, 1, 1])
    d = smin(d, tipb, 0.7)
    ala = ellipsoid(q, [1.15 * nw, tip[1] - 0.8, tip[2] - 1.7], [0.7, 0.6, 0.8])
    d = smin(d, ala, 0.8)
    colum = capsule(p, tip + [0, -0.3, -0.2], [0.0, tip[1] - 1.3, tip[2] - 1.25], 0.45, 0.4)
    d = smin(d, colum, 0.6)
    # Lips.
    lf = hp.lip_fullness
    upper = ellipsoid(p, [0.0, -2.8, 10.8], np.array([2.4 * hp.mouth_width, 0.6, 1.0 * lf]))
    d = smin(d, upper, 0.6)
    lower = ellipsoid(p, [0.0, -3.95, 10.65], np.array([2.1 * hp.mouth_width, 0.65, 1.0 * lf]))
    d = smin(d, lower, 0.6)
    # Ears: a rim with a hollow concha, sitting on the side of the head.
    es = hp.ear_size
    ear = ellipsoid(q, [7.15, 1.8, -0.3], np.array([1.05, 3.0, 1.85]) * es)
    d = smin(d, ear, 0.6)
    concha = ellipsoid(q, [8.15 + 0.9 * (es - 1), 1.5, 0.0], np.array([0.8, 1.5, 0.95]) * es)
    d = smax(d, -concha, 0.5)
    # the folds: helix rim, antihelix with its upper branch, tragus, antitragus, lobule
    ec_ = np.array([7.95 + 0.9 * (es - 1), 1.8, -0.3])
    # (finely sampled curves: a few long straight capsules leave knuckles at their joints)
    rim = [ec_ + es * np.array([0.05 * np.cos(a), 2.7 * np.sin(a), 1.6 * np.cos(a)])
           for a in np.radians(np.linspace(45.0, 250.0, 14))]  # root over the top to the lobule
    for k, (a, b) in enumerate(zip(rim[:-1], rim[1:])):
        r0 = 0.24 + 0.06 * np.sin(np.pi * k / 12)
        r1 = 0.24 + 0.06 * np.sin(np.pi * (k + 1) / 12)
        d = smin(d, capsule(q, a, b, r0 * es, r1 * es), 0.3)
    s_ = np.linspace(0.0, 1.0, 7)[:, None]
    p0, p1, p2 = np.array([0.15, -1.2, -0.75]), np.array([0.15, 0.5, -1.0]), np.array([0.1, 1.7, -0.2])
    anti = [ec_ + es * v for v in (1 - s_) ** 2 * p0 + 2 * s_ * (1 - s_) * p1 + s_**2 * p2]
    for a, b in zip(anti[:-1], anti[1:]):
        d = smin(d, capsule(q, a, b, 0.24 * es, 0.24 * es), 0.35)
    for c_, r_, k_ in (
        ([0.15, -0.4, 1.25], [0.3, 0.42, 0.28], 0.25),  # tragus
        ([0.2, -1.35, -0.35], [0.28, 0.28, 0.3], 0.25),  # antitragus
        ([-0.1, -2.55, 0.05], [0.42, 0.65, 0.62], 0.4),  # lobule
    ):
        d = smin(d, ellipsoid(q, ec_ + es * np.array(c_), es * np.array(r_)), k_)
    # Neck: elliptic tube around a forward-leaning axis, with the sternocleidomastoids.
    az = neck_axis_z(y, hp)
    rx, rz = hp.neck_radius
    # Towards its base the neck flares into the trapezius and the tops of the shoulders, which
    # round over into the upper arms just above the cut: sideways from under the ears, at the
    # back from under the occiput (the nape), while the front recedes to the sternal notch and
    # the chest comes forward again below it (the neck leans forward on the shoulders).
    # The flare starts higher behind than in front: the trapezius's upper edge runs down
    # from the nape to the shoulder, the clavicles lie lower (seen from the side, one
    # sloping line, not a collar round the neck).
    facing = (z - az) / np.maximum(np.hypot(x, z - az), 1e-9)  # 1 in front, -1 behind
    drop = np.where(facing > 0, TRAPEZIUS_FRONT_Y - TRAPEZIUS_SIDE_Y, TRAPEZIUS_SIDE_Y - TRAPEZIUS_BACK_Y)
    start = TRAPEZIUS_SIDE_Y + drop * facing
    side = smootherstep((start - y) / FLARE_HEIGHT)
    back = smootherstep((start - y) / 4.5)
    notch = smoothstep((STERNAL_RECESS_Y - y) / 3.5) - 1.6 * smoothstep((-15.5 - y) / 4.0)
    # the nape leans back from under the occiput, less steeply than the lowest head rays run
    nape = NAPE_LEAN * 1.5 * np.logaddexp(0.0, (-9.5 - y) / 1.5) / rz
    below_flare = np.logaddexp(0.0, (start - FLARE_HEIGHT - y) / 1.2) * 1.2  # cm under the flare's end
    fx = 1.0 + SHOULDER_FLARE * side + SHOULDER_SLOPE * below_flare / rx
    fz = np.where(z < az, 1.0 + nape + 0.35 * back, 1.0 - 0.12 * notch)
    nq = np.stack([x / (rx * fx), (z - az) / (rz * fz)], axis=-1)
    nr = np.linalg.norm(nq, axis=-1)
    neck = (nr - 1.0) * min(rx, rz) * np.minimum(fx, fz)
    neck = np.where(y > 2.0, np.maximum(neck, y - 2.0), neck)
    # (smin's blend with the tube's flat top would end along a line round the back of the
    # head, from ear to ear, at the height where y - 2 exceeds the blend radius: a seam)
    d = smin_exp(d, neck, 2.5)
    scm_top = np.array([5.0, -1.2, -1.6])
    scm_bot = np.array([1.3, -20.5, float(neck_axis_z(np.array(-20.5), hp)) + 4.1])  # at the sternum
    scm = capsule(q, scm_top, scm_bot, 0.85 * hp.scm, 0.75 * hp.scm)
    d = smin(d, scm, 1.6)
    return d


def raycast(
    origins: np.ndarray, dirs: np.ndarray, hp: HeadParams, r_max: float = 30.0, step: float = 0.08
) -> np.ndarray:
    """Distance along each ray [R, 3] to the first inside-to-outside crossing. [R]"""
    R = origins.shape[0]
    ts = np.arange(0.0, r_max, step)
    out = np.full(R, np.nan)
    lo = np.zeros(R)
    hi = np.zeros(R)
    found = np.zeros(R, bool)
    for c in range(0, R, 2000):
        o = origins[c : c + 2000]
        dd = dirs[c : c + 2000]
        pts = o[:, None, :] + ts[None, :, None] * dd[:, None, :]
        f = head_sdf(pts, hp)
        cross = (f[:, :-1] < 0) & (f[:, 1:] >= 0)
        has = cross.any(axis=1)
        k = np.argmax(cross, axis=1)
        lo[c : c + 2000] = ts[k]
        hi[c : c + 2000] = ts[k + 1]
        found[c : c + 2000] = has
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        f = head_sdf(origins + mid[:, None] * dirs, hp)
        inside = f < 0
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    out[found] = (0.5 * (lo + hi))[found]
    return out

"""The 55 ARKit/ICT expression blendshapes of the default model.

Each shape is built from a few muscle-like primitives acting on the rest mesh:
- a hinged jaw (rotation about the temporomandibular axis, weighted by a jaw
  region that is sharp at the lips and smooth over the cheeks and under the chin),
- lids that rotate about the eyeball centre (a blink brings the upper lid margin
  onto the lower one), eyeballs that rotate about their centres,
- linear "muscles": a displacement at an anchor with a smooth anisotropic
  Gaussian falloff, confined to the upper or lower lip by the mouth slit.
Shapes are built for the subject's left (+x, ARKit `_L`); `_R` is the exact
mirror through the vertex map, and symmetric shapes are symmetrised.
"""

from __future__ import annotations

import numpy as np

from ..core.numpy_math import axis_angle_to_matrix, vertex_normals
from . import head_mesh as hm
from .sdf import HeadParams, eye_center, smoothstep

# Opening is a rotation about an axis below the condyles (the instantaneous centre of the
# mandible's rotation while the condyles glide forward) plus that glide.
JAW_HINGE = np.array([0.0, -1.0, 1.5])
JAW_OPEN_DEG = 19.0
JAW_GLIDE = np.array([0.0, -0.15, 0.9])
LID_OVERLAP = 0.035  # cm, see Rig.blink
BAG_REACH = 4.0  # rings of the oral cavity over which lip motions fade out
LOWER_LIP_REACH = 1.2  # cm below the lower lip margin over which mouthClose fades


def rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    """[3, 3] rotation by deg degrees about axis (any length)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    return axis_angle_to_matrix(a * np.radians(deg))


def rotate_about(P: np.ndarray, centre: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Displacement [V, 3] that rotates P about centre by R."""
    return (P - centre) @ R.T + centre - P


def mirror_shape(d: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """The x-mirror image of a displacement field: vertex i takes its partner's offset."""
    return d[mirror] * np.array([-1.0, 1.0, 1.0])


def symmetrise(d: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    return 0.5 * (d + mirror_shape(d, mirror))


def gauss(P: np.ndarray, c, sigma) -> np.ndarray:
    """Anisotropic Gaussian falloff around c with per-axis sigma. [V]"""
    q = (P - np.asarray(c, float)) / np.asarray(sigma, float)
    return np.exp(-0.5 * (q * q).sum(axis=1))


class Rig:
    """Regions and anchors of one head, shared by all expression primitives."""

    def __init__(self, topo: hm.Topology, P: np.ndarray, hp: HeadParams | None = None):
        self.topo, self.P = topo, P
        hp = hp or HeadParams()
        V = len(P)
        self.V = V
        self.skin = topo.part == hm.PART_SKIN
        self.mouth = topo.part == hm.PART_MOUTH
        self.phi = np.degrees(np.nan_to_num(topo.phi))
        self.elev = np.nan_to_num(hm.warped_elevations(topo), nan=-90.0)
        on_grid = topo.row >= 0
        neck = on_grid & (topo.row < hm.NECK_ROWS)
        self.elev[neck] = hm.E_JUNCTION - 1.0
        um, lm = topo.upper_margin["mouth"], topo.lower_margin["mouth"]
        self.mouth_corner = P[um[-1]]  # left (+x)
        self.mouth_centre = 0.5 * (P[um[len(um) // 2]] + P[lm[len(lm) // 2]])
        self.e_mouth = hm.head_row_elevations()[topo.mouth_row - hm.NECK_ROWS]
        self.phi_corner = np.degrees(hm.column_azimuths()[topo.mouth_cols[1]])
        self.upper_lip = self._side(4.0, 2.0)
        self.jaw = self._jaw_weight()
        self.eye_c = eye_center(hp)
        self.hp = hp
        # muscles leave the lids to the lid primitives (which keep the margins apart)
        r_l = np.linalg.norm(P - self.eye_c, axis=1)
        r_r = np.linalg.norm(P - self.eye_c * [-1, 1, 1], axis=1)
        self.eye_guard = smoothstep(np.minimum(r_l, r_r), 1.8, 2.8)

    def _side(self, lateral_deg: float, vertical_deg: float, shift: float = 0.0) -> np.ndarray:
        """1 above the mouth slit, 0 below: sharp between the corners, smooth beyond. [V]"""
        t = self.topo
        upper_sharp = (t.row > t.mouth_row) | ((t.row == t.mouth_row) & ~t.below_slit)
        smooth = 0.5 + 0.5 * np.tanh((self.elev - self.e_mouth + shift) / vertical_deg)
        out = np.clip((np.abs(self.phi) - self.phi_corner) / lateral_deg, 0.0, 1.0)
        s = np.where(upper_sharp, 1.0, 0.0) * (1 - out) + smooth * out
        s[t.row < 0] = smooth[t.row < 0]
        # mouth bag: by its half; the last (merged) ring is shared
        bag = t.bag_ids
        side = t.bag_side
        for k in range(bag.shape[0]):
            s[bag[k]] = np.where(side > 0, 1.0, np.where(side < 0, 0.0, 0.5))
        s[bag[-1]] = 0.5
        s[~(self.skin | self.mouth)] = 1.0
        return s

    def _jaw_weight(self) -> np.ndarray:
        """How much each vertex follows the mandible. [V]"""
        w = 1.0 - self._side(12.0, 8.0)
        t = self.topo
        # the lips stay joined at the corners, so the opening is an oval, not a box
        mirror_corner = self.mouth_corner * [-1.0, 1.0, 1.0]
        near = gauss(self.P, self.mouth_corner, [1.0, 1.2, 1.0])
        near = near + gauss(self.P, mirror_corner, [1.0, 1.2, 1.0])
        w = w * (1.0 - 0.85 * np.clip(near, 0.0, 1.0))
        w *= 1.0 - smoothstep(np.abs(self.phi), 70.0, 100.0)
        w *= smoothstep(self.elev, hm.E_JUNCTION - 0.5, -46.0)
        w[~self.skin] = 0.0
        w[(t.row < 0) & self.skin] = 0.0  # the crown never moves
        # the oral cavity follows its lip margin at the front; deeper in, its floor goes with
        # the mandible and its roof with the skull; its merged back seam goes half way
        loop, bag = t.bag_loop, t.bag_ids
        half = np.where(t.bag_side < 0, 1.0, np.where(t.bag_side > 0, 0.0, 0.5))
        K = bag.shape[0]
        for k in range(K - 1):
            g = smoothstep(np.array(k / (K - 1)), 0.0, 0.6)
            w[bag[k]] = (1 - g) * w[loop] + g * half
        w[bag[-1]] = 0.5
        # lower teeth, gums and tongue ride on the mandible, the upper teeth on the skull
        w[np.isin(t.part, hm.LOWER_JAW_PARTS)] = 1.0
        return w

    # ------------------------------------------------------------ primitives
    def muscle(self, anchor, disp, sigma, region: np.ndarray | None = None) -> np.ndarray:
        """Pull the skin near anchor by disp [3] with a Gaussian falloff. [V, 3]"""
        w = gauss(self.P, anchor, sigma) * self.skin * self.eye_guard
        if region is not None:
            w = w * region
        return w[:, None] * np.asarray(disp, float)[None]

    def lip_band(self, upper: bool, sigma=(1.6, 0.75, 1.2), side: float = 0.0) -> np.ndarray:
        """Weight of the upper or lower lip (left half if side > 0). [V]"""
        s = self.upper_lip if upper else 1.0 - self.upper_lip
        c = self.mouth_centre + [0.0, 0.45 if upper else -0.5, 0.0]
        g = np.exp(-0.5 * (((self.P[:, 1] - c[1]) / sigma[1]) ** 2))
        # fades before the corners, where the lips meet: no shear between them there
        lat = 1.0 - smoothstep(np.abs(self.P[:, 0]), 1.0, 2.5)
        front = smoothstep(self.P[:, 2], 5.0, 7.0)  # the face, not the nape at the lips' height
        w = s * g * lat * front * (self.skin | self.mouth)
        if side > 0:
            w = w * smoothstep(self.P[:, 0], -0.8, 0.8)
        return self.follow_bag(w)

    def lower_lip_follower(self) -> np.ndarray:
        """1 on the lower lip margin and the mouth bag below it, fading over LOWER_LIP_REACH
        down the chin; 0 on the upper lip. [V]"""
        lm = self.topo.lower_margin["mouth"]
        order = np.argsort(self.P[lm, 0])
        margin_y = np.interp(self.P[:, 0], self.P[lm, 0][order], self.P[lm, 1][order])
        below = np.clip(margin_y - self.P[:, 1], 0.0, None)
        corner_x = np.abs(self.mouth_corner[0])
        beside = 1.0 - smoothstep(np.abs(self.P[:, 0]), corner_x, corner_x + 1.5)  # no cheek crease
        w = (1.0 - self.upper_lip) * np.exp(-0.5 * (below / LOWER_LIP_REACH) ** 2) * beside
        w = w * (self.skin | self.mouth)
        # the cavity in front of the lower teeth closes with the lip (by its own height, like
        # the skin); behind them it stays open around the teeth
        w[self.topo.bag_ids[1]] *= 0.5
        w[self.topo.bag_ids[2:].ravel()] = 0.0
        return w

    def follow_bag(self, d: np.ndarray) -> np.ndarray:
        """Copy the lip margin's weights [V] or displacements [V, 3] into the mouth bag,
        fading inwards."""
        t = self.topo
        K = t.bag_ids.shape[0]
        d = d.copy()
        for k in range(K):
            d[t.bag_ids[k]] = d[t.bag_loop] * max(0.0, 1.0 - (k + 1) / BAG_REACH)
        return d

    def jaw_rotation(self, deg: float, axis=(1.0, 0.0, 0.0)) -> np.ndarray:
        R = rotation(np.asarray(axis), deg)
        return self.jaw[:, None] * rotate_about(self.P, JAW_HINGE, R)

    # --------------------------------------------------------------- eyes
    def lid_weights(self, upper: bool, reach_deg: float = 7.0) -> np.ndarray:
        """Left eye's upper or lower lid: 1 at the margin, fading over reach_deg. [V]"""
        t = self.topo
        a, b = t.eye_cols["L"]
        phis = np.degrees(hm.column_azimuths())
        pa, pb = phis[a], phis[b]
        e_s = hm.head_row_elevations()[t.eye_rows - hm.NECK_ROWS]
        is_up = (t.row > t.eye_rows) | ((t.row == t.eye_rows) & ~t.below_slit)
        side = is_up if upper else ~is_up & (t.row >= 0)
        m = self.elev - e_s if upper else e_s - self.elev
        margin_e = np.interp(self.phi, [pa, pb], [0, 0])  # slit row
        del margin_e
        radial = 1.0 - smoothstep(m, 0.0, reach_deg + 3.5)
        lat = smoothstep(self.phi, pa - 3.0, pa + 1.0) * (1 - smoothstep(self.phi, pb - 1.0, pb + 3.0))
        w = radial * lat * side * self.skin * (t.row >= 0)
        return w

    def blink(self, fraction: float = 1.0, gap: float = 0.02) -> np.ndarray:
        """Upper lid down onto the lower lid (left eye), rotating about the eyeball centre."""
        t = self.topo
        P = self.P
        c = self.eye_c
        up, lo = t.upper_margin["eye_L"], t.lower_margin["eye_L"]

        def ang(p: np.ndarray) -> np.ndarray:
            return np.degrees(np.arctan2(p[..., 1] - c[1], p[..., 2] - c[2]))

        delta = ang(P[up]) - ang(P[lo])  # per margin column, degrees to close
        cols_phi = self.phi[up]
        w = self.lid_weights(True)
        theta = np.interp(self.phi, cols_phi, delta) * w * fraction
        d = np.zeros_like(P)
        idx = np.nonzero(w > 0)[0]
        # A closing upper lid also rides out a little (LID_OVERLAP) so that it shingles over a
        # lower lid that squinting raises at the same time, instead of cutting through it.
        out = LID_OVERLAP * max(fraction, 0.0)
        for i in idx:
            R = rotation([1.0, 0.0, 0.0], theta[i])
            q = R @ (P[i] - c)
            d[i] = q + c - P[i] + out * w[i] * q / np.linalg.norm(q)
        if fraction >= 1.0:
            # the margin lands on the lower margin, just outside it
            radial = (P[lo] - c) / np.linalg.norm(P[lo] - c, axis=1, keepdims=True)
            target = P[lo] + LID_OVERLAP * radial
            inner = slice(1, len(up) - 1)
            d[up[inner]] = (target - P[up])[inner]
        return d

    def lower_lid_raise(self, deg: float) -> np.ndarray:
        """Lower lid up (left eye), most in the middle: the corners, where the lids meet
        even when open, stay put, so a squint never pushes it through a blinking upper lid."""
        w = self.lid_weights(False, 6.0)
        a, b = self.topo.eye_cols["L"]
        phis = np.degrees(hm.column_azimuths())
        s = np.clip((self.phi - phis[a]) / (phis[b] - phis[a]), 0.0, 1.0)
        w = w * np.sin(np.pi * s) ** 1.5
        d = np.zeros_like(self.P)
        for i in np.nonzero(w > 0)[0]:
            R = rotation([1.0, 0.0, 0.0], -deg * w[i])
            q = R @ (self.P[i] - self.eye_c)
            # and slips a little inwards, under a closing upper lid
            d[i] = q + self.eye_c - self.P[i] - 0.03 * w[i] * q / np.linalg.norm(q)
        return d

    def eye_turn(self, axis, deg: float) -> np.ndarray:
        ids = self.topo.eye_ids["L"]
        d = np.zeros_like(self.P)
        d[ids] = rotate_about(self.P[ids], self.eye_c, rotation(axis, deg))
        return d


def build_expressions(
    topo: hm.Topology, P: np.ndarray, mirror: np.ndarray, names: list[str],
    hp: HeadParams | None = None,
) -> np.ndarray:
    """All expression displacements [E, V, 3] in the order of `names`."""
    r = Rig(topo, P, hp)
    L: dict[str, np.ndarray] = {}  # left-side shapes; the right ones are mirrored
    S: dict[str, np.ndarray] = {}  # symmetric shapes
    ec = r.eye_c
    mc = r.mouth_corner
    upper_side = r.upper_lip
    lower_side = 1.0 - upper_side
    above_eye = smoothstep(r.elev, hm.E_EYE + 2.0, hm.E_EYE + 6.0)
    below_eye = 1.0 - smoothstep(r.elev, hm.E_EYE - 8.0, hm.E_EYE - 4.5)  # spares the lid margin

    # Brows (frontalis, corrugator).
    inner = np.array([1.2, 5.75, 10.5])
    outer = np.array([4.6, 5.6, 8.7])
    L["browInnerUp"] = r.muscle(inner, [0.05, 0.8, 0.05], [1.1, 1.6, 1.5], above_eye)
    L["browOuterUp"] = r.muscle(outer, [0.0, 0.75, 0.0], [1.2, 1.6, 1.6], above_eye)
    L["browDown"] = r.muscle(
        [2.6, 5.8, 9.9], [-0.25, -0.5, 0.12], [1.7, 1.3, 1.6], above_eye
    ) + r.muscle([1.0, 5.2, 10.6], [-0.1, -0.15, 0.0], [0.6, 0.8, 1.0], above_eye)

    # Lids and gaze.
    L["eyeBlink"] = r.blink()
    L["eyeWide"] = r.blink(-0.3) + r.muscle(ec + [0, 1.8, 1.0], [0, 0.15, 0], [1.4, 1.0, 1.0])
    # (no upper-lid part: with a full blink on top it would push the lid past the lower one)
    L["eyeSquint"] = r.lower_lid_raise(10.0) + r.muscle(
        ec + [0.3, -1.3, 0.9], [0, 0.2, 0.05], [1.3, 0.8, 1.0], below_eye
    )
    L["eyeLookUp"] = r.eye_turn([1, 0, 0], -20.0) + r.blink(-0.15)
    L["eyeLookDown"] = r.eye_turn([1, 0, 0], 20.0) + r.blink(0.12)
    L["eyeLookIn"] = r.eye_turn([0, 1, 0], -22.0)
    L["eyeLookOut"] = r.eye_turn([0, 1, 0], 22.0)

    # Cheeks and nose.
    # outward from the mouth's vertical axis: a smooth field, so the lips never meet
    cheek_c = np.array([4.0, -2.3, 8.3])
    w = gauss(P, cheek_c, [1.6, 1.7, 1.6]) * r.skin
    out = np.stack([P[:, 0], np.zeros(len(P)), 0.6 * (P[:, 2] - 4.0)], 1)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    L["cheekPuff"] = r.follow_bag(w[:, None] * 0.85 * out)
    L["cheekSquint"] = r.muscle([4.0, 1.2, 8.0], [0.05, 0.35, 0.1], [1.3, 1.0, 1.2], below_eye)
    L["cheekRaiser"] = r.muscle([4.3, 0.3, 7.6], [0.15, 0.45, 0.2], [1.8, 1.5, 1.5], below_eye)
    L["noseSneer"] = r.muscle([1.3, -0.4, 10.6], [0.05, 0.35, -0.08], [0.8, 0.8, 0.9]) + r.muscle(
        [0.7, 2.6, 10.9], [0.0, -0.12, 0.0], [0.7, 0.6, 0.8]
    )

    # Lip corners (zygomaticus, triangularis, buccinator, risorius).
    corner = (1.1, 1.0, 1.2)
    near_mouth = r.follow_bag(gauss(P, mc, corner) * (r.skin | r.mouth))
    L["mouthSmile"] = r.follow_bag(near_mouth[:, None] * np.array([0.2, 0.6, -0.35]))
    L["mouthFrown"] = r.follow_bag(near_mouth[:, None] * np.array([0.05, -0.45, -0.05]))
    L["mouthDimple"] = r.follow_bag(near_mouth[:, None] * np.array([0.2, 0.0, -0.45]))
    L["mouthStretch"] = r.follow_bag(near_mouth[:, None] * np.array([0.45, -0.25, -0.15]))
    upl, lol = r.lip_band(True, side=1.0), r.lip_band(False, side=1.0)
    L["mouthUpperUp"] = (upl[:, None] * [0.0, 0.45, 0.05])
    L["mouthLowerDown"] = (lol[:, None] * [0.0, -0.5, 0.05])
    # press: each lip thins towards the slit (no crossing), slight retraction
    y_slit = r.mouth_centre[1]
    band = (upl + lol)
    L["mouthPress"] = band[:, None] * np.stack(
        [np.zeros(len(P)), -0.35 * (P[:, 1] - y_slit), np.full(len(P), -0.12)], 1
    )

    # Symmetric mouth shapes.
    up, lo = r.lip_band(True), r.lip_band(False)
    lips = up + lo
    S["mouthPucker"] = lips[:, None] * np.stack(
        [-0.35 * P[:, 0], np.zeros(len(P)), np.full(len(P), 0.7)], 1
    )
    S["mouthFunnel"] = lips[:, None] * np.stack(
        [-0.2 * P[:, 0], 0.25 * (up - lo) / np.maximum(lips, 1e-9), np.full(len(P), 0.5)], 1
    )
    S["mouthRollUpper"] = up[:, None] * np.array([0.0, 0.08, -0.35])
    S["mouthRollLower"] = lo[:, None] * np.array([0.0, -0.08, -0.35])
    S["mouthShrugUpper"] = up[:, None] * np.array([0.0, 0.2, 0.2])
    chin = gauss(P, [0.0, -6.0, 10.2], [1.8, 1.2, 1.5]) * r.skin * lower_side
    S["mouthShrugLower"] = lo[:, None] * np.array([0.0, 0.04, 0.25]) + chin[:, None] * [0, 0.3, 0.1]
    # Jaw.
    S["jawOpen"] = r.jaw_rotation(JAW_OPEN_DEG) + r.jaw[:, None] * JAW_GLIDE
    S["jawForward"] = r.jaw[:, None] * np.array([0.0, 0.0, 0.6])
    L["jawLeft"] = r.jaw[:, None] * np.array([0.6, 0.0, 0.0]) + r.jaw_rotation(3.0, (0, 1, 0))
    L["mouthLeft"] = r.follow_bag(lips[:, None] * np.array([0.6, 0.0, -0.05]))
    # mouthClose (ARKit: lip closure independent of the jaw): the lower lip undoes jawOpen's
    # displacement, so at mouthClose = jawOpen the lips are sealed at any opening while the
    # chin stays down. Like every linear mouthClose it is only meaningful up to jawOpen's
    # weight: beyond it (alone, say) the lower lip rises through the upper one.
    S["mouthClose"] = -r.lower_lip_follower()[:, None] * S["jawOpen"]

    out = np.zeros((len(names), len(P), 3))
    for k, name in enumerate(names):
        base = name[:-2] if name.endswith(("_L", "_R")) else name
        if name in S:
            out[k] = symmetrise(S[name], mirror)
        elif name.endswith("_L"):
            out[k] = L[base]
        elif name.endswith("_R"):
            out[k] = mirror_shape(L[base], mirror)
        elif name in ("jawLeft", "mouthLeft"):
            out[k] = L[name]
        elif name in ("jawRight", "mouthRight"):
            out[k] = mirror_shape(L[name.replace("Right", "Left")], mirror)
        else:
            raise KeyError(name)
    return out


def vertex_normals_fn(topo: hm.Topology, P: np.ndarray) -> np.ndarray:
    return vertex_normals(P, hm.all_triangles(topo))

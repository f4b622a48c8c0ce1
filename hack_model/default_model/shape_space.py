"""Shape space of the default model: PCA of generated heads.

Each generated head is the mean head deformed by smooth space warps with
anatomical meaning (cranium breadth, length and height, face height, jaw width,
chin, nose length/projection/width, lips, brow ridge, cheekbones, eye spacing,
ears, neck girth and length, larynx prominence, forehead slope, occiput) plus
small individual bumps. Their amplitudes are drawn from a population model:
two latent factors, sex-like and age-like, load on many features at once
(larger, longer faces, heavier jaws, bigger noses and necks, a prominent larynx
for the "male" end), plus independent per-feature variation. The principal
components of the generated displacements, sorted by variance and scaled by
their standard deviations, are the shape directions (unit-variance coefficients).

The warps are smooth and small-gradient, so heads stay valid; the eye regions
move rigidly with their eyeballs (no lid-eyeball crossing), and the head above
the neck moves as a block when the neck lengthens.
"""

from __future__ import annotations

import numpy as np

from . import head_mesh as hm
from .sdf import HeadParams, eye_center, neck_axis_z


def _g(P: np.ndarray, c, s) -> np.ndarray:
    q = (P - np.asarray(c, float)) / np.asarray(s, float)
    return np.exp(-0.5 * (q * q).sum(1))


def _smooth01(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def basis_fields(topo: hm.Topology, P: np.ndarray, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Named unit displacement fields [K, V, 3] (about 1 cm at their peak)."""
    V = len(P)
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    head_c = np.array([0.0, 4.0, 0.0])  # cranium scalings are about this point
    neck_w = 1.0 - _smooth01(y, -9.0, -5.0)  # neck region (below the jaw)
    head_w = 1.0 - neck_w
    face_w = _smooth01(z, 2.0, 6.0) * head_w
    fields: dict[str, np.ndarray] = {}
    zero = np.zeros(V)

    def f(name: str, dx, dy, dz) -> None:
        fields[name] = np.stack([dx + zero, dy + zero, dz + zero], 1)

    # Cranium proportions (relative scalings about the head centre, head region only).
    f("cranium_breadth", 0.13 * x * head_w, 0, 0)
    f("cranium_length", 0, 0, 0.1 * (z - head_c[2]) * head_w * (1 - 0.7 * face_w))
    f("cranium_height", 0, 0.1 * np.maximum(y - 4.0, 0) * head_w, 0)
    f("occiput", 0, 0, -_g(P, [0, 3.0, -9.0], [4.0, 3.5, 3.0]))
    f("forehead_slope", 0, 0, -0.8 * _g(P, [0, 10.0, 8.0], [4.5, 2.5, 3.0]))
    # Face.
    below_nasion = _smooth01(-y, -3.7, 0.0) * face_w
    f("face_height", 0, 0.12 * (y - 3.7) * below_nasion, 0)
    jaw = _g(P, [0, -6.0, 5.0], [8.0, 2.5, 5.0])
    f("jaw_width", 0.15 * x * jaw, 0, 0)
    f("chin_forward", 0, 0, _g(P, [0, -6.5, 10.0], [2.5, 1.8, 2.5]))
    f("chin_down", 0, -0.8 * _g(P, [0, -7.0, 9.0], [3.5, 2.0, 3.0]), 0)
    nose = _g(P, [0, 1.0, 12.0], [1.5, 2.2, 1.8])
    f("nose_length", 0, -0.3 * (3.9 - y) * nose * (y < 3.9), 0)
    f("nose_projection", 0, 0, 0.5 * np.maximum(z - 10.2, 0) * nose)
    f("nose_width", 0.45 * x * _g(P, [0, -0.5, 11.0], [1.8, 1.2, 1.6]), 0, 0)
    lips = _g(P, [0, -3.3, 11.0], [2.2, 1.0, 1.2])
    f("lip_fullness", 0, 0.25 * (y + 3.3) * lips, 0.6 * lips)
    f("mouth_width", 0.2 * x * lips, 0, 0)
    f("brow_ridge", 0, 0, 0.8 * _g(np.abs(P), [2.8, 5.6, 9.2], [2.0, 1.0, 1.5]))
    f("cheekbones", 0.5 * np.sign(x) * _g(np.abs(P), [5.0, 2.0, 6.8], [1.8, 1.5, 2.0]), 0,
      0.3 * _g(np.abs(P), [5.0, 2.0, 6.8], [1.8, 1.5, 2.0]))
    f("cheek_fullness", 0.6 * np.sign(x) * _g(np.abs(P), [4.5, -2.5, 7.0], [1.8, 2.0, 2.0]), 0, 0)
    f("eye_spacing", 0.5 * np.sign(x) * _g(np.abs(P), [3.2, 3.4, 8.5], [1.6, 1.5, 2.0]), 0, 0)
    f("ear_size", 0, 0.15 * (y - 1.8) * _g(np.abs(P), [7.4, 1.8, -0.3], [1.5, 3.0, 2.0]), 0)
    f("ear_protrusion", 0.6 * np.sign(x) * _g(np.abs(P), [8.0, 1.8, -0.8], [1.2, 2.5, 1.5]), 0, 0)
    # Neck.
    axis_z = neck_axis_z(y, HeadParams())
    f("neck_girth", 0.12 * x * neck_w, 0, 0.12 * (z - axis_z) * neck_w)
    # the neck stretches between its base and the jaw; the head above moves as a block
    f("neck_length", 0, 0.1 * np.clip(y + 19.3, 0, 11.0), 0)
    f("larynx_prominence", 0, -0.45 * _g(P, [0, -12.0, 6.0], [1.2, 1.5, 1.5]),
      0.9 * _g(P, [0, -12.0, 6.0], [1.2, 1.5, 1.5]))
    f("trapezius", 0.5 * np.sign(x) * _g(np.abs(P), [5.5, -18.0, -3.0], [2.5, 3.0, 3.0]), 0, 0)
    names = list(fields)
    B = [fields[n] for n in names]
    # Individual variation: smooth bumps along the surface normal at fixed random sites.
    rng = np.random.default_rng(seed + 1000)
    skin = np.nonzero(topo.part == hm.PART_SKIN)[0]
    # outward from the head's vertical axis: smooth everywhere (surface normals flip across
    # the lips and would push them into each other)
    foot = np.stack([np.zeros(V), np.clip(y, -19.3, 4.0), np.full(V, 0.5)], 1)
    n = P - foot
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    for k in range(44):
        c = P[skin[rng.integers(len(skin))]]
        w = _g(P, c, [2.5, 2.5, 2.5])
        B.append(0.6 * w[:, None] * n)
        names.append(f"bump_{k:02d}")
    B = np.stack(B)
    return names, _rigid_features(topo, P, B)


def _rigid_features(topo: hm.Topology, P: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Eyeballs and the skin hugging them move rigidly (by the field at the eye centre),
    so lids never cut into the eyes; non-skin parts follow their surroundings."""
    B = B.copy()
    for side, sx in (("L", 1.0), ("R", -1.0)):
        c = eye_center(HeadParams()) * [sx, 1.0, 1.0]
        ids = topo.eye_ids[side]
        # field at the centre: average of the skin vertices around the eye
        r = np.linalg.norm(P - c, axis=1)
        ring = (r < 2.2) & (topo.part == hm.PART_SKIN)
        dc = B[:, ring].mean(axis=1)  # [K, 3]
        B[:, ids] = dc[:, None, :]
        s = _smooth01(r, 1.8, 3.2)
        near = (r < 3.2) & (topo.part == hm.PART_SKIN)
        B[:, near] = dc[:, None, :] + (B[:, near] - dc[:, None, :]) * s[near][None, :, None]
    # the mouth bag moves with its lip margin (it is thin near the corners)
    loop, bag = topo.bag_loop, topo.bag_ids
    L = len(loop)
    partner = (L - np.arange(L)) % L
    for k in range(bag.shape[0] - 1):
        B[:, bag[k]] = B[:, loop]
    B[:, bag[-1]] = 0.5 * (B[:, loop] + B[:, loop[partner]])
    return B


# Population model: std of each named feature (cm at the field's peak / scale units),
# and loadings of the sex-like and age-like latent factors.
FEATURE_STD = {
    "cranium_breadth": 0.45, "cranium_length": 0.5, "cranium_height": 0.5, "occiput": 0.35,
    "forehead_slope": 0.4, "face_height": 0.5, "jaw_width": 0.5, "chin_forward": 0.35,
    "chin_down": 0.35, "nose_length": 0.4, "nose_projection": 0.4, "nose_width": 0.35,
    "lip_fullness": 0.35, "mouth_width": 0.4, "brow_ridge": 0.3, "cheekbones": 0.35,
    "cheek_fullness": 0.4, "eye_spacing": 0.25, "ear_size": 0.35, "ear_protrusion": 0.35,
    "neck_girth": 0.5, "neck_length": 0.45, "larynx_prominence": 0.35, "trapezius": 0.4,
}  # fmt: skip
SEX_LOADING = {
    "cranium_breadth": 0.4, "cranium_length": 0.5, "face_height": 0.6, "jaw_width": 0.7,
    "chin_forward": 0.3, "chin_down": 0.4, "nose_length": 0.5, "nose_projection": 0.4,
    "nose_width": 0.4, "lip_fullness": -0.4, "brow_ridge": 0.8, "neck_girth": 0.8,
    "larynx_prominence": 0.9, "trapezius": 0.6, "forehead_slope": 0.5,
}  # fmt: skip
AGE_LOADING = {
    "nose_length": 0.5, "ear_size": 0.6, "lip_fullness": -0.5, "cheek_fullness": -0.4,
    "chin_down": 0.3, "neck_girth": 0.3, "jaw_width": 0.2, "cheekbones": -0.3,
}  # fmt: skip
BUMP_STD = 0.25


def sample_heads(names: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitudes [n, K] of the basis fields for n generated people."""
    K = len(names)
    sex = rng.uniform(-1, 1, n)
    age = rng.uniform(-1, 1, n)
    A = np.zeros((n, K))
    for k, name in enumerate(names):
        if name.startswith("bump_"):
            A[:, k] = BUMP_STD * rng.standard_normal(n)
            continue
        s = FEATURE_STD[name]
        ls, la = SEX_LOADING.get(name, 0.0), AGE_LOADING.get(name, 0.0)
        # uniform latents in [-1, 1] have variance 1/3; the rest is the feature's own
        own = np.sqrt(max(1.0 - (ls**2 + la**2) * 0.33 * 1.44, 0.2))
        A[:, k] = s * (1.2 * ls * sex + 1.2 * la * age + own * rng.standard_normal(n))
    return A


def build_shape_space(
    topo: hm.Topology, P: np.ndarray, n_heads: int = 400, n_components: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(shape_directions [S, V, 3] = std * principal direction, variances [S])."""
    names, B = basis_fields(topo, P, seed)
    rng = np.random.default_rng(seed)
    A = sample_heads(names, n_heads, rng)  # [n, K]
    A = A - A.mean(0)
    # PCA of the displacements D = A @ B without forming D: through the Gram matrix of B.
    Bf = B.reshape(len(B), -1)  # [K, 3V]
    Gm = Bf @ Bf.T  # [K, K]
    C = A.T @ A / (n_heads - 1)  # [K, K] amplitude covariance
    # covariance of D restricted to span(B): eigen-decompose L^T C L with Gm = L L^T
    Lc = np.linalg.cholesky(Gm + 1e-9 * np.eye(len(Gm)))
    M = Lc.T @ C @ Lc
    evals, evecs = np.linalg.eigh(M)
    order = np.argsort(evals)[::-1][:n_components]
    evals, evecs = evals[order], evecs[:, order]
    # principal directions u_k = B^T L^{-T} e_k (unit norm in R^{3V})
    U = np.linalg.solve(Lc.T, evecs).T @ Bf  # [S, 3V]
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    # deterministic sign: largest-magnitude coordinate positive
    sign = np.sign(U[np.arange(len(U)), np.argmax(np.abs(U), axis=1)])
    U *= sign[:, None]
    dirs = (np.sqrt(np.maximum(evals, 0))[:, None] * U).reshape(len(U), len(P), 3)
    return dirs, evals

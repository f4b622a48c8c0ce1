"""Shape space of the default model: PCA of generated heads.

Each generated head is the mean head deformed by smooth space warps with
anatomical meaning (overall size, cranium breadth, length and height, face height,
jaw width, chin, nose length/projection/width, lips, brow ridge, cheekbones, eye
spacing, ears, neck girth and length, larynx prominence, fat under the chin,
forehead slope, occiput) plus small individual bumps. Their amplitudes are drawn
from a population model: latent factors load on many features at once, as in
people: sex (two clusters; the "male" one has a larger head, longer face, wider jaw,
heavier brow, bigger nose, thicker neck and a prominent larynx), overall size, age,
adiposity, cephalic index (broad and short vs long and narrow heads), face shape
(long and narrow vs short and broad) and profile (receding vs projecting chin), plus
independent per-feature variation. The amplitudes are sized so that the spread of
the proportions matches adult anthropometry (standard deviations of about 0.6 cm for
head breadth, 0.7 cm for head length, 0.6 cm for nasion-chin, 2.7 cm for the neck
circumference, 0.4 cm for nose length). The principal components of the generated
displacements, sorted by variance and scaled by their standard deviations, are the
shape directions (unit-variance coefficients).

The warps are smooth and small-gradient, so heads stay valid well beyond 3 standard
deviations; the eye regions move rigidly with their eyeballs (no lid-eyeball
crossing), the mouth bag follows the lips, and the head above the neck moves as a
block when the neck lengthens.
"""

from __future__ import annotations

import numpy as np

from . import head_mesh as hm
from .larynx import PROMINENCE_Y
from .sdf import HeadParams, eye_center, neck_axis_z, smoothstep


def _g(P: np.ndarray, c, s) -> np.ndarray:
    q = (P - np.asarray(c, float)) / np.asarray(s, float)
    return np.exp(-0.5 * (q * q).sum(1))


def _softmin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _softplus(x: np.ndarray, s: float) -> np.ndarray:
    """Smooth max(x, 0) with a rounding of width s."""
    return s * np.logaddexp(0.0, x / s)


CHIN_Y = -7.6  # cm, menton of the mean head


def basis_fields(topo: hm.Topology, P: np.ndarray, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Named unit displacement fields [K, V, 3] (about 1 cm at their peak)."""
    V = len(P)
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    head_c = np.array([0.0, 4.0, 0.0])  # cranium scalings are about this point
    neck_w = 1.0 - smoothstep(y, -9.0, -5.0)  # neck region (below the jaw)
    head_w = 1.0 - neck_w
    face_w = smoothstep(z, 2.0, 6.0) * head_w
    axis_z = neck_axis_z(y, HeadParams())
    r_neck = np.hypot(x, z - axis_z)  # distance from the neck's axis
    fields: dict[str, np.ndarray] = {}
    zero = np.zeros(V)
    # paired features are placed on the left (+x) side: fold x only (np.abs(P) folded z too,
    # so every facial feature had a twin at the back of the head: the occipital ridge)
    Px = P.copy()
    Px[:, 0] = np.abs(P[:, 0])

    def f(name: str, dx, dy, dz) -> None:
        fields[name] = np.stack([dx + zero, dy + zero, dz + zero], 1)

    # Overall size: the head scales about the top of the neck (below it only the girth
    # scales: neck length is its own feature), 10% per unit.
    lift = 0.15 * np.logaddexp(0.0, (y - CHIN_Y) / 1.5)  # 0.1 * smooth max(y - CHIN_Y, 0)
    f("head_size", 0.1 * x, lift, 0.1 * (z - axis_z))
    # Cranium proportions (relative scalings about the head centre, head region only).
    f("cranium_breadth", 0.13 * x * head_w, 0, 0)
    f("cranium_length", 0, 0, 0.1 * (z - head_c[2]) * head_w * (1 - 0.7 * face_w))
    # (smooth ramps, not max(y - 4, 0): a kink in a displacement is a ridge round the head)
    f("cranium_height", 0, 0.1 * _softplus(y - 4.0, 1.5) * head_w, 0)
    f("occiput", 0, 0, -_g(P, [0, 3.0, -9.0], [4.0, 3.5, 3.0]))
    f("forehead_slope", 0, 0, -0.8 * _g(P, [0, 10.0, 8.0], [4.5, 2.5, 3.0]))
    # Face. Its height: everything below the nasion in front drops in proportion to the
    # distance from the nasion, down to the chin; below the chin the front of the neck
    # stretches (the drop fades to zero at the neck base).
    front = smoothstep(z, 2.0, 6.0)
    drop = (3.7 - y) * smoothstep(-y, -3.7, 0.0)
    fade = (3.7 - CHIN_Y) * (y - hm.NECK_BASE_Y) / (CHIN_Y - hm.NECK_BASE_Y)
    f("face_height", 0, -0.12 * _softmin(drop, fade, 1.0) * front, 0)
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
    f("brow_ridge", 0, 0, 0.8 * _g(Px, [2.8, 5.6, 9.2], [2.0, 1.0, 1.5]))
    f("cheekbones", 0.5 * np.sign(x) * _g(Px, [5.0, 2.0, 6.8], [1.8, 1.5, 2.0]), 0,
      0.3 * _g(Px, [5.0, 2.0, 6.8], [1.8, 1.5, 2.0]))
    f("cheek_fullness", 0.6 * np.sign(x) * _g(Px, [4.5, -2.5, 7.0], [1.8, 2.0, 2.0]), 0, 0)
    f("eye_spacing", 0.5 * np.sign(x) * _g(Px, [3.2, 3.4, 8.5], [1.6, 1.5, 2.0]), 0, 0)
    f("ear_size", 0, 0.15 * (y - 1.8) * _g(Px, [7.4, 1.8, -0.3], [1.5, 3.0, 2.0]), 0)
    f("ear_protrusion", 0.6 * np.sign(x) * _g(Px, [8.0, 1.8, -0.8], [1.2, 2.5, 1.5]), 0, 0)
    # Neck.
    # radial scaling of the neck, fading out under the chin (which it must not push forward)
    girth = 0.12 * neck_w * (1.0 - smoothstep(r_neck, 7.0, 9.5))
    f("neck_girth", girth * x, 0, girth * (z - axis_z))
    # the neck stretches between its base and the jaw; the head above moves as a block
    f("neck_length", 0, 0.1 * (y + 19.3 - _softplus(y + 19.3 - 11.0, 1.5)), 0)
    thyroid = _g(P, [0, PROMINENCE_Y, 6.0], [1.2, 1.5, 1.5])
    f("larynx_prominence", 0, -0.45 * thyroid, 0.9 * thyroid)
    f("trapezius", 0.5 * np.sign(x) * _g(Px, [5.5, -18.0, -3.0], [2.5, 3.0, 3.0]), 0, 0)
    sub = _g(P, [0, -8.3, 7.0], [2.5, 1.0, 1.5])  # fat under the chin (a double chin)
    f("submental", 0, -0.8 * sub, 0.3 * sub)
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
        s = smoothstep(r, 1.8, 3.2)
        near = (r < 3.2) & (topo.part == hm.PART_SKIN)
        B[:, near] = dc[:, None, :] + (B[:, near] - dc[:, None, :]) * s[near][None, :, None]
    loop, bag = topo.bag_loop, topo.bag_ids
    # the front of the oral cavity moves with its lip margin; deeper in (where it is wide and
    # tall) it takes the smooth field at its own place, like the cheeks and chin around it
    for k, f in ((0, 1.0), (1, 0.5)):
        B[:, bag[k]] = f * B[:, loop] + (1 - f) * B[:, bag[k]]
    # teeth, gums and tongue follow the mouth: the affine map that best fits the field on
    # the lips and cavity (so the arches widen with the jaw and move with the lips)
    ring = np.concatenate([bag[: bag.shape[0] - 1].ravel(), loop])
    inner = np.nonzero(topo.part >= hm.PART_TEETH_UPPER)[0]
    X = np.concatenate([P[ring], np.ones((len(ring), 1))], 1)  # [n, 4]
    Xi = np.concatenate([P[inner], np.ones((len(inner), 1))], 1)
    fit = np.linalg.lstsq(X, B[:, ring].transpose(1, 0, 2).reshape(len(ring), -1), rcond=None)[0]
    B[:, inner] = (Xi @ fit).reshape(len(inner), len(B), 3).transpose(1, 0, 2)
    return B


# Population model. Each feature's amplitude (in units of its field above) is
#   FEATURE_STD[f] * (sum_l LOADINGS[l][f] * latent_l + own_f * normal),
# with independent unit-variance latents: sex (two clusters, -1 "female", +1 "male"),
# overall size, age (uniform), adiposity, cephalic index (+ broad and short heads),
# face shape (+ long and narrow faces) and profile (+ convex: receding chin, full lips,
# projecting nose, sloping forehead). own_f brings the total std to FEATURE_STD[f] (about:
# MIN_OWN keeps some independent variation even where the loadings add up to nearly 1).
FEATURE_STD = {
    "head_size": 0.2, "cranium_breadth": 0.2, "cranium_length": 0.22, "cranium_height": 0.45,
    "occiput": 0.25, "forehead_slope": 0.4, "face_height": 0.33, "jaw_width": 0.45,
    "chin_forward": 0.45, "chin_down": 0.35, "nose_length": 0.25, "nose_projection": 0.4,
    "nose_width": 0.35, "lip_fullness": 0.35, "mouth_width": 0.4, "brow_ridge": 0.5,
    "cheekbones": 0.35, "cheek_fullness": 0.4, "eye_spacing": 0.25, "ear_size": 0.35,
    "ear_protrusion": 0.35, "neck_girth": 0.5, "neck_length": 0.45, "larynx_prominence": 0.8,
    "trapezius": 0.4, "submental": 0.4,
}  # fmt: skip
LOADINGS = {
    "sex": {
        "head_size": 0.5, "face_height": 0.45, "jaw_width": 0.5, "chin_forward": 0.3,
        "chin_down": 0.35, "nose_length": 0.4, "nose_projection": 0.4, "nose_width": 0.35,
        "lip_fullness": -0.3, "brow_ridge": 0.85, "forehead_slope": 0.5, "neck_girth": 0.6,
        "larynx_prominence": 0.9, "trapezius": 0.6, "cheek_fullness": -0.3, "ear_size": 0.3,
        "neck_length": 0.2,
    },
    "size": {"head_size": 0.85, "neck_length": 0.4},
    "age": {
        "nose_length": 0.4, "ear_size": 0.5, "lip_fullness": -0.5, "cheek_fullness": -0.3,
        "chin_down": 0.3, "neck_girth": 0.25, "cheekbones": -0.3, "brow_ridge": 0.2,
        "submental": 0.3,
    },
    "adiposity": {
        "neck_girth": 0.6, "cheek_fullness": 0.6, "trapezius": 0.4, "submental": 0.8,
        "jaw_width": 0.3, "lip_fullness": 0.2,
    },
    "cephalic": {"cranium_breadth": 0.8, "cranium_length": -0.7, "cranium_height": 0.3, "occiput": -0.5},
    "face_shape": {
        "face_height": 0.6, "jaw_width": -0.4, "cheekbones": -0.3, "nose_length": 0.4,
        "chin_down": 0.3, "nose_width": -0.2, "mouth_width": -0.3,
    },
    "profile": {
        "chin_forward": -0.6, "lip_fullness": 0.5, "nose_projection": 0.4, "forehead_slope": 0.5,
        "occiput": 0.3,
    },
}  # fmt: skip
MIN_OWN = 0.3  # every feature keeps at least this much independent variation
BUMP_STD = 0.25


def sample_latents(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unit-variance, independent latent factors of n generated people."""
    return {
        "sex": rng.choice([-1.0, 1.0], n),
        "size": rng.standard_normal(n),
        "age": np.sqrt(3.0) * rng.uniform(-1, 1, n),
        "adiposity": rng.standard_normal(n),
        "cephalic": rng.standard_normal(n),
        "face_shape": rng.standard_normal(n),
        "profile": rng.standard_normal(n),
    }


def sample_heads(names: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Amplitudes [n, K] of the basis fields for n generated people."""
    lat = sample_latents(n, rng)
    A = np.zeros((n, len(names)))
    for k, name in enumerate(names):
        if name.startswith("bump_"):
            A[:, k] = BUMP_STD * rng.standard_normal(n)
            continue
        load = {factor: row.get(name, 0.0) for factor, row in LOADINGS.items()}
        own = np.sqrt(max(1.0 - sum(v * v for v in load.values()), MIN_OWN**2))
        a = own * rng.standard_normal(n)
        for factor, v in load.items():
            a += v * lat[factor]
        A[:, k] = FEATURE_STD[name] * a
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

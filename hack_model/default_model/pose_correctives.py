"""Pose-corrective blendshapes of the default model, learned against dual-quaternion skinning.

Linear blend skinning (what the HACK forward pass does) loses volume where a
vertex blends bones that twist or bend against each other. Dual-quaternion
skinning (DQS) of the same weights keeps the cross-section; we use it as the
reference deformation. For sampled poses within the ranges of motion, the rest
space offset that makes LBS reproduce DQS exactly is `M_v^-1 (x_dqs - M_v T_v)`
(M_v the vertex's blended LBS matrix); the correctives are the least-squares
(ridge) fit of those offsets to the pose features `R_b - I` of the non-root
bones, the same features the forward pass uses.
"""

from __future__ import annotations

import numpy as np

from ..anatomy import BONE_AXIS_OF_MOTION, pose_limits_rad
from ..core import numpy_math as nm
from .skeleton import RANGE_OF_MOTION


def bone_matrices(theta: np.ndarray, G_rest: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Skinning matrices [J, 4, 4] (posed world frame times inverse rest frame) for pose theta [J, 3]."""
    return nm.skinning_matrices(theta, G_rest, parents)


def lbs(T: np.ndarray, W: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear blend skinning of rest vertices T [V, 3]: (posed [V, 3], blended matrices [V, 4, 4])."""
    return nm.linear_blend_skinning(T, W, A)


def _mat_to_dq(A: np.ndarray) -> np.ndarray:
    """Rigid 4x4 matrices [J, 4, 4] to unit dual quaternions [J, 8] (w, x, y, z | ...)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(A[:, :3, :3]).as_quat()  # x, y, z, w
    q = np.concatenate([q[:, 3:], q[:, :3]], 1)
    t = A[:, :3, 3]
    tq = np.concatenate([np.zeros((len(t), 1)), t], 1)
    d = 0.5 * nm.quaternion_multiply(tq, q)
    return np.concatenate([q, d], 1)


def dqs(T: np.ndarray, W: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Dual-quaternion skinning of T [V, 3] with weights W [V, J] and matrices A [J, 4, 4]."""
    dq = _mat_to_dq(A)
    # keep every bone's quaternion in the root's hemisphere (shortest blend)
    sign = np.where(dq[:, :4] @ dq[0, :4] < 0, -1.0, 1.0)
    dq = dq * sign[:, None]
    b = W @ dq
    n = np.linalg.norm(b[:, :4], axis=1, keepdims=True)
    b = b / n
    q0, qe = b[:, :4], b[:, 4:]
    # rotate, then translate by 2 * qe * conj(q0)
    conj = q0 * [1, -1, -1, -1]
    tq = 2 * nm.quaternion_multiply(qe, conj)
    pq = np.concatenate([np.zeros((len(T), 1)), T], 1)
    r = nm.quaternion_multiply(nm.quaternion_multiply(q0, pq), conj)[:, 1:]
    return r + tq[:, 1:]


def pose_features(theta: np.ndarray) -> np.ndarray:
    """`R_b - I` of the non-root bones, flattened. theta [J, 3] -> [(J - 1) * 9]"""
    return nm.pose_features(nm.axis_angle_to_matrix(theta))[1:].reshape(-1)


def sample_poses(n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Poses [n, J, 3] within the ranges of motion (bone-local x, y, z = flexion,
    axial rotation, lateral bending), some single-axis, some combined."""
    lim = pose_limits_rad(RANGE_OF_MOTION) * scale  # [J, 3] bone x, y, z
    # Flexion-extension is sampled over its total range each way (twice its one-way limit),
    # as the shipped model's correctives were fitted: they then hold past the limits too.
    lim[:, BONE_AXIS_OF_MOTION["flexion_extension"]] *= 2.0
    J = lim.shape[0]
    u = rng.uniform(-1, 1, (n, J, 3))
    # a third of the poses move one anatomical axis only, up to its limit
    single = rng.integers(0, 3, n)
    for k in range(n // 3):
        mask = np.zeros(3)
        mask[single[k]] = 1
        u[k] = np.sign(u[k]) * np.abs(u[k]) ** 0.3 * mask
    theta = u * lim[None]
    theta[:, 0] *= 0.5  # the root (C7-T1) moves the whole neck: keep it modest
    return theta


def fit_pose_correctives(
    T: np.ndarray,
    W: np.ndarray,
    G_rest: np.ndarray,
    parents: np.ndarray,
    n_poses: int = 1500,
    seed: int = 0,
    ridge: float = 1e-3,
    chunk: int = 250,
) -> np.ndarray:
    """pose_directions [J, 3, 3, V, 3] (root rows zero) fit to DQS on sampled poses.

    Each vertex's offsets are a linear function of 63 pose features; the part of the
    LBS-to-DQS offset that is not linear in them acts as noise, so a few hundred poses
    overfit (default model: held-out error 0.57 of plain LBS's with 240 poses, 0.44 with 1500).
    The normal equations are accumulated a chunk of poses at a time."""
    rng = np.random.default_rng(seed)
    thetas = sample_poses(n_poses, rng)
    J = len(parents)
    V = len(T)
    active = np.nonzero(W[:, -1] < 1 - 1e-6)[0]  # vertices that are not rigid skull
    F = np.stack([pose_features(t) for t in thetas])  # [n, 63]
    Ta, Wa = T[active], W[active]
    rhs = np.zeros((F.shape[1], len(active) * 3))
    for s in range(0, n_poses, chunk):
        Y = np.zeros((min(chunk, n_poses - s), len(active) * 3))
        for k, th in enumerate(thetas[s : s + chunk]):
            A = bone_matrices(th, G_rest, parents)
            x_l, M = lbs(Ta, Wa, A)
            x_d = dqs(Ta, Wa, A)
            # rest-space offset that moves the LBS result onto the DQS one
            off = np.einsum("vab,vb->va", np.linalg.inv(M[:, :3, :3]), x_d - x_l)
            Y[k] = off.reshape(-1)
        rhs += F[s : s + chunk].T @ Y
    lhs = F.T @ F + ridge * np.eye(F.shape[1])
    coef = np.linalg.solve(lhs, rhs)  # [63, A*3]
    out = np.zeros((J, 3, 3, V, 3))
    out[1:, :, :, active, :] = coef.reshape(J - 1, 3, 3, len(active), 3)
    return out


def apply(T, W, G_rest, parents, theta, pose_dirs=None) -> np.ndarray:
    """LBS of T with optional correctives for pose theta [J, 3]. [V, 3]"""
    x = T
    if pose_dirs is not None:
        f = pose_features(theta)
        x = T + np.tensordot(f, pose_dirs[1:].reshape(-1, *T.shape), axes=1)
    return lbs(x, W, bone_matrices(theta, G_rest, parents))[0]


def plane_outline(
    X: np.ndarray, tris: np.ndarray, point: np.ndarray, normal: np.ndarray, radius: float = 9.0
) -> tuple[np.ndarray, np.ndarray]:
    """Where the plane (point, normal) slices the mesh X, within `radius` of point: one
    segment per cut triangle, each end a point on a mesh edge. Returns the edges' vertex
    pairs [S, 2 ends, 2] and the fractions along them [S, 2], ordered so that the segments
    run round the outline consistently (by the triangles' normals)."""
    n = normal / np.linalg.norm(normal)
    near = (np.linalg.norm(X[tris] - point, axis=2) < radius).all(axis=1)
    F = tris[near]
    s = (X[F] - point) @ n  # [F, 3] signed distances
    edges, fracs = [], []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        cut = s[:, a] * s[:, b] < 0
        edges.append(F[:, [a, b]])
        fracs.append(np.where(cut, s[:, a] / np.where(cut, s[:, a] - s[:, b], 1.0), np.nan))
    E, t = np.stack(edges, 1), np.stack(fracs, 1)  # [F, 3 edges, ...]
    ok = (~np.isnan(t)).sum(1) == 2
    E, t, F = E[ok], t[ok], F[ok]
    pick = np.argsort(np.isnan(t), axis=1, kind="stable")[:, :2]  # the two cut edges
    E = np.take_along_axis(E, pick[:, :, None], 1)
    t = np.take_along_axis(t, pick, 1)
    P = outline_points(X, E, t)
    Tn = np.cross(X[F[:, 1]] - X[F[:, 0]], X[F[:, 2]] - X[F[:, 0]])
    flip = (np.cross(n, Tn) * (P[:, 1] - P[:, 0])).sum(1) < 0
    E[flip], t[flip] = E[flip][:, ::-1], t[flip][:, ::-1]
    return E, t


def outline_points(X: np.ndarray, E: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The outline's segment ends on mesh X [V, 3]. [S, 2, 3]"""
    return X[E[..., 0]] + t[..., None] * (X[E[..., 1]] - X[E[..., 0]])


def outline_area(X: np.ndarray, E: np.ndarray, t: np.ndarray) -> float:
    """Area (cm^2) enclosed by an outline on mesh X: the norm of its vector area, which for
    a flat outline is the area inside it and for a warped one the area it shows along the
    direction it faces most."""
    P = outline_points(X, E, t)
    return float(0.5 * np.linalg.norm(np.cross(P[:, 0], P[:, 1]).sum(0)))


def cross_section_area(
    X: np.ndarray, tris: np.ndarray, point: np.ndarray, normal: np.ndarray, radius: float = 9.0
) -> float:
    """Area (cm^2) of the mesh's slice by the plane (point, normal), within `radius` of point."""
    return outline_area(X, *plane_outline(X, tris, point, normal, radius))


MID_NECK_POINT = np.array([0.0, -10.5, -0.8])  # middle of the visible neck, on its axis


def mid_neck_area(X: np.ndarray, tris: np.ndarray, rest: np.ndarray, G_rest: np.ndarray) -> float:
    """Area enclosed by the mid-neck's skin (cm^2), posed X [V, 3], rest vertices rest [V, 3].

    At rest it is the cross-section through MID_NECK_POINT perpendicular to the lowest
    bone; posed, the area inside that same ring of skin wherever the pose has taken it.
    (A fixed plane cannot follow the neck: its skin is carried by several bones at once,
    the front by higher ones than the back, and a tilted plane near the base slices into
    the trapezius.)"""
    return outline_area(X, *plane_outline(rest, tris, MID_NECK_POINT, G_rest[0, :3, 1], radius=8.0))

"""The model's maths in numpy (float64): what the Blender add-on and the default-model
generator use. The same conventions as the torch kernel in `hack_model.core`; the tests
compare the two. Imports numpy only: `hack_model.blender_package` vendors this file.

Conventions: quaternions are (w, x, y, z), as in Blender. Shape notes: V vertices,
J bones.
"""

from __future__ import annotations

import numpy as np

_SMALL = 1e-12


# ---------------------------------------------------------------- rotations
def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula. [..., 3] -> [..., 3, 3]."""
    aa = np.asarray(axis_angle, np.float64)
    angle = np.linalg.norm(aa, axis=-1)[..., None, None]
    safe = np.where(angle < _SMALL, 1.0, angle)
    sinc = np.where(angle < _SMALL, 1.0, np.sin(safe) / safe)
    cosc = np.where(angle < _SMALL, 0.5, (1.0 - np.cos(safe)) / safe**2)
    x, y, z = aa[..., 0], aa[..., 1], aa[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*x.shape, 3, 3)
    return np.eye(3) + sinc * skew + cosc * (skew @ skew)


def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] rotation -> [..., 4] unit quaternion (w, x, y, z) with w >= 0."""
    m = np.asarray(matrix, np.float64)
    flat = m.reshape(-1, 3, 3)
    out = np.empty((len(flat), 4))
    for n, r in enumerate(flat):
        # Shepperd's method: pick the largest diagonal term for stability.
        t = np.trace(r)
        k = int(np.argmax([t, r[0, 0], r[1, 1], r[2, 2]]))
        if k == 0:
            s = np.sqrt(1.0 + t) * 2
            q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
        elif k == 1:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
        elif k == 2:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
        q = np.asarray(q)
        out[n] = q if q[0] >= 0 else -q
    return out.reshape(*m.shape[:-2], 4)


def quaternion_to_matrix(quaternion: np.ndarray) -> np.ndarray:
    """[..., 4] (w, x, y, z), normalised first -> [..., 3, 3]."""
    q = np.asarray(quaternion, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 4] (w, x, y, z); exact, no detour through matrices."""
    aa = np.asarray(axis_angle, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = angle / 2
    # sin(a/2)/a with its limit 1/2 at zero.
    factor = np.where(angle < _SMALL, 0.5, np.sin(half) / np.where(angle < _SMALL, 1.0, angle))
    return np.concatenate([np.cos(half), aa * factor], -1)


def matrix_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """[..., 3, 3] -> [..., 3] (angle below pi)."""
    q = matrix_to_quaternion(matrix)
    w = np.clip(q[..., :1], -1.0, 1.0)
    vec = q[..., 1:]
    sin_half = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2 * np.arctan2(sin_half, w)
    scale = np.where(sin_half < _SMALL, 2.0, angle / np.where(sin_half < _SMALL, 1.0, sin_half))
    return vec * scale


def euler_xyz_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Blender's XYZ Euler (X applied first): [..., 3] -> [..., 3, 3] = Rz @ Ry @ Rx."""
    a = np.asarray(angles, np.float64)
    eye = np.eye(3)
    rx = axis_angle_to_matrix(a[..., 0:1] * eye[0])
    ry = axis_angle_to_matrix(a[..., 1:2] * eye[1])
    rz = axis_angle_to_matrix(a[..., 2:3] * eye[2])
    return rz @ ry @ rx


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (w, x, y, z) quaternions. [..., 4], [..., 4] -> [..., 4]."""
    w1, x1, y1, z1 = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    w2, x2, y2, z2 = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        -1,
    )


# -------------------------------------------------------------- blendshapes
def pose_features(rotations: np.ndarray) -> np.ndarray:
    """(R - I) per bone, the pose correctives' coefficients: [..., 3, 3] -> [..., 3, 3]."""
    return np.asarray(rotations, np.float64) - np.eye(3)


def blend_shapes(base: np.ndarray, coefficients: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """base [V, 3] + sum_k coefficients[k] directions[k]; coefficients [K'] with K' <= K
    (missing trailing ones are zero), directions [K, V, 3] -> [V, 3]."""
    c = np.asarray(coefficients, np.float64).reshape(-1)
    out = np.array(base, np.float64, copy=True)
    n = min(len(c), len(directions))
    if n:
        out += np.tensordot(c[:n], np.asarray(directions[:n], np.float64), 1)
    return out


# ------------------------------------------------------------------ larynx
def sample_larynx_map(larynx_map: np.ndarray, vertex_uvs: np.ndarray, height: float) -> np.ndarray:
    """The map value per vertex at image position (u, 1 - v + height): bilinear,
    corner-aligned pixel centres, border clamp (as torch's grid_sample with
    align_corners=True, padding_mode='border'). [H, W], [V, 2] -> [V]."""
    m = np.asarray(larynx_map, np.float64)
    H, W = m.shape
    uv = np.asarray(vertex_uvs, np.float64)
    x = np.clip(uv[:, 0], 0.0, 1.0) * (W - 1)
    y = np.clip(1.0 - uv[:, 1] + height, 0.0, 1.0) * (H - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(W - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(H - 2, 0))
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    top = m[y0, x0] * (1 - fx) + m[y0, x1] * fx
    bottom = m[y1, x0] * (1 - fx) + m[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def larynx_offsets(
    larynx_map: np.ndarray, vertex_uvs: np.ndarray, direction: np.ndarray, height: float, scale: float
) -> np.ndarray:
    """Larynx displacement [V, 3] at height and scale (not relative to the rest larynx)."""
    return (
        scale * sample_larynx_map(larynx_map, vertex_uvs, height)[:, None] * np.asarray(direction, np.float64)
    )


# -------------------------------------------------------------- kinematics
def forward_kinematics(rotations: np.ndarray, rest_frames: np.ndarray, parents) -> np.ndarray:
    """Posed world frames G_b = G_parent @ inv(Rest_parent) @ Rest_b @ R_b (the root's
    G = Rest_root @ R_root). rotations [J, 3, 3] in each bone's rest frame,
    rest_frames [J, 4, 4], parents[b] < b -> [J, 4, 4]."""
    rest = np.asarray(rest_frames, np.float64)
    J = len(parents)
    frames = np.zeros((J, 4, 4))
    for b in range(J):
        local = np.eye(4)
        local[:3, :3] = rotations[b]
        if parents[b] < 0:
            frames[b] = rest[b] @ local
        else:
            frames[b] = frames[parents[b]] @ np.linalg.inv(rest[parents[b]]) @ rest[b] @ local
    return frames


def skinning_matrices(pose: np.ndarray, rest_frames: np.ndarray, parents) -> np.ndarray:
    """Skinning matrices [J, 4, 4] (posed world frame times inverse rest frame) for the
    axis-angle pose [J, 3]."""
    frames = forward_kinematics(axis_angle_to_matrix(pose), rest_frames, parents)
    return frames @ np.linalg.inv(np.asarray(rest_frames, np.float64))


def linear_blend_skinning(
    vertices: np.ndarray, weights: np.ndarray, matrices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LBS of rest vertices [V, 3] with weights [V, J] and matrices [J, 4, 4]:
    (posed [V, 3], blended per-vertex matrices [V, 4, 4])."""
    blended = np.einsum("vj,jab->vab", weights, matrices)
    posed = np.einsum("vab,vb->va", blended[:, :3, :3], vertices) + blended[:, :3, 3]
    return posed, blended


# ----------------------------------------------------------------- normals
def vertex_normals(vertices: np.ndarray, triangles: np.ndarray, incidence=None) -> np.ndarray:
    """Unit area-weighted vertex normals. [V, 3], [F, 3] int -> [V, 3] (zero where no
    triangle touches a vertex). incidence: an optional [V, F] 0/1 matrix (e.g. scipy
    sparse) of which triangles touch which vertex, to sum with one product per call."""
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64)
    face = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])  # twice the area
    if incidence is not None:
        out = np.asarray(incidence @ face, np.float64)
    else:
        out = np.zeros_like(v)
        for k in range(3):
            np.add.at(out, tri[:, k], face)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

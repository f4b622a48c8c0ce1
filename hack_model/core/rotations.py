"""Rotations in torch, batched and differentiable. Quaternions are (w, x, y, z).

Every rotation matrix here is a quadratic form of a unit quaternion: R = (q q^T) @ forms,
one small matmul over the 16 products instead of a dozen elementwise ops (the forward
pass folds the bones' rest frames into the same forms, see `kinematics`).

numpy versions of the same conversions (for Blender and the generator): `numpy_math`.
"""

from __future__ import annotations

import functools

import torch

# Rows: the 16 products q_a q_b (a, b in w, x, y, z), row-major.
_W, _X, _Y, _Z = range(4)


def _quadratic(terms) -> list[float]:
    """[16] coefficients of sum(c * q_a * q_b) for terms {(a, b): c}, split symmetrically."""
    row = [0.0] * 16
    for (a, b), c in terms.items():
        row[4 * a + b] += c / 2
        row[4 * b + a] += c / 2
    return row


def _rotation_terms() -> list[dict]:
    """The 3x3 rotation of a unit quaternion, row-major, each entry as {(a, b): c}."""
    w, x, y, z = _W, _X, _Y, _Z
    return [
        {(w, w): 1, (x, x): 1, (y, y): -1, (z, z): -1}, {(x, y): 2, (w, z): -2}, {(x, z): 2, (w, y): 2},
        {(x, y): 2, (w, z): 2}, {(w, w): 1, (x, x): -1, (y, y): 1, (z, z): -1}, {(y, z): 2, (w, x): -2},
        {(x, z): 2, (w, y): -2}, {(y, z): 2, (w, x): 2}, {(w, w): 1, (x, x): -1, (y, y): -1, (z, z): 1},
    ]  # fmt: skip


@functools.cache
def _forms(kind: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    terms = _rotation_terms()
    if kind == "matrix":  # [16, 9]: R
        rows = [_quadratic(t) for t in terms]
    elif kind == "homogeneous":  # [16, 16]: [[R, 0], [0, |q|^2]]
        unit = {(a, a): 1 for a in range(4)}
        rows = []
        for i in range(4):
            rows += [_quadratic(terms[3 * i + j]) if i < 3 and j < 3 else [0.0] * 16 for j in range(4)]
        rows[15] = _quadratic(unit)
    elif kind == "minus_identity":  # [16, 9]: R - |q|^2 I, without the cancellation of R - I
        rows = []
        for i, t in enumerate(terms):
            t = dict(t)
            if i in (0, 4, 8):
                for a in range(4):
                    t[(a, a)] = t.get((a, a), 0) - 1
            rows.append(_quadratic(t))
    else:
        raise ValueError(kind)
    with torch.inference_mode(False):  # a cached constant: never an inference tensor
        return torch.tensor(rows, dtype=torch.float64).T.to(device=device, dtype=dtype).contiguous()


def quaternion_forms(kind: str, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """Constant [16, K] maps from `quaternion_products` to a rotation: "matrix" (K=9, R
    row-major), "homogeneous" (K=16, the 4x4 [[R, 0], [0, 1]]) or "minus_identity" (K=9,
    R - I, accurate for small angles). Exact for unit quaternions."""
    return _forms(kind, dtype, torch.device(device) if device is not None else torch.device("cpu"))


def quaternion_products(quaternion: torch.Tensor) -> torch.Tensor:
    """[..., 4] -> [..., 16] the products q_a q_b, row-major."""
    return (quaternion[..., :, None] * quaternion[..., None, :]).flatten(-2)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 4] unit (w, x, y, z); smooth (and exact) at zero angle."""
    half = axis_angle * 0.5
    # The half angle, floored at a tiny number: sin(h)/h stays finite and so do its
    # gradients at zero; above the floor (about 1e-19) the angle is exact.
    h = torch.linalg.vector_norm(half, dim=-1, keepdim=True).clamp_min(_floor(axis_angle.dtype))
    return torch.cat([torch.cos(h), half * (torch.sin(h) / h)], -1)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. [..., 3] -> [..., 3, 3]; smooth (and exact) at zero angle."""
    qq = quaternion_products(axis_angle_to_quaternion(axis_angle))
    return (qq @ quaternion_forms("matrix", qq.dtype, qq.device)).unflatten(-1, (3, 3))


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """[..., 4] (w, x, y, z), normalised first -> [..., 3, 3]."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    qq = quaternion_products(q)
    return (qq @ quaternion_forms("matrix", qq.dtype, qq.device)).unflatten(-1, (3, 3))


def _floor(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny ** 0.5

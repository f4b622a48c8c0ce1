"""Rotations in torch, batched and differentiable. Quaternions are (w, x, y, z).

numpy versions of the same conversions (for Blender and the generator): `numpy_math`.
"""

from __future__ import annotations

import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. [..., 3] -> [..., 3, 3]; smooth (and exact) at zero angle."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = angle_sq < 1e-8
    safe_sq = torch.where(small, torch.ones_like(angle_sq), angle_sq)
    angle = safe_sq.sqrt()
    # sin(t)/t and (1-cos(t))/t^2 with Taylor fallbacks so gradients stay finite at 0.
    sinc = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cosc = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / safe_sq)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*x.shape, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sinc * skew + cosc * (skew @ skew)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 4] (w, x, y, z); smooth at zero angle."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small = angle_sq < 1e-8
    angle = torch.where(small, torch.ones_like(angle_sq), angle_sq).sqrt()
    half_sinc = torch.where(small, 0.5 - angle_sq / 48.0, torch.sin(angle / 2) / angle)  # sin(t/2)/t
    w = torch.where(small, 1.0 - angle_sq / 8.0, torch.cos(angle / 2))
    return torch.cat([w, axis_angle * half_sinc], -1)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """[..., 4] (w, x, y, z), normalised first -> [..., 3, 3]."""
    q = quaternion / quaternion.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).view(*q.shape[:-1], 3, 3)  # fmt: skip

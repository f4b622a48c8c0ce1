"""The pure functions of hack_model.lbs against independent references."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from hack_model import lbs


def test_axis_angle_matches_scipy_including_zero():
    rng = np.random.default_rng(0)
    rotvecs = np.concatenate([rng.normal(0, 1.5, (50, 3)), np.zeros((1, 3)), np.full((1, 3), 1e-6)])
    ours = lbs.axis_angle_to_matrix(torch.tensor(rotvecs)).numpy()
    assert np.allclose(ours, Rotation.from_rotvec(rotvecs).as_matrix(), atol=1e-12)


def test_axis_angle_gradient_finite_at_zero():
    x = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    lbs.axis_angle_to_matrix(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_linear_blend_skinning_matches_per_vertex_loop():
    rng = np.random.default_rng(1)
    B, V, J = 3, 1000, 5
    vertices = rng.normal(size=(B, V, 3))
    weights = rng.uniform(size=(V, J))
    weights /= weights.sum(1, keepdims=True)
    matrices = rng.normal(size=(B, J, 3, 4))
    expected = np.zeros_like(vertices)
    for b in range(B):
        for v in range(V):
            M = np.tensordot(weights[v], matrices[b], 1)
            expected[b, v] = M[:, :3] @ vertices[b, v] + M[:, 3]
    ours = lbs.linear_blend_skinning(torch.tensor(vertices), torch.tensor(weights), torch.tensor(matrices))
    assert np.allclose(ours.numpy(), expected, atol=1e-10)
    # Chunked evaluation gives the same answer as one chunk.
    chunked = lbs.skin_vertex_planes(
        torch.tensor(vertices).transpose(1, 2), torch.tensor(weights.T), torch.tensor(matrices), 4096
    )
    assert np.allclose(chunked.numpy(), expected, atol=1e-10)


def test_larynx_sampling_matches_scipy_bilinear():
    rng = np.random.default_rng(2)
    image = rng.uniform(size=(32, 48))
    uvs = rng.uniform(-0.1, 1.1, size=(500, 2))
    height = np.array([[0.0], [0.07], [-0.2]])
    scale = np.array([[1.0], [0.5], [2.0]])
    direction = np.array([0.0, -0.45, 0.89])
    ours = lbs.sample_larynx_offsets(
        torch.tensor(image),
        torch.tensor(uvs),
        torch.tensor(direction),
        torch.tensor(height),
        torch.tensor(scale),
    ).numpy()
    H, W = image.shape
    for b in range(3):
        rows = np.clip((1 - uvs[:, 1] + height[b, 0]) * (H - 1), 0, H - 1)
        cols = np.clip(uvs[:, 0] * (W - 1), 0, W - 1)
        value = map_coordinates(image, [rows, cols], order=1, mode="nearest")
        assert np.allclose(ours[b], value[:, None] * direction * scale[b, 0], atol=1e-10)


def test_forward_kinematics_chain_composes_parent_first():
    parents = [-1, 0, 1]
    rest = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    rest[1, 1, 3] = 1.0  # child one unit up its parent's +y
    rest[2, 1, 3] = 1.0
    rotations = lbs.axis_angle_to_matrix(
        torch.tensor([[[0, 0, np.pi / 2], [0, 0, 0], [0, 0, 0]]], dtype=torch.float64)
    )
    frames = lbs.forward_kinematics(rotations, rest, parents)
    # Turning the root 90 degrees about z swings the chain from +y to -x.
    assert torch.allclose(
        frames[0, 2, :3, 3], torch.tensor([-2.0, 0.0, 0.0], dtype=torch.float64), atol=1e-12
    )

"""The forward pass against the reference evaluation's golden outputs and an
independent numpy implementation of the recipe in shared/data/README.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from hack_model.io.safe_pickle import load_pickled_npy


def test_golden_sequences_float32(release_model, release_dir):
    golden = np.load(release_dir / "golden_forward.npz")
    with torch.no_grad():
        out = release_model(
            shape=golden["beta"],
            expression=golden["bsw"],
            neck_pose=golden["theta"],
            larynx_height=golden["tau"],
            larynx_scale=golden["alpha"],
        )
    assert out.vertices.dtype == torch.float32
    error = np.abs(out.vertices.numpy() - golden["vertices"]).max()
    assert error < 1e-4, f"max error {error} cm"


def test_golden_larynx_sweep_float32(release_model, release_dir):
    golden = np.load(release_dir / "golden_forward.npz")
    with torch.no_grad():
        out = release_model(
            expression=golden["bsw"],
            neck_pose=golden["theta"],
            larynx_height=golden["tau_larynx"],
            larynx_scale=golden["alpha_larynx"],
        )
    error = np.abs(out.vertices.numpy() - golden["vertices_larynx"]).max()
    assert error < 1e-4, f"max error {error} cm"


def reference_forward(model_dir, beta, bsw, theta, tau, alpha):
    """The README's recipe, written out plainly in float64 numpy (per-bone loop, 4x4s)."""
    S = load_pickled_npy(model_dir / "S.npy")
    E = load_pickled_npy(model_dir / "E.npy")
    P = load_pickled_npy(model_dir / "P.npy")["mean"].astype(np.float64)
    T = S["mean"] + np.tensordot(beta, S["VT_std"][: len(beta)], 1)
    R = Rotation.from_rotvec(theta.astype(np.float64)).as_matrix()  # [8, 3, 3]
    feat = R - np.eye(3)
    feat[0] = 0.0
    T = T + np.einsum("bij,bijvc->vc", feat, P) + np.tensordot(bsw, E["mean"], 1)
    # Larynx: bilinear, border clamp, corner-aligned, v flipped, tau added.
    image = np.asarray(Image.open(model_dir / "Lc_mid.png").convert("L"), np.float64) / 255.0
    uvs = first_appearance_uvs(model_dir / "000_generic_neutral_mesh_newuv.obj", len(T))
    H, W = image.shape
    rows = np.clip((1.0 - uvs[:, 1] + tau) * (H - 1), 0, H - 1)
    cols = np.clip(uvs[:, 0] * (W - 1), 0, W - 1)
    value = map_coordinates(image, [rows, cols], order=1, mode="nearest")
    T = T + value[:, None] * np.load(model_dir / "ts_larynx.npy") * alpha
    bones = json.loads((model_dir / "bones_neutral.json").read_text())
    names = list(bones)
    weights = np.load(model_dir / "weight_map_smooth.npy")
    weights = weights / weights.sum(0, keepdims=True)
    G, G_rest = {}, {}
    for b, name in enumerate(names):
        local = np.eye(4)
        local[:3, :3] = bones[name]["matrix"]
        parent = bones[name]["parent"]
        head = np.asarray(bones[name]["head"], np.float64)
        local[:3, 3] = head if parent is None else head + [0, bones[parent]["length"], 0]
        rot = np.eye(4)
        rot[:3, :3] = R[b]
        G_rest[name] = local if parent is None else G_rest[parent] @ local
        G[name] = (local if parent is None else G[parent] @ local) @ rot
    Th = np.concatenate([T, np.ones((len(T), 1))], 1)
    out = np.zeros_like(T)
    for b, name in enumerate(names):
        A = G[name] @ np.linalg.inv(G_rest[name])
        out += weights[b][:, None] * (Th @ A.T)[:, :3]
    return out


def first_appearance_uvs(obj_path, num_vertices):
    uvs, result, seen = [], np.zeros((num_vertices, 2)), np.zeros(num_vertices, bool)
    for line in open(obj_path):
        if line.startswith("vt "):
            uvs.append([float(x) for x in line.split()[1:3]])
        elif line.startswith("f "):
            for ref in line.split()[1:]:
                v, t = (int(x) - 1 for x in ref.split("/")[:2])
                if not seen[v]:
                    seen[v], result[v] = True, uvs[t]
    return result


def test_matches_independent_reference_float64(release_model, release_dir):
    rng = np.random.default_rng(3)
    beta = rng.normal(size=20)
    bsw = rng.uniform(0, 1, 55) * (rng.uniform(size=55) < 0.2)
    theta = rng.normal(0, 0.15, (8, 3))
    tau, alpha = 0.03, 1.4
    expected = reference_forward(release_dir / "model", beta, bsw, theta, tau, alpha)
    model = release_model.to(torch.float64)
    try:
        with torch.no_grad():
            out = model(
                shape=beta[None], expression=bsw[None], neck_pose=theta[None],
                larynx_height=[[tau]], larynx_scale=[[alpha]],
            )  # fmt: skip
        # The model stores its arrays in float32, so agreement is to float32 rounding.
        assert np.abs(out.vertices[0].numpy() - expected).max() < 1e-5
    finally:
        release_model.to(torch.float32)


def test_joints_are_posed_bone_heads(release_model):
    with torch.no_grad():
        rest = release_model()
        heads = rest.bone_transforms[0, :, :3, 3].numpy()
        assert np.allclose(heads[:, 1], [-12.26, -10.54, -8.94, -7.36, -5.69, -4.10, -2.66, -1.25], atol=0.01)
        posed = release_model(neck_pose=torch.tensor([[[0.0, 0.0, 0.0]] * 7 + [[0.3, 0.0, 0.0]]]))
    # Rotating the top bone moves nothing below it, and the head rotates about oc1's head.
    assert torch.allclose(posed.joints, rest.joints, atol=1e-5)
    moved = (posed.vertices - rest.vertices).norm(dim=-1)[0]
    assert moved.max() > 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_dtype_keeps_results(release_model, dtype):
    golden_params = {"neck_pose": torch.full((2, 8, 3), 0.05), "expression": torch.full((2, 55), 0.1)}
    with torch.no_grad():
        base = release_model(**golden_params).vertices.double()
        release_model.to(dtype)
        try:
            other = release_model(**golden_params).vertices
        finally:
            release_model.to(torch.float32)
    assert other.dtype == dtype
    assert torch.allclose(other.double(), base, atol=1e-4)

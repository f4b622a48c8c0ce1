"""smplx-style pickles (SMPL / FLAME layout), loaded chumpy-free and evaluated by HACK,
against smplx's own `lbs` on the same arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hack_model import HACK, load_model
from hack_model.io.npz import load_model_npz
from tests.chumpy_fixtures import make_chumpy_pickle_bytes

smplx_lbs = pytest.importorskip("smplx.lbs").lbs

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


def smpl_like(num_vertices: int, parents: list[int], num_shape: int, seed: int) -> dict:
    """Arrays with the keys and containers of an SMPL .pkl, body-sized (metres)."""
    rng = np.random.default_rng(seed)
    V, J = num_vertices, len(parents)
    template = rng.normal(0, 0.3, (V, 3))
    joints_guess = rng.normal(0, 0.3, (J, 3))
    nearest = np.argmin(((template[:, None] - joints_guess[None]) ** 2).sum(-1), axis=1)
    weights = np.exp(-((template[:, None] - joints_guess[None]) ** 2).sum(-1) / 0.05)
    weights[np.arange(V), nearest] += 0.5
    weights /= weights.sum(1, keepdims=True)
    regressor = sp.random(J, V, density=0.05, random_state=seed, format="csc")
    regressor = sp.csc_matrix(regressor.multiply(1.0 / np.maximum(regressor.sum(1), 1e-9)))
    kintree = np.array([[2**32 - 1] + parents[1:], list(range(J))], dtype=np.int64)
    return {
        "v_template": template,
        "f": rng.integers(0, V, (2 * V, 3)).astype(np.uint32),
        "shapedirs": rng.normal(0, 0.02, (V, 3, num_shape)),
        "posedirs": rng.normal(0, 0.01, (V, 3, 9 * (J - 1))),
        "J_regressor": regressor,
        "kintree_table": kintree,
        "weights": weights,
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }


def smplx_reference(arrays: dict, betas: np.ndarray, pose: np.ndarray):
    V = len(arrays["v_template"])
    parents = torch.tensor(arrays["kintree_table"][0].astype(np.int64))
    parents[0] = -1
    f32 = torch.float32
    return smplx_lbs(
        torch.tensor(betas, dtype=f32),
        torch.tensor(pose.reshape(len(pose), -1), dtype=f32),
        torch.tensor(arrays["v_template"], dtype=f32),
        torch.tensor(arrays["shapedirs"][:, :, : betas.shape[1]], dtype=f32),
        torch.tensor(arrays["posedirs"].reshape(V * 3, -1).T.copy(), dtype=f32),
        torch.tensor(arrays["J_regressor"].toarray(), dtype=f32),
        parents,
        torch.tensor(arrays["weights"], dtype=f32),
    )


@pytest.mark.parametrize("chumpy", [False, True], ids=["plain", "chumpy"])
def test_smpl_pickle_matches_smplx_lbs(tmp_path, chumpy):
    arrays = smpl_like(400, SMPL_PARENTS, 10, seed=1)
    wrap = ("v_template", "shapedirs", "posedirs", "weights") if chumpy else ()
    path = tmp_path / "model.pkl"
    path.write_bytes(make_chumpy_pickle_bytes(arrays, wrap=wrap))
    assert "chumpy" not in sys.modules
    rng = np.random.default_rng(2)
    betas = rng.normal(size=(3, 10))
    pose = rng.normal(0, 0.4, (3, 24, 3))
    model = HACK(path)
    with torch.no_grad():
        out = model(shape=betas, neck_pose=pose)
    ref_vertices, ref_joints = smplx_reference(arrays, betas, pose)
    assert np.abs(out.vertices.numpy() - ref_vertices.numpy()).max() < 1e-5
    assert np.abs(out.joints.numpy() - ref_joints.numpy()).max() < 1e-5
    assert "chumpy" not in sys.modules


def test_flame_layout_splits_shape_and_expression(tmp_path):
    arrays = smpl_like(300, [-1, 0, 1, 1, 1], 400, seed=3)  # FLAME: 300 shape + 100 expression
    path = tmp_path / "flame.pkl"
    path.write_bytes(make_chumpy_pickle_bytes(arrays, wrap=("shapedirs",)))
    model = HACK(path)
    assert model.num_shape == 300 and model.num_expression == 100
    rng = np.random.default_rng(4)
    shape, expression = rng.normal(size=(2, 300)), rng.normal(size=(2, 100))
    pose = rng.normal(0, 0.3, (2, 5, 3))
    with torch.no_grad():
        out = model(shape=shape, expression=expression, neck_pose=pose)
    # smplx evaluates FLAME with betas = [shape, expression] on the full shapedirs.
    ref_vertices, _ = smplx_reference(arrays, np.concatenate([shape, expression], 1), pose)
    assert np.abs(out.vertices.numpy() - ref_vertices.numpy()).max() < 1e-5


def test_converted_pickle_round_trips_through_npz(tmp_path):
    arrays = smpl_like(200, SMPL_PARENTS, 10, seed=5)
    (tmp_path / "m.pkl").write_bytes(make_chumpy_pickle_bytes(arrays, wrap=("v_template",)))
    result = subprocess.run(
        [sys.executable, "-m", "hack_model.cli", "convert", tmp_path / "m.pkl", "-o", tmp_path / "m.npz"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    data = load_model_npz(tmp_path / "m.npz")
    assert data.joint_regressor is not None and data.bone_names[0] == "pelvis"
    pose = torch.full((1, 24, 3), 0.1)
    with torch.no_grad():
        a = HACK(tmp_path / "m.pkl")(neck_pose=pose).vertices
        b = HACK(data)(neck_pose=pose).vertices
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.pop("weights"), "missing keys: weights"),
        (lambda a: a.update(posedirs=np.zeros((5, 3, 9))), "posedirs must have shape"),
        (lambda a: a.update(kintree_table=np.array([[2**32 - 1, 2, 0], [0, 1, 2]])), "parent must precede"),
    ],
)
def test_bad_smpl_pickles_are_named(tmp_path, mutate, message):
    arrays = smpl_like(50, [-1, 0, 1], 4, seed=6)
    mutate(arrays)
    path = tmp_path / "bad.pkl"
    path.write_bytes(make_chumpy_pickle_bytes(arrays))
    with pytest.raises(ValueError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)

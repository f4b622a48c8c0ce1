"""hack_model.core: the numpy and torch maths agree, the basis holds the model's arrays,
and the sparse, reordered kernel equals a plain dense evaluation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

from fitting.evaluator import ModelEvaluator, ModelParams
from hack_model import HACK
from hack_model.core import numpy_math as nm
from hack_model.core.forward import KernelBasis
from hack_model.core.kinematics import chain_products
from hack_model.core.larynx import larynx_row_profiles, sample_larynx_offsets, sample_row_profiles
from hack_model.core.normals import vertex_normals
from hack_model.core.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    quaternion_forms,
    quaternion_products,
    quaternion_to_matrix,
)
from hack_model.synthetic import random_model_data


def sparse_data(seed: int = 3):
    """A random model whose expressions and pose correctives move only some vertices and
    whose skinning has rigid (one-bone) vertices, as the default model's."""
    data = random_model_data(num_vertices=300, num_shape=6, num_expression=5, seed=seed)
    rng = np.random.default_rng(seed)
    expr = data.expression_directions.copy()
    for e in range(len(expr)):
        expr[e, rng.random(300) > 0.2] = 0.0
    w = data.skinning_weights.copy()
    rigid = rng.random(300) > 0.5
    w[rigid] = 0.0
    w[rigid, rng.integers(0, w.shape[1], rigid.sum())] = 1.0
    pose = data.pose_directions.copy()
    pose[..., rigid, :] = 0.0
    return data.replace(expression_directions=expr, skinning_weights=w, pose_directions=pose)


def test_rotations_torch_numpy_scipy_agree():
    aa = np.random.default_rng(0).normal(0, 1.0, (40, 3))
    aa[0] = 0.0
    ref = Rotation.from_rotvec(aa).as_matrix()
    assert np.abs(nm.axis_angle_to_matrix(aa) - ref).max() < 1e-12
    assert np.abs(axis_angle_to_matrix(torch.tensor(aa)).numpy() - ref).max() < 1e-12
    q = axis_angle_to_quaternion(torch.tensor(aa))
    assert np.abs(q.numpy() - nm.axis_angle_to_quaternion(aa)).max() < 1e-12
    assert np.abs(quaternion_to_matrix(q).numpy() - ref).max() < 1e-12
    assert np.abs(nm.matrix_to_axis_angle(ref) - aa * 1).max() < 1e-9  # angles below pi here


def test_larynx_sampling_torch_equals_numpy():
    rng = np.random.default_rng(1)
    lmap, uvs, direction = rng.random((17, 23)), rng.random((200, 2)), rng.normal(size=3)
    for height in (-0.3, 0.0, 0.041, 0.5):
        ours = sample_larynx_offsets(
            torch.tensor(lmap), torch.tensor(uvs), torch.tensor(direction),
            torch.tensor([[height]]), torch.tensor([[1.7]]),
        )[0].numpy()  # fmt: skip
        # (grid_sample maps the coordinates through [-1, 1]: rounding of a few 1e-7)
        assert np.abs(ours - nm.larynx_offsets(lmap, uvs, direction, height, 1.7)).max() < 2e-6


def test_small_rotations_minus_identity_keep_their_digits():
    # R - I straight from the quaternion's products: no cancellation in float32 at 1e-6 rad.
    aa = np.random.default_rng(6).normal(0, 1e-6, (20, 3))
    ref = Rotation.from_rotvec(aa).as_matrix() - np.eye(3)
    qq = quaternion_products(axis_angle_to_quaternion(torch.tensor(aa, dtype=torch.float32)))
    ours = (qq @ quaternion_forms("minus_identity", torch.float32)).view(-1, 3, 3).double().numpy()
    assert np.abs(ours - ref).max() < 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize("parents", [list(range(-1, 7)), [-1, 0, 1, 0, 3, 4, 2, 6, 3, 8]])
def test_chain_products_equal_the_bone_by_bone_product(parents):
    local = torch.tensor(np.random.default_rng(7).normal(size=(2, len(parents), 4, 4)))
    ref = [local[:, 0]]
    for b in range(1, len(parents)):
        ref.append(ref[parents[b]] @ local[:, b])
    assert (chain_products(local, parents) - torch.stack(ref, 1)).abs().max() < 1e-10


def test_compact_row_profiles_sample_the_map_exactly():
    """Keeping only the rows around each column's non-zero values changes no sample, at
    any height (past both borders too), and matches numpy's bilinear sampling."""
    rng = np.random.default_rng(8)
    lmap = np.zeros((40, 30))
    lmap[12:20, 5:14] = rng.random((8, 9))
    lmap[0:3, 20:25] = rng.random((3, 5))  # touching the top border
    uvs = rng.random((300, 2))
    compact = larynx_row_profiles(torch.tensor(lmap), torch.tensor(uvs))
    full = larynx_row_profiles(torch.tensor(lmap), torch.tensor(uvs), compact=False)
    assert len(compact.pairs) < len(full.pairs) / 3
    heights = torch.tensor([[-1.3], [-0.2], [0.0], [0.013], [0.37], [2.0]], dtype=torch.float64)
    ours = sample_row_profiles(compact, heights)
    assert torch.equal(ours, sample_row_profiles(full, heights))
    for h, row in zip(heights[:, 0].tolist(), ours.numpy()):
        assert np.abs(row - nm.sample_larynx_map(lmap, uvs, h)).max() < 1e-12


def test_row_profiles_gradient_in_height():
    rng = np.random.default_rng(9)
    profiles = larynx_row_profiles(torch.tensor(rng.random((9, 7))), torch.tensor(rng.random((50, 2))))
    height = torch.tensor([[0.0123], [-0.2071]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h: sample_row_profiles(profiles, h), (height,))


def test_block_sparse_blendshapes_equal_the_dense_product():
    from hack_model.core.blendshapes import (
        BlockSparse,
        add_blend_shapes_to_range,
        add_block_sparse_blend_shapes,
    )

    rng = np.random.default_rng(10)
    K, V_k, start, V = 12, 1000, 37, 1100
    dirs = rng.normal(size=(K, 3, V_k))
    region = rng.integers(0, 4, K)  # each direction moves one of 4 regions of vertices
    dirs[:, :, :] *= region[:, None, None] == (np.arange(V_k) * 4 // V_k)[None, None]
    dirs = torch.tensor(dirs.reshape(K, -1))
    blocks = BlockSparse.from_directions(dirs, start, V - start, size=32)
    assert blocks is not None and blocks.values.numel() < 0.5 * dirs.numel()
    for B, Bc in ((1, 1), (3, 3), (3, 1)):
        mesh = torch.tensor(rng.normal(size=(B, 3, V)))
        c = torch.tensor(rng.normal(size=(Bc, K)), requires_grad=True)
        ours = add_block_sparse_blend_shapes(mesh.clone(), c, blocks)
        (g_ours,) = torch.autograd.grad(ours.square().sum(), c)
        ref = add_blend_shapes_to_range(mesh.clone(), c, dirs, start)
        (g_ref,) = torch.autograd.grad(ref.square().sum(), c)
        assert (ours - ref).abs().max() < 1e-12 and (g_ours - g_ref).abs().max() < 1e-9


def test_vertex_normals_match_trimesh():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.vertices += np.random.default_rng(2).normal(0, 0.02, mesh.vertices.shape)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces)
    ref = np.zeros_like(tm.vertices)  # area-weighted, from trimesh's face normals and areas
    for face, normal, area in zip(tm.faces, tm.face_normals, tm.area_faces):
        ref[face] += area * normal
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(nm.vertex_normals(mesh.vertices, mesh.faces) - ref).max() < 1e-6
    from hack_model.render.geometry import vertex_normals as render_normals  # the same, float32

    assert np.abs(render_normals(mesh.vertices, mesh.faces) - ref).max() < 1e-6
    assert render_normals(np.vstack([mesh.vertices, [[9.0, 9, 9]]]), mesh.faces)[-1].tolist() == [0, 0, 1]
    ours = vertex_normals(torch.tensor(mesh.vertices)[None], torch.tensor(mesh.faces))[0].numpy()
    assert np.abs(ours - ref).max() < 1e-6


def test_basis_holds_the_arrays_sparsely_and_is_read_only():
    data = sparse_data()
    model = HACK(data).to(torch.float64)
    basis = model.basis
    V = data.num_vertices
    assert np.allclose(basis.expression.dense(V).numpy(), data.expression_directions)
    assert np.allclose(basis.shape.dense(V).numpy(), data.shape_directions)
    pose = data.pose_directions[1:].reshape(-1, V, 3)
    assert np.allclose(basis.pose_correctives.dense(V).numpy(), pose)
    moved = np.abs(data.expression_directions).max(axis=(0, 2)) > 0
    assert sorted(basis.expression.vertex_index.tolist()) == np.nonzero(moved)[0].tolist()
    assert basis.expression.names == tuple(data.expression_names)
    assert len(basis.pose_correctives.names) == pose.shape[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        basis.template = None


def dense_reference(data, shape, expression, pose):
    """The recipe with numpy_math on the dense arrays, float64 (the larynx at rest)."""
    V = data.num_vertices
    v = data.template_vertices + nm.larynx_offsets(
        data.larynx_map, data.vertex_uvs, data.larynx_direction, 0.0, 1.0
    )
    v = nm.blend_shapes(v, shape, data.shape_directions)
    v = nm.blend_shapes(v, expression, data.expression_directions)
    feats = nm.pose_features(nm.axis_angle_to_matrix(pose))[1:].reshape(-1)
    v = nm.blend_shapes(v, feats, data.pose_directions[1:].reshape(-1, V, 3))
    A = nm.skinning_matrices(pose, data.bone_rest_transforms, data.bone_parents)
    return nm.linear_blend_skinning(v, data.skinning_weights, A)[0]


def test_sparse_kernel_equals_dense_reference():
    data = sparse_data()
    model = HACK(data).to(torch.float64)
    kernel = KernelBasis.from_basis(model.basis)
    assert any(run.bone >= 0 for run in kernel.runs) and any(run.bone < 0 for run in kernel.runs)
    assert kernel.expression_directions.shape[1] < 3 * data.num_vertices  # zero rows not stored
    rng = np.random.default_rng(4)
    for _ in range(3):
        shape, expr = rng.normal(size=6), rng.uniform(0, 1, 5)
        pose = rng.normal(0, 0.3, (data.num_bones, 3))
        with torch.no_grad():
            ours = model(shape=shape[None], expression=expr[None], neck_pose=pose[None]).vertices[0].numpy()
        # (the basis is float32, moved to float64: a few 1e-7 cm of rounding)
        assert np.abs(ours - dense_reference(data, shape, expr, pose)).max() < 1e-5


@pytest.mark.parametrize("data", [sparse_data(), random_model_data(num_vertices=12, num_shape=3, seed=5)])
def test_kernel_larynx_equals_numpy_sampling(data):
    """The larynx's span of the kernel mesh, whole (the first model) or part of it."""
    model = HACK(data).to(torch.float64)
    for height, scale in ((0.037, 1.3), (-0.4, 0.6), (0.0, 1.0)):
        with torch.no_grad():
            ours = model(larynx_height=[[height]], larynx_scale=[[scale]]).vertices[0].numpy()
        ref = data.template_vertices + nm.larynx_offsets(
            data.larynx_map, data.vertex_uvs, data.larynx_direction, height, scale
        )
        assert np.abs(ours - ref).max() < 1e-5  # (the arrays are float32: a few 1e-7 cm)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 2e-4)])
def test_evaluator_on_any_dtype_matches_forward(dtype, tolerance):
    data = sparse_data()
    model = HACK(data).to(torch.float64)
    ev = ModelEvaluator(model, dtype=dtype)
    rng = np.random.default_rng(5)
    p = ModelParams(rng.normal(size=6), rng.uniform(0, 1, 5), rng.normal(0, 0.2, (data.num_bones, 3)))
    with torch.no_grad():
        ref = model(shape=p.shape[None], expression=p.expression[None], neck_pose=p.neck_pose[None])
    assert np.abs(ev.vertices(p) - ref.vertices[0].numpy()).max() < tolerance
    assert ev.head_weights.shape == (data.num_vertices,)
    idx = np.arange(0, data.num_vertices, 7)
    with torch.no_grad():
        unposed = model(shape=p.shape[None], expression=p.expression[None]).vertices[0].numpy()
    assert np.abs(ev.subset(idx).rest_vertices(p).cpu().numpy() - unposed[idx]).max() < tolerance


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluator_on_cuda_matches_cpu():
    data = sparse_data()
    model = HACK(data).to(torch.float64)
    p = ModelParams(np.ones(6) * 0.3, np.ones(5) * 0.2, np.full((data.num_bones, 3), 0.05))
    cpu = ModelEvaluator(model).jacobian(p, np.arange(50), True, True, [1, 2], False)
    gpu = ModelEvaluator(model, device="cuda").jacobian(p, np.arange(50), True, True, [1, 2], False)
    assert all(np.abs(a - b).max() < 1e-9 for a, b in zip(cpu, gpu))

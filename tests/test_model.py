"""HACK module behaviour: parameters, errors, action units, caching, gradients, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hack_model import HACK
from hack_model.synthetic import random_model_data


@pytest.fixture(scope="module")
def small():
    return HACK(random_model_data(num_vertices=60, num_shape=6, seed=4))


def test_neutral_is_template_plus_rest_larynx(small):
    out = small()
    assert out.vertices.shape == (1, 60, 3)
    assert out.joints.shape == (1, 8, 3) and out.bone_transforms.shape == (1, 8, 4, 4)
    template = torch.tensor(small.data.template_vertices)
    moved = (out.vertices[0] - template).norm(dim=1)
    # Only larynx vertices differ from the template at rest.
    support = set(small.basis.larynx.vertex_index.tolist())
    assert all(i in support for i in torch.nonzero(moved > 1e-6).flatten().tolist())


def test_batch_size_comes_from_parameters_and_broadcasts(small):
    out = small(shape=torch.zeros(1, 6), expression=torch.zeros(5, 55))
    assert out.vertices.shape[0] == 5
    with pytest.raises(ValueError, match="batch size"):
        small(expression=torch.zeros(5, 55), neck_pose=torch.zeros(4, 8, 3))


def test_fewer_shape_components_are_zero_padded(small):
    a = small(shape=torch.tensor([[1.0, -0.5]]))
    b = small(shape=torch.tensor([[1.0, -0.5, 0, 0, 0, 0]]))
    assert torch.allclose(a.vertices, b.vertices)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": torch.zeros(1, 7)}, "shape has 7 components"),
        ({"expression": torch.zeros(1, 54)}, r"expression must have shape \[B, 55\]"),
        ({"neck_pose": torch.zeros(1, 8)}, r"neck_pose must have shape \[B, 8, 3\]"),
        ({"larynx_height": torch.zeros(2)}, r"larynx_height must have shape \[B, 1\]"),
        ({"expression": torch.full((1, 55), float("nan"))}, "expression contains NaN or inf"),
        ({"neck_pose": torch.full((1, 8, 3), float("inf"))}, "neck_pose contains NaN or inf"),
        ({"action_units": {"AU99": 1.0}}, "unknown action unit.*AU99"),
        ({"transl": "left"}, "transl must be numeric"),
    ],
)
def test_bad_parameters_name_the_problem(small, kwargs, message):
    with pytest.raises(ValueError, match=message):
        small(**kwargs)


def test_device_mismatch_is_reported(small):
    with pytest.raises(ValueError, match="expression is on meta but the model is on cpu"):
        small(expression=torch.zeros(1, 55, device="meta"))


def test_larynx_on_model_without_one():
    model = HACK(random_model_data(num_vertices=30, larynx=False))
    with pytest.raises(ValueError, match="no larynx"):
        model(larynx_height=torch.zeros(1, 1))


def test_action_units_map_to_expressions(small):
    names = small.expression_names
    expected = torch.zeros(2, 55)
    expected[:, names.index("mouthSmile_L")] = torch.tensor([0.3, 1.0])
    expected[:, names.index("mouthSmile_R")] = torch.tensor([0.3, 1.0])
    expected[:, names.index("jawOpen")] = 0.5
    by_name = small(action_units={"AU12": torch.tensor([0.3, 1.0]), "AU27": 0.5})
    by_tensor = small(
        action_units=torch.tensor(
            [[{"AU12": v, "AU27": 0.5}.get(n, 0.0) for n in small.action_unit_names] for v in (0.3, 1.0)]
        )
    )
    direct = small(expression=expected)
    assert torch.allclose(by_name.vertices, direct.vertices, atol=1e-6)
    assert torch.allclose(by_tensor.vertices, direct.vertices, atol=1e-6)
    # Action units add to explicit expression weights.
    both = small(expression=expected, action_units={"AU27": 0.5})
    expected[:, names.index("jawOpen")] = 1.0
    assert torch.allclose(both.vertices, small(expression=expected).vertices, atol=1e-6)


def test_shape_cache_follows_values(small):
    with torch.no_grad():
        shape = torch.randn(1, 6)
        first = small(shape=shape).vertices.clone()
        shape[0, 0] += 1.0  # same tensor, new values: the cache must notice
        second = small(shape=shape).vertices
        fresh = HACK(small.data)(shape=shape).vertices
    assert not torch.allclose(first, second)
    assert torch.allclose(second, fresh, atol=1e-6)


def test_global_orient_and_transl_move_everything_rigidly(small):
    base = small(neck_pose=torch.full((1, 8, 3), 0.05))
    moved = small(
        neck_pose=torch.full((1, 8, 3), 0.05),
        global_orient=torch.tensor([[0.0, np.pi / 2, 0.0]]),
        transl=torch.tensor([[1.0, 2.0, 3.0]]),
    )
    R = torch.tensor([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    expected = base.vertices[0] @ R.T + torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(moved.vertices[0], expected, atol=1e-5)
    assert torch.allclose(moved.joints[0], base.joints[0] @ R.T + torch.tensor([1.0, 2.0, 3.0]), atol=1e-5)


def test_gradcheck_every_parameter_float64():
    model = HACK(random_model_data(num_vertices=12, num_shape=3, seed=5)).to(torch.float64)
    rng = np.random.default_rng(0)

    def param(*shape, low=-0.3, high=0.3):
        return torch.tensor(rng.uniform(low, high, shape), dtype=torch.float64, requires_grad=True)

    inputs = (
        param(2, 3), param(2, 55, low=0, high=1), param(2, 8, 3), param(2, 1, low=-0.05, high=0.05),
        param(2, 1, low=0.5, high=1.5), param(2, 3), param(2, 3), param(2, len(model.action_unit_names)),
    )  # fmt: skip

    def run(shape, expression, neck_pose, height, scale, orient, transl, aus):
        out = model(
            shape=shape, expression=expression, neck_pose=neck_pose, larynx_height=height,
            larynx_scale=scale, global_orient=orient, transl=transl, action_units=aus,
        )  # fmt: skip
        return out.vertices, out.joints

    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-5)


def test_forward_without_grad_after_grad_call_uses_fresh_values():
    model = HACK(random_model_data(num_vertices=20, num_shape=3, seed=6))
    shape = torch.zeros(1, 3, requires_grad=True)
    model(shape=shape).vertices.sum().backward()
    assert shape.grad is not None and shape.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    data = random_model_data(num_vertices=500, num_shape=8, seed=7)
    cpu, gpu = HACK(data), HACK(data).to("cuda")
    params = {
        "shape": torch.randn(4, 8),
        "neck_pose": 0.1 * torch.randn(4, 8, 3),
        "larynx_height": torch.full((4, 1), 0.02),
    }
    expected = cpu(**params).vertices
    got = gpu(**{k: v.cuda() for k, v in params.items()}).vertices.cpu()
    assert torch.allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError, match="is on cpu but the model is on cuda"):
        gpu(shape=torch.zeros(1, 8))


def test_betas_is_an_alias_of_shape_and_both_is_an_error(small):
    shape = torch.randn(2, 6)
    assert torch.equal(small(betas=shape).vertices, small(shape=shape).vertices)
    with pytest.raises(ValueError, match="not both"):
        small(shape=shape, betas=shape)


@pytest.mark.parametrize(
    "keyword, hint",
    [
        ("jaw_pose", "jawOpen"),
        ("pose", "use neck_pose"),
        ("body_pose", "use neck_pose"),
        ("expression_params", "use expression"),
        ("shap", "did you mean shape"),
        ("neck_poses", "did you mean neck_pose"),
        ("jawOpen", "expression={'jawOpen': w}"),
        ("AU12", "action_units={'AU12': w}"),
    ],
)
def test_unknown_keywords_get_a_hint(small, keyword, hint):
    with pytest.raises(TypeError, match="unexpected keyword argument") as info:
        small(**{keyword: torch.zeros(1, 3)})
    assert hint in str(info.value)
    assert isinstance(info.value, ValueError)  # caught like every other bad parameter


def test_expression_by_name_equals_the_weight_vector(small):
    names = small.expression_names
    weights = torch.zeros(3, len(names))
    weights[:, names.index("jawOpen")] = 1.0
    weights[:, names.index("mouthSmile_L")] = torch.tensor([0.0, 0.5, 1.0])
    by_name = small(expression={"jawOpen": 1.0, "mouthSmile_L": torch.tensor([0.0, 0.5, 1.0])})
    assert torch.allclose(by_name.vertices, small(expression=weights).vertices)
    with pytest.raises(ValueError, match="did you mean jawOpen"):
        small(expression={"jawOpn": 1.0})


def test_faces_landmarks_and_mapping_output(release_model):
    faces = release_model.faces
    assert faces.dtype == np.int64 and faces.shape[1] == 3
    assert np.array_equal(faces, release_model.data.triangles())
    assert torch.equal(release_model.faces_tensor.cpu(), torch.as_tensor(faces))
    out = release_model(expression=torch.zeros(2, 55))
    landmarks = np.asarray(release_model.data.landmark_indices)
    assert out.landmarks.shape == (2, 68, 3)
    assert torch.equal(out.landmarks, out.vertices[:, landmarks])
    assert out["vertices"] is out.vertices
    assert list(out.keys()) == ["vertices", "joints", "bone_transforms", "landmarks"]
    assert dict(out.items())["joints"] is out.joints and len(out) == 4


def test_output_without_landmarks_leaves_them_out(small):
    out = small()
    assert (
        out.landmarks is None
        and "landmarks" not in out
        and list(out) == ["vertices", "joints", "bone_transforms"]
    )
    with pytest.raises(KeyError):
        out["landmarks"]

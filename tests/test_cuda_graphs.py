"""HACK.forward through CUDA graphs (hack_model.core.cuda_graphs) against the eager pass.

Needs a CUDA device; everything here is skipped without one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hack_model import HACK
from hack_model.synthetic import random_model_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def models():
    data = random_model_data(num_vertices=600, num_shape=12, num_expression=9, seed=3)
    return HACK(data, cuda_graphs=False).to("cuda"), HACK(data).to("cuda")


def random_params(model: HACK, B: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)

    def t(*shape, scale=1.0):
        return torch.tensor(rng.normal(0, scale, shape), dtype=torch.float32, device="cuda")

    return {
        "shape": t(B, model.num_shape),
        "expression": t(B, model.num_expression, scale=0.5),
        "neck_pose": t(B, model.num_bones, 3, scale=0.2),
        "larynx_height": t(B, 1, scale=0.03),
        "larynx_scale": 1.0 + t(B, 1, scale=0.2),
        "global_orient": t(B, 3, scale=0.3),
        "transl": t(B, 3),
    }


@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize(
    "names", [None, ("neck_pose",), ("shape", "expression"), ("larynx_height", "transl")]
)
def test_replay_matches_eager_for_new_values(models, B, names):
    eager, graphed = models
    with torch.no_grad():
        for seed in range(4):  # seen, captured, then replayed with new values twice
            p = random_params(eager, B, seed)
            if names is not None:
                p = {k: v for k, v in p.items() if k in names}
            want, got = eager(**p), graphed(**p)
            torch.testing.assert_close(got.vertices, want.vertices, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got.bone_transforms, want.bone_transforms, rtol=1e-5, atol=1e-5)
    assert graphed.cuda_graph_count >= 1


def test_outputs_are_the_callers_own(models):
    _, graphed = models
    with torch.no_grad():
        outputs = [graphed(**random_params(graphed, 1, seed)).vertices for seed in range(4)]
        again = graphed(**random_params(graphed, 1, 0)).vertices
    assert not torch.equal(outputs[2], outputs[3])  # a later replay did not overwrite an earlier result
    torch.testing.assert_close(outputs[0], again)


def test_nan_input_and_overflow_are_named(models):
    _, graphed = models
    with torch.no_grad():
        p = random_params(graphed, 1, 0)
        for _ in range(3):
            graphed(**p)  # captured and replayed
        bad = dict(p, expression=p["expression"].clone())
        bad["expression"][0, 2] = float("nan")
        with pytest.raises(ValueError, match="expression contains NaN or inf"):
            graphed(**bad)
        huge = dict(p, neck_pose=torch.full_like(p["neck_pose"], 1e30))  # finite in, overflows out
        for _ in range(3):
            with pytest.raises(ValueError, match="vertices are not finite: parameter 'neck_pose'"):
                graphed(**huge)


def test_gradients_take_the_eager_path(models):
    eager, graphed = models
    p = random_params(eager, 1, 1)
    p["shape"].requires_grad_(True)
    for _ in range(3):
        out = graphed(**p)
    out.vertices.sum().backward()
    grad = p["shape"].grad.clone()
    p["shape"].grad = None
    eager(**p).vertices.sum().backward()
    torch.testing.assert_close(grad, p["shape"].grad)


def test_a_move_drops_the_graphs():
    data = random_model_data(num_vertices=300, num_shape=6, num_expression=4, seed=5)
    model = HACK(data).to("cuda")
    reference = HACK(data)
    with torch.no_grad():
        p = random_params(model, 2, 7)
        for _ in range(3):
            model(**p)
        assert model.cuda_graph_count == 1
        model.double()  # a move drops the graphs: they hold the old arrays
        assert model.cuda_graph_count == 0
        got = model(**{k: v.double() for k, v in p.items()}).vertices
        want = reference.double()(**{k: v.cpu().double() for k, v in p.items()}).vertices
        torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)

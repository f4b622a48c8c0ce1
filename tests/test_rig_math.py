"""blender_addon/rig_math.py (numpy only) against HACK.forward, without Blender."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from hack_model import HACK
from hack_model.anatomy import hack_range_of_motion, pose_limits_rad
from hack_model.synthetic import random_model_data

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("hack_rig_math", REPO / "blender_addon" / "rig_math.py")
rig_math = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rig_math)


@pytest.fixture(scope="module")
def model() -> HACK:
    return HACK(random_model_data(num_vertices=400, seed=2)).to(torch.float64)


def forward(model: HACK, **kwargs) -> np.ndarray:
    with torch.no_grad():
        return model(**kwargs).vertices[0].numpy()


def test_rotation_conversions_round_trip():
    rng = np.random.default_rng(0)
    aa = rng.normal(0, 0.8, (50, 3))
    R = rig_math.axis_angle_to_matrix(aa)
    assert np.allclose(rig_math.matrix_to_axis_angle(R), aa, atol=1e-9)
    q = rig_math.axis_angle_to_quaternion(aa)
    assert np.allclose(rig_math.quaternion_to_matrix(q), R, atol=1e-12)
    assert np.allclose(np.abs(np.sum(rig_math.matrix_to_quaternion(R) * q, -1)), 1.0)
    # Blender's XYZ Euler: X first.
    e = np.array([0.3, -0.2, 0.5])
    expected = (
        rig_math.axis_angle_to_matrix([0, 0, 0.5])
        @ rig_math.axis_angle_to_matrix([0, -0.2, 0])
        @ rig_math.axis_angle_to_matrix([0.3, 0, 0])
    )
    assert np.allclose(rig_math.euler_xyz_to_matrix(e), expected)
    with torch.no_grad():
        from hack_model.lbs import axis_angle_to_matrix

        assert np.allclose(axis_angle_to_matrix(torch.as_tensor(aa)).numpy(), R, atol=1e-12)


def test_pose_corrective_driver_expressions_give_r_minus_identity():
    rng = np.random.default_rng(1)
    for aa in rng.normal(0, 0.6, (20, 3)):
        w, x, y, z = rig_math.axis_angle_to_quaternion(aa)
        # The expressions use only + - * and the four names: evaluate them as Blender would.
        values = np.array(
            [[eval(e, {"__builtins__": {}}, dict(w=w, x=x, y=y, z=z)) for e in row] for row in
             rig_math.pose_corrective_expressions()]
        )  # fmt: skip
        assert np.allclose(values, rig_math.pose_features(rig_math.axis_angle_to_matrix(aa)), atol=1e-12)


def test_action_units_through_expression_weights(model):
    rng = np.random.default_rng(2)
    au = rng.uniform(0, 1, len(model.action_unit_names))
    raw = rng.uniform(0, 0.5, model.num_expression)
    weights = rig_math.expression_weights(raw, au, model.data.action_unit_matrix)
    direct = forward(model, expression=raw[None], action_units=au[None])
    assert np.abs(forward(model, expression=weights[None]) - direct).max() < 1e-9
    # The driver expression of every key sums exactly those terms.
    terms = rig_math.action_unit_terms(model.data.action_unit_matrix)
    for e, term in enumerate(terms):
        expression = rig_math.expression_driver_expression(term)
        env = {"e": raw[e], **{f"a{a}": au[a] for a, _ in term}}
        assert eval(expression, {"__builtins__": {}}, env) == pytest.approx(weights[e])


def test_head_motion_spreads_by_range_of_motion():
    limits = pose_limits_rad(hack_range_of_motion())
    w = rig_math.head_motion_weights(limits)
    ranges = rig_math.head_motion_ranges(limits)
    # A whole-head angle is the sum of the bones' angles, shared in proportion to their ranges.
    for row, axis in ((0, 1), (1, 0), (2, 2)):
        assert w[row, :, axis].sum() == pytest.approx(1.0)
        assert np.allclose(w[row, :, axis] * ranges[row], limits[:, axis])
    # Forward: lower neck flexes, upper extends, no net head rotation, all within limits.
    assert w[3, :, 0].sum() == pytest.approx(0.0, abs=1e-12)
    assert (w[3, :5, 0] > 0).all() and (w[3, 5:, 0] < 0).all()
    assert (np.abs(w[3, :, 0]) <= limits[:, 0] + 1e-12).all()
    angles = rig_math.head_motion_angles(np.array([ranges[0], 0, 0, 0]), limits)
    assert np.allclose(angles[:, 1], limits[:, 1])


def test_combined_rotation_is_what_forward_sees(model):
    """Head motion before the direct pose: one rotation per bone, as axis-angle for forward."""
    limits = pose_limits_rad(model.data.range_of_motion)
    rng = np.random.default_rng(3)
    direct = rng.uniform(-0.3, 0.3, (8, 3)) * limits
    sliders = rng.uniform(-0.3, 0.3, 4) * rig_math.head_motion_ranges(limits)
    R = rig_math.combined_rotations(
        rig_math.axis_angle_to_matrix(direct), rig_math.head_motion_angles(sliders, limits)
    )
    pose = rig_math.matrix_to_axis_angle(R)
    assert np.allclose(rig_math.axis_angle_to_matrix(pose), R, atol=1e-12)
    assert np.abs(forward(model, neck_pose=pose[None])).max() > 0


def test_larynx_keys_exact_at_knots_for_any_scale(model):
    data = model.data
    knots = rig_math.larynx_knots(data.larynx_map.shape[0])
    assert knots[0] <= -rig_math.LARYNX_HEIGHT_LIMIT and knots[-1] >= rig_math.LARYNX_HEIGHT_LIMIT
    assert np.any(np.isclose(knots, 0.0))
    rest, keys, key_knots = rig_math.larynx_keys(
        data.larynx_map, data.vertex_uvs, data.larynx_direction, knots
    )
    neutral = forward(model)
    rng = np.random.default_rng(4)
    for h, s in zip(rng.choice(knots, 6), rng.uniform(0, 2, 6)):
        expected = forward(model, larynx_height=[[h]], larynx_scale=[[s]]) - neutral
        got = rig_math.larynx_rig_offsets(rest, keys, knots, key_knots, h, s)
        assert np.abs(got - expected).max() < 1e-5, (h, s)
        # The driver expressions compute the same weights.
        w = rig_math.larynx_weights(h, s, knots, key_knots)
        step = knots[1] - knots[0]
        env = {"h": h, "s": s, "max": max, "abs": abs}
        exprs = [
            eval(rig_math.larynx_driver_expression(k, step), {"__builtins__": {}}, env) for k in key_knots
        ]
        assert np.allclose(exprs, w)


def test_larynx_keys_between_knots_within_documented_error(model):
    """Between knots the offsets are piecewise linear with kinks the knots miss; the
    error is bounded by larynx_key_error (reported for the real models in the README)."""
    data = model.data
    knots = rig_math.larynx_knots(data.larynx_map.shape[0])
    rest, keys, key_knots = rig_math.larynx_keys(
        data.larynx_map, data.vertex_uvs, data.larynx_direction, knots
    )
    bound = rig_math.larynx_key_error(
        data.larynx_map, data.vertex_uvs, data.larynx_direction, knots, samples=201
    )
    neutral = forward(model)
    for h in (0.0123, -0.0377):
        expected = forward(model, larynx_height=[[h]], larynx_scale=[[2.0]]) - neutral
        got = rig_math.larynx_rig_offsets(rest, keys, knots, key_knots, h, 2.0)
        assert np.abs(got - expected).max() <= bound + 1e-6


def test_shape_placement_and_frames():
    rng = np.random.default_rng(5)
    template, dirs = rng.normal(size=(10, 3)), rng.normal(size=(4, 10, 3))
    shaped = rig_math.shaped_vertices(template, dirs, [1.0, -2.0])
    assert np.allclose(shaped, template + dirs[0] - 2 * dirs[1])
    P = rig_math.placement_matrix(0.01)
    assert np.allclose(P[:3, :3] @ [0, 1, 0], [0, 0, 0.01])  # model +y up -> Blender +z up
    assert np.allclose(P[:3, :3] @ [0, 0, 1], [0, -0.01, 0])  # model +z forward -> Blender -y
    R = rig_math.axis_angle_to_matrix(np.array([0.2, 0.1, -0.3]))
    M = rig_math.fit_object_matrix(1.5, R, [1.0, 2.0, 3.0])
    point = np.array([0.3, -4.0, 2.0])
    assert np.allclose(M[:3, :3] @ point + M[:3, 3], P[:3, :3] @ (1.5 * R @ point + [1, 2, 3]))
    assert np.allclose(rig_math.frame_numbers(3, 50, 25, start=1), [1, 1.5, 2])


def test_placement_keys_rebuild_each_frames_matrix():
    """Location, quaternion and uniform scale keys compose back to fit_object_matrix, and
    neighbouring quaternions share a hemisphere (interpolation takes the short way)."""
    rng = np.random.default_rng(9)
    T = 6
    rotations = np.stack([rig_math.axis_angle_to_matrix(rng.normal(0, 1.5, 3)) for _ in range(T)])
    scale, translation = rng.uniform(0.5, 12.0, T), rng.normal(0, 40, (T, 3))
    location, quaternion, size = rig_math.placement_keys(scale, rotations, translation, 0.01)
    for k in range(T):
        M = rig_math.fit_object_matrix(scale[k], rotations[k], translation[k], 0.01)
        rebuilt = size[k] * rig_math.quaternion_to_matrix(quaternion[k])
        assert np.allclose(rebuilt, M[:3, :3], atol=1e-12) and np.allclose(location[k], M[:3, 3])
    assert (np.sum(quaternion[1:] * quaternion[:-1], -1) >= 0).all()
    with pytest.raises(ValueError, match="frames"):
        rig_math.placement_keys(scale[:2], rotations, translation)


def test_head_sliders_agree_with_anatomy_head_movements():
    """The add-on's sliders (total angles) reproduce hack_model.anatomy.head_movement_pose."""
    from hack_model.anatomy import head_movement_pose

    rom = hack_range_of_motion()
    limits = pose_limits_rad(rom)
    ranges = rig_math.head_motion_ranges(limits)
    for slider, movement in ((0, "turn_left"), (1, "look_down"), (2, "tilt_right")):
        for amount in (0.4, -0.7):
            sliders = np.zeros(4)
            sliders[slider] = amount * ranges[slider]
            expected = head_movement_pose(rom, movement, amount)
            assert np.allclose(rig_math.head_motion_angles(sliders, limits), expected)

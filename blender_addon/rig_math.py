"""The rig's maths, with numpy alone, so that it can be tested without Blender.

Everything the add-on turns into shape keys, drivers and constraints is computed
here: action-unit sums, the head-movement spread over the vertebrae, the larynx
keys and their driver weights, the pose-corrective driver expressions and the
object placement. The tests compare these functions with `HACK.forward`.

Conventions: model space is centimetres, +y up, +z forward. Quaternions are
(w, x, y, z) as in Blender. Blender's XYZ Euler applies X first: R = Rz Ry Rx.
"""

from __future__ import annotations

import numpy as np

try:  # inside the extension: the package's numpy maths, vendored by hack_model.blender_package
    from ._vendor.hack_model.core import numpy_math
except ImportError:  # loaded on its own (tests, tools): the package itself
    from hack_model.core import numpy_math

# The rotations are the package's own (re-exported: the add-on and the tests use these names).
axis_angle_to_matrix = numpy_math.axis_angle_to_matrix
axis_angle_to_quaternion = numpy_math.axis_angle_to_quaternion
euler_xyz_to_matrix = numpy_math.euler_xyz_to_matrix
matrix_to_axis_angle = numpy_math.matrix_to_axis_angle
matrix_to_quaternion = numpy_math.matrix_to_quaternion
quaternion_to_matrix = numpy_math.quaternion_to_matrix

# Larynx height range the rig covers (fraction of the larynx map's height).
LARYNX_HEIGHT_LIMIT = 0.05
LARYNX_SCALE_RANGE = (0.0, 2.0)
# Bones counted from the top that extend (chin forward) while the lower ones flex.
UPPER_NECK_BONES = 3


# ------------------------------------------------------------ pose correctives
def pose_corrective_expressions() -> list[list[str]]:
    """Driver expressions of (R - I)[i][j] in the quaternion variables w, x, y, z.

    Blender's "simple expressions" evaluate these without Python, so the rig runs
    without auto-run scripts. The quaternion is unit (the LOCAL_SPACE transform
    channel is read from the bone's matrix), hence 1 - 2(y^2 + z^2) - 1 = -2(y^2 + z^2).
    """
    return [
        ["-2*(y*y+z*z)", "2*(x*y-w*z)", "2*(x*z+w*y)"],
        ["2*(x*y+w*z)", "-2*(x*x+z*z)", "2*(y*z-w*x)"],
        ["2*(x*z-w*y)", "2*(y*z+w*x)", "-2*(x*x+y*y)"],
    ]


def pose_features(rotations: np.ndarray) -> np.ndarray:
    """(R - I) per bone: [J, 3, 3] -> [J, 3, 3] (the pose-corrective key values)."""
    return numpy_math.pose_features(rotations)


# -------------------------------------------------------------- action units
def action_unit_terms(
    action_unit_matrix: np.ndarray, tolerance: float = 0.0
) -> list[list[tuple[int, float]]]:
    """For each expression e, the (action unit index, weight) pairs with M[a, e] != 0."""
    m = np.asarray(action_unit_matrix, np.float64)
    return [
        [(int(a), float(m[a, e])) for a in np.nonzero(np.abs(m[:, e]) > tolerance)[0]]
        for e in range(m.shape[1])
    ]


def expression_driver_expression(
    terms: list[tuple[int, float]], raw_name: str = "e", prefix: str = "a"
) -> str:
    """'e + a3 + 0.5*a7': the expression key's value from its raw slider and the action units."""
    parts = [raw_name]
    for a, weight in terms:
        parts.append(f"{prefix}{a}" if weight == 1.0 else f"{float(weight)!r}*{prefix}{a}")
    return " + ".join(parts)


def expression_weights(
    raw: np.ndarray, action_units: np.ndarray, action_unit_matrix: np.ndarray
) -> np.ndarray:
    """The expression key values: raw sliders plus the action units through the table. [E]."""
    return np.asarray(raw, np.float64) + np.asarray(action_units, np.float64) @ np.asarray(
        action_unit_matrix, np.float64
    )


# --------------------------------------------------------------- neck motion
def head_motion_weights(limits: np.ndarray) -> np.ndarray:
    """How each whole-head motion spreads over the bones: [4, J, 3] radians per unit slider.

    Rows: turn (total angle, + to the subject's left, about each bone's +y), nod (total
    angle, + chin down, about +x), tilt (total angle, + towards the subject's right,
    about +z), forward (fraction in [-1, 1], + chin forward). The three rotations are
    shared in proportion to the bones' ranges of motion (`limits` [J, 3] radians per
    axis x, y, z), so every bone reaches its limit together. Forward flexes the lower
    neck and extends the top `UPPER_NECK_BONES` by the same total angle, so the face
    keeps its orientation while the head slides forward.
    """
    lim = np.asarray(limits, np.float64)
    J = lim.shape[0]
    w = np.zeros((4, J, 3))
    for row, axis in ((0, 1), (1, 0), (2, 2)):
        total = lim[:, axis].sum()
        if total > 0:
            w[row, :, axis] = lim[:, axis] / total
    upper = np.arange(J) >= max(J - UPPER_NECK_BONES, 1)
    low_sum, up_sum = lim[~upper, 0].sum(), lim[upper, 0].sum()
    if low_sum > 0 and up_sum > 0:
        low_gain = min(1.0, up_sum / low_sum)  # no bone passes its limit at forward = 1
        up_gain = low_gain * low_sum / up_sum
        w[3, ~upper, 0] = lim[~upper, 0] * low_gain
        w[3, upper, 0] = -lim[upper, 0] * up_gain
    return w


def head_motion_ranges(limits: np.ndarray) -> np.ndarray:
    """Largest useful slider values [turn, nod, tilt, forward]: the summed ranges."""
    lim = np.asarray(limits, np.float64)
    return np.array([lim[:, 1].sum(), lim[:, 0].sum(), lim[:, 2].sum(), 1.0])


def head_motion_angles(sliders: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Per-bone XYZ Euler angles [J, 3] for sliders [turn, nod, tilt, forward]."""
    return np.einsum("k,kjc->jc", np.asarray(sliders, np.float64), head_motion_weights(limits))


def combined_rotations(direct: np.ndarray, head_euler: np.ndarray) -> np.ndarray:
    """Each bone's local rotation: the head-motion rotation applied before (as if on a
    parent of) the bone's own pose, as the add-on's Transformation constraints do.
    direct [J, 3, 3], head_euler [J, 3] -> [J, 3, 3]."""
    return euler_xyz_to_matrix(head_euler) @ np.asarray(direct, np.float64)


# ------------------------------------------------------------------ larynx
def sample_larynx(larynx_map: np.ndarray, vertex_uvs: np.ndarray, height: float) -> np.ndarray:
    """The map value per vertex at (u, 1 - v + height): bilinear, corner-aligned, border clamp. [V]."""
    return numpy_math.sample_larynx_map(larynx_map, vertex_uvs, height)


def larynx_offsets(
    larynx_map: np.ndarray, vertex_uvs: np.ndarray, direction: np.ndarray, height: float, scale: float
) -> np.ndarray:
    """Exact larynx displacement [V, 3] (not relative to the rest larynx)."""
    return numpy_math.larynx_offsets(larynx_map, vertex_uvs, direction, height, scale)


def larynx_knots(map_height: int, limit: float = LARYNX_HEIGHT_LIMIT) -> np.ndarray:
    """Heights of the larynx keys: the map's pixel rows (spacing 1/(H-1)) covering [-limit, limit].

    At a knot the rig is exact for any scale; between knots each vertex's offset
    is piecewise linear with a kink the knots miss, see `larynx_key_error`.
    """
    step = 1.0 / max(map_height - 1, 1)
    n = int(np.ceil(limit / step - 1e-9))
    return np.arange(-n, n + 1) * step


def larynx_keys(
    larynx_map: np.ndarray, vertex_uvs: np.ndarray, direction: np.ndarray, knots: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape-key offsets of the larynx rig.

    Returns (rest [V, 3], height_keys [K, V, 3], key_knots [K]): the rest larynx
    (height 0, scale 1, already in the basis) and, for every knot except 0,
    offset(knot) - rest. With hat weights w_k(h) (summing to 1) and scale s the
    rig adds  s * sum_k w_k(h) height_keys[k] + (s - 1) rest  =  s offset(h) - rest,
    exactly the model's change from the rest larynx when h is a knot.
    """
    rest = larynx_offsets(larynx_map, vertex_uvs, direction, 0.0, 1.0)
    keep = [k for k in knots if abs(k) > 1e-12]
    keys = (
        np.stack([larynx_offsets(larynx_map, vertex_uvs, direction, k, 1.0) - rest for k in keep])
        if keep
        else (np.zeros((0,) + rest.shape))
    )
    return rest, keys, np.asarray(keep, np.float64)


def larynx_weights(height: float, scale: float, knots: np.ndarray, key_knots: np.ndarray) -> np.ndarray:
    """Key values [K] of the height keys (the scale key's value is scale - 1)."""
    step = float(np.min(np.diff(knots))) if len(knots) > 1 else 1.0
    h = float(np.clip(height, knots[0], knots[-1]))
    return scale * np.maximum(0.0, 1.0 - np.abs(h - np.asarray(key_knots)) / step)


def larynx_driver_expression(knot: float, step: float, height: str = "h", scale: str = "s") -> str:
    """Hat weight of one knot times the scale, as a simple driver expression."""
    return f"{scale}*max(0.0, 1.0 - abs({height} - ({float(knot)!r}))*{1.0 / float(step)!r})"


def larynx_rig_offsets(
    rest: np.ndarray, keys: np.ndarray, knots: np.ndarray, key_knots: np.ndarray, height: float, scale: float
) -> np.ndarray:
    """What the rig's larynx keys add to the basis [V, 3] (for accuracy checks)."""
    w = larynx_weights(height, scale, knots, key_knots)
    return np.tensordot(w, keys, 1) + (scale - 1.0) * rest


def larynx_key_error(
    larynx_map: np.ndarray,
    vertex_uvs: np.ndarray,
    direction: np.ndarray,
    knots: np.ndarray,
    scale: float = LARYNX_SCALE_RANGE[1],
    samples: int = 801,
) -> float:
    """Largest |rig - model| (cm) of the larynx keys over heights in the knots' range."""
    rest, keys, key_knots = larynx_keys(larynx_map, vertex_uvs, direction, knots)
    worst = 0.0
    for h in np.linspace(knots[0], knots[-1], samples):
        exact = larynx_offsets(larynx_map, vertex_uvs, direction, h, scale) - rest
        rig = larynx_rig_offsets(rest, keys, knots, key_knots, h, scale)
        worst = max(worst, float(np.abs(rig - exact).max()))
    return worst


# ------------------------------------------------------------------- shape
def shaped_vertices(template: np.ndarray, shape_directions: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """template [V, 3] + sum_i shape[i] directions[i] (any number of leading components)."""
    return numpy_math.blend_shapes(template, shape, shape_directions)


# --------------------------------------------------------------- placement
def expressions_move_joints(joint_regressor: np.ndarray | None, expression_directions: np.ndarray) -> bool:
    """Whether a joint regressor [J, V] sees the expressions [E, V, 3] (smplx regresses joints
    from them); a rig's rest pose follows shape only."""
    if joint_regressor is None:
        return False
    moved = np.einsum("jv,evc->ejc", np.asarray(joint_regressor, np.float64), expression_directions)
    return bool(np.abs(moved).max() > 1e-4)


def placement_matrix(unit_scale: float = 0.01) -> np.ndarray:
    """Model space (cm, +y up, +z forward) -> Blender (m, +z up, -y forward): rotate +90
    degrees about X and scale, as the head's object transform. [4, 4]."""
    m = np.eye(4)
    m[:3, :3] = axis_angle_to_matrix(np.array([np.pi / 2, 0.0, 0.0])) * unit_scale
    return m


def similarity_matrix(scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """[4, 4] of x -> scale * rotation @ x + translation (a fit's model -> scan map)."""
    m = np.eye(4)
    m[:3, :3] = float(np.asarray(scale).reshape(-1)[0]) * np.asarray(rotation, np.float64).reshape(3, 3)
    m[:3, 3] = np.asarray(translation, np.float64).reshape(3)
    return m


def fit_object_matrix(
    scale: float, rotation: np.ndarray, translation: np.ndarray, unit_scale: float = 0.01
) -> np.ndarray:
    """Object matrix that puts a fitted head on its scan, for a scan brought into Blender
    with the head's own placement (Y up -> Z up, cm -> unit_scale)."""
    return placement_matrix(unit_scale) @ similarity_matrix(scale, rotation, translation)


def placement_keys(
    scale: np.ndarray, rotation: np.ndarray, translation: np.ndarray, unit_scale: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame object keys that put a fitted sequence's heads on their scans (see
    `fit_object_matrix`): scale [T], rotation [T, 3, 3], translation [T, 3] -> location
    [T, 3], rotation_quaternion [T, 4] (one hemisphere from frame to frame), uniform scale [T]."""
    scale = np.asarray(scale, np.float64).reshape(-1)
    rotation = np.asarray(rotation, np.float64).reshape(-1, 3, 3)
    translation = np.asarray(translation, np.float64).reshape(-1, 3)
    if not (len(scale) == len(rotation) == len(translation)):
        raise ValueError(
            f"scale, rotation and translation have {len(scale)}, {len(rotation)} and "
            f"{len(translation)} frames"
        )
    matrices = np.stack(
        [fit_object_matrix(s, r, t, unit_scale) for s, r, t in zip(scale, rotation, translation)]
    )
    size = scale * unit_scale
    quaternions = continuous_quaternions(matrix_to_quaternion(matrices[:, :3, :3] / size[:, None, None]))
    return matrices[:, :3, 3], quaternions, size


def continuous_quaternions(quaternions: np.ndarray) -> np.ndarray:
    """[T, ..., 4] with each key in the hemisphere of the one before, so that interpolation
    between keys takes the short way."""
    q = np.array(quaternions, np.float64)
    for n in range(1, len(q)):
        flip = np.sum(q[n] * q[n - 1], -1) < 0
        q[n, flip] *= -1
    return q


def frame_numbers(count: int, source_fps: float, scene_fps: float, start: int = 1) -> np.ndarray:
    """Scene frames (float) of `count` samples recorded at source_fps."""
    return start + np.arange(count) * (float(scene_fps) / float(source_fps))

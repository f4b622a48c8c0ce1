"""Anatomical constants of the cervical spine shared by every HACK-layout model."""

from __future__ import annotations

import numpy as np

# Chain order, root first: each name is the joint between two vertebrae.
HACK_BONE_NAMES = ("c7t1", "c6c7", "c5c6", "c4c5", "c3c4", "c2c3", "c1c2", "oc1")
HACK_BONE_PARENTS = (-1, 0, 1, 2, 3, 4, 5, 6)

# Per-vertebra ranges of motion from the HACK paper, degrees: flexion-extension
# (total sagittal range), lateral bending and axial rotation (each to one side).
# Vertebra Ck moves on the one below it, so Ck maps to the joint c{k}c{k+1} and
# C7 to c7t1. The paper lists no row for the occiput on C1 (oc1): it nods and bends
# like C1 but barely twists (about 5 degrees to one side, White and Panjabi), an
# assumption of ours.
RANGE_OF_MOTION_DEG: dict[str, tuple[float, float, float]] = {
    "c7t1": (9.8, 4.8, 3.6),
    "c6c7": (17.1, 7.2, 5.8),
    "c5c6": (22.1, 8.2, 9.2),
    "c4c5": (22.1, 8.4, 10.3),
    "c3c4": (17.6, 7.4, 9.6),
    "c2c3": (11.3, 6.0, 6.0),
    "c1c2": (15.0, 4.0, 38.0),
    "oc1": (15.0, 4.0, 5.0),
}

# Official bone heads in world space (cm), root first: c7t1 ... oc1.
HACK_BONE_HEADS = np.array(
    [
        [0.0, -12.26, -1.52],
        [0.0, -10.54, -0.97],
        [0.0, -8.94, -0.54],
        [0.0, -7.36, -0.17],
        [0.0, -5.69, 0.02],
        [0.0, -4.10, -0.23],
        [0.0, -2.66, -0.03],
        [0.0, -1.25, -0.27],
    ]
)

# Which axis of a bone's rest frame each motion turns about (+y runs up the spine,
# +x to the subject's left, +z forward): positive x is flexion (chin down),
# positive z bends towards the subject's right, positive y turns the face to the left.
# (The range-of-motion table's columns are another order: model_data.RANGE_OF_MOTION_COLUMNS;
# pose_limits_rad converts between the two.)
BONE_AXIS_OF_MOTION = {"flexion_extension": 0, "axial_rotation": 1, "lateral_bending": 2}
MOTION_AXIS = BONE_AXIS_OF_MOTION  # deprecated name


def hack_range_of_motion() -> np.ndarray:
    """[8, 3] degrees in HACK bone order, columns as in model_data.RANGE_OF_MOTION_COLUMNS."""
    return np.array([RANGE_OF_MOTION_DEG[name] for name in HACK_BONE_NAMES], np.float64)


def pose_limits_rad(range_of_motion: np.ndarray) -> np.ndarray:
    """Symmetric per-axis limits [J, 3] (x, y, z of each bone's frame) in radians.

    Flexion-extension is a total range, so each way gets half of it.
    """
    rom = np.deg2rad(np.asarray(range_of_motion, np.float64))
    limits = np.zeros_like(rom)
    limits[:, BONE_AXIS_OF_MOTION["flexion_extension"]] = rom[:, 0] / 2.0  # a total range: half each way
    limits[:, BONE_AXIS_OF_MOTION["lateral_bending"]] = rom[:, 1]
    limits[:, BONE_AXIS_OF_MOTION["axial_rotation"]] = rom[:, 2]
    return limits


# ICT-FaceKit's 68 Multi-PIE landmark vertices (0-based), published with the kit
# (MIT); valid for every mesh in ICT / HACK-release topology.
ICT_MULTIPIE_LANDMARKS = (
    1225,
    1888,
    1052,
    367,
    1719,
    1722,
    2199,
    1447,
    966,
    3661,
    4390,
    3927,
    3924,
    2608,
    3272,
    4088,
    3443,
    268,
    493,
    1914,
    2044,
    1401,
    3615,
    4240,
    4114,
    2734,
    2509,
    978,
    4527,
    4942,
    4857,
    1140,
    2075,
    1147,
    4269,
    3360,
    1507,
    1542,
    1537,
    1528,
    1518,
    1511,
    3742,
    3751,
    3756,
    3721,
    3725,
    3732,
    5708,
    5695,
    2081,
    0,
    4275,
    6200,
    6213,
    6346,
    6461,
    5518,
    5957,
    5841,
    5702,
    5711,
    5533,
    6216,
    6207,
    6470,
    5517,
    5966,
)


# Head movements as (motion, sign): the whole neck turns, spread over the bones
# in proportion to each bone's range of motion for that motion.
HEAD_MOVEMENTS: dict[str, tuple[str, float]] = {
    "turn_left": ("axial_rotation", 1.0),
    "turn_right": ("axial_rotation", -1.0),
    "look_down": ("flexion_extension", 1.0),
    "look_up": ("flexion_extension", -1.0),
    "tilt_right": ("lateral_bending", 1.0),
    "tilt_left": ("lateral_bending", -1.0),
}


def head_movement_pose(range_of_motion: np.ndarray, movement: str, amount: float = 1.0) -> np.ndarray:
    """Axis-angle [J, 3] for a head movement at `amount` (1 = every bone at its limit)."""
    if movement not in HEAD_MOVEMENTS:
        raise ValueError(f"unknown head movement {movement!r}; known: {', '.join(HEAD_MOVEMENTS)}")
    motion, sign = HEAD_MOVEMENTS[movement]
    limits = pose_limits_rad(range_of_motion)
    pose = np.zeros_like(limits)
    axis = BONE_AXIS_OF_MOTION[motion]
    pose[:, axis] = sign * amount * limits[:, axis]
    return pose

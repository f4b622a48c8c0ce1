"""Deprecated location of the forward pass's functions: use `hack_model.core`.

Kept so that existing imports work; every name is the one function in `hack_model.core`.
"""

from __future__ import annotations

from .core.blendshapes import blend_shapes, pose_features
from .core.kinematics import (
    forward_kinematics,
    relative_rest_transforms,
    rest_frames_from_joints,
    rigid_transform,
    skinning_matrices,
)
from .core.larynx import sample_larynx_offsets
from .core.rotations import axis_angle_to_matrix
from .core.skinning import linear_blend_skinning, skin_coordinate_major

# The old name of `skin_coordinate_major` (a coordinate-major mesh was called "planes").
skin_vertex_planes = skin_coordinate_major

__all__ = [
    "axis_angle_to_matrix",
    "blend_shapes",
    "forward_kinematics",
    "linear_blend_skinning",
    "pose_features",
    "relative_rest_transforms",
    "rest_frames_from_joints",
    "rigid_transform",
    "sample_larynx_offsets",
    "skin_coordinate_major",
    "skin_vertex_planes",
    "skinning_matrices",
]

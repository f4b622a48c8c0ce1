"""The cervical skeleton of the default model: bones, skinning weights, ranges of motion.

Bone heads follow the official HACK release (cm). Each bone's local +y points
from its head to the next bone's head (Blender convention); the last bone,
oc1, carries the skull and points forward like the official one.

Range-of-motion mapping (degrees; flexion-extension, lateral bending, axial
rotation). The HACK paper lists one row per vertebra C1..C7, the motion of that
vertebra relative to the one below. A bone named cXcY is the joint between
vertebrae X and Y, so row C_k drives bone c{k}c{k+1} (C1 -> c1c2, the
atlanto-axial joint with its large axial rotation, ..., C7 -> c7t1). The
occipito-atlantal joint (oc1) has no row of its own; it nods like C1 and bends
like C1 but barely twists, so it gets (15.0, 4.0, 5.0) (an assumption; White
& Panjabi give about 5 degrees of axial rotation to one side at O-C1). The table
lives in hack_model.anatomy, shared with the release loader.
Bone-local axes: x = flexion-extension, z = lateral bending, y = axial rotation.
"""

from __future__ import annotations

import numpy as np

from ..anatomy import HACK_BONE_HEADS, HACK_BONE_NAMES, HACK_BONE_PARENTS, hack_range_of_motion

BONE_NAMES = list(HACK_BONE_NAMES)
BONE_PARENTS = np.array(HACK_BONE_PARENTS, np.int64)
BONE_HEADS = HACK_BONE_HEADS
OC1_LENGTH = 10.45  # the skull bone points forward to the face, as in the release

# [J, 3] degrees: flexion-extension, lateral bending, axial rotation (see module docstring).
RANGE_OF_MOTION = hack_range_of_motion()


def bone_tails(heads: np.ndarray = BONE_HEADS) -> np.ndarray:
    """Tail of each bone: the next head; oc1 points along +z. [J, 3]"""
    tails = np.concatenate([heads[1:], heads[-1:] + [0.0, 0.0, OC1_LENGTH]])
    return tails


def rest_transforms(heads: np.ndarray = BONE_HEADS) -> tuple[np.ndarray, np.ndarray]:
    """World rest frames [J, 4, 4] (columns x, y, z, head) and bone lengths [J]."""
    tails = bone_tails(heads)
    J = len(heads)
    G = np.tile(np.eye(4), (J, 1, 1))
    lengths = np.linalg.norm(tails - heads, axis=1)
    for b in range(J):
        y = (tails[b] - heads[b]) / lengths[b]
        x = np.array([1.0, 0.0, 0.0])
        x = x - (x @ y) * y
        x /= np.linalg.norm(x)
        z = np.cross(x, y)
        G[b, :3, 0], G[b, :3, 1], G[b, :3, 2], G[b, :3, 3] = x, y, z, heads[b]
    return G, lengths


def spine_z(y: np.ndarray, heads: np.ndarray = BONE_HEADS) -> np.ndarray:
    """z of the spine curve at height y (clamped at both ends)."""
    return np.interp(y, heads[:, 1], heads[:, 2])


def vertex_levels(P: np.ndarray, heads: np.ndarray = BONE_HEADS) -> np.ndarray:
    """Vertebral level of each vertex [V]: height, tilted forward of the spine.

    Skin in front of the spine belongs to a higher vertebra than skin at the
    same height behind it (the jaw and chin sit at the skull's level while the
    throat below them follows the upper cervical vertebrae)."""
    front = np.maximum(P[:, 2] - spine_z(P[:, 1], heads), 0.0)
    return P[:, 1] + 0.75 * front


def skinning_weights(P: np.ndarray, rigid_head: np.ndarray, heads: np.ndarray = BONE_HEADS) -> np.ndarray:
    """Smooth weights along the spine; the skull (and rigid_head [V] in [0, 1]) on oc1. [V, J]

    rigid_head marks the face and mandible (which must move with the skull even
    where they hang below the C1 level, like the jaw angle and the chin)."""
    L = vertex_levels(P, heads)
    J = len(heads)
    centres = np.concatenate([(heads[:-1, 1] + heads[1:, 1]) / 2, [heads[-1, 1] + 0.4]])
    W = np.zeros((len(P), J))
    # Average of piecewise-linear hat weights over a Gaussian window: smooth along the spine,
    # so that twisting one joint shears the skin over several centimetres, not one ring.
    sigma = 2.2
    offsets = np.linspace(-2.5 * sigma, 2.5 * sigma, 21)
    kern = np.exp(-0.5 * (offsets / sigma) ** 2)
    kern /= kern.sum()
    eye = np.eye(J)
    for o, k in zip(offsets, kern):
        Lo = np.clip(L + o, centres[0], centres[-1])
        f = np.interp(Lo, centres, np.arange(J))
        lo = np.floor(f).astype(int)
        hi = np.minimum(lo + 1, J - 1)
        t = f - lo
        W += k * ((1 - t)[:, None] * eye[lo] + t[:, None] * eye[hi])
    m = np.clip((L - (heads[-1, 1] - 0.5)) / 1.5, 0.0, 1.0)  # above C1: the skull
    m = m * m * (3 - 2 * m)
    m = np.maximum(m, np.clip(rigid_head, 0.0, 1.0))
    W = (1 - m)[:, None] * W + m[:, None] * eye[J - 1]
    return W / W.sum(axis=1, keepdims=True)

"""The default model's neck over its whole range of motion: every joint anywhere within its
limits, all joints at once, with the pose correctives.

The limits are the rig's own (`anatomy.pose_limits_rad`, what the Blender add-on clamps to
and what `head_movement_pose` spreads a head movement over): lateral bending and axial
rotation to either side, and half of each joint's flexion-extension range each way (the
table gives the total sagittal range). The corners are the six whole-neck extremes (every
bone at the same limit of one axis); the random poses set every axis of every bone
uniformly within its limits. Each must keep the mid-neck cross-section within 10% of rest
(the area inside the ring of skin that forms it at rest, wherever the pose takes it:
`pose_correctives.mid_neck_area`) and never intersect itself.

Report for any model file (failures, where they are in the rest mesh, worst ratio):
    python -m tests.test_default_neck [model.npz] [n_random] [seed]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hack_model.anatomy import HEAD_MOVEMENTS, head_movement_pose, pose_limits_rad
from hack_model.default_model import pose_correctives as pc
from hack_model.default_model.mesh_checks import self_intersections
from hack_model.io.npz import load_model_npz

from . import test_default_model as base

N_RANDOM = 100
SEED = 0


class Neck:
    """The skinning data of a model, with what every pose check needs."""

    def __init__(self, path: Path):
        data = load_model_npz(path)
        self.T = data.template_vertices.astype(np.float64)
        self.W = data.skinning_weights.astype(np.float64)
        self.G = data.bone_rest_transforms.astype(np.float64)
        self.Pd = data.pose_directions.astype(np.float64)
        self.parents = data.bone_parents
        self.rom = data.range_of_motion.astype(np.float64)
        self.tris = data.triangles()
        self.a0 = pc.mid_neck_area(self.T, self.tris, self.T, self.G)
        # Triangles with all corners on the rigid skull move as one rigid body (no correctives
        # there), so they cannot cross each other: only pairs with a skinned triangle are tested.
        self.rigid = self.W[:, -1] >= 1 - 1e-6
        self.skinned = np.nonzero(~self.rigid[self.tris].all(axis=1))[0]

    def check(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """(mid-neck area / rest area, intersecting triangle pairs [K, 2]) of pose theta [J, 3]."""
        X = pc.apply(self.T, self.W, self.G, self.parents, theta, self.Pd)
        ratio = pc.mid_neck_area(X, self.tris, self.T, self.G) / self.a0
        return ratio, self_intersections(X, self.tris, subset=self.skinned)

    def where(self, hits: np.ndarray) -> str:
        """Where intersecting triangles sit in the rest mesh."""
        if len(hits) == 0:
            return ""
        c = self.T[self.tris[np.unique(hits)]].mean(axis=1)
        lo, hi = c.min(0), c.max(0)
        return f"rest x {lo[0]:.1f}..{hi[0]:.1f}, y {lo[1]:.1f}..{hi[1]:.1f}, z {lo[2]:.1f}..{hi[2]:.1f}"


def corner_poses(rom: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The whole-neck extremes: every bone at its limit of one axis, both ways."""
    return [(name, head_movement_pose(rom, name)) for name in HEAD_MOVEMENTS]


def random_poses(rom: np.ndarray, n: int = N_RANDOM, seed: int = SEED) -> list[tuple[str, np.ndarray]]:
    """Every axis of every bone uniform within its limits."""
    lim = pose_limits_rad(rom)
    u = np.random.default_rng(seed).uniform(-1.0, 1.0, (n, *lim.shape))
    return [(f"random {k}", u[k] * lim) for k in range(n)]


def failures(neck: Neck, poses, verbose: bool = False) -> tuple[list[str], float]:
    """Descriptions of the poses that fail, and the area ratio farthest from 1."""
    bad, worst = [], 1.0
    for name, theta in poses:
        ratio, hits = neck.check(theta)
        if abs(ratio - 1) > abs(worst - 1):
            worst = ratio
        if abs(ratio - 1) >= 0.1 or len(hits):
            bad.append(f"{name}: area ratio {ratio:.3f}, {len(hits)} intersecting pairs {neck.where(hits)}")
            if verbose:
                print("FAIL", bad[-1], flush=True)
    return bad, worst


@pytest.fixture(scope="module")
def neck():
    return Neck(base.ASSET)


def test_correctives_leave_the_skull_rigid(neck):
    assert neck.rigid.any()
    assert np.abs(neck.Pd[:, :, :, neck.rigid]).max() == 0.0  # what the skinned-only check relies on


def test_whole_neck_extremes(neck):
    bad, _ = failures(neck, corner_poses(neck.rom))
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_every_joint_anywhere_within_its_limits(neck):
    bad, _ = failures(neck, random_poses(neck.rom))
    assert not bad, f"{len(bad)} of {N_RANDOM} poses fail:\n" + "\n".join(bad)


if __name__ == "__main__":
    import time

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else base.ASSET
    n = int(sys.argv[2]) if len(sys.argv) > 2 else N_RANDOM
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else SEED
    t0 = time.perf_counter()
    nk = Neck(path)
    poses = corner_poses(nk.rom) + random_poses(nk.rom, n, seed)
    bad, worst = failures(nk, poses, verbose=True)
    print(
        f"{path}: {len(bad)} of {len(poses)} poses fail ({len(poses) - n} corners, {n} random, seed {seed}); "
        f"worst mid-neck area ratio {worst:.3f}; {time.perf_counter() - t0:.0f} s"
    )

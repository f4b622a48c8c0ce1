"""A joint regressor for the default model, so the vertebrae follow the neck's shape.

Each bone head is an affine combination (weights summing to 1) of skin vertices in a band
around its height on the back half of the neck and head: the part no expression or larynx
setting moves, so only shape moves the joints. The weights are the smallest change to a
smooth Gaussian band that reproduces the rest bone head exactly, so the mean head keeps
the official skeleton and a longer, thicker or more forward neck carries its joints along.
"""

from __future__ import annotations

import numpy as np

from . import head_mesh as hm

BAND = 0.8  # cm, standard deviation of the band around each bone head's height
BACK_FROM_DEG = 110.0  # azimuth from the front beyond which the skin is "back"


def joint_regressor(topo: hm.Topology, P: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Regressor [J, V] with rows summing to 1 and regressor @ P == heads [J, 3]."""
    phi = np.degrees(np.abs(np.nan_to_num(topo.phi)))
    back = (topo.part == hm.PART_SKIN) & (topo.row >= 0) & (phi >= BACK_FROM_DEG)
    R = np.zeros((len(heads), len(P)))
    for j, head in enumerate(heads):
        near = np.nonzero(back & (np.abs(P[:, 1] - head[1]) < 3.0 * BAND))[0]
        if len(near) < 8:
            raise ValueError(f"bone head {j} at y={head[1]:.2f} has no back-of-neck skin around it")
        prior = np.exp(-0.5 * ((P[near, 1] - head[1]) / BAND) ** 2)
        prior /= prior.sum()
        A = np.vstack([P[near].T, np.ones(len(near))])  # [4, n]: position and partition of unity
        target = np.append(head, 1.0)
        correction = A.T @ np.linalg.solve(A @ A.T, target - A @ prior)
        R[j, near] = prior + correction
    return R

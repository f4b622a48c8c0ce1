"""Face / neck / back-of-head regions of a model's vertices, from its geometry.

Used by the fit report and the benchmark, so both speak of the same regions.
"""

from __future__ import annotations

import numpy as np

from hack_model.model_data import ModelData

FACE, NECK, BACK_OF_HEAD = 0, 1, 2
REGION_NAMES = ("face", "neck", "back_of_head")


def head_weights(data: ModelData) -> np.ndarray:
    """[V] each vertex's skinning weight on the head bone (oc1, or the last bone)."""
    head_bone = data.bone_names.index("oc1") if "oc1" in data.bone_names else data.num_bones - 1
    w = np.asarray(data.skinning_weights, np.float64)
    return w[:, head_bone] / np.maximum(w.sum(1), 1e-12)


def vertex_regions(data: ModelData, vertices: np.ndarray | None = None) -> np.ndarray:
    """Region [V] (FACE, NECK or BACK_OF_HEAD) of every vertex.

    Neck: vertices that follow the neck bones more than the head bone (skinning weight of the
    last bone, oc1, below one half). The rest of the head splits front/back at the coronal
    plane through the ends of the jaw line (Multi-PIE landmarks 0 and 16, near the ears), or
    the middle of the head's depth when the model has no landmarks. vertices [V, 3] default
    to the template.
    """
    v = data.template_vertices if vertices is None else np.asarray(vertices)
    neck = head_weights(data) < 0.5
    if data.landmark_indices is not None and len(data.landmark_indices) >= 17:
        z_split = float(v[data.landmark_indices[[0, 16]], 2].mean())
    else:
        head = v[~neck] if (~neck).any() else v
        z_split = float((head[:, 2].min() + head[:, 2].max()) / 2)
    regions = np.where(v[:, 2] >= z_split, FACE, BACK_OF_HEAD)
    regions[neck] = NECK
    return regions.astype(np.int64)

"""Small random models in the HACK layout, for tests, benchmarks and examples.

The geometry is a blob, not a head: these models exercise the maths, not looks.
"""

from __future__ import annotations

import numpy as np

from .action_units import default_action_unit_table
from .anatomy import HACK_BONE_HEADS, HACK_BONE_NAMES, HACK_BONE_PARENTS, hack_range_of_motion
from .model_data import ModelData


def chain_rest_frames(heads: np.ndarray, head_length: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """World rest frames [J, 4, 4] whose +y points from each head to the next, and lengths [J]."""
    J = len(heads)
    tails = np.concatenate([heads[1:], heads[-1:] + [0.0, head_length, 0.0]])
    frames = np.tile(np.eye(4), (J, 1, 1))
    for b in range(J):
        y = tails[b] - heads[b]
        y /= np.linalg.norm(y)
        x = np.array([1.0, 0.0, 0.0])
        z = np.cross(x, y)
        z /= np.linalg.norm(z)
        x = np.cross(y, z)
        frames[b, :3, :3] = np.stack([x, y, z], 1)
        frames[b, :3, 3] = heads[b]
    return frames, np.linalg.norm(tails - heads, axis=1)


def random_model_data(
    num_vertices: int = 200,
    num_shape: int = 10,
    num_expression: int = 55,
    seed: int = 0,
    larynx: bool = True,
    expression_names: list[str] | None = None,
) -> ModelData:
    """A random HACK-layout model: an ellipsoid of points around the neck chain with
    smooth skinning weights, dense random blendshapes and a Gaussian larynx bump."""
    rng = np.random.default_rng(seed)
    V = num_vertices
    heights = rng.uniform(-19.0, 14.0, V)
    angles = rng.uniform(0, 2 * np.pi, V)
    radius = np.where(heights > -2.0, 8.0, 5.5) * rng.uniform(0.9, 1.1, V)
    template = np.stack([radius * np.cos(angles), heights, radius * np.sin(angles)], 1)
    polygons = rng.integers(0, V, size=(max(V // 2, 1), 4))
    frames, lengths = chain_rest_frames(HACK_BONE_HEADS)
    # Weights fall off with the height difference to each bone's middle; head above C1 rigid.
    mids = HACK_BONE_HEADS[:, 1] + lengths.clip(max=1.7) / 2
    weights = np.exp(-(((heights[:, None] - mids[None]) / 1.2) ** 2))
    weights /= weights.sum(1, keepdims=True)
    weights[weights < 1e-6] = 0.0  # real weight maps are exactly zero far from a bone
    weights[heights > -1.0] = np.eye(8)[7]
    weights /= weights.sum(1, keepdims=True)
    if expression_names is None:
        from .default_expression_names import EXPRESSION_NAMES

        expression_names = list(EXPRESSION_NAMES[:num_expression])
        expression_names += [f"extra_{i}" for i in range(num_expression - len(expression_names))]
    au_names, au_desc, au_matrix = default_action_unit_table(expression_names)
    uvs = np.stack([(angles / (2 * np.pi)) % 1.0, (heights + 19.0) / 33.0], 1)
    larynx_map = larynx_direction = None
    if larynx:
        yy, xx = np.mgrid[0:64, 0:64] / 63.0
        larynx_map = np.exp(-(((xx - 0.25) / 0.08) ** 2 + ((yy - 0.7) / 0.08) ** 2)).astype(np.float32)
        larynx_map[larynx_map < 1e-3] = 0.0  # a bump on the throat, zero elsewhere
        larynx_direction = np.array([0.0, -0.45, 0.89], np.float32)
    pose_dirs = rng.normal(0, 0.05, (8, 3, 3, V, 3)).astype(np.float32)
    pose_dirs[0] = 0.0
    return ModelData(
        template_vertices=template.astype(np.float32),
        polygon_vertex_indices=polygons.reshape(-1).astype(np.int32),
        polygon_sizes=np.full(len(polygons), 4, np.int32),
        shape_directions=rng.normal(0, 0.3, (num_shape, V, 3)).astype(np.float32),
        expression_directions=rng.normal(0, 0.2, (num_expression, V, 3)).astype(np.float32),
        expression_names=expression_names,
        pose_directions=pose_dirs,
        skinning_weights=weights.astype(np.float32),
        bone_names=list(HACK_BONE_NAMES),
        bone_parents=np.array(HACK_BONE_PARENTS, np.int32),
        bone_rest_transforms=frames,
        bone_lengths=lengths,
        vertex_uvs=uvs.astype(np.float32),
        larynx_map=larynx_map,
        larynx_direction=larynx_direction,
        action_unit_names=au_names,
        action_unit_descriptions=au_desc,
        action_unit_matrix=au_matrix,
        range_of_motion=hack_range_of_motion().astype(np.float32),
        metadata={"name": f"random test model (seed {seed})", "license": "MIT", "source": "synthetic"},
    )

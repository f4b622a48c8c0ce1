"""`build_default_model()`: the procedural default HACK model, deterministic."""

from __future__ import annotations

import numpy as np

from ..model_data import ModelData
from . import head_mesh as hm
from . import larynx, skeleton
from .appearance import bake_texture, encode_png, preview_colours
from .expressions import build_expressions
from .pose_correctives import fit_pose_correctives
from .sdf import HeadParams
from .shape_space import build_shape_space

EXPRESSION_NAMES = [
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L",
    "browOuterUp_R", "cheekPuff_L", "cheekPuff_R", "cheekRaiser_L", "cheekRaiser_R",
    "cheekSquint_L", "cheekSquint_R", "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L",
    "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R", "eyeLookOut_L", "eyeLookOut_R",
    "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R", "eyeWide_L", "eyeWide_R",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimple_L",
    "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmile_L", "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L",
    "mouthUpperUp_R", "noseSneer_L", "noseSneer_R",
]  # fmt: skip
VERSION = "0.2.0"
PART_NAMES = {
    "skin": hm.PART_SKIN, "eye_L": hm.PART_EYE_L, "eye_R": hm.PART_EYE_R, "mouth": hm.PART_MOUTH,
    "teeth_upper": hm.PART_TEETH_UPPER, "gums_upper": hm.PART_GUM_UPPER,
    "teeth_lower": hm.PART_TEETH_LOWER, "gums_lower": hm.PART_GUM_LOWER, "tongue": hm.PART_TONGUE,
}


def build_mean_head(hp: HeadParams | None = None):
    """Topology, symmetric positions [V, 3] and mirror map [V] of one head."""
    topo = hm.build_topology()
    P = hm.place_vertices(topo, hp or HeadParams())
    mirror = hm.mirror_map(P)
    return topo, hm.symmetrize(P, mirror), mirror


def quantize(x: np.ndarray, step: float = 2.0**-17) -> np.ndarray:
    """Round to a power-of-two grid (about 0.08 micrometres): exact in float32, and the
    cleared low mantissa bits make the shipped file compress far better."""
    return (np.round(np.asarray(x, np.float64) / step) * step).astype(np.float32)


def skull_mask(topo: hm.Topology) -> np.ndarray:
    """1 for vertices carried rigidly by the skull: face, mandible, eyes, mouth. [V]"""
    e = np.nan_to_num(hm.warped_elevations(topo), nan=90.0)
    neck = (topo.row >= 0) & (topo.row < hm.NECK_ROWS)
    e[neck] = -90.0
    phi = np.abs(np.degrees(np.nan_to_num(topo.phi)))
    # The skull's lower edge: under the jaw at the front, rising to the occiput at the back.
    # The mask ramps up vertically across that edge only, never around the neck, so a
    # twisted head shears the skin (fine) instead of compressing it sideways (folds).
    # (Near the edge soften_skull_mask replaces this ramp by a wider fade from 1.)
    t = np.clip((phi - 60.0) / 100.0, 0.0, 1.0)
    edge = -54.0 + 26.0 * t * t * (3 - 2 * t)
    m = np.clip((e - edge) / 8.0, 0.0, 1.0)
    m[topo.part != hm.PART_SKIN] = 1.0
    return m


def soften_skull_mask(m: np.ndarray, P: np.ndarray, reach: float = 8.0) -> np.ndarray:
    """Let the skin next to the skull follow it partly, fading smoothly from 1 at the rigid
    part to 0 at `reach` cm, so a twisted or nodded head shears the upper neck instead of
    folding it.

    The fade must start at 1: a plateau below 1 (or `m`'s own 8-degree ramp, which runs
    partly around the neck where the jaw line rises to the ear) puts a weight step across
    one ring of short edges, and the 43 degrees of twist between skull and C2 then fold the
    skin below the ear. Its steepest slope, 1.5 / reach per cm, keeps that shear mild."""
    from scipy.spatial import cKDTree

    rigid = m >= 0.999
    d, _ = cKDTree(P[rigid]).query(P)
    t = np.clip(1.0 - d / reach, 0.0, 1.0)
    return np.maximum(m, t * t * (3 - 2 * t))


def build_default_model(seed: int = 0) -> ModelData:
    """Generate the whole default model (deterministic for a given seed)."""
    from ..action_units import default_action_unit_table

    topo, P, mirror = build_mean_head()
    corners, sizes = hm.polygon_arrays(topo)
    vuv, uv_coords, corner_uv = hm.build_uvs(topo, P)
    heads = skeleton.BONE_HEADS
    G, lengths = skeleton.rest_transforms(heads)
    rigid = soften_skull_mask(skull_mask(topo), P)
    W = skeleton.skinning_weights(P, rigid, heads)
    front = topo.grid[:, hm.N_COLS // 2]
    lmap = larynx.larynx_map(vuv, P, front)
    expr = quantize(build_expressions(topo, P, mirror, EXPRESSION_NAMES))
    shape, _ = build_shape_space(topo, P, seed=seed)
    shape = shape.astype(np.float16)  # 0.01 mm precision; keeps the file under 15 MB
    pose = quantize(fit_pose_correctives(P, W, G, skeleton.BONE_PARENTS, seed=seed))
    au_names, au_desc, au_matrix = default_action_unit_table(EXPRESSION_NAMES)
    colours = quantize(preview_colours(topo, P), 2.0**-8)
    texture = encode_png(bake_texture(uv_coords, corner_uv, corners, colours.astype(np.float64)))
    return ModelData(
        template_vertices=P.astype(np.float32),
        polygon_vertex_indices=corners,
        polygon_sizes=sizes,
        shape_directions=shape,
        expression_directions=expr,
        expression_names=list(EXPRESSION_NAMES),
        pose_directions=pose,
        skinning_weights=W.astype(np.float32),
        bone_names=list(skeleton.BONE_NAMES),
        bone_parents=skeleton.BONE_PARENTS.copy(),
        bone_rest_transforms=G.astype(np.float32),
        bone_lengths=lengths.astype(np.float32),
        uv_coords=uv_coords.astype(np.float32),
        polygon_uv_indices=corner_uv,
        vertex_uvs=vuv.astype(np.float32),
        larynx_map=lmap,
        larynx_direction=larynx.larynx_direction().astype(np.float32),
        landmark_indices=hm.landmark_indices(topo, P),
        action_unit_names=au_names,
        action_unit_descriptions=au_desc,
        action_unit_matrix=au_matrix.astype(np.float32),
        range_of_motion=skeleton.RANGE_OF_MOTION.astype(np.float32),
        mirror_vertex_map=mirror.astype(np.int64),
        vertex_colors=colours,
        texture_png=texture,
        extras={
            "part": topo.part.astype(np.int8),  # names in metadata["parts"]
            "eye_margin_upper_L": topo.upper_margin["eye_L"].astype(np.int64),
            "eye_margin_lower_L": topo.lower_margin["eye_L"].astype(np.int64),
            "eye_margin_upper_R": topo.upper_margin["eye_R"].astype(np.int64),
            "eye_margin_lower_R": topo.lower_margin["eye_R"].astype(np.int64),
            "lip_margin_upper": topo.upper_margin["mouth"].astype(np.int64),
            "lip_margin_lower": topo.lower_margin["mouth"].astype(np.int64),
        },
        metadata={
            "name": "HACK default (procedural)",
            "version": VERSION,
            "license": "MIT",
            "source": "generated by hack_model.default_model",
            "seed": int(seed),
            "parts": {str(v): k for k, v in PART_NAMES.items()},  # extras["part"] values
        },
    )

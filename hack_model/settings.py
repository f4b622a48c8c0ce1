"""`--set NAME=VALUE` on the command line: one parameter by name, applied to every frame.

Names (VALUE is a number):
    jawOpen, mouthSmile_L, ...     an expression weight (model.expression_names)
    AU12, AU27, ...                an action-unit intensity (model.action_unit_names)
    shape.K                        shape component K (0-based), in standard deviations
    neck.BONE.AXIS                 degrees about one bone's axis; BONE in model.bone_names,
                                   AXIS flexion|axial|lateral or x|y|z of the bone's frame
    turn, nod, tilt                degrees of a whole-head move spread over the bones in
                                   proportion to their range of motion (turn + faces the
                                   subject's left, nod + looks down, tilt + towards the right)
    larynx_height, larynx_scale    the larynx parameters
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .anatomy import MOTION_AXIS
from .keywords import suggestion

AXES = {
    "flexion": MOTION_AXIS["flexion_extension"],
    "axial": MOTION_AXIS["axial_rotation"],
    "lateral": MOTION_AXIS["lateral_bending"],
    "x": 0,
    "y": 1,
    "z": 2,
}
HEAD_MOVES = {"turn": "axial_rotation", "nod": "flexion_extension", "tilt": "lateral_bending"}


def parse_setting(text: str) -> tuple[str, float]:
    """'NAME=VALUE' -> (NAME, float VALUE)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"--set {text!r}: expected NAME=VALUE, e.g. --set jawOpen=0.8")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--set {text!r}: the value {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"--set {text!r}: the value must be finite")
    return name, number


def known_names(model) -> list[str]:
    """Every NAME that --set accepts for this model (for did-you-mean)."""
    names = list(model.expression_names) + list(model.action_unit_names)
    names += [f"shape.{k}" for k in range(model.num_shape)]
    names += [f"neck.{bone}.{axis}" for bone in model.bone_names for axis in AXES]
    names += list(HEAD_MOVES) + ["larynx_height", "larynx_scale"]
    return names


def apply_settings(args: dict, settings: Sequence[str], model) -> dict:
    """forward() arguments (numpy, batch axis first) with each 'NAME=VALUE' applied to all frames.

    `args` is what `params.forward_arguments` returns; it is not modified.
    """
    out = {k: (dict(v) if isinstance(v, dict) else np.array(v, np.float32)) for k, v in args.items()}
    for text in settings:
        name, value = parse_setting(text)
        _apply_one(out, name, value, model, text)
    return out


def _column(out: dict, key: str, width: int) -> np.ndarray:
    if key not in out:
        out[key] = np.zeros((1, width), np.float32)
    return out[key]


def _apply_one(out: dict, name: str, value: float, model, text: str) -> None:
    if name in model.expression_names:
        _column(out, "expression", model.num_expression)[:, model.expression_names.index(name)] = value
    elif name in model.action_unit_names:
        units = out.get("action_units")
        if units is None or isinstance(units, dict):
            out["action_units"] = {**(units or {}), name: np.float32(value)}
        else:
            units[:, model.action_unit_names.index(name)] = value
    elif name in ("larynx_height", "larynx_scale"):
        if not model.data.has_larynx:
            raise ValueError(f"--set {text}: {model.data.name} has no larynx")
        out[name] = np.full((max(len(out.get(name, [0])), 1), 1), value, np.float32)
    elif name.startswith("shape.") and name[6:].isdigit():
        k = int(name[6:])
        if k >= model.num_shape:
            raise ValueError(f"--set {text}: this model has shape.0 ... shape.{model.num_shape - 1}")
        shape = out.get("shape")
        if shape is None or shape.shape[1] <= k:
            grown = np.zeros((1 if shape is None else len(shape), k + 1), np.float32)
            if shape is not None:
                grown[:, : shape.shape[1]] = shape
            out["shape"] = shape = grown
        shape[:, k] = value
    elif name.startswith("neck.") and name.count(".") == 2 and _bone_axis(name, model) is not None:
        bone, axis = _bone_axis(name, model)
        _neck(out, model)[:, bone, axis] = math.radians(value)
    elif name in HEAD_MOVES:
        rom = model.data.range_of_motion
        if rom is None:
            raise ValueError(f"--set {text}: {model.data.name} has no range-of-motion table")
        axis = MOTION_AXIS[HEAD_MOVES[name]]
        column = {0: 0, 1: 2, 2: 1}[axis]  # range-of-motion columns: flexion, lateral, axial
        share = np.asarray(rom, np.float64)[:, column]
        share = share / share.sum() if share.sum() > 0 else np.full(len(share), 1.0 / len(share))
        _neck(out, model)[:, :, axis] += (math.radians(value) * share).astype(np.float32)
    else:
        hint = suggestion(name, known_names(model))
        raise ValueError(
            f"--set {text}: unknown name {name!r}{hint}; use an expression, an action unit, shape.K, "
            "neck.BONE.AXIS, turn/nod/tilt, larynx_height or larynx_scale"
        )


def _bone_axis(name: str, model) -> tuple[int, int] | None:
    _, bone, axis = name.split(".")
    if bone not in model.bone_names or axis not in AXES:
        return None
    return model.bone_names.index(bone), AXES[axis]


def _neck(out: dict, model) -> np.ndarray:
    if "neck_pose" not in out:
        out["neck_pose"] = np.zeros((1, model.num_bones, 3), np.float32)
    return out["neck_pose"]

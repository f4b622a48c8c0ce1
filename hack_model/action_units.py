"""FACS action units and the ARKit/ICT expression blendshapes that realise them.

The table follows ICT-FaceKit's documentation: each action unit at intensity 1
sets its blendshapes to weight 1. Regions group the units for user interfaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (FACS name, description, region, blendshapes driven at weight 1)
ACTION_UNITS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("AU1", "inner brow raiser", "brows", ("browInnerUp_L", "browInnerUp_R")),
    ("AU2", "outer brow raiser", "brows", ("browOuterUp_L", "browOuterUp_R")),
    ("AU4", "brow lowerer", "brows", ("browDown_L", "browDown_R")),
    ("AU5", "upper lid raiser", "eyes", ("eyeWide_L", "eyeWide_R")),
    ("AU6", "cheek raiser", "cheeks", ("cheekSquint_L", "cheekSquint_R")),
    ("AU7", "lid tightener", "eyes", ("eyeSquint_L", "eyeSquint_R")),
    ("AU9", "nose wrinkler", "cheeks", ("noseSneer_L", "noseSneer_R")),
    ("AU10", "upper lip raiser", "mouth", ("mouthShrugUpper",)),
    ("AU11", "nasolabial deepener", "mouth", ("mouthUpperUp_L", "mouthUpperUp_R")),
    ("AU12", "lip corner puller", "mouth", ("mouthSmile_L", "mouthSmile_R")),
    ("AU14", "dimpler", "mouth", ("mouthDimple_L", "mouthDimple_R")),
    ("AU15", "lip corner depressor", "mouth", ("mouthFrown_L", "mouthFrown_R")),
    ("AU16", "lower lip depressor", "mouth", ("mouthLowerDown_L", "mouthLowerDown_R")),
    ("AU17", "chin raiser", "mouth", ("mouthShrugLower",)),
    ("AU18", "lip pucker", "mouth", ("mouthPucker",)),
    ("AU20", "lip stretcher", "mouth", ("mouthStretch_L", "mouthStretch_R")),
    ("AU22", "lip funneler", "mouth", ("mouthFunnel",)),
    ("AU24", "lip pressor", "mouth", ("mouthPress_L", "mouthPress_R")),
    ("AU27", "mouth stretch", "jaw", ("jawOpen",)),
    ("AU28", "lip suck", "mouth", ("mouthRollLower", "mouthRollUpper")),
    ("AU29", "jaw thrust", "jaw", ("jawForward",)),
    ("AU30L", "jaw sideways left", "jaw", ("jawLeft",)),
    ("AU30R", "jaw sideways right", "jaw", ("jawRight",)),
    ("AU33", "cheek blow", "cheeks", ("cheekPuff_L", "cheekPuff_R")),
    ("AU45", "blink", "eyes", ("eyeBlink_L", "eyeBlink_R")),
    ("AU61", "eyes turn left", "gaze", ("eyeLookOut_L", "eyeLookIn_R")),
    ("AU62", "eyes turn right", "gaze", ("eyeLookOut_R", "eyeLookIn_L")),
    ("AU63", "eyes up", "gaze", ("eyeLookUp_L", "eyeLookUp_R")),
    ("AU64", "eyes down", "gaze", ("eyeLookDown_L", "eyeLookDown_R")),
)

ACTION_UNIT_REGIONS: dict[str, str] = {name: region for name, _, region, _ in ACTION_UNITS}


def default_action_unit_table(
    expression_names: Sequence[str],
) -> tuple[list[str], list[str], np.ndarray]:
    """The action units that a model with these expression names can express.

    Returns (names, descriptions, matrix [A, E]); a unit is kept when all of
    its blendshapes exist, so models without ARKit names get an empty table.
    """
    column = {name: i for i, name in enumerate(expression_names)}
    names, descriptions, rows = [], [], []
    for au, description, _, shapes in ACTION_UNITS:
        if not all(s in column for s in shapes):
            continue
        row = np.zeros(len(expression_names), np.float32)
        row[[column[s] for s in shapes]] = 1.0
        names.append(au)
        descriptions.append(description)
        rows.append(row)
    matrix = np.stack(rows) if rows else np.zeros((0, len(expression_names)), np.float32)
    return names, descriptions, matrix


def action_unit_label(name: str, description: str) -> str:
    """'AU12 Lip Corner Puller' style label for sliders and pictures."""
    return f"{name} {description.title()}"

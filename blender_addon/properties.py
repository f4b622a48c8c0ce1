"""Slider state, stored on the head's armature object (`object.hack`) so that every
value can be keyframed and read by drivers."""

from __future__ import annotations

import math

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from . import rig, rig_math


def _tag(self, context) -> None:
    """Python-set values do not always reach the drivers (seen with bpy 5.0 as a module):
    tag the head so that the depsgraph re-evaluates the drivers that read it."""
    owner = self.id_data
    if owner is not None:
        owner.update_tag()


def _shape_changed(self, context) -> None:
    if rig.shape_updates_suspended():
        return
    arm = self.id_data
    if isinstance(arm, bpy.types.Object) and arm.hack.is_head:
        try:
            rig.apply_shape(arm)
        except (OSError, ValueError) as err:  # the model file went away: keep the mesh as it is
            print(f"HACK: cannot apply shape: {err}")


class HackWeight(bpy.types.PropertyGroup):
    """One action unit or raw expression weight (name = FACS name or blendshape name)."""

    label: StringProperty(name="Label")
    region: StringProperty(name="Region")
    value: FloatProperty(
        name="Weight",
        default=0.0,
        min=-rig.KEY_RANGE,
        max=rig.KEY_RANGE,
        soft_min=0.0,
        soft_max=1.0,
        update=_tag,
    )


class HackShapeValue(bpy.types.PropertyGroup):
    """One identity coefficient (unit variance); changing it rebuilds the basis."""

    value: FloatProperty(name="Shape", default=0.0, soft_min=-3.0, soft_max=3.0, update=_shape_changed)


_HEAD_LIMIT = math.radians(120.0)


class HackHeadSettings(bpy.types.PropertyGroup):
    is_head: BoolProperty(name="HACK head", default=False)
    model_path: StringProperty(name="Model file", description="Empty: the bundled model", subtype="FILE_PATH")
    model_name: StringProperty(name="Model")
    mesh: PointerProperty(name="Mesh", type=bpy.types.Object)
    shape: CollectionProperty(type=HackShapeValue)
    action_units: CollectionProperty(type=HackWeight)
    expressions: CollectionProperty(type=HackWeight)
    shape_sliders: IntProperty(name="Shape sliders", default=10, min=0, max=300)
    head_turn: FloatProperty(
        update=_tag,
        name="Turn",
        description="Turn the head, + to the subject's left, spread over the vertebrae by their ranges",
        subtype="ANGLE",
        min=-_HEAD_LIMIT,
        max=_HEAD_LIMIT,
    )
    head_nod: FloatProperty(
        update=_tag,
        name="Nod",
        description="Head down (+) or up (-), spread over the vertebrae by their ranges",
        subtype="ANGLE",
        min=-_HEAD_LIMIT,
        max=_HEAD_LIMIT,
    )
    head_tilt: FloatProperty(
        update=_tag,
        name="Tilt",
        description="Tilt the head towards the subject's right (+) or left (-)",
        subtype="ANGLE",
        min=-_HEAD_LIMIT,
        max=_HEAD_LIMIT,
    )
    head_forward: FloatProperty(
        update=_tag,
        name="Forward",
        description="Chin forward (+) or back (-): lower neck flexes, upper neck extends",
        min=-1.0,
        max=1.0,
    )
    larynx_height: FloatProperty(
        update=_tag,
        name="Larynx height",
        description="Shift of the larynx map (fraction of its height), + is up",
        min=-rig_math.LARYNX_HEIGHT_LIMIT,
        max=rig_math.LARYNX_HEIGHT_LIMIT,
        step=0.1,
        precision=4,
    )
    larynx_scale: FloatProperty(
        update=_tag,
        name="Larynx scale",
        description="Prominence of the larynx",
        default=1.0,
        min=rig_math.LARYNX_SCALE_RANGE[0],
        max=rig_math.LARYNX_SCALE_RANGE[1],
    )
    larynx_exact: BoolProperty(
        name="Exact larynx",
        description=(
            "Sample the larynx map exactly (Geometry Nodes) in the viewport and renders; "
            "off: the larynx shape keys alone, as exported (within about 0.01 cm between key heights)"
        ),
        default=True,
        update=_tag,
    )
    use_limits: BoolProperty(
        update=_tag,
        name="Range-of-motion limits",
        description="Clamp each bone to the model's range of motion (Limit Rotation constraints)",
        default=True,
    )


CLASSES = (HackWeight, HackShapeValue, HackHeadSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.hack = PointerProperty(type=HackHeadSettings)


def unregister() -> None:
    del bpy.types.Object.hack
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)

"""The "HACK" tab of the 3D viewport's sidebar."""

from __future__ import annotations

import bpy

from . import rig


class _HackPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HACK"


def _head(context):
    return rig.find_head(context.object)


class HACK_PT_model(_HackPanel, bpy.types.Panel):
    bl_label = "HACK Head"
    bl_idname = "HACK_PT_model"

    def draw(self, context):
        layout = self.layout
        row = layout.row(align=True)
        op = row.operator("hack.add_head", text="Add Head", icon="ADD")
        op.use_bundled = True
        op = row.operator("hack.add_head", text="From File…", icon="FILE_FOLDER")
        op.use_bundled = False
        arm = _head(context)
        if arm is None:
            layout.label(text="Select a HACK head to edit it", icon="INFO")
            return
        s = arm.hack
        layout.label(text=f"{arm.name}: {s.model_name}", icon="ARMATURE_DATA")
        if not len(s.shape):
            layout.label(text="This model has no shape components")
            return
        layout.prop(s, "shape_sliders")
        col = layout.column(align=True)
        for i, item in enumerate(s.shape[: s.shape_sliders]):
            col.prop(item, "value", text=f"Shape {i + 1}", slider=True)
        row = layout.row(align=True)
        row.operator("hack.shape_randomize", icon="FILE_REFRESH")
        row.operator("hack.shape_reset", text="Reset", icon="LOOP_BACK")


class _HeadSubPanel(_HackPanel):
    bl_parent_id = "HACK_PT_model"

    @classmethod
    def poll(cls, context):
        return _head(context) is not None


def _reset_button(layout, group: str) -> None:
    layout.operator("hack.reset", text="Reset", icon="LOOP_BACK").group = group


class HACK_PT_action_units(_HeadSubPanel, bpy.types.Panel):
    bl_label = "Action Units"

    def draw(self, context):
        s = _head(context).hack
        layout = self.layout
        for region in rig.REGION_ORDER + ("other",):
            items = [item for item in s.action_units if item.region == region]
            if not items:
                continue
            box = layout.box()
            box.label(text=rig.REGION_LABELS[region])
            col = box.column(align=True)
            for item in items:
                col.prop(item, "value", text=item.label, slider=True)
        _reset_button(layout, "ACTION_UNITS")


class HACK_PT_expressions(_HeadSubPanel, bpy.types.Panel):
    bl_label = "Expressions"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = _head(context).hack
        col = self.layout.column(align=True)
        for item in s.expressions:
            col.prop(item, "value", text=item.label, slider=True)
        _reset_button(self.layout, "EXPRESSIONS")


class HACK_PT_neck(_HeadSubPanel, bpy.types.Panel):
    bl_label = "Neck"

    def draw(self, context):
        arm = _head(context)
        s = arm.hack
        layout = self.layout
        col = layout.column(align=True)
        col.prop(s, "head_turn", text="Turn (+ left)")
        col.prop(s, "head_nod", text="Nod (+ down)")
        col.prop(s, "head_tilt", text="Tilt (+ right)")
        col.prop(s, "head_forward", text="Forward (+)", slider=True)
        layout.prop(s, "use_limits")
        box = layout.box()
        box.label(text="Bones (quaternion rotation in the rest frame)")
        for pb in arm.pose.bones:
            if pb.name == rig.CONTROL_BONE:
                continue
            row = box.row(align=True)
            row.label(text=pb.name)
            row.prop(pb, "rotation_quaternion", text="")
        _reset_button(layout, "NECK")


class HACK_PT_larynx(_HeadSubPanel, bpy.types.Panel):
    bl_label = "Larynx"

    def draw(self, context):
        s = _head(context).hack
        col = self.layout.column(align=True)
        col.prop(s, "larynx_height", slider=True)
        col.prop(s, "larynx_scale", slider=True)
        self.layout.prop(s, "larynx_exact")
        _reset_button(self.layout, "LARYNX")


class HACK_PT_files(_HeadSubPanel, bpy.types.Panel):
    bl_label = "Animation, Fit and Export"

    @classmethod
    def poll(cls, context):
        return True

    def draw(self, context):
        layout = self.layout
        col = layout.column(align=True)
        col.operator("hack.import_animation", text="Import Sequence…", icon="ACTION")
        col.operator("hack.import_fit", text="Import Fit…", icon="MOD_SHRINKWRAP")
        row = layout.row(align=True)
        row.operator("hack.export", text="Export glTF…", icon="EXPORT").export_format = "GLB"
        row.operator("hack.export", text="Export FBX…", icon="EXPORT").export_format = "FBX"


CLASSES = (
    HACK_PT_model,
    HACK_PT_action_units,
    HACK_PT_expressions,
    HACK_PT_neck,
    HACK_PT_larynx,
    HACK_PT_files,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)

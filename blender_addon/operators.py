"""Operators: add a head, shape, resets, animation and fit import, export.

Every operator validates its input file completely before it touches the scene,
so a bad file reports an error and leaves the scene as it was.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty
from bpy_extras import anim_utils
from bpy_extras.io_utils import ExportHelper, ImportHelper
from mathutils import Matrix

from . import rig, rig_math
from ._vendor.hack_model.params import EXTRA_KEYS, load_params


def _active_head(context) -> bpy.types.Object | None:
    return rig.find_head(context.object)


class _HeadOperator:
    @classmethod
    def poll(cls, context) -> bool:
        return _active_head(context) is not None


class HACK_OT_add_head(bpy.types.Operator, ImportHelper):
    """Add a HACK head (mesh and armature) from the bundled model or a model .npz"""

    bl_idname = "hack.add_head"
    bl_label = "Add HACK Head"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    use_bundled: BoolProperty(
        name="Bundled model", default=True, description="Use the model shipped with the add-on"
    )

    def invoke(self, context, event):
        if self.use_bundled:
            return self.execute(context)
        return ImportHelper.invoke(self, context, event)

    def execute(self, context):
        path = "" if self.use_bundled else self.filepath
        try:
            data = rig.load_model(path)
            arm = rig.build_head(context, data, model_path=path, name="HACK")
        except (OSError, ValueError) as err:
            self.report({"ERROR"}, f"HACK: {err}")
            return {"CANCELLED"}
        if rig_math.expressions_move_joints(data.joint_regressor, data.expression_directions):
            self.report({"WARNING"}, "this model moves joints with expressions; the rig follows shape only")
        self.report({"INFO"}, f"added {arm.name} ({data.name}, {data.num_vertices} vertices)")
        return {"FINISHED"}


class HACK_OT_shape_randomize(_HeadOperator, bpy.types.Operator):
    """Random identity: the first shape sliders drawn from a standard normal"""

    bl_idname = "hack.shape_randomize"
    bl_label = "Randomise Shape"
    bl_options = {"REGISTER", "UNDO"}

    seed: IntProperty(name="Seed", default=0, min=0)
    spread: FloatProperty(name="Spread", default=1.0, min=0.0, max=3.0)

    def execute(self, context):
        arm = _active_head(context)
        count = min(arm.hack.shape_sliders, len(arm.hack.shape))
        rng = np.random.default_rng(self.seed if self.seed else None)
        values = rng.normal(0.0, self.spread, count)
        return _set_shape(self, arm, values)


class HACK_OT_shape_reset(_HeadOperator, bpy.types.Operator):
    """Mean identity: every shape coefficient to zero"""

    bl_idname = "hack.shape_reset"
    bl_label = "Reset Shape"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        return _set_shape(self, _active_head(context), np.zeros(0))


def _set_shape(op, arm, values: np.ndarray) -> set:
    with rig.suspend_shape_updates():
        for i, item in enumerate(arm.hack.shape):
            item.value = float(values[i]) if i < len(values) else 0.0
    try:
        rig.apply_shape(arm)
    except (OSError, ValueError) as err:
        op.report({"ERROR"}, f"HACK: {err}")
        return {"CANCELLED"}
    return {"FINISHED"}


class HACK_OT_reset(_HeadOperator, bpy.types.Operator):
    """Set a group of sliders back to neutral"""

    bl_idname = "hack.reset"
    bl_label = "Reset"
    bl_options = {"REGISTER", "UNDO"}

    group: EnumProperty(
        items=[
            ("ACTION_UNITS", "Action units", ""),
            ("EXPRESSIONS", "Expressions", ""),
            ("NECK", "Neck", ""),
            ("LARYNX", "Larynx", ""),
        ]
    )

    def execute(self, context):
        s = _active_head(context).hack
        if self.group == "ACTION_UNITS":
            for item in s.action_units:
                item.value = 0.0
        elif self.group == "EXPRESSIONS":
            for item in s.expressions:
                item.value = 0.0
        elif self.group == "NECK":
            rig.reset_neck(_active_head(context))
        else:
            s.larynx_height, s.larynx_scale = 0.0, 1.0
        return {"FINISHED"}


# ----------------------------------------------------------------- animation
def _channelbag(arm: bpy.types.Object):
    """The F-curve container of the armature's action: a slot's channelbag on Blender 4.4+
    (slotted actions; 5.0 has no Action.fcurves), the action itself before."""
    anim = arm.animation_data or arm.animation_data_create()
    action = anim.action
    if action is None:
        action = bpy.data.actions.new(f"{arm.name}_action")
        anim.action = action
    if not hasattr(action, "slots"):  # Blender 4.2 / 4.3
        return action
    if anim.action_slot is None:
        slot = action.slots.new(id_type="OBJECT", name=arm.name)
        anim.action_slot = slot
    return anim_utils.action_ensure_channelbag_for_slot(action, anim.action_slot)


def _write_curve(bag, data_path: str, index: int, frames: np.ndarray, values: np.ndarray, group: str) -> None:
    """Linear keys at fractional frames, replacing any curve on the same channel."""
    old = bag.fcurves.find(data_path, index=index)
    if old is not None:
        bag.fcurves.remove(old)
    try:
        curve = bag.fcurves.new(data_path, index=index, group_name=group)
    except TypeError:  # legacy Action.fcurves.new names the group `action_group`
        curve = bag.fcurves.new(data_path, index=index, action_group=group)
    curve.keyframe_points.add(len(frames))
    co = np.stack([frames, values], 1).astype(np.float32).reshape(-1)
    curve.keyframe_points.foreach_set("co", co)
    curve.keyframe_points.foreach_set("interpolation", np.full(len(frames), 1, np.int32))  # LINEAR
    curve.update()


def _check_params(params: dict, arm: bpy.types.Object, data, source: str) -> None:
    s = arm.hack
    checks = {
        "expression": len(s.expressions),
        "shape": len(s.shape),
        "action_units": None,
    }
    for name, value in params.items():
        if name in EXTRA_KEYS:
            continue
        if name == "neck_pose" and value.shape[1:] != (data.num_bones, 3):
            raise ValueError(f"{source}: neck_pose must be [N, {data.num_bones}, 3], got {list(value.shape)}")
        if name == "expression" and value.shape[1] != checks["expression"]:
            raise ValueError(
                f"{source}: expression has {value.shape[1]} weights; the head has {checks['expression']}"
            )
        if name == "shape" and value.shape[1] > checks["shape"]:
            raise ValueError(
                f"{source}: shape has {value.shape[1]} components; the head has {checks['shape']}"
            )
        if name in ("larynx_height", "larynx_scale") and not data.has_larynx:
            raise ValueError(f"{source}: {name} given, but this head's model has no larynx")
    rotation = params.get("rotation")
    if rotation is not None and rotation.ndim == 3:
        count = len(rotation)
        translation = params.get("translation", np.zeros((count, 3)))
        scale = np.asarray(params.get("scale", np.ones(count))).reshape(-1)
        if rotation.shape[1:] != (3, 3) or translation.shape != (count, 3) or scale.shape != (count,):
            raise ValueError(
                f"{source}: a per-frame placement needs scale [T], rotation [T, 3, 3] and translation "
                f"[T, 3]; got {list(scale.shape)}, {list(rotation.shape)}, {list(translation.shape)}"
            )
    if "action_units" in params:
        names = [str(n) for n in params.get("action_unit_names", np.array([])).tolist()]
        known = [item.name for item in s.action_units]
        if not names:
            names = known
        if params["action_units"].shape[1] != len(names):
            raise ValueError(
                f"{source}: action_units has {params['action_units'].shape[1]} columns for {len(names)} names"
            )
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"{source}: unknown action unit(s) {', '.join(unknown)}")


def _read_params(path: str, arm, data) -> dict:
    params = load_params(path)
    _check_params(params, arm, data, Path(path).name)
    return params


def keyframe_params(arm: bpy.types.Object, params: dict, frames_for, unit_scale: float | None = None) -> int:
    """Key every per-frame parameter; returns the longest sequence's length.

    frames_for(n) gives the scene frames of n samples. Sequences of different
    lengths (as in the HACK release's recordings) are each keyed over their own frames.
    A fitted sequence's per-frame similarity (scale [T], rotation [T, 3, 3], translation
    [T, 3]) keys the head object onto its scans when unit_scale (Blender units per scan
    unit) is given.
    """
    s = arm.hack
    bag = _channelbag(arm)
    longest = 0
    data = rig.load_model(s.model_path)
    if "expression" in params:
        values = params["expression"]
        frames = frames_for(len(values))
        for e in range(values.shape[1]):
            _write_curve(bag, f"hack.expressions[{e}].value", 0, frames, values[:, e], "Expressions")
        longest = max(longest, len(values))
    if "action_units" in params:
        names = [str(n) for n in params.get("action_unit_names", np.array([])).tolist()] or [
            item.name for item in s.action_units
        ]
        index = {item.name: i for i, item in enumerate(s.action_units)}
        values = params["action_units"]
        frames = frames_for(len(values))
        for column, name in enumerate(names):
            _write_curve(
                bag, f"hack.action_units[{index[name]}].value", 0, frames, values[:, column], "Action units"
            )
        longest = max(longest, len(values))
    if "neck_pose" in params:
        quats = rig_math.continuous_quaternions(
            rig_math.axis_angle_to_quaternion(params["neck_pose"].astype(np.float64))
        )  # [N, J, 4]
        frames = frames_for(len(quats))
        for b, bone in enumerate(data.bone_names):
            path = f'pose.bones["{bone}"].rotation_quaternion'
            for c in range(4):
                _write_curve(bag, path, c, frames, quats[:, b, c], bone)
        longest = max(longest, len(quats))
    for name in ("larynx_height", "larynx_scale"):
        if name in params:
            values = params[name][:, 0]
            if name == "larynx_height":
                values = np.clip(values, -rig_math.LARYNX_HEIGHT_LIMIT, rig_math.LARYNX_HEIGHT_LIMIT)
            _write_curve(bag, f"hack.{name}", 0, frames_for(len(values)), values, "Larynx")
            longest = max(longest, len(values))
    rotation = params.get("rotation")
    if unit_scale is not None and rotation is not None and rotation.ndim == 3:
        count = len(rotation)
        location, quaternion, size = rig_math.placement_keys(
            params.get("scale", np.ones(count)),
            rotation,
            params.get("translation", np.zeros((count, 3))),
            unit_scale,
        )
        frames = frames_for(count)
        arm.rotation_mode = "QUATERNION"
        for c in range(3):
            _write_curve(bag, "location", c, frames, location[:, c], "Object transforms")
            _write_curve(bag, "scale", c, frames, size, "Object transforms")
        for c in range(4):
            _write_curve(bag, "rotation_quaternion", c, frames, quaternion[:, c], "Object transforms")
        longest = max(longest, count)
    return longest


def apply_params(arm: bpy.types.Object, params: dict, frame: int = 0) -> None:
    """Set the sliders (not keys) from one frame of parameters."""
    s = arm.hack
    data = rig.load_model(s.model_path)
    if "shape" in params:
        values = params["shape"][min(frame, len(params["shape"]) - 1)]
        with rig.suspend_shape_updates():
            for i, item in enumerate(s.shape):
                item.value = float(values[i]) if i < len(values) else 0.0
        rig.apply_shape(arm)
    if "expression" in params:
        values = params["expression"][min(frame, len(params["expression"]) - 1)]
        for e, item in enumerate(s.expressions):
            item.value = float(values[e])
    for item in s.action_units:
        item.value = 0.0
    if "action_units" in params:
        names = [str(n) for n in params.get("action_unit_names", np.array([])).tolist()] or [
            item.name for item in s.action_units
        ]
        values = params["action_units"][min(frame, len(params["action_units"]) - 1)]
        for column, name in enumerate(names):
            s.action_units[name].value = float(values[column])
    rig.reset_neck(arm)
    if "neck_pose" in params:
        rig.set_neck_pose(arm, params["neck_pose"][min(frame, len(params["neck_pose"]) - 1)], data.bone_names)
    if "larynx_height" in params:
        s.larynx_height = float(np.clip(params["larynx_height"][frame, 0], -0.05, 0.05))
    if "larynx_scale" in params:
        s.larynx_scale = float(params["larynx_scale"][frame, 0])


class HACK_OT_import_animation(_HeadOperator, bpy.types.Operator, ImportHelper):
    """Key a parameter sequence (.npz, API names or official symbols) on the active head"""

    bl_idname = "hack.import_animation"
    bl_label = "Import Parameter Sequence"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    fps: FloatProperty(
        name="Sequence frame rate", default=30.0, min=0.1, description="Frames per second of the file"
    )
    start_frame: IntProperty(name="Start frame", default=1)
    set_scene_range: BoolProperty(name="Set scene frame range", default=True)
    place_on_scans: BoolProperty(
        name="Place on scans",
        default=True,
        description="A hack-fit sequence: key the head onto each frame's scan (its fitted similarity)",
    )
    unit_scale: FloatProperty(
        name="Scan unit scale",
        default=0.01,
        min=1e-6,
        description="Blender units per scan unit (0.01: scans in cm imported as metres, Y up)",
    )

    def execute(self, context):
        arm = _active_head(context)
        try:
            data = rig.load_model(arm.hack.model_path)
            params = _read_params(self.filepath, arm, data)
        except (OSError, ValueError) as err:
            self.report({"ERROR"}, f"HACK: {err}")
            return {"CANCELLED"}
        scene = context.scene
        scene_fps = scene.render.fps / scene.render.fps_base
        source_fps = float(params["fps"]) if "fps" in params else self.fps
        if "shape" in params:
            apply_params(arm, {"shape": params["shape"]})
        if "neck_pose" in params and rig.exceeds_limits(arm, params["neck_pose"]):
            arm.hack.use_limits = False
            self.report({"WARNING"}, "the sequence passes the range of motion: limits switched off")
        count = keyframe_params(
            arm,
            params,
            lambda n: rig_math.frame_numbers(n, source_fps, scene_fps, self.start_frame),
            self.unit_scale if self.place_on_scans else None,
        )
        if self.set_scene_range and count:
            scene.frame_start = self.start_frame
            scene.frame_end = int(
                np.ceil(rig_math.frame_numbers(count, source_fps, scene_fps, self.start_frame)[-1])
            )
        self.report({"INFO"}, f"keyed {count} frames from {Path(self.filepath).name}")
        return {"FINISHED"}


class HACK_OT_import_fit(bpy.types.Operator, ImportHelper):
    """Put a hack-fit result (NAME_params.npz) on the selected head or a new one, placed on its scan"""

    bl_idname = "hack.import_fit"
    bl_label = "Import Fit"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    new_head: BoolProperty(
        name="New head", default=False, description="Add a new head instead of using the selected one"
    )
    model_path: StringProperty(name="Model for a new head", default="", subtype="FILE_PATH")
    unit_scale: FloatProperty(
        name="Scan unit scale",
        default=0.01,
        min=1e-6,
        description="Blender units per scan unit (0.01: a scan in cm imported as metres, Y up)",
    )

    def execute(self, context):
        arm = None if self.new_head else _active_head(context)
        try:
            data = rig.load_model(arm.hack.model_path if arm is not None else self.model_path)
            params = load_params(self.filepath)
            if arm is not None:
                _check_params(params, arm, data, Path(self.filepath).name)
            placement = rig_math.fit_object_matrix(
                params.get("scale", np.ones(1)),
                params.get("rotation", np.eye(3)),
                params.get("translation", np.zeros(3)),
                self.unit_scale,
            )
            if arm is None:
                arm = rig.build_head(context, data, model_path=self.model_path, name=Path(self.filepath).stem)
                try:
                    _check_params(params, arm, data, Path(self.filepath).name)
                except ValueError:
                    _remove_head(arm)
                    raise
        except (OSError, ValueError) as err:
            self.report({"ERROR"}, f"HACK: {err}")
            return {"CANCELLED"}
        if arm.animation_data is not None and arm.animation_data.action is not None:
            # Keys would overwrite the fitted values on the next frame change; the action stays in the file.
            self.report({"INFO"}, f"unassigned the action {arm.animation_data.action.name} from {arm.name}")
            arm.animation_data.action = None
        apply_params(arm, params)
        if "neck_pose" in params and rig.exceeds_limits(arm, params["neck_pose"]):
            arm.hack.use_limits = False
            self.report({"WARNING"}, "the fitted pose passes the range of motion: limits switched off")
        arm.matrix_world = Matrix(placement.tolist())
        self.report({"INFO"}, f"fit {Path(self.filepath).name} applied to {arm.name}")
        return {"FINISHED"}


def _remove_head(arm: bpy.types.Object) -> None:
    mesh_obj = rig.head_mesh(arm)
    for obj in (mesh_obj, arm):
        if obj is None:
            continue
        data = obj.data
        bpy.data.objects.remove(obj)
        if data is not None and data.users == 0:
            (bpy.data.meshes if isinstance(data, bpy.types.Mesh) else bpy.data.armatures).remove(data)


class HACK_OT_export(_HeadOperator, bpy.types.Operator, ExportHelper):
    """Export the active head (mesh with shape keys and the armature) as FBX or glTF"""

    bl_idname = "hack.export"
    bl_label = "Export HACK Head"

    filename_ext = ".glb"
    filter_glob: StringProperty(default="*.glb;*.gltf;*.fbx", options={"HIDDEN"})
    export_format: EnumProperty(
        name="Format",
        items=[("GLB", "glTF binary (.glb)", ""), ("FBX", "FBX (.fbx)", "")],
        default="GLB",
    )
    animation: BoolProperty(name="Animation", default=False, description="Bake the keyed animation")

    def check(self, context):
        self.filename_ext = ".fbx" if self.export_format == "FBX" else ".glb"
        return ExportHelper.check(self, context)

    def execute(self, context):
        arm = _active_head(context)
        mesh_obj = rig.head_mesh(arm)
        path = Path(self.filepath)
        suffix = ".fbx" if self.export_format == "FBX" else ".glb"
        if path.suffix.lower() != suffix:
            path = path.with_suffix(suffix)
        if not path.parent.is_dir():
            self.report({"ERROR"}, f"HACK: {path.parent}: output folder does not exist")
            return {"CANCELLED"}
        selection = [o for o in context.view_layer.objects if o.select_get()]
        active = context.view_layer.objects.active
        for obj in selection:
            obj.select_set(False)
        arm.select_set(True)
        mesh_obj.select_set(True)
        context.view_layer.objects.active = arm
        # Exporters skip the Geometry Nodes larynx: let the larynx keys carry it meanwhile.
        exact = arm.hack.larynx_exact
        arm.hack.larynx_exact = False
        context.view_layer.update()
        try:
            if self.export_format == "FBX":
                bpy.ops.export_scene.fbx(
                    filepath=str(path),
                    use_selection=True,
                    object_types={"ARMATURE", "MESH"},
                    add_leaf_bones=False,
                    use_armature_deform_only=True,
                    use_mesh_modifiers=False,
                    bake_anim=self.animation,
                )
            else:
                bpy.ops.export_scene.gltf(
                    filepath=str(path),
                    export_format="GLB",
                    use_selection=True,
                    export_morph=True,
                    export_skins=True,
                    export_def_bones=True,
                    export_apply=False,
                    export_animations=self.animation,
                )
        except RuntimeError as err:
            self.report({"ERROR"}, f"HACK: export failed: {err}")
            return {"CANCELLED"}
        finally:
            arm.hack.larynx_exact = exact
            arm.select_set(False)
            mesh_obj.select_set(False)
            for obj in selection:
                obj.select_set(True)
            context.view_layer.objects.active = active
        self.report({"INFO"}, f"wrote {path}")
        return {"FINISHED"}


CLASSES = (
    HACK_OT_add_head,
    HACK_OT_shape_randomize,
    HACK_OT_shape_reset,
    HACK_OT_reset,
    HACK_OT_import_animation,
    HACK_OT_import_fit,
    HACK_OT_export,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)

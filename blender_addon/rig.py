"""Build and update a HACK head in Blender: armature, mesh, shape keys, drivers.

Layout (all in model coordinates, cm, +y up, so the numbers compare directly with
`HACK.forward`): the armature object carries the placement (rotation +90 degrees
about X and scale 0.01, so 1 cm = 1 cm in Blender's metres and +y up becomes +z up)
and the slider properties (`object.hack`); the mesh is its child with an identity
local transform and an Armature modifier. Every slider reaches the mesh through
drivers or constraints, so playback, rendering and export see the viewport's mesh.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from . import rig_math
from ._vendor.hack_model.action_units import ACTION_UNIT_REGIONS, action_unit_label
from ._vendor.hack_model.anatomy import pose_limits_rad
from ._vendor.hack_model.io.npz import load_model_npz
from ._vendor.hack_model.model_data import ModelData

ADDON_DIR = Path(__file__).resolve().parent
BUNDLED_MODEL = ADDON_DIR / "models" / "default_model.npz"
CONTROL_BONE = "HACK_control"
MOTION_CONSTRAINT = "HACK head motion"
LIMIT_CONSTRAINT = "HACK range of motion"
LARYNX_MODIFIER = "HACK larynx"
LARYNX_UV_ATTRIBUTE = "hack_larynx_uv"
LARYNX_REST_ATTRIBUTE = "hack_larynx_rest"
KEY_RANGE = 10.0  # shape-key slider range; drivers would otherwise be clamped to [0, 1]
HEAD_MOTION_PROPS = ("head_turn", "head_nod", "head_tilt", "head_forward")
REGION_ORDER = ("brows", "eyes", "cheeks", "mouth", "jaw", "gaze")
REGION_LABELS = {
    "brows": "Brows",
    "eyes": "Eyes",
    "cheeks": "Cheeks and nose",
    "mouth": "Mouth",
    "jaw": "Jaw",
    "gaze": "Gaze",
    "other": "Other",
}

_MODEL_CACHE: dict[str, ModelData] = {}


# ------------------------------------------------------------------ models
def resolve_model_path(path: str) -> Path:
    """'' means the bundled model; anything else is a package .npz on disk."""
    return BUNDLED_MODEL if not path else Path(bpy.path.abspath(path))


def load_model(path: str) -> ModelData:
    """Load (and cache) a package .npz; raises ValueError/FileNotFoundError with a clear message."""
    file = resolve_model_path(path)
    if not path and not file.is_file():
        raise FileNotFoundError(f"the bundled model is missing from the add-on ({file})")
    key = f"{file}:{os.path.getmtime(file) if file.is_file() else 0}"
    if key not in _MODEL_CACHE:
        if file.suffix.lower() != ".npz":
            raise ValueError(f"{file}: not a .npz model file (convert it with `hack-model convert`)")
        _MODEL_CACHE.clear()  # one model at a time is plenty; they are large
        _MODEL_CACHE[key] = load_model_npz(file)
    return _MODEL_CACHE[key]


def bone_limits(data: ModelData) -> np.ndarray:
    """[J, 3] radians per x, y, z; without a range-of-motion table a generous 45 degrees."""
    if data.range_of_motion is None:
        return np.full((data.num_bones, 3), np.pi / 4)
    return pose_limits_rad(data.range_of_motion)


def larynx_layout(data: ModelData) -> dict | None:
    """Knots and key offsets of the larynx rig (see rig_math.larynx_keys)."""
    if not data.has_larynx:
        return None
    knots = rig_math.larynx_knots(data.larynx_map.shape[0])
    rest, keys, key_knots = rig_math.larynx_keys(
        data.larynx_map, data.vertex_uvs, data.larynx_direction, knots
    )
    return {"knots": knots, "rest": rest, "keys": keys, "key_knots": key_knots}


def rest_vertices(data: ModelData, larynx: dict | None) -> np.ndarray:
    """The model's rest mesh: template plus the larynx at height 0, scale 1."""
    base = np.asarray(data.template_vertices, np.float64)
    return base + larynx["rest"] if larynx is not None else base


# ------------------------------------------------------------------- heads
def find_head(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The head's armature for the armature itself or its mesh."""
    while obj is not None:
        if obj.type == "ARMATURE" and obj.hack.is_head:
            return obj
        obj = obj.parent
    return None


def head_mesh(arm: bpy.types.Object) -> bpy.types.Object | None:
    mesh = arm.hack.mesh
    if mesh is not None and mesh.name in bpy.data.objects:
        return mesh
    return next((c for c in arm.children if c.type == "MESH"), None)


def build_head(
    context: bpy.types.Context, data: ModelData, model_path: str = "", name: str = "HACK"
) -> bpy.types.Object:
    """Create the armature and mesh of a head; returns the armature (the head's root object).

    On any failure everything created so far is removed again, so the scene is unchanged.
    """
    created: list = []
    try:
        return _build_head(context, data, model_path, name, created)
    except Exception:
        for item in reversed(created):
            collection = (
                bpy.data.objects
                if isinstance(item, bpy.types.Object)
                else (bpy.data.meshes if isinstance(item, bpy.types.Mesh) else bpy.data.armatures)
            )
            if item.name in collection:
                collection.remove(item)
        raise


def _build_head(context, data: ModelData, model_path: str, name: str, created: list) -> bpy.types.Object:
    if context.object is not None and context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    larynx = larynx_layout(data)
    limits = bone_limits(data)
    collection = context.collection or context.scene.collection

    arm_data = bpy.data.armatures.new(f"{name}_armature")
    created.append(arm_data)
    arm = bpy.data.objects.new(name, arm_data)
    created.append(arm)
    collection.objects.link(arm)
    arm.matrix_world = Matrix(rig_math.placement_matrix().tolist())
    arm_data.display_type = "STICK"
    arm.show_in_front = True
    _build_bones(context, arm, data)

    mesh = _build_mesh(data, name, larynx)
    created.append(mesh)
    if data.vertex_colors is not None:
        created.append(_add_preview_material(mesh, data, name))
    mesh_obj = bpy.data.objects.new(f"{name}_mesh", mesh)
    created.append(mesh_obj)
    collection.objects.link(mesh_obj)
    mesh_obj.parent = arm
    mesh_obj.matrix_parent_inverse = Matrix.Identity(4)
    mesh_obj.matrix_basis = Matrix.Identity(4)
    _add_skinning(mesh_obj, arm, data, larynx)
    _init_settings(arm, mesh_obj, data, model_path)
    _add_shape_keys(mesh_obj, data, larynx)
    _add_pose_rig(arm, data, limits)
    _add_drivers(arm, mesh_obj, data, larynx)

    for obj in context.view_layer.objects:
        obj.select_set(False)
    mesh_obj.select_set(True)
    arm.select_set(True)
    context.view_layer.objects.active = arm
    return arm


def rest_frames(data: ModelData, vertices: np.ndarray) -> np.ndarray:
    """[J, 4, 4] bone rest frames; SMPL-style models regress the heads from the (shaped) mesh."""
    frames = np.asarray(data.bone_rest_transforms, np.float64).copy()
    if data.joint_regressor is not None:
        frames[:, :3, 3] = np.asarray(data.joint_regressor, np.float64) @ np.asarray(vertices, np.float64)
    return frames


def _place_edit_bone(eb, frame: np.ndarray, length: float) -> None:
    # head, tail along the frame's +y, then roll so that +z matches (setting
    # `matrix` on a new zero-length bone loses the direction).
    eb.head = frame[:3, 3].tolist()
    eb.tail = (frame[:3, 3] + frame[:3, 1] * length).tolist()
    eb.align_roll(frame[:3, 2].tolist())


class _edit_mode:
    """Edit mode on the armature for the duration, restoring the active object after."""

    def __init__(self, context, arm: bpy.types.Object) -> None:
        self.view_layer, self.arm = context.view_layer, arm

    def __enter__(self):
        self.previous = self.view_layer.objects.active
        self.mode = self.arm.mode
        self.view_layer.objects.active = self.arm
        bpy.ops.object.mode_set(mode="EDIT")
        return self.arm.data.edit_bones

    def __exit__(self, *exc) -> None:
        bpy.ops.object.mode_set(mode="POSE" if self.mode == "POSE" else "OBJECT")
        self.view_layer.objects.active = self.previous


def _build_bones(context, arm: bpy.types.Object, data: ModelData) -> None:
    """Edit bones at the model's rest frames (bone +y along the bone, Blender-style)."""
    frames = rest_frames(data, rest_vertices(data, larynx_layout(data)))
    with _edit_mode(context, arm) as edit_bones:
        bones = []
        for b, bone_name in enumerate(data.bone_names):
            eb = edit_bones.new(bone_name)
            _place_edit_bone(eb, frames[b], float(max(data.bone_lengths[b], 1e-3)))
            parent = int(data.bone_parents[b])
            if parent >= 0:
                eb.parent = bones[parent]
                eb.use_connect = False
            bones.append(eb)
        # A non-deforming bone that the head-motion constraints name as their target
        # (Blender wants a target; the constraints' values come from drivers).
        ctrl = edit_bones.new(CONTROL_BONE)
        ctrl.head = bones[0].head
        ctrl.tail = bones[0].head + (bones[0].tail - bones[0].head).normalized() * 2.0
        ctrl.use_deform = False
    ctrl_bone = arm.data.bones[CONTROL_BONE]
    ctrl_bone.hide = True
    coll = arm.data.collections.new("HACK control")
    coll.assign(ctrl_bone)
    coll.is_visible = False
    pb = arm.pose.bones[CONTROL_BONE]
    pb.lock_location = pb.lock_rotation = pb.lock_scale = (True, True, True)
    pb.lock_rotation_w = True


def _build_mesh(data: ModelData, name: str, larynx: dict | None) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(f"{name}_mesh")
    verts = rest_vertices(data, larynx).astype(np.float32)
    sizes = np.asarray(data.polygon_sizes, np.int32)
    corners = np.asarray(data.polygon_vertex_indices, np.int32)
    mesh.vertices.add(len(verts))
    mesh.vertices.foreach_set("co", verts.reshape(-1))
    mesh.loops.add(len(corners))
    mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    mesh.polygons.foreach_set("loop_start", starts)
    if data.uv_coords is not None and data.polygon_uv_indices is not None:
        uv = mesh.uv_layers.new(name="UVMap")
        uv.data.foreach_set("uv", np.asarray(data.uv_coords, np.float32)[data.polygon_uv_indices].reshape(-1))
    elif data.vertex_uvs is not None:
        uv = mesh.uv_layers.new(name="UVMap")
        uv.data.foreach_set("uv", np.asarray(data.vertex_uvs, np.float32)[corners].reshape(-1))
    mesh.update()
    mesh.validate(clean_customdata=False)
    if len(mesh.vertices) != len(verts):
        raise ValueError("the model's polygons do not form a valid mesh")
    mesh.polygons.foreach_set("use_smooth", np.ones(len(sizes), bool))
    return mesh


def _add_preview_material(mesh: bpy.types.Mesh, data: ModelData, name: str) -> bpy.types.Material:
    """The model's preview colours as a point colour attribute, shown by a material."""
    colors = np.ones((data.num_vertices, 4), np.float32)
    colors[:, :3] = np.asarray(data.vertex_colors, np.float32)
    attribute = mesh.color_attributes.new(name="Color", type="BYTE_COLOR", domain="POINT")
    attribute.data.foreach_set("color_srgb", colors.reshape(-1))
    mesh.color_attributes.active_color = attribute
    material = bpy.data.materials.new(f"{name}_preview")
    if material.node_tree is None:  # Blender < 5 creates materials without nodes
        material.use_nodes = True
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.55
    color = tree.nodes.new("ShaderNodeVertexColor")
    color.layer_name = attribute.name
    color.location = (bsdf.location.x - 300, bsdf.location.y)
    tree.links.new(color.outputs["Color"], bsdf.inputs["Base Color"])
    if data.texture_png is not None:  # the albedo texture over the UVs replaces the colours
        texture = tree.nodes.new("ShaderNodeTexImage")
        texture.image = _packed_image(data.texture_png, f"{name}_albedo")
        texture.location = (bsdf.location.x - 300, bsdf.location.y + 250)
        tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    mesh.materials.append(material)
    return material


def _packed_image(png: np.ndarray, name: str) -> bpy.types.Image:
    """A Blender image from PNG bytes, packed into the .blend (no file left behind)."""
    import os
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".png")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(np.asarray(png, np.uint8).tobytes())
        image = bpy.data.images.load(path)
        image.pack()
    finally:
        os.unlink(path)
    image.name = name
    return image


def _add_skinning(
    mesh_obj: bpy.types.Object, arm: bpy.types.Object, data: ModelData, larynx: dict | None = None
) -> None:
    if larynx is not None:  # before the Armature modifier: the larynx moves the rest shape
        _add_exact_larynx(mesh_obj, data, larynx)
    weights = np.asarray(data.skinning_weights, np.float32)
    for b, bone_name in enumerate(data.bone_names):
        group = mesh_obj.vertex_groups.new(name=bone_name)
        column = weights[:, b]
        nonzero = np.nonzero(column)[0]
        # One call per distinct weight keeps this fast for smooth (but repetitive) maps.
        values, inverse = np.unique(column[nonzero], return_inverse=True)
        if len(values) > len(nonzero) // 2:
            for index in nonzero.tolist():
                group.add([index], float(column[index]), "REPLACE")
        else:
            for k, value in enumerate(values.tolist()):
                group.add(nonzero[inverse == k].tolist(), value, "REPLACE")
    modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm
    modifier.use_vertex_groups = True
    modifier.use_bone_envelopes = False
    modifier.use_deform_preserve_volume = False


def _socket_identifier(tree: bpy.types.NodeTree, name: str) -> str:
    for item in tree.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(name)


def _add_exact_larynx(mesh_obj: bpy.types.Object, data: ModelData, larynx: dict) -> None:
    """A Geometry Nodes modifier that samples the larynx map exactly, as the model does.

    Shape keys cannot follow the map's bilinear sampling between their height knots
    (each vertex has its kinks elsewhere), so the viewport and renders use this
    modifier: value = bilinear(map, u, 1 - v + h) through Blender's image sampling
    (pixel centres at (i + 0.5) / W, so corner-aligned x = u (W - 1) maps to
    (x + 0.5) / W), offset = (s value - rest value) direction. Exporters do not apply
    it; the export operator switches it off so that the larynx keys carry the larynx.
    """
    mesh = mesh_obj.data
    H, W = data.larynx_map.shape
    uv_attr = mesh.attributes.new(LARYNX_UV_ATTRIBUTE, "FLOAT2", "POINT")
    uv_attr.data.foreach_set("vector", np.asarray(data.vertex_uvs, np.float32).reshape(-1))
    rest_value = rig_math.sample_larynx(data.larynx_map, data.vertex_uvs, 0.0)
    rest_attr = mesh.attributes.new(LARYNX_REST_ATTRIBUTE, "FLOAT", "POINT")
    rest_attr.data.foreach_set("value", rest_value.astype(np.float32))

    image = bpy.data.images.new(f"{mesh_obj.name} larynx map", W, H, alpha=False, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    pixels = np.ones((H, W, 4), np.float32)
    pixels[..., :3] = np.asarray(data.larynx_map, np.float32)[..., None]  # array row r = image row r
    image.pixels.foreach_set(pixels.reshape(-1))
    image.file_format = "OPEN_EXR"  # keep the float values when packed into the .blend
    image.pack()

    tree = bpy.data.node_groups.new(f"{mesh_obj.name} larynx", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    for name, default in (("Height", 0.0), ("Scale", 1.0), ("Exact", 1.0)):
        tree.interface.new_socket(name, in_out="INPUT", socket_type="NodeSocketFloat").default_value = default
    nodes, links = tree.nodes, tree.links
    group_in, group_out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")

    def math(op: str, a, b, clamp: bool = False, c=None):
        node = nodes.new("ShaderNodeMath")
        node.operation = op
        node.use_clamp = clamp
        for slot, value in enumerate((a, b, c)):
            if value is None:
                continue
            if isinstance(value, (int, float)):
                node.inputs[slot].default_value = float(value)
            else:
                links.new(value, node.inputs[slot])
        return node.outputs[0]

    uv = nodes.new("GeometryNodeInputNamedAttribute")
    uv.data_type = "FLOAT_VECTOR"
    uv.inputs["Name"].default_value = LARYNX_UV_ATTRIBUTE
    split = nodes.new("ShaderNodeSeparateXYZ")
    links.new(uv.outputs["Attribute"], split.inputs[0])
    u = math("ADD", split.outputs["X"], 0.0, clamp=True)
    x = math("DIVIDE", math("MULTIPLY_ADD", u, float(W - 1), c=0.5), float(W))
    y_model = math("ADD", math("SUBTRACT", 1.0, split.outputs["Y"]), group_in.outputs["Height"], clamp=True)
    y = math("DIVIDE", math("MULTIPLY_ADD", y_model, float(H - 1), c=0.5), float(H))
    coords = nodes.new("ShaderNodeCombineXYZ")
    links.new(x, coords.inputs["X"])
    links.new(y, coords.inputs["Y"])
    texture = nodes.new("GeometryNodeImageTexture")
    texture.interpolation = "Linear"
    texture.extension = "EXTEND"
    texture.inputs["Image"].default_value = image
    links.new(coords.outputs[0], texture.inputs["Vector"])
    channels = nodes.new("FunctionNodeSeparateColor")
    links.new(texture.outputs["Color"], channels.inputs[0])
    rest = nodes.new("GeometryNodeInputNamedAttribute")
    rest.data_type = "FLOAT"
    rest.inputs["Name"].default_value = LARYNX_REST_ATTRIBUTE
    value = math("MULTIPLY", channels.outputs["Red"], group_in.outputs["Scale"])
    delta = math("MULTIPLY", math("SUBTRACT", value, rest.outputs["Attribute"]), group_in.outputs["Exact"])
    offset = nodes.new("ShaderNodeVectorMath")
    offset.operation = "SCALE"
    offset.inputs[0].default_value = np.asarray(data.larynx_direction, np.float64).tolist()
    links.new(delta, offset.inputs["Scale"])
    move = nodes.new("GeometryNodeSetPosition")
    links.new(group_in.outputs["Geometry"], move.inputs["Geometry"])
    links.new(offset.outputs["Vector"], move.inputs["Offset"])
    links.new(move.outputs["Geometry"], group_out.inputs["Geometry"])

    modifier = mesh_obj.modifiers.new(LARYNX_MODIFIER, "NODES")
    modifier.node_group = tree


def _init_settings(
    arm: bpy.types.Object, mesh_obj: bpy.types.Object, data: ModelData, model_path: str
) -> None:
    s = arm.hack
    s.is_head = True
    s.model_path = model_path
    s.model_name = data.name
    s.mesh = mesh_obj
    s.shape.clear()
    for i in range(data.num_shape):
        item = s.shape.add()
        item.name = f"shape_{i:03d}"
    s.action_units.clear()
    descriptions = data.action_unit_descriptions or [""] * len(data.action_unit_names)
    for au, description in zip(data.action_unit_names, descriptions):
        item = s.action_units.add()
        item.name = au
        item.label = action_unit_label(au, description) if description else au
        item.region = ACTION_UNIT_REGIONS.get(au, "other")
    s.expressions.clear()
    for expression in data.expression_names:
        item = s.expressions.add()
        item.name = expression
        item.label = expression


def key_points(block: bpy.types.ShapeKey):
    """`points` (Blender 4.1+) is the raw-array view of a key: foreach_set is ~100x faster than `data`."""
    return getattr(block, "points", block.data)


def _add_key(mesh_obj: bpy.types.Object, name: str, coords: np.ndarray) -> bpy.types.ShapeKey:
    key = mesh_obj.shape_key_add(name=name, from_mix=False)
    key_points(key).foreach_set("co", coords.astype(np.float32).reshape(-1))
    key.slider_min = -KEY_RANGE
    key.slider_max = KEY_RANGE
    return key


def _add_shape_keys(mesh_obj: bpy.types.Object, data: ModelData, larynx: dict | None) -> None:
    base = rest_vertices(data, larynx)
    mesh_obj.shape_key_add(name="Basis", from_mix=False)
    mesh_obj.data.shape_keys.use_relative = True
    for e, expression in enumerate(data.expression_names):
        _add_key(mesh_obj, expression, base + data.expression_directions[e])
    for b in _posed_bones(data):
        for i in range(3):
            for j in range(3):
                direction = data.pose_directions[b, i, j]
                if np.any(direction):  # zero correctives (e.g. the release's) need no key
                    _add_key(mesh_obj, pose_key_name(data.bone_names[b], i, j), base + direction)
    if larynx is not None:
        for knot, offsets in zip(larynx["key_knots"], larynx["keys"]):
            _add_key(mesh_obj, larynx_key_name(knot), base + offsets)
        _add_key(mesh_obj, "larynx_scale", base + larynx["rest"])


def _posed_bones(data: ModelData) -> list[int]:
    return [b for b, p in enumerate(data.bone_parents) if p >= 0]


def pose_key_name(bone: str, i: int, j: int) -> str:
    return f"pose_{bone}_{i}{j}"


def larynx_key_name(knot: float) -> str:
    return f"larynx_h{knot:+.5f}"


def _add_pose_rig(arm: bpy.types.Object, data: ModelData, limits: np.ndarray) -> None:
    """Quaternion bones; a Transformation constraint adds the head motion before the
    bone's own pose, then Limit Rotation clamps to the range of motion."""
    for b, bone_name in enumerate(data.bone_names):
        pb = arm.pose.bones[bone_name]
        pb.rotation_mode = "QUATERNION"
        pb.lock_location = (True, True, True)
        motion = pb.constraints.new("TRANSFORM")
        motion.name = MOTION_CONSTRAINT
        motion.target = arm
        motion.subtarget = CONTROL_BONE
        motion.map_from = "ROTATION"
        motion.map_to = "ROTATION"
        motion.from_rotation_mode = "XYZ"
        motion.to_euler_order = "XYZ"
        motion.mix_mode_rot = "BEFORE"
        motion.owner_space = "LOCAL"
        motion.target_space = "LOCAL"
        for axis in "xyz":
            setattr(motion, f"from_min_{axis}_rot", -1.0)
            setattr(motion, f"from_max_{axis}_rot", 1.0)
        limit = pb.constraints.new("LIMIT_ROTATION")
        limit.name = LIMIT_CONSTRAINT
        limit.owner_space = "LOCAL"
        for c, axis in enumerate("xyz"):
            setattr(limit, f"use_limit_{axis}", True)
            setattr(limit, f"min_{axis}", -float(limits[b, c]))
            setattr(limit, f"max_{axis}", float(limits[b, c]))
        # Recorded motion often exceeds the table: `hack.use_limits` switches the limits off.
        drv = _new_driver(limit, "influence", "u")
        _prop_var(drv, "u", arm, "hack.use_limits")


def _new_driver(owner, path: str, expression: str, index: int = -1):
    fcurve = owner.driver_add(path, index) if index >= 0 else owner.driver_add(path)
    for modifier in list(fcurve.modifiers):
        fcurve.modifiers.remove(modifier)
    driver = fcurve.driver
    driver.type = "SCRIPTED"
    driver.expression = expression
    return driver


def _prop_var(driver, name: str, arm: bpy.types.Object, data_path: str) -> None:
    var = driver.variables.new()
    var.name = name
    var.type = "SINGLE_PROP"
    var.targets[0].id_type = "OBJECT"
    var.targets[0].id = arm
    var.targets[0].data_path = data_path


def _rotation_var(driver, name: str, arm: bpy.types.Object, bone: str, channel: str) -> None:
    """The bone's final local rotation (after the head-motion and limit constraints)."""
    var = driver.variables.new()
    var.name = name
    var.type = "TRANSFORMS"
    target = var.targets[0]
    target.id = arm
    target.bone_target = bone
    target.transform_type = channel
    target.rotation_mode = "QUATERNION"
    target.transform_space = "LOCAL_SPACE"


def _add_drivers(
    arm: bpy.types.Object, mesh_obj: bpy.types.Object, data: ModelData, larynx: dict | None
) -> None:
    key = mesh_obj.data.shape_keys
    blocks = key.key_blocks
    # Expressions: raw slider plus the action units through the model's table.
    terms = rig_math.action_unit_terms(data.action_unit_matrix)
    for e, expression in enumerate(data.expression_names):
        drv = _new_driver(blocks[expression], "value", rig_math.expression_driver_expression(terms[e]))
        _prop_var(drv, "e", arm, f"hack.expressions[{e}].value")
        for a, _ in terms[e]:
            _prop_var(drv, f"a{a}", arm, f"hack.action_units[{a}].value")
    # Pose correctives: (R - I)[i, j] of each bone's local rotation.
    formulas = rig_math.pose_corrective_expressions()
    for b in _posed_bones(data):
        bone = data.bone_names[b]
        for i in range(3):
            for j in range(3):
                name = pose_key_name(bone, i, j)
                if name not in blocks:
                    continue
                drv = _new_driver(blocks[name], "value", formulas[i][j])
                for var_name, channel in (("w", "ROT_W"), ("x", "ROT_X"), ("y", "ROT_Y"), ("z", "ROT_Z")):
                    if var_name in formulas[i][j]:
                        _rotation_var(drv, var_name, arm, bone, channel)
    # Larynx: hat weights over the height knots times the scale, plus (scale - 1) rest.
    if larynx is not None:
        knots = larynx["knots"]
        step = float(knots[1] - knots[0]) if len(knots) > 1 else 1.0
        # With the exact Geometry Nodes larynx on (x = 1) the keys rest at zero.
        for knot in larynx["key_knots"]:
            expression = f"(1 - x)*{rig_math.larynx_driver_expression(knot, step)}"
            drv = _new_driver(blocks[larynx_key_name(knot)], "value", expression)
            _prop_var(drv, "h", arm, "hack.larynx_height")
            _prop_var(drv, "s", arm, "hack.larynx_scale")
            _prop_var(drv, "x", arm, "hack.larynx_exact")
        drv = _new_driver(blocks["larynx_scale"], "value", "(1 - x)*(s - 1.0)")
        _prop_var(drv, "s", arm, "hack.larynx_scale")
        _prop_var(drv, "x", arm, "hack.larynx_exact")
        modifier = mesh_obj.modifiers[LARYNX_MODIFIER]
        for socket, prop in (
            ("Height", "larynx_height"),
            ("Scale", "larynx_scale"),
            ("Exact", "larynx_exact"),
        ):
            identifier = _socket_identifier(modifier.node_group, socket)
            drv = _new_driver(modifier, f'["{identifier}"]', "v")
            _prop_var(drv, "v", arm, f"hack.{prop}")
    # Head motion: per-bone angles of the Transformation constraints.
    weights = rig_math.head_motion_weights(bone_limits(data))  # [4, J, 3]
    names = ("t", "n", "l", "f")
    for b, bone in enumerate(data.bone_names):
        constraint = arm.pose.bones[bone].constraints[MOTION_CONSTRAINT]
        for c, axis in enumerate("xyz"):
            parts = [f"{float(weights[k, b, c])!r}*{names[k]}" for k in range(4) if weights[k, b, c] != 0.0]
            if not parts:
                continue
            for end in ("min", "max"):
                drv = _new_driver(constraint, f"to_{end}_{axis}_rot", " + ".join(parts))
                for k in range(4):
                    if weights[k, b, c] != 0.0:
                        _prop_var(drv, names[k], arm, f"hack.{HEAD_MOTION_PROPS[k]}")


# ------------------------------------------------------------------ shape
_SUSPEND_SHAPE = [0]


class suspend_shape_updates:
    """Set many shape sliders, then rebuild the basis once (`apply_shape`)."""

    def __enter__(self):
        _SUSPEND_SHAPE[0] += 1

    def __exit__(self, *exc):
        _SUSPEND_SHAPE[0] -= 1


def shape_updates_suspended() -> bool:
    return _SUSPEND_SHAPE[0] > 0


def apply_shape(arm: bpy.types.Object) -> None:
    """Move the basis (and with it every key) to template + shape offsets.

    Keys store absolute positions, so the change of the basis is added to all of
    them; exporters then see basis + direction for every key.
    """
    mesh_obj = head_mesh(arm)
    if mesh_obj is None or mesh_obj.data.shape_keys is None:
        return
    data = load_model(arm.hack.model_path)
    larynx, rest = _cached_layout(data)
    values = np.array([item.value for item in arm.hack.shape], np.float64)
    used = np.nonzero(values)[0]
    target = rest.copy()
    if len(used):
        target += np.tensordot(values[used], data.shape_directions[used], 1)
    target = target.astype(np.float32).reshape(-1)
    blocks = mesh_obj.data.shape_keys.key_blocks
    V = len(mesh_obj.data.vertices)
    current = np.empty(V * 3, np.float32)
    key_points(blocks[0]).foreach_get("co", current)
    delta = target - current
    if not np.any(delta):
        return
    offsets = _key_offsets(data, larynx)
    buffer = np.empty(V * 3, np.float32)
    for block in blocks:
        offset = offsets.get(block.name)
        if offset is not None:  # one write: target + the key's own direction
            key_points(block).foreach_set("co", target + offset)
        else:  # the basis, or a key someone added by hand: move it with the basis
            key_points(block).foreach_get("co", buffer)
            buffer += delta
            key_points(block).foreach_set("co", buffer)
    mesh_obj.data.vertices.foreach_set("co", target)
    mesh_obj.data.update()
    if data.joint_regressor is not None:
        # Models with a joint regressor move their joints with shape: move the rest pose too.
        # (SMPL-style ones also regress joints from expressions, which a rest pose cannot follow.)
        if bpy.context.mode not in ("OBJECT", "POSE"):
            print("HACK: leave edit mode to move the skeleton with the shape")
            return
        frames = rest_frames(data, target.reshape(-1, 3))
        with _edit_mode(bpy.context, arm) as edit_bones:
            for b, bone_name in enumerate(data.bone_names):
                _place_edit_bone(edit_bones[bone_name], frames[b], float(max(data.bone_lengths[b], 1e-3)))


_LAYOUT_CACHE: dict[int, tuple] = {}


def _cached_layout(data: ModelData) -> tuple[dict | None, np.ndarray]:
    """Larynx layout and rest vertices of the loaded model (the larynx keys take ~30 ms)."""
    key = id(data)
    if key not in _LAYOUT_CACHE:
        _LAYOUT_CACHE.clear()
        larynx = larynx_layout(data)
        _LAYOUT_CACHE[key] = (data, larynx, rest_vertices(data, larynx))
    _, larynx, rest = _LAYOUT_CACHE[key]
    return larynx, rest


def _key_offsets(data: ModelData, larynx: dict | None) -> dict:
    """Lazy name -> flat float32 offset of every key the rig creates."""

    class Offsets(dict):
        def get(self, name, default=None):
            if name in data.expression_names:
                return (
                    data.expression_directions[data.expression_names.index(name)]
                    .astype(np.float32)
                    .reshape(-1)
                )
            if name.startswith("pose_"):
                for b in _posed_bones(data):
                    for i in range(3):
                        for j in range(3):
                            if name == pose_key_name(data.bone_names[b], i, j):
                                return data.pose_directions[b, i, j].astype(np.float32).reshape(-1)
            if larynx is not None:
                if name == "larynx_scale":
                    return larynx["rest"].astype(np.float32).reshape(-1)
                for knot, offsets in zip(larynx["key_knots"], larynx["keys"]):
                    if name == larynx_key_name(knot):
                        return offsets.astype(np.float32).reshape(-1)
            return default

    return Offsets()


# ------------------------------------------------------------- parameters
def set_neck_pose(arm: bpy.types.Object, neck_pose: np.ndarray, bone_names: list[str]) -> None:
    """Direct bone rotations from axis-angle [J, 3]; head-motion sliders are left alone."""
    quats = rig_math.axis_angle_to_quaternion(np.asarray(neck_pose, np.float64))
    for b, bone in enumerate(bone_names):
        arm.pose.bones[bone].rotation_quaternion = quats[b].tolist()
    arm.update_tag()


def exceeds_limits(arm: bpy.types.Object, neck_pose: np.ndarray) -> bool:
    """Whether axis-angle poses [..., J, 3] pass the range of motion (per axis, small margin)."""
    limits = bone_limits(load_model(arm.hack.model_path))
    return bool(np.any(np.abs(np.asarray(neck_pose)) > limits * 1.001))


def reset_neck(arm: bpy.types.Object) -> None:
    for prop in HEAD_MOTION_PROPS:
        setattr(arm.hack, prop, 0.0)
    for pb in arm.pose.bones:
        pb.rotation_quaternion = (1.0, 0.0, 0.0, 0.0)
    arm.update_tag()


def evaluated_vertices(context: bpy.types.Context, arm: bpy.types.Object) -> np.ndarray:
    """[V, 3] depsgraph-evaluated vertices in the mesh's (model) coordinates."""
    mesh_obj = head_mesh(arm)
    depsgraph = context.evaluated_depsgraph_get()
    evaluated = mesh_obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    return co.reshape(-1, 3)

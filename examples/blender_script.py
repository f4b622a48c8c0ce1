"""Drive the HACK Blender add-on from Python: add a head, set action units, keyframe, export.

Inside Blender (the add-on installed and enabled):

    blender --background --python examples/blender_script.py -- --out hack_out [--render]

or with Blender's Python module (`pip install bpy==5.0.1` in a Python 3.11 venv),
installing the add-on zip built by `hack-model blender-package -o DIST` first:

    .venv-blender/bin/python examples/blender_script.py --addon-zip DIST/hack_head-0.1.0.zip \
        --out hack_out --render

It writes hack_out/head.blend, head.glb and head.fbx (a smile keyed over 24 frames),
and with --render a few Cycles stills (CPU, 400x400) of action units.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path


def parse_args() -> argparse.Namespace:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="hack_out", help="output folder")
    parser.add_argument("--addon-zip", help="install this add-on zip first (into a temporary user folder)")
    parser.add_argument("--model", help="a package .npz model instead of the bundled one")
    parser.add_argument("--render", action="store_true", help="render stills with Cycles on the CPU")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--size", type=int, default=400)
    return parser.parse_args(argv)


ARGS = parse_args()
if ARGS.addon_zip and "BLENDER_USER_RESOURCES" not in os.environ:
    # Keep the user's own Blender set-up untouched (must happen before bpy starts).
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="hack_blender_user_")

import bpy  # noqa: E402

# Stills: (file name, action units, raw expressions, neck sliders, larynx, camera azimuth in degrees)
STILLS = (
    ("neutral", {}, {}, {}, {}, 0),
    ("smile_AU6_AU12", {"AU6": 0.8, "AU12": 1.0}, {}, {}, {}, 0),
    (
        "surprise_AU1_AU2_AU5_AU27",
        {"AU1": 1.0, "AU2": 1.0, "AU5": 0.7, "AU27": 0.6},
        {},
        {"head_nod": -0.15},
        {},
        25,
    ),
    (
        "frown_turn_AU4_AU15_AU17",
        {"AU4": 1.0, "AU15": 0.9, "AU17": 0.6},
        {},
        {"head_turn": 0.5, "head_tilt": 0.1},
        {},
        0,
    ),
    ("profile_larynx_scale2_forward", {"AU12": 0.5}, {}, {"head_forward": 0.6}, {"larynx_scale": 2.0}, 90),
)


def add_head():
    if ARGS.addon_zip:
        bpy.ops.extensions.package_install_files(
            filepath=str(Path(ARGS.addon_zip).resolve()), repo="user_default", enable_on_install=True
        )
    if not hasattr(bpy.types, "HACK_OT_add_head"):
        raise SystemExit("the HACK add-on is not enabled (give --addon-zip or enable it in Preferences)")
    for obj in list(bpy.data.objects):  # start from an empty scene
        bpy.data.objects.remove(obj)
    if ARGS.model:
        bpy.ops.hack.add_head(use_bundled=False, filepath=str(Path(ARGS.model).resolve()))
    else:
        bpy.ops.hack.add_head(use_bundled=True)
    return bpy.context.object  # the armature: it holds the sliders (object.hack)


def set_sliders(arm, action_units=None, expressions=None, neck=None, larynx=None) -> None:
    s = arm.hack
    for item in s.action_units:
        item.value = (action_units or {}).get(item.name, 0.0)
    for item in s.expressions:
        item.value = (expressions or {}).get(item.name, 0.0)
    for name in ("head_turn", "head_nod", "head_tilt", "head_forward"):
        setattr(s, name, (neck or {}).get(name, 0.0))
    s.larynx_height = (larynx or {}).get("larynx_height", 0.0)
    s.larynx_scale = (larynx or {}).get("larynx_scale", 1.0)


def keyframe_smile(arm) -> None:
    """Action units are object properties: keyframe them like any other property."""
    s = arm.hack
    for frame, value in ((1, 0.0), (12, 1.0), (24, 0.0)):
        s.action_units["AU12"].value = value
        s.action_units["AU6"].value = 0.6 * value
        for au in ("AU12", "AU6"):
            index = s.action_units.find(au)
            arm.keyframe_insert(f"hack.action_units[{index}].value", frame=frame)
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 24


def setup_render(arm):
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = ARGS.samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = ARGS.size
    scene.render.image_settings.file_format = "PNG"
    world = bpy.data.worlds.new("HACK world")
    world.color = (0.05, 0.05, 0.06)
    scene.world = world
    # The head's mesh is in cm under a 0.01 object scale: the face sits around z = 0.0 .. 0.14 m.
    target = bpy.data.objects.new("HACK camera target", None)
    target.location = (0.0, 0.0, -0.01)
    scene.collection.objects.link(target)
    cam = bpy.data.objects.new("HACK camera", bpy.data.cameras.new("HACK camera"))
    cam.data.lens = 85
    scene.collection.objects.link(cam)
    track = cam.constraints.new("TRACK_TO")
    track.target, track.track_axis, track.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = cam
    for name, location, energy in (("key", (-0.6, -0.8, 0.5), 90.0), ("fill", (0.7, -0.5, 0.1), 25.0)):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "POINT"))
        light.data.energy = energy
        light.location = location
        scene.collection.objects.link(light)
    material = bpy.data.materials.new("HACK skin")
    material.use_nodes = True
    bsdf = material.node_tree.nodes.get("Principled BSDF")
    bsdf.inputs["Base Color"].default_value = (0.8, 0.6, 0.5, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.55
    arm.hack.mesh.data.materials.append(material)
    return cam


def render_stills(arm, out: Path) -> None:
    cam = setup_render(arm)
    for name, aus, expressions, neck, larynx, azimuth in STILLS:
        set_sliders(arm, aus, expressions, neck, larynx)
        angle = math.radians(azimuth)
        cam.location = (0.8 * math.sin(angle), -0.8 * math.cos(angle), 0.03)
        bpy.context.scene.render.filepath = str(out / f"still_{name}.png")
        bpy.ops.render.render(write_still=True)
        print("rendered", bpy.context.scene.render.filepath)


def main() -> None:
    out = Path(ARGS.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    arm = add_head()
    if ARGS.render:
        render_stills(arm, out)
    set_sliders(arm)
    keyframe_smile(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.hack.export(filepath=str(out / "head.glb"), export_format="GLB", animation=True)
    bpy.ops.hack.export(filepath=str(out / "head.fbx"), export_format="FBX", animation=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "head.blend"))
    print("wrote", out)


main()

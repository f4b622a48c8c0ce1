"""Slider accuracy, keyframed action units and a bad model file.

    python check_rig.py ZIP MODEL CASES.npz OUT.npz

MODEL is a package .npz ('' for the bundled one); CASES holds the slider values
of each case; OUT gets the evaluated vertices per case plus the keyframe checks.
"""

from __future__ import annotations

import json
import sys
import time

import bpy
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import addon_module, clear_scene, evaluated, install_addon, set_case  # noqa: E402


class Layout:
    """Records the texts a panel would show; any layout call returns another recorder."""

    def __init__(self, texts: list) -> None:
        self.texts = texts

    def __getattr__(self, name):
        def call(*args, **kwargs):
            if "text" in kwargs:
                self.texts.append(kwargs["text"])
            elif name == "prop" and len(args) >= 2:
                self.texts.append(args[1])
            return Layout(self.texts)

        return call


def draw_panels(arm) -> dict:
    bpy.context.view_layer.objects.active = arm
    shown = {}
    for cls in bpy.types.Panel.__subclasses__():
        if not cls.__name__.startswith("HACK_PT_"):
            continue
        texts: list = []
        panel = type("Stub", (), {"layout": Layout(texts)})()
        poll = getattr(cls, "poll", None)
        if poll is None or poll(bpy.context):
            cls.draw(panel, bpy.context)
        shown[cls.__name__] = texts
    return shown


def main() -> None:
    zip_path, model, cases_path, out_path = sys.argv[-4:]
    install_addon(zip_path)
    clear_scene()
    cases = dict(np.load(cases_path))
    results: dict[str, np.ndarray] = {}

    # A bad model file: the operator reports an error and the scene stays as it was.
    bad = cases_path + ".bad.npz"
    with open(bad, "wb") as handle:
        handle.write(b"not a zip file")
    before = sorted(o.name for o in bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures)
    try:
        bpy.ops.hack.add_head(use_bundled=False, filepath=bad)
        bad_error = ""
    except RuntimeError as err:
        bad_error = str(err)
    after = sorted(o.name for o in bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures)
    results["bad_file"] = np.array(json.dumps({"error": bad_error, "unchanged": before == after}))

    start = time.perf_counter()
    if model:
        bpy.ops.hack.add_head(use_bundled=False, filepath=model)
    else:
        bpy.ops.hack.add_head(use_bundled=True)
    results["add_seconds"] = np.array(time.perf_counter() - start)
    arm = bpy.context.object
    results["rest"] = evaluated(arm)
    mesh = next(o for o in arm.children if o.type == "MESH").data
    if "Color" in mesh.color_attributes:
        values = np.zeros(len(mesh.vertices) * 4, np.float32)
        mesh.color_attributes["Color"].data.foreach_get("color_srgb", values)
        results["preview_colors"] = values.reshape(-1, 4)[:, :3]
        results["preview_material"] = np.array(mesh.materials[0].name if mesh.materials else "")
    n = len(cases["expression"])
    results["vertices"] = np.stack([(set_case(arm, cases, i), evaluated(arm))[1] for i in range(n)])
    bones = [b.name for b in arm.data.bones if b.use_deform]
    results["bone_names"] = np.array(bones)
    results["bone_rest"] = np.stack([np.array(arm.data.bones[b].matrix_local) for b in bones])

    # Keyframed action units: frame 1 neutral, frame 11 case 0's action units; the
    # mesh must follow frame_set without any handler.
    set_case(
        arm, {k: np.zeros_like(v) if k != "larynx_scale" else np.ones_like(v) for k, v in cases.items()}, 0
    )
    s = arm.hack
    for a, item in enumerate(s.action_units):
        item.value = 0.0
        arm.keyframe_insert(f"hack.action_units[{a}].value", frame=1)
        item.value = float(cases["action_units"][0][a])
        arm.keyframe_insert(f"hack.action_units[{a}].value", frame=11)
    scene = bpy.context.scene
    frames = {}
    for frame in (11, 1, 6, 11):
        scene.frame_set(frame)
        frames[frame] = evaluated(arm)
    results["keyed_frame_11"] = frames[11]
    results["keyed_frame_1"] = frames[1]
    results["keyed_frame_6"] = frames[6]

    # A single slider set from Python reaches the mesh without frame changes or handlers.
    arm.animation_data.action = None  # keep the drivers, which live in animation_data too
    for item in s.action_units:
        item.value = 0.0
    evaluated(arm)
    s.action_units[0].value = 0.7
    results["live_first_au"] = evaluated(arm)

    # Past the range of motion the Limit Rotation constraints clamp (and the correctives follow).
    s.action_units[0].value = 0.0
    rig = addon_module("rig")
    rig.set_neck_pose(arm, cases["clamp_pose"], bones)
    results["clamped"] = evaluated(arm)
    rig.reset_neck(arm)

    # Shape operators: randomise, then reset to the mean.
    bpy.ops.hack.shape_randomize(seed=3)
    results["randomized_shape"] = np.array([item.value for item in s.shape], np.float64)
    results["randomized"] = evaluated(arm)
    bpy.ops.hack.shape_reset()
    results["after_reset"] = evaluated(arm)

    # The sidebar's panels draw without errors (a recording stand-in for the UI layout).
    results["panels"] = np.array(json.dumps(draw_panels(arm)))

    # Every driver is valid and a "simple expression" (no Python, no auto-run needed).
    mesh = arm.hack.mesh
    drivers = [
        d for o in (mesh.data.shape_keys, mesh, arm) if o.animation_data for d in o.animation_data.drivers
    ]
    results["drivers"] = np.array(
        json.dumps(
            {
                "count": len(drivers),
                "invalid": [d.data_path for d in drivers if not d.driver.is_valid],
                "not_simple": [d.data_path for d in drivers if not d.driver.is_simple_expression],
            }
        )
    )
    np.savez(out_path, **results)


main()

"""Sequence import, fit import, FBX/glTF export and re-import, bad parameter files.

    python check_io.py ZIP CONFIG.json

CONFIG names the model ('' = bundled), the sequence and fit .npz files, the frame
indices to sample and the output folder; results go to OUT/io_results.npz.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import addon_module, clear_scene, evaluated, install_addon  # noqa: E402


def add_head(model: str):
    if model:
        bpy.ops.hack.add_head(use_bundled=False, filepath=model)
    else:
        bpy.ops.hack.add_head(use_bundled=True)
    return bpy.context.object


def scene_state() -> tuple:
    actions = sorted(a.name for a in bpy.data.actions)
    return sorted(o.name for o in bpy.data.objects), actions, len(bpy.data.meshes)


def expect_error(operator, **kwargs) -> str:
    try:
        operator(**kwargs)
    except RuntimeError as err:
        return str(err)
    return ""


def main() -> None:
    zip_path, config_path = sys.argv[-2:]
    config = json.loads(Path(config_path).read_text())
    out = Path(config["out"])
    install_addon(zip_path)
    clear_scene()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 25, 1.0
    results: dict[str, np.ndarray] = {}
    report: dict[str, object] = {}

    # Recorded sequence as keyframes.
    arm = add_head(config["model"])
    before = scene_state()
    junk = out / "junk.npz"
    junk.write_bytes(b"junk")
    report["bad_sequence_error"] = expect_error(bpy.ops.hack.import_animation, filepath=str(junk))
    report["bad_sequence_unchanged"] = scene_state() == before
    bpy.ops.hack.import_animation(filepath=config["sequence"], fps=25.0, start_frame=1)
    report["frame_range"] = [scene.frame_start, scene.frame_end]
    report["use_limits_after_sequence"] = bool(arm.hack.use_limits)
    results["sequence_vertices"] = np.stack(
        [(scene.frame_set(1 + k), evaluated(arm))[1] for k in config["sequence_frames"]]
    )

    # A hack-fit sequence (sequence_params.npz) on a second head: per-frame parameters and
    # the head keyed onto each frame's scan.
    fitted_seq = add_head(config["model"])
    bpy.ops.hack.import_animation(filepath=config["fitted_sequence"], fps=25.0, start_frame=1)
    placed, matrices = [], []
    for k in range(config["fitted_sequence_frames"]):
        scene.frame_set(1 + k)
        placed.append(evaluated(fitted_seq))
        matrices.append(np.array(fitted_seq.matrix_world))
    results["fitted_sequence_vertices"] = np.stack(placed)
    results["fitted_sequence_matrices"] = np.stack(matrices)
    bpy.context.view_layer.objects.active = arm

    # A fit on a new head (placed on the scan) and on the selected head.
    bad_fit = out / "bad_fit.npz"
    np.savez(bad_fit, shape=np.zeros((1, 999)))
    before = scene_state()
    report["bad_fit_error"] = expect_error(bpy.ops.hack.import_fit, filepath=str(bad_fit))
    report["bad_fit_unchanged"] = scene_state() == before
    scene.frame_set(1)
    bpy.ops.hack.import_fit(filepath=config["fit"], new_head=True, model_path=config["model"])
    fitted = bpy.context.object
    report["fit_new_head"] = fitted.name != arm.name
    results["fit_new_vertices"] = evaluated(fitted)
    results["fit_new_matrix"] = np.array(fitted.matrix_world)
    arm.animation_data.action = None  # keep the drivers, which live in animation_data too
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.hack.import_fit(filepath=config["fit"], new_head=False)
    results["fit_selected_vertices"] = evaluated(arm)
    results["fit_selected_matrix"] = np.array(arm.matrix_world)

    # Saved and reopened, the rig needs nothing but the add-on (packed map, drivers, constraints).
    blend = out / "fitted.blend"
    fitted_name = fitted.name
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    fitted = bpy.data.objects[fitted_name]
    results["fit_reopened_vertices"] = evaluated(fitted)

    # Export both formats, then re-import each into an empty scene.
    rig = addon_module("rig")
    key_names = [kb.name for kb in rig.head_mesh(fitted).data.shape_keys.key_blocks]
    bone_names = [b.name for b in fitted.data.bones if b.use_deform]
    bpy.context.view_layer.objects.active = fitted
    exported = {}
    for fmt, suffix in (("FBX", ".fbx"), ("GLB", ".glb")):
        path = out / f"head{suffix}"
        bpy.ops.hack.export(filepath=str(path), export_format=fmt)
        exported[fmt] = path
    reimport = {}
    for fmt, path in exported.items():
        clear_scene()
        if fmt == "FBX":
            bpy.ops.import_scene.fbx(filepath=str(path))
        else:
            bpy.ops.import_scene.gltf(filepath=str(path))
        # The glTF importer adds a small mesh of its own for bone display: take the largest.
        meshes = sorted(
            (o for o in bpy.data.objects if o.type == "MESH"), key=lambda o: -len(o.data.vertices)
        )
        armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
        keys = meshes[0].data.shape_keys if meshes else None
        reimport[fmt] = {
            "size": path.stat().st_size,
            "meshes": sum(len(o.data.vertices) > 100 for o in meshes),
            "shape_keys": [kb.name for kb in keys.key_blocks] if keys else [],
            "bones": [b.name for b in armatures[0].data.bones] if armatures else [],
            "vertices": len(meshes[0].data.vertices) if meshes else 0,
        }
    report["reimport"] = reimport

    # Disabling the extension unregisters everything it added.
    import addon_utils

    addon_utils.disable("bl_ext.user_default.hack_head")
    report["unregistered"] = not hasattr(bpy.types.Object, "hack") and not hasattr(
        bpy.types, "HACK_OT_add_head"
    )
    report["exported_keys"] = key_names
    report["exported_bones"] = bone_names
    results["report"] = np.array(json.dumps(report))
    np.savez(out / "io_results.npz", **results)


main()

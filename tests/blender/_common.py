"""Helpers for the scripts that run inside Blender's Python (bpy) for tests/test_blender_addon.py.

Each script is run as `python SCRIPT ZIP ARGS...`: it installs the add-on zip as an
extension into a throw-away user folder (BLENDER_USER_RESOURCES, set by the test),
then does its checks and writes an .npz or JSON result for the torch-side test.
"""

from __future__ import annotations

import bpy
import numpy as np


def install_addon(zip_path: str) -> None:
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    if result != {"FINISHED"} or not hasattr(bpy.types, "HACK_OT_add_head"):
        raise SystemExit(f"installing {zip_path} failed: {result}")


def clear_scene() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def addon_module(name: str):
    """A module of the installed extension (bl_ext.user_default.hack_head.NAME)."""
    import importlib

    return importlib.import_module(f"bl_ext.user_default.hack_head.{name}")


def set_case(arm, case: dict, index: int) -> None:
    """Sliders of test case `index` from the arrays written by the test."""
    rig = addon_module("rig")
    s = arm.hack
    with rig.suspend_shape_updates():
        for i, item in enumerate(s.shape):
            item.value = float(case["shape"][index][i]) if i < case["shape"].shape[1] else 0.0
    rig.apply_shape(arm)
    for e, item in enumerate(s.expressions):
        item.value = float(case["expression"][index][e])
    for a, item in enumerate(s.action_units):
        item.value = float(case["action_units"][index][a])
    rig.set_neck_pose(arm, case["direct_pose"][index], [b.name for b in arm.data.bones if b.use_deform])
    s.head_turn, s.head_nod, s.head_tilt, s.head_forward = (float(v) for v in case["head_motion"][index])
    if "larynx_height" in case:
        s.larynx_height = float(case["larynx_height"][index])
        s.larynx_scale = float(case["larynx_scale"][index])
        s.larynx_exact = bool(case["larynx_exact"][index])


def evaluated(arm) -> np.ndarray:
    bpy.context.view_layer.update()
    return addon_module("rig").evaluated_vertices(bpy.context, arm)

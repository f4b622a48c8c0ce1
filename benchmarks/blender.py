"""Speed of the Blender add-on, headless: adding a head and slider -> evaluated mesh.

    .venv-blender/bin/python benchmarks/blender.py [--model MODEL.npz] [--repeat N]

Runs with Blender's Python module (bpy==5.0.1). Builds the add-on zip from this
checkout, installs it into a temporary user folder and times, on the bundled
model (or MODEL, a package .npz):
  - adding a head (the operator: mesh, armature, shape keys, drivers);
  - a slider change until the depsgraph-evaluated mesh is read back, for an
    action unit, a raw expression, the head turn (armature, constraints and the
    pose-corrective drivers) and the larynx height; and a shape slider (which
    rewrites the basis and every key in Python).
Targets: adding a head under 2 s, a slider change under 20 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="package .npz (default: the bundled model)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hack_blender_bench_"))
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "user")  # before bpy starts
    sys.path.insert(0, str(REPO))
    from hack_model.blender_package import DEFAULT_MODEL, build_blender_package

    bundle = None if DEFAULT_MODEL.is_file() else args.model
    zip_path = build_blender_package(tmp, model_path=bundle)

    import bpy
    import numpy as np

    bpy.ops.extensions.package_install_files(
        filepath=str(zip_path), repo="user_default", enable_on_install=True
    )
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    import importlib

    rig = importlib.import_module("bl_ext.user_default.hack_head.rig")

    start = time.perf_counter()
    if args.model:
        bpy.ops.hack.add_head(use_bundled=False, filepath=str(Path(args.model).resolve()))
    else:
        bpy.ops.hack.add_head(use_bundled=True)
    add_seconds = time.perf_counter() - start
    arm = bpy.context.object
    mesh = rig.head_mesh(arm)
    keys = len(mesh.data.shape_keys.key_blocks)
    owners = (mesh.data.shape_keys, mesh, arm)
    drivers = sum(len(o.animation_data.drivers) for o in owners if o.animation_data is not None)
    print(
        f"blender {bpy.app.version_string}, model: {arm.hack.model_name}, {len(mesh.data.vertices)} vertices"
    )
    print(f"shape keys: {keys}, drivers: {drivers}")
    print(f"add head: {add_seconds * 1000:.0f} ms (target < 2000 ms)")

    def timed(change) -> float:
        times = []
        previous = rig.evaluated_vertices(bpy.context, arm)
        for i in range(1, args.repeat + 1):
            start = time.perf_counter()
            change(i)
            bpy.context.view_layer.update()  # evaluate the depsgraph (the viewport does this on redraw)
            vertices = rig.evaluated_vertices(bpy.context, arm)
            times.append(time.perf_counter() - start)
            if np.array_equal(vertices, previous):
                raise SystemExit("the evaluated mesh did not change: the benchmark measures nothing")
            previous = vertices
        return float(np.median(times))

    s = arm.hack
    rig.evaluated_vertices(bpy.context, arm)  # first evaluation builds the depsgraph
    cases = {
        "action unit (AU12)": lambda i: setattr(
            s.action_units[min(9, len(s.action_units) - 1)], "value", 0.1 + 0.02 * i
        ),
        "raw expression": lambda i: setattr(s.expressions[0], "value", 0.1 + 0.02 * i),
        "head turn (all bones)": lambda i: setattr(s, "head_turn", 0.01 * i),
        "larynx height": lambda i: setattr(s, "larynx_height", 0.001 * (i % 40) - 0.02),
    }
    if len(s.shape):
        cases["shape 1 (basis rewrite)"] = lambda i: setattr(s.shape[0], "value", 0.05 * i)
    for name, change in cases.items():
        print(f"slider -> evaluated mesh, {name}: {timed(change) * 1000:.1f} ms median (target < 20 ms)")


if __name__ == "__main__":
    main()

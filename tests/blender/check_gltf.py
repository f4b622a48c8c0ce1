"""Import a .glb with Blender's own glTF importer and report what arrived.

    python check_gltf.py IN.glb OUT.npz

OUT holds the mesh's evaluated world vertices (metres, Blender's +z up), the shape-key
names and values, and the armature's bone names (JSON strings).
"""

from __future__ import annotations

import json
import sys

import bpy
import numpy as np


def main(path: str, out: str) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_scene.gltf(filepath=path)
    if result != {"FINISHED"}:
        raise SystemExit(f"glTF import failed: {result}")
    # The importer may add a small mesh as the bones' display shape: the head is the big one.
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    if not meshes:
        raise SystemExit("no mesh imported")
    mesh = max(meshes, key=lambda o: len(o.data.vertices))
    keys = mesh.data.shape_keys.key_blocks if mesh.data.shape_keys else []
    names = [k.name for k in keys][1:]  # the first is the basis
    values = [float(k.value) for k in keys][1:]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = mesh.evaluated_get(depsgraph)
    data = evaluated.to_mesh()
    world = np.array(evaluated.matrix_world)
    co = np.empty(len(data.vertices) * 3)
    data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]
    bones = [b.name for b in armatures[0].data.bones] if armatures else []
    np.savez(out, vertices=co, shape_keys=json.dumps(names), values=np.array(values),
             bones=json.dumps(bones), num_armatures=len(armatures))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[-2], sys.argv[-1])

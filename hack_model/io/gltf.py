"""glTF 2.0 (.glb binary or .gltf with the buffer embedded) through pygltflib.

One triangle mesh with normals, UVs (one per vertex) and the preview colours (COLOR_0,
linear), optionally the bones as a skin (joints + weights, inverse bind matrices) and
blendshapes as named morph targets (`mesh.extras.targetNames`, read by Blender and
three.js). Coordinates are written as given; `unit_scale` goes on the root node (0.01 turns
model centimetres into glTF's metres without changing the numbers in the buffer).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_output


@dataclass
class GltfSkin:
    """bone_names [J]; parents [J] (-1 root); rest [J, 4, 4] world rest frames in the mesh's
    coordinates; weights [V, J]; local_rotations [J, 4] (x, y, z, w) posed on top of rest."""

    bone_names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    weights: np.ndarray
    local_rotations: np.ndarray | None = None


@dataclass
class GltfMesh:
    vertices: np.ndarray  # [V, 3]
    triangles: np.ndarray  # [F, 3]
    normals: np.ndarray | None = None  # [V, 3]
    uvs: np.ndarray | None = None  # [V, 2], OBJ convention (v up)
    colors: np.ndarray | None = None  # [V, 3] sRGB 0..1 (COLOR_0; left out when there is a texture)
    texture_png: bytes | None = None  # the base colour image, sampled at `uvs`
    morph_names: list[str] = field(default_factory=list)
    morph_offsets: np.ndarray | None = None  # [K, V, 3]
    morph_weights: np.ndarray | None = None  # [K]
    skin: GltfSkin | None = None
    name: str = "head"


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def write_gltf(
    path: str | os.PathLike, mesh: GltfMesh, *, unit_scale: float = 1.0, overwrite: bool = True
) -> Path:
    """Write `.glb` or `.gltf` (buffer embedded as a data URI) atomically."""
    try:
        import pygltflib as g
    except ImportError:
        raise ImportError("glTF export needs pygltflib: pip install 'hack-model[export]'") from None

    path = Path(path)
    blob = bytearray()
    accessors: list = []
    views: list = []

    def add(array: np.ndarray, kind: str, component: int, target: int | None, bounds: bool = False) -> int:
        array = np.ascontiguousarray(array)
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=array.nbytes, target=target))
        blob.extend(array.tobytes())
        acc = g.Accessor(
            bufferView=len(views) - 1,
            componentType=component,
            count=len(array),
            type=kind,
            max=array.max(0).tolist() if bounds else None,
            min=array.min(0).tolist() if bounds else None,
        )
        accessors.append(acc)
        return len(accessors) - 1

    f32 = np.float32
    indices = add(np.asarray(mesh.triangles, np.uint32).reshape(-1), g.SCALAR, g.UNSIGNED_INT,
                  g.ELEMENT_ARRAY_BUFFER)  # fmt: skip
    attributes = g.Attributes(
        POSITION=add(np.asarray(mesh.vertices, f32), g.VEC3, g.FLOAT, g.ARRAY_BUFFER, True)
    )
    if mesh.normals is not None:
        attributes.NORMAL = add(np.asarray(mesh.normals, f32), g.VEC3, g.FLOAT, g.ARRAY_BUFFER)
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs, f32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # glTF's v runs down
        attributes.TEXCOORD_0 = add(uv, g.VEC2, g.FLOAT, g.ARRAY_BUFFER)
    textured = mesh.texture_png is not None and mesh.uvs is not None
    if mesh.colors is not None and not textured:  # glTF multiplies COLOR_0 into the texture
        attributes.COLOR_0 = add(
            srgb_to_linear(mesh.colors[:, :3]).astype(f32), g.VEC3, g.FLOAT, g.ARRAY_BUFFER
        )
    nodes = [g.Node(name="root", scale=[unit_scale] * 3, children=[1])]
    skin_index = None
    if mesh.skin is not None:
        s = mesh.skin
        J = len(s.bone_names)
        top = np.argsort(-s.weights, axis=1)[:, :4]
        w = np.take_along_axis(s.weights, top, 1).astype(f32)
        w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
        if J < 4:
            top, w = top[:, :J], w[:, :J]
        attributes.JOINTS_0 = add(np.pad(top, ((0, 0), (0, 4 - top.shape[1]))).astype(np.uint16), g.VEC4,
                                  g.UNSIGNED_SHORT, g.ARRAY_BUFFER)  # fmt: skip
        attributes.WEIGHTS_0 = add(np.pad(w, ((0, 0), (0, 4 - w.shape[1]))), g.VEC4, g.FLOAT, g.ARRAY_BUFFER)
        first = 2  # node 0 root, node 1 mesh, then the joints
        inverse_bind = np.linalg.inv(np.asarray(s.rest, np.float64))
        for j in range(J):
            parent = int(s.parents[j])
            local = s.rest[j] if parent < 0 else np.linalg.inv(s.rest[parent]) @ s.rest[j]
            node = g.Node(name=s.bone_names[j], translation=local[:3, 3].tolist())
            node.rotation = _quaternion(
                local[:3, :3], None if s.local_rotations is None else s.local_rotations[j]
            )
            node.children = [first + c for c in range(J) if int(s.parents[c]) == j]
            nodes.append(node)
        roots = [first + j for j in range(J) if int(s.parents[j]) < 0]
        nodes[0].children = [1, *roots]
        ibm = add(inverse_bind.transpose(0, 2, 1).reshape(J, 16).astype(f32), g.MAT4, g.FLOAT, None)
        skin_index = 0
        skins = [g.Skin(joints=list(range(first, first + J)), inverseBindMatrices=ibm, skeleton=roots[0])]
    else:
        skins = []
    targets = []
    if mesh.morph_offsets is not None:
        for offsets in mesh.morph_offsets:
            targets.append({"POSITION": add(np.asarray(offsets, f32), g.VEC3, g.FLOAT, g.ARRAY_BUFFER, True)})
    primitive = g.Primitive(attributes=attributes, indices=indices, material=0, targets=targets or None)
    gmesh = g.Mesh(name=mesh.name, primitives=[primitive])
    if targets:
        weights = mesh.morph_weights if mesh.morph_weights is not None else np.zeros(len(targets))
        gmesh.weights = [float(x) for x in weights]
        gmesh.extras = {"targetNames": list(mesh.morph_names)}
    nodes.insert(1, g.Node(name=mesh.name, mesh=0, skin=skin_index))
    pbr = g.PbrMetallicRoughness(baseColorFactor=[1.0] * 4, metallicFactor=0.0, roughnessFactor=0.6)
    images, textures, samplers = [], [], []
    if textured:
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(mesh.texture_png)))
        blob.extend(mesh.texture_png)
        images = [g.Image(bufferView=len(views) - 1, mimeType="image/png", name="albedo")]
        samplers = [g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR)]
        textures = [g.Texture(source=0, sampler=0)]
        pbr.baseColorTexture = g.TextureInfo(index=0)
    gltf = g.GLTF2(
        asset=g.Asset(generator="hack-model", version="2.0"),
        scene=0,
        scenes=[g.Scene(nodes=[0])],
        nodes=nodes,
        meshes=[gmesh],
        skins=skins,
        materials=[g.Material(name="skin", doubleSided=True, pbrMetallicRoughness=pbr)],
        images=images,
        textures=textures,
        samplers=samplers,
        accessors=accessors,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    with atomic_output(path, overwrite=overwrite) as tmp:
        if path.suffix.lower() == ".glb":
            gltf.set_binary_blob(bytes(blob))
            gltf.save_binary(str(tmp))
        else:
            gltf.buffers[0].uri = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
            gltf.save_json(str(tmp))
    return path


def _quaternion(rest_rotation: np.ndarray, pose: np.ndarray | None) -> list[float]:
    """(x, y, z, w) of rest_rotation @ pose (pose given as x, y, z, w or None)."""
    from scipy.spatial.transform import Rotation

    r = Rotation.from_matrix(rest_rotation)
    if pose is not None:
        r = r * Rotation.from_quat(pose)
    return [float(x) for x in r.as_quat()]

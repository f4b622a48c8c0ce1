"""The scene: mesh, camera and three lights, reused for a run of frames (needs pyrender)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .camera import Camera
from .context import import_pyrender
from .geometry import vertex_face_incidence, vertex_normals

# Warm light skin, slightly desaturated so it reads as a neutral sculpture (sRGB).
SKIN_SRGB = (0.80, 0.73, 0.68)

# ------------------------------------------------------------------------------ lighting

# (direction towards the light in camera axes [x right, y up, z towards viewer], intensity).
# pyrender's PBR shader gives a white diffuse surface facing a directional light of
# intensity pi its full base colour, so the key is a bit below pi to keep highlights
# from clipping; ambient lifts the shadow side without flattening it.
LIGHTING: dict[str, dict] = {
    "studio": {
        # (a key much further to the side splits a front view down the nose: half the face
        # in shadow, the broad planes of the cheeks blotchy)
        "key": ((-0.55, 0.50, 0.67), 3.0),  # upper camera-left, about 45 deg off axis: form
        "fill": ((0.75, -0.05, 0.66), 1.0),  # camera-right, a little low: opens shadows
        "rim": ((0.30, 0.50, -0.80), 2.5),  # behind and above: outlines the silhouette
        "ambient": 0.08,
    },
    # For colour maps: flatter light so shaded colours stay close to the colour bar.
    "soft": {
        "key": ((-0.35, 0.35, 0.87), 1.7),
        "fill": ((0.55, 0.0, 0.83), 0.8),
        "rim": ((0.35, 0.55, -0.76), 0.8),
        "ambient": 0.45,
    },
}


def light_rotation(direction: Sequence[float]) -> np.ndarray:
    """Rotation whose +z axis points towards the light (pyrender lights shine along -z)."""
    z = np.asarray(direction, np.float64)
    z = z / np.linalg.norm(z)
    helper = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    # pyrender's shader writes pow(linear, 1/2.2); invert exactly that so a colour given
    # here comes out as itself where the surface is fully lit.
    return np.power(np.clip(rgb, 0.0, 1.0), 2.2)


def rgba_colors(colors: np.ndarray | None, num_vertices: int) -> np.ndarray | None:
    """[V, 3|4] or [B, V, 3|4] sRGB floats -> linear RGBA float32 of the same leading shape."""
    if colors is None:
        return None
    c = np.asarray(colors, np.float64)
    if c.dtype.kind in "ui" or (c.size and c.max() > 1.0 + 1e-6):
        raise ValueError("vertex_colors must be floats in 0..1")
    if c.shape[-2] != num_vertices or c.shape[-1] not in (3, 4):
        raise ValueError(f"vertex_colors must be [V, 3|4] with V={num_vertices}, got {c.shape}")
    rgb = srgb_to_linear(c[..., :3])
    alpha = c[..., 3:4] if c.shape[-1] == 4 else np.ones(c.shape[:-1] + (1,))
    return np.concatenate([rgb, alpha], axis=-1).astype(np.float32)


class Stage:
    """One pyrender scene (mesh, camera, three lights) reused for a run of frames.

    The first frame uploads the mesh; later frames overwrite its vertex buffer in place
    (positions, normals, colours), which avoids rebuilding the scene and re-uploading
    the index buffer.
    """

    def __init__(
        self,
        triangles: np.ndarray,
        num_vertices: int,
        has_colors: bool,
        background: Sequence[float],
        transparent: bool,
        lighting: str,
        roughness: float,
        backfaces: bool = True,
    ) -> None:
        pyrender = import_pyrender()
        self.pyrender = pyrender
        self.triangles = np.ascontiguousarray(triangles, np.uint32)
        self.incidence = vertex_face_incidence(self.triangles.astype(np.int64), num_vertices)
        self.num_vertices = num_vertices
        self.has_colors = has_colors
        try:
            light = LIGHTING[lighting]
        except KeyError:
            raise ValueError(f"unknown lighting {lighting!r}; choose from {list(LIGHTING)}") from None
        base = (1.0, 1.0, 1.0) if has_colors else tuple(srgb_to_linear(np.array(SKIN_SRGB)))
        self.material = pyrender.MetallicRoughnessMaterial(
            baseColorFactor=(*base, 1.0),
            metallicFactor=0.0,
            roughnessFactor=roughness,
        )
        bg = np.ones(4)
        bg[: min(len(background), 4)] = np.asarray(background, np.float64)[:4]
        if transparent:
            bg = np.zeros(4)  # black so edge pixels can be un-premultiplied exactly
        self.transparent = transparent
        self.backfaces = backfaces
        self.scene = pyrender.Scene(bg_color=bg, ambient_light=np.full(3, light["ambient"]))
        self.camera = pyrender.PerspectiveCamera(yfov=0.5)
        self.camera_node = self.scene.add(self.camera, pose=np.eye(4))
        self.light_nodes = []
        for name in ("key", "fill", "rim"):
            direction, intensity = light[name]
            node = self.scene.add(
                pyrender.DirectionalLight(color=np.ones(3), intensity=intensity), pose=np.eye(4)
            )
            self.light_nodes.append((node, light_rotation(direction)))
        self.primitive = None
        self.mesh_node = None
        self.fast_update = True

    def _interleaved(self, positions, normals, colors) -> np.ndarray:
        # Same layout pyrender's Primitive uploads: position, normal, [colour] per vertex.
        parts = [positions, normals] + ([colors] if colors is not None else [])
        return np.ascontiguousarray(np.hstack(parts), np.float32)

    def set_mesh(self, positions: np.ndarray, colors: np.ndarray | None, renderer) -> None:
        """positions [V, 3]; colors linear RGBA [V, 4] or None."""
        positions = np.ascontiguousarray(positions, np.float32)
        normals = vertex_normals(positions, self.triangles, self.incidence)
        prim = self.primitive
        if prim is not None and self.fast_update and prim._in_context():
            try:
                self._upload(renderer, prim, self._interleaved(positions, normals, colors))
                # Keep pyrender's CPU-side copy in step (bounds, transparency test).
                prim.positions = positions
                prim.normals = normals
                if colors is not None:
                    prim.color_0 = colors
                return
            except Exception:  # pyrender internals changed: rebuild the mesh instead
                self.fast_update = False
        prim = self.pyrender.Primitive(
            positions=positions,
            normals=normals,
            color_0=colors,
            indices=self.triangles,
            material=self.material,
            mode=self.pyrender.constants.GLTF.TRIANGLES,
        )
        if self.mesh_node is not None:
            self.scene.remove_node(self.mesh_node)
        self.primitive = prim
        self.mesh_node = self.scene.add(self.pyrender.Mesh(primitives=[prim]))

    @staticmethod
    def _upload(renderer, prim, data: np.ndarray) -> None:
        from OpenGL import GL

        renderer._platform.make_current()
        try:
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, prim._buffers[0])
            # A layout we did not predict would draw garbage: refuse, and rebuild instead.
            if GL.glGetBufferParameteriv(GL.GL_ARRAY_BUFFER, GL.GL_BUFFER_SIZE) != data.nbytes:
                raise RuntimeError("pyrender vertex buffer layout changed")
            GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, data.nbytes, data)
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        finally:
            renderer._platform.make_uncurrent()

    def set_camera(self, camera: Camera, aspect: float) -> None:
        self.camera.yfov = camera.yfov
        self.camera.aspectRatio = aspect
        self.camera.znear = camera.znear
        self.camera.zfar = camera.zfar
        self.scene.set_pose(self.camera_node, camera.pose)
        for node, local in self.light_nodes:
            pose = np.eye(4)
            pose[:3, :3] = camera.pose[:3, :3] @ local  # lights move with the camera
            pose[:3, 3] = camera.pose[:3, 3]
            self.scene.set_pose(node, pose)

    def render(self, renderer) -> np.ndarray:
        flags = self.pyrender.RenderFlags.NONE
        if self.backfaces:
            flags |= self.pyrender.RenderFlags.SKIP_CULL_FACES
        if self.transparent:
            flags |= self.pyrender.RenderFlags.RGBA
        color, _ = renderer.render(self.scene, flags=flags)
        color = np.asarray(color)
        if self.transparent:
            color = unpremultiply(color)
        return np.ascontiguousarray(color)


def unpremultiply(rgba: np.ndarray) -> np.ndarray:
    """Anti-aliased edges were blended over transparent black; restore straight alpha."""
    out = rgba.copy()
    alpha = rgba[..., 3:4].astype(np.float32)
    edge = (alpha > 0) & (alpha < 255)
    rgb = rgba[..., :3].astype(np.float32) * 255.0 / np.maximum(alpha, 1.0)
    out[..., :3] = np.where(edge, np.clip(rgb + 0.5, 0, 255), rgba[..., :3]).astype(np.uint8)
    return out

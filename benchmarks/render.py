"""Offscreen rendering speed (pyrender on EGL) for a HACK-size head at 512x512.

Uses the shared generic head (000_generic_neutral_mesh.obj under $HACK_SHARED_DATA,
default <repo>/../shared/data/hack-release/model) when present, otherwise a generated
~14k-vertex head. Prints the median milliseconds of one render_mesh call (scene set up,
mesh uploaded, rendered, read back) and frames per second of render_frames over a
100-frame sequence of small random deformations (one scene, vertex buffer updated in
place), beside the same sequence with the mesh rebuilt every frame.

    python benchmarks/render.py [--size 512] [--frames 100] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from hack_model import render
from hack_model.io.mesh import read_obj
from hack_model.model_data import fan_triangulate


def shared_head() -> Path:
    default = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    root = Path(os.environ.get("HACK_SHARED_DATA", default))
    return root / "hack-release" / "model" / "000_generic_neutral_mesh.obj"


def load_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] and fan-triangulated faces [F, 3] of an OBJ."""
    mesh = read_obj(path)
    return mesh.vertices, fan_triangulate(mesh.polygon_vertex_indices, mesh.polygon_sizes)


def generated_head() -> tuple[np.ndarray, np.ndarray]:
    """~14k-vertex ellipsoid head on a cylinder neck, in cm. [V, 3], [F, 3]"""
    import trimesh

    skull = trimesh.creation.icosphere(subdivisions=5)  # 10,242 vertices
    skull.apply_scale((8.0, 11.0, 9.5))
    skull.apply_translation((0.0, 6.0, 0.5))
    neck = trimesh.creation.cylinder(radius=5.0, height=12.0, sections=512).subdivide()
    neck.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    neck.apply_translation((0.0, -6.0, 0.0))
    head = trimesh.util.concatenate([skull, neck])
    return np.asarray(head.vertices), np.asarray(head.faces)


def deformed_sequence(vertices: np.ndarray, frames: int, seed: int = 0) -> np.ndarray:
    """[frames, V, 3]: smooth random bumps of a few millimetres."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.2, 0.6, (frames, 3))
    phase = rng.uniform(0.0, 2 * np.pi, (frames, 3))
    wave = np.sin(vertices[None, :, :] * freq[:, None, :] + phase[:, None, :])
    return vertices[None] + 0.3 * wave[..., [1, 2, 0]]


def sequence_time(batch: np.ndarray, triangles: np.ndarray, size: int, in_place: bool) -> tuple[float, float]:
    """(wall, CPU) seconds to render the whole sequence."""
    # The in-place vertex buffer update can be switched off per stage (private switch,
    # used only here to measure what it saves).
    original = render.scene.Stage.__init__

    def init(stage, *args, **kwargs):
        original(stage, *args, **kwargs)
        stage.fast_update = in_place

    render.scene.Stage.__init__ = init
    try:
        start, start_cpu = time.perf_counter(), time.process_time()
        render.render_frames(batch, triangles, size=size, view="three-quarter")
        return time.perf_counter() - start, time.process_time() - start_cpu
    finally:
        render.scene.Stage.__init__ = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    path = shared_head()
    if path.exists():
        vertices, triangles = load_obj(path)
        source = path.name
    else:
        vertices, triangles = generated_head()
        source = "generated head"
    info = render.renderer_info()
    print(f"GL: {info['renderer']} | {info['version']} | {os.cpu_count()} CPUs")
    print(f"mesh: {source}, {len(vertices)} vertices, {len(triangles)} triangles")

    render.render_mesh(vertices, triangles, size=args.size)  # warm-up: context, shaders
    wall, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        render.render_mesh(vertices, triangles, size=args.size)
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    print(
        f"render_mesh {args.size}x{args.size}: {statistics.median(wall):.1f} ms per frame "
        f"(median of {args.repeats}; {statistics.median(cpu):.1f} ms CPU time, all threads)"
    )

    batch = deformed_sequence(vertices, args.frames)
    for label, in_place in (("in-place buffer update", True), ("mesh rebuilt per frame", False)):
        wall, cpu = sequence_time(batch, triangles, args.size, in_place)
        print(
            f"render_frames {args.frames} frames, {label}: {args.frames / wall:.1f} frames/s "
            f"({1e3 * wall / args.frames:.1f} ms per frame; "
            f"{1e3 * cpu / args.frames:.1f} ms CPU time per frame)"
        )


if __name__ == "__main__":
    main()

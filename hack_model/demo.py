"""The picture tour of a model (`hack-model demo`) and sequence animations.

Each sheet evaluates the model once for all its cells and renders them with one
camera, so the cells of a sheet are directly comparable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .action_units import action_unit_label
from .anatomy import HEAD_MOVEMENTS, MOTION_AXIS, head_movement_pose, pose_limits_rad
from .model import HACK
from .params import canonical_name, forward_arguments, load_params, normalize_params
from .texture import preview_albedo

CELL = 256  # pixels per sheet cell


def evaluate(model: HACK, batch_size: int | None = None, **params) -> np.ndarray:
    """Vertices [B, V, 3] as numpy, evaluated in chunks of 64 frames to bound memory."""
    frames = batch_size or max((len(v) for v in params.values() if hasattr(v, "__len__")), default=1)
    chunks = []
    with torch.no_grad():
        for start in range(0, frames, 64):
            part = {k: _rows(v, start, start + 64) for k, v in params.items()}
            chunks.append(model(**part).vertices.cpu().numpy())
    return np.concatenate(chunks)


def _rows(value, start: int, stop: int):
    if isinstance(value, dict):
        return {k: _rows(v, start, stop) for k, v in value.items()}
    value = torch.as_tensor(np.asarray(value), dtype=torch.float32)
    return value if value.shape[0] == 1 else value[start:stop]


def face_vertices(model: HACK) -> np.ndarray:
    """Indices of vertices that frame the face: the 68 landmarks (jaw line, brows, nose,
    eyes, mouth) when the model has them, else the front half of the rigid head."""
    if model.data.landmark_indices is not None and len(model.data.landmark_indices) == 68:
        return np.asarray(model.data.landmark_indices)
    rigid = np.nonzero(model.data.skinning_weights[:, -1] > 0.99)[0]
    if len(rigid) < 100:
        return np.arange(model.num_vertices)
    z = model.data.template_vertices[rigid, 2]
    return rigid[z > np.percentile(z, 50)]


def face_box(vertices: np.ndarray, model: HACK, margin: float = 0.08) -> np.ndarray:
    """Box [2, 3] around the face in all frames of vertices [B, V, 3], grown by `margin`."""
    points = vertices[:, face_vertices(model)].reshape(-1, 3)
    low, high = points.min(0), points.max(0)
    pad = (high - low) * margin
    pad[2] = 0.0  # depth needs no room
    return np.stack([low - pad, high + pad])


def _render_cells(vertices: np.ndarray, model: HACK, frame_points: np.ndarray | None = None, **kw):
    from .render import bounding_box, render_frames

    box = bounding_box(vertices if frame_points is None else frame_points)
    kw.setdefault("vertex_colors", preview_albedo(model.data))
    return render_frames(vertices, model.data.triangles(), frame=box, size=kw.pop("size", CELL), **kw)


def shapes_sheet(model: HACK, components: int = 6) -> np.ndarray:
    """The mean head and the first principal components at -2 and +2 standard deviations."""
    from .images import compose_sheet

    k = min(components, model.num_shape)
    shape = np.zeros((1 + 2 * k, max(k, 1)), np.float32)
    titles = ["mean"]
    for i in range(k):
        shape[1 + 2 * i, i], shape[2 + 2 * i, i] = -2.0, 2.0
        titles += [f"PC{i + 1} -2 sd", f"PC{i + 1} +2 sd"]
    params = {"shape": shape} if k else {}
    vertices = evaluate(model, len(shape), **params)
    images = _render_cells(vertices, model, view="three-quarter")
    return compose_sheet(images, titles, columns=5, title=f"{model.data.name}: shape space")


def expressions_sheet(model: HACK) -> np.ndarray:
    """Every expression blendshape at weight 1, framed on the head. ARKit's mouthClose only
    means something with the jaw open (it closes the lips against jawOpen), so it is shown so."""
    from .images import compose_sheet

    E = model.num_expression
    weights = np.eye(E, dtype=np.float32)
    labels = list(model.expression_names)
    names = model.expression_names
    if "mouthClose" in names and "jawOpen" in names:
        k = names.index("mouthClose")
        weights[k, names.index("jawOpen")] = 1.0
        labels[k] = "mouthClose + jawOpen"
    vertices = evaluate(model, E, expression=weights)
    images = _render_cells(vertices, model, face_box(vertices, model), view="front", zoom=1.3)
    return compose_sheet(images, labels, columns=8, title="expressions at weight 1")


def action_units_sheet(model: HACK) -> np.ndarray:
    """Every FACS action unit of the model's table at full intensity."""
    from .images import compose_sheet

    names = model.action_unit_names
    if not names:
        raise ValueError(f"{model.data.name} has no action-unit table")
    vertices = evaluate(model, len(names), action_units=np.eye(len(names), dtype=np.float32))
    box = face_box(vertices, model)
    images = _render_cells(vertices, model, box, view="three-quarter", yaw=25.0, zoom=1.3)
    titles = [action_unit_label(n, d) for n, d in zip(names, model.data.action_unit_descriptions)]
    return compose_sheet(images, titles, columns=6, title="FACS action units at intensity 1")


def neck_sheet(model: HACK) -> np.ndarray:
    """Each bone at its limits in the three motions, then the whole-head movements."""
    from .images import compose_sheet

    rom = model.data.range_of_motion
    if rom is None:
        raise ValueError(f"{model.data.name} has no range-of-motion table")
    limits = pose_limits_rad(rom)
    J = model.num_bones
    motions = [
        ("flexion", "flexion_extension", 1.0, "side"),
        ("extension", "flexion_extension", -1.0, "side"),
        ("bend right", "lateral_bending", 1.0, "front"),
        ("bend left", "lateral_bending", -1.0, "front"),
        ("rotate left", "axial_rotation", 1.0, "front"),
        ("rotate right", "axial_rotation", -1.0, "front"),
    ]
    images, titles = [], []
    for label, motion, sign, view in motions:
        axis = MOTION_AXIS[motion]
        poses = np.zeros((J, J, 3), np.float32)
        for b in range(J):
            poses[b, b, axis] = sign * limits[b, axis]
        vertices = evaluate(model, J, neck_pose=poses)
        images += _render_cells(vertices, model, view=view, pitch=20.0 if "rotate" in label else 0.0)
        degrees = np.rad2deg(limits[:, axis])
        titles += [f"{model.bone_names[b]} {label} {degrees[b]:.1f}°" for b in range(J)]
    moves = list(HEAD_MOVEMENTS)
    # whole-head moves at what a person reaches comfortably, not the bones' summed limits
    total = {m: np.rad2deg(limits[:, MOTION_AXIS[HEAD_MOVEMENTS[m][0]]]).sum() for m in moves}
    amount = {m: min(1.0, COMFORTABLE_HEAD_DEG[HEAD_MOVEMENTS[m][0]] / total[m]) for m in moves}
    poses = np.stack([head_movement_pose(rom, m, amount[m]) for m in moves]).astype(np.float32)
    vertices = evaluate(model, len(moves), neck_pose=poses)
    for move, vert in zip(moves, vertices):
        view = "side" if "look" in move else "front"
        images += _render_cells(vert[None], model, vertices.reshape(-1, 3), view=view)
        titles.append(f"head: {move.replace('_', ' ')} {amount[move] * total[move]:.0f}°")
    return compose_sheet(images, titles, columns=J, title="neck range of motion (per bone, then whole head)")


# Comfortable whole-head movement (degrees, one way) of an adult, about 3/4 of the active range.
COMFORTABLE_HEAD_DEG = {"axial_rotation": 60.0, "flexion_extension": 45.0, "lateral_bending": 35.0}


def larynx_sheet(model: HACK) -> np.ndarray:
    """Larynx height and scale sweeps, close up on the throat from the side."""
    from .images import compose_sheet

    if not model.data.has_larynx:
        raise ValueError(f"{model.data.name} has no larynx")
    heights = np.array([-0.05, -0.025, 0.0, 0.025, 0.05], np.float32)
    scales = np.array([0.0, 0.5, 1.0, 1.5, 2.0], np.float32)
    height = np.concatenate([heights, np.zeros(5, np.float32)])[:, None]
    scale = np.concatenate([np.ones(5, np.float32), scales])[:, None]
    vertices = evaluate(model, 10, larynx_height=height, larynx_scale=scale)
    # Frame the throat: the vertices the larynx moves, with some surroundings.
    flat = evaluate(model, 1, larynx_scale=np.zeros((1, 1), np.float32))[0]
    moved = np.linalg.norm(vertices[2] - flat, axis=1)
    throat = flat[moved > 0.2 * moved.max()] if moved.max() > 0 else flat
    centre = throat.mean(0)
    near = flat[np.linalg.norm(flat - centre, axis=1) < 6.0]
    images = _render_cells(vertices, model, near, view="three-quarter", yaw=70.0)
    titles = [f"height {h:+.3f}" for h in heights] + [f"scale {s:.1f}" for s in scales]
    return compose_sheet(images, titles, columns=5, title="larynx: height sweep (top), scale sweep (bottom)")


SHEETS: dict[str, Callable[[HACK], np.ndarray]] = {
    "shapes": shapes_sheet,
    "expressions": expressions_sheet,
    "action_units": action_units_sheet,
    "neck": neck_sheet,
    "larynx": larynx_sheet,
}


def make_demo(model: HACK, out_dir: str | Path, *, log: Callable[[str], None] = print) -> list[Path]:
    """Write the five sheets into out_dir; returns their paths."""
    from .images import save_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in SHEETS.items():
        start = time.perf_counter()
        path = save_png(out_dir / f"{name}.png", make(model))
        log(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
        paths.append(path)
    return paths


# ------------------------------------------------------------------ sequences
def load_sequence(path: str | Path) -> dict[str, np.ndarray]:
    """Per-frame parameters from a `.npz`, or from a folder of `*_list.npy` files as in the
    HACK release's `data/` (then all parameters are cut to the shortest recording)."""
    path = Path(path)
    if path.is_dir():
        raw = {}
        for file in sorted(path.glob("*.npy")):
            key = file.stem
            if canonical_name(key) is not None:
                raw[key] = np.load(file, allow_pickle=False)
        if not raw:
            raise ValueError(f"{path}: no parameter .npy files (theta_list.npy, bsw_list.npy, ...) found")
        params = normalize_params(raw, str(path))
        frames = min(len(v) for v in params.values())
        return {k: v[:frames] for k, v in params.items()}
    return load_params(path)


def animate(
    model: HACK,
    params: dict[str, np.ndarray],
    out_path: str | Path,
    *,
    fps: float = 30.0,
    size: int = 384,
    view: str = "three-quarter",
    max_frames: int | None = None,
    progress: bool = True,
) -> Path:
    """Render a parameter sequence to MP4 (when ffmpeg is available through imageio) or GIF.

    Returns the path written: out_path, with its suffix changed to .gif when MP4 is unavailable.
    """
    import imageio.v2 as imageio

    from .render import bounding_box, render_frames

    args = forward_arguments(params)
    frames = max(_frame_count(v) for v in args.values()) if args else 1
    if max_frames is not None:
        frames = min(frames, max_frames)
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".mp4" and not _has_ffmpeg():
        out_path = out_path.with_suffix(".gif")
    triangles = model.data.triangles()
    vertices = evaluate(model, frames, **{k: _cut(v, frames) for k, v in args.items()})
    box = bounding_box(vertices)
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}")
    bar = _progress(frames, "rendering", progress)
    try:
        kwargs = {"fps": fps} if out_path.suffix.lower() == ".mp4" else {"duration": 1.0 / fps, "loop": 0}
        with imageio.get_writer(tmp, **kwargs) as writer:
            for start in range(0, frames, 32):
                for image in render_frames(
                    vertices[start : start + 32],
                    triangles,
                    frame=box,
                    size=size,
                    view=view,
                    vertex_colors=preview_albedo(model.data),
                ):
                    writer.append_data(image)
                    bar(1)
        tmp.replace(out_path)
    finally:
        bar(None)
        if tmp.exists():
            tmp.unlink()
    return out_path


def _frame_count(value) -> int:
    if isinstance(value, dict):
        return max((_frame_count(v) for v in value.values()), default=1)
    return len(value)


def _cut(value, frames: int):
    if isinstance(value, dict):
        return {k: _cut(v, frames) for k, v in value.items()}
    return value if len(value) == 1 else value[:frames]


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except (ImportError, RuntimeError):
        return False


def _progress(total: int, label: str, enabled: bool) -> Callable[[int | None], None]:
    """A progress bar: tqdm when installed, else a carriage-return line on stderr."""
    if not enabled:
        return lambda step: None
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=label, unit="frame")
        return lambda step: bar.close() if step is None else bar.update(step)
    except ImportError:
        done = [0]

        def update(step: int | None) -> None:
            if step is None:
                print(file=sys.stderr)
                return
            done[0] += step
            print(f"\r{label} {done[0]}/{total}", end="", file=sys.stderr)

        return update

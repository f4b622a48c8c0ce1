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


def head_points(vertices: np.ndarray, model: HACK) -> np.ndarray:
    """Points [N, 3] of the head (skull, face, ears; not the neck) in all frames of [B, V, 3]:
    the vertices the top bone carries rigidly, or the whole mesh when there are too few."""
    rigid = np.nonzero(model.data.skinning_weights[:, -1] > 0.99)[0]
    if len(rigid) < 100:
        rigid = np.arange(model.num_vertices)
    return vertices[:, rigid].reshape(-1, 3)


def _render_cells(vertices: np.ndarray, model: HACK, frame_points: np.ndarray | None = None, **kw):
    from .render import bounding_box, render_frames

    box = bounding_box(vertices if frame_points is None else frame_points)
    kw.setdefault("vertex_colors", preview_albedo(model.data))
    return render_frames(vertices, model.data.triangles(), frame=box, size=kw.pop("size", CELL), **kw)


def shapes_sheet(model: HACK, components: int = 6, sd: float = 3.0) -> np.ndarray:
    """One row per principal component: -sd, mean, +sd from the front, then the same from the
    side; one camera per view for the whole sheet, framed on the heads (the neck runs on)."""
    from .images import compose_sheet

    k = min(components, model.num_shape)
    if k == 0:
        vertices = evaluate(model, 1)
        images = _render_cells(vertices, model, head_points(vertices, model), view="front")
        return compose_sheet(images, ["mean"], columns=1, title=f"{model.data.name}: no shape space")
    shape = np.zeros((1 + 2 * k, k), np.float32)
    for i in range(k):
        shape[1 + 2 * i, i], shape[2 + 2 * i, i] = -sd, sd
    vertices = evaluate(model, len(shape), shape=shape)
    points = head_points(vertices, model)
    views = {view: _render_cells(vertices, model, points, view=view) for view in ("front", "side")}
    images, titles = [], []
    for i in range(k):
        for view in ("front", "side"):
            cells = views[view]
            images += [cells[1 + 2 * i], cells[0], cells[2 + 2 * i]]
            titles += [f"PC{i + 1} -{sd:g} SD {view}", "mean", f"PC{i + 1} +{sd:g} SD {view}"]
    return compose_sheet(
        images, titles, columns=6, title=f"{model.data.name}: shape components at -{sd:g}, 0, +{sd:g} SD"
    )


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
    images = _render_cells(vertices, model, head_points(vertices, model), view="front")
    return compose_sheet(images, labels, columns=8, title="expressions at weight 1")


def action_units_sheet(model: HACK) -> np.ndarray:
    """Every FACS action unit of the model's table at full intensity. The camera frames the
    whole head (ears and skull included) so no tile cuts through it."""
    from .images import compose_sheet

    names = model.action_unit_names
    if not names:
        raise ValueError(f"{model.data.name} has no action-unit table")
    vertices = evaluate(model, len(names), action_units=np.eye(len(names), dtype=np.float32))
    images = _render_cells(vertices, model, head_points(vertices, model), view="three-quarter", yaw=25.0)
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


def make_demo(
    model: HACK, out_dir: str | Path, *, overwrite: bool = False, log: Callable[[str], None] = print
) -> list[Path]:
    """Write the five sheets into out_dir; returns their paths. A sheet that exists is kept
    (and logged as skipped) unless overwrite."""
    from .images import save_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in SHEETS.items():
        start = time.perf_counter()
        path = out_dir / f"{name}.png"
        if path.exists() and not overwrite:
            log(f"skipped {path} (exists; add --overwrite to replace it)")
        else:
            save_png(path, make(model), overwrite=overwrite)
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
    from .render import RenderOptions, bounding_box

    args = forward_arguments(params)
    frames = max(_frame_count(v) for v in args.values()) if args else 1
    if max_frames is not None:
        frames = min(frames, max_frames)
    vertices = evaluate(model, frames, **{k: _cut(v, frames) for k, v in args.items()})
    options = RenderOptions(view=view, size=size, frame=bounding_box(vertices))
    return write_video(model, vertices, out_path, fps=fps, options=options, progress=progress)


def write_video(
    model: HACK,
    vertices: np.ndarray,
    out_path: str | Path,
    *,
    fps: float = 30.0,
    options=None,
    progress: bool = True,
) -> Path:
    """Render vertices [B, V, 3] with one camera (options.frame, default the batch's box) to MP4
    (GIF when imageio-ffmpeg is missing, or when out_path ends in .gif). Returns the path."""
    import imageio.v2 as imageio

    from .render import RenderOptions, bounding_box, render_frames

    options = options or RenderOptions(view="three-quarter", size=384)
    if options.frame is None:
        options = options.updated(frame=bounding_box(vertices))
    out_path = Path(out_path)
    if out_path.suffix.lower() == ".mp4" and not _has_ffmpeg():
        out_path = out_path.with_suffix(".gif")
    frames = len(vertices)
    tmp = out_path.with_name(f".{out_path.stem}.partial{out_path.suffix}")
    bar = _progress(frames, "rendering", progress)
    try:
        kwargs = {"fps": fps} if out_path.suffix.lower() == ".mp4" else {"duration": 1.0 / fps, "loop": 0}
        with imageio.get_writer(tmp, **kwargs) as writer:
            for start in range(0, frames, 32):
                for image in render_frames(vertices[start : start + 32], model, options=options):
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
    """A progress bar on stderr, only when stderr is a terminal (never in redirected logs):
    tqdm when installed, else a carriage-return line."""
    if not enabled or not sys.stderr.isatty():
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

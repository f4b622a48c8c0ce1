"""The `hack-model` command line: thin wrappers around the library.

Every command reports a problem in one line on stderr and exits non-zero. One rule for
every command that writes: outputs are written atomically, and existing ones are kept and
reported as skipped unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PROG = "hack-model"


def _model(path: str | None):
    from .loading import load_model

    return load_model(path)


def cmd_info(args: argparse.Namespace) -> None:
    data = _model(args.model)
    meta = data.metadata
    lines = [
        f"name:        {data.name}",
        f"version:     {meta.get('version', '-')}",
        f"licence:     {meta.get('license', '-')}",
        f"source:      {meta.get('source', '-')}",
        f"units:       {data.units}",
        f"vertices:    {data.num_vertices}",
        f"polygons:    {len(data.polygon_sizes)} ({int((data.polygon_sizes == 4).sum())} quads, "
        f"{int((data.polygon_sizes == 3).sum())} triangles)",
        f"shape:       {data.num_shape} components",
        f"expression:  {data.num_expression}: {', '.join(data.expression_names) or '-'}",
        f"bones:       {data.num_bones}: {', '.join(data.bone_names)}",
        f"larynx:      {_larynx_summary(data)}",
        f"landmarks:   {0 if data.landmark_indices is None else len(data.landmark_indices)}",
        f"action units: {len(data.action_unit_names)}: {', '.join(data.action_unit_names) or '-'}",
        f"UVs:         {'yes' if data.uv_coords is not None else 'no'}",
    ]
    if data.range_of_motion is not None:
        import numpy as np

        from .anatomy import MOTION_AXIS, pose_limits_rad

        limits = np.rad2deg(pose_limits_rad(data.range_of_motion))
        order = [MOTION_AXIS[m] for m in ("flexion_extension", "lateral_bending", "axial_rotation")]
        lines.append("range of motion, degrees each way (+-; flexion-extension's total range is twice):")
        lines.append(f"  {'bone':<6} {'flexion':>8} {'lateral':>8} {'axial':>8}")
        for name, row in zip(data.bone_names, limits[:, order]):
            lines.append(f"  {name:<6} " + " ".join(f"{x:8.1f}" for x in row))
    print("\n".join(lines))


def _larynx_summary(data) -> str:
    """'yes (larynx_height 0.01 = X cm)': how far the bump's centre moves per unit of height."""
    if not data.has_larynx:
        return "no"
    import numpy as np
    import torch

    from .model import HACK

    model = HACK(data)
    with torch.no_grad():
        flat = model(larynx_scale=torch.zeros(1, 1)).vertices[0].numpy()
        rest, up = model(larynx_height=torch.tensor([[0.0], [0.01]])).vertices.numpy()
    def centre(v):
        w = np.linalg.norm(v - flat, axis=1)
        return (w[:, None] * flat).sum(0) / max(w.sum(), 1e-12)
    shift = float(np.linalg.norm(centre(up) - centre(rest)))
    return f"yes (larynx_height +0.01 moves it about {shift:.2f} {data.units} up)"


def cmd_convert(args: argparse.Namespace) -> None:
    from .io.npz import save_model
    from .loading import load_model

    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"{out}: the output must be a .npz file")
    if not _refuse_overwrite(out, args.overwrite):
        return
    data = load_model(args.source)
    save_model(data, out)
    print(
        f"wrote {out} ({data.name}: {data.num_vertices} vertices, {data.num_shape} shape, "
        f"{data.num_expression} expression, {data.num_bones} bones)"
    )


def _evaluate(args: argparse.Namespace):
    """(model, params, forward arguments, vertices [B, V, 3] numpy) for --params and --set."""
    import torch

    from .model import HACK
    from .params import forward_arguments, load_params
    from .settings import apply_settings

    params = load_params(args.params) if args.params else {}
    model = HACK(args.model)
    forward = apply_settings(forward_arguments(params), args.set or [], model)
    with torch.no_grad():
        vertices = model(**forward).vertices.numpy()
    return model, params, forward, vertices


def _frames(args: argparse.Namespace, count: int) -> list[int]:
    if args.frame is None:
        return list(range(count))
    if not 0 <= args.frame < count:
        raise ValueError(f"--frame {args.frame} is out of range: the parameters have {count} frames")
    return [args.frame]


def _numbered(out: Path, frames: list[int], count: int) -> list[Path]:
    """OUT for one frame; OUT_0000.ext, OUT_0001.ext, ... for several."""
    if len(frames) == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i:04d}{out.suffix}") for i in frames]


def _keep_existing(groups: list[list[Path]], overwrite: bool) -> list[bool]:
    """The overwrite rule: for each group of outputs, True to write it; a group with an
    existing file is kept (reported as skipped) unless overwrite. Missing folders are errors."""
    todo = []
    for group in groups:
        for path in group:
            if not path.parent.is_dir():
                raise FileNotFoundError(f"{path.parent}: output folder does not exist")
        existing = [p for p in group if p.exists()]
        if existing and not overwrite:
            print(f"skipped {existing[0]} (exists; add --overwrite to replace it)")
        todo.append(overwrite or not existing)
    return todo


def _rig(model, forward: dict, index: int):
    """Rest-pose mesh (shape and larynx only), expression weights and neck pose of one frame."""
    import numpy as np
    import torch

    from .exporting import Rig

    def row(value):
        value = np.asarray(value, np.float32)
        return value[min(index, len(value) - 1)][None]

    base_args = {k: row(forward[k]) for k in ("shape", "larynx_height", "larynx_scale") if k in forward}
    E = model.num_expression
    weights = row(forward["expression"])[0] if "expression" in forward else np.zeros(E, np.float32)
    units = forward.get("action_units")
    if units is not None:
        matrix = model.data.action_unit_matrix
        if isinstance(units, dict):
            names = model.action_unit_names
            for name, value in units.items():
                column = np.asarray(value, np.float32).reshape(-1)
                weights = weights + float(column[min(index, len(column) - 1)]) * matrix[names.index(name)]
        else:
            weights = weights + row(units)[0] @ matrix
    pose = row(forward["neck_pose"])[0] if "neck_pose" in forward else np.zeros((model.num_bones, 3))
    with torch.no_grad():
        base = model(**base_args).vertices[0].numpy()
    return Rig(base_vertices=base, expression_weights=weights, neck_pose=pose)


def cmd_export(args: argparse.Namespace) -> None:
    from .exporting import companion_paths, export_mesh, similarity_from_params
    from .io.mesh import EXPORT_SUFFIXES

    out = Path(args.output)
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ValueError(f"{out}: unsupported mesh format '{out.suffix}' (use {', '.join(EXPORT_SUFFIXES)})")
    if args.rig and out.suffix.lower() not in (".glb", ".gltf"):
        raise ValueError(f"{out}: --rig (bones and morph targets) needs a .glb or .gltf output")
    model, params, forward, vertices = _evaluate(args)
    similarities = None if args.model_space else similarity_from_params(params)
    if similarities is not None and len(similarities) not in (1, len(vertices)):
        raise ValueError(f"the fit's similarity has {len(similarities)} frames for {len(vertices)} meshes")
    frames = _frames(args, len(vertices))
    paths = _numbered(out, frames, len(vertices))
    groups = [[p, *companion_paths(p)] for p in paths]
    written = []
    for path, index, todo in zip(paths, frames, _keep_existing(groups, args.overwrite)):
        if not todo:
            continue
        similarity = None if similarities is None else similarities[min(index, len(similarities) - 1)]
        rig = _rig(model, forward, index) if args.rig else None
        written += export_mesh(path, model.data, vertices[index], rig=rig, similarity=similarity,
                               overwrite=args.overwrite)[:1]  # fmt: skip
    space = "scan space (the fit's similarity)" if similarities is not None else "model space"
    if len(written) == 1:
        print(f"wrote {written[0]} in {space}")
    elif written:
        print(f"wrote {len(written)} meshes in {space}: {written[0]} ... {written[-1]}")


def cmd_build_default(args: argparse.Namespace) -> None:
    from .default_model import build_default_model
    from .io.npz import save_model

    out = Path(args.output)
    if not _refuse_overwrite(out, args.overwrite):
        return
    start = time.perf_counter()
    data = build_default_model(seed=args.seed)
    save_model(data, out)
    print(
        f"wrote {out} in {time.perf_counter() - start:.1f} s "
        f"({out.stat().st_size / 1e6:.1f} MB, {data.num_vertices} vertices)"
    )


def cmd_render(args: argparse.Namespace) -> None:
    from .images import save_png
    from .render import RenderOptions, bounding_box, render_frames

    if args.output is None and args.video is None:
        raise ValueError("give -o OUT.png (one image per frame) and/or --video OUT.mp4")
    out = Path(args.output) if args.output else None
    if out is not None and out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the output must be a .png file")
    video = Path(args.video) if args.video else None
    if video is not None and video.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"{video}: the video must be .mp4 or .gif")
    model, _, _, vertices = _evaluate(args)
    frames = _frames(args, len(vertices))
    view = (args.yaw, args.pitch) if args.yaw is not None else args.view
    options = RenderOptions(view=view, size=args.size, transparent=args.transparent,
                            frame=bounding_box(vertices))  # fmt: skip
    if out is not None:
        paths = _numbered(out, frames, len(vertices))
        todo = _keep_existing([[p] for p in paths], args.overwrite)
        chosen = [(p, i) for p, i, t in zip(paths, frames, todo) if t]
        for start in range(0, len(chosen), 32):
            part = chosen[start : start + 32]
            images = render_frames(vertices[[i for _, i in part]], model, options=options)
            for (path, _), image in zip(part, images):
                save_png(path, image, overwrite=args.overwrite)
        if len(chosen) == 1:
            print(f"wrote {chosen[0][0]}")
        elif chosen:
            print(f"wrote {len(chosen)} images: {chosen[0][0]} ... {chosen[-1][0]}")
    if video is not None and _keep_existing([[video]], args.overwrite)[0]:
        from .demo import write_video

        path = write_video(model, vertices[frames], video, fps=args.fps, options=options)
        print(f"wrote {path} ({len(frames)} frames)")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import animate, load_sequence, make_demo
    from .model import HACK

    start = time.perf_counter()
    out = Path(args.out)
    sequence = load_sequence(args.sequence) if args.sequence else None  # fail before rendering
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: output folder does not exist")
    model = HACK(args.model)
    make_demo(model, out, overwrite=args.overwrite)
    print(f"stills took {time.perf_counter() - start:.1f} s")
    if sequence is not None:
        target = out / "sequence.mp4"
        if _keep_existing([[target, target.with_suffix(".gif")]], args.overwrite)[0]:
            path = animate(model, sequence, target, fps=args.fps, max_frames=args.max_frames)
            print(f"wrote {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def cmd_blender_package(args: argparse.Namespace) -> None:
    from .blender_package import build_blender_package

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = build_blender_package(out_dir, args.model)
    print(f"wrote {path} (Blender: Preferences > Get Extensions > Install from Disk)")


def _refuse_overwrite(path: Path, overwrite: bool) -> bool:
    """The overwrite rule for one output: False (and reported as skipped) when it exists."""
    return _keep_existing([[path]], overwrite)[0]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="HACK head-and-neck model tools")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="counts, names, units and provenance of a model")
    p.add_argument("model", nargs="?", help="model file or release folder (default: embedded model)")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("convert", help="an official release folder or smplx-style .pkl to the .npz format")
    p.add_argument("source", help="release folder, .pkl or .npz")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=cmd_convert)

    set_help = (
        "set one parameter for every frame (repeatable): an expression (jawOpen=1), an action unit "
        "(AU12=0.8), shape.K=SD, neck.BONE.AXIS=DEG (AXIS flexion|axial|lateral or x|y|z), "
        "turn=DEG, nod=DEG, tilt=DEG, larynx_height=H, larynx_scale=S"
    )
    p = sub.add_parser("export", help="evaluate parameters and write the mesh (.obj, .ply, .glb, .gltf)")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--params", help="parameter .npz (API names or official symbols; a fit's params)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help=set_help)
    p.add_argument("--frame", type=int, help="write only this frame of a multi-frame file")
    p.add_argument("--model-space", action="store_true",
                   help="ignore a fit's scale/rotation/translation: write in model space (cm)")  # fmt: skip
    p.add_argument("--rig", action="store_true",
                   help="glTF only: the bones as a skin, the expressions as morph targets")  # fmt: skip
    p.add_argument("-o", "--output", required=True,
                   help="output .obj (+ .mtl), .ply, .glb or .gltf (frames get _0000 suffixes)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("render", help="render a model (with parameters) to PNGs or a video")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--params", help="parameter .npz (API names or official symbols)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help=set_help)
    p.add_argument("--frame", type=int, help="render only this frame of a multi-frame parameter file")
    p.add_argument("--view", default="three-quarter", choices=["front", "side", "three-quarter", "back"])
    p.add_argument("--yaw", type=float, help="camera yaw in degrees (overrides --view)")
    p.add_argument("--pitch", type=float, default=0.0, help="camera pitch in degrees, with --yaw")
    p.add_argument("--size", type=int, default=512, help="image size in pixels")
    p.add_argument("--transparent", action="store_true", help="transparent background")
    p.add_argument("-o", "--output", help="output .png (several frames: OUT_0000.png, ...)")
    p.add_argument("--video", help="also (or instead) write the frames as a video (.mp4, or .gif)")
    p.add_argument("--fps", type=float, default=30.0, help="video frame rate")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser("demo", help="picture tour: shapes, expressions, action units, neck, larynx")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--sequence", help="parameter sequence (.npz, or a folder of *_list.npy) to animate")
    p.add_argument("--fps", type=float, default=30.0, help="animation frame rate")
    p.add_argument("--max-frames", type=int, help="animate at most this many frames")
    p.add_argument("--overwrite", action="store_true", help="replace existing sheets and animation")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("blender-package", help="build the installable Blender extension zip")
    p.add_argument("-o", "--output", required=True, help="output folder for the zip")
    p.add_argument("--model", help="package .npz to bundle (default: the embedded model)")
    p.set_defaults(run=cmd_blender_package)

    p = sub.add_parser("build-default", help="regenerate the embedded default model")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=cmd_build_default)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG}: error: out of memory (an input is larger than this machine holds)", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        print(f"{PROG}: error: {error_line(err)}", file=sys.stderr)
        return 1
    return 0


def error_line(err: BaseException) -> str:
    """One line for an input-caused error; never advice to load pickles unsafely."""
    from .io.errors import clean_message

    if isinstance(err, KeyError):
        message = f"missing {err}"
    elif isinstance(err, OSError) and err.filename and err.strerror:
        message = f"{err.filename}: {err.strerror}"
    else:
        message = str(err)
    lines = [line for line in message.splitlines() if line.strip()]
    return clean_message(" ".join(lines) if lines else type(err).__name__)


if __name__ == "__main__":
    sys.exit(main())

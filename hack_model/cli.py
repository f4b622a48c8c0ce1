"""The `hack-model` command line: thin wrappers around the library.

Every command reports a problem in one line on stderr and exits non-zero;
outputs are written atomically and existing files are kept unless --overwrite.
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
        f"larynx:      {'yes' if data.has_larynx else 'no'}",
        f"landmarks:   {0 if data.landmark_indices is None else len(data.landmark_indices)}",
        f"action units: {len(data.action_unit_names)}: {', '.join(data.action_unit_names) or '-'}",
        f"UVs:         {'yes' if data.uv_coords is not None else 'no'}",
    ]
    if data.range_of_motion is not None:
        lines.append("range of motion (deg, flex-ext / lateral / axial):")
        for name, rom in zip(data.bone_names, data.range_of_motion):
            lines.append(f"  {name:<6} {rom[0]:6.1f} {rom[1]:6.1f} {rom[2]:6.1f}")
    print("\n".join(lines))


def cmd_convert(args: argparse.Namespace) -> None:
    from .io.npz import save_model
    from .loading import load_model

    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"{out}: the output must be a .npz file")
    _refuse_overwrite(out, args.overwrite)
    data = load_model(args.source)
    save_model(data, out)
    print(
        f"wrote {out} ({data.name}: {data.num_vertices} vertices, {data.num_shape} shape, "
        f"{data.num_expression} expression, {data.num_bones} bones)"
    )


def _evaluate(model_path: str | None, params_path: str | None):
    """The model and its vertices [B, V, 3] (numpy) for a parameter file (neutral without one)."""
    import torch

    from .model import HACK
    from .params import forward_arguments, load_params

    params = load_params(params_path) if params_path else {}
    model = HACK(model_path)
    with torch.no_grad():
        return model, model(**forward_arguments(params)).vertices.numpy()


def cmd_export(args: argparse.Namespace) -> None:

    from .io.mesh import MESH_WRITERS, PolygonMesh, write_mesh

    out = Path(args.output)
    if out.suffix.lower() not in MESH_WRITERS:
        raise ValueError(f"{out}: unsupported mesh format '{out.suffix}' (use .obj or .ply)")
    model, vertices = _evaluate(args.model, args.params)
    frames = range(len(vertices)) if args.frame is None else [args.frame]
    if args.frame is not None and not 0 <= args.frame < len(vertices):
        raise ValueError(f"--frame {args.frame} is out of range: the parameters have {len(vertices)} frames")
    paths = [out] if len(frames) == 1 else [out.with_name(f"{out.stem}_{i:04d}{out.suffix}") for i in frames]
    for path in paths:
        _refuse_overwrite(path, args.overwrite)
    d = model.data
    for path, index in zip(paths, frames):
        mesh = PolygonMesh(
            vertices[index], d.polygon_vertex_indices, d.polygon_sizes, d.uv_coords, d.polygon_uv_indices
        )
        write_mesh(path, mesh, overwrite=args.overwrite)
    print(
        f"wrote {paths[0]}" if len(paths) == 1 else f"wrote {len(paths)} meshes: {paths[0]} ... {paths[-1]}"
    )


def cmd_build_default(args: argparse.Namespace) -> None:
    from .default_model import build_default_model
    from .io.npz import save_model

    out = Path(args.output)
    _refuse_overwrite(out, args.overwrite)
    start = time.perf_counter()
    data = build_default_model(seed=args.seed)
    save_model(data, out)
    print(
        f"wrote {out} in {time.perf_counter() - start:.1f} s "
        f"({out.stat().st_size / 1e6:.1f} MB, {data.num_vertices} vertices)"
    )


def cmd_render(args: argparse.Namespace) -> None:

    from .images import save_png
    from .render import render_mesh
    from .texture import preview_albedo

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the output must be a .png file")
    _refuse_overwrite(out, args.overwrite)
    model, vertices = _evaluate(args.model, args.params)
    if not 0 <= args.frame < len(vertices):
        raise ValueError(f"--frame {args.frame} is out of range: the parameters have {len(vertices)} frames")
    view = (args.yaw, args.pitch) if args.yaw is not None else args.view
    image = render_mesh(
        vertices[args.frame],
        model.data.triangles(),
        view=view,
        size=args.size,
        transparent=args.transparent,
        vertex_colors=preview_albedo(model.data),
    )
    save_png(out, image)
    print(f"wrote {out}")


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import animate, load_sequence, make_demo
    from .model import HACK

    start = time.perf_counter()
    out = Path(args.out)
    sequence = load_sequence(args.sequence) if args.sequence else None  # fail before rendering
    model = HACK(args.model)
    make_demo(model, out)
    print(f"stills took {time.perf_counter() - start:.1f} s")
    if sequence is not None:
        target = out / "sequence.mp4"
        _refuse_overwrite(target, True)
        path = animate(model, sequence, target, fps=args.fps, max_frames=args.max_frames)
        print(f"wrote {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")


def cmd_blender_package(args: argparse.Namespace) -> None:
    from .blender_package import build_blender_package

    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = build_blender_package(out_dir, args.model)
    print(f"wrote {path} (Blender: Preferences > Get Extensions > Install from Disk)")


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (add --overwrite to replace it)")
    if not path.parent.exists():
        raise FileNotFoundError(f"{path.parent}: output folder does not exist")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="HACK head-and-neck model tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="counts, names, units and provenance of a model")
    p.add_argument("model", nargs="?", help="model file or release folder (default: embedded model)")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("convert", help="an official release folder or smplx-style .pkl to the .npz format")
    p.add_argument("source", help="release folder, .pkl or .npz")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("export", help="evaluate parameters and write the mesh with UVs (.obj or .ply)")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--params", help="parameter .npz (API names or official symbols)")
    p.add_argument("--frame", type=int, help="write only this frame of a multi-frame file")
    p.add_argument("-o", "--output", required=True, help="output .obj or .ply (frames get _0000 suffixes)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("render", help="render a model (with parameters) to a PNG")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--params", help="parameter .npz (API names or official symbols)")
    p.add_argument("--frame", type=int, default=0, help="frame of a multi-frame parameter file")
    p.add_argument("--view", default="three-quarter", choices=["front", "side", "three-quarter", "back"])
    p.add_argument("--yaw", type=float, help="camera yaw in degrees (overrides --view)")
    p.add_argument("--pitch", type=float, default=0.0, help="camera pitch in degrees, with --yaw")
    p.add_argument("--size", type=int, default=512, help="image size in pixels")
    p.add_argument("--transparent", action="store_true", help="transparent background")
    p.add_argument("-o", "--output", required=True, help="output .png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(run=cmd_render)

    p = sub.add_parser("demo", help="picture tour: shapes, expressions, action units, neck, larynx")
    p.add_argument("--model", help="model (default: embedded model)")
    p.add_argument("--out", default="demo", help="output folder (default: demo)")
    p.add_argument("--sequence", help="parameter sequence (.npz, or a folder of *_list.npy) to animate")
    p.add_argument("--fps", type=float, default=30.0, help="animation frame rate")
    p.add_argument("--max-frames", type=int, help="animate at most this many frames")
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
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as err:
        message = str(err) if not isinstance(err, KeyError) else f"missing {err}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

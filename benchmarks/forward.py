"""Forward-pass speed, beside smplx's `lbs` and a per-vertex 4x4 blend on the same arrays.

Two models: the embedded default model (13,871 vertices; its expressions and pose
correctives are sparse, which the kernel exploits) and a HACK-size random model
(14,062 vertices, 100 shape, 55 expression, 72 pose-corrective directions, dense: no
sparsity to exploit). Prints median milliseconds per call at B=1 and per frame at
B=64, CPU float32 on --threads threads, the load average (the numbers mean little on a
busy machine: run it two or three times), and on CUDA B=1 and B=1024 when a GPU is
present, eager and through CUDA graphs (`hack_model.core.cuda_graphs`).

Columns: "fixed shape" (an animation playing: the shaped template is cached), "new
shape" (a new shape every call), smplx.lbs.lbs on the same arrays, and the reference
code's way (dense blendshapes, then a [V, 4, 4] blend with a Python loop over bones).

Below each table, the floor that memory sets at B=1: the bytes of directions a call must
read (the kernel's stored expression and pose-corrective directions, plus the shape
directions for a new shape; smplx and the loop read all of theirs densely) and the time a
sum over an array of that many bytes takes here, called over and over as the rows are (so
in whatever cache holds it). No kernel reading those bytes beats it; a target below it
cannot be met on this machine.

    python benchmarks/forward.py [--threads 2] [--repeats 50] [--device cpu|cuda|all]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import numpy as np
import torch

from hack_model import HACK
from hack_model.core.forward import KernelBasis
from hack_model.core.kinematics import forward_kinematics, relative_rest_transforms
from hack_model.core.rotations import axis_angle_to_matrix
from hack_model.model_data import ModelData
from hack_model.synthetic import random_model_data


def median_ms(fn, repeats: int, sync=lambda: None) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def random_params(data: ModelData, B: int, rng: np.random.Generator, device="cpu") -> dict:
    def tensor(values):
        return torch.tensor(values, dtype=torch.float32, device=device)

    return {
        "shape": tensor(rng.normal(size=(B, data.num_shape))),
        "expression": tensor(rng.uniform(0, 1, (B, data.num_expression))),
        "neck_pose": tensor(rng.normal(0, 0.1, (B, data.num_bones, 3))),
        "larynx_height": tensor(rng.uniform(-0.05, 0.05, (B, 1))),
        "larynx_scale": tensor(rng.uniform(0.5, 1.5, (B, 1))),
    }


def smplx_forward(data: ModelData):
    """smplx.lbs.lbs on the model's own arrays (no larynx: smplx has none)."""
    from smplx.lbs import lbs as smplx_lbs

    V, J = data.num_vertices, data.num_bones
    shapedirs = torch.tensor(
        np.concatenate([data.shape_directions, data.expression_directions]).transpose(1, 2, 0)
    )
    posedirs = torch.tensor(data.pose_directions[1:].reshape((J - 1) * 9, V * 3))
    template = torch.tensor(data.template_vertices)
    regressor = torch.tensor(data.skinning_weights.T / data.skinning_weights.sum(0)[:, None])
    parents = torch.tensor(data.bone_parents, dtype=torch.long)
    weights = torch.tensor(data.skinning_weights)

    def run(p):
        B = p["shape"].shape[0]
        betas = torch.cat([p["shape"], p["expression"]], 1)
        return smplx_lbs(
            betas, p["neck_pose"].reshape(B, -1), template, shapedirs, posedirs, regressor, parents, weights
        )

    return run


def loop_forward(data: ModelData):
    """The reference code's way: dense blendshapes, then every vertex's 4x4 matrix blended
    with a Python loop over the bones."""
    V, J = data.num_vertices, data.num_bones
    dirs = torch.tensor(
        np.concatenate([data.shape_directions, data.expression_directions]).reshape(-1, V * 3)
    )
    posedirs = torch.tensor(data.pose_directions[1:].reshape((J - 1) * 9, V * 3))
    template = torch.tensor(data.template_vertices).reshape(-1)
    weights = torch.tensor(data.skinning_weights)
    parents = [int(p) for p in data.bone_parents]
    rest = torch.tensor(data.bone_rest_transforms, dtype=torch.float32)
    relative = relative_rest_transforms(rest, parents)
    rest_inv = torch.linalg.inv(rest)

    def run(p):
        B = p["shape"].shape[0]
        R = axis_angle_to_matrix(p["neck_pose"])
        feats = (R[:, 1:] - torch.eye(3)).reshape(B, -1)
        coef = torch.cat([p["shape"], p["expression"]], 1)
        v = (template + coef @ dirs + feats @ posedirs).view(B, V, 3)
        A = forward_kinematics(R, relative, parents) @ rest_inv  # [B, J, 4, 4]
        T = torch.zeros(B, V, 4, 4)
        for b in range(J):
            T = T + weights[None, :, b, None, None] * A[:, b, None]
        return (T[..., :3, :3] @ v[..., None])[..., 0] + T[..., :3, 3]

    return run


def read_ms(megabytes: float, repeats: int) -> float:
    """Median ms of a sum over a float32 array of that many MB (the time to read it)."""
    array = torch.ones(max(1, int(megabytes * 1e6) // 4))
    return median_ms(array.sum, repeats)


def direction_megabytes(model: HACK) -> dict[str, float]:
    """MB of directions one B=1 call reads: the kernel's (fixed and new shape) and smplx's
    or the loop's (every direction dense)."""
    kernel = KernelBasis.from_basis(model.basis)
    blocks = kernel.expression_blocks
    expression = blocks.values if blocks is not None else kernel.expression_directions
    fixed = expression.nbytes + kernel.pose_directions.nbytes
    data = model.data
    dense = 4 * data.num_vertices * 3 * (data.num_shape + data.num_expression + 9 * (data.num_bones - 1))
    return {"fixed": fixed / 1e6, "new": (fixed + kernel.shape_directions.nbytes) / 1e6, "dense": dense / 1e6}


def floor_line(model: HACK, repeats: int) -> str:
    mb = direction_megabytes(model)
    floors = ", ".join(f"{k} {v:.1f} MB {read_ms(v, repeats):.3f} ms" for k, v in mb.items())
    return f"memory floor at B=1 (directions read per call, time to read them here): {floors}"


def rows_for(name: str, data: ModelData, repeats: int, rng: np.random.Generator) -> None:
    model = HACK(data)
    smplx_run, loop_run = smplx_forward(data), loop_forward(data)
    print(f"\n{name}: {data.num_vertices} vertices, {data.num_shape} shape, {data.num_expression} expression")
    print(
        f"{'batch':>6} {'fixed shape':>12} {'new shape':>10} {'smplx':>8} {'4x4 loop':>9}"
        f" {'smplx/fixed':>12} {'loop/new':>9}   (ms per frame)"
    )
    with torch.no_grad():
        for B in (1, 64):
            p = random_params(data, B, rng)
            fixed = median_ms(lambda p=p: model(**p), repeats) / B
            fresh = itertools.cycle([random_params(data, B, rng) for _ in range(8)])  # a new shape every call
            new = median_ms(lambda fresh=fresh: model(**next(fresh)), repeats) / B
            sm = median_ms(lambda p=p: smplx_run(p), repeats) / B
            loop = median_ms(lambda p=p: loop_run(p), max(5, repeats // 5)) / B
            print(
                f"{B:>6} {fixed:>12.4f} {new:>10.4f} {sm:>8.4f} {loop:>9.4f}"
                f" {sm / fixed:>11.1f}x {loop / new:>8.1f}x"
            )
    print(floor_line(model, repeats))


def cuda_rows(models: list[tuple[str, ModelData]], repeats: int, rng: np.random.Generator) -> None:
    """Per model: B=1 and B=1024 on CUDA, eager (cuda_graphs=False) and through CUDA graphs."""
    sync = torch.cuda.synchronize
    print(
        f"\nCUDA: {torch.cuda.get_device_name()}, torch {torch.__version__}, float32; median ms per call,"
        " each call followed by torch.cuda.synchronize (graphs apply while B * V <= 2^20)"
    )
    print(f"{'model':>32} {'batch':>6} {'eager':>9} {'graphed':>9} {'eager/frame':>12} {'graphed/frame':>14}")
    with torch.no_grad():
        for name, data in models:
            eager, graphed = HACK(data, cuda_graphs=False).to("cuda"), HACK(data).to("cuda")
            for B in (1, 1024):
                p = random_params(data, B, rng, "cuda")
                e = median_ms(lambda p=p, m=eager: m(**p), repeats, sync)
                g = median_ms(lambda p=p, m=graphed: m(**p), repeats, sync)
                print(f"{name:>32} {B:>6} {e:>9.4f} {g:>9.4f} {e / B:>12.5f} {g / B:>14.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "all"),
        default="all",
        help="cpu: the CPU rows (need smplx); cuda: the CUDA rows; all: both (CUDA when present)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    from hack_model.loading import load_model

    default = load_model(None)
    random = random_model_data(num_vertices=14062, num_shape=100, num_expression=55, seed=0)
    if args.device in ("cpu", "all"):
        print(
            f"HACK forward, float32, {args.threads} CPU threads, load average "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
        rows_for("default model", default, args.repeats, rng)
        rows_for("HACK-size random model (dense)", random, args.repeats, rng)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        cuda_rows([("default model", default), ("HACK-size random model", random)], args.repeats, rng)
    elif args.device == "cuda":
        raise SystemExit("--device cuda: CUDA is not available here")


if __name__ == "__main__":
    main()

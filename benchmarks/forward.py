"""Forward-pass speed on a HACK-size model, beside smplx's `lbs` on the same arrays.

HACK size: 14,062 vertices, 100 shape, 55 expression and 72 pose-corrective
directions (8 bones x 9), dense random arrays (no sparsity to exploit).
Prints median milliseconds per call at B=1 and per frame at B=64, CPU with
2 threads, float32; on CUDA also B=1 and B=1024 when a GPU is present.

    python benchmarks/forward.py [--threads 2] [--repeats 50]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = random_model_data(num_vertices=14062, num_shape=100, num_expression=55, seed=0)
    model = HACK(data)
    rng = np.random.default_rng(1)

    def params(B: int, device="cpu"):
        def tensor(values):
            return torch.tensor(values, dtype=torch.float32, device=device)

        return {
            "shape": tensor(rng.normal(size=(B, 100))),
            "expression": tensor(rng.uniform(0, 1, (B, 55))),
            "neck_pose": tensor(rng.normal(0, 0.1, (B, 8, 3))),
            "larynx_height": tensor(rng.uniform(-0.05, 0.05, (B, 1))),
            "larynx_scale": tensor(rng.uniform(0.5, 1.5, (B, 1))),
        }

    print(
        f"HACK forward, {data.num_vertices} vertices, float32, {args.threads} CPU threads, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    with torch.no_grad():
        for B in (1, 64):
            p = params(B)
            cached = median_ms(lambda p=p: model(**p), args.repeats)
            fresh = itertools.cycle([params(B) for _ in range(8)])  # a new shape every call
            uncached = median_ms(lambda fresh=fresh: model(**next(fresh)), args.repeats)
            rows.append((B, cached, uncached))

        from smplx.lbs import lbs as smplx_lbs

        V = data.num_vertices
        shapedirs = torch.tensor(
            np.concatenate([data.shape_directions, data.expression_directions]).transpose(1, 2, 0)
        )
        posedirs = torch.tensor(data.pose_directions[1:].reshape(63, V * 3))
        template = torch.tensor(data.template_vertices)
        regressor = torch.tensor(data.skinning_weights.T / data.skinning_weights.sum(0)[:, None])
        parents = torch.tensor(data.bone_parents, dtype=torch.long)
        weights = torch.tensor(data.skinning_weights)
        smplx_rows = []
        for B in (1, 64):
            p = params(B)
            betas = torch.cat([p["shape"], p["expression"]], 1)
            pose = p["neck_pose"].reshape(B, -1)
            ms = median_ms(
                lambda betas=betas, pose=pose: smplx_lbs(
                    betas, pose, template, shapedirs, posedirs, regressor, parents, weights
                ),
                args.repeats,
            )
            smplx_rows.append((B, ms))

    print(
        f"{'batch':>6} {'hack ms/call':>13} {'ms/frame':>9} {'(new shape) ms/frame':>21} "
        f"{'smplx ms/frame':>15} {'speed-up':>9}"
    )
    for (B, cached, uncached), (_, sm) in zip(rows, smplx_rows):
        print(
            f"{B:>6} {cached:>13.3f} {cached / B:>9.4f} {uncached / B:>21.4f} {sm / B:>15.4f} "
            f"{sm / cached:>8.1f}x"
        )

    if torch.cuda.is_available():
        gpu = HACK(data).to("cuda")
        print(f"CUDA: {torch.cuda.get_device_name()}")
        with torch.no_grad():
            for B in (1, 1024):
                p = params(B, "cuda")
                ms = median_ms(lambda p=p: gpu(**p), args.repeats, torch.cuda.synchronize)
                print(f"{B:>6} {ms:>13.3f} ms/call {ms / B:>9.4f} ms/frame")


if __name__ == "__main__":
    main()

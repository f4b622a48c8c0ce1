"""How the default model's shape space varies: proportions over random people, and the
extremes of every principal component at -3 and +3 standard deviations.

    python benchmarks/shape_space.py [--model M.npz] [--people 300]

Validity (no self-intersection at +-3 SD) is asserted by tests/test_default_shapes.py.
"""

from __future__ import annotations

import argparse

import numpy as np

from hack_model import load_model
from hack_model.default_model.measure import measurements

KEYS = (
    "head_breadth", "head_length", "cranial_breadth", "cranial_length", "nasion_chin",
    "neck_circumference", "nose_length", "jaw_width", "cheekbone_width", "lower_face_width",
    "mid_neck_width", "shoulder_width", "larynx_prominence", "top_y",
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="package .npz (default: the embedded model)")
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_model(args.model)
    P = data.template_vertices.astype(np.float64)
    S = data.shape_directions.astype(np.float64)
    rng = np.random.default_rng(args.seed)
    draws = rng.standard_normal((args.people, len(S)))
    people = [measurements(data, P + np.tensordot(c, S, 1)) for c in draws]
    extremes = [measurements(data, P + s * S[k]) for k in range(len(S)) for s in (-3.0, 3.0)]
    mean = measurements(data, P)
    print(f"{len(S)} components; {args.people} random N(0, 1) people; cm")
    print(f"{'measurement':<20} {'mean head':>10} {'SD':>7} {'min over +-3 SD':>16} {'max over +-3 SD':>16}")
    for key in KEYS:
        values = [m[key] for m in extremes]
        sd = np.std([m[key] for m in people])
        print(f"{key:<20} {mean[key]:>10.2f} {sd:>7.2f} {min(values):>16.2f} {max(values):>16.2f}")


if __name__ == "__main__":
    main()

"""Evaluate a batch of heads and write them as OBJ meshes with UVs.

    python examples/forward.py [--model MODEL] [--out DIR]

MODEL is a package .npz, an official HACK release folder or a smplx-style .pkl;
without it the embedded default model is used.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hack_model import HACK
from hack_model.io.mesh import PolygonMesh, write_mesh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file or release folder (default: embedded model)")
    parser.add_argument("--out", default="forward_out", help="output folder")
    args = parser.parse_args()

    model = HACK(args.model)
    B = 4
    torch.manual_seed(0)
    neck_pose = torch.zeros(B, model.num_bones, 3)
    neck_pose[1, -1, 0] = 0.3  # frame 1: nod the head forward at the top joint (oc1)
    neck_pose[2, :, 1] = 0.08  # frame 2: turn the head, spread over every vertebra
    with torch.no_grad():
        out = model(
            shape=torch.randn(B, 10) * torch.tensor([[0.0], [1.0], [1.0], [1.0]]),  # frame 0: mean shape
            expression=torch.zeros(B, model.num_expression),
            action_units={
                "AU12": torch.tensor([0.0, 1.0, 0.0, 0.5]),  # lip corner puller: a smile
                "AU27": torch.tensor([0.0, 0.0, 0.6, 0.0]),  # mouth stretch: open jaw
            },
            neck_pose=neck_pose,
            larynx_height=torch.tensor([[0.0], [0.0], [0.0], [0.03]]),
            larynx_scale=torch.tensor([[1.0], [1.0], [1.0], [1.8]]),
        )
    print(f"vertices {tuple(out.vertices.shape)}, joints {tuple(out.joints.shape)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    d = model.data
    for i, vertices in enumerate(out.vertices.numpy()):
        mesh = PolygonMesh(
            vertices, d.polygon_vertex_indices, d.polygon_sizes, d.uv_coords, d.polygon_uv_indices
        )
        print("wrote", write_mesh(out_dir / f"head_{i}.obj", mesh))


if __name__ == "__main__":
    main()

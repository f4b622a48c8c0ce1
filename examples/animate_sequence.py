"""Play a recorded parameter sequence through the model and write the animation.

    python examples/animate_sequence.py SEQUENCE [--model MODEL] [-o OUT.mp4] [--frames N]

SEQUENCE is an .npz of per-frame parameters (API names or official symbols) or a
folder of `*_list.npy` recordings such as the HACK release's `data/`. MP4 needs
imageio-ffmpeg (in the `render` extra); without it a GIF is written.
"""

from __future__ import annotations

import argparse

from hack_model import HACK
from hack_model.demo import animate, load_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence", help=".npz parameters or a folder of *_list.npy files")
    parser.add_argument("--model", help="model file or release folder (default: embedded model)")
    parser.add_argument("-o", "--output", default="sequence.mp4")
    parser.add_argument("--frames", type=int, default=150, help="animate at most this many frames")
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args()

    params = load_sequence(args.sequence)
    print("parameters:", {k: v.shape for k, v in params.items()})
    path = animate(HACK(args.model), params, args.output, fps=args.fps, max_frames=args.frames)
    print("wrote", path)


if __name__ == "__main__":
    main()

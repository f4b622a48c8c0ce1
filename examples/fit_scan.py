"""Make a synthetic head scan, fit the model to it without landmarks, print the report and
write a picture (scan | fit | distance map).

    python examples/fit_scan.py [--model M] [--out fit_example]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitting import fit_scan  # noqa: E402
from fitting.fit import evaluator_for  # noqa: E402
from fitting.report import build_report, render_fit  # noqa: E402
from fitting.synthetic_scans import make_scan  # noqa: E402
from hack_model import HACK  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model path (default: the embedded model)")
    parser.add_argument("--out", default="fit_example")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = HACK(args.model)
    # 100,000 points, 0.5 mm noise, 5% outliers, 20% of the surface missing, any orientation and units.
    scan = make_scan(evaluator_for(model), np.random.default_rng(args.seed))
    print(f"scan: {len(scan.points)} points in {scan.units}")
    result = fit_scan(model, scan.points)
    report = build_report(result, model.data, "synthetic scan")
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "units",
                    "confidence",
                    "converged",
                    "iterations",
                    "time_s",
                    "scan_to_model_mm",
                    "regions",
                )
            },
            indent=2,
        )
    )
    mm = {"mm": 1.0, "cm": 10.0, "m": 1000.0}[scan.units]
    v2v = np.linalg.norm(result.vertices - scan.true_vertices, axis=1) * mm
    print(f"vertex-to-vertex error against the truth: median {np.median(v2v):.2f} mm")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        from hack_model.images import save_png

        save_png(out / "fit.png", render_fit(result, model.data, scan.points))
        print(f"wrote {out / 'fit.png'}")
    except (ImportError, RuntimeError) as err:
        print(f"no picture: {err}")


if __name__ == "__main__":
    main()

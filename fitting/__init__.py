"""Fitting HACK to 3D head scans: `fit_scan`, `fit_registered` and the `hack-fit` command.

from hack_model import HACK
from fitting import fit_scan, load_scan
result = fit_scan(HACK(), load_scan("head.ply"))
result.params, result.scale, result.rotation, result.translation, result.vertices
"""

from __future__ import annotations

from .fit import FitOptions, FitResult, ScanData, evaluator_for, fit_registered, fit_scan
from .regions import REGION_NAMES, vertex_regions
from .scan_io import ScanError, find_scans, load_landmarks, load_scan
from .sequence import SequenceResult, fit_sequence

__all__ = [
    "REGION_NAMES",
    "FitOptions",
    "FitResult",
    "ScanData",
    "ScanError",
    "SequenceResult",
    "find_scans",
    "load_landmarks",
    "load_scan",
    "evaluator_for",
    "fit_registered",
    "fit_scan",
    "fit_sequence",
    "vertex_regions",
]

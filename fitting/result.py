"""What a fit takes (`FitOptions`) and what it returns (`FitResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .evaluator import ModelParams
from .optimize import DEFAULT_STAGES, Stage, State


@dataclass
class FitOptions:
    units: str = "auto"  # auto | mm | cm | m
    max_points: int = 200_000  # scans are subsampled to this many points first
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    sigma_cm: float = 0.1  # expected scan noise, sets the data weight against the priors
    landmark_weight: float = 1.0  # each landmark counts like this many (noise-free) scan points
    seed: int = 0
    report_points: int = 20_000  # scan points used for the distances in the report
    neck_hypotheses: int = 4  # neck twist/bend hypotheses tried after the rigid alignment (0: none)
    reset_after_probe: bool = True
    tilt_hypotheses: bool = True
    # Threads one fit works on (None: as many as torch is set to use, which hack-fit sets to the
    # cores per worker): the search's hypotheses and the distance queries run this many at a
    # time, each torch op on one thread (the fit's many small ops run fastest on one). The
    # result is the same for any count.
    threads: int | None = None
    min_confidence: float = 0.5  # below this the fit is flagged as failed
    # A doubted fit (0 < confidence < 1, the scan explained) is polished while its evidence
    # improves (fit._polish); a sequence's frames skip it: their neighbours and the shared
    # identity constrain them, and it tripled the time of a frame.
    polish_doubted: bool = True
    # Where the whole solver runs (model evaluation, correspondences, LM): cpu, cuda, ...;
    # None: the model's device.
    device: str | None = None


@dataclass
class FitResult:
    """Model parameters (API names), the similarity model (cm) -> scan (scan units)
    x_scan = scale * rotation @ x_model + translation, the fitted mesh and diagnostics.

    Distances are point-to-surface, in mm: scan_distances_mm from (sub-sampled) scan points
    to the fitted triangles; vertex_distances_mm from every fitted vertex to the scan's
    surface (its triangles, or local planes through a point cloud's neighbours), with
    vertex_covered saying which vertices the scan covers (their offset is along the scan's
    normal, not past its edge or across a hole)."""

    params: ModelParams
    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    vertices: np.ndarray  # [V, 3] fitted mesh in scan coordinates and units
    model_vertices: np.ndarray  # [V, 3] fitted mesh in model space (cm)
    scan_distances_mm: np.ndarray  # [N'] each (sub-sampled) scan point to the fitted surface
    scan_regions: np.ndarray  # [N'] region of the closest model triangle
    vertex_distances_mm: np.ndarray  # [V] each fitted vertex to the scan's surface
    units: str
    converged: bool  # the last stage's energy settled (less than 0.2% left to gain in a step)
    confidence: float
    iterations: int
    vertex_covered: np.ndarray | None = None  # [V] bool: the scan covers this vertex
    scan_sample: np.ndarray | None = None  # [N', 3] the scan points (scan units) of scan_distances_mm
    evidence: dict = field(default_factory=dict)  # the numbers the confidence comes from
    timings: dict[str, float] = field(default_factory=dict)
    stages: list = field(default_factory=list)
    failed: bool = False
    message: str = ""  # why the fit is doubted ("" when it is not)
    state: State | None = None  # the solver's final state (a start for a neighbouring frame)
    # Where the scale comes from: "units" (the scan's units, given or detected, and a trusted
    # fit of a head at that size), "fitted" (a stage with scale=True moved it) or "cannot
    # tell" (the fit is doubted or the scan's extent fits no head in mm, cm or m: the size
    # is not confirmed); scale_reason says why in words.
    scale_status: str = "units"
    scale_reason: str = ""

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """What `hack_model.params.save_params` writes: forward() arguments with a batch axis
        plus scale, rotation and translation (model -> scan)."""
        out = self.params.forward_arguments()
        out["scale"] = np.array(self.scale, np.float64)
        out["rotation"] = self.rotation.astype(np.float64)
        out["translation"] = self.translation.astype(np.float64)
        return out

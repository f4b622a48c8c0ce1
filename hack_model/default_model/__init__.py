"""The procedural default HACK model shipped with the package (no downloads needed).

`build_default_model(seed=0)` regenerates `hack_model/assets/default_model.npz`
deterministically (about 15 s on two cores). Modules:

- `sdf`: the signed-distance sculpt (cranium, face, jaw, nose, lips, eyes, ears, neck);
- `head_mesh`: the quad grid shrink-wrapped onto it, eye and mouth slits, eyeballs,
  mouth bag, crown cap, UVs, mirror map and the 68 landmarks;
- `skeleton`: the eight cervical bones, skinning weights and ranges of motion;
- `expressions`: the 55 ARKit/ICT blendshapes (hinged jaw, lids, gaze, muscles);
- `larynx`: the larynx map and direction;
- `shape_space`: PCA of generated heads;
- `pose_correctives`: correctives fitted against dual-quaternion skinning;
- `mesh_checks`, `measure`: self-intersection, angle and anthropometric checks.
"""

from .build import EXPRESSION_NAMES, build_default_model

__all__ = ["EXPRESSION_NAMES", "build_default_model"]

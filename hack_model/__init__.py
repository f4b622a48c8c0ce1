"""HACK: a parametric head-and-neck model (shape, expression, larynx, cervical spine).

Names are imported lazily so that numpy-only parts (`hack_model.io.npz`,
`hack_model.model_data`, `hack_model.params`) work without torch, for example
inside Blender.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HACK": "hack_model.model",
    "HACKOutput": "hack_model.model",
    "ModelData": "hack_model.model_data",
    "ModelDataError": "hack_model.model_data",
    "load_model": "hack_model.loading",
    "ACTION_UNITS": "hack_model.action_units",
    "default_action_unit_table": "hack_model.action_units",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hack_model' has no attribute {name!r}")

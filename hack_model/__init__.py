"""HACK: a parametric head-and-neck model (shape, expression, larynx, cervical spine)."""

from .action_units import ACTION_UNITS, default_action_unit_table
from .loading import load_model
from .model import HACK, HACKOutput
from .model_data import ModelData, ModelDataError

__all__ = [
    "ACTION_UNITS",
    "HACK",
    "HACKOutput",
    "ModelData",
    "ModelDataError",
    "default_action_unit_table",
    "load_model",
]
__version__ = "0.1.0"

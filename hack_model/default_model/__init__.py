"""The procedural default HACK model shipped with the package (no downloads needed)."""

from .build import EXPRESSION_NAMES, build_default_model

__all__ = ["EXPRESSION_NAMES", "build_default_model"]

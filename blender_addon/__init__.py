"""HACK head-and-neck model for Blender: a rigged head driven by keyframeable sliders.

Built with `hack-model blender-package -o DIR`, which vendors the package's
numpy-only modules into `_vendor/` and bundles the default model.
"""

from __future__ import annotations

from . import operators, panels, properties

_MODULES = (properties, operators, panels)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()

"""Build the installable Blender extension zip of `blender_addon/`.

The add-on reuses the package's numpy-only modules; they are copied into the
zip's `_vendor/hack_model/` here, at packaging time, so the repository keeps a
single source of truth. The embedded default model (or `model_path`) is bundled
as `models/default_model.npz`.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from .io.atomic import atomic_output

PACKAGE_DIR = Path(__file__).resolve().parent
ADDON_DIR = PACKAGE_DIR.parent / "blender_addon"
DEFAULT_MODEL = PACKAGE_DIR / "assets" / "default_model.npz"
# numpy-only modules the add-on imports (relative imports only, no torch).
VENDORED_MODULES = (
    "model_data.py",
    "params.py",
    "anatomy.py",
    "action_units.py",
    "io/__init__.py",
    "io/npz.py",
    "io/atomic.py",
    "io/errors.py",
    "io/npy.py",
    "io/limits.py",
    "core/__init__.py",
    "core/numpy_math.py",
)
ADDON_SUFFIXES = (".py", ".toml")
_VENDOR_INIT = '"""numpy-only modules of hack-model, vendored by hack_model.blender_package."""\n'


def _manifest(addon_dir: Path) -> dict[str, str]:
    """The manifest's top-level string keys (tomllib needs Python 3.11; this runs on 3.10)."""
    text = (addon_dir / "blender_manifest.toml").read_text()
    return dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', text, re.MULTILINE))


def build_blender_package(out_dir: str | os.PathLike, model_path: str | os.PathLike | None = None) -> Path:
    """Write `<id>-<version>.zip` into out_dir and return its path.

    model_path: a package-format `.npz` to bundle instead of the embedded default
    model. Raises FileNotFoundError when neither exists and ValueError when the
    model is not a package `.npz` or the add-on sources are missing.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: output folder does not exist")
    if not (ADDON_DIR / "blender_manifest.toml").is_file():
        raise FileNotFoundError(f"{ADDON_DIR}: the add-on sources are missing (blender_manifest.toml)")
    model = Path(model_path) if model_path is not None else DEFAULT_MODEL
    if not model.is_file():
        if model_path is not None:
            raise FileNotFoundError(f"{model}: no such model file")
        raise FileNotFoundError(
            f"{DEFAULT_MODEL} is missing: build it with `hack-model build-default -o {DEFAULT_MODEL}` "
            "or bundle another model with --model PATH (a package .npz, see `hack-model convert`)"
        )
    _check_model(model)
    manifest = _manifest(ADDON_DIR)
    target = out / f"{manifest['id']}-{manifest['version']}.zip"
    with atomic_output(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for source in sorted(ADDON_DIR.iterdir()):
                if source.is_file() and source.suffix in ADDON_SUFFIXES:
                    archive.write(source, source.name)
            archive.writestr("_vendor/__init__.py", _VENDOR_INIT)
            archive.writestr("_vendor/hack_model/__init__.py", _VENDOR_INIT)
            for name in VENDORED_MODULES:
                text = (PACKAGE_DIR / name).read_text()
                _check_vendorable(name, text)
                archive.writestr(f"_vendor/hack_model/{name}", text)
            # Already compressed; storing it again saves time at install.
            archive.write(model, "models/default_model.npz", compress_type=zipfile.ZIP_STORED)
    return target


def _check_model(model: Path) -> None:
    """Refuse a file the add-on could not load, before building anything."""
    from .io.npz import load_model_npz

    if model.suffix.lower() != ".npz":
        raise ValueError(f"{model}: the add-on reads package .npz models (convert with `hack-model convert`)")
    load_model_npz(model)


def _check_vendorable(name: str, text: str) -> None:
    """A vendored module may import numpy, the standard library and its siblings only."""
    for match in re.finditer(r"^\s*(?:from|import)\s+([\w.]+)", text, re.MULTILINE):
        module = match.group(1)
        if module.startswith(".") or module.split(".")[0] in _ALLOWED_IMPORTS:
            continue
        raise ValueError(f"hack_model/{name} imports {module}: it cannot be vendored into the add-on")


_ALLOWED_IMPORTS = {
    "__future__",
    "numpy",
    "collections",
    "contextlib",
    "dataclasses",
    "json",
    "math",
    "os",
    "struct",
    "pathlib",
    "tempfile",
    "typing",
    "zipfile",
    "zlib",
}

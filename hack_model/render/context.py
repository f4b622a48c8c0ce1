"""The process's one GL context: pyrender on Mesa's EGL, created lazily, resized in place,
forgotten in a forked child, freed at exit."""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
import threading


class RenderUnavailableError(RuntimeError):
    """pyrender or an EGL OpenGL context is not available in this process."""


lock = threading.RLock()
_renderer = None  # the process's single pyrender.OffscreenRenderer
_pyrender = None


def import_pyrender():
    """Import pyrender with PyOpenGL on EGL (headless), or raise RenderUnavailableError."""
    global _pyrender
    if _pyrender is not None:
        return _pyrender
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault(
        "MESA_SHADER_CACHE_DIR", os.path.join(tempfile.gettempdir(), "hack_model_mesa_cache")
    )
    platform = os.environ["PYOPENGL_PLATFORM"]
    if platform != "egl":
        raise RenderUnavailableError(
            f"PYOPENGL_PLATFORM={platform!r}, but hack_model.render needs 'egl' for headless "
            "rendering: unset it or set it to 'egl' before anything imports OpenGL"
        )
    gl_platform = sys.modules.get("OpenGL.platform")
    if gl_platform is not None:
        current = type(getattr(gl_platform, "PLATFORM", None)).__name__
        if current != "EGLPlatform":
            raise RenderUnavailableError(
                f"OpenGL was already imported with the {current} platform; import "
                "hack_model.render (or set PYOPENGL_PLATFORM=egl) before anything imports "
                "OpenGL, pyrender or pyglet"
            )
    try:
        import pyrender
    except Exception as err:  # ImportError, or EGL libraries missing at import time
        raise RenderUnavailableError(
            f"cannot import pyrender ({type(err).__name__}: {err}); install the render extra "
            "(pip install pyrender-maintained) and the EGL libraries "
            "(apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgl1)"
        ) from err
    _pyrender = pyrender
    return pyrender


def get_renderer(width: int, height: int):
    """The module's OffscreenRenderer, created on first use and resized in place."""
    global _renderer
    pyrender = import_pyrender()
    if _renderer is None:
        try:
            _renderer = pyrender.OffscreenRenderer(width, height)
        except Exception as err:
            raise RenderUnavailableError(
                f"cannot create an EGL OpenGL context ({type(err).__name__}: {err}); "
                "install libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"
            ) from err
        atexit.register(close_renderer)
    elif (_renderer.viewport_width, _renderer.viewport_height) != (width, height):
        # EGL renders into framebuffer objects: pyrender rebuilds them at the new size.
        _renderer.viewport_width = width
        _renderer.viewport_height = height
    return _renderer


def _forget_renderer_in_child() -> None:
    # A forked child cannot use the parent's EGL context; let it create its own.
    global _renderer
    _renderer = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_renderer_in_child)


def close_renderer() -> None:
    """Free the module's GL context (a later render creates a new one)."""
    global _renderer
    with lock:
        if _renderer is not None:
            try:
                _renderer.delete()
            finally:
                _renderer = None


def renderer_info() -> dict[str, str]:
    """GL vendor/renderer/version strings of the module's context (e.g. Mesa llvmpipe)."""
    with lock:
        renderer = get_renderer(8, 8)
        from OpenGL import GL

        renderer._platform.make_current()
        try:
            return {
                key: GL.glGetString(name).decode()
                for key, name in (
                    ("vendor", GL.GL_VENDOR),
                    ("renderer", GL.GL_RENDERER),
                    ("version", GL.GL_VERSION),
                )
            }
        finally:
            renderer._platform.make_uncurrent()

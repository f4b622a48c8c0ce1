"""The model's albedo texture (`ModelData.texture_png`) as an image and as vertex colours.

Kept out of `model_data` (which the Blender add-on vendors with numpy alone): decoding the
PNG needs Pillow.
"""

from __future__ import annotations

import numpy as np

from .model_data import ModelData


def texture_image(data: ModelData) -> np.ndarray | None:
    """The model's albedo texture as sRGB floats [H, W, 3] in [0, 1] (row 0 is v = 1), or None."""
    if data.texture_png is None:
        return None
    import io

    from PIL import Image

    with Image.open(io.BytesIO(np.asarray(data.texture_png, np.uint8).tobytes())) as im:
        return np.asarray(im.convert("RGB"), np.float64) / 255.0


def texture_vertex_colors(data: ModelData) -> np.ndarray | None:
    """The texture sampled (bilinearly) at each vertex's UV: sRGB [V, 3], or None."""
    img = texture_image(data)
    if img is None or data.vertex_uvs is None:
        return None
    H, W = img.shape[:2]
    uv = np.clip(np.asarray(data.vertex_uvs, np.float64), 0.0, 1.0)
    fx, fy = uv[:, 0] * W - 0.5, (1.0 - uv[:, 1]) * H - 0.5
    x0 = np.clip(np.floor(fx).astype(int), 0, W - 2)
    y0 = np.clip(np.floor(fy).astype(int), 0, H - 2)
    tx, ty = np.clip(fx - x0, 0, 1)[:, None], np.clip(fy - y0, 0, 1)[:, None]
    top = img[y0, x0] * (1 - tx) + img[y0, x0 + 1] * tx
    bot = img[y0 + 1, x0] * (1 - tx) + img[y0 + 1, x0 + 1] * tx
    return np.clip(top * (1 - ty) + bot * ty, 0.0, 1.0)


def preview_albedo(data: ModelData) -> np.ndarray | None:
    """What renderers colour the skin with: the texture at the vertices' UVs when the model
    has one, else its vertex colours (sRGB [V, 3]), else None."""
    tex = texture_vertex_colors(data)
    return tex if tex is not None else data.vertex_colors

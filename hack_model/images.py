"""2D image helpers for renders: labels, colour bars, contact sheets, atomic PNG writing.

Pillow and numpy only (no GL), so this module imports anywhere. Images are numpy
uint8 arrays [H, W, 3] (RGB) or [H, W, 4] (RGBA); float arrays in 0..1 are accepted too.
Every function returns a new array and leaves its input untouched.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormaps import colormap

Color = tuple[int, int, int] | tuple[int, int, int, int]

# Tried in order; Pillow also searches the system font folders for bare names.
_FONT_CANDIDATES = (
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "LiberationSans-Regular.ttf",
    "Arial.ttf",
    "Helvetica.ttc",
)


@functools.lru_cache(maxsize=32)
def get_font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A TrueType font of `size` pixels: DejaVu Sans if installed, else Pillow's own."""
    size = max(6, int(size))
    for name in _FONT_CANDIDATES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:  # Pillow >= 10.1 ships a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - old Pillow: fixed-size bitmap font
        return ImageFont.load_default()


def as_uint8(image: np.ndarray) -> np.ndarray:
    """[H, W] / [H, W, 3] / [H, W, 4] uint8 or float-in-0..1 -> uint8 [H, W, 3|4] (copy)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"image must be uint8 or float in 0..1, got {array.dtype}")
        array = np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image must be [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    return np.array(array, copy=True)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _contrast_color(rgb: np.ndarray) -> tuple[int, int, int]:
    """Near-black on light backgrounds, near-white on dark ones."""
    luminance = float(np.dot(np.asarray(rgb, np.float64)[:3], (0.2126, 0.7152, 0.0722)))
    return (20, 20, 24) if luminance > 140 else (240, 240, 240)


def _default_font_size(height: int) -> int:
    # ~3% of the image height, never smaller than readable.
    return max(11, round(height * 0.032))


def add_label(
    image: np.ndarray,
    text: str,
    *,
    position: str = "top-left",
    font_size: int | None = None,
    color: Color | None = None,
    background: Color | None = None,
    margin: int | None = None,
) -> np.ndarray:
    """Draw `text` in a corner or edge of `image` [H, W, 3|4]; returns a new uint8 image.

    position: "top-left", "top", "top-right", "bottom-left", "bottom", "bottom-right".
    color: text colour (default: black or white, whichever contrasts with the corner).
    background: optional box colour behind the text (RGBA allowed, e.g. (255,255,255,160)).
    Multi-line text ("\\n") is supported.
    """
    out = as_uint8(image)
    height, width = out.shape[:2]
    font = get_font(font_size or _default_font_size(height))
    margin = max(2, round(height * 0.015)) if margin is None else margin
    mode = "RGBA" if out.shape[2] == 4 else "RGB"
    canvas = Image.fromarray(out, mode)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
    text_w, text_h = right - left, bottom - top

    vertical, _, horizontal = position.partition("-")
    if position in ("top", "bottom"):
        vertical, horizontal = position, "center"
    if vertical not in ("top", "bottom") or horizontal not in ("left", "right", "center"):
        raise ValueError(f"unknown label position {position!r}")
    x = {"left": margin, "right": width - margin - text_w, "center": (width - text_w) // 2}
    x0 = x[horizontal]
    y0 = margin if vertical == "top" else height - margin - text_h
    if color is None:
        patch = out[max(0, y0) : y0 + text_h + 1, max(0, x0) : x0 + text_w + 1]
        patch = patch.reshape(-1, out.shape[2]) if patch.size else out[:1, :1].reshape(1, -1)
        if out.shape[2] == 4 and patch[:, 3].mean() < 128:
            color = (20, 20, 24)  # over transparency: dark text, as on a light page
        else:
            color = _contrast_color(patch[:, :3].mean(0))
    if background is not None:
        pad = max(2, text_h // 4)
        box = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        ImageDraw.Draw(box).rectangle(
            (x0 - pad, y0 - pad, x0 + text_w + pad, y0 + text_h + pad), fill=tuple(background)
        )
        canvas = Image.alpha_composite(canvas.convert("RGBA"), box).convert(mode)
        draw = ImageDraw.Draw(canvas)
    fill = tuple(color) if mode == "RGB" else (*tuple(color)[:3], 255)
    draw.multiline_text((x0 - left, y0 - top), text, font=font, fill=fill[: len(mode)])
    return np.asarray(canvas).copy()


def format_tick(value: float, span: float) -> str:
    """A tick label with as many decimals as the range `span` needs (0 for span >= 10)."""
    span = abs(span) if span and math.isfinite(span) else max(abs(value), 1.0)
    decimals = int(np.clip(1 - math.floor(math.log10(span)), 0, 6))
    text = f"{value:.{decimals}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text  # no "-0.0"


def _colormap_table(cmap: str | np.ndarray) -> np.ndarray:
    if isinstance(cmap, str):
        return colormap(cmap)
    table = np.asarray(cmap, np.float64)
    if table.ndim != 2 or table.shape[1] < 3:
        raise ValueError(f"colormap table must be [N, 3], got {table.shape}")
    return table[:, :3]


def colorbar_width(height: int) -> int:
    """Width in pixels of the panel draw_colorbar appends to an image `height` tall."""
    return max(64, round(height * 0.2))


def draw_colorbar(
    image: np.ndarray,
    vmin: float,
    vmax: float,
    cmap: str | np.ndarray = "viridis",
    unit: str = "",
    *,
    label: str | None = None,
    width: int | None = None,
    ticks: int = 3,
    font_size: int | None = None,
) -> np.ndarray:
    """Append a vertical colour bar panel to the right of `image` [H, W, 3|4].

    Returns [H, W + width, 3|4] (width defaults to colorbar_width(H)). The bar runs from
    vmin (bottom) to vmax (top) with `ticks` evenly spaced values (3: min, mid, max);
    the unit (e.g. "mm") is written above the bar, `label` (if any) above that.
    The panel takes the colour of the image's top-left pixel (transparent stays
    transparent) so it blends with a rendered background.
    """
    base = as_uint8(image)
    height, img_w, channels = base.shape
    width = colorbar_width(height) if width is None else int(width)
    table = _colormap_table(cmap)

    panel_bg = base[0, 0].copy()
    panel = np.empty((height, width, channels), np.uint8)
    panel[:] = panel_bg
    mode = "RGBA" if channels == 4 else "RGB"
    canvas = Image.fromarray(panel, mode)
    draw = ImageDraw.Draw(canvas)
    font = get_font(font_size or max(10, round(height * 0.03)))
    text_color = _contrast_color(panel_bg[:3]) if channels == 3 or panel_bg[3] > 0 else (20, 20, 24)
    opaque = (*text_color, 255)[:channels]

    line_h = _text_size(draw, "0.9mm", font)[1]
    header = [t for t in (label, unit) if t]
    top = round(height * 0.12) + len(header) * (line_h + 4)
    bottom = height - round(height * 0.12)
    bar_h = max(bottom - top, 8)
    bar_w = max(8, round(width * 0.2))
    bar_x = max(4, round(width * 0.12))

    # Gradient: top row is vmax.
    t = np.linspace(1.0, 0.0, bar_h)
    idx = np.clip(np.round(t * (len(table) - 1)).astype(int), 0, len(table) - 1)
    rows = np.clip(table[idx] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    gradient = np.repeat(rows[:, None, :], bar_w, axis=1)
    if channels == 4:
        gradient = np.concatenate([gradient, np.full((bar_h, bar_w, 1), 255, np.uint8)], 2)
    canvas.paste(Image.fromarray(gradient, mode), (bar_x, top))
    draw.rectangle((bar_x - 1, top - 1, bar_x + bar_w, top + bar_h), outline=opaque)

    span = float(vmax) - float(vmin)
    for i in range(max(ticks, 2)):
        frac = i / (max(ticks, 2) - 1)
        value = float(vmin) + frac * span
        y = round(top + (1.0 - frac) * (bar_h - 1))
        draw.line((bar_x + bar_w, y, bar_x + bar_w + 4, y), fill=opaque)
        text = format_tick(value, span)
        tw, th = _text_size(draw, text, font)
        ty = min(max(y - th // 2, 0), height - th - 2)
        draw.text((bar_x + bar_w + 7, ty), text, font=font, fill=opaque, anchor="lt")
    y = top - 6 - line_h
    for text in reversed(header):
        tw = _text_size(draw, text, font)[0]
        x = max(2, min(bar_x, width - tw - 2))
        draw.text((x, y), text, font=font, fill=opaque, anchor="lt")
        y -= line_h + 4
    return np.concatenate([base, np.asarray(canvas)], axis=1)


def _fit(image: np.ndarray, cell: tuple[int, int], background: np.ndarray) -> np.ndarray:
    """Scale `image` to fit inside cell (w, h) keeping its aspect, centred on background."""
    cell_w, cell_h = cell
    h, w = image.shape[:2]
    scale = min(cell_w / w, cell_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    pil = Image.fromarray(image, "RGBA" if image.shape[2] == 4 else "RGB")
    if (new_w, new_h) != (w, h):
        pil = pil.resize((new_w, new_h), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (cell_w, cell_h), tuple(int(c) for c in background))
    offset = ((cell_w - new_w) // 2, (cell_h - new_h) // 2)
    out.paste(pil.convert("RGB"), offset, pil if pil.mode == "RGBA" else None)
    return np.asarray(out)


def compose_sheet(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    columns: int | None = None,
    title: str | None = None,
    cell_size: tuple[int, int] | None = None,
    *,
    padding: int = 8,
    background: tuple[int, int, int] = (255, 255, 255),
    font_size: int | None = None,
) -> np.ndarray:
    """Grid of images, each with its caption above it, and an optional sheet title.

    images: N arrays [h_i, w_i, 3|4]; titles: N captions (or None); columns defaults to
    ceil(sqrt(N)); cell_size (w, h) defaults to the largest image; each image is scaled to
    fit its cell keeping its aspect ratio (RGBA composited over `background`).
    Returns RGB uint8 [H, W, 3] with
        W = columns * cell_w + (columns + 1) * padding,
        H = title_h + rows * (caption_h + cell_h) + (rows + 1) * padding,
    where caption_h is 0 without titles and title_h is 0 without a sheet title.
    """
    arrays = [as_uint8(im) for im in images]
    if not arrays:
        raise ValueError("compose_sheet needs at least one image")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"{len(titles)} titles for {len(arrays)} images")
    columns = columns or math.ceil(math.sqrt(len(arrays)))
    rows = math.ceil(len(arrays) / columns)
    if cell_size is None:
        cell_size = (max(a.shape[1] for a in arrays), max(a.shape[0] for a in arrays))
    cell_w, cell_h = int(cell_size[0]), int(cell_size[1])
    font = get_font(font_size or max(12, round(cell_h * 0.045)))
    title_font = get_font(round((font_size or max(12, round(cell_h * 0.045))) * 1.35))

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    caption_h = _text_size(probe, "Ag", font)[1] + padding if titles else 0
    title_h = _text_size(probe, "Ag", title_font)[1] + 2 * padding if title else 0

    sheet_w = columns * cell_w + (columns + 1) * padding
    sheet_h = title_h + rows * (caption_h + cell_h) + (rows + 1) * padding
    bg = np.asarray(background, np.uint8)
    sheet = Image.new("RGB", (sheet_w, sheet_h), tuple(int(c) for c in bg))
    draw = ImageDraw.Draw(sheet)
    ink = _contrast_color(bg)
    if title:
        tw = _text_size(draw, title, title_font)[0]
        draw.text(((sheet_w - tw) // 2, padding), title, font=title_font, fill=ink, anchor="lt")
    for i, array in enumerate(arrays):
        row, col = divmod(i, columns)
        x = padding + col * (cell_w + padding)
        y = title_h + padding + row * (caption_h + cell_h + padding)
        if titles:
            text = str(titles[i])
            # Shorten captions that do not fit the cell.
            while text and _text_size(draw, text, font)[0] > cell_w and len(text) > 2:
                text = text[:-2] + "…"
            tw = _text_size(draw, text, font)[0]
            draw.text((x + (cell_w - tw) // 2, y), text, font=font, fill=ink, anchor="lt")
        sheet.paste(Image.fromarray(_fit(array, (cell_w, cell_h), bg)), (x, y + caption_h))
    return np.asarray(sheet).copy()


def save_png(path: str | os.PathLike, image: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write `image` [H, W, 3|4] as PNG atomically, creating the folder if needed. Returns the path.
    overwrite=False refuses (FileExistsError) to replace an existing file."""
    from .io.atomic import atomic_output

    path = Path(path)
    array = as_uint8(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB").save(tmp, format="PNG")
    return path


def load_png(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3|4]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB")).copy()

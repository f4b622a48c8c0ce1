"""Offscreen rendering (hack_model.render) and image helpers (hack_model.images).

Skipped as a whole when pyrender or an EGL OpenGL context is unavailable.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hack_model import images
from hack_model.io.mesh import read_obj
from hack_model.model_data import fan_triangulate

pytestmark = pytest.mark.render

render = pytest.importorskip("hack_model.render")
try:
    GL_INFO = render.renderer_info()
except render.RenderUnavailableError as err:  # no pyrender, no EGL, or OpenGL on GLX
    pytest.skip(f"offscreen EGL rendering unavailable: {err}", allow_module_level=True)

SHARED_DATA = Path(
    os.environ.get("HACK_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
)
ICT_OBJ = SHARED_DATA / "hack-release" / "model" / "000_generic_neutral_mesh.obj"
BLACK = (0.0, 0.0, 0.0)


def make_head() -> tuple[np.ndarray, np.ndarray]:
    """Head-like test mesh in cm: an ellipsoid skull over a cylinder neck. [V, 3], [F, 3]."""
    import trimesh

    skull = trimesh.creation.icosphere(subdivisions=4)
    skull.apply_scale((8.0, 11.0, 9.5))
    skull.apply_translation((0.0, 6.0, 0.5))
    neck = trimesh.creation.cylinder(radius=5.0, height=12.0, sections=48)
    neck.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    neck.apply_translation((0.0, -6.0, 0.0))
    head = trimesh.util.concatenate([skull, neck])
    return np.asarray(head.vertices, np.float64), np.asarray(head.faces, np.int64)


def load_obj_triangles(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] and fan-triangulated faces [F, 3] of an OBJ."""
    mesh = read_obj(path)
    return mesh.vertices, fan_triangulate(mesh.polygon_vertex_indices, mesh.polygon_sizes)


@pytest.fixture(scope="module")
def head():
    return make_head()


def foreground_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


def assert_framed(mask: np.ndarray, margin: float = 0.05) -> None:
    """Foreground non-empty, clear of a `margin` border, and not tiny."""
    height, width = mask.shape
    assert mask.any(), "nothing rendered"
    top, bottom, left, right = foreground_box(mask)
    my, mx = int(np.ceil(margin * height)), int(np.ceil(margin * width))
    assert top >= my and bottom < height - my, (top, bottom, height)
    assert left >= mx and right < width - mx, (left, right, width)
    # framed, not lost in the middle: the limiting side fills most of the image
    assert max((bottom - top) / height, (right - left) / width) > 0.6


def test_not_blank(head):
    image = render.render_mesh(*head, size=128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    foreground = np.any(image != 255, axis=2)
    assert 0.1 < foreground.mean() < 0.9
    assert image[foreground].std() > 5  # shaded, not a flat silhouette
    culled = render.render_mesh(*head, size=128, backfaces=False)
    assert np.any(culled != 255, axis=2).mean() > 0.1


def test_lazy_gl_import_and_platform_check():
    """Importing the module loads no GL; OpenGL already on GLX gives a clear error."""
    import subprocess
    import sys

    code = (
        "import os, sys; os.environ.pop('PYOPENGL_PLATFORM', None)\n"
        "from hack_model import render\n"
        "assert 'OpenGL' not in sys.modules and 'pyrender' not in sys.modules\n"
        "import OpenGL.GL\n"
        "try:\n"
        "    render.renderer_info()\n"
        "except render.RenderUnavailableError as err:\n"
        "    print('refused:', err)\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYOPENGL_PLATFORM", None)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "refused: OpenGL was already imported" in result.stdout


@pytest.mark.parametrize("view", ["front", "three-quarter", "side", "back", (30.0, 25.0)])
@pytest.mark.parametrize("size", [160, (240, 144), (144, 240)])
def test_whole_mesh_inside_frame(head, view, size):
    image = render.render_mesh(*head, view=view, size=size, background=BLACK)
    width, height = (size, size) if isinstance(size, int) else size
    assert image.shape == (height, width, 3)
    border = max(1, int(0.05 * min(width, height)))
    for edge in (image[:border], image[-border:], image[:, :border], image[:, -border:]):
        assert edge.max() == 0, "mesh touches the border"
    assert_framed(image.max(axis=2) > 0)


def test_views_differ(head):
    front = render.render_mesh(*head, size=128).astype(int)
    side = render.render_mesh(*head, view="side", size=128).astype(int)
    back = render.render_mesh(*head, view="back", size=128).astype(int)
    assert np.abs(front - side).mean() > 2
    # yaw/pitch numbers work like named views
    same = render.render_mesh(*head, view=(90.0, 0.0), size=128).astype(int)
    assert np.abs(same - side).max() <= 2
    assert not np.array_equal(front, back)


def red_blue_masks(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rgb = image[..., :3].astype(int)
    red = (rgb[..., 0] > 80) & (rgb[..., 0] > 2 * rgb[..., 2]) & (rgb[..., 0] > 2 * rgb[..., 1])
    blue = (rgb[..., 2] > 80) & (rgb[..., 2] > 2 * rgb[..., 0]) & (rgb[..., 2] > 2 * rgb[..., 1])
    return red, blue


def test_vertex_colors_and_orientation(head):
    vertices, triangles = head
    colors = np.where(vertices[:, :1] < 0, [[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]])
    front = render.render_mesh(vertices, triangles, vertex_colors=colors, size=160)
    red, blue = red_blue_masks(front)
    foreground = np.any(front != 255, axis=2)
    assert red.sum() > 0.3 * foreground.sum() and blue.sum() > 0.3 * foreground.sum()
    # Front view: the model's right side (-x) is on the image's left.
    assert np.nonzero(red)[1].mean() < np.nonzero(blue)[1].mean()
    # "side" (yaw 90) shows the model's left side (+x, blue here).
    side_red, side_blue = red_blue_masks(
        render.render_mesh(vertices, triangles, vertex_colors=colors, view="side", size=160)
    )
    assert side_blue.sum() > 10 * max(side_red.sum(), 1)


def test_heatmap(head):
    vertices, triangles = head
    values = vertices[:, 0] * 10.0  # mm
    colors = render.heatmap_colors(values, cmap="viridis")
    table = render.colormap("viridis")
    assert colors.shape == (len(values), 3)
    np.testing.assert_allclose(colors[values.argmin()], table[0], atol=1e-6)
    np.testing.assert_allclose(colors[values.argmax()], table[-1], atol=1e-6)

    image = render.render_heatmap(vertices, triangles, values, unit="mm", label="x", size=256)
    assert image.shape == (256, 256, 3)
    bar = image[:, 256 - images.colorbar_width(256) :].astype(int)
    # the colour bar shows both ends of viridis (yellow top, purple bottom)
    yellow = np.abs(bar - np.round(table[-1] * 255)).sum(axis=2) < 30
    purple = np.abs(bar - np.round(table[0] * 255)).sum(axis=2) < 30
    assert yellow.sum() > 20 and purple.sum() > 20
    assert np.nonzero(yellow)[0].mean() < np.nonzero(purple)[0].mean()
    # tick labels: dark text pixels in the panel
    assert (bar.max(axis=2) < 80).sum() > 30


def test_heatmap_colors_edge_cases():
    values = np.array([-2.0, 0.0, 2.0, np.nan])
    colors = render.heatmap_colors(values, cmap="coolwarm", nan_color=(0.5, 0.5, 0.5))
    table = render.colormap("coolwarm")
    np.testing.assert_allclose(colors[0], table[0], atol=1e-6)
    np.testing.assert_allclose(colors[2], table[-1], atol=1e-6)
    np.testing.assert_allclose(colors[3], 0.5)
    flat = render.heatmap_colors(np.ones(4), cmap="magma_r")  # vmin == vmax: no crash
    assert np.isfinite(flat).all()
    with pytest.raises(ValueError, match="unknown colormap"):
        render.colormap("nope")


def test_transparent_background(head):
    image = render.render_mesh(*head, transparent=True, size=128)
    assert image.shape == (128, 128, 4)
    alpha = image[..., 3]
    assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
    top, bottom, left, right = foreground_box(alpha > 0)
    assert alpha[(top + bottom) // 2, (left + right) // 2] == 255
    assert (alpha == 255).sum() > 0.1 * alpha.size


def test_batch_matches_single(head):
    vertices, triangles = head
    rng = np.random.default_rng(0)
    batch = vertices[None] + rng.normal(0.0, 0.05, (4, *vertices.shape))
    batch[2, :, 1] *= 1.1
    box = render.bounding_box(batch)
    frames = render.render_frames(batch, triangles, size=128, view="three-quarter")
    assert len(frames) == 4
    for i in (0, 2, 3):
        single = render.render_mesh(batch[i], triangles, size=128, view="three-quarter", frame=box).astype(
            int
        )
        diff = np.abs(single - frames[i])
        assert diff.max() <= 2 and diff.mean() < 0.05, (i, diff.max(), diff.mean())
    assert np.abs(frames[2].astype(int) - frames[0]).mean() > 0.5  # frames really differ


def test_sizes_share_one_renderer(head):
    shapes = [render.render_mesh(*head, size=s).shape for s in (96, (160, 90), 96)]
    assert shapes == [(96, 96, 3), (90, 160, 3), (96, 96, 3)]


def test_zoom_and_focus(head):
    vertices, triangles = head
    whole = render.render_mesh(vertices, triangles, size=128, background=BLACK)
    close = render.render_mesh(
        vertices, triangles, size=128, background=BLACK, zoom=3.0, focus=(0.0, -6.0, 5.0)
    )
    assert (close.max(axis=2) > 0).mean() > (whole.max(axis=2) > 0).mean()


def test_compose_sheet_grid():
    tiles = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    plain = images.compose_sheet(tiles, columns=3, padding=0)
    assert plain.shape == (2 * 48, 3 * 64, 3)
    assert (plain[:48, 64:128] == 40).all() and (plain[48:, 128:] == 255).all()

    sheet = images.compose_sheet(
        tiles, [f"tile {i}" for i in range(5)], columns=3, title="sheet", cell_size=(64, 48)
    )
    assert sheet.shape[1] == 3 * 64 + 4 * 8
    assert sheet.shape[0] > 2 * 48 + 3 * 8 + 20  # captions and the title take room
    assert (sheet < 100).any()  # text drawn


def test_labels_and_colorbar_on_rgba():
    rgba = np.zeros((100, 120, 4), np.uint8)
    labelled = images.add_label(rgba, "hello", position="bottom-right")
    assert labelled.shape == rgba.shape and labelled[..., 3].any()
    with_bar = images.draw_colorbar(rgba, 0.0, 5.0, "magma", "mm", width=40)
    assert with_bar.shape == (100, 160, 4)
    assert with_bar[:, 120:, 3].any() and with_bar[0, 0, 3] == 0
    assert images.format_tick(2.5, 5.0) == "2.5" and images.format_tick(-0.0, 1.0) == "0"


def test_save_png_atomic(tmp_path):
    image = (np.arange(30 * 20 * 3) % 256).astype(np.uint8).reshape(30, 20, 3)
    path = images.save_png(tmp_path / "sub" / "out.png", image)
    np.testing.assert_array_equal(images.load_png(path), image)
    images.save_png(path, image[::-1])  # replacing an existing file
    np.testing.assert_array_equal(images.load_png(path), image[::-1])
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.png"]


@pytest.mark.skipif(not ICT_OBJ.exists(), reason=f"shared head mesh not found at {ICT_OBJ}")
def test_real_head_views(tmp_path):
    vertices, triangles = load_obj_triangles(ICT_OBJ)
    views = ["front", "three-quarter", "side", "back"]
    renders = [render.render_mesh(vertices, triangles, view=v, size=256, transparent=True) for v in views]
    for image in renders:
        assert_framed(image[..., 3] > 0)
    sheet = images.compose_sheet(renders, views, columns=4, title="HACK generic neutral")
    images.save_png(tmp_path / "ict_views.png", sheet)


def test_default_model_preview_colours_show_lips_and_pupils():
    """The embedded model's vertex colours: red lips below the middle of the face, dark pupils
    either side of the nose above it; the plain skin material shows neither."""
    from hack_model import load_model

    data = load_model()
    vertices, triangles = data.template_vertices, data.triangles()
    # (600 px: the whole bust is framed, and at 400 px the pupils under the upper lids are
    # only about 3 pixels across)
    plain = render.render_mesh(vertices, triangles, size=600, transparent=True).astype(float)
    coloured = render.render_mesh(
        vertices, triangles, size=600, transparent=True, vertex_colors=data.vertex_colors
    ).astype(float)
    for image, expect in ((coloured, True), (plain, False)):
        inside = image[..., 3] > 0
        r, g = image[..., 0], image[..., 1]
        red = inside & (r > 60) & (g < 0.68 * r)
        dark = inside & (r < 40)
        assert (red.sum() > 200) == expect and (dark.sum() > 10) == expect
        if expect:
            rows, cols = np.nonzero(inside)
            middle_row, middle_col = rows.mean(), cols.mean()
            red_rows = np.nonzero(red)[0]
            dark_rows, dark_cols = np.nonzero(dark)
            assert np.median(red_rows) > np.median(dark_rows)
            assert (dark_cols < middle_col).any() and (dark_cols > middle_col).any()
            assert np.median(dark_rows) < middle_row


def test_model_output_and_model_give_the_preview_colours():
    import torch

    from hack_model import HACK
    from hack_model.texture import preview_albedo

    model = HACK()
    with torch.no_grad():
        out = model(expression={"jawOpen": 0.5})
    by_model = render.render_mesh(out, model, size=96)
    by_data = render.render_mesh(out.vertices[0], model.data, size=96)
    explicit = render.render_mesh(
        out.vertices[0].numpy(), model.faces, vertex_colors=preview_albedo(model.data), size=96
    )
    grey = render.render_mesh(out.vertices[0].numpy(), model.faces, size=96)
    assert np.array_equal(by_model, explicit) and np.array_equal(by_data, explicit)
    assert np.abs(by_model.astype(int) - grey.astype(int)).max() > 40  # lips and eyes show


def test_render_options_object_and_keywords(head):
    options = render.RenderOptions(view="side", size=(96, 64), background=BLACK)
    by_options = render.render_mesh(*head, options=options)
    by_keywords = render.render_mesh(*head, view="side", size=(96, 64), background=BLACK)
    assert np.array_equal(by_options, by_keywords)
    front = render.render_mesh(*head, options=options, view="front")  # keywords win
    assert not np.array_equal(front, by_options) and front.shape == (64, 96, 3)
    with pytest.raises(TypeError, match="did you mean zoom"):
        render.render_mesh(*head, zom=2.0)

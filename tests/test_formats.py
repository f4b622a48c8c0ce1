"""The package .npz format, the release-folder loader and mesh files."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from hack_model import HACK, ModelData, load_model
from hack_model.io.mesh import PolygonMesh, read_obj, write_obj, write_ply
from hack_model.io.npz import load_model_npz, save_model
from hack_model.synthetic import random_model_data


def assert_same_model(a: ModelData, b: ModelData) -> None:
    for f in dataclasses.fields(ModelData):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y), f.name
        elif f.name == "extras":
            assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x), f.name
        else:
            assert x == y, f.name


def test_npz_round_trip_is_exact(tmp_path):
    data = random_model_data(num_vertices=40, seed=1)
    data.extras["eyeball_vertices"] = np.arange(5, dtype=np.int32)
    data.landmark_indices = np.arange(10, dtype=np.int64)
    data.mirror_vertex_map = np.arange(40)[::-1].copy()
    data.vertex_colors = np.random.default_rng(0).uniform(0, 1, (40, 3)).astype(np.float32)
    path = save_model(data, tmp_path / "model.npz")
    assert_same_model(data, load_model_npz(path))


@pytest.mark.parametrize(
    "colors, message",
    [
        (np.zeros((39, 3)), r"vertex_colors must have shape \[40, 3\], got \[39, 3\]"),
        (np.full((40, 3), 1.5), r"vertex_colors must be sRGB values in \[0, 1\]"),
    ],
)
def test_bad_vertex_colors_are_named(colors, message):
    data = random_model_data(num_vertices=40, seed=1)
    data.vertex_colors = colors
    with pytest.raises(ValueError, match=message):
        data.validate()


def test_npz_loads_with_numpy_alone_and_without_pickles(tmp_path):
    path = save_model(random_model_data(num_vertices=20), tmp_path / "m.npz")
    code = (
        "import sys, numpy as np\n"
        f"d = np.load({str(path)!r}, allow_pickle=False)\n"
        "assert int(d['format_version']) == 1 and d['template_vertices'].shape == (20, 3)\n"
        "print(sorted(d.files)[:3]); assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_release_folder_loads_with_all_parts(release_dir):
    data = load_model(release_dir)
    assert data.num_vertices == 14062 and data.num_shape == 100 and data.num_expression == 55
    assert data.bone_names == ["c7t1", "c6c7", "c5c6", "c4c5", "c3c4", "c2c3", "c1c2", "oc1"]
    assert (data.polygon_sizes == 4).sum() == 14034
    assert data.uv_coords.shape == (14269, 2) and data.vertex_uvs.shape == (14062, 2)
    assert data.larynx_map.shape == (256, 256) and data.larynx_map.max() <= 1.0
    assert np.allclose(data.skinning_weights.sum(1), 1.0, atol=1e-5)
    assert len(data.landmark_indices) == 68 and "AU12" in data.action_unit_names
    # World rest frames built from the chain agree with Blender's matrix_local.
    import json

    bones = json.loads((release_dir / "model" / "bones_neutral.json").read_text())
    for b, name in enumerate(data.bone_names):
        assert np.allclose(data.bone_rest_transforms[b], bones[name]["matrix_local"], atol=1e-4)


def test_release_without_E_uses_blendshape_npy(release_dir, tmp_path):
    model_dir = release_dir / "model"
    for entry in model_dir.iterdir():
        if entry.name != "E.npy":
            os.symlink(entry, tmp_path / entry.name)
    fallback = load_model(tmp_path)
    original = load_model(model_dir)
    assert np.allclose(fallback.expression_directions, original.expression_directions, atol=1e-5)


def test_release_with_missing_files_names_them(release_dir, tmp_path):
    os.symlink(
        release_dir / "model" / "000_generic_neutral_mesh.obj", tmp_path / "000_generic_neutral_mesh.obj"
    )
    with pytest.raises(FileNotFoundError, match="missing release files: bones_neutral.json"):
        load_model(tmp_path)


def test_converted_release_evaluates_identically(release_model, tmp_path):
    path = save_model(release_model.data, tmp_path / "release.npz")
    reloaded = HACK(path)
    params = {"neck_pose": torch.full((2, 8, 3), 0.1), "shape": torch.ones(2, 100), "larynx_height": [[0.02]]}
    with torch.no_grad():
        assert torch.equal(release_model(**params).vertices, reloaded(**params).vertices)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a zip at all", "not a readable .npz model file"),
        (None, "not a hack-model file"),
    ],
)
def test_bad_model_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is None:
        np.savez(path, something=np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_object_arrays_in_npz_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("format_name.npy", "w") as handle:
            np.lib.format.write_array(handle, np.array({"a": 1}, dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled objects, refused"):
        load_model_npz(path)


def test_unknown_model_suffix_and_missing_path(tmp_path):
    (tmp_path / "model.fbx").write_text("x")
    with pytest.raises(ValueError, match="unknown model format '.fbx'"):
        load_model(tmp_path / "model.fbx")
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "nothing.npz")


def test_obj_round_trip_keeps_quads_and_uvs(tmp_path):
    mesh = PolygonMesh(
        vertices=np.random.default_rng(0).normal(size=(5, 3)),
        polygon_vertex_indices=np.array([0, 1, 2, 3, 1, 4, 2]),
        polygon_sizes=np.array([4, 3]),
        uv_coords=np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]]),
        polygon_uv_indices=np.array([0, 1, 2, 3, 1, 4, 2]),
    )
    back = read_obj(write_obj(tmp_path / "m.obj", mesh))
    assert np.allclose(back.vertices, mesh.vertices, atol=1e-6)
    assert np.array_equal(back.polygon_sizes, mesh.polygon_sizes)
    assert np.array_equal(back.polygon_vertex_indices, mesh.polygon_vertex_indices)
    assert np.allclose(back.uv_coords, mesh.uv_coords)
    import trimesh

    ply = trimesh.load(write_ply(tmp_path / "m.ply", mesh), process=False)
    assert len(ply.vertices) == 5 and len(ply.faces) == 3
    assert np.allclose(ply.visual.uv, mesh.vertex_uvs(), atol=1e-6)


def test_read_obj_reports_bad_lines(tmp_path):
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(ValueError, match=r"bad.obj:3: malformed 'f' line"):
        read_obj(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from hack_model.io.atomic import atomic_output

    target = tmp_path / "out.txt"
    target.write_text("precious")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "precious" and list(tmp_path.iterdir()) == [target]

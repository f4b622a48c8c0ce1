"""The Blender add-on, headless, against HACK.forward.

Needs Blender's Python module (`bpy==5.0.1`, Python 3.11, numpy<2) in its own
virtual environment: set HACK_BLENDER_PYTHON to its interpreter, e.g.

    python3.11 -m venv .venv-blender && .venv-blender/bin/pip install bpy==5.0.1 pytest
    HACK_BLENDER_PYTHON=$PWD/.venv-blender/bin/python python -m pytest tests/test_blender_addon.py

The add-on zip is built with `build_blender_package`; scripts in tests/blender/
run in the bpy interpreter (installing the zip as an extension into a temporary
user folder) and write .npz results that are compared here with HACK.forward.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hack_model import HACK  # noqa: E402
from hack_model.anatomy import pose_limits_rad  # noqa: E402
from hack_model.blender_package import DEFAULT_MODEL, build_blender_package  # noqa: E402
from hack_model.io.npz import load_model_npz, save_model  # noqa: E402
from hack_model.params import save_params  # noqa: E402
from hack_model.synthetic import random_model_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "blender"
TOLERANCE_CM = 1e-3
pytestmark = pytest.mark.blender


def load_rig_math():
    spec = importlib.util.spec_from_file_location("hack_rig_math", REPO / "blender_addon" / "rig_math.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rig_math = load_rig_math()


def blender_python() -> str:
    path = os.environ.get("HACK_BLENDER_PYTHON")
    if not path:
        pytest.skip(
            "HACK_BLENDER_PYTHON is not set (a Python 3.11 venv with bpy==5.0.1, see this file's docstring)"
        )
    if not Path(path).is_file():
        pytest.skip(f"HACK_BLENDER_PYTHON={path} does not exist")
    return path


def run_blender(script: str, *args: str, tmp: Path, timeout: float = 600) -> None:
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp / "blender_user"))
    proc = subprocess.run(
        [blender_python(), str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=tmp,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    blender_python()
    return tmp_path_factory.mktemp("blender")


@pytest.fixture(scope="module")
def addon_zip(workdir: Path) -> Path:
    model = None if DEFAULT_MODEL.is_file() else _random_model_file(workdir, seed=7)
    return build_blender_package(workdir, model_path=model)


def _random_model_file(folder: Path, seed: int = 0, vertices: int = 300, regressor: bool = False) -> Path:
    path = folder / f"random_{seed}{'_regressor' if regressor else ''}.npz"
    if not path.exists():
        data = random_model_data(num_vertices=vertices, num_shape=12, seed=seed)
        if regressor:  # joints as skinning-weighted means of the vertices: they move with shape
            weights = data.skinning_weights.T.astype(np.float64)
            data = data.replace(joint_regressor=(weights / weights.sum(1, keepdims=True)).astype(np.float32))
        save_model(data, path)
    return path


def make_cases(data, count: int, seed: int) -> dict[str, np.ndarray]:
    """Random sliders: case 0 expressions and action units only, case 1 neck only, then everything.

    SMPL-style models whose joint regressor sees the expressions regress joints from them
    too, which the rig's rest pose cannot follow: their cases keep expressions at zero."""
    rng = np.random.default_rng(seed)
    limits = pose_limits_rad(data.range_of_motion)
    ranges = rig_math.head_motion_ranges(limits)
    S, E, A, J = min(data.num_shape, 10), data.num_expression, len(data.action_unit_names), data.num_bones
    cases = {
        "shape": rng.normal(0, 1, (count, S)),
        "expression": rng.uniform(0, 0.5, (count, E)),
        "action_units": rng.uniform(0, 0.6, (count, A)),
        "direct_pose": rng.uniform(-0.3, 0.3, (count, J, 3)) * limits,
        "head_motion": rng.uniform(-0.25, 0.25, (count, 4)) * ranges,
    }
    cases["clamp_pose"] = np.zeros((J, 3))
    cases["clamp_pose"][-1, 0] = 2.0 * limits[-1, 0]  # twice the top joint's flexion limit
    cases["direct_pose"][0] = cases["head_motion"][0] = 0.0
    cases["shape"][:2] = cases["expression"][1] = cases["action_units"][1] = 0.0
    if rig_math.expressions_move_joints(data.joint_regressor, data.expression_directions):
        cases["expression"][:] = cases["action_units"][:] = 0.0
    if data.has_larynx:
        # Any height with the exact (Geometry Nodes) larynx; the last case uses the larynx
        # shape keys alone (as exported), which are exact at their knots.
        cases["larynx_height"] = rng.uniform(
            -rig_math.LARYNX_HEIGHT_LIMIT, rig_math.LARYNX_HEIGHT_LIMIT, count
        )
        cases["larynx_scale"] = rng.uniform(0.0, 2.0, count)
        cases["larynx_height"][:2], cases["larynx_scale"][:2] = 0.0, 1.0
        cases["larynx_exact"] = np.ones(count)
        knots = rig_math.larynx_knots(data.larynx_map.shape[0])
        cases["larynx_height"][-1] = rng.choice(knots[np.abs(knots) <= rig_math.LARYNX_HEIGHT_LIMIT + 1e-9])
        cases["larynx_exact"][-1] = 0.0
    return cases


def expected_vertices(model: HACK, cases: dict[str, np.ndarray]) -> np.ndarray:
    limits = pose_limits_rad(model.data.range_of_motion)
    poses = []
    for direct, sliders in zip(cases["direct_pose"], cases["head_motion"]):
        rotations = rig_math.combined_rotations(
            rig_math.axis_angle_to_matrix(direct), rig_math.head_motion_angles(sliders, limits)
        )
        poses.append(rig_math.matrix_to_axis_angle(rotations))
    args = {
        "shape": cases["shape"] if cases["shape"].shape[1] else None,
        "expression": cases["expression"],
        "action_units": cases["action_units"],
        "neck_pose": np.stack(poses),
    }
    if "larynx_height" in cases:
        args["larynx_height"] = cases["larynx_height"][:, None]
        args["larynx_scale"] = cases["larynx_scale"][:, None]
    with torch.no_grad():
        return model.to(torch.float64)(**args).vertices.numpy()


def run_rig_check(workdir: Path, addon_zip: Path, model_path: Path | None, name: str, count: int = 4):
    data = load_model_npz(model_path if model_path is not None else DEFAULT_MODEL)
    cases = make_cases(data, count, seed=len(name))
    cases_file = workdir / f"{name}_cases.npz"
    out = workdir / f"{name}_out.npz"
    np.savez(cases_file, **cases)
    run_blender("check_rig.py", addon_zip, model_path or "", cases_file, out, tmp=workdir)
    return data, cases, dict(np.load(out))


@pytest.fixture(scope="module")
def random_rig(workdir, addon_zip):
    return run_rig_check(workdir, addon_zip, _random_model_file(workdir, seed=3), "random")


@pytest.fixture(scope="module")
def regressor_rig(workdir, addon_zip):
    return run_rig_check(workdir, addon_zip, _random_model_file(workdir, seed=4, regressor=True), "regressor")


@pytest.fixture(scope="module")
def default_rig(workdir, addon_zip):
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"{DEFAULT_MODEL} not built")
    return run_rig_check(workdir, addon_zip, None, "default", count=4)


@pytest.fixture(scope="module")
def release_rig(workdir, addon_zip):
    """The official release converted to the package format (14k vertices, 100 shape components)."""
    release = Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data")) / "hack-release"
    if not release.is_dir():
        pytest.skip(f"reference data not found at {release} (set HACK_SHARED_DATA)")
    from hack_model.loading import load_model

    path = workdir / "release.npz"
    save_model(load_model(release), path)
    return run_rig_check(workdir, addon_zip, path, "release", count=4)


def _report(name: str, errors) -> None:
    print(f"{name}: max |Blender - HACK.forward| per case (cm): " + ", ".join(f"{e:.2e}" for e in errors))


@pytest.mark.parametrize("which", ["random_rig", "default_rig", "release_rig", "regressor_rig"])
def test_sliders_match_forward(which, request):
    data, cases, out = request.getfixturevalue(which)
    model = HACK(data)
    expected = expected_vertices(model, cases)
    errors = np.abs(out["vertices"] - expected).max(axis=(1, 2))
    _report(which, errors)
    assert errors.max() < TOLERANCE_CM, errors
    # The rest mesh and the armature's rest frames are the model's.
    assert np.abs(out["rest"] - model.neutral_vertices()).max() < TOLERANCE_CM
    assert list(out["bone_names"]) == data.bone_names
    if data.joint_regressor is None:
        assert np.abs(out["bone_rest"] - data.bone_rest_transforms).max() < 1e-4


def test_preview_colours_become_a_colour_attribute(default_rig, random_rig):
    data, _, out = default_rig
    assert np.abs(out["preview_colors"] - data.vertex_colors).max() < 1.5 / 255  # 8-bit sRGB
    assert str(out["preview_material"]).endswith("_preview")
    assert "preview_colors" not in random_rig[2]  # models without colours get none


def test_keyframed_action_units_follow_frames(random_rig):
    data, cases, out = random_rig
    model = HACK(data)
    with torch.no_grad():
        keyed = model.to(torch.float64)(action_units=cases["action_units"][:1]).vertices[0].numpy()
    neutral = model.neutral_vertices()
    assert np.abs(out["keyed_frame_11"] - keyed).max() < TOLERANCE_CM
    assert np.abs(out["keyed_frame_1"] - neutral).max() < TOLERANCE_CM
    middle = out["keyed_frame_6"]
    assert np.abs(middle - neutral).max() > 1e-3 and np.abs(middle - keyed).max() > 1e-3


def test_single_slider_updates_mesh_and_drivers_are_simple(random_rig):
    data, _, out = random_rig
    model = HACK(data)
    weights = np.zeros((1, len(data.action_unit_names)))
    weights[0, 0] = 0.7
    with torch.no_grad():
        expected = model.to(torch.float64)(action_units=weights).vertices[0].numpy()
    assert np.abs(out["live_first_au"] - expected).max() < TOLERANCE_CM
    drivers = json.loads(str(out["drivers"]))
    assert drivers["count"] > 0 and not drivers["invalid"] and not drivers["not_simple"], drivers


@pytest.mark.parametrize("which", ["random_rig", "release_rig", "regressor_rig"])
def test_range_of_motion_clamps_and_shape_operators(which, request):
    data, cases, out = request.getfixturevalue(which)
    model = HACK(data).to(torch.float64)
    limits = pose_limits_rad(data.range_of_motion)
    with torch.no_grad():
        clamped = model(neck_pose=np.clip(cases["clamp_pose"], -limits, limits)[None]).vertices[0].numpy()
        shape = out["randomized_shape"][None]
        randomized = model(shape=shape).vertices[0].numpy() if shape.shape[1] else model.neutral_vertices()
    assert np.abs(out["clamped"] - clamped).max() < TOLERANCE_CM
    if shape.shape[1]:
        assert np.count_nonzero(shape) == min(10, data.num_shape)  # the shown sliders only
    assert np.abs(out["randomized"] - randomized).max() < TOLERANCE_CM
    assert np.abs(out["after_reset"] - model.neutral_vertices()).max() < TOLERANCE_CM


def test_panels_show_grouped_action_units_and_sliders(default_rig):
    data, _, out = default_rig
    panels = json.loads(str(out["panels"]))
    assert set(panels) >= {"HACK_PT_model", "HACK_PT_action_units", "HACK_PT_expressions", "HACK_PT_neck"}
    aus = panels["HACK_PT_action_units"]
    assert {"Brows", "Eyes", "Cheeks and nose", "Mouth", "Jaw", "Gaze"} <= set(aus)
    assert "AU12 Lip Corner Puller" in aus and "AU27 Mouth Stretch" in aus
    assert aus.index("Brows") < aus.index("AU1 Inner Brow Raiser") < aus.index("Eyes")
    assert set(data.expression_names) <= set(panels["HACK_PT_expressions"])
    assert "Turn (+ left)" in panels["HACK_PT_neck"] and data.bone_names[-1] in panels["HACK_PT_neck"]
    assert "larynx_height" in panels["HACK_PT_larynx"] and "Add Head" in panels["HACK_PT_model"]


def test_bad_model_file_reports_and_keeps_scene(random_rig):
    result = json.loads(str(random_rig[2]["bad_file"]))
    assert "not a readable .npz model file" in result["error"]
    assert result["unchanged"]


def test_add_head_time(default_rig):
    assert float(default_rig[2]["add_seconds"]) < 2.0


def test_package_refuses_missing_or_bad_model(tmp_path, monkeypatch):
    import hack_model.blender_package as package

    monkeypatch.setattr(package, "DEFAULT_MODEL", tmp_path / "default_model.npz")
    with pytest.raises(FileNotFoundError, match="hack-model build-default .*--model PATH"):
        package.build_blender_package(tmp_path)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="no such model file"):
        build_blender_package(tmp_path, model_path=tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable"):
        build_blender_package(tmp_path, model_path=bad)
    with pytest.raises(FileNotFoundError, match="output folder"):
        build_blender_package(tmp_path / "nowhere")


# ------------------------------------------------------------ files in and out
def _snap_to_knots(heights: np.ndarray, map_height: int) -> np.ndarray:
    step = 1.0 / (map_height - 1)
    return np.clip(
        np.round(heights / step) * step, -rig_math.LARYNX_HEIGHT_LIMIT, rig_math.LARYNX_HEIGHT_LIMIT
    )


def make_sequence(data, folder: Path, frames: int = 200) -> dict[str, np.ndarray]:
    """The HACK release's recorded sequences (official symbols, cut to one length) when
    the shared data is there, else a random sequence of the same form."""
    recorded = (
        Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data")) / "hack-release" / "data"
    )
    if (recorded / "theta_list.npy").is_file() and data.num_expression == 55 and data.num_bones == 8:
        seq = {
            name: np.load(recorded / f"{name}_list.npy")[:frames] for name in ("theta", "bsw", "tau", "alpha")
        }
    else:
        rng = np.random.default_rng(5)
        seq = {
            "theta": rng.uniform(-0.2, 0.2, (frames, data.num_bones, 3)),
            "bsw": rng.uniform(0, 1, (frames, data.num_expression)),
            "tau": rng.uniform(-0.03, 0.03, (frames, 1)),
            "alpha": rng.uniform(0.5, 1.5, (frames, 1)),
        }
    seq = {f"{k}_list": v.astype(np.float32) for k, v in seq.items()}
    if not data.has_larynx:
        seq.pop("tau_list"), seq.pop("alpha_list")
    return seq


def make_fit(data) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    limits = pose_limits_rad(data.range_of_motion)
    fit = {
        "expression": rng.uniform(0, 0.6, (1, data.num_expression)),
        "neck_pose": rng.uniform(-0.5, 0.5, (1, data.num_bones, 3)) * limits,
        "scale": np.array([1.07]),
        "rotation": rig_math.axis_angle_to_matrix(np.array([0.1, -0.3, 0.05])),
        "translation": np.array([1.5, -20.0, 3.0]),
    }
    if data.num_shape:
        fit["shape"] = rng.normal(0, 1, (1, min(data.num_shape, 20)))
    if data.has_larynx:
        fit["larynx_height"] = np.array([[0.0213]])
        fit["larynx_scale"] = np.array([[1.3]])
    return {k: v.astype(np.float32) for k, v in fit.items()}


def make_fitted_sequence(data, frames: int = 4) -> dict[str, np.ndarray]:
    """What `hack-fit --sequence` writes: one shape, per-frame motion and similarity."""
    rng = np.random.default_rng(13)
    limits = pose_limits_rad(data.range_of_motion)
    seq = {
        "expression": rng.uniform(0, 0.5, (frames, data.num_expression)),
        "neck_pose": rng.uniform(-0.3, 0.3, (frames, data.num_bones, 3)) * limits,
        "scale": rng.uniform(9.0, 11.0, frames),  # a scan in mm
        "rotation": np.stack(
            [rig_math.axis_angle_to_matrix(rng.normal(0, 0.5, 3)) for _ in range(frames)]
        ),
        "translation": rng.normal(0, 50.0, (frames, 3)),
    }
    if data.num_shape:
        seq["shape"] = rng.normal(0, 1, min(data.num_shape, 20))
    if data.has_larynx:
        seq["larynx_height"] = rng.uniform(-0.03, 0.03, (frames, 1))
        seq["larynx_scale"] = rng.uniform(0.7, 1.3, (frames, 1))
    return seq


@pytest.fixture(scope="module")
def io_run(workdir, addon_zip):
    model_path = None if DEFAULT_MODEL.is_file() else _random_model_file(workdir, seed=7)
    data = load_model_npz(model_path or DEFAULT_MODEL)
    folder = workdir / "io"
    folder.mkdir(exist_ok=True)
    sequence, fit = make_sequence(data, folder), make_fit(data)
    np.savez(folder / "sequence.npz", **sequence)
    np.savez(folder / "scan_params.npz", **fit)
    fitted_sequence = make_fitted_sequence(data)
    save_params(folder / "sequence_params.npz", fitted_sequence)
    frames = [0, 57, len(sequence["theta_list"]) - 1]
    config = {
        "model": str(model_path or ""),
        "sequence": str(folder / "sequence.npz"),
        "fit": str(folder / "scan_params.npz"),
        "sequence_frames": frames,
        "fitted_sequence": str(folder / "sequence_params.npz"),
        "fitted_sequence_frames": len(fitted_sequence["rotation"]),
        "out": str(folder),
    }
    (folder / "config.json").write_text(json.dumps(config))
    run_blender("check_io.py", addon_zip, folder / "config.json", tmp=workdir)
    out = dict(np.load(folder / "io_results.npz"))
    return data, sequence, fit, frames, out, json.loads(str(out["report"]))


def test_recorded_sequence_keyframes(io_run):
    data, seq, _, frames, out, report = io_run
    args = {"expression": seq["bsw_list"][frames], "neck_pose": seq["theta_list"][frames]}
    if data.has_larynx:
        args["larynx_height"], args["larynx_scale"] = seq["tau_list"][frames], seq["alpha_list"][frames]
    with torch.no_grad():
        expected = HACK(data).to(torch.float64)(**args).vertices.numpy()
    errors = np.abs(out["sequence_vertices"] - expected).max(axis=(1, 2))
    _report("sequence", errors)
    assert errors.max() < TOLERANCE_CM
    assert report["frame_range"] == [1, len(seq["theta_list"])]
    limits = pose_limits_rad(data.range_of_motion)
    assert report["use_limits_after_sequence"] == (not np.any(np.abs(seq["theta_list"]) > limits * 1.001))


def test_fit_import_on_new_and_selected_head(io_run):
    data, _, fit, _, out, report = io_run
    args = {k: v for k, v in fit.items() if k not in ("scale", "rotation", "translation")}
    with torch.no_grad():
        expected = HACK(data).to(torch.float64)(**args).vertices[0].numpy()
    placement = rig_math.fit_object_matrix(fit["scale"], fit["rotation"], fit["translation"])
    for which in ("new", "selected", "reopened"):
        error = np.abs(out[f"fit_{which}_vertices"] - expected).max()
        _report(f"fit ({which} head)", [error])
        assert error < TOLERANCE_CM
        if which != "reopened":
            assert np.abs(out[f"fit_{which}_matrix"] - placement).max() < 1e-5
    assert report["fit_new_head"]


def test_fitted_sequence_keys_each_frame_onto_its_scan(io_run):
    data, *_, out, _ = io_run
    seq = make_fitted_sequence(data)
    args = {k: v for k, v in seq.items() if k not in ("scale", "rotation", "translation")}
    args["shape"] = args.get("shape", np.zeros(0))[None]
    with torch.no_grad():
        expected = HACK(data).to(torch.float64)(**args).vertices.numpy()
    errors = np.abs(out["fitted_sequence_vertices"] - expected).max(axis=(1, 2))
    _report("fitted sequence", errors)
    assert errors.max() < TOLERANCE_CM
    for k in range(len(seq["rotation"])):
        placement = rig_math.fit_object_matrix(seq["scale"][k], seq["rotation"][k], seq["translation"][k])
        assert np.abs(out["fitted_sequence_matrices"][k] - placement).max() < 1e-4 * np.abs(placement).max()


def test_bad_parameter_files_report_and_keep_scene(io_run):
    report = io_run[-1]
    assert "not a readable parameter .npz" in report["bad_sequence_error"]
    assert report["bad_sequence_unchanged"]
    assert "shape has 999 components" in report["bad_fit_error"]
    assert report["bad_fit_unchanged"]


@pytest.mark.parametrize("fmt", ["FBX", "GLB"])
def test_export_reimport_keeps_shape_keys_and_bones(io_run, fmt):
    data, *_, report = io_run
    got = report["reimport"][fmt]
    assert got["meshes"] == 1 and got["vertices"] >= data.num_vertices
    assert set(report["exported_keys"][1:]) <= set(got["shape_keys"]), fmt
    assert set(data.expression_names) <= set(got["shape_keys"])
    assert set(report["exported_bones"]) == set(data.bone_names)
    assert set(data.bone_names) <= set(got["bones"]), got["bones"]


def test_disabling_the_extension_unregisters(io_run):
    assert io_run[-1]["unregistered"]


def test_manifest_passes_blenders_extension_validator(addon_zip):
    """Blender's own `extension validate` (the checks the extensions platform runs)."""
    bpy_dir = subprocess.run(
        [
            blender_python(),
            "-c",
            "import importlib.util; print(importlib.util.find_spec('bpy').submodule_search_locations[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    tools = sorted(Path(bpy_dir).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        pytest.skip(f"blender_ext.py not found under {bpy_dir}")
    proc = subprocess.run(
        [blender_python(), str(tools[-1]), "validate", str(addon_zip)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Success" in proc.stdout, proc.stdout + proc.stderr

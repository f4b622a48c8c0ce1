"""Parameter files: API names, official symbols, batching and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hack_model.params import forward_arguments, load_params, num_frames, save_params


def test_official_symbols_and_list_suffix_map_to_api_names(tmp_path):
    np.savez(tmp_path / "p.npz", beta=np.ones(5), bsw_list=np.zeros((4, 55)), theta=np.zeros((4, 8, 3)),
             tau=np.zeros((4, 1)), alpha_list=np.ones(4))  # fmt: skip
    params = load_params(tmp_path / "p.npz")
    assert params["shape"].shape == (1, 5) and params["expression"].shape == (4, 55)
    assert params["neck_pose"].shape == (4, 8, 3) and params["larynx_scale"].shape == (4, 1)
    assert num_frames(params) == 4


def test_round_trip_and_named_action_units(tmp_path):
    save_params(
        tmp_path / "p.npz",
        {"action_units": np.array([[0.5, 1.0]]), "action_unit_names": np.array(["AU12", "AU27"])},
    )
    args = forward_arguments(load_params(tmp_path / "p.npz"))
    assert set(args["action_units"]) == {"AU12", "AU27"} and args["action_units"]["AU27"][0] == 1.0


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"beta": np.zeros(3), "shape": np.zeros(3)}, "given twice"),
        ({"theta": np.zeros(3)}, "must have 2 or 3 dimensions"),
        ({"nonsense": np.zeros(3)}, "unknown parameter 'nonsense'"),
        ({"expression": np.array(["a", "b"])}, "not numeric"),
    ],
)
def test_bad_parameter_files(tmp_path, arrays, message):
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_params(tmp_path / "p.npz")


def test_pickled_parameter_files_are_refused(tmp_path):
    np.savez(tmp_path / "p.npz", shape=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable parameter"):
        load_params(tmp_path / "p.npz")

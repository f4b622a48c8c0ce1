"""Shape space of the shipped default model: every principal component stays a valid head
at -3 and +3 standard deviations, random people are valid, and the spread of the head's
proportions over random people matches adult anthropometry."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from hack_model.default_model.measure import measurements
from hack_model.default_model.mesh_checks import candidate_pairs, moved_triangles, self_intersections
from hack_model.io.npz import load_model_npz

from .test_default_model import ASSET

# human ranges (cm) every generated head must stay within (necks: men's shirt collars are sold
# up to 20 in, 51 cm)
RANGES = {
    "head_breadth": (12.0, 18.0),
    "head_length": (16.5, 23.0),
    "nasion_chin": (9.0, 14.5),
    "neck_circumference": (28.0, 50.0),
}
# plausible bands for the standard deviation over adults (cm); the shape space aims at
# head breadth 0.6, head length 0.7, face height 0.6, neck circumference 2.5-3, nose 0.4.
# cranial_breadth / cranial_length are head breadth / length measured relative to the eyes
# (head_breadth also grows when a longer neck lifts the head).
SD_BANDS = {
    "head_breadth": (0.4, 1.0),
    "head_length": (0.5, 1.0),
    "cranial_breadth": (0.4, 0.85),
    "cranial_length": (0.5, 1.0),
    "nasion_chin": (0.4, 0.9),
    "neck_circumference": (2.0, 3.6),
    "nose_length": (0.25, 0.6),
}


@pytest.fixture(scope="module")
def data():
    return load_model_npz(ASSET)


@pytest.fixture(scope="module")
def P(data):
    return data.template_vertices.astype(np.float64)


@pytest.fixture(scope="module")
def tris(data):
    return data.triangles()


@pytest.fixture(scope="module")
def S(data):
    return data.shape_directions.astype(np.float64)


def check_valid(data, Q: np.ndarray, tris: np.ndarray, label) -> dict[str, float]:
    """No two triangles of the whole mesh (skin, eyeballs, mouth bag) cross, and the
    proportions are human. Returns the measurements."""
    hits = self_intersections(Q, tris)
    assert len(hits) == 0, (label, len(hits), data.template_vertices[tris[hits[0]]].mean(0))
    m = measurements(data, Q)
    for key, (lo, hi) in RANGES.items():
        assert lo < m[key] < hi, (label, key, m[key])
    return m


def test_all_pairs_broad_phase_matches_the_per_triangle_one(data, P, tris):
    """self_intersections' fast all-pairs search finds the same candidates as querying
    every triangle, and the checker finds crossings of the whole mesh."""
    fast = candidate_pairs(P, tris)
    every = candidate_pairs(P, tris, np.arange(len(tris)))
    assert {tuple(p) for p in np.sort(fast, axis=1).tolist()} == {tuple(p) for p in every.tolist()}
    assert len(self_intersections(P, tris)) == 0
    # the left eyeball and the mouth bag pushed out through the lids and lips
    part = data.extras["part"]
    D = np.zeros_like(P)
    D[(part == 1) | (part == 3), 2] = 0.6
    hits = self_intersections(P + D, tris)
    assert len(hits) > 0
    local = self_intersections(P + D, tris, moved_triangles(tris, D))
    assert {tuple(p) for p in np.sort(hits, axis=1).tolist()} == {tuple(p) for p in local.tolist()}


def test_built_from_enough_heads():
    from hack_model.default_model.shape_space import build_shape_space

    assert inspect.signature(build_shape_space).parameters["n_heads"].default >= 300


@pytest.mark.slow
def test_every_component_valid_at_3sd(data, P, S, tris):
    assert len(S) >= 50
    for k in range(len(S)):
        for s in (-3.0, 3.0):
            check_valid(data, P + s * S[k], tris, (k, s))


@pytest.mark.slow
def test_random_people_valid(data, P, S, tris):
    rng = np.random.default_rng(7)
    for i in range(20):
        c = rng.standard_normal(len(S))
        check_valid(data, P + np.tensordot(c, S, axes=1), tris, (i, c[:6]))


def _sensitivities(data, P, S, keys) -> np.ndarray:
    """d measurement / d coefficient [len(keys), components] by central differences."""
    J = np.zeros((len(keys), len(S)))
    for k in range(len(S)):
        hi, lo = measurements(data, P + S[k]), measurements(data, P - S[k])
        J[:, k] = [(hi[key] - lo[key]) / 2 for key in keys]
    return J


def test_anthropometric_spread(data, P, S):
    rng = np.random.default_rng(11)
    samples = [measurements(data, P + np.tensordot(rng.standard_normal(len(S)), S, axes=1))
               for _ in range(200)]  # fmt: skip
    for key, (lo, hi) in SD_BANDS.items():
        sd = np.std([m[key] for m in samples])
        assert lo < sd < hi, (key, sd)


def test_leading_components_carry_the_variation(data, P, S):
    keys = ["cranial_breadth", "cranial_length", "nasion_chin", "neck_circumference", "nose_length",
            "jaw_width", "larynx_prominence", "top_y"]  # fmt: skip
    J = _sensitivities(data, P, S, keys)
    var = J**2
    lead = var[:, :10].sum(1) / var.sum(1)
    for key, share in zip(keys, lead):
        assert share > 0.6, (key, share)  # most of each proportion's variance in 10 components
    d = dict(zip(keys, J))
    # PC1: overall size: a bigger head and face, a thicker neck, a higher crown, together
    s = np.sign(d["top_y"][0])
    for key in ("cranial_breadth", "cranial_length", "nasion_chin", "neck_circumference", "top_y"):
        assert s * d[key][0] > 0.2 * np.sqrt(var[keys.index(key)].sum()), key
    # a sex-like component among the first three: a thicker neck with a prominent larynx,
    # a wider jaw and a longer face at once (in either direction)
    sexlike = [
        k
        for k in range(3)
        if min(np.sign(d["larynx_prominence"][k]) * d[key][k]
               for key in ("neck_circumference", "jaw_width", "nasion_chin")) > 0
        and abs(d["larynx_prominence"][k]) > 0.15 and abs(d["neck_circumference"][k]) > 1.0
    ]  # fmt: skip
    assert sexlike
    # every one of the leading six components visibly changes the head (> 4 mm at 2 SD)
    assert (np.linalg.norm(2 * S[:6], axis=2).max(1) > 0.4).all()

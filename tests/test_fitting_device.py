"""The solver on --device: the torch path (brute-force candidate triangles, sparse Jacobian
rows, normal equations as tensors) forced on the CPU and compared with the k-d tree path
and with independent references; on CUDA, when there is one, the same fits there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitting import FitOptions, fit_scan
from fitting.alignment import Similarity
from fitting.evaluator import LARYNX_FD_STEP, ModelEvaluator, ModelParams, row_matrix
from fitting.fit import evaluator_for
from fitting.geometry import MeshProximity, TensorProximity, closest_point_on_triangles, face_normals
from fitting.optimize import Correspondences, Fitter, Problem, Stage, State
from fitting.synthetic_scans import make_scan, random_params

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _triangles(rng, n):
    a, b, c = (rng.normal(size=(n, 3)) for _ in range(3))
    # Degenerate ones: two corners equal, all three equal, collinear.
    b[:50] = a[:50]
    c[50:100] = b[50:100]
    b[100:150] = c[100:150] = a[100:150]
    c[150:200] = a[150:200] + 2.0 * (b[150:200] - a[150:200])
    return a, b, c


def test_point_triangle_is_one_function_for_numpy_and_torch():
    rng = np.random.default_rng(0)
    a, b, c = _triangles(rng, 2000)
    p = rng.normal(size=(2000, 3)) * 2
    q, bary = closest_point_on_triangles(p, a, b, c)
    qt, bt = closest_point_on_triangles(*(torch.from_numpy(x) for x in (p, a, b, c)))
    assert np.allclose(qt.numpy(), q, atol=1e-12) and np.allclose(bt.numpy(), bary, atol=1e-12)
    # Independent references: the nearest of many points on each triangle is never closer; a
    # degenerate triangle is the segments between its corners, whose distance is a projection.
    s = rng.random((4000, 2))
    s = s[s.sum(1) <= 1]
    dense = a[:, None] + s[None, :, :1] * (b - a)[:, None] + s[None, :, 1:] * (c - a)[:, None]  # [n, m, 3]
    exact = np.linalg.norm(q - p, axis=1)
    assert np.all(exact <= np.linalg.norm(dense - p[:, None], axis=2).min(1) + 1e-9)

    def segment(u, v):
        d = v - u
        t = np.clip(((p - u) * d).sum(1) / np.maximum((d * d).sum(1), 1e-300), 0, 1)
        return np.linalg.norm(u + t[:, None] * d - p, axis=1)

    flat = np.minimum(np.minimum(segment(a, b), segment(b, c)), segment(c, a))[:200]
    assert np.allclose(exact[:200], flat, atol=1e-12)
    assert np.allclose(bary.sum(1), 1.0) and (bary >= -1e-12).all()
    assert np.allclose(np.einsum("nk,nkc->nc", bary, np.stack([a, b, c], 1)), q)


def test_face_normals_numpy_and_torch(ev):
    v = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
    n = face_normals(v, ev.triangles)
    nt = face_normals(torch.from_numpy(v), torch.from_numpy(ev.triangles.astype(np.int64)))
    e = v[ev.triangles]
    ref = np.cross(e[:, 1] - e[:, 0], e[:, 2] - e[:, 0])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.allclose(n, ref, atol=1e-12) and np.allclose(nt.numpy(), ref, atol=1e-12)


def test_tensor_proximity_brute_force_matches_kdtree_on_the_model(ev):
    """The device path (centroid distances on the device, forced here on the CPU) finds the same
    closest points as the k-d tree; exact=True matches MeshProximity's exact query."""
    rng = np.random.default_rng(1)
    v = ev.vertices(random_params(ev, rng))
    tris = ev.triangles
    p = v[rng.choice(len(v), 3000)] + rng.normal(size=(3000, 3)) * 0.3
    p[:100] = rng.normal(size=(100, 3)) * 30  # far away too
    ref = MeshProximity(v, tris).query(p)
    vt, tt, pt = torch.from_numpy(v), torch.from_numpy(tris.astype(np.int64)), torch.from_numpy(p)
    got = TensorProximity(vt, tt, brute_force=True).query(pt, budget=1 << 20)  # several chunks
    assert np.allclose(got.distance.numpy(), ref.distance, atol=1e-12)
    assert np.allclose(got.point.numpy(), ref.point, atol=1e-9)
    same = got.triangle.numpy() == ref.triangle
    assert same.mean() > 0.99  # the rest are ties (points closest to a shared edge or corner)
    assert np.allclose(got.bary.numpy()[same], ref.bary[same], atol=1e-9)
    cpu = TensorProximity(vt, tt).query(pt)  # the k-d tree, as tensors
    assert np.array_equal(cpu.triangle.numpy(), ref.triangle)
    some = p[:300]
    exact = TensorProximity(vt, tt, brute_force=True).query(torch.from_numpy(some), exact=True)
    assert np.allclose(
        exact.distance.numpy(), MeshProximity(v, tris).query(some, exact=True).distance, atol=1e-12
    )


def test_row_matrix_is_the_rows_weights_written_out():
    rng = np.random.default_rng(2)
    N, U, P = 500, 80, 7
    at = rng.integers(0, U, (N, 3))
    at[0] = 5  # one row with a repeated corner: its weights add up
    coef = rng.normal(size=(N, 3, 3))
    jv = rng.normal(size=(3 * U, P))
    S = np.zeros((N, 3 * U))  # the sparse matrix written out
    for k in range(3):
        for c in range(3):
            np.add.at(S, (np.arange(N), 3 * at[:, k] + c), coef[:, k, c])
    rows = row_matrix(torch.from_numpy(coef), torch.from_numpy(at), 3 * U)
    assert np.allclose(rows.to_dense().numpy(), S, atol=1e-15)
    assert np.allclose((rows @ torch.from_numpy(jv)).numpy(), S @ jv, atol=1e-12)


def _scan_and_start(ev, seed=3):
    """A scan (cm) and a start near its truth: the true similarity, the shape off by 0.3 SD,
    80% of the neck pose."""
    rng = np.random.default_rng(seed)
    p = random_params(ev, rng, expressions=2)
    scan = make_scan(ev, rng, points=6000, params=p, units="cm")
    # The scan's transform is of the model's own mesh; the evaluator's is head-anchored.
    R_h, t_h = ev.head_transform(p.neck_pose, ev.joints(p))
    T = scan.transform
    sim = Similarity(T.scale, T.rotation @ R_h, T.scale * T.rotation @ t_h + T.translation)
    start = State.from_similarity(p.copy(), sim)
    start.params.shape = p.shape + rng.normal(size=ev.S) * 0.3
    start.params.neck_pose = 0.8 * p.neck_pose
    return scan, start


def test_linearize_matches_finite_differences_of_the_residuals(ev):
    """The Jacobian the solver builds on the device against central differences of its residuals."""
    scan, state = _scan_and_start(ev)
    fitter = Fitter(ev, np.random.default_rng(0), brute_force=True)
    stage = Stage("all", 1, shape=True, expression=True, pose=True, larynx=True, scale=True)
    problem = Problem(ev, stage)
    state.params.expression[:] = 0.5  # inside [0, 1]: the steps are not clipped
    rows, _ = fitter.correspond_tensors(state, torch.from_numpy(scan.points[:400]), None, 0.5)
    r, J = problem.linearize(state, rows, ev.posed(state.params))

    def res(s):
        return problem.residuals(s, rows, ev.vertices_tensor(s.params))[0].numpy()

    assert np.allclose(res(state), r.numpy(), atol=1e-12)
    for col in list(range(0, 7)) + [7, 7 + ev.S, problem.offsets[3], problem.offsets[4], problem.size - 1]:
        d = np.zeros(problem.size)
        # the evaluator's own step for the larynx (piecewise linear in its height)
        d[col] = h = LARYNX_FD_STEP if col >= problem.offsets[4] else 1e-6
        num = (res(problem.apply(state, d)) - res(problem.apply(state, -d))) / (2 * h)
        assert np.allclose(J[:, col].numpy(), num, atol=1e-5 * max(1.0, np.abs(num).max())), col
    # numpy rows in, numpy results out (fitting.sequence's call), the same numbers
    rn, Jn = problem.linearize(state, rows.numpy(), ev.posed(state.params))
    assert isinstance(Jn, np.ndarray) and np.allclose(Jn, J.numpy(), atol=1e-12)


def test_device_path_on_the_cpu_fits_like_the_kdtree_path(ev):
    """A stage run the CUDA way (brute-force candidate triangles) ends where the CPU's k-d
    tree does: the same sample, the same candidates, the same steps (up to ties)."""
    scan, start = _scan_and_start(ev)
    # One iteration per stage run, five runs: both paths take the same number of steps (a
    # longer stage may stop one of them an iteration earlier, rounding at its threshold).
    stage = Stage("shape+neck", 1, shape=True, pose=True, points=2000, trim_floor_cm=0.8)
    out = []
    for brute in (False, True):
        fitter = Fitter(ev, np.random.default_rng(0), brute_force=brute)
        state = start.copy()
        for _ in range(5):
            state, log, _ = fitter.run_stage(Problem(ev, stage), state, scan.points, None)
        out.append((ev.vertices(state.params), state, log, fitter.score(state, scan.points)))
    (v0, s0, l0, e0), (v1, s1, l1, e1) = out
    # Rounding differences (another order of sums) grow a little along the weakly constrained
    # directions (the holes): the surface is the same to well within the noise.
    diff = np.linalg.norm(v0 - v1, axis=1)
    assert np.median(diff) < 0.002 and diff.max() < 0.05  # cm
    assert abs(s0.scale - s1.scale) < 1e-9 and np.allclose(s0.shift, s1.shift, atol=0.01)
    assert e1 == pytest.approx(e0, rel=1e-3)
    # and it fitted: 0.05 cm noise, 5% outliers (capped at 1 cm), 20% holes
    assert e1 < 0.1


def test_float32_solver_matches_float64(model, ev):
    scan, start = _scan_and_start(ev, seed=4)
    ev32 = ModelEvaluator(model, anchor="head", dtype=torch.float32)
    stage = Stage("all", 4, shape=True, expression=True, pose=True, larynx=True, points=3000)
    verts, scores = [], []
    for e in (ev, ev32):
        fitter = Fitter(e, np.random.default_rng(0))
        state, _, _ = fitter.run_stage(Problem(e, stage), start.copy(), scan.points, None)
        verts.append(ev.vertices(state.params))
        scores.append(fitter.score(state, scan.points))
    assert scores[1] == pytest.approx(scores[0], rel=0.01) and scores[0] < 0.1
    # the same surface where the scan pins it down (the holes' vertices may differ more)
    assert np.median(np.linalg.norm(verts[0] - verts[1], axis=1)) < 0.03  # cm


def test_fit_device_follows_the_model_and_the_options(model):
    assert evaluator_for(model).device == torch.device("cpu")
    assert evaluator_for(model, "cpu") is evaluator_for(model)
    assert FitOptions().device is None


def test_correspond_numpy_matches_tensors(ev):
    """Fitter.correspond (numpy, for fitting.sequence) is correspond_tensors on the host, and its
    rows put the point where the closest point is."""
    scan, state = _scan_and_start(ev)
    fitter = Fitter(ev, np.random.default_rng(0))
    pts = scan.points[:1000]
    rows, dist = fitter.correspond(state, pts, None, 0.5)
    assert isinstance(rows.points, np.ndarray) and isinstance(dist, np.ndarray)
    v = ev.vertices(state.params)
    q = np.einsum("nk,nkc->nc", rows.bary, v[rows.corners])
    y = state.to_model(pts)
    assert np.allclose(np.linalg.norm(q - y, axis=1), dist, atol=1e-9)
    exact = MeshProximity(v, ev.triangles).query(y, exact=True).distance
    assert np.all(dist >= exact - 1e-12) and np.mean(dist <= exact + 1e-9) > 0.97
    both = Correspondences.concat([rows, rows])
    assert len(both.points) == 2 * len(pts)


# ------------------------------------------------------------------ on CUDA
@cuda
def test_cuda_proximity_matches_cpu(ev):
    rng = np.random.default_rng(5)
    v = ev.vertices(random_params(ev, rng))
    p = v[rng.choice(len(v), 5000)] + rng.normal(size=(5000, 3)) * 0.3
    ref = MeshProximity(v, ev.triangles).query(p)
    dev = torch.device("cuda")
    got = TensorProximity(
        torch.from_numpy(v).to(dev), torch.from_numpy(ev.triangles.astype(np.int64)).to(dev)
    ).query(torch.from_numpy(p).to(dev))
    assert np.allclose(got.distance.cpu().numpy(), ref.distance, atol=1e-9)


@cuda
def test_cuda_fit_matches_cpu_fit(model):
    ev = evaluator_for(model)
    rng = np.random.default_rng(6)
    scan = make_scan(ev, rng, points=20_000, units="mm")
    cpu = fit_scan(model, scan.points, options=FitOptions(device="cpu"))
    gpu = fit_scan(model, scan.points, options=FitOptions(device="cuda"))
    assert evaluator_for(model, "cuda").device.type == "cuda"
    assert np.median(gpu.scan_distances_mm) == pytest.approx(np.median(cpu.scan_distances_mm), abs=0.02)
    # float32 on the GPU and float64 on the CPU take slightly different paths: the vertices the
    # scan covers must agree with the truth as well on both (the others are the prior's guess,
    # where the two differ by up to 2 mm on an H200).
    covered = np.unique(ev.triangles[scan.kept_triangles])
    truth = scan.true_vertices[covered]
    cpu_err, gpu_err = (np.linalg.norm(f.vertices[covered] - truth, axis=1).mean() for f in (cpu, gpu))
    assert cpu_err < 0.5 and gpu_err < cpu_err + 0.05  # mm
    assert np.median(np.linalg.norm(gpu.vertices[covered] - cpu.vertices[covered], axis=1)) < 0.2
    assert not gpu.failed

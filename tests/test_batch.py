"""hack-fit batches: a bad scan is one failure row, unique output names, resumable manifests,
summaries, SIGINT, and the same through a real Dask cluster with a worker killed mid-run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fitting.batch import is_complete, output_names
from fitting.cli import main
from fitting.evaluator import ModelParams
from fitting.fit import evaluator_for
from fitting.synthetic_scans import make_scan
from hack_model import HACK

BAD_PLY = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n"
)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clouds():
    """Four small scans that `--quick` (no hypothesis search) fits: these tests are about the
    batch, not the fit, so the people are mild (0.5 SD, neutral face and neck) in any rotation."""
    ev = evaluator_for(HACK())
    scans = []
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        params = ModelParams.neutral(ev.S, ev.E, ev.J)
        params.shape = rng.normal(0.0, 0.5, ev.S)
        scans.append(make_scan(ev, rng, points=1500, units="mm", outliers=0.0, params=params).points)
    return scans


def _folder(root: Path, clouds, bad_at: int | None = 1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, pts in enumerate(clouds):
        np.save(root / f"s{i}.npy", pts)
    if bad_at is not None:
        (root / f"s{bad_at}b.ply").write_text(BAD_PLY)  # sorts right after s{bad_at}
    return root


def _summary(out: Path) -> dict[str, dict]:
    rows = {r["scan"]: r for r in json.loads((out / "summary.json").read_text())["scans"]}
    with open(out / "summary.csv", newline="") as handle:
        assert [r["scan"] for r in csv.DictReader(handle)] == list(rows)
    return rows


def _no_temporaries(out: Path) -> None:
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_output_names_are_unique_and_deterministic(tmp_path):
    files = ["A/head.ply", "B/head.npy", "C/head_2.npy", "D/Head.obj", "E/x.ply", "E/x.npy"]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    paths = [tmp_path / f for f in files]
    names = dict(output_names(paths))
    assert names[tmp_path / "A/head.ply"] == "A__head"
    assert names[tmp_path / "B/head.npy"] == "B__head"
    assert names[tmp_path / "C/head_2.npy"] == "head_2"
    assert names[tmp_path / "D/Head.obj"] == "D__Head"  # same stem up to case: collides
    assert names[tmp_path / "E/x.ply"] == "E__x_ply" and names[tmp_path / "E/x.npy"] == "E__x_npy"
    # Any order of the same inputs gives the same names; a file given twice is fitted once.
    assert dict(output_names(paths[::-1])) == names
    assert len(output_names(paths + paths[:2])) == len(paths)
    assert len({n.casefold() for n in names.values()}) == len(names)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_broken_scan_in_the_middle_is_one_failure_row(clouds, tmp_path, capsys, jobs):
    folder = _folder(tmp_path / "scans", clouds[:3])
    out = tmp_path / "out"
    code = main([str(folder), "--out", str(out), "--quick", "--jobs", str(jobs)])
    text = capsys.readouterr().out
    assert code == 1 and "3 of 4 scans fitted, 1 failed" in text
    rows = _summary(out)
    assert list(rows) == ["s0", "s1", "s1b", "s2"]
    bad = rows["s1b"]
    assert bad["status"] == "failed" and "s1b.ply: a face refers to vertex 7" in bad["message"]
    for name in ("s0", "s1", "s2"):
        assert rows[name]["status"] == "ok" and rows[name]["median_mm"] < 1.0
        assert is_complete(out, name, render=False)
    assert not list(out.glob("s1b*"))
    _no_temporaries(out)
    # A re-run skips what is complete (not a failure) and retries the broken one.
    before = (out / "s0_fit.obj").stat().st_mtime_ns
    code = main([str(folder), "--out", str(out), "--quick", "--jobs", str(jobs)])
    assert "0 of 4 scans fitted, 3 skipped, 1 failed" in capsys.readouterr().out and code == 1
    assert (out / "s0_fit.obj").stat().st_mtime_ns == before


@pytest.mark.slow
def test_same_stems_in_different_folders_never_replace_each_other(clouds, tmp_path, capsys):
    root = tmp_path / "in"
    for sub, name, pts in (
        ("A", "head.npy", clouds[0]),
        ("B", "head.npy", clouds[1]),
        ("C", "head_2.npy", clouds[2]),
    ):
        (root / sub).mkdir(parents=True)
        np.save(root / sub / name, pts)
    out = tmp_path / "out"
    args = [str(root / "A/head.npy"), str(root / "B/head.npy"), str(root / "C/head_2.npy"), "--out", str(out)]
    assert main([*args, "--quick"]) == 0
    rows = _summary(out)
    assert set(rows) == {"A__head", "B__head", "head_2"}
    assert {Path(r["path"]).parent.name for r in rows.values()} == {"A", "B", "C"}
    for name, pts in (("A__head", clouds[0]), ("B__head", clouds[1]), ("head_2", clouds[2])):
        report = json.loads((out / f"{name}_report.json").read_text())
        assert report["scan_to_model_mm"]["median"] < 1.0  # each fit is of its own scan
        assert Path(rows[name]["path"]).exists() and np.allclose(np.load(rows[name]["path"]), pts)
    # Outputs of a half-written earlier run (no manifest) are skipped, never replaced without --overwrite.
    (out / "head_2_manifest.json").unlink()
    (out / "head_2_fit.obj").write_text("user's file\n")
    capsys.readouterr()
    assert main([*args, "--quick"]) == 0
    assert "3 skipped" in capsys.readouterr().out
    assert (out / "head_2_fit.obj").read_text() == "user's file\n"
    assert main([*args, "--quick", "--overwrite"]) == 0
    assert "3 of 3 scans fitted" in capsys.readouterr().out
    assert is_complete(out, "head_2", render=False)


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_sigint_stops_workers_and_leaves_only_complete_scans(clouds, tmp_path, jobs):
    folder = _folder(tmp_path / "scans", clouds, bad_at=None)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "fitting.cli",
        str(folder),
        "--out",
        str(out),
        "--quick",
        "--jobs",
        str(jobs),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(out.glob("*_manifest.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list(out.glob("*_manifest.json")), "no scan finished in time"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert "scans fitted" in stdout and "not run" in stdout
    listing = sorted(p.name for p in out.iterdir())
    time.sleep(3.0)  # the workers are gone: nothing more appears
    assert sorted(p.name for p in out.iterdir()) == listing
    _no_temporaries(out)
    done = {p.name.removesuffix("_manifest.json") for p in out.glob("*_manifest.json")}
    assert 1 <= len(done) < 4
    rows = _summary(out)
    assert {n for n, r in rows.items() if r["status"] == "ok"} == done
    for name in (f"s{i}" for i in range(4)):
        assert is_complete(out, name, render=False) == (name in done)
        if name not in done:
            assert not list(out.glob(f"{name}_*"))


@pytest.mark.slow
def test_dask_cluster_killed_worker_loses_nothing_and_rerun_skips(clouds, tmp_path, capsys):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    folder = _folder(tmp_path / "scans", clouds, bad_at=None)
    out = tmp_path / "out"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # a death is a KilledWorker
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    client = distributed.Client(cluster, timeout=30)
    killed: list[str] = []

    def kill_one():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = [(w, keys) for w, keys in client.processing().items() if keys]
            if busy:
                time.sleep(1.0)  # mid-fit
                worker, keys = busy[0]
                pid = client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed.extend(str(k) for k in keys)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one, daemon=True)
    try:
        killer.start()
        code = main([str(folder), "--out", str(out), "--quick", "--scheduler", cluster.scheduler_address])
        killer.join(timeout=10)
        assert killed, "no worker was killed"
        text = capsys.readouterr().out
        assert code == 0, text
        rows = _summary(out)
        assert sorted(rows) == [f"s{i}" for i in range(4)]
        assert all(r["status"] == "ok" and r["median_mm"] < 1.0 for r in rows.values())
        # The killed scans ran again (once); the others exactly once; each committed once.
        retried = {n for n, r in rows.items() if r["attempts"] == 2}
        assert retried and retried == {k.split("-")[2] for k in killed}
        assert all(r["attempts"] == 1 for n, r in rows.items() if n not in retried)
        assert len({r["worker"] for r in rows.values()}) >= 2
        for name in rows:
            assert is_complete(out, name, render=False)
        _no_temporaries(out)
        # The same command again skips everything, without fitting.
        t0 = time.perf_counter()
        code = main([str(folder), "--out", str(out), "--quick", "--scheduler", cluster.scheduler_address])
        assert code == 0 and "0 of 4 scans fitted, 4 skipped" in capsys.readouterr().out
        assert time.perf_counter() - t0 < 30
        # --send-bytes: the task carries the scan's bytes instead of its path.
        sent = tmp_path / "sent"
        one = _folder(tmp_path / "one", clouds[:1], bad_at=None)
        args = [str(one), "--out", str(sent), "--quick", "--scheduler", cluster.scheduler_address]
        code = main([*args, "--send-bytes"])
        assert code == 0 and _summary(sent)["s0"]["status"] == "ok"
        assert is_complete(sent, "s0", render=False)
    finally:
        client.close(timeout=10)
        cluster.close(timeout=10)


def test_scheduler_that_is_not_there_is_one_line(clouds, tmp_path, capsys):
    pytest.importorskip("distributed")
    folder = _folder(tmp_path / "scans", clouds[:1], bad_at=None)
    t0 = time.perf_counter()
    code = main([str(folder), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9", "--quick"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("hack-fit: error: --scheduler") and "\n" not in err
    assert time.perf_counter() - t0 < 60

"""Runs crafted-file loads, one forked child process per file, for tests/test_fuzz_files.py.

    python tests/fuzz_child.py JOBS.json RESULTS.json

JOBS.json: [{"id", "kind", "path"}]. This process imports the loaders once; each job
runs in a forked child with RLIMIT_AS = (this process's address space + CAP) and
RLIMIT_CPU, a wall-clock timeout, and reports what the loader raised, its time and
its peak resident memory above the fork point. A child that dies (signal, rlimit)
is reported as such.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback

CAP_BYTES = 1536 << 20  # address space a child may add (the issue asks 1.5-2 GB)
TIMEOUT_S = 20.0


def _loaders():
    from fitting.scan_io import load_landmarks, load_scan
    from hack_model.io.mesh import read_obj
    from hack_model.io.safe_pickle import load_pickle, load_pickled_npy
    from hack_model.loading import load_model
    from hack_model.params import load_params

    return {
        "pickle": load_pickle,
        "npy": load_pickled_npy,
        "model": load_model,
        "params": load_params,
        "obj": read_obj,
        "scan": load_scan,
        "landmarks": load_landmarks,
    }


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _child(job: dict, loader, out_path: str) -> None:
    limit = _vm_bytes() + CAP_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S), int(TIMEOUT_S) + 1))
    base = _rss_kb()
    t0 = time.perf_counter()
    result: dict = {"id": job["id"]}
    try:
        loader(job["path"])
        result["outcome"] = "loaded"
    except BaseException as err:  # noqa: BLE001 - reported to the test
        result["outcome"] = "raised"
        result["classes"] = [c.__name__ for c in type(err).__mro__]
        result["message"] = str(err)[:600]
        result["traceback"] = traceback.format_exc()[-1500:]
    result["seconds"] = time.perf_counter() - t0
    result["peak_mb"] = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    with open(out_path, "w") as f:
        json.dump(result, f)


def main() -> int:
    jobs_path, results_path = sys.argv[1], sys.argv[2]
    jobs = json.load(open(jobs_path))
    loaders = _loaders()
    results = []
    for job in jobs:
        out_path = f"{results_path}.{len(results)}"
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _child(job, loaders[job["kind"]], out_path)
            finally:
                os._exit(0)
        deadline = time.monotonic() + TIMEOUT_S
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.002)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            results.append({"id": job["id"], "outcome": "timeout"})
            continue
        if os.WIFSIGNALED(status):
            results.append({"id": job["id"], "outcome": "signal", "signal": os.WTERMSIG(status)})
        elif not os.path.exists(out_path):
            results.append({"id": job["id"], "outcome": "died", "status": status})
        else:
            results.append(json.load(open(out_path)))
            os.unlink(out_path)
    with open(results_path, "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

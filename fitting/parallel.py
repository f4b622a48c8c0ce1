"""A fit's threads: the parts of a fit that are independent of each other run on them.

The hypotheses of the global search (probes, rigid ICP starts, neck poses) and the points of
a distance query do not depend on each other, so `Workers.map` runs them `threads` at a
time. Each part computes exactly what it would alone (its own random stream, no shared
state), so a fit's result is the same for any thread count. Their heavy work (k-d tree
queries, numpy and torch kernels) releases the GIL; torch ops themselves run on one thread
each, which the fit's many small ops run fastest on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_inside = threading.local()  # set in a worker thread: a map there runs inline (no nesting)


def resolve_threads(threads: int | None) -> int:
    """threads, or the torch thread count (what hack-fit sets per worker) when None; at least 1."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return max(1, min(int(threads), os.cpu_count() or 1))


class Workers:
    """Runs independent parts of a fit on `threads` threads (inline when 1, or when called
    from one of its own threads). Use as a context manager, or `close()` when done."""

    def __init__(self, threads: int | None = 1) -> None:
        self.threads = resolve_threads(threads)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        """Whether a map called here now would run on several threads."""
        return self.threads > 1 and not getattr(_inside, "flag", False)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """[fn(item) for item in items], in order, on the threads."""
        items = list(items)
        if len(items) <= 1 or not self.parallel:
            return [fn(item) for item in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hack-fit")
        return list(self._pool.map(_flagged(fn), items))

    def split(self, count: int, least: int = 1) -> list[slice]:
        """[0, count) in contiguous pieces for the threads, none shorter than `least` (one
        piece when the threads would not help)."""
        pieces = max(1, min(self.threads if self.parallel else 1, count // max(least, 1)))
        bounds = [count * i // pieces for i in range(pieces + 1)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def close(self) -> None:
        if self._pool is not None:
            # A Ctrl-C in the caller waits for the parts already running, not for the queue.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _flagged(fn: Callable[[T], R]) -> Callable[[T], R]:
    def run(item: T) -> R:
        _inside.flag = True
        try:
            return fn(item)
        finally:
            _inside.flag = False

    return run


SEQUENTIAL = Workers(1)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch on `threads` threads meanwhile (None: as it is), the old count restored after."""
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def fit_threads(threads: int | None) -> Iterator[Workers]:
    """A fit's workers (`threads` of them; None: as many as torch is set to use, which
    hack-fit sets to the cores per worker process), torch ops on one thread meanwhile."""
    workers = Workers(threads)  # before torch_threads(1): None reads torch's count
    with torch_threads(1), workers:
        yield workers

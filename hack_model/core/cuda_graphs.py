"""The forward pass replayed as CUDA graphs.

On a GPU a small batch is some forty small kernels whose launches, not their work, set
the time (a B=1 call: ~1 ms of launches for microseconds of arithmetic). `GraphedEvaluate`
captures `forward.evaluate` once per set of input shapes and replays it: one launch. It
also checks, inside the graph, that inputs and outputs are finite, so a call synchronises
once.

Used only where it is safe and pays: CUDA tensors, no gradient wanted, small batches
(B * V <= MAX_ELEMENTS; larger ones are bound by arithmetic, not launches). A shape
combination is captured the second time it is seen (the first call runs eagerly: a
one-off batch size costs no capture); at most `capacity` graphs are kept, least recently
used dropped. A capture that fails leaves that combination eager.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from .forward import KernelBasis, evaluate

MAX_ELEMENTS = 1 << 20  # batch size times vertices up to which a graph is used

SEEN_LIMIT = 64  # shape combinations remembered as seen once (forgotten all at once past it)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: torch.Tensor  # [N] every given parameter, flattened one after the other
    vertices: torch.Tensor  # [B, V, 3] (overwritten by every replay)
    frames: torch.Tensor  # [B, J, 4, 4]
    finite: torch.Tensor  # [2] bool: inputs finite, outputs finite


@dataclass(frozen=True)
class GraphedResult:
    vertices: torch.Tensor  # [B, V, 3], the caller's own
    frames: torch.Tensor  # [B, J, 4, 4]
    inputs_finite: bool
    outputs_finite: bool


class GraphedEvaluate:
    """`evaluate(kernel, **parameters)` through cached CUDA graphs (see the module doc)."""

    def __init__(self, kernel: KernelBasis, capacity: int = 8) -> None:
        self.kernel = kernel
        self.capacity = capacity
        self._graphs: OrderedDict[tuple, _Captured | None] = OrderedDict()  # None: capture failed
        self._seen: set[tuple] = set()

    def __getstate__(self) -> dict:  # pickled or copied without its graphs (device state)
        return {"kernel": self.kernel, "capacity": self.capacity, "_graphs": OrderedDict(), "_seen": set()}

    @property
    def graph_count(self) -> int:
        """How many graphs are captured now."""
        return sum(g is not None for g in self._graphs.values())

    def applies(self, parameters: dict[str, torch.Tensor | None], batch_size: int) -> bool:
        """Whether a call with these parameters may be replayed."""
        template = self.kernel.template
        if template.device.type != "cuda" or batch_size * self.kernel.basis.num_vertices > MAX_ELEMENTS:
            return False
        if torch.cuda.is_current_stream_capturing():  # the caller is capturing: stay out of its way
            return False
        if torch.is_grad_enabled() and (
            template.requires_grad or any(v is not None and v.requires_grad for v in parameters.values())
        ):
            return False
        return True

    def __call__(self, parameters: dict[str, torch.Tensor | None], batch_size: int) -> GraphedResult | None:
        """The replayed result, or None when this call should run eagerly (first sight of
        these shapes, or their capture failed). parameters: `evaluate`'s, name -> tensor or None."""
        given = {k: v for k, v in parameters.items() if v is not None}
        key = (batch_size, tuple((k, tuple(v.shape)) for k, v in given.items()), self.kernel.template.dtype)
        captured = self._graphs.get(key)
        if key in self._graphs:
            self._graphs.move_to_end(key)
        elif key not in self._seen:
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen.add(key)
            return None
        else:
            captured = self._capture(given, batch_size)
            self._graphs[key] = captured
            while len(self._graphs) > self.capacity:
                self._graphs.popitem(last=False)
        if captured is None:
            return None
        with torch.no_grad():
            if given:
                torch.cat([v.reshape(-1) for v in given.values()], out=captured.inputs)
            captured.graph.replay()
            inputs_finite, outputs_finite = captured.finite.tolist()  # the one sync
            return GraphedResult(
                captured.vertices.clone(), captured.frames.clone(), inputs_finite, outputs_finite
            )

    def _capture(self, given: dict[str, torch.Tensor], batch_size: int) -> _Captured | None:
        template = self.kernel.template
        with torch.inference_mode(False), torch.no_grad():
            sizes = [v.numel() for v in given.values()]
            inputs = template.new_empty(sum(sizes))
            if given:
                torch.cat([v.reshape(-1) for v in given.values()], out=inputs)
            views = {
                name: chunk.view(value.shape)
                for (name, value), chunk in zip(given.items(), inputs.split(sizes))
            }

            def run():
                vertices, frames = evaluate(self.kernel, batch_size=batch_size, **views)
                vertices = vertices.expand(batch_size, -1, 3)
                frames = frames.expand(batch_size, -1, 4, 4)
                finite = torch.stack(
                    [torch.isfinite(inputs).all(), torch.isfinite(vertices.sum() + frames.sum())]
                )
                return vertices, frames, finite

            try:
                side = torch.cuda.Stream(device=template.device)
                side.wait_stream(torch.cuda.current_stream(template.device))
                with torch.cuda.stream(side):  # warm-up: cached constants, library handles
                    run()
                torch.cuda.current_stream(template.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    vertices, frames, finite = run()
            except RuntimeError:
                return None
        return _Captured(graph, inputs, vertices, frames, finite)

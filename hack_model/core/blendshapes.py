"""Linear blendshapes: coefficients times directions, added to a base mesh.

Shape notes: B batch, V vertices, K directions. Meshes are coordinate-major in the
kernel ([B, 3, V]: all x, then y, then z), the layout `skinning.skin_coordinate_major`
reads fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def pose_features(rotations: torch.Tensor, posed_bones: list[int]) -> torch.Tensor:
    """(R - I) of the bones that carry pose correctives, flattened.

    rotations [B, J, 3, 3], posed_bones [P] indices -> [B, P * 9].
    """
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, posed_bones] - eye).flatten(1)


def blend_shapes(base: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """base + all linear blendshapes in one product, coordinate-major.

    base [3*V] or [B, 3*V], coefficients [B, K], directions [K, 3*V] -> [B, 3, V].
    """
    B = coefficients.shape[0]
    return torch.addmm(base.expand(B, -1), coefficients, directions).view(B, 3, -1)


def add_blend_shapes_to_range(
    mesh: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor, start: int
) -> torch.Tensor:
    """Add directions that move only the contiguous vertices [start, start + V_k) of the mesh.

    mesh [B, 3, V] (a fresh tensor: it is changed in place and returned),
    coefficients [B, K] or [1, K], directions [K, 3 * V_k] -> mesh. Vertices outside the
    range cost nothing: this is how the kernel skips the zero rows of sparse directions.
    """
    count = directions.shape[1] // 3
    if count:
        mesh[:, :, start : start + count] += (coefficients @ directions).view(-1, 3, count)
    return mesh


@dataclass(frozen=True)
class BlockSparse:
    """Sparse directions over a vertex range, in blocks of `size` vertices that each store
    only the directions moving them, padded to a count shared by a segment of blocks.

    segments: (first vertex, blocks K, directions per block m, index offset, value
    offset) per segment; index [sum K m] long: the coefficient of each stored row;
    values [sum K m 3 size]: per block, m rows of its [3, size] coordinate-major offsets.
    """

    size: int
    segments: tuple[tuple[int, int, int, int, int], ...]
    index: torch.Tensor
    values: torch.Tensor

    @staticmethod
    def from_directions(
        directions: torch.Tensor, start: int, room: int, size: int = 64
    ) -> BlockSparse | None:
        """directions [K, 3 * V_k] coordinate-major over vertices [start, +V_k) -> blocks,
        or None when they would save little. room: vertices available from start (the last
        block may run past V_k over vertices it then adds zero to)."""
        K, V_k = directions.shape[0], directions.shape[1] // 3
        size = max(size, -(-V_k // 400))  # at most 400 blocks: the split below is quadratic in them
        blocks = -(-V_k // size)
        if K == 0 or V_k == 0 or blocks * size > room:
            return None
        padded = directions.new_zeros(K, 3, blocks * size)
        padded[:, :, :V_k] = directions.view(K, 3, V_k)
        by_block = padded.view(K, 3, blocks, size)
        active = (by_block != 0).any(3).any(1).cpu().numpy()  # [K, blocks]
        counts = np.maximum(active.sum(0), 1)
        if counts.sum() > 0.7 * K * blocks:  # a lower bound of the cost below: dense it is
            return None
        cuts = _segments(counts, penalty=0.02 * K * blocks)
        dense_cost = K * blocks
        if sum((b - a) * counts[a:b].max() for a, b in cuts) > 0.7 * dense_cost:
            return None
        segments, index, values, io, vo = [], [], [], 0, 0
        for a, b in cuts:
            m = int(counts[a:b].max())
            rows = np.zeros((b - a, m), np.int64)  # padding rows: coefficient 0, zero offsets
            for i, block in enumerate(range(a, b)):
                used = np.nonzero(active[:, block])[0]
                rows[i, : len(used)] = used
            t_rows = torch.as_tensor(rows, device=directions.device)
            block_ids = torch.arange(a, b, device=directions.device)[:, None].expand(-1, m)
            vals = by_block[t_rows, :, block_ids, :]  # [b - a, m, 3, size]
            for i, block in enumerate(range(a, b)):
                vals[i, int(active[:, block].sum()) :] = 0.0
            segments.append((start + a * size, b - a, m, io, vo))
            index.append(t_rows.reshape(-1))
            values.append(vals.reshape(-1))
            io, vo = io + rows.size, vo + vals.numel()
        return BlockSparse(size, tuple(segments), torch.cat(index), torch.cat(values))


def _segments(counts: np.ndarray, penalty: float, most: int = 8) -> list[tuple[int, int]]:
    """Split blocks into at most `most` contiguous segments minimising
    sum(length * max count) + penalty per segment (dynamic programming)."""
    n = len(counts)
    row = [(0.0, [])] + [None] * n  # best split of blocks [0, j) into s segments
    best = None
    for _ in range(most):
        nxt = [None] * (n + 1)
        for j in range(1, n + 1):
            top = 0
            for i in range(j - 1, -1, -1):
                top = max(top, counts[i])
                if row[i] is not None:
                    cost = row[i][0] + (j - i) * top + penalty
                    if nxt[j] is None or cost < nxt[j][0]:
                        nxt[j] = (cost, row[i][1] + [(i, j)])
        row = nxt
        if row[n] is not None and (best is None or row[n][0] < best[0]):
            best = row[n]
    return best[1]


def add_block_sparse_blend_shapes(
    mesh: torch.Tensor, coefficients: torch.Tensor, blocks: BlockSparse
) -> torch.Tensor:
    """`add_blend_shapes_to_range` of directions stored as `BlockSparse`: per segment one
    gather of coefficients and one batched matmul over its blocks. mesh [B, 3, V] (fresh,
    changed in place), coefficients [B, K] or [1, K] -> mesh."""
    B, n = coefficients.shape[0], blocks.size
    for start, count, m, io, vo in blocks.segments:
        c = coefficients.index_select(1, blocks.index[io : io + count * m]).view(B, count, m)
        out = torch.bmm(c.transpose(0, 1), blocks.values[vo : vo + count * m * 3 * n].view(count, m, 3 * n))
        target = mesh[:, :, start : start + count * n].view(mesh.shape[0], 3, count, n)
        target += out.view(count, B, 3, n).permute(1, 2, 0, 3)
    return mesh

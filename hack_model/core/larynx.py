"""The larynx: a displacement map sampled in UV space, moved up and down the neck.

Shape notes: B batch, V vertices (only those the map can reach, see `larynx_support`),
H x W the map.

A vertex's u never changes, only the height moves it along the map's rows; so the map
is interpolated across once per vertex (`larynx_columns`: bilinear's horizontal half) and
a call only interpolates down that column (`sample_row_profiles`): one gather and one
lerp per vertex. `RowProfiles` keeps only the rows of each column around its non-zero
values: outside them the value is constant (zero, or the border's), so clamping to
them samples the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RowProfiles:
    """Each vertex's column of the map (already interpolated at its u), rows low..high.

    pairs [N, 2]: (value at row r, value at row r + 1 minus it; 0 at high) for r in
    low..high of every vertex, vertex by vertex; offset [V] long: the pair of row 0 (row
    r's is offset + r); low, high [V] float: the rows kept; row0 [V]: the vertex's image
    row at height 0, (1 - v) (H - 1); rows_per_height: H - 1 (height 1 moves a whole map).
    """

    pairs: torch.Tensor
    offset: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    row0: torch.Tensor
    rows_per_height: float

    def to(self, device=None, dtype: torch.dtype | None = None) -> RowProfiles:
        """A copy on device / in dtype (floating tensors only)."""
        return RowProfiles(
            **{
                k: v.to(device=device, dtype=dtype if v.is_floating_point() else None)
                if torch.is_tensor(v)
                else v
                for k, v in vars(self).items()
            }
        )

    @staticmethod
    def from_columns(columns: torch.Tensor, row0: torch.Tensor, compact: bool = True) -> RowProfiles:
        """columns [V, H] (H >= 2), row0 [V] -> RowProfiles; compact keeps only the rows
        around each column's non-zero values (done once: it needs the values on the host)."""
        V, H = columns.shape
        if compact:
            nonzero = (columns != 0).cpu().numpy()
            any_row = nonzero.any(1)
            first = np.where(any_row, nonzero.argmax(1), 0)
            last = np.where(any_row, H - 1 - nonzero[:, ::-1].argmax(1), 0)
            low, high = np.maximum(first - 1, 0), np.minimum(last + 1, H - 1)
        else:
            low, high = np.zeros(V, np.int64), np.full(V, H - 1)
        counts = high - low + 1  # rows per vertex
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        vertex = np.repeat(np.arange(V), counts)
        row = np.arange(counts.sum()) - np.repeat(starts, counts) + np.repeat(low, counts)
        v_t, r_t = torch.as_tensor(vertex, device=columns.device), torch.as_tensor(row, device=columns.device)
        value = columns[v_t, r_t]
        slope = columns[v_t, (r_t + 1).clamp(max=H - 1)] - value
        slope[torch.as_tensor(starts + counts - 1, device=columns.device)] = 0.0  # row high: flat
        as_float = lambda a: torch.as_tensor(a, dtype=columns.dtype, device=columns.device)  # noqa: E731
        return RowProfiles(
            pairs=torch.stack([value, slope], 1),
            offset=torch.as_tensor(starts - low, device=columns.device),
            low=as_float(low),
            high=as_float(high),
            row0=row0.to(columns.dtype),
            rows_per_height=float(H - 1),
        )


def larynx_columns(larynx_map: torch.Tensor, vertex_uvs: torch.Tensor) -> torch.Tensor:
    """The map interpolated across at each vertex's u (corner-aligned pixel centres,
    border clamp). larynx_map [H, W], vertex_uvs [V, 2] -> [V, max(H, 2)] (a one-row map
    is repeated: it is constant down the column anyway)."""
    m = larynx_map
    if m.shape[0] == 1:
        m = m.expand(2, -1)
    if m.shape[1] == 1:
        m = m.expand(-1, 2)
    W = m.shape[1]
    x = vertex_uvs[:, 0].clamp(0.0, 1.0) * (W - 1)
    x0 = x.floor().clamp(max=W - 2)
    left = m[:, x0.long()]  # [H, V]
    right = m[:, x0.long() + 1]
    return torch.lerp(left, right, (x - x0).to(m.dtype)).T


def larynx_row_profiles(
    larynx_map: torch.Tensor, vertex_uvs: torch.Tensor, compact: bool = True
) -> RowProfiles:
    """`RowProfiles` of vertices [V, 2] on a map [H, W]."""
    H = max(larynx_map.shape[0], 2)
    row0 = (1.0 - vertex_uvs[:, 1]) * (H - 1)
    return RowProfiles.from_columns(larynx_columns(larynx_map, vertex_uvs), row0, compact)


def sample_row_profiles(profiles: RowProfiles, height: torch.Tensor) -> torch.Tensor:
    """The map's value per vertex at height [B, 1] -> [B, V]: bilinear, border clamp."""
    p = profiles
    y = torch.add(p.row0, height, alpha=p.rows_per_height).clamp_(p.low, p.high)  # [B, V] row
    index = y.detach().long() + p.offset  # y >= 0: truncation is floor
    pair = p.pairs.index_select(0, index.view(-1)).view(*y.shape, 2)  # [B, V, 2]
    return torch.addcmul(pair[..., 0], pair[..., 1], torch.frac(y))


def sample_larynx_offsets(
    larynx_map: torch.Tensor,
    vertex_uvs: torch.Tensor,
    direction: torch.Tensor,
    height: torch.Tensor,
    scale: torch.Tensor,
    profiles: RowProfiles | None = None,
) -> torch.Tensor:
    """Larynx displacement per vertex.

    The map [H, W] is sampled bilinearly (border clamp, corner-aligned pixel
    centres) at image position (u, 1 - v + height) of each vertex; the value is
    multiplied by direction [3] and scale. vertex_uvs [V, 2], height and scale
    [B, 1] -> [B, V, 3]; profiles: `larynx_row_profiles(larynx_map, vertex_uvs)` made
    earlier (they are the slow half). The numpy twin is `numpy_math.larynx_offsets`.
    """
    if profiles is None:
        profiles = larynx_row_profiles(larynx_map, vertex_uvs, compact=False)
    value = sample_row_profiles(profiles, height)
    return (value[..., None] * scale[:, :, None]) * direction  # [B, V, 3]


def larynx_support(larynx_map: np.ndarray, vertex_uvs: np.ndarray) -> np.ndarray:
    """Vertices [V_larynx] whose map columns (at their u, bilinear neighbours included)
    are non-zero somewhere: no height can move any other vertex."""
    W = larynx_map.shape[1]
    u = np.clip(vertex_uvs[:, 0], 0.0, 1.0) * (W - 1)
    column_used = np.abs(larynx_map).max(axis=0) > 0
    left = np.floor(u).astype(np.int64)
    right = np.minimum(left + 1, W - 1)
    return np.nonzero(column_used[left] | column_used[right])[0]

"""The default head's surface: a quad grid shrink-wrapped onto the SDF sculpt.

Topology (independent of the head's proportions, so every head of the shape
space shares it):
- a skin grid of `N_COLS` columns (azimuth around the head, denser at the face)
  by rows (neck rows from the neck base up, then head rows of constant
  elevation seen from `HEAD_CENTER`), capped at the crown by a square quad
  patch (no pole, so no sliver triangles);
- the eye and mouth openings are slits along grid rows: the row's vertices
  between the two corners are duplicated, the copies are pulled apart in
  parameter space (almond-shaped lids, parted lips);
- two eyeballs (UV spheres looking along +z) behind the lids and a closed mouth
  bag hanging off the lip margin.
Positions come from casting each vertex's ray onto the SDF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from .sdf import (
    EYE_RADIUS,
    HEAD_CENTER,
    HeadParams,
    eye_center,
    neck_axis_z,
    raycast,
)

N_COLS = 144
BASE_COLS = 128  # columns of the base azimuth mapping; the rest go to the ears
EAR_PHI, EAR_PHI_SIGMA = 96.0, 14.0  # deg, azimuth of the ear and width of its extra columns
NECK_ROWS = 24
NECK_BASE_Y = -19.3  # the cut's lowest point, under the chest
NECK_CUT_RISE = 4.0  # the cut rises this much from front to back: a bust cut on a slant
E_JUNCTION = -64.0  # elevation (deg) where the head rows meet the neck rows
E_NAPE = -54.0  # elevation of the lowest head row straight behind
E_NAPE_FROM = -36.0  # head rows below this are drawn up towards E_NAPE at the back
E_TOP = 56.0  # elevation of the ring the crown cap closes
E_EYE = 14.3
E_MOUTH = -22.0
EYE_PHI = (11.3, 28.8)  # azimuths (deg) of the left eye's corners
MOUTH_PHI = 14.8  # azimuth of the left mouth corner
EYE_OPEN_UP = 3.2  # deg, peak upper-lid lift (the lid covers the top of the iris)
EYE_OPEN_LO = 3.0
MOUTH_OPEN = 0.4  # deg, lips slightly parted at rest
EYE_LAT, EYE_LON = 12, 24
# Oral cavity rings behind the lip margin (cm): depth behind the lips' front, half width,
# half height (above / below the mouth line), how far the sides curve back; the last ring
# closes the cavity.
BAG_DEPTH = np.array([0.3, 0.75, 1.4, 2.4, 3.6, 4.8, 5.7, 6.2])
BAG_WIDTH = np.array([0.0, 2.75, 3.1, 3.35, 3.35, 3.0, 2.2, 1.1])
BAG_HEIGHT = np.array([0.3, 1.55, 2.15, 2.35, 2.35, 2.2, 1.55, 0.0])
BAG_CURVE = np.array([0.0, 1.1, 1.5, 2.0, 1.8, 1.2, 0.6, 0.2])
BAG_KEEP = np.array([1.0, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0])
# Arches (cm): half width a, depth b, front z behind the lips' front, crown height at the
# incisors and at the molars, labial-lingual thickness at the incisors and molars, how far
# the incisal edge lies from the mouth line (the corners' height; the lips' middle is lower),
# towards the crown's root (negative: past the line).
ARCH = {
    "upper": dict(a=2.25, b=3.6, front=1.05, crown=(1.0, 0.75), thick=(0.62, 0.95), gap=-0.27),
    "lower": dict(a=2.1, b=3.45, front=1.25, crown=(0.95, 0.7), thick=(0.55, 0.9), gap=0.42),
}
GUM = 0.38  # height of the gum band over the crowns
TONGUE_C = np.array([-1.05, -3.75])  # centre: below the mouth line, behind the lips' front
TONGUE_R = np.array([1.0, 0.45, 1.45])

PART_SKIN, PART_EYE_L, PART_EYE_R, PART_MOUTH = 0, 1, 2, 3
PART_TEETH_UPPER, PART_GUM_UPPER, PART_TEETH_LOWER, PART_GUM_LOWER, PART_TONGUE = 4, 5, 6, 7, 8
LOWER_JAW_PARTS = (PART_TEETH_LOWER, PART_GUM_LOWER, PART_TONGUE)  # move with the mandible
# Dental arches: tubes swept along a U-shaped arch x = a sin t, z = z0 - b (1 - cos t).
ARCH_N = 41  # samples along each arch
ARCH_T = np.radians(100.0)  # half angle of the arch (incisors at 0, last molars at the end)
# cross-section of the upper arch (offset along the arch's outward normal, height above
# the incisal plane) as fractions: tooth crown, then the gum over it
_SECTION = np.array([
    [0.38, 0.0], [0.5, 0.35], [0.5, 0.72], [0.62, 0.86], [0.34, 1.0],
    [-0.34, 1.0], [-0.62, 0.86], [-0.5, 0.72], [-0.5, 0.35], [-0.38, 0.0],
])  # fmt: skip
GUM_FROM = 0.8  # section points at or above this height fraction are gum
TONGUE_LAT, TONGUE_LON = 8, 16


def column_azimuths() -> np.ndarray:
    """Azimuth (rad) of each grid column; column N/2 faces +z, column 0 the back. [N]

    The column density (columns per radian of azimuth) is that of t - 0.5 sin t over
    BASE_COLS columns (three times denser at the face than at the back) plus a bump over
    each ear, whose folds need twice the columns the side of the head has."""
    tf = np.linspace(-np.pi, np.pi, 40001)
    pf = tf - 0.5 * np.sin(tf)  # the base mapping; its density d t / d phi, integrated, is tf
    sig = np.radians(EAR_PHI_SIGMA)
    amp = 2 * np.pi * (N_COLS / BASE_COLS - 1.0) / (2 * sig * np.sqrt(np.pi))

    def bump(ph: np.ndarray) -> np.ndarray:  # integral of the ear density bumps from -pi
        from scipy.special import erf

        c = np.radians(EAR_PHI)
        g = erf((ph - c) / sig) + erf((ph + c) / sig) - erf((-np.pi - c) / sig) - erf((c - np.pi) / sig)
        return amp * sig * np.sqrt(np.pi) / 2 * g

    T = tf + bump(pf)  # cumulative density at azimuth pf (odd about 0)
    T = T - T[len(T) // 2]
    tk = -np.pi * N_COLS / BASE_COLS + 2 * np.pi * np.arange(N_COLS) / BASE_COLS
    phi = np.interp(tk, T, pf)
    phi[0] = -np.pi
    return phi


def _segment(a: float, b: float, step: float) -> np.ndarray:
    n = max(1, int(round(abs(b - a) / step)))
    return np.linspace(a, b, n + 1)[:-1]


ROW_FINE, ROW_COARSE = 1.35, 2.7  # deg between head rows over the face, and at crown and neck


def row_spacing(e: np.ndarray) -> np.ndarray:
    """Elevation step (deg) of the head rows at elevation e: fine from under the jaw to over
    the ears, easing (no step: a jump in row spacing shows as a line under studio light) to
    coarse at the crown and towards the neck."""
    up = np.clip((e - 24.0) / 16.0, 0.0, 1.0)
    lo = np.clip((-42.0 - e) / 14.0, 0.0, 1.0)
    ramp = up * up * (3 - 2 * up) + lo * lo * (3 - 2 * lo)
    return ROW_FINE + (ROW_COARSE - ROW_FINE) * ramp


def _graded(a: float, b: float) -> np.ndarray:
    """Rows from a up to b (b excluded) spaced by row_spacing, a whole number of steps."""
    ef = np.linspace(a, b, 4001)
    cum = np.concatenate([[0.0], np.cumsum(np.diff(ef) / row_spacing(0.5 * (ef[1:] + ef[:-1])))])
    n = max(1, int(round(cum[-1])))
    return np.interp(np.linspace(0.0, cum[-1], n + 1)[:-1], cum, ef)


def head_row_elevations() -> np.ndarray:
    """Elevations (deg) of the head rows, fine over the face, exact rows at eyes and mouth."""
    parts = [
        _graded(E_JUNCTION, E_MOUTH),
        _graded(E_MOUTH, E_EYE),
        _graded(E_EYE, E_TOP),
        np.array([E_TOP]),
    ]
    return np.concatenate(parts)


def _nearest(values: np.ndarray, target: float) -> int:
    return int(np.argmin(np.abs(values - target)))


@dataclass
class Topology:
    """Index bookkeeping shared by every head built on this grid."""

    num_vertices: int
    quads: np.ndarray  # [Fq, 4]
    tris: np.ndarray  # [Ft, 3]
    part: np.ndarray  # [V] PART_*
    grid: np.ndarray  # [R, N] vertex id of each skin grid node (upper copy at slits)
    phi: np.ndarray  # [V] azimuth parameter of skin vertices (rad), nan elsewhere
    elev: np.ndarray  # [V] elevation parameter (deg) before the opening warp
    row: np.ndarray  # [V] grid row (-1 off the grid)
    col: np.ndarray  # [V] grid column (-1 off the grid)
    below_slit: np.ndarray  # [V] bool, lower copies of slit vertices
    eye_rows: int = 0
    mouth_row: int = 0
    eye_cols: dict = field(default_factory=dict)  # side -> (first, last) corner columns
    mouth_cols: tuple = (0, 0)
    upper_margin: dict = field(default_factory=dict)  # name -> [k] ids, corner to corner
    lower_margin: dict = field(default_factory=dict)
    cap_ids: np.ndarray | None = None  # [m+1, m+1]
    cap_dirs: np.ndarray | None = None  # [m+1, m+1, 2] (azimuth rad, elevation deg)
    eye_ids: dict = field(default_factory=dict)  # side -> [k] eyeball vertex ids
    eye_unit: dict = field(default_factory=dict)  # side -> [k, 3] unit sphere points
    bag_ids: np.ndarray | None = None  # [K, L] mouth bag rings (loop order)
    bag_loop: np.ndarray | None = None  # [L] lip margin loop
    bag_side: np.ndarray | None = None  # [L] +1 upper lip, -1 lower, 0 corner
    arch_ids: dict = field(default_factory=dict)  # "upper"/"lower" -> ([ARCH_N, M] ids, [2] end ids)
    tongue_ids: np.ndarray | None = None  # [k]
    tongue_unit: np.ndarray | None = None  # [k, 3] unit sphere points (y up)
    uv: np.ndarray | None = None  # [V, 2]
    uv_coords: np.ndarray | None = None  # [T, 2]
    quad_uv: np.ndarray | None = None  # [Fq, 4]
    tri_uv: np.ndarray | None = None  # [Ft, 3]


def build_topology() -> Topology:
    """Grid, slits, cap, eyeballs and mouth bag as index arrays."""
    phis = column_azimuths()
    elevs = head_row_elevations()
    H = len(elevs)
    R = NECK_ROWS + H
    N = N_COLS
    grid = np.arange(R * N).reshape(R, N)
    nv = R * N
    phi = list(np.tile(phis, R))
    elev = [np.nan] * (NECK_ROWS * N) + list(np.repeat(elevs, N))
    row = list(np.repeat(np.arange(R), N))
    col = list(np.tile(np.arange(N), R))
    below = [False] * nv
    part = [PART_SKIN] * nv

    eye_row = NECK_ROWS + _nearest(elevs, E_EYE)
    mouth_row = NECK_ROWS + _nearest(elevs, E_MOUTH)
    deg = np.degrees(phis)
    eye_cols = {
        "L": (_nearest(deg, EYE_PHI[0]), _nearest(deg, EYE_PHI[1])),
        "R": (_nearest(deg, -EYE_PHI[1]), _nearest(deg, -EYE_PHI[0])),
    }
    mouth_cols = (_nearest(deg, -MOUTH_PHI), _nearest(deg, MOUTH_PHI))

    # Duplicate slit vertices: the lower copies serve the quads below the slit row.
    lower_copy: dict[tuple[int, int], int] = {}
    upper_margin, lower_margin = {}, {}
    for name, r, (a, b) in [
        ("eye_L", eye_row, eye_cols["L"]),
        ("eye_R", eye_row, eye_cols["R"]),
        ("mouth", mouth_row, mouth_cols),
    ]:
        ups, los = [grid[r, a]], [grid[r, a]]
        for c in range(a + 1, b):
            lower_copy[(r, c)] = nv
            phi.append(phis[c])
            elev.append(elevs[r - NECK_ROWS])
            row.append(r)
            col.append(c)
            below.append(True)
            part.append(PART_SKIN)
            ups.append(grid[r, c])
            los.append(nv)
            nv += 1
        ups.append(grid[r, b])
        los.append(grid[r, b])
        upper_margin[name] = np.array(ups)
        lower_margin[name] = np.array(los)

    quads = []
    for r in range(R - 1):
        for c in range(N):
            c1 = (c + 1) % N
            v00, v01 = grid[r, c], grid[r, c1]
            v10, v11 = grid[r + 1, c], grid[r + 1, c1]
            v10 = lower_copy.get((r + 1, c), v10)
            v11 = lower_copy.get((r + 1, c1), v11)
            quads.append([v00, v01, v11, v10])

    # Crown cap: an m x m quad patch whose boundary is the top ring.
    m = N // 4
    s = np.linspace(-1, 1, m + 1)
    S, T = np.meshgrid(s, s, indexing="ij")  # S along x, T along -z
    X = S * np.sqrt(1 - T**2 / 2)
    Z = -T * np.sqrt(1 - S**2 / 2)
    psi = np.arctan2(X, Z)
    rho = np.clip(np.sqrt(X**2 + Z**2), 0, 1)
    cap = -np.ones((m + 1, m + 1), int)
    bnd = [(i, j) for i in range(m + 1) for j in range(m + 1) if i in (0, m) or j in (0, m)]
    bpsi = np.array([psi[i, j] for i, j in bnd])
    order = np.argsort(bpsi)
    top = R - 1
    # Boundary points sorted by angle match the columns sorted by azimuth.
    col_order = np.argsort(phis)
    start = int(np.argmin(np.abs(bpsi[order])))  # psi = 0 (front)
    front_col = int(np.argmin(np.abs(phis[col_order])))
    for k in range(len(order)):
        i, j = bnd[order[(start + k) % len(order)]]
        cap[i, j] = grid[top, col_order[(front_col + k) % N]]
    bphi_sorted = np.array([phis[col_order[(front_col + k) % N]] for k in range(N)])
    bpsi_sorted = np.array([bpsi[order[(start + k) % N]] for k in range(N)])
    cap_dirs = np.zeros((m + 1, m + 1, 2))
    xp = np.unwrap(bpsi_sorted)
    fp = np.unwrap(bphi_sorted)
    for i in range(m + 1):
        for j in range(m + 1):
            a = psi[i, j]
            # map the disc angle onto the column azimuths (periodic interpolation)
            aa = (a - xp[0]) % (2 * np.pi) + xp[0]
            az = np.interp(aa, np.concatenate([xp, [xp[0] + 2 * np.pi]]),
                           np.concatenate([fp, [fp[0] + 2 * np.pi]]))
            cap_dirs[i, j] = [np.angle(np.exp(1j * az)), 90.0 - (90.0 - E_TOP) * rho[i, j]]
            if cap[i, j] < 0:
                cap[i, j] = nv
                nv += 1
                phi.append(cap_dirs[i, j, 0])
                elev.append(cap_dirs[i, j, 1])
                row.append(-1)
                col.append(-1)
                below.append(False)
                part.append(PART_SKIN)
    for i in range(m):
        for j in range(m):
            quads.append([cap[i, j], cap[i + 1, j], cap[i + 1, j + 1], cap[i, j + 1]])

    # Eyeballs: UV spheres with their poles on the gaze axis (+z).
    tris = []
    eye_ids, eye_unit = {}, {}
    for side, p in (("L", PART_EYE_L), ("R", PART_EYE_R)):
        pts = [[0.0, 0.0, 1.0]]
        for a in range(1, EYE_LAT):
            th = np.pi * a / EYE_LAT
            for b in range(EYE_LON):
                ph = 2 * np.pi * b / EYE_LON
                pts.append([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
        pts.append([0.0, 0.0, -1.0])
        pts = np.array(pts)
        ids = nv + np.arange(len(pts))
        nv += len(pts)
        phi += [np.nan] * len(pts)
        elev += [np.nan] * len(pts)
        row += [-1] * len(pts)
        col += [-1] * len(pts)
        below += [False] * len(pts)
        part += [p] * len(pts)

        _sphere_faces(ids, EYE_LAT, EYE_LON, tris, quads)
        eye_ids[side] = ids
        eye_unit[side] = pts

    # Mouth bag: rings behind the lip margin loop, closed by merging its halves.
    up, lo = upper_margin["mouth"], lower_margin["mouth"]
    loop = np.concatenate([up, lo[1:-1][::-1]])
    side_flag = np.concatenate([[0], np.ones(len(up) - 2), [0], -np.ones(len(lo) - 2)])
    K = len(BAG_DEPTH)
    L = len(loop)
    bag = np.zeros((K, L), int)
    nu = len(up)
    for k in range(K):
        last = k == K - 1
        for idx in range(L):
            if last and idx > nu - 1:
                # lower half merges into the upper half's vertex at the same column
                partner = L - idx
                bag[k, idx] = bag[k, partner]
                continue
            bag[k, idx] = nv
            nv += 1
            phi.append(np.nan)
            elev.append(np.nan)
            row.append(-1)
            col.append(-1)
            below.append(bool(side_flag[idx] < 0))
            part.append(PART_MOUTH)
    prev = loop
    for k in range(K):
        cur = bag[k]
        for idx in range(L):
            j = (idx + 1) % L
            a, b, c, d = prev[idx], prev[j], cur[j], cur[idx]
            # reversed so the bag continues the lips' winding
            if len({a, b, c, d}) == 4:
                quads.append([a, d, c, b])
            elif len({a, b, c, d}) == 3:
                ring = [a, d, c, b]
                tri = [v for i2, v in enumerate(ring) if v not in ring[:i2]]
                tris.append(tri)
        prev = cur

    # Dental arches (closed tubes) and the tongue (a closed ellipsoid).
    arch_ids = {}
    M = len(_SECTION)
    for name, tpart, gpart in (("upper", PART_TEETH_UPPER, PART_GUM_UPPER),
                               ("lower", PART_TEETH_LOWER, PART_GUM_LOWER)):
        ids = nv + np.arange(ARCH_N * M).reshape(ARCH_N, M)
        ends = nv + ARCH_N * M + np.arange(2)
        nv += ARCH_N * M + 2
        vpart = np.where(_SECTION[:, 1] >= GUM_FROM, gpart, tpart)
        part += list(np.tile(vpart, ARCH_N)) + [tpart, tpart]
        n_new = ARCH_N * M + 2
        phi += [np.nan] * n_new
        elev += [np.nan] * n_new
        row += [-1] * n_new
        col += [-1] * n_new
        below += [name == "lower"] * n_new
        flip = name == "lower"  # the lower arch is the upper one upside down
        for i in range(ARCH_N - 1):
            for j in range(M):
                j1 = (j + 1) % M
                qd = [ids[i, j], ids[i + 1, j], ids[i + 1, j1], ids[i, j1]]
                quads.append(qd[::-1] if flip else qd)
        for j in range(M):
            j1 = (j + 1) % M
            a = [ends[0], ids[0, j], ids[0, j1]]
            b = [ends[1], ids[-1, j1], ids[-1, j]]
            tris.append(a[::-1] if flip else a)
            tris.append(b[::-1] if flip else b)
        arch_ids[name] = (ids, ends)
    tpts = [[0.0, 1.0, 0.0]]
    for a in range(1, TONGUE_LAT):
        th = np.pi * a / TONGUE_LAT
        for b in range(TONGUE_LON):
            ph = 2 * np.pi * b / TONGUE_LON
            tpts.append([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)])
    tpts.append([0.0, -1.0, 0.0])
    tpts = np.array(tpts)
    tongue_ids = nv + np.arange(len(tpts))
    nv += len(tpts)
    part += [PART_TONGUE] * len(tpts)
    phi += [np.nan] * len(tpts)
    elev += [np.nan] * len(tpts)
    row += [-1] * len(tpts)
    col += [-1] * len(tpts)
    below += [True] * len(tpts)

    _sphere_faces(tongue_ids, TONGUE_LAT, TONGUE_LON, tris, quads)

    topo = Topology(
        num_vertices=nv,
        quads=np.array(quads, np.int64),
        tris=np.array(tris, np.int64).reshape(-1, 3),
        part=np.array(part),
        grid=grid,
        phi=np.array(phi, float),
        elev=np.array(elev, float),
        row=np.array(row),
        col=np.array(col),
        below_slit=np.array(below),
        eye_rows=eye_row,
        mouth_row=mouth_row,
        eye_cols=eye_cols,
        mouth_cols=mouth_cols,
        upper_margin=upper_margin,
        lower_margin=lower_margin,
        cap_ids=cap,
        cap_dirs=cap_dirs,
        eye_ids=eye_ids,
        eye_unit=eye_unit,
        bag_ids=bag,
        bag_loop=loop,
        bag_side=side_flag,
        arch_ids=arch_ids,
        tongue_ids=tongue_ids,
        tongue_unit=tpts,
    )
    return topo


# --------------------------------------------------------------- geometry
def _opening(s: np.ndarray, skew: float, power: float = 0.75) -> np.ndarray:
    """Almond profile on [0, 1], zero at the corners; skew moves the peak."""
    s = np.clip(s, 0.0, 1.0)
    s = s ** np.exp(skew)
    return np.sin(np.pi * s) ** power


def warped_elevations(topo: Topology) -> np.ndarray:
    """Elevation (deg) of every grid vertex after opening the eye and mouth slits. [V]"""
    e = topo.elev.copy()
    phideg = np.degrees(topo.phi)
    on_grid = topo.row >= 0
    slits = [
        (topo.eye_rows, topo.eye_cols["L"], EYE_OPEN_UP, EYE_OPEN_LO, 0.25, 9.0, 0.75),
        (topo.eye_rows, topo.eye_cols["R"], EYE_OPEN_UP, EYE_OPEN_LO, -0.25, 9.0, 0.75),
        # the lips part right up to the corners, so lip motions never shear them into each other
        (topo.mouth_row, topo.mouth_cols, MOUTH_OPEN, MOUTH_OPEN, 0.0, 3.0, 0.35),
    ]
    phis = np.degrees(column_azimuths())
    base = topo.elev.copy()
    for r, (a, b), o_up, o_lo, skew, width, power in slits:
        e_s = head_row_elevations()[r - NECK_ROWS]
        pa, pb = phis[a], phis[b]
        s = (phideg - pa) / (pb - pa)
        if pb < pa:
            s = 1 - s
        # the right eye mirrors the left: its parameter runs from the outer corner
        if skew < 0:
            s = 1 - (phideg - pa) / (pb - pa)
        prof = _opening(s, abs(skew), power) * ((s > 0) & (s < 1))
        d = base - e_s
        above = (d > 0) | ((d == 0) & ~topo.below_slit)
        fall = np.clip(1 - np.abs(d) / width, 0, 1) ** 2
        de = np.where(above, o_up, -o_lo) * prof * fall
        e = np.where(on_grid, e + np.nan_to_num(de), e)
    # Behind, the lowest head rows are drawn up under the occiput, so that the head's rays
    # leave through the nape above where it leans back into the trapezius (sdf.NAPE_LEAN).
    behind = np.clip(-np.cos(topo.phi), 0.0, 1.0) ** 2
    low = on_grid & (base < E_NAPE_FROM)
    f = 1.0 - (E_JUNCTION - E_NAPE) / (E_JUNCTION - E_NAPE_FROM) * behind
    e = np.where(low, E_NAPE_FROM + (e - E_NAPE_FROM) * f, e)
    return e


def _dirs(phi: np.ndarray, elev_deg: np.ndarray) -> np.ndarray:
    el = np.radians(elev_deg)
    return np.stack([np.cos(el) * np.sin(phi), np.sin(el), np.cos(el) * np.cos(phi)], -1)


def neck_cut_y(azimuth: np.ndarray) -> np.ndarray:
    """Height of the bottom ring at each azimuth about the neck axis (0 in front): lowest
    under the chest, NECK_CUT_RISE higher behind (a level cut leaves a pedestal's wall)."""
    return NECK_BASE_Y + NECK_CUT_RISE * 0.5 * (1.0 - np.cos(azimuth))


def place_vertices(topo: Topology, hp: HeadParams) -> np.ndarray:
    """Vertex positions [V, 3] of the head with proportions hp on this topology."""
    V = topo.num_vertices
    P = np.zeros((V, 3))
    e = warped_elevations(topo)
    head = (topo.part == PART_SKIN) & ~((topo.row >= 0) & (topo.row < NECK_ROWS))
    d = _dirs(topo.phi[head], e[head])
    o = np.broadcast_to(HEAD_CENTER, d.shape).copy()
    t = raycast(o, d, hp)
    P[head] = o + t[:, None] * d
    # Neck rows: horizontal rays from the neck axis, evenly spaced in height down to the base.
    junction = P[topo.grid[NECK_ROWS]]  # [N, 3]
    az = np.arctan2(junction[:, 0], junction[:, 2] - neck_axis_z(junction[:, 1], hp))
    base_y = neck_cut_y(az)
    for r in range(NECK_ROWS):
        f = r / NECK_ROWS
        y = base_y + (junction[:, 1] - base_y) * f
        o = np.stack([np.zeros_like(y), y, neck_axis_z(y, hp)], -1)
        dd = np.stack([np.sin(az), np.zeros_like(az), np.cos(az)], -1)
        tt = raycast(o, dd, hp)
        P[topo.grid[r]] = o + tt[:, None] * dd
    P = smooth_skin(topo, P, hp)
    # Eyeballs, and lids with thickness: the margin tucked in towards the eyeball (as far as
    # combined blink and squint shapes allow, which bring it up to 1.2 mm closer) and the
    # ring next to it rounded out, so the last quads are the margin's forward-facing edge.
    for side, sign in (("L", 1.0), ("R", -1.0)):
        c = eye_center(hp) * [sign, 1, 1]
        P[topo.eye_ids[side]] = c + EYE_RADIUS * topo.eye_unit[side]
        name = "eye_" + side
        a, b = topo.eye_cols[side]
        rim = np.concatenate([topo.upper_margin[name][1:-1], topo.lower_margin[name][1:-1]])
        r = P[rim] - c
        P[rim] = c + r * ((EYE_RADIUS + LID_MARGIN_GAP) / np.linalg.norm(r, axis=1))[:, None]
        cols = np.arange(a + 1, b)
        ring = np.concatenate([topo.grid[topo.eye_rows + 1, cols], topo.grid[topo.eye_rows - 1, cols]])
        r = P[ring] - c
        n = np.linalg.norm(r, axis=1)
        taper = np.tile(np.sin(np.pi * (cols - a) / (b - a)) ** 0.5, 2)  # none at the corners
        P[ring] = c + r * (np.maximum(n, EYE_RADIUS + LID_ROLL * taper) / n)[:, None]
    # Mouth bag: the oral cavity behind the lip margin, widening behind the lips' corners
    # and tall enough to hold the teeth, closing towards the throat.
    loop = P[topo.bag_loop]
    corners = P[topo.upper_margin["mouth"][[0, -1]]]
    y_m = corners[:, 1].mean()
    xc = np.abs(corners[:, 0]).max()
    z_lip = loop[:, 2].max()
    s_lat = np.clip(loop[:, 0] / xc, -1.0, 1.0)
    round_ = np.sqrt(np.clip(1.0 - s_lat**2, 0.0, 1.0)) ** 0.6
    for k in range(len(BAG_DEPTH)):
        ids = topo.bag_ids[k]
        f = BAG_KEEP[k]  # how much of the lip margin's own shape the ring keeps
        q = np.empty_like(loop)
        q[:, 0] = s_lat * BAG_WIDTH[k]
        q[:, 1] = y_m + (loop[:, 1] - y_m) * f + topo.bag_side * BAG_HEIGHT[k] * round_
        q[:, 2] = z_lip - BAG_DEPTH[k] - BAG_CURVE[k] * s_lat**2
        q = f * loop + (1 - f) * q
        if k == 0:  # just behind the lips' inner surface
            q = loop + [0.0, 0.0, -BAG_DEPTH[0]]
            q[:, 1] = y_m + (loop[:, 1] - y_m) * 0.6 + topo.bag_side * BAG_HEIGHT[0] * round_
        P[ids] = q  # merged vertices get the upper-half value (written first)
        if k == len(BAG_DEPTH) - 1:
            P[ids[: len(topo.upper_margin["mouth"])]] = q[: len(topo.upper_margin["mouth"])]
    # Teeth and gums: the upper arch rigid with the skull, the lower one behind and below it.
    for name in ("upper", "lower"):
        ids, ends = topo.arch_ids[name]
        P[np.concatenate([ids.ravel(), ends])] = arch_points(name, y_m, z_lip)
    c = np.array([0.0, y_m + TONGUE_C[0], z_lip + TONGUE_C[1]])
    P[topo.tongue_ids] = c + TONGUE_R * topo.tongue_unit
    return P


SMOOTH_ITERS = 12  # Taubin passes over the skin (removes the sculpt's lumps and creases)
LID_MARGIN_GAP = 0.145  # cm between the lid margin and the eyeball
LID_ROLL = 0.24  # cm, the lid's rounded edge next to the margin stands this far off the eyeball


def skin_neighbours(topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges (i, j) of the skin quads, both ways, unique. ([E], [E])"""
    q = topo.quads[(topo.part[topo.quads] == PART_SKIN).all(axis=1)]
    e = np.concatenate([q[:, [0, 1]], q[:, [1, 2]], q[:, [2, 3]], q[:, [3, 0]]])
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    return e[:, 0], e[:, 1]


def smooth_skin(topo: Topology, P: np.ndarray, hp: HeadParams) -> np.ndarray:
    """Taubin-smooth the skin along its normals (no sliding in the grid), away from the lid
    and lip margins (whose shape the openings need) and the neck's bottom ring."""
    i, j = skin_neighbours(topo)
    V = len(P)
    deg = np.bincount(i, minlength=V).astype(float)
    w = np.zeros(V)
    skin = np.unique(i)
    w[skin] = 1.0
    for sign in (1.0, -1.0):
        r = np.linalg.norm(P - eye_center(hp) * [sign, 1, 1], axis=1)
        w *= np.clip((r - 1.75) / 1.0, 0.0, 1.0)
    lips = np.concatenate([topo.upper_margin["mouth"], topo.lower_margin["mouth"]])
    d, _ = cKDTree(P[lips]).query(P)
    w *= np.clip((d - 0.2) / 0.6, 0.0, 1.0)
    w[topo.grid[0]] = 0.0
    w = w * w * (3 - 2 * w)
    q = topo.quads  # both diagonals, so the normals are as mirror-symmetric as the grid
    tris = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]], q[:, [1, 2, 3]], q[:, [1, 3, 0]]])
    tris = tris[(topo.part[tris] == PART_SKIN).all(axis=1)]
    Q = P.copy()
    for _ in range(SMOOTH_ITERS):
        fn = np.cross(Q[tris[:, 1]] - Q[tris[:, 0]], Q[tris[:, 2]] - Q[tris[:, 0]])
        n = np.zeros_like(Q)
        for k in range(3):
            np.add.at(n, tris[:, k], fn)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        for step in (0.5, -0.53):
            lap = np.zeros_like(Q)
            np.add.at(lap, i, Q[j])
            lap = lap / np.maximum(deg, 1.0)[:, None] - Q
            lap = (lap * n).sum(axis=1, keepdims=True) * n
            Q = Q + step * w[:, None] * lap
    return Q


def _tooth_profile(t: np.ndarray) -> np.ndarray:
    """0 at the middle of each tooth, 1 at the gaps between teeth, along the arch angle t."""
    # tooth widths from the midline: central and lateral incisor, canine, 2 premolars, 2 molars
    w = np.array([0.86, 0.66, 0.78, 0.7, 0.68, 1.0, 0.95])
    edges = np.concatenate([[0.0], np.cumsum(w)]) / w.sum() * ARCH_T
    ta = np.abs(t)
    k = np.clip(np.searchsorted(edges, ta) - 1, 0, len(w) - 1)
    u = (ta - edges[k]) / (edges[k + 1] - edges[k])
    return np.abs(2 * u - 1) ** 4


def arch_points(name: str, y_m: float, z_lip: float) -> np.ndarray:
    """Positions of one dental arch's vertices, [ARCH_N * M + 2, 3] (grid rows, then the two
    end centres), for a mouth line at height y_m and lips whose front is at z_lip."""
    g = ARCH[name]
    sign = 1.0 if name == "upper" else -1.0
    t = np.linspace(-ARCH_T, ARCH_T, ARCH_N)
    f = np.abs(t) / ARCH_T  # 0 incisors .. 1 molars
    cx = g["a"] * np.sin(t)
    cz = z_lip - g["front"] - g["b"] * (1 - np.cos(t))
    # outward normal of the arch curve in the x-z plane (forward at the incisors)
    n = np.stack([g["b"] * np.sin(t), g["a"] * np.cos(t)], 1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    thick = g["thick"][0] + (g["thick"][1] - g["thick"][0]) * f
    crown = g["crown"][0] + (g["crown"][1] - g["crown"][0]) * f
    notch = 0.12 * _tooth_profile(t)  # incisal edge notched between teeth
    cx, cz = cx - 0.5 * thick * n[:, 0], cz - 0.5 * thick * n[:, 1]  # the labial face's centre line
    out = []
    for i in range(ARCH_N):
        for off, h in _SECTION:
            height = crown[i] * min(h / 0.72, 1.0) + GUM * max(h - 0.72, 0.0) / 0.28
            if h == 0.0:
                height = notch[i]
            x = cx[i] + off * thick[i] * n[i, 0]
            z = cz[i] + off * thick[i] * n[i, 1]
            out.append([x, y_m + sign * (g["gap"] + height), z])
    for i in (0, ARCH_N - 1):
        mid = 0.5 * (crown[i] + GUM) * 0.8
        out.append([cx[i], y_m + sign * (g["gap"] + mid), cz[i]])
    return np.array(out)


def symmetrize(P: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """Make positions exactly x-mirror symmetric under the vertex map."""
    Q = P.copy()
    M = P[mirror] * [-1, 1, 1]
    Q = 0.5 * (P + M)
    Q[mirror == np.arange(len(P)), 0] = 0.0
    return Q


def mirror_map(P: np.ndarray) -> np.ndarray:
    """Index of each vertex's x-mirrored partner, found geometrically. [V]"""
    tree = cKDTree(P)
    d, idx = tree.query(P * [-1, 1, 1])
    if d.max() > 1e-3:
        raise RuntimeError(f"mesh is not symmetric (max mirror distance {d.max():.4f})")
    if not np.array_equal(idx[idx], np.arange(len(P))):
        raise RuntimeError("mirror map is not an involution")
    return idx


def polygon_arrays(topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """Flat corner list and polygon sizes (quads first, then triangles)."""
    corners = np.concatenate([topo.quads.ravel(), topo.tris.ravel()])
    sizes = np.concatenate([np.full(len(topo.quads), 4), np.full(len(topo.tris), 3)])
    return corners.astype(np.int64), sizes.astype(np.int64)


def all_triangles(topo: Topology) -> np.ndarray:
    q = topo.quads
    return np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]], topo.tris])


# -------------------------------------------------------------------- UVs
SKIN_V = (0.02, 0.74)  # v range of the skin grid (neck base .. top ring)


def build_uvs(topo: Topology, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex UVs [V, 2], UV coordinates [T, 2] and per-corner UV indices [N].

    The skin grid unwraps cylindrically (seam at the back of the head), with v
    proportional to arc length up the front of the neck and face, so a shift of
    the larynx map by tau moves the bump a predictable distance. The crown cap,
    eyeballs and mouth bag get islands of their own."""
    V = topo.num_vertices
    N = N_COLS
    uv = np.zeros((V, 2))
    front = P[topo.grid[:, N // 2]]
    arc = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(front, axis=0), axis=1))])
    vrow = SKIN_V[0] + (SKIN_V[1] - SKIN_V[0]) * arc / arc[-1]
    on = topo.row >= 0
    uv[on, 0] = topo.col[on] / N
    uv[on, 1] = vrow[topo.row[on]]
    cap_boundary = set(topo.grid[-1].tolist())
    m = topo.cap_ids.shape[0] - 1
    extra = []  # (vertex, u, v) island copies for corners that need their own UV
    cap_uv = {}
    for i in range(m + 1):
        for j in range(m + 1):
            vid = int(topo.cap_ids[i, j])
            uvc = (0.78 + 0.2 * i / m, 0.78 + 0.2 * j / m)
            if vid in cap_boundary:
                cap_uv[vid] = uvc
            else:
                uv[vid] = uvc
    # islands in the free band above the skin (v > 0.76, u < 0.76): eyes, cavity, teeth, tongue
    for k, side in enumerate(("L", "R")):
        ids = topo.eye_ids[side]
        unit = topo.eye_unit[side]
        back = unit[:, 2] < 0
        uv[ids, 0] = 0.045 + 0.09 * back + 0.04 * unit[:, 0]
        uv[ids, 1] = 0.81 + 0.1 * k + 0.04 * unit[:, 1]
    bag = topo.bag_ids
    K, L = bag.shape
    for k in range(K):
        for idx in range(L):
            uv[bag[k, idx]] = (0.2 + 0.25 * idx / L, 0.77 + 0.2 * (k + 1) / K)
    for j, name in enumerate(("upper", "lower")):
        ids, ends = topo.arch_ids[name]
        A, M = ids.shape
        uv[ids, 0] = 0.47 + 0.28 * np.arange(A)[:, None] / (A - 1)
        uv[ids, 1] = 0.77 + 0.07 * j + 0.06 * np.arange(M)[None, :] / M
        uv[ends, 0] = (0.465, 0.755)
        uv[ends, 1] = 0.80 + 0.07 * j
    tu = topo.tongue_unit
    uv[topo.tongue_ids, 0] = 0.61 + 0.13 * np.arctan2(tu[:, 0], tu[:, 2]) / np.pi
    uv[topo.tongue_ids, 1] = 0.955 + 0.035 * tu[:, 1]
    uv_coords = [uv]
    base = V
    corner_uv = []
    for q in topo.quads:
        ids = list(q)
        cols = topo.col[ids]
        out = []
        for vid, c in zip(ids, cols):
            if vid in cap_uv and topo.part[q[0]] == PART_SKIN and any(
                topo.row[x] < 0 for x in ids
            ):
                extra.append(cap_uv[vid])
                out.append(base + len(extra) - 1)
            elif c == 0 and (cols == N - 1).any():
                extra.append((1.0, uv[vid, 1]))  # seam: the back column at u = 1
                out.append(base + len(extra) - 1)
            else:
                out.append(vid)
        corner_uv.append(out)
    for t in topo.tris:
        corner_uv.append(list(t))
    uv_coords = np.concatenate([uv, np.array(extra).reshape(-1, 2)])
    flat = np.concatenate([np.array(c) for c in corner_uv]).astype(np.int64)
    return uv, uv_coords, flat


# -------------------------------------------------------------- landmarks
# Targets for the contour, brows and nose (iBUG order, subject's right = -x first);
# they are snapped to the skin vertex seen from HEAD_CENTER in the nearest direction.
_JAW_R = [
    (-7.0, 3.4, 3.2), (-7.0, 1.4, 3.6), (-6.8, -0.5, 4.2), (-6.4, -2.4, 4.9), (-5.6, -4.4, 6.0),
    (-4.3, -6.1, 7.4), (-3.0, -6.9, 8.8), (-1.5, -7.3, 10.1), (0.0, -7.6, 10.4),
]
_BROW_R = [(-5.6, 5.2, 7.9), (-4.8, 5.9, 8.9), (-3.7, 6.2, 9.8), (-2.4, 6.1, 10.4), (-1.2, 5.8, 10.7)]
_NOSE = [(0.0, 3.7, 10.6), (0.0, 2.6, 11.5), (0.0, 1.6, 12.3), (0.0, 0.5, 13.0)]
_NOSTRIL = [(-1.25, -1.0, 10.9), (-0.6, -1.1, 11.4), (0.0, -1.2, 11.6)]


def _snap(P: np.ndarray, topo: Topology, targets: np.ndarray) -> np.ndarray:
    skin = np.nonzero((topo.part == PART_SKIN) & (topo.row >= NECK_ROWS))[0]
    d = P[skin] - HEAD_CENTER
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = targets - HEAD_CENTER
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return skin[np.argmax(t @ d.T, axis=1)]


def landmark_indices(topo: Topology, P: np.ndarray) -> np.ndarray:
    """The 68 Multi-PIE (iBUG) landmarks as vertex indices [68]."""
    flip = np.array([-1.0, 1.0, 1.0])
    jaw = np.array(_JAW_R + [tuple(np.array(p) * flip) for p in _JAW_R[:-1][::-1]])
    brows = np.array(_BROW_R + [tuple(np.array(p) * flip) for p in _BROW_R[::-1]])
    nose = np.array(_NOSE)
    nostril = np.array(_NOSTRIL + [tuple(np.array(p) * flip) for p in _NOSTRIL[:-1][::-1]])
    lm = list(_snap(P, topo, np.concatenate([jaw, brows, nose, nostril])))

    def at(arr: np.ndarray, f: float) -> int:
        return int(arr[int(round(f * (len(arr) - 1)))])

    uR, lR = topo.upper_margin["eye_R"], topo.lower_margin["eye_R"]  # outer -> inner
    lm += [at(uR, 0), at(uR, 1 / 3), at(uR, 2 / 3), at(uR, 1), at(lR, 2 / 3), at(lR, 1 / 3)]
    uL, lL = topo.upper_margin["eye_L"], topo.lower_margin["eye_L"]  # inner -> outer
    lm += [at(uL, 0), at(uL, 1 / 3), at(uL, 2 / 3), at(uL, 1), at(lL, 2 / 3), at(lL, 1 / 3)]
    # Outer lip contour: grid rows a few above / below the mouth slit.
    a, b = topo.mouth_cols
    cols = np.arange(a, b + 1)
    up_row = topo.grid[topo.mouth_row + 3, cols]
    lo_row = topo.grid[topo.mouth_row - 3, cols]
    um, lmg = topo.upper_margin["mouth"], topo.lower_margin["mouth"]
    lm += [int(um[0])] + [at(up_row, f) for f in (0.17, 0.33, 0.5, 0.67, 0.83)] + [int(um[-1])]
    lm += [at(lo_row, f) for f in (0.8, 0.65, 0.5, 0.35, 0.2)]
    lm += [int(um[0]), at(um, 0.25), at(um, 0.5), at(um, 0.75), int(um[-1])]
    lm += [at(lmg, 0.75), at(lmg, 0.5), at(lmg, 0.25)]
    return np.array(lm, np.int64)


def _sphere_faces(ids, lat: int, lon: int, tris: list, quads: list) -> None:
    """Faces of a UV sphere whose vertex ids are [pole, ring 1 .. ring lat-1 (lon each), pole]:
    triangle fans at the poles, quads between rings (appended to tris and quads)."""

    def ring(a: int, b: int) -> int:
        return ids[1 + (a - 1) * lon + b % lon]

    for b in range(lon):
        tris.append([ids[0], ring(1, b), ring(1, b + 1)])
        tris.append([ids[-1], ring(lat - 1, b + 1), ring(lat - 1, b)])
    for a in range(1, lat - 1):
        for b in range(lon):
            quads.append([ring(a, b), ring(a + 1, b), ring(a + 1, b + 1), ring(a, b + 1)])

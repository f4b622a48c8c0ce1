"""Colour maps for scalar data on meshes and colour bars (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# 17 evenly spaced control colours sampled from matplotlib's published 256-entry tables
# (viridis/magma/inferno/plasma/cividis: van der Walt & Smith, CC0; turbo: Google, Apache
# 2.0; coolwarm: Moreland's CoolWarmFloat33). Linear interpolation of 17 stops stays within
# ~0.03 of the originals.
# fmt: off
_COLORMAP_STOPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.2670, 0.0049, 0.3294), (0.2823, 0.0950, 0.4173), (0.2788, 0.1755, 0.4834),
        (0.2590, 0.2515, 0.5247), (0.2297, 0.3224, 0.5457), (0.1994, 0.3876, 0.5546),
        (0.1727, 0.4488, 0.5579), (0.1490, 0.5081, 0.5573), (0.1276, 0.5669, 0.5506),
        (0.1201, 0.6222, 0.5349), (0.1539, 0.6802, 0.5042), (0.2394, 0.7356, 0.4557),
        (0.3607, 0.7860, 0.3878), (0.5063, 0.8288, 0.3004), (0.6681, 0.8620, 0.1963),
        (0.8353, 0.8860, 0.1026), (0.9932, 0.9062, 0.1439),
    ),
    "magma": (
        (0.0015, 0.0005, 0.0139), (0.0396, 0.0311, 0.1335), (0.1131, 0.0655, 0.2768),
        (0.2117, 0.0620, 0.4186), (0.3167, 0.0717, 0.4854), (0.4147, 0.1104, 0.5047),
        (0.5128, 0.1482, 0.5076), (0.6136, 0.1818, 0.4985), (0.7164, 0.2150, 0.4753),
        (0.8109, 0.2529, 0.4393), (0.8996, 0.3146, 0.3910), (0.9585, 0.4113, 0.3600),
        (0.9857, 0.5281, 0.3794), (0.9958, 0.6463, 0.4414), (0.9970, 0.7624, 0.5288),
        (0.9928, 0.8772, 0.6331), (0.9871, 0.9914, 0.7495),
    ),
    "inferno": (
        (0.0015, 0.0005, 0.0139), (0.0423, 0.0281, 0.1411), (0.1293, 0.0473, 0.2908),
        (0.2383, 0.0366, 0.3964), (0.3415, 0.0623, 0.4294), (0.4412, 0.0993, 0.4316),
        (0.5409, 0.1347, 0.4151), (0.6401, 0.1714, 0.3811), (0.7357, 0.2159, 0.3302),
        (0.8173, 0.2710, 0.2704), (0.8903, 0.3480, 0.1983), (0.9443, 0.4428, 0.1204),
        (0.9771, 0.5508, 0.0391), (0.9879, 0.6677, 0.0583), (0.9761, 0.7900, 0.1960),
        (0.9487, 0.9105, 0.3953), (0.9884, 0.9984, 0.6449),
    ),
    "plasma": (
        (0.0504, 0.0298, 0.5280), (0.1934, 0.0184, 0.5903), (0.2999, 0.0096, 0.6316),
        (0.3994, 0.0009, 0.6561), (0.4949, 0.0120, 0.6579), (0.5844, 0.0686, 0.6328),
        (0.6651, 0.1386, 0.5856), (0.7360, 0.2094, 0.5279), (0.7982, 0.2802, 0.4695),
        (0.8501, 0.3470, 0.4172), (0.8990, 0.4204, 0.3630), (0.9403, 0.4976, 0.3092),
        (0.9718, 0.5804, 0.2549), (0.9907, 0.6696, 0.2016), (0.9935, 0.7655, 0.1569),
        (0.9763, 0.8680, 0.1434), (0.9400, 0.9752, 0.1313),
    ),
    "cividis": (
        (0.0000, 0.1351, 0.3048), (0.0000, 0.1788, 0.4148), (0.1034, 0.2204, 0.4358),
        (0.1951, 0.2644, 0.4259), (0.2637, 0.3078, 0.4228), (0.3242, 0.3513, 0.4263),
        (0.3808, 0.3952, 0.4357), (0.4352, 0.4398, 0.4511), (0.4887, 0.4853, 0.4710),
        (0.5441, 0.5289, 0.4719), (0.6052, 0.5768, 0.4644), (0.6680, 0.6262, 0.4493),
        (0.7324, 0.6774, 0.4257), (0.7985, 0.7306, 0.3926), (0.8664, 0.7860, 0.3466),
        (0.9367, 0.8438, 0.2809), (0.9957, 0.9093, 0.2178),
    ),
    "turbo": (
        (0.1900, 0.0718, 0.2322), (0.2511, 0.2524, 0.6337), (0.2763, 0.4212, 0.8912),
        (0.2586, 0.5796, 0.9988), (0.1584, 0.7355, 0.9231), (0.0927, 0.8655, 0.7623),
        (0.1966, 0.9490, 0.5947), (0.4278, 0.9942, 0.3857), (0.6436, 0.9900, 0.2336),
        (0.7952, 0.9303, 0.2039), (0.9267, 0.8203, 0.2257), (0.9916, 0.6841, 0.2071),
        (0.9859, 0.5048, 0.1337), (0.9262, 0.3247, 0.0584), (0.8240, 0.1918, 0.0197),
        (0.6754, 0.0898, 0.0045), (0.4796, 0.0158, 0.0106),
    ),
    "coolwarm": (
        (0.2298, 0.2987, 0.7537), (0.3042, 0.4069, 0.8453), (0.3837, 0.5102, 0.9178),
        (0.4677, 0.6056, 0.9685), (0.5543, 0.6901, 0.9955), (0.6408, 0.7608, 0.9978),
        (0.7240, 0.8149, 0.9757), (0.8006, 0.8504, 0.9300), (0.8674, 0.8644, 0.8626),
        (0.9227, 0.8286, 0.7771), (0.9582, 0.7712, 0.6803), (0.9699, 0.6958, 0.5813),
        (0.9583, 0.6043, 0.4833), (0.9244, 0.4986, 0.3891), (0.8697, 0.3793, 0.3009),
        (0.7959, 0.2418, 0.2208), (0.7057, 0.0156, 0.1502),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
# fmt: on
# Diverging maps get a symmetric default range around 0 in heatmap_colors.
DIVERGING = frozenset({"coolwarm"})


def colormap(name: str, n: int = 256) -> np.ndarray:
    """Colour table [n, 3] (floats 0..1) of a named map; a "_r" suffix reverses it.

    Names: viridis, magma, inferno, plasma, cividis, turbo, coolwarm, gray.
    """
    base, reverse = (name[:-2], True) if name.endswith("_r") else (name, False)
    try:
        stops = np.asarray(_COLORMAP_STOPS[base], np.float64)
    except KeyError:
        raise ValueError(
            f"unknown colormap {name!r}; choose from {sorted(_COLORMAP_STOPS)} (or '<name>_r')"
        ) from None
    x = np.linspace(0.0, 1.0, len(stops))
    t = np.linspace(0.0, 1.0, n)
    table = np.stack([np.interp(t, x, stops[:, c]) for c in range(3)], axis=1)
    return table[::-1].copy() if reverse else table


def value_range(values: np.ndarray, vmin: float | None, vmax: float | None, cmap: str) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        lo, hi = 0.0, 1.0
    elif cmap.removesuffix("_r") in DIVERGING and vmin is None and vmax is None:
        bound = float(np.abs(finite).max())
        lo, hi = -bound, bound
    else:
        lo, hi = float(finite.min()), float(finite.max())
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    return lo, hi


def heatmap_colors(
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    nan_color: Sequence[float] = (0.6, 0.6, 0.6),
) -> np.ndarray:
    """Map scalars [V] to colours [V, 3] (floats 0..1) through a colour map.

    vmin/vmax default to the values' finite min/max (symmetric around 0 for diverging
    maps such as "coolwarm"); values outside are clamped; NaN/inf get `nan_color`.
    """
    values = np.asarray(values, np.float64).reshape(-1)
    lo, hi = value_range(values, vmin, vmax, cmap)
    table = colormap(cmap)
    span = hi - lo
    t = (values - lo) / span if span > 0 else np.full_like(values, 0.5)
    t = np.clip(np.nan_to_num(t, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    colors = np.stack([np.interp(t, np.linspace(0.0, 1.0, len(table)), table[:, c]) for c in range(3)], 1)
    colors[~np.isfinite(values)] = np.asarray(nan_color, np.float64)[:3]
    return colors
